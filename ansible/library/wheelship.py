#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs the host's steps on a host through ROOT/bin/wheelship-host (the same script that
# scripts/deploy and scripts/rollback run): the host's facts, staging, the flip, a whole
# deploy or a revert, and the fleet's deploy lock.
# Part of wheelship (https://example.invalid/wheelship); MIT OR Apache-2.0.

DOCUMENTATION = r"""
module: wheelship
short_description: Stage, flip, deploy or revert a wheelship release on a host
description:
  - Runs C(ROOT/bin/wheelship-host), the host's steps that scripts/deploy runs too, with the
    wheelship binaries beside it. C(state=facts) reports in one command on the host
    (C(wheelship-host facts), run by the action plugin) what the host has (its
    architecture, the manifest of its binaries, what is live, whether the release is staged,
    the wheels its releases hold). C(state=staged) unpacks the archive (verifying its
    signature when keys are trusted) and builds or reuses its env without touching
    C(ROOT/current); C(state=flipped) flips to the staged release with the service flags;
    C(state=deployed) does both; C(state=reverted) goes back by the history. What is live is
    what C(switch list) says.
  - C(state=locked) and C(state=unlocked) take and give back the fleet's deploy lock, a
    directory C(ROOT/.fleet-lock) on the host they run on (the playbooks use the first host
    of the inventory), naming its holder and since when.
  - Reports C(changed) only when C(current) moved (or, staged, when a release was unpacked or
    an env built). Check mode changes nothing (switch C(--dry-run)) and reports what would
    change; diff mode shows the old and new release ids.
options:
  root: {description: The deploy root (C(ROOT/releases), C(ROOT/envs), C(ROOT/current)), required: true, type: path}
  state: {description: What to do, default: deployed, choices: [deployed, reverted, facts, staged, flipped, locked, unlocked], type: str}
  archive: {description: The archive on the host (state=deployed, staged), type: path}
  document: {description: The release document (its JSON; state=flipped, the staged one), type: str}
  release: {description: The release id (state=facts, to say whether it is staged), type: str}
  python: {description: The interpreter of the env, default: python3, type: str}
  check: {description: switch --check, type: str}
  check_timeout: {description: switch --check-timeout, default: 60, type: float}
  restart: {description: switch --restart, type: str}
  before: {description: switch --before (state=deployed, flipped), type: str}
  allow_bad: {description: switch --allow-bad (activate a release marked bad), default: false, type: bool}
  keep: {description: switch prune --keep after a good flip, type: int}
  shared: {description: switch --shared, type: list, elements: str, default: []}
  trust: {description: bundle unpack and switch --trust (base64 public keys), type: list, elements: str, default: []}
  to: {description: switch revert --to (state=reverted), type: str}
  holder: {description: Who takes the lock (state=locked, unlocked), type: str}
  lock_timeout: {description: How long to wait for the lock (state=locked), default: 0, type: float}
  force: {description: Give back a lock another holder has (state=unlocked; a dead controller's), default: false, type: bool}
  uploads:
    description:
      - A directory of files the action plugin sent for state=staged (C(bin.NAME) for the binaries
        and their C(bin.MANIFEST), C(release.thin), C(archive), C(archive.minisig), ...): put in place,
        then the directory is removed, whatever the outcome.
    type: path
  inline:
    description:
      - The same files as O(uploads), small enough to come inside the arguments (base64 by name).
    type: dict
  ship: {description: Controller side (state=staged), the stripped binaries (C(dir), C(manifest)) that state=prepared returned, type: dict}
  have_manifest: {description: Controller side (state=staged), the host's binaries' manifest from state=facts, type: str}
  thin: {description: Controller side (state=staged), the thin copy to send, type: path}
  local_archive: {description: Controller side (state=staged, prepared), the release's archive, type: path}
  bin: {description: Controller side (state=prepared), the directory of the controller's wheelship binaries, type: path}
  door: {description: Controller side (state=prepared), the wheelship-host script, type: path}
  hosts: {description: Controller side (state=prepared), every host's state=facts result by host name, in the inventory's order, type: dict}
  thin_min: {description: Controller side (state=prepared), the smallest archive a thin copy is made for, default: 1048576, type: int}
  path: {description: Controller side (state=cleaned), the scratch directory state=prepared made, type: path}
  live:
    description:
      - Controller side (state=flipped), the release the host's facts said is live. Given, the
        action plugin runs C(wheelship-host flip) itself (no module on the host; not in check mode).
    type: str
notes:
  - C(state=prepared) and C(state=cleaned) run on the controller only, in the action plugin of
    the same name (beside the module in the collection, C(action_plugins/) beside the playbooks);
    for C(state=staged) the plugin sends what the host lacks (the binaries when their manifest
    differs, the thin copy or the archive, and, when keys are trusted, the archive's
    C(.minisig), C(.intoto.json) and C(.intoto.json.minisig) found beside it) in the same task.
"""

