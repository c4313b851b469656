#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the wheelship authors
# MIT OR Apache-2.0 (see the collection's README)
"""The host's half of wheelship.deploy.wheelship: the fleet's deploy lock. Every other state
runs in the action plugin of the same name, which carries out what wheelship-host decides."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: wheelship
short_description: Stage, flip, deploy or revert a wheelship release on a host
version_added: "0.3.0"
author: the wheelship authors (@wheelship)
description:
  - Runs the host's door, C(wheelship-host), on each host, opened by the command line that
    C(wheelship-host remote) makes on the controller; that command refuses to run anything from
    a C(ROOT), C(ROOT/bin) or door that a user other than the deploying one or root could write.
  - What a host needs sent (the binaries by sha256, a thin copy of the archive or the whole
    archive, the signature and provenance) is decided once, on the controller, by
    C(wheelship-host plan) (O(state=prepared)); O(state=staged) sends it and stages.
  - O(state=staged) unpacks the archive and builds or reuses its env without touching
    C(ROOT/current); O(state=flipped) flips to the staged release with the restart and the check;
    O(state=deployed) does all of it for one host; O(state=reverted) goes back by the history
    (or to O(to)).
  - O(state=locked) and O(state=unlocked) take and give back the fleet's deploy lock, the
    directory C(ROOT/.fleet-lock) on the host they run on (the playbooks delegate them to the
    first host of the inventory), naming its holder and since when.
  - Every option the door takes (every option switch takes for a deploy or a revert) can be
    given in O(options), so that a new one needs no change here.
options:
  root:
    description: The deploy root on the host.
    required: true
    type: path
  state:
    description:
      - What to do.
      - V(facts) reports what the host has; V(prepared) plans on the controller what each host
        needs (once per run); V(staged), V(flipped), V(deployed) and V(reverted) act on the host;
        V(locked) and V(unlocked) take and give back the fleet's lock; V(cleaned) removes the
        controller's scratch directory of V(prepared).
    default: deployed
    choices: [deployed, staged, flipped, reverted, facts, prepared, cleaned, locked, unlocked]
    type: str
  document:
    description:
      - The release's document (JSON), as C(scripts/release) printed it; for V(flipped), the
        staged one (V(staged) returns it).
    type: str
  release:
    description: The release id, for V(facts) to say whether it is staged.
    type: str
  python:
    description: The interpreter of the env on the host.
    default: python3
    type: str
  check:
    description: The health check after the flip (the door's C(--check)).
    type: str
  check_timeout:
    description: How long the check may take to pass, in seconds.
    default: 60
    type: float
  restart:
    description: The restart after the flip (the door's C(--restart)).
    type: str
  before:
    description: What runs in the new release before the flip (the door's C(--before)).
    type: str
  allow_bad:
    description: Activate a release marked bad (its check or C(--before) failed before).
    default: false
    type: bool
  keep:
    description: Prune the releases beyond this many after a good flip.
    type: int
  shared:
    description: Paths that live in C(ROOT/shared), linked into each release.
    type: list
    elements: str
    default: []
  trust:
    description: Minisign public keys (base64 lines) the host trusts, for unpack and switch.
    type: list
    elements: str
    default: []
  to:
    description: The release to revert to (V(reverted)); else the one live before, by the history.
    type: str
  options:
    description:
      - "Any other option of the door, by its long name (with C(-) or C(_)), for example
        C({check_interval: 2, check_back_timeout: 10, allow_downgrade: true})."
      - A list repeats the option (each gate runs, in order); V(true) gives a flag; V(false) or
        null leaves it out.
    type: dict
    default: {}
  holder:
    description:
      - Who takes the lock (V(locked), V(unlocked)); one line of printable characters, at most
        200.
    type: str
  lock_timeout:
    description: How long to wait for the lock (V(locked)), in seconds.
    default: 0
    type: float
  force:
    description: Give back a lock another holder has (V(unlocked); a dead controller's).
    default: false
    type: bool
  plan:
    description: The plan V(prepared) returned (V(staged)).
    type: dict
  hosts:
    description: Every host's V(facts) result by host name, in the inventory's order (V(prepared)).
    type: dict
  local_archive:
    description: The release's archive on the controller, when there is no document (V(prepared)).
    type: path
  bin:
    description:
      - The directory of the controller's wheelship binaries; by default C(WHEELSHIP_BIN), else
        the directory of C(wheelship-host) on C(PATH).
    type: path
  thin_min:
    description: The smallest archive a thin copy is made for (V(prepared)).
    default: 1048576
    type: int
  full:
    description: Always send the whole archive (V(prepared)).
    default: false
    type: bool
  no_archive:
    description: The hosts get the archive elsewhere (an artifact server); send none (V(prepared)).
    default: false
    type: bool
  rollback:
    description:
      - Plan a rollback (V(prepared)) instead of a deploy; every host to one release, O(to) or
        the one the fleet was on before, or a refusal that names the hosts that disagree.
    default: false
    type: bool
  path:
    description: The scratch directory to remove (V(cleaned)).
    type: path
  live:
    description: What the host's facts said was live (V(flipped)), to report whether it changed.
    type: str
notes:
  - Every state but V(locked) and V(unlocked) runs in the action plugin C(wheelship.deploy.wheelship)
    on the controller, which needs the wheelship binaries there (O(bin)).
  - The playbooks C(wheelship.deploy.deploy), C(wheelship.deploy.rollback) and
    C(wheelship.deploy.unlock) use it.
attributes:
  check_mode:
    support: full
    description: Nothing is sent, unpacked or flipped; the result says whether C(current) would move.
  diff_mode:
    support: full
    description: The old and new release ids.
  platform:
    support: full
    platforms: posix
    description: Linux hosts with a Python and the wheelship binaries (sent when missing).
"""

