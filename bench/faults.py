"""Faults in a host's deploy, revert and prune, then the next run: does it bring the root back
to whole? `--mode kill` (kill -9 at random moments, described below), `--mode syscalls`
(SIGKILL at chosen calls of each mutating syscall, with `strace --inject`), `--mode disk` (a
full tmpfs, bytes then inodes, at points spread over what a deploy writes; needs root).

    python3 bench/faults.py [--mode kill|syscalls|disk] [--runs N] [--points N] [--seed S]
                            [--bin DIR] [--work DIR]

Three releases of a small app (wheels made here, a different lock each, so a deploy builds
an env once prune has removed that release's), deployed in turn through the host door (`wheelship-host deploy ROOT ARCHIVE`, which
runs bundle unpack, mkenv and switch) onto one root. Each run starts one step (a deploy of the
release not live, a revert, or a flip with pruning) in its own process group and SIGKILLs the
whole group at a random moment of the time that step takes undisturbed, then runs the step
again without a fault. A run is broken when that second run fails, when `current` is not the
release it should be, when the app does not import in `current`'s env, or when the root holds
what no later run removes (a temp name, a staging directory) after it. Prints a line per
broken run and a summary; exits 1 when one is broken.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

VERSIONS = ("1.0", "2.0", "3.0")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def sh(cmd, env, stdin=None, check=True):
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env, text=True)
    if check and p.returncode != 0:
        sys.exit(f"faults.py: {' '.join(cmd)} failed:\n{p.stderr}")
    return p


def releases(work, env):
    """Three releases with different locks: their documents."""
    wh, app, dist = (os.path.join(work, d) for d in ("wheels", "app", "dist"))
    for d in (wh, app):
        os.makedirs(d)
    spec = [
        {"name": "greeter", "version": v, "requires": ["colors>=1"],
         "files": {"greeter/__init__.py": f"from colors import paint\nV = '{v}'\n"}}
        for v in VERSIONS
    ] + [{"name": "colors", "version": "1.0", "files": {"colors/__init__.py": "def paint(s):\n    return s\n"}}]
    sh(["python3", os.path.join(REPO, "tests/support/mkwheel.py"), wh], env, json.dumps(spec))
    docs = []
    for i, v in enumerate(VERSIONS):
        with open(os.path.join(app, "requirements.txt"), "w") as f:
            f.write(f"greeter=={v}\n")
        with open(os.path.join(app, "app.py"), "w") as f:
            f.write("import greeter\nprint(greeter.V)\n")
        if i == 0:
            sh(["git", "init", "-q", app], env)
        sh(["git", "-C", app, "add", "-A"], env)
        sh(["git", "-C", app, "-c", "user.name=b", "-c", "user.email=b@example.invalid",
            "commit", "-qm", f"v{v}"], env)
        out = sh([os.path.join(REPO, "scripts/release"), "--offline", "--wheelhouse", wh,
                  "--out", dist, app], env).stdout
        docs.append(json.loads(out))
        time.sleep(1.1)  # release ids are by the second
    return docs


def step(env, root, what, doc):
    if what == "deploy":
        return [os.path.join(env["WHEELSHIP_BIN"], "wheelship-host"), "deploy", root,
                doc["bundle"]["path"]], json.dumps(doc)
    if what == "revert":
        return [os.path.join(env["WHEELSHIP_BIN"], "wheelship-host"), "revert", root], ""
    return [os.path.join(env["WHEELSHIP_BIN"], "switch"), "prune", "--root", root, "--keep", "1",
            "--grace", "0"], ""


def killed(cmd, stdin, env, after):
    """Runs `cmd` in its own process group and SIGKILLs the group after `after` seconds."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env, text=True, start_new_session=True)
    try:
        p.stdin.write(stdin)
        p.stdin.close()
    except BrokenPipeError:
        pass
    try:
        p.wait(timeout=after)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        return True


def current(root):
    try:
        return os.path.basename(os.readlink(os.path.join(root, "current")))
    except OSError:
        return None


def leftovers(root):
    """Names the door and the tools use only while they work."""
    out = []
    for d in ("releases", "envs", "incoming", "."):
        try:
            names = os.listdir(os.path.join(root, d))
        except OSError:
            continue
        out += [f"{d}/{n}" for n in names if n.startswith((".tmp-", ".staging-", ".trash-"))]
    return out


