"""Benchmark: what a deploy over ssh moves and how long it takes, thin copies against the
whole archive (`deploy --full`), on the web stack.

    python3 bench/deploy.py [--runs N] [--host HOST]

HOST is an ssh host (default: $WHEELSHIP_SSH_HOST, else `wheelship-test`, the loopback sshd
that .ci/run starts). The app is examples/app with the web stack's lock (bench/web-
requirements.txt, fetched once). Three releases, deployed in order to a fresh root:
  first deploy         nothing there yet (the binaries go too)
  code-only            app.py changed, the same lock
  one new dependency   the same code, one more wheel in the lock
Each sequence runs once with thin copies (the default) and once with --full, interleaved,
N times. Bytes are what crossed the loopback interface (ssh's own overhead included), from
/proc/net/dev; seconds are the whole `scripts/deploy`, mkenv and the switch included.
"""
import argparse
import json
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, ROOT, WORK, aside, build, empty_trash, env, lock, run, timed, tool  # noqa: E402

DROP = "structlog"  # the web stack's wheel that the third release adds


def lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name.strip() == "lo":
                return int(rest.split()[0])
    sys.exit("no loopback interface in /proc/net/dev")


def git(app, *args):
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args], cwd=app)


def releases(full_lock):
    """Packs the three releases: their documents' paths."""
    app = os.path.join(WORK, "deploy-app")
    dist = os.path.join(WORK, "deploy-dist")
    aside(app, dist)
    shutil.copytree(os.path.join(ROOT, "examples", "app"), app)
    git(app, "init", "-q")
    git(app, "add", "-A")
    git(app, "commit", "-qm", "v1")
    less = json.loads(full_lock)
    less["wheelhouse"]["wheels"] = [w for w in less["wheelhouse"]["wheels"] if w["name"] != DROP]
    docs = []

    def pack(doc, name):
        out = run([tool("bundle"), "pack", "--repo", app, "--out", dist], stdin=json.dumps(doc).encode())
        path = os.path.join(WORK, f"deploy-{name}.json")
        with open(path, "wb") as f:
            f.write(out)
        docs.append(path)

    pack(less, "v1")
    with open(os.path.join(app, "app.py"), "a") as f:
        f.write("# v2\n")
    git(app, "commit", "-qam", "v2")
    pack(less, "v2")
    pack(json.loads(full_lock), "v3")
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--host", default=os.environ.get("WHEELSHIP_SSH_HOST", "wheelship-test"))
    a = ap.parse_args()
    build()
    full_lock, _ = lock("web")
    docs = releases(full_lock)
    sizes = [json.load(open(d))["bundle"]["size"] for d in docs]
    steps = ["first deploy", "code-only", "one new dependency"]
    moved, secs = {}, {}
    deploy = os.path.join(ROOT, "scripts", "deploy")
    for r in range(a.runs):
        for mode in (["thin", "full"] if r % 2 == 0 else ["full", "thin"]):
            root = os.path.join(WORK, f"deploy-root-{mode}")
            aside(root)
            for step, doc in zip(steps, docs):
                cmd = [deploy, doc, f"{a.host}:{root}"] + (["--full"] if mode == "full" else [])
                before = lo_bytes()
                t = timed(lambda: run(cmd, env=env(WHEELSHIP_BIN=BIN)))
                moved.setdefault((mode, step), []).append(lo_bytes() - before)
                secs.setdefault((mode, step), []).append(t)
            print(f"round {r + 1} {mode}: " + ", ".join(
                f"{s} {moved[(mode, s)][-1] / 1e6:.2f} MB {secs[(mode, s)][-1]:.2f}s" for s in steps), file=sys.stderr, flush=True)
        aside(os.path.join(WORK, "deploy-root-thin"), os.path.join(WORK, "deploy-root-full"))
    med = lambda v: statistics.median(v)  # noqa: E731
    print(f"\n## deploy over ssh ({a.host}): web stack, archive {sizes[1] / 1e6:.1f} MB, medians of {a.runs} runs\n")
    print("| release | thin: moved | thin: seconds | --full: moved | --full: seconds |")
    print("| --- | --- | --- | --- | --- |")
    for s in steps:
        print(f"| {s} | {med(moved[('thin', s)]) / 1e6:.3f} MB | {med(secs[('thin', s)]):.2f} s "
              f"| {med(moved[('full', s)]) / 1e6:.3f} MB | {med(secs[('full', s)]):.2f} s |")
    code = med(moved[("thin", "code-only")])
    dep = med(moved[("thin", "one new dependency")])
    print("\n| ratio | value | target |\n| --- | --- | --- |")
    print(f"| code-only, thin: bytes moved / archive | {code / sizes[1] * 100:.2f} % | <= 2 % (or 1 MB) |")
    print(f"| one new dependency, thin: bytes moved / archive | {dep / sizes[2] * 100:.2f} % | |")
    # Over loopback the bytes cost nothing; on a link of 100 Mbit/s each MB costs 0.08 s more.
    at = lambda mode: med(secs[(mode, "code-only")]) + med(moved[(mode, "code-only")]) * 8 / 100e6  # noqa: E731
    print(f"| code-only, thin / --full seconds, over loopback | {med(secs[('thin', 'code-only')]) / med(secs[('full', 'code-only')]):.2f} | |")
    print(f"| code-only, thin / --full seconds, at 100 Mbit/s (loopback seconds + bytes moved at that rate) | {at('thin') / at('full'):.2f} | |")
    empty_trash()


if __name__ == "__main__":
    main()
