"""What the benchmarks share: the release binaries, a clean environment for pip and uv, runs
that stop on the first failure, timing, the stacks' locks, and a trash for old outputs.

Old outputs are moved aside, never deleted between runs: on ext4 without a journal (these
machines), inodes freed in the last minutes make the next allocations several times slower,
and a benchmark that deletes as it goes times its own deletions. The trash is emptied once,
after all the runs.
"""
import itertools
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work")
BIN = os.path.join(ROOT, "target", "release")


def tool(name):
    return os.path.join(BIN, name)


def env(**extra):
    """The machine's environment without its PIP_*/UV_* settings (pip and uv read only what
    the benchmark gives them), with wheelship's cache under the work directory."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    e["PIP_CONFIG_FILE"] = os.devnull
    e["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    e["WHEELSHIP_CACHE"] = os.path.join(WORK, "cache")
    e.update(extra)
    return e


def run(cmd, stdin=None, **kw):
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=kw.pop("env", env()), **kw)
    if p.returncode != 0:
        shown = cmd if isinstance(cmd, str) else " ".join(cmd)
        sys.exit(f"failed: {shown}\n{p.stderr.decode()}")
    return p.stdout


def timed(fn):
    """Seconds `fn` takes, after a sync so that earlier writes do not land in its time."""
    subprocess.run(["sync"])
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def build():
    """The release binaries, up to date with this checkout."""
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)


def lock(stack):
    """The lock of bench/<stack>-requirements.txt (its wheels fetched once into the work
    directory): (document bytes, wheel directory)."""
    os.makedirs(WORK, exist_ok=True)
    wh = os.path.join(WORK, f"wh-{stack}")
    doc = run([tool("hashreq"), os.path.join(HERE, f"{stack}-requirements.txt")])
    return run([tool("wheelhouse"), "--dir", wh], stdin=doc), wh


_counter = itertools.count()
TRASH = os.path.join(WORK, f"trash-{os.getpid()}")


def aside(*paths):
    """Moves old outputs out of the way (into the trash), so that the next run starts clean."""
    os.makedirs(TRASH, exist_ok=True)
    for p in paths:
        if os.path.lexists(p):
            os.rename(p, os.path.join(TRASH, str(next(_counter))))


def empty_trash():
    """Deletes what was moved aside: once, after every run."""
    shutil.rmtree(TRASH, ignore_errors=True)


def median_table(title, times):
    import statistics
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n## {title}\n\n| variant | median |\n| --- | --- |")
    for k, v in med.items():
        print(f"| {k.replace('|', chr(92) + '|')} | {v * 1000:.0f} ms |" if v < 1 else f"| {k.replace('|', chr(92) + '|')} | {v:.2f} s |")
    return med


def dumps(doc):
    return json.dumps(doc).encode()
