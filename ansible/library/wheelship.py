#!/usr/bin/python
# -*- coding: utf-8 -*-
# Runs the host's steps on a host through ROOT/bin/wheelship-host (the same script that
# scripts/deploy and scripts/rollback run): deploy (bundle unpack | mkenv | switch) or revert.
# Part of wheelship (https://example.invalid/wheelship); MIT OR Apache-2.0.

DOCUMENTATION = r"""
module: wheelship
short_description: Deploy or revert a wheelship release on a host
description:
  - Runs C(ROOT/bin/wheelship-host), the host's steps that scripts/deploy runs too, with the
    wheelship binaries beside it. C(state=deployed) unpacks the archive (verifying its
    signature when keys are trusted), builds or reuses its env, and flips C(ROOT/current) with
    the service flags; C(state=reverted) goes back by the history. What is live is what
    C(switch list) says.
  - Reports C(changed) only when C(current) moved. Check mode changes nothing (switch
    C(--dry-run)) and reports what would change; diff mode shows the old and new release ids.
options:
  root: {description: The deploy root (C(ROOT/releases), C(ROOT/envs), C(ROOT/current)), required: true, type: path}
  state: {description: deployed or reverted, default: deployed, choices: [deployed, reverted], type: str}
  archive: {description: The archive on the host (state=deployed), type: path}
  document: {description: The release document (its JSON), which names the release id and sha256, type: str}
  python: {description: The interpreter of the env, default: python3, type: str}
  check: {description: switch --check, type: str}
  check_timeout: {description: switch --check-timeout, default: 60, type: float}
  restart: {description: switch --restart, type: str}
  before: {description: switch --before (state=deployed), type: str}
  allow_bad: {description: switch --allow-bad (activate a release marked bad), default: false, type: bool}
  keep: {description: switch prune --keep after a good deploy, type: int}
  shared: {description: switch --shared, type: list, elements: str, default: []}
  trust: {description: bundle unpack and switch --trust (base64 public keys), type: list, elements: str, default: []}
  to: {description: switch revert --to (state=reverted), type: str}
"""

RETURN = r"""
switch: {description: The switch section (root, current, previous), type: dict, returned: always}
release: {description: The release id now live (or that would be), type: str, returned: always}
env: {description: The env section (path, key, reused), type: dict, returned: when deployed}
"""

import json
import os
import subprocess

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


def flags(params, deploy):
    """The options of wheelship-host for the module's parameters."""
    out = []
    for key in params["trust"]:
        out += ["--trust", key]
    if deploy and params["before"]:
        out += ["--before", params["before"]]
    if params["restart"]:
        out += ["--restart", params["restart"]]
    if params["check"]:
        out += ["--check", params["check"], "--check-timeout", str(params["check_timeout"])]
    if params["allow_bad"]:
        out += ["--allow-bad"]
    if deploy:
        out += ["--python", params["python"]]
        for s in params["shared"]:
            out += ["--shared", s]
        if params["keep"] is not None:
            out += ["--keep", str(params["keep"])]
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            state=dict(type="str", default="deployed", choices=["deployed", "reverted"]),
            archive=dict(type="path"),
            document=dict(type="str"),
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
        ),
        required_if=[("state", "deployed", ("archive",))],
        supports_check_mode=True,
    )
    p = module.params
    root = p["root"]
    door = os.path.join(root, "bin", "wheelship-host")
    before = current(module, door, root)
    result = dict(changed=False)

    if p["state"] == "deployed":
        doc = json.loads(p["document"]) if p["document"] else {}
        target = (doc.get("bundle") or {}).get("id")
        if module.check_mode:
            # Nothing is unpacked, built or flipped: what would change is the release id.
            result.update(changed=target != before, release=target or "(the archive's)",
                          switch={"root": root, "current": before, "would": target})
            if module._diff:
                result["diff"] = dict(before="current: %s\n" % before, after="current: %s\n" % target)
            module.exit_json(**result)
        text = tool(module, [door, "deploy", root, p["archive"]] + flags(p, True),
                    json.dumps(doc) if doc else "")
        out = json.loads(text)
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
    after = result["release"] if module.check_mode else current(module, door, root)
    result.update(changed=after != before, switch=out["switch"])
    if module._diff:
        result["diff"] = dict(before="current: %s\n" % before, after="current: %s\n" % after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
