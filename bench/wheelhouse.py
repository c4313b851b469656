"""Benchmark: filling the wheel directory, wheelhouse against uv and pip on the same machine.

    python3 bench/wheelhouse.py [--runs N] [--uv PATH]

The web stack (bench/web-requirements.txt, 49 pins) from PyPI, three fills, each round:

  cold            an empty directory and empty caches (wheelship's, uv's, pip's)
  one more dep    the filled directory, the requirements plus `tabulate==0.9.0` (one wheel,
                  no dependencies); uv's cache empty, wheelship's the cold fill's (its
                  interpreter probes; its locks miss: a new request)
  two targets     this machine's Python and py3.12-manylinux_2_28_aarch64, into an empty
                  directory with empty caches

against, for each: `uv pip compile` (empty cache) plus downloading the same files with curl
(8 at a time; uv has no download), and `pip download` / `pip wheel` (an empty pip cache).
wheelhouse runs with uv as its resolver. pip and uv run with every PIP_*/UV_* setting of the
machine removed. Needs PyPI and curl; uv is installed into bench/.work/uvvenv unless --uv.
"""
import argparse
import os
import shutil
import sys
import tomllib

from common import WORK, aside, empty_trash, env, median_table, run, timed, tool, build, HERE

REQ = os.path.join(HERE, "web-requirements.txt")
ONE_MORE = "tabulate==0.9.0"
OTHER = "py3.12-manylinux_2_28_aarch64"