EXAMPLES = r"""
- name: Deploy a release to one host, with its restart and check
  wheelship.deploy.wheelship:
    root: /srv/app
    document: "{{ lookup('file', 'release.json') }}"
    restart: sudo systemctl restart app
    check: curl -fsS http://127.0.0.1:8000/health
    options:
      check_interval: 2
      allow_downgrade: true

- name: Roll back by the history
  wheelship.deploy.wheelship:
    root: /srv/app
    state: reverted
    restart: sudo systemctl restart app

- name: Take the fleet's deploy lock on the first host
  wheelship.deploy.wheelship:
    root: /srv/app
    state: locked
    holder: ci@builder deploying r42 since 2026-12-07T10:00:00Z
  delegate_to: "{{ groups['all'] | first }}"
  run_once: true
"""

RETURN = r"""
switch:
  description: The switch section of the door's document (root, current, previous; would, in check mode).
  returned: deployed, flipped, reverted
  type: dict
  sample: {"root": "/srv/app", "current": "20261207T100000Z-0123456789ab-0123456789ab", "previous": null}
release:
  description: The release id now live (or that would be, in check mode).
  returned: deployed, staged, flipped, reverted
  type: str
  sample: 20261207T100000Z-0123456789ab-0123456789ab
env:
  description: The env section (path, key, reused).
  returned: deployed, staged, flipped
  type: dict
document:
  description: The staged document, for V(flipped).
  returned: staged
  type: str
facts:
  description:
    - What the host has, as C(wheelship-host facts) printed it (arch, fresh, bin, staged,
      archived, list, have), with C(current) and C(previous).
  returned: facts
  type: dict
plan:
  description: What each host needs sent, as C(wheelship-host plan) printed it.
  returned: prepared
  type: dict
stage:
  description: The hosts that need the release staged, in the inventory's order.
  returned: prepared
  type: list
  elements: str
scratch:
  description: The controller's scratch directory of the plan (remove it with V(cleaned)).
  returned: prepared
  type: str
sent:
  description: The names of the files sent to the host.
  returned: staged, deployed
  type: list
  elements: str
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

LOCK = ".fleet-lock"
HOLDER_MAX = 200


def shown(text):
    """A holder's text as a terminal may show it: anything but printable characters escaped
    (another controller wrote it)."""
    return "".join(c if c.isprintable() else "\\x%02x" % ord(c) if ord(c) < 256 else "\\u%04x" % ord(c)
                   for c in text[:HOLDER_MAX])


def read_holder(path):
    try:
        with open(os.path.join(path, "holder"), "rb") as f:
            return shown(f.read(HOLDER_MAX + 1).decode("utf-8", "replace").rstrip("\n"))
    except OSError:
        return "(a holder still writing its name)"


def lock(module, root, holder, timeout, take):
    """The fleet's deploy lock: ROOT/.fleet-lock, made with mkdir (atomic), its holder inside."""
    path = os.path.join(root, LOCK)
    if not take:
        if not os.path.isdir(path):
            module.exit_json(changed=False)
        had = read_holder(path)
        if had != holder and not module.params["force"]:
            module.fail_json(msg="the fleet's deploy lock on %s is held by %s, not by %s: not given back "
                                 "(force=true gives it back)" % (path, had, holder))
        try:
            os.unlink(os.path.join(path, "holder"))
        except FileNotFoundError:
            pass
        os.rmdir(path)
        module.exit_json(changed=True)
    os.makedirs(root, 0o755, exist_ok=True)
    deadline = time.time() + timeout
    while True:
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            if time.time() >= deadline:
                module.fail_json(msg=(
                    "the fleet is being deployed: its deploy lock (%s on %s) is held by %s; "
                    "wait for that run, or if its controller died: ansible-playbook -i INVENTORY "
                    "wheelship.deploy.unlock" % (path, os.uname().nodename, read_holder(path))))
            time.sleep(1)
            continue
        tmp = os.path.join(path, "holder.tmp")
        with open(tmp, "w") as f:
            f.write(holder + "\n")
        os.rename(tmp, os.path.join(path, "holder"))
        module.exit_json(changed=True)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            root=dict(type="path", required=True),
            state=dict(type="str", default="deployed",
                       choices=["deployed", "staged", "flipped", "reverted", "facts", "prepared", "cleaned",
                                "locked", "unlocked"]),
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
            trust=dict(type="list", elements="str", default=[], no_log=False),
            to=dict(type="str"),
            options=dict(type="dict", default={}),
            holder=dict(type="str"),
            lock_timeout=dict(type="float", default=0),
            force=dict(type="bool", default=False),
            plan=dict(type="dict"),
            hosts=dict(type="dict"),
            local_archive=dict(type="path"),
            bin=dict(type="path"),
            thin_min=dict(type="int", default=1048576),
            full=dict(type="bool", default=False),
            no_archive=dict(type="bool", default=False),
            rollback=dict(type="bool", default=False),
            path=dict(type="path"),
            live=dict(type="str"),
        ),
        required_if=[("state", "locked", ("holder",)), ("state", "unlocked", ("holder",))],
        supports_check_mode=True,
    )
    p = module.params
    if p["state"] not in ("locked", "unlocked"):
        module.fail_json(msg="state=%s runs in the action plugin wheelship.deploy.wheelship on the "
                             "controller: call the module by that name" % p["state"])
    holder = p["holder"]
    if len(holder) > HOLDER_MAX or not holder.isprintable():
        module.fail_json(msg="holder: %s is not one line of at most %d printable characters"
                             % (shown(holder), HOLDER_MAX))
    if module.check_mode:
        module.exit_json(changed=False)
    lock(module, p["root"], holder, p["lock_timeout"], p["state"] == "locked")


if __name__ == "__main__":
    main()