RETURN = r"""
switch: {description: The switch section (root, current, previous), type: dict, returned: deployed, reverted, flipped}
release: {description: The release id now live (or that would be), type: str, returned: deployed, reverted, flipped}
env: {description: The env section (path, key, reused), type: dict, returned: deployed, staged}
document: {description: The staged document (release and env sections), type: str, returned: staged}
facts: {description: What the host has, type: dict, returned: facts}
need_archive: {description: The thin copy could not be rebuilt here (the action plugin sends the archive), type: bool, returned: staged}
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule


def current(module, door, root):
    """The release switch says is live (None when nothing is, or there is no root yet)."""
    if not os.path.exists(door):
        return None  # nothing was ever deployed here by wheelship
    out = json.loads(tool(module, [door, "list", root], ""))
    return out["switch"]["current"]


def tool(module, argv, doc):
    """One step: the document in, the document out; its own message on failure."""
    p = subprocess.run(argv, input=doc, capture_output=True, text=True)
    if p.returncode != 0:
        module.fail_json(
            msg="%s failed: %s" % (os.path.basename(argv[0]), p.stderr.strip()),
            rc=p.returncode,
            stderr=p.stderr,
            changed=False,
        )
    return p.stdout


def flags(params, deploy, flip=True):
    """The options of wheelship-host for the module's parameters."""
    out = []
    for key in params["trust"]:
        out += ["--trust", key]
    if deploy:
        out += ["--python", params["python"]]
    if not flip:
        return out
    if deploy and params["before"]:
        out += ["--before", params["before"]]
    if params["restart"]:
        out += ["--restart", params["restart"]]
    if params["check"]:
        out += ["--check", params["check"], "--check-timeout", str(params["check_timeout"])]
    if params["allow_bad"]:
        out += ["--allow-bad"]
    if deploy:
        for s in params["shared"]:
            out += ["--shared", s]
        if params["keep"] is not None:
            out += ["--keep", str(params["keep"])]
    return out


def lock(module, root, holder, timeout, take):
    """The fleet's deploy lock: ROOT/.fleet-lock, made with mkdir (atomic), its holder inside."""
    path = os.path.join(root, ".fleet-lock")
    if not take:
        try:
            with open(os.path.join(path, "holder")) as f:
                had = f.read().strip()
        except OSError:
            module.exit_json(changed=False)
        if had != holder and not module.params["force"]:
            module.fail_json(msg="the fleet's deploy lock on %s is held by %s, not by %s: not given back (force=true gives it back)" % (path, had, holder))
        os.unlink(os.path.join(path, "holder"))
        os.rmdir(path)
        module.exit_json(changed=True)
    os.makedirs(root, exist_ok=True)
    deadline = time.time() + timeout
    while True:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            try:
                with open(os.path.join(path, "holder")) as f:
                    had = f.read().strip()
            except OSError:
                had = "(a holder still writing its name)"
            if time.time() >= deadline:
                module.fail_json(msg=(
                    "the fleet is being deployed: its deploy lock (%s on %s) is held by %s; "
                    "wait for that run, or if its controller died: ansible-playbook -i INVENTORY "
                    "ansible/unlock.yml" % (path, os.uname().nodename, had)))
            time.sleep(1)
            continue
        tmp = os.path.join(path, "holder.tmp")
        with open(tmp, "w") as f:
            f.write(holder + "\n")
        os.rename(tmp, os.path.join(path, "holder"))
        module.exit_json(changed=True)


