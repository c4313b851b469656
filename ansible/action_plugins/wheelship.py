# -*- coding: utf-8 -*-
# The controller's half of the wheelship module: what a deploy does once on the controller
# (state=prepared: the hosts' architectures checked, the binaries stripped with their
# manifest, the archive checked against its document, the thin copy made for the wheels every
# host that needs the release holds; state=cleaned: the scratch directory gone); for
# state=staged, the files a host lacks sent in the same task that stages them (inside the
# module's arguments up to 1 MiB, by sftp beyond), so that staging a host is one task; and
# state=facts and state=flipped (given `live`) as one command on the host, with no module.
# Part of wheelship (https://example.invalid/wheelship); MIT OR Apache-2.0.
import base64
import hashlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.plugins.loader import module_loader

BINARIES = ("bundle", "mkenv", "switch")
# What the controller sends beside an archive, by the suffix of its name.
EXTRAS = (".minisig", ".intoto.json", ".intoto.json.minisig")
# Files up to this size, all together, go inside the module's arguments (one round trip, with
# the module); larger ones by sftp into a temporary directory first.
INLINE_MAX = 1 << 20
# Options the module never sees: the controller's paths.
CONTROLLER_ONLY = ("ship", "thin", "local_archive", "have_manifest", "bin", "door",
                   "hosts", "path", "thin_min", "live")
# The module's defaults, for the options state=flipped reads here.
FLIP_DEFAULTS = {"python": "python3", "check": None, "check_timeout": 60, "restart": None,
                 "before": None, "allow_bad": False, "keep": None, "shared": [], "trust": []}
# What state=facts runs on the host: ROOT/bin/wheelship-host facts, or, where there is none (a
# fresh host) or it is older than this command (exit 2, usage), the architecture alone.
FACTS = ('d=%(door)s; if [ -x "$d" ]; then "$d" facts %(root)s%(id)s; rc=$?; else rc=2; fi; '
         'if [ $rc = 2 ]; then printf \'{"arch":"%%s","fresh":true}\\n\' "$(uname -m)"; rc=0; fi; exit $rc')


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ship(bin_dir, door):
    """The binaries as a host gets them, stripped, with their MANIFEST (sha256sum's format):
    kept in ~/.cache/wheelship/ansible/ship-KEY, KEY from the unstripped files' identity, so a
    rerun strips and hashes nothing."""
    sources = [os.path.join(bin_dir, b) for b in BINARIES] + [door]
    key = hashlib.sha256()
    for s in sources:
        try:
            st = os.stat(s)
        except OSError as e:
            raise AnsibleActionFail("%s: %s (wheelship_bin, or WHEELSHIP_BIN, names the directory of the release build)" % (s, e.strerror))
        key.update(("%s %d %d %d\n" % (os.path.realpath(s), st.st_ino, st.st_size, st.st_mtime_ns)).encode())
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wheelship", "ansible")
    os.makedirs(cache, exist_ok=True)
    final = os.path.join(cache, "ship-" + key.hexdigest()[:32])
    if not os.path.isfile(os.path.join(final, "MANIFEST")):
        work = tempfile.mkdtemp(prefix=".ship-", dir=cache)
        names = list(BINARIES) + ["wheelship-host"]
        for name, src in zip(names, sources):
            out = os.path.join(work, name)
            if name == "wheelship-host" or subprocess.run(["strip", "-o", out, src], capture_output=True).returncode != 0:
                shutil.copyfile(src, out)
            os.chmod(out, 0o755)
        with open(os.path.join(work, "MANIFEST"), "w") as f:
            f.writelines("%s  %s\n" % (sha256(os.path.join(work, n)), n) for n in names)
        try:
            os.rename(work, final)
        except OSError:
            shutil.rmtree(work)  # another run made it first
        # Older builds' copies (and what a killed run left half made): gone after a day
        # unused; another deploy, of another build, may be sending from its copy now.
        for old in os.listdir(cache):
            path = os.path.join(cache, old)
            try:
                stale = time.time() - os.stat(path).st_mtime > 86400
            except OSError:
                continue
            if old.startswith(("ship-", ".ship-")) and path != final and stale:
                shutil.rmtree(path, ignore_errors=True)
    os.utime(final)  # in use
    with open(os.path.join(final, "MANIFEST")) as f:
        return {"dir": final, "manifest": f.read()}


def check_archive(archive, doc):
    """The archive must be the one its document describes before it is sent anywhere."""
    bundle = doc.get("bundle") or {}
    try:
        size = os.stat(archive).st_size
    except OSError as e:
        raise AnsibleActionFail("%s: %s" % (archive, e.strerror))
    if size != bundle.get("size") or sha256(archive) != bundle.get("sha256"):
        raise AnsibleActionFail("%s is not the archive of release %s that its document describes "
                                "(size or sha256 differ)" % (archive, bundle.get("id")))


