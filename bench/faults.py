"""kill -9 at random points of a host's deploy, revert and prune, then the next run: does it
bring the root back to whole?

    python3 bench/faults.py [--runs N] [--seed S] [--bin DIR] [--work DIR]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bin", default=os.environ.get("WHEELSHIP_BIN", os.path.join(REPO, "target/release")))
    ap.add_argument("--work")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="wheelship-faults-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(WHEELSHIP_BIN=os.path.abspath(a.bin), WHEELSHIP_CACHE=os.path.join(work, "cache"),
               PATH=os.path.abspath(a.bin) + os.pathsep + env.get("PATH", ""))
    docs = releases(work, env)
    root = os.path.join(work, "srv")
    rng = random.Random(a.seed)
    # The time each step takes undisturbed, once.
    full = {}
    for what, doc in [("deploy", d) for d in docs] + [("revert", None), ("prune", None)]:
        cmd, stdin = step(env, root, what, doc)
        t = time.perf_counter()
        sh(cmd, env, stdin)
        full[what] = max(full.get(what, 0), time.perf_counter() - t)
    # A fresh env each time a deploy builds one: the envs are removed by prune.
    broken, kills = [], 0
    ids = [d["bundle"]["id"] for d in docs]
    for n in range(a.runs):
        what = rng.choice(["deploy", "deploy", "revert", "prune"])
        # The release deployed longest ago (its env pruned by then: a deploy that builds).
        live = current(root)
        doc = docs[(ids.index(live) + 1) % len(docs)] if live in ids else docs[0]
        cmd, stdin = step(env, root, what, doc)
        at = rng.uniform(0, full[what])
        kills += killed(cmd, stdin, env, at)
        again = sh(cmd, env, stdin, check=False)
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
        sh([os.path.join(a.bin, "wheelship-host"), "list", root], env, check=False)
        left = leftovers(root)
        if left:
            why.append(f"left behind: {left}")
        if why:
            broken.append((n, what, round(at, 3), why))
            print(f"run {n}: {what} killed at {at:.3f}s: " + "; ".join(why))
            # Start the next run from a whole root.
            shutil.rmtree(root, ignore_errors=True)
            sh(step(env, root, "deploy", docs[0])[0], env, json.dumps(docs[0]))
    print(f"faults.py: {a.runs} runs, {kills} killed mid-step, {len(broken)} broken "
          f"(steps undisturbed: " + ", ".join(f"{k} {v:.2f}s" for k, v in full.items()) + ")")
    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