def uv_binary(given):
    if given:
        return given
    venv = os.path.join(WORK, "uvvenv")
    if not os.path.exists(os.path.join(venv, "bin", "uv")):
        run([sys.executable, "-m", "venv", venv])
        run([os.path.join(venv, "bin", "pip"), "install", "-q", "uv"], env={k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"})
    return os.path.join(venv, "bin", "uv")


class Round:
    """One round's directories, all fresh."""

    def __init__(self, base, uv):
        self.base, self.uv = base, uv
        os.makedirs(base)

    def d(self, name):
        return os.path.join(self.base, name)

    def env(self, tag, cache=None):
        return env(WHEELSHIP_CACHE=self.d(f"cache-{cache or tag}"), UV_CACHE_DIR=self.d(f"uv-{tag}"),
                   PIP_CACHE_DIR=self.d(f"pip-{tag}"))

    def wheelhouse(self, doc, wh, tag, *targets, cache=None):
        args = [tool("wheelhouse"), "--uv", self.uv, "--python", sys.executable, "--dir", wh]
        for t in targets:
            args += ["--target", t]
        return run(args, stdin=doc, env=self.env(tag, cache))

    def uv_compile(self, req, tag, out, target=None):
        # At its best for another target: binary wheels only, no managed Python fetched to
        # build with (as wheelhouse runs it).
        where = ["--python", sys.executable] if target is None else [
            "--python-version", "3.12", "--python-platform", "aarch64-manylinux_2_28", "--only-binary", ":all:", "--no-python-downloads"]
        run([self.uv, "pip", "compile", "-q", "--format", "pylock.toml", "--generate-hashes", *where, req, "-o", out], env=self.env(tag))

    def pip(self, tag, *args):
        run([sys.executable, "-m", "pip", *args], env=self.env(tag))


def urls(pylock, files):
    """The URL of each of `files` in uv's lock."""
    with open(pylock, "rb") as f:
        lock = tomllib.load(f)
    found = {}
    for p in lock["packages"]:
        for w in p.get("wheels", []):
            name = w["url"].rsplit("/", 1)[1]
            if name in files:
                found[name] = w["url"]
    missing = set(files) - set(found)
    if missing:
        sys.exit(f"uv's lock has no URL for {sorted(missing)}")
    return found


def curl(found, dest):
    os.makedirs(dest, exist_ok=True)
    args = ["curl", "-sS", "--fail", "--parallel", "--parallel-max", "8"]
    for name, url in found.items():
        args += ["-o", os.path.join(dest, name), url]
    run(args)


def files_of(doc):
    import json
    wh = json.loads(doc)["wheelhouse"]
    return {w["file"] for w in wh["wheels"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--uv")
    a = ap.parse_args()
    build()
    uv = uv_binary(a.uv)
    pip_version = run([sys.executable, "-m", "pip", "--version"]).decode().split()[1]
    print(f"# machine: {os.cpu_count()} cores; Python {sys.version.split()[0]}; pip {pip_version}; {run([uv, '--version']).decode().strip()}", flush=True)
    base = os.path.join(WORK, "wheelhouse")
    aside(base)
    os.makedirs(base)
    req2 = os.path.join(base, "requirements-one-more.txt")
    with open(REQ) as f, open(req2, "w") as g:
        g.write(f.read() + ONE_MORE + "\n")
    doc = run([tool("hashreq"), REQ])
    doc2 = run([tool("hashreq"), req2])
    times = {}

    def add(k, v):
        times.setdefault(k, []).append(v)

    for r in range(a.runs):
        R = Round(os.path.join(base, f"round-{r}"), uv)
        # cold
        out = {}
        add("cold: wheelhouse", timed(lambda: out.setdefault("doc", R.wheelhouse(doc, R.d("wh"), "c1"))))
        files = files_of(out["doc"])

        def uv_cold():
            R.uv_compile(REQ, "c2", R.d("pylock.cold.toml"))
            curl(urls(R.d("pylock.cold.toml"), files), R.d("curl-cold"))
        add("cold: uv pip compile + curl", timed(uv_cold))
        add("cold: pip wheel", timed(lambda: R.pip("c3", "wheel", "-q", "-w", R.d("pw"), "-r", REQ)))
        add("cold: pip download", timed(lambda: R.pip("c4", "download", "-q", "-d", R.d("pd"), "-r", REQ)))
        # one more dependency, into copies of the filled directories
        for src, dst in [("wh", "wh1"), ("pw", "pw1"), ("pd", "pd1")]:
            shutil.copytree(R.d(src), R.d(dst))
        out1 = {}
        add("one more dep: wheelhouse", timed(lambda: out1.setdefault("doc", R.wheelhouse(doc2, R.d("wh1"), "o1", cache="c1"))))
        new = files_of(out1["doc"]) - files

        def uv_one():
            R.uv_compile(req2, "o2", R.d("pylock.one.toml"))
            curl(urls(R.d("pylock.one.toml"), new), R.d("curl-one"))
        add("one more dep: uv pip compile + curl of the new file", timed(uv_one))
        add("one more dep: pip wheel (filled dir)", timed(lambda: R.pip("o3", "wheel", "-q", "-w", R.d("pw1"), "--find-links", R.d("pw1"), "-r", req2)))
        add("one more dep: pip download (filled dir)", timed(lambda: R.pip("o4", "download", "-q", "-d", R.d("pd1"), "--find-links", R.d("pd1"), "-r", req2)))
        # two targets
        out2 = {}
        add("two targets: wheelhouse, one run", timed(lambda: out2.setdefault("doc", R.wheelhouse(doc, R.d("wh2"), "t1", "native", OTHER))))

        def two_runs():
            R.wheelhouse(doc, R.d("wh3"), "t2", "native")
            R.wheelhouse(doc, R.d("wh3"), "t2", OTHER)
        add("two targets: wheelhouse, two one-target runs in a row", timed(two_runs))
        both = files_of(out2["doc"])

        def uv_two():
            R.uv_compile(REQ, "t3", R.d("pylock.native.toml"))
            R.uv_compile(REQ, "t3", R.d("pylock.other.toml"), target=OTHER)
            found = urls(R.d("pylock.native.toml"), both & files)
            found.update(urls(R.d("pylock.other.toml"), both - files))
            curl(found, R.d("curl-two"))
        add("two targets: uv pip compile x2 + curl", timed(uv_two))

        def pip_two():
            R.pip("t4", "download", "-q", "-d", R.d("pd2"), "-r", REQ)
            R.pip("t4", "download", "-q", "-d", R.d("pd2"), "--only-binary=:all:", "--python-version", "3.12",
                  "--implementation", "cp", "--abi", "cp312", "--platform", "manylinux_2_28_aarch64",
                  "--platform", "manylinux_2_17_aarch64", "--platform", "manylinux2014_aarch64", "-r", REQ)
        add("two targets: pip download x2", timed(pip_two))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr, flush=True)
        aside(R.base)
    med = median_table(f"wheelhouse: web stack ({len(files)} wheels) from PyPI, medians of {a.runs} runs", times)
    print("\n| ratio | value | target |\n| --- | --- | --- |")
    print(f"| one more dep: wheelhouse / (uv pip compile + curl of the new file) | {med['one more dep: wheelhouse'] / med['one more dep: uv pip compile + curl of the new file']:.2f} | <= 1.5 |")
    print(f"| cold: wheelhouse / pip wheel | {med['cold: wheelhouse'] / med['cold: pip wheel']:.2f} | <= 1 |")
    print(f"| two targets: one run / two one-target runs | {med['two targets: wheelhouse, one run'] / med['two targets: wheelhouse, two one-target runs in a row']:.2f} | < 1 |")
    print(f"| one more dep: wheelhouse / pip wheel (filled dir) | {med['one more dep: wheelhouse'] / med['one more dep: pip wheel (filled dir)']:.2f} | |")
    empty_trash()


main()
