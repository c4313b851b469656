"""Benchmark: rolling releases over a fleet with the Ansible playbooks (ansible/deploy.yml,
ansible/rollback.yml) and ansible/ansible.cfg, on 1, 4 and 12 simulated hosts.

    python3 bench/fleet.py [--runs N] [--hosts 1,4,12] [--stacks small,web] [--playbook PATH]
                           [--no-settings]

The hosts are loopback addresses (127.0.0.1 to 127.0.0.12) of one sshd that the benchmark
starts on a port of its own and stops at the end (with the ssh connections ControlPersist kept),
each with a root of its own: every host is a connection of its own, as in a fleet. The app is
examples/app with one of two locks cut from the web stack (bench/web-requirements.txt, fetched
once): `small`, two small wheels (an archive of tens of KB, below the size where a thin copy
pays: the whole archive goes), and `web`, all 49 wheels (39 MB: code-only releases go as thin
copies that each host rebuilds into the archive). For each stack and fleet size, from fresh
roots:
  first deploy   nothing on the hosts yet (binaries, the whole archive, the env built)
  code-only      app.py changed, the same lock, flipped in batches of 25 %
  rerun          the same release again: nothing to do
  rollback       rollback.yml, in batches of 25 %
Seconds are the whole ansible-playbook run; bytes are what crossed the loopback interface
(/proc/net/dev), divided by the hosts. The fleet is held to ratios against a one-host
rollback.yml of the same run. Then the 12-host code-only release (first stack) under
ansible/ansible.cfg with one of its settings back at Ansible's default at a time, and the
per-task breakdown of each stack's 12-host code-only release (the callback
bench/ansible_callback/wheelship_timing.py).

All simulated hosts share this machine's cores and disk: what each host's tools do (rebuilding
and unpacking a 39 MB archive, for the web stack) is paid once per host here, where a real
fleet pays it once, in parallel.

PLAYBOOK is ansible-playbook (default: $WHEELSHIP_ANSIBLE_PLAYBOOK, else on PATH).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, HERE, ROOT, WORK, aside, build, empty_trash, env, lock, run  # noqa: E402
from deploy import git, lo_bytes  # noqa: E402

MAX_HOSTS = 12
CFG = os.path.join(ROOT, "ansible", "ansible.cfg")
# ssh's shared connections (ControlPersist) of the benchmark's runs, closed at the end.
CONTROL = os.path.join(WORK, "fleet-cp")
# One setting of ansible/ansible.cfg at a time back at Ansible's default.
SETTINGS = [
    ("ansible/ansible.cfg", {}),
    ("pipelining off (Ansible's default)", {"ANSIBLE_PIPELINING": "False"}),
    ("no ControlPersist (a connection per task)", {"ANSIBLE_SSH_ARGS": "-o ControlMaster=no"}),
    ("forks 5 (Ansible's default)", {"ANSIBLE_FORKS": "5"}),
    ("Ansible's defaults for all three", {"ANSIBLE_CONFIG": os.path.join(WORK, "fleet-empty.cfg")}),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """An sshd on 127.0.0.1..12, port of its own, keys of its own; stopped by its PID."""

    def __init__(self):
        self.dir = os.path.join(WORK, "fleet-sshd")
        aside(self.dir, CONTROL)
        os.makedirs(CONTROL)
        os.makedirs(self.dir, mode=0o700)
        os.makedirs("/run/sshd", exist_ok=True)
        for k in ("host_key", "user_key"):
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(self.dir, k)])
        shutil.copy(os.path.join(self.dir, "user_key.pub"), os.path.join(self.dir, "authorized_keys"))
        self.port = free_port()
        listen = "".join(f"ListenAddress 127.0.0.{i}\n" for i in range(1, MAX_HOSTS + 1))
        with open(os.path.join(self.dir, "sshd_config"), "w") as f:
            f.write(f"{listen}Port {self.port}\nHostKey {self.dir}/host_key\n"
                    f"AuthorizedKeysFile {self.dir}/authorized_keys\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
                    "UsePAM no\nMaxStartups 100\nMaxSessions 100\nSubsystem sftp internal-sftp\n")
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(self.dir, "sshd_config")],
                                     stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection((f"127.0.0.{MAX_HOSTS}", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        sys.exit("bench/fleet.py: the sshd did not come up")

    def stop(self):
        """The sshd, and the connections ControlPersist kept open to it."""
        for sock in os.listdir(CONTROL) if os.path.isdir(CONTROL) else []:
            subprocess.run(["ssh", "-o", f"ControlPath={os.path.join(CONTROL, sock)}", "-O", "exit", "x"],
                           stdin=subprocess.DEVNULL, capture_output=True)
        self.proc.terminate()
        self.proc.wait()


# The small stack: the web stack's lock cut to two small wheels without dependencies (an
# archive of tens of KB, like the release the fleet's targets were set on: below the size a
# thin copy pays, so the whole archive goes).
SMALL = {"blinker", "itsdangerous"}


def releases(full_lock, stack, n):
    """The first release of the stack and n code-only ones after it: their documents' paths."""
    lock = json.loads(full_lock)
    if stack == "small":
        lock["wheelhouse"]["wheels"] = [w for w in lock["wheelhouse"]["wheels"] if w["name"] in SMALL]
    app = os.path.join(WORK, f"fleet-app-{stack}")
    dist = os.path.join(WORK, f"fleet-dist-{stack}")
    aside(app, dist)
    shutil.copytree(os.path.join(ROOT, "examples", "app"), app)
    git(app, "init", "-q")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "v0")
    docs = []
    for i in range(n + 1):
        if i:
            with open(os.path.join(app, "app.py"), "a") as f:
                f.write(f"# code-only {i}\n")
            git(app, "commit", "-qam", f"v{i}")
        out = run([BIN + "/bundle", "pack", "--repo", app, "--out", dist], stdin=json.dumps(lock).encode())
        path = os.path.join(WORK, f"fleet-{stack}-v{i}.json")
        with open(path, "wb") as f:
            f.write(out)
        docs.append(path)
    return docs