def install(src, dst, mode):
    """One file the controller sent, put at dst whole or not at all."""
    tmp = os.path.join(os.path.dirname(dst), ".%s.upload" % os.path.basename(dst))
    shutil.copyfile(src, tmp)
    os.chmod(tmp, mode)
    os.replace(tmp, dst)


def unpack_inline(inline):
    """The files that came inside the arguments, into a directory of their own (removed at
    the end, as the plugin's uploads are)."""
    d = tempfile.mkdtemp(prefix="ansible-tmp-inline-")
    for name, data in inline.items():
        if "/" in name or name.startswith("."):
            raise ValueError("inline: %r is not a plain name" % name)
        with open(os.path.join(d, name), "wb") as f:
            f.write(base64.b64decode(data))
    return d


def put_in_place(module, root, door, archive, uploads, doc):
    """What the action plugin sent: the binaries (their manifest last), the archive with its
    signature and provenance, or the thin copy, rebuilt into the archive here. Returns whether
    anything changed and, when the thin copy could not be rebuilt, why."""
    sent = set(os.listdir(uploads))
    incoming = os.path.dirname(archive)
    for d in (root, os.path.join(root, "bin"), incoming):
        os.makedirs(d, 0o755, exist_ok=True)
    changed = False
    for name in ("bundle", "mkenv", "switch", "wheelship-host", "MANIFEST"):
        if "bin." + name in sent:
            install(os.path.join(uploads, "bin." + name), os.path.join(root, "bin", name),
                    0o644 if name == "MANIFEST" else 0o755)
            changed = True
    for suffix in ("", ".minisig", ".intoto.json", ".intoto.json.minisig"):
        if "archive" + suffix in sent:
            install(os.path.join(uploads, "archive" + suffix), archive + suffix, 0o644)
    if "release.thin" in sent:
        p = subprocess.run([door, "thick", root, os.path.join(uploads, "release.thin")],
                           input=json.dumps(doc), capture_output=True, text=True)
        if p.returncode != 0:
            return changed, p.stderr.strip() or "wheelship-host thick failed"
    return changed, None


def main():
    try:
        run()
    finally:
        # The action plugin's uploads are this module's to remove, whatever the outcome.
        uploads = getattr(run, "uploads", None)
        if uploads and os.path.basename(uploads).startswith("ansible-tmp-"):
            shutil.rmtree(uploads, ignore_errors=True)