def verify(root, what, doc, again, bindir, env):
    """Why the root is not whole after `again` (the undisturbed rerun): an empty list if it is."""
    why = []
    if again.returncode != 0 and not (what == "revert" and "nothing to revert" in again.stderr):
        why.append(f"the rerun failed: {again.stderr.strip().splitlines()[-1:]}")
    if what == "deploy" and current(root) != doc["bundle"]["id"]:
        why.append(f"current is {current(root)}, not {doc['bundle']['id']}")
    imp = subprocess.run([os.path.join(root, "current/venv/bin/python"), "-c", "import greeter, colors"],
                         capture_output=True, text=True)
    if imp.returncode != 0:
        why.append(f"the app does not import: {imp.stderr.strip().splitlines()[-1:]}")
    # What is left once a later run has cleaned: a list of the root runs the cleaning.
    sh([os.path.join(bindir, "wheelship-host"), "list", root], env, check=False)
    left = leftovers(root)
    if left:
        why.append(f"left behind: {left}")
    return why


class Campaign:
    def __init__(self, a, env, docs, root):
        self.a, self.env, self.docs, self.root = a, env, docs, root
        self.ids = [d["bundle"]["id"] for d in docs]
        self.broken, self.faults, self.runs = [], 0, 0

    def next_doc(self):
        """The release deployed longest ago (its env pruned by then: a deploy that builds)."""
        live = current(self.root)
        start = self.ids.index(live) + 1 if live in self.ids else 0
        order = [self.docs[(start + i) % len(self.docs)] for i in range(len(self.docs))]
        absent = [d for d in order
                  if not os.path.isdir(os.path.join(self.root, "releases", d["bundle"]["id"]))]
        return (absent or order)[0]

    def prepare(self, what):
        """Puts the root where `what` has work to do: a deploy builds an env, a revert and a
        prune have a release to act on."""
        if what == "deploy":
            sh(step(self.env, self.root, "prune", None)[0], self.env)
            # The pruned release's wheels out of the store too: the deploy stores and compiles.
            sh([os.path.join(self.a.bin, "mkenv"), "gc", "--envs", os.path.join(self.root, "envs"),
                "--releases", os.path.join(self.root, "releases"), "--grace", "0"], self.env)
        else:
            doc = self.next_doc()
            sh(step(self.env, self.root, "deploy", doc)[0], self.env, json.dumps(doc))

    def check(self, label, what, doc, faulted):
        self.runs += 1
        self.faults += bool(faulted)
        cmd, stdin = step(self.env, self.root, what, doc)
        again = sh(cmd, self.env, stdin, check=False)
        why = verify(self.root, what, doc, again, self.a.bin, self.env)
        if why:
            self.broken.append(label)
            print(f"{label}: " + "; ".join(why))
            # Start the next run from a whole root.
            shutil.rmtree(self.root, ignore_errors=True)
            sh(step(self.env, self.root, "deploy", self.docs[0])[0], self.env, json.dumps(self.docs[0]))


def kills(c, rng, full):
    """kill -9 of the step's process group at a random moment of its undisturbed time."""
    for n in range(c.a.runs):
        what = rng.choice(["deploy", "deploy", "revert", "prune"])
        doc = c.next_doc()
        cmd, stdin = step(c.env, c.root, what, doc)
        at = rng.uniform(0, full[what])
        c.check(f"run {n}: {what} killed at {at:.3f}s", what, doc, killed(cmd, stdin, c.env, at))


MUTATING = ("rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "mkdir", "mkdirat",
            "symlink", "symlinkat", "link", "linkat", "fsync", "fdatasync", "syncfs")


def traced(cmd, stdin, env, strace_args):
    """Runs `cmd` under strace in its own process group; ends the group once strace returns
    (a fault kills one process: what it started dies with the step, as with a crash)."""
    p = subprocess.Popen(["strace", "-f", "-qq", *strace_args, "--", *cmd], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True,
                         start_new_session=True)
    _, err = p.communicate(stdin)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return p.returncode, err


def counts(c, what):
    """How many times the step makes each mutating syscall, over all its processes."""
    c.prepare(what)
    doc = c.next_doc()
    cmd, stdin = step(c.env, c.root, what, doc)
    out = os.path.join(c.a.work, "counts.txt")
    rc, err = traced(cmd, stdin, c.env, ["-c", "-o", out, "-e", "trace=" + ",".join(MUTATING)])
    if rc != 0:
        sys.exit(f"faults.py: {what} under strace failed:\n{err}")
    n = {}
    for line in open(out):
        f = line.split()  # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and f[-1] in MUTATING:
            n[f[-1]] = int(f[3])
    return n