class Fleet:
    def __init__(self, playbook, sshd, hosts, tag):
        self.playbook, self.hosts = playbook, hosts
        base = os.path.join(WORK, f"fleet-{tag}")
        aside(base)
        os.makedirs(base)
        self.base = base
        self.roots = [os.path.join(base, f"h{i}") for i in range(1, hosts + 1)]
        self.inventory = os.path.join(base, "inventory.ini")
        key = os.path.join(sshd.dir, "user_key")
        with open(self.inventory, "w") as f:
            f.write("[fleet]\n")
            for i, r in enumerate(self.roots, 1):
                f.write(f"h{i} ansible_host=127.0.0.{i} wheelship_root={r}\n")
            f.write(f"[fleet:vars]\nansible_port={sshd.port}\nansible_user=root\n"
                    f"ansible_ssh_private_key_file={key}\nansible_python_interpreter={sys.executable}\n"
                    "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR'\n"
                    "wheelship_check='venv/bin/python -c pass'\n")

    def play(self, book, extra=(), settings=None, timing=None):
        """Seconds and bytes per host of one ansible-playbook run."""
        e = env(WHEELSHIP_BIN=BIN, ANSIBLE_CONFIG=CFG, ANSIBLE_NOCOLOR="1",
                ANSIBLE_LOCAL_TEMP=os.path.join(self.base, "ansible-tmp"),
                ANSIBLE_CALLBACK_PLUGINS=os.path.join(HERE, "ansible_callback"),
                ANSIBLE_SSH_CONTROL_PATH_DIR=CONTROL, XDG_CACHE_HOME=os.path.join(WORK, "fleet-cache-home"))
        e.update(settings or {})
        if timing:
            e.update(ANSIBLE_CALLBACKS_ENABLED="wheelship_timing", WHEELSHIP_TIMING_OUT=timing)
        cmd = [self.playbook, "-i", self.inventory, os.path.join(ROOT, "ansible", book), *extra]
        subprocess.run(["sync"])
        before = lo_bytes()
        t = time.perf_counter()
        p = subprocess.run(cmd, env=e, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        secs = time.perf_counter() - t
        moved = lo_bytes() - before
        if p.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{p.stdout[-6000:]}{p.stderr[-3000:]}")
        return secs, moved / self.hosts

    def deploy(self, doc, **kw):
        return self.play("deploy.yml", ["-e", f"wheelship_release={doc}", "-e", "wheelship_serial=25%"], **kw)

    def rollback(self, **kw):
        return self.play("rollback.yml", ["-e", "wheelship_serial=25%"], **kw)

    def current(self):
        return {os.path.basename(os.readlink(os.path.join(r, "current"))) for r in self.roots}

    def bin_bytes(self):
        d = os.path.join(self.roots[0], "bin")
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


def breakdown(path):
    """The per-task table of one run: mean seconds on a host where the task ran, hosts."""
    with open(path) as f:
        t = json.load(f)
    rows, order = {}, []
    for r in t["tasks"]:
        k = (r["play"], r["task"])
        if k not in rows:
            order.append(k)
            rows[k] = []
        if r["status"] != "skipped":
            rows[k].append(r["seconds"])
    print("\n| play | task | hosts it ran on | mean seconds on a host |\n| --- | --- | --- | --- |")
    for k in order:
        v = rows[k]
        if v:
            print(f"| {k[0]} | {k[1]} | {len(v)} | {statistics.mean(v):.2f} |")
    print("\n| play | seconds |\n| --- | --- |")
    for p in t["plays"]:
        print(f"| {p['name']} | {p['seconds']:.2f} |")


def roll(playbook, sshd, stack, docs, sizes, runs, timing):
    """The four steps on each fleet size, `runs` times: {(n, step): [(seconds, bytes per host)]}."""
    res, bins = {}, {}
    want = json.load(open(docs[0]))["bundle"]["id"]
    for r in range(runs):
        for n in sizes:
            f = Fleet(playbook, sshd, n, f"{stack}-{n}-{r}")
            last = n == max(sizes) and r == runs - 1
            got = [f.deploy(docs[0]), f.deploy(docs[1], timing=timing if last else None),
                   f.deploy(docs[1]), f.rollback()]
            if f.current() != {want}:
                sys.exit(f"bench/fleet.py: after the rollback the hosts are on {f.current()}, not {want}")
            for s, v in zip(STEPS, got):
                res.setdefault((n, s), []).append(v)
            bins[n] = f.bin_bytes()
            print(f"{stack}, run {r + 1}, {n} hosts: " + ", ".join(f"{s} {v[0]:.1f} s" for s, v in zip(STEPS, got)),
                  file=sys.stderr, flush=True)
    return res, bins


def table(stack, docs, res, sizes, runs):
    med = statistics.median
    size = json.load(open(docs[0]))["bundle"]["size"]
    print(f"\n## fleet, {stack} stack: examples/app, archive {size / 1e3:,.0f} KB, batches of 25 %, medians of {runs} runs\n")
    print("| hosts | step | seconds | bytes per host |\n| --- | --- | --- | --- |")
    for n in sizes:
        for s in STEPS:
            v = res[(n, s)]
            print(f"| {n} | {s} | {med([x[0] for x in v]):.2f} s | {med([x[1] for x in v]) / 1e6:.3f} MB |")
    if 1 not in sizes:
        return
    one, big = med([x[0] for x in res[(1, "rollback")]]), max(sizes)
    print("\n| ratio | value | target |\n| --- | --- | --- |")
    for s, target in (("code-only", 6), ("rerun", 2)):
        print(f"| {big} hosts {s} / one-host rollback.yml | {med([x[0] for x in res[(big, s)]]) / one:.2f} | <= {target} |")


STEPS = ["first deploy", "code-only", "rerun", "rollback"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--hosts", default="1,4,12")
    ap.add_argument("--stacks", default="small,web", help="small (two small wheels), web (the web stack)")
    ap.add_argument("--playbook", default=os.environ.get("WHEELSHIP_ANSIBLE_PLAYBOOK") or shutil.which("ansible-playbook"))
    ap.add_argument("--no-settings", action="store_true", help="skip the table of ansible.cfg's settings")
    a = ap.parse_args()
    if not a.playbook:
        sys.exit("bench/fleet.py: no ansible-playbook (--playbook, or $WHEELSHIP_ANSIBLE_PLAYBOOK)")
    sizes = [int(n) for n in a.hosts.split(",")]
    stacks = a.stacks.split(",")
    if any(n < 1 or n > MAX_HOSTS for n in sizes) or not set(stacks) <= {"small", "web"}:
        sys.exit(f"bench/fleet.py: --hosts between 1 and {MAX_HOSTS}, --stacks of small and web")
    build()
    full_lock, _ = lock("web")
    docs = {s: releases(full_lock, s, 2 + (len(SETTINGS) * a.runs if s == stacks[0] and not a.no_settings else 0))
            for s in stacks}
    with open(os.path.join(WORK, "fleet-empty.cfg"), "w") as f:
        f.write("# Ansible's defaults\n")
    sshd = Sshd()
    out, settings, bins = {}, {}, {}
    try:
        for s in stacks:
            timing = os.path.join(WORK, f"fleet-timing-{s}.json")
            out[s], bins[s] = roll(a.playbook, sshd, s, docs[s], sizes, a.runs, timing)
        if not a.no_settings:
            # A code-only release each time, on the biggest fleet, first stack.
            f = Fleet(a.playbook, sshd, max(sizes), "settings")
            f.deploy(docs[stacks[0]][2])
            nxt = iter(docs[stacks[0]][3:])
            for r in range(a.runs):
                for name, env_ in SETTINGS:
                    settings.setdefault(name, []).append(f.deploy(next(nxt), settings=env_)[0])
                    print(f"settings, run {r + 1}: {name} {settings[name][-1]:.1f} s", file=sys.stderr, flush=True)
    finally:
        sshd.stop()
    for s in stacks:
        table(s, docs[s], out[s], sizes, a.runs)
    big = max(sizes)
    print(f"\n| binaries on a host (ROOT/bin) | {bins[stacks[0]][big] / 1e6:.1f} MB | <= 15 MB |")
    if settings:
        print(f"\n### {big} hosts, {stacks[0]} stack, a code-only release: ansible/ansible.cfg, one setting at Ansible's default\n")
        print("| settings | seconds |\n| --- | --- |")
        for name, v in settings.items():
            print(f"| {name} | {statistics.median(v):.2f} s |")
    for s in stacks:
        print(f"\n### where the time goes: {big} hosts, {s} stack, a code-only release (last run)")
        breakdown(os.path.join(WORK, f"fleet-timing-{s}.json"))
    empty_trash()


if __name__ == "__main__":
    main()