def run():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            state=dict(type="str", default="deployed",
                       choices=["deployed", "reverted", "facts", "staged", "flipped", "locked", "unlocked",
                                "prepared", "cleaned"]),
            archive=dict(type="path"),
            document=dict(type="str"),
            release=dict(type="str"),
            python=dict(type="str", default="python3"),
            check=dict(type="str"),
            check_timeout=dict(type="float", default=60),
            restart=dict(type="str"),
            before=dict(type="str"),
            allow_bad=dict(type="bool", default=False),
            keep=dict(type="int"),
            shared=dict(type="list", elements="str", default=[]),
            trust=dict(type="list", elements="str", default=[]),
            to=dict(type="str"),
            holder=dict(type="str"),
            lock_timeout=dict(type="float", default=0),
            force=dict(type="bool", default=False),
            uploads=dict(type="path"),
            inline=dict(type="dict"),
            # The action plugin's, never sent here (declared so that the task's options are checked).
            ship=dict(type="dict"),
            have_manifest=dict(type="str"),
            thin=dict(type="path"),
            local_archive=dict(type="path"),
            bin=dict(type="path"),
            door=dict(type="path"),
            hosts=dict(type="dict"),
            thin_min=dict(type="int", default=1048576),
            path=dict(type="path"),
            live=dict(type="str"),
        ),
        required_if=[("state", "deployed", ("archive",)), ("state", "staged", ("archive",)),
                     ("state", "flipped", ("document",)), ("state", "locked", ("holder",)),
                     ("state", "unlocked", ("holder",))],
        supports_check_mode=True,
    )
    p = module.params
    run.uploads = p["uploads"]
    root = p["root"]
    door = os.path.join(root, "bin", "wheelship-host")
    state = p["state"]
    if state in ("facts", "prepared", "cleaned"):
        # facts: one command on the host (wheelship-host facts), run by the plugin itself.
        module.fail_json(msg="state=%s runs in the action plugin wheelship (action_plugins/ "
                             "beside the playbooks, or the collection's)" % state)
    if state in ("locked", "unlocked"):
        if module.check_mode:
            module.exit_json(changed=False)
        lock(module, root, p["holder"], p["lock_timeout"], state == "locked")
    result = dict(changed=False)
    doc = json.loads(p["document"]) if p["document"] else {}
    if state == "staged":
        target = (doc.get("bundle") or {}).get("id")
        existed = bool(target) and os.path.isdir(os.path.join(root, "releases", target))
        if module.check_mode:
            module.exit_json(changed=not existed, release=target)
        sent = False
        if p["inline"]:
            run.uploads = unpack_inline(p["inline"])
        if run.uploads:
            sent, why = put_in_place(module, root, door, p["archive"], run.uploads, doc)
            if why:
                module.exit_json(changed=sent, need_archive=True, msg=why)
        text = tool(module, [door, "stage", root, p["archive"]] + flags(p, True, flip=False),
                    json.dumps(doc) if doc else "")
        out = json.loads(text)
        env = out.get("env") or {}
        fresh = sent or not existed or not env.get("reused", True)
        module.exit_json(changed=fresh, env=env, document=text, release=(out.get("release") or {}).get("id"))
    before = current(module, door, root)
    if state in ("deployed", "flipped"):
        target = ((doc.get("release") or {}).get("id")) or (doc.get("bundle") or {}).get("id")
        if module.check_mode:
            # Nothing is unpacked, built or flipped: what would change is the release id.
            result.update(changed=target != before, release=target or "(the archive's)",
                          switch={"root": root, "current": before, "would": target})
            if module._diff:
                result["diff"] = dict(before="current: %s\n" % before, after="current: %s\n" % target)
            module.exit_json(**result)
        if state == "deployed":
            argv = [door, "deploy", root, p["archive"]] + flags(p, True)
        else:
            argv = [door, "flip", root] + flags(p, True)
        out = json.loads(tool(module, argv, json.dumps(doc) if doc else ""))
        result.update(env=out.get("env"), release=out["switch"]["current"])
    else:
        argv = [door, "revert", root] + flags(p, False)
        if p["to"]:
            argv += ["--to", p["to"]]
        if module.check_mode:
            argv = [os.path.join(root, "bin", "switch"), "--root", root, "revert", "--dry-run"] + argv[3:]
        out = json.loads(tool(module, argv, ""))
        would = (out["switch"].get("would") or {}).get("revert")
        result["release"] = would if module.check_mode else out["switch"]["current"]
    # What switch printed is what is live (its document names `current`).
    after = result["release"]
    result.update(changed=after != before, switch=out["switch"])
    if module._diff:
        result["diff"] = dict(before="current: %s\n" % before, after="current: %s\n" % after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