def syscalls(c, rng):
    """SIGKILL at the k-th call of each mutating syscall (per process, as strace counts), k
    spread over the calls the step makes."""
    for what in ("deploy", "revert", "prune"):
        n = counts(c, what)
        print(f"{what}: " + ", ".join(f"{k} {v}" for k, v in sorted(n.items())), flush=True)
        for sc, total in sorted(n.items()):
            ks = sorted(set([1, total] + [rng.randint(1, total) for _ in range(c.a.points - 2)]))
            for k in ks[: c.a.points]:
                c.prepare(what)
                doc = c.next_doc()
                cmd, stdin = step(c.env, c.root, what, doc)
                rc, _ = traced(cmd, stdin, c.env, ["-o", "/dev/null", "-e", "trace=" + sc,
                                                   "-e", f"inject={sc}:signal=KILL:when={k}"])
                c.check(f"{what}: SIGKILL at {sc} #{k}", what, doc, rc != 0)


def disk(c, rng, mount):
    """A full disk (bytes, then inodes) at each point of a deploy: the root's tmpfs shrunk to
    what it holds plus a little, the deploy run, the space given back, the deploy run again."""
    def usage():
        st = os.statvfs(mount)
        return (st.f_blocks - st.f_bfree) * st.f_frsize, st.f_files - st.f_ffree

    def remount(opts):
        subprocess.run(["mount", "-o", "remount," + opts, mount], check=True)

    c.prepare("deploy")
    before = usage()
    doc = c.next_doc()
    sh(step(c.env, c.root, "deploy", doc)[0], c.env, json.dumps(doc))
    after = usage()
    need = (max(after[0] - before[0], 64 << 10), max(after[1] - before[1], 8))
    for kind, i in [("bytes", 0), ("inodes", 1)]:
        for n in range(c.a.points):
            c.prepare("deploy")
            used = usage()[i]
            extra = int(need[i] * 1.2 * (n + 0.5) / c.a.points)
            remount(f"size={(used + extra) // 1024 + 1}k" if i == 0 else f"nr_inodes={used + extra}")
            doc = c.next_doc()
            cmd, stdin = step(c.env, c.root, "deploy", doc)
            failed = sh(cmd, c.env, stdin, check=False).returncode != 0
            remount("size=512m,nr_inodes=1000000")
            c.check(f"deploy: disk full at {extra} {kind} left", "deploy", doc, failed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["kill", "syscalls", "disk"], default="kill",
                    help="kill -9 at random moments; SIGKILL at chosen syscalls (strace --inject); "
                         "a full disk at each point of a deploy (a tmpfs, needs root)")
    ap.add_argument("--runs", type=int, default=60, help="kill: how many kills")
    ap.add_argument("--points", type=int, default=6,
                    help="syscalls: calls per syscall and step; disk: points per kind")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.environ.get("WHEELSHIP_BIN", os.path.join(REPO, "target/release")))
    ap.add_argument("--work")
    a = ap.parse_args()
    keep = a.work is not None
    a.work = a.work or tempfile.mkdtemp(prefix="wheelship-faults-")
    os.makedirs(a.work, exist_ok=True)
    a.bin = os.path.abspath(a.bin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(WHEELSHIP_BIN=a.bin, WHEELSHIP_CACHE=os.path.join(a.work, "cache"),
               PATH=a.bin + os.pathsep + env.get("PATH", ""))
    docs = releases(a.work, env)
    root = os.path.join(a.work, "srv")
    mount = None
    if a.mode == "disk":
        mount = os.path.join(a.work, "disk")
        os.makedirs(mount)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m,nr_inodes=1000000,mode=0755",
                        "tmpfs", mount], check=True)
        root = os.path.join(mount, "srv")
    rng = random.Random(a.seed)
    c = Campaign(a, env, docs, root)
    try:
        # The time each step takes undisturbed, once.
        full = {}
        for what, doc in [("deploy", d) for d in docs] + [("revert", None), ("prune", None)]:
            cmd, stdin = step(env, root, what, doc)
            t = time.perf_counter()
            sh(cmd, env, stdin)
            full[what] = max(full.get(what, 0), time.perf_counter() - t)
        {"kill": lambda: kills(c, rng, full), "syscalls": lambda: syscalls(c, rng),
         "disk": lambda: disk(c, rng, mount)}[a.mode]()
    finally:
        if mount:
            subprocess.run(["umount", "-l", mount])
    print(f"faults.py --mode {a.mode}: {c.runs} runs, {c.faults} faulted mid-step, "
          f"{len(c.broken)} broken (steps undisturbed: "
          + ", ".join(f"{k} {v:.2f}s" for k, v in full.items()) + ")")
    if not keep:
        shutil.rmtree(a.work, ignore_errors=True)
    sys.exit(1 if c.broken else 0)


if __name__ == "__main__":
    main()
