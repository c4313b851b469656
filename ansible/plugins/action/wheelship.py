# -*- coding: utf-8 -*-
# Copyright: the wheelship authors
# MIT OR Apache-2.0 (see the collection's README)
"""The controller's half of wheelship.deploy.wheelship.

Everything a deploy decides is decided by wheelship-host on the controller: `plan` (what each
host needs sent) and `remote` (the command line that opens the door on a host after checking
that nobody but the deploying user or root could have written what runs). This plugin only
carries that out: it runs the commands `remote` makes through the task's connection, and
sends the files the plan names. The fleet's lock (state=locked, unlocked) is the module's,
on the lock host.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shutil
import subprocess
import tempfile

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The module's options that are wheelship-host's, as the door's long options. The rest of the
# door's options (every option switch takes) come through `options`.
DOOR = {"python": "--python", "check": "--check", "check_timeout": "--check-timeout",
        "restart": "--restart", "before": "--before", "allow_bad": "--allow-bad", "keep": "--keep",
        "shared": "--shared", "trust": "--trust"}
# The exit status of the opener when something others could write would have run, and of the
# door when a host cannot rebuild the archive from a thin copy.
REFUSED = 3
NEED_ARCHIVE = 75


def door_args(params, command):
    """The door's options for the module's parameters: the named ones, then `options`
    (name: value; a list repeats the option, true is a flag, false or null leaves it out)."""
    out = []
    named = [(k, params.get(k)) for k in DOOR]
    extra = sorted((params.get("options") or {}).items())
    for key, value in named + extra:
        if command == "revert" and key in ("python", "before", "keep", "shared"):
            continue
        flag = DOOR.get(key) or "--" + str(key).replace("_", "-")
        for v in value if isinstance(value, list) else [value]:
            if v is None or v is False or v == "":
                continue
            out += [flag] if v is True else [flag, str(v)]
    return out


def binaries(params):
    """The controller's wheelship binaries: the task's `bin`, else WHEELSHIP_BIN, else the
    directory of wheelship-host on PATH."""
    found = params.get("bin") or os.environ.get("WHEELSHIP_BIN")
    if not found and shutil.which("wheelship-host"):
        found = os.path.dirname(shutil.which("wheelship-host"))
    if not found or not os.path.isfile(os.path.join(found, "wheelship-host")):
        raise AnsibleActionFail("no wheelship binaries on the controller: set wheelship_bin (or "
                                "WHEELSHIP_BIN) to the directory of the release build, or put "
                                "wheelship-host on PATH")
    return found


def local(argv, stdin=""):
    """A wheelship-host command on the controller: its stdout, or its stderr as the failure."""
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise AnsibleActionFail("%s: %s" % (" ".join(argv[:2]), p.stderr.strip()))
    return p.stdout


def as_json(doc):
    """A document as JSON text: Ansible's templating may have turned the JSON it was given
    into a dict."""
    if isinstance(doc, (dict, list)):
        return json.dumps(doc)
    return doc or "{}"


def last_json(out):
    """The JSON document a host command printed: its last line that is one (through become, a
    tty may put other lines before it)."""
    lines = [line.strip() for line in (out or "").splitlines() if line.strip().startswith("{")]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return None


class ActionModule(ActionBase):
    # No remote temporary directory unless files go (ActionBase would make one for every call).
    TRANSFERS_FILES = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        state = args.get("state", "deployed")
        if state in ("locked", "unlocked"):
            module_args = dict((k, args[k]) for k in ("root", "state", "holder", "lock_timeout", "force")
                               if k in args)
            result.update(self._execute_module(self._task.action, module_args=module_args,
                                               task_vars=task_vars))
            return result
        if state == "cleaned":
            if args.get("path"):
                shutil.rmtree(args["path"], ignore_errors=True)
            result["changed"] = False
            return result
        root = args.get("root") or ""
        if not root.startswith("/"):
            raise AnsibleActionFail("root: %r is not an absolute path" % root)
        self.bin = binaries(args)
        self.door = os.path.join(self.bin, "wheelship-host")
        self.root = root
        handlers = {"facts": self.facts, "prepared": self.prepared, "staged": self.staged,
                    "flipped": self.flipped, "deployed": self.deployed, "reverted": self.reverted}
        if state not in handlers:
            raise AnsibleActionFail("state=%s is not one of %s" % (state, ", ".join(sorted(handlers))))
        result.update(handlers[state](args, task_vars))
        return result

    # The door on the host.

    def on_host(self, door, remote=(), stdin=None):
        """Runs the door on the host, opened by the command `wheelship-host remote` makes; the
        result of the low-level command."""
        cmd = local([self.door, "remote", self.root] + list(remote) + ["--"] + door).strip()
        res = self._low_level_execute_command(cmd, sudoable=bool(self._play_context.become),
                                              in_data=stdin)
        if res.get("rc") == REFUSED:
            raise AnsibleActionFail("the host's %s is not safe to run anything from: %s"
                                    % (self.root, (res.get("stderr") or "").strip()))
        return res

    def door_json(self, res, what):
        got = last_json(res.get("stdout"))
        if res.get("rc") != 0 or got is None:
            return None, {"failed": True, "rc": res.get("rc"), "stderr": res.get("stderr"),
                          "msg": "wheelship-host %s failed on %s: %s" % (
                              what, self.root, (res.get("stderr") or res.get("stdout") or "").strip()[-2000:])}
        return got, None

    def check_args(self, command, argv):
        """The door's options checked on the controller before any host is touched."""
        p = subprocess.run([self.door, "args", command, self.root] + argv, capture_output=True,
                           text=True, check=False)
        if p.returncode != 0:
            raise AnsibleActionFail(p.stderr.strip())

    # The states.

    def facts(self, args, task_vars):
        """What the host has, in one round trip: wheelship-host facts (a fresh host, without a
        root or a door, says so)."""
        release = args.get("release") or ""
        res = self.on_host(["facts", self.root] + ([release] if release else []))
        got, failed = self.door_json(res, "facts")
        if failed:
            raise AnsibleActionFail(failed["msg"])
        listed = (got.get("list") or {}).get("switch") or {}
        got["current"] = listed.get("current")
        got["previous"] = listed.get("previous")
        return {"changed": False, "facts": got}

    def prepared(self, args, task_vars):
        """Once per run, on the controller: the plan for every host from their facts."""
        hosts = args.get("hosts") or {}
        doc = args.get("document") or {}
        if isinstance(doc, str):
            doc = json.loads(doc) if doc else {}
        scratch = tempfile.mkdtemp(suffix=".wheelship")
        facts = os.path.join(scratch, "facts.json")
        with open(facts, "w") as f:
            json.dump(hosts, f)
        argv = [self.door, "plan", "--facts", facts, "--bin", self.bin]
        if args.get("rollback"):
            argv += ["--rollback"] + (["--to", args["to"]] if args.get("to") else [])
        else:
            if not self._task.check_mode and not args.get("full"):
                argv += ["--scratch", scratch, "--thin-min", str(args.get("thin_min") or 0)]
            if args.get("full"):
                argv += ["--full"]
            if not doc and args.get("local_archive"):
                argv += ["--archive", args["local_archive"]]
        try:
            plan = json.loads(local(argv, json.dumps(doc) if doc else ""))["plan"]
        except AnsibleActionFail:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        stage = [h for h in hosts if plan["hosts"].get(h, {}).get("stage")]
        return {"changed": False, "plan": plan, "scratch": scratch, "stage": stage}

    def send(self, names, plan):
        """The plan's files `names` into a new directory on the host; its path."""
        tmp = self._make_tmp_path()
        shell = self._connection._shell
        remote = [self._transfer_file(plan["files"][n]["path"], shell.join_path(tmp, n)) for n in names]
        self._fixup_perms2([tmp] + remote, execute=False)
        # The door removes it once its files are in place (whatever its outcome).
        shell.tmpdir = None
        return tmp

    def carry_out(self, command, args, plan, host, stdin):
        """Sends what the plan says this host lacks, then runs the door's `command` with the
        uploads; when the host cannot rebuild the archive from the thin copy, sends the whole
        archive and runs it again."""
        mine = plan["hosts"][host]
        argv = [command, self.root] + door_args(args, command)
        sent = list(mine["send"])
        remote = []
        if sent:
            up = self.send(sent, plan)
            remote = ["--uploads", up] + (["--door-sha256", plan["door_sha256"]] if mine["door_sent"] else [])
            argv += ["--uploads", up]
        res = self.on_host(argv, remote, stdin)
        if res.get("rc") == NEED_ARCHIVE and mine["fallback"]:
            self._display.warning("%s: the host could not rebuild the archive from the thin copy; "
                                  "sending it whole" % self._task.get_name())
            up = self.send(mine["fallback"], plan)
            sent += mine["fallback"]
            argv = [command, self.root] + door_args(args, command) + ["--uploads", up]
            res = self.on_host(argv, ["--uploads", up], stdin)
        got, failed = self.door_json(res, command)
        if failed:
            failed["sent"] = sent
            return None, failed
        return got, {"sent": sent}

    def staged(self, args, task_vars):
        """Sends what this host lacks and stages: bundle unpack | mkenv there, current untouched."""
        plan = args.get("plan") or {}
        host = task_vars.get("inventory_hostname")
        if host not in plan.get("hosts", {}):
            raise AnsibleActionFail("%s is not in the plan" % host)
        if self._task.check_mode:
            return {"changed": plan["hosts"][host]["stage"], "release": plan.get("release")}
        self.check_args("stage", door_args(args, "stage"))
        got, out = self.carry_out("stage", args, plan, host, as_json(args.get("document")))
        if got is None:
            return out
        env = got.get("env") or {}
        out.update(changed=bool(out["sent"]) or not env.get("reused", True), env=env,
                   document=json.dumps(got), release=(got.get("release") or {}).get("id"))
        return out

    def flipped(self, args, task_vars):
        """The flip of a staged release: wheelship-host flip with the staged document, the
        restart and the check. `live` (what the facts said was live) says whether it changed."""
        argv = door_args(args, "flip")
        self.check_args("flip", argv)
        doc = json.loads(as_json(args.get("document")))
        if self._task.check_mode:
            # Nothing was staged in check mode: what would go live is the document's release.
            target = (doc.get("release") or doc.get("bundle") or {}).get("id")
            return self.moved(args.get("live"), {"switch": {"current": target}})
        res = self.on_host(["flip", self.root] + argv, stdin=as_json(args.get("document")))
        got, failed = self.door_json(res, "flip")
        if failed:
            return failed
        return self.moved(args.get("live"), got)

    def moved(self, before, got):
        sw = got.get("switch") or {}
        would = sw.get("would") or {}
        after = would.get("activate") or would.get("revert") or sw.get("current")
        result = {"changed": after != before, "release": after, "switch": sw, "env": got.get("env")}
        if self._task.diff:
            result["diff"] = {"before": "current: %s\n" % before, "after": "current: %s\n" % after}
        return result

    def deployed(self, args, task_vars):
        """Facts, plan, send, deploy: one host in one task."""
        doc = as_json(args.get("document"))
        release = (json.loads(doc).get("bundle") or {}).get("id")
        facts = self.facts(dict(args, release=release), task_vars)["facts"]
        host = task_vars.get("inventory_hostname")
        prep = self.prepared(dict(args, hosts={host: facts}), task_vars)
        try:
            if self._task.check_mode:
                return {"changed": facts["current"] != prep["plan"].get("release"),
                        "release": prep["plan"].get("release")}
            self.check_args("deploy", door_args(args, "deploy"))
            got, out = self.carry_out("deploy", args, prep["plan"], host, doc)
        finally:
            shutil.rmtree(prep["scratch"], ignore_errors=True)
        if got is None:
            return out
        out.update(self.moved(facts["current"], got))
        return out

    def reverted(self, args, task_vars):
        """wheelship-host revert (to `to`, else by the history), with the restart and the check."""
        argv = door_args(args, "revert") + (["--to", args["to"]] if args.get("to") else [])
        argv += ["--dry-run"] if self._task.check_mode else []
        self.check_args("revert", argv)
        before = self.facts(args, task_vars)["facts"]["current"]
        res = self.on_host(["revert", self.root] + argv)
        got, failed = self.door_json(res, "revert")
        if failed:
            return failed
        return self.moved(before, got)