def thin_copy(bundle, archive, doc, hosts, thin_min, scratch):
    """The thin copy for the wheels every host that still needs the release holds, or {} when
    it cannot pay: a fresh host (it holds nothing), a small archive."""
    needing = [h for h in hosts if not h.get("staged")]
    if not needing or any(not h.get("have") for h in needing) or doc["bundle"]["size"] < thin_min:
        return {}
    common = set.intersection(*({w["sha256"] for w in h["have"]} for h in needing))
    sizes = {w["sha256"]: w["size"] for h in needing for w in h["have"]}
    have = os.path.join(scratch, "have.json")
    with open(have, "w") as f:
        json.dump({"have": {"wheels": [{"sha256": s, "size": sizes[s]} for s in sorted(common)]}}, f)
    p = subprocess.run([bundle, "thin", "--have", have, "--out", os.path.join(scratch, "release.thin"), archive],
                       input=json.dumps(doc), capture_output=True, text=True)
    if p.returncode != 0:
        raise AnsibleActionFail("bundle thin failed: %s" % p.stderr.strip())
    thin = json.loads(p.stdout)["thin"]
    return thin if thin.get("worth") else {}


class ActionModule(ActionBase):
    # No remote temporary directory unless files go (ActionBase would make one for every call:
    # three more round trips each).
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        state = args.get("state", "deployed")
        if state == "facts":
            result.update(self.facts(args))
            return result
        if state == "prepared":
            result.update(self.prepared(args))
            return result
        if state == "cleaned":
            if args.get("path"):
                shutil.rmtree(args["path"], ignore_errors=True)
            result["changed"] = False
            return result
        if state == "staged":
            result.update(self.staged(args, task_vars))
            return result
        if state == "flipped" and "live" in args and not self._task.check_mode:
            result.update(self.flipped(args))
            return result
        module_args = {k: v for k, v in args.items() if k not in CONTROLLER_ONLY}
        result.update(self._execute_module(self._task.action, module_args=module_args, task_vars=task_vars))
        return result

    def facts(self, args):
        """What the host has, in one round trip and no module: wheelship-host facts."""
        root = args.get("root") or ""
        if not root.startswith("/"):
            raise AnsibleActionFail("root: %r is not an absolute path" % root)
        q = shlex.quote
        release = args.get("release") or ""
        cmd = FACTS % {"door": q(root.rstrip("/") + "/bin/wheelship-host"), "root": q(root),
                       "id": " " + q(release) if release else ""}
        # Through become when the play uses it (then with a tty, and \r\n line ends).
        res = self._low_level_execute_command(cmd, sudoable=bool(self._play_context.become))
        got = self.json_out(res, "wheelship-host facts", root)
        listed = (got.get("list") or {}).get("switch") or {}
        return {"changed": False, "facts": {
            "arch": got.get("arch"),
            "root": got.get("list") is not None,
            "manifest": got.get("manifest") or "",
            "current": listed.get("current"),
            "staged": bool(got.get("staged")),
            "have": ((got.get("have") or {}).get("have") or {}).get("wheels") or [],
        }}

    def json_out(self, res, what, root):
        """The document a host command printed (the last line of JSON: through become, a tty
        may put other lines before it)."""
        out = res.get("stdout") or ""
        if res.get("rc") != 0:
            raise AnsibleActionFail("%s failed on %s: %s" % (what, root, (res.get("stderr") or out).strip()))
        lines = [line.strip() for line in out.splitlines() if line.strip().startswith("{")]
        try:
            return json.loads(lines[-1])
        except (IndexError, ValueError):
            raise AnsibleActionFail("%s on %s printed no document: %r" % (what, root, out[-500:]))

    def flipped(self, args):
        """The flip of a staged release, in one round trip and no module: wheelship-host flip
        with the staged document on stdin and the module's own options (its `flags`). `live`
        (what the host's facts said is live) says whether anything changed."""
        root = args.get("root") or ""
        if not root.startswith("/"):
            raise AnsibleActionFail("root: %r is not an absolute path" % root)
        name = getattr(self._task, "resolved_action", None) or self._task.action
        module = module_loader.find_plugin_with_context(name, collection_list=self._task.collections).plugin_resolved_path
        spec = importlib.util.spec_from_file_location("wheelship_module", module)
        code = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(code)
        params = dict(FLIP_DEFAULTS, **{k: v for k, v in args.items() if k in FLIP_DEFAULTS and v is not None})
        params["allow_bad"] = bool(params["allow_bad"]) and str(params["allow_bad"]).lower() not in ("false", "no", "0")
        argv = [root.rstrip("/") + "/bin/wheelship-host", "flip", root] + code.flags(params, True)
        res = self._low_level_execute_command(" ".join(shlex.quote(str(a)) for a in argv),
                                              sudoable=bool(self._play_context.become),
                                              in_data=args.get("document") or "{}")
        try:
            out = self.json_out(res, "wheelship-host flip", root)
        except AnsibleActionFail as e:
            return {"failed": True, "msg": str(e), "rc": res.get("rc"), "stderr": res.get("stderr")}
        sw = out.get("switch") or {}
        before, after = args.get("live"), sw.get("current")
        result = {"changed": after != before, "release": after, "switch": sw, "env": out.get("env")}
        if self._task.diff:
            result["diff"] = {"before": "current: %s\n" % before, "after": "current: %s\n" % after}
        return result

    def prepared(self, args):
        """Once per deploy, on the controller: nothing here touches a host."""
        named = args.get("hosts") or {}
        arch = platform.machine()
        other = ["%s is %s" % (h, f.get("arch")) for h, f in named.items() if f.get("arch") != arch]
        if other:
            raise AnsibleActionFail("%s and the controller is %s: install the wheelship binaries of "
                                    "each host's architecture in ROOT/bin there" % (", ".join(other), arch))
        # The hosts that need the release, in the inventory's order: the next plays' hosts.
        stage = [h for h, f in named.items() if f.get("current") != args.get("release")]
        out = {"changed": False, "ship": ship(args["bin"], args["door"]), "thin": {}, "scratch": "",
               "stage": stage}
        doc = args.get("document") or {}
        if isinstance(doc, str):
            doc = json.loads(doc) if doc else {}
        hosts = [named[h] for h in stage]
        if not doc or not args.get("local_archive") or all(h.get("staged") for h in hosts):
            return out
        check_archive(args["local_archive"], doc)
        if self._task.check_mode:
            return out  # nothing is sent in check mode
        scratch = tempfile.mkdtemp(suffix=".wheelship")
        out["scratch"] = scratch
        out["thin"] = thin_copy(os.path.join(args["bin"], "bundle"), args["local_archive"], doc, hosts,
                                int(args.get("thin_min") or 0), scratch)
        return out

    def staged(self, args, task_vars):
        """Sends what the host lacks into a temporary directory the module empties and removes,
        then stages: the binaries when their manifest differs, the thin copy (the whole archive
        follows when the host cannot rebuild it), the signature and provenance."""
        module_args = {k: v for k, v in args.items() if k not in CONTROLLER_ONLY}
        if self._task.check_mode:
            return self._execute_module(self._task.action, module_args=module_args, task_vars=task_vars)
        sent = args.get("ship") or {}
        files = {}
        if sent and sent.get("manifest") != args.get("have_manifest"):
            for name in list(BINARIES) + ["wheelship-host", "MANIFEST"]:
                files["bin." + name] = os.path.join(sent["dir"], name)
        thin, archive = args.get("thin"), args.get("local_archive")
        if archive and args.get("trust"):
            for suffix in EXTRAS:
                if os.path.isfile(archive + suffix):
                    files["archive" + suffix] = archive + suffix
        files.update({"release.thin": thin} if thin else {"archive": archive} if archive else {})
        res = self.send_and_run(module_args, files, task_vars)
        sent = sorted(files)
        if res.get("need_archive") and archive:
            # The host could not rebuild the archive from the thin copy: the whole archive.
            self._display.warning("%s: %s; sending the whole archive" % (self._task.get_name(), res.get("msg")))
            res = self.send_and_run(module_args, {"archive": archive}, task_vars)
            sent.append("archive")
        elif res.get("need_archive"):
            res.update(failed=True, msg="the thin copy could not be rebuilt: %s" % res.get("msg"))
        res["sent"] = sent
        return res

    def send_and_run(self, module_args, files, task_vars):
        if sum(os.path.getsize(p) for p in files.values()) <= INLINE_MAX:
            if files:
                inline = {}
                for name, local in files.items():
                    with open(local, "rb") as f:
                        inline[name] = base64.b64encode(f.read()).decode()
                module_args = dict(module_args, inline=inline)
            return self._execute_module(self._task.action, module_args=module_args, task_vars=task_vars)
        tmp = self._make_tmp_path()
        shell = self._connection._shell
        try:
            remote = []
            for name, local in sorted(files.items()):
                remote.append(self._transfer_file(local, shell.join_path(tmp, name)))
            self._fixup_perms2([tmp] + remote, execute=False)
            res = self._execute_module(self._task.action, module_args=dict(module_args, uploads=tmp),
                                       task_vars=task_vars)
        except Exception:
            self._remove_tmp_path(tmp, force=True)
            raise
        # The module removed the directory (whatever its outcome).
        shell.tmpdir = None
        return res
