"""Benchmark: building a virtualenv from a local wheelhouse, mkenv against pip and uv.

    python3 bench/envs.py [--runs N] [--stacks web,data]

Builds the release binaries' inputs in bench/.work (the wheelhouses are filled from PyPI the
first time, with wheelhouse itself), installs uv from PyPI into a venv there, then runs every
variant once per round, interleaved, on this machine, and prints the medians and the ratios.

Variants (each from scratch unless it says warm):
  pip            python -m venv + pip install --no-index --find-links (bytecode, as pip does)
  uv cold        uv venv + uv pip install --offline, empty cache  [--compile-bytecode]
  uv warm        the same with uv's cache already filled          [--compile-bytecode]
  mkenv cold     empty store                                       [--no-compile]
  mkenv warm     store filled by the full lock, new key (the lock less one wheel): a release
                 that changes one dependency
  mkenv reuse    the env exists
pip and uv run with every PIP_*/UV_* setting of the machine removed.
"""
import argparse
import json
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HERE, WORK, aside, build, empty_trash, env, lock, run, timed, tool  # noqa: E402

DROP = {"web": "structlog", "data": "seaborn"}


def prepare(stack):
    req = os.path.join(HERE, f"{stack}-requirements.txt")
    locked, wh = lock(stack)
    full = json.loads(locked)
    less = json.loads(locked)
    less["wheelhouse"]["wheels"] = [w for w in less["wheelhouse"]["wheels"] if w["name"] != DROP[stack]]
    assert len(less["wheelhouse"]["wheels"]) == len(full["wheelhouse"]["wheels"]) - 1
    return req, wh, json.dumps(full).encode(), json.dumps(less).encode(), len(full["wheelhouse"]["wheels"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stacks", default="web,data")
    a = ap.parse_args()
    build()
    os.makedirs(WORK, exist_ok=True)
    uvvenv = os.path.join(WORK, "uvvenv")
    if not os.path.exists(os.path.join(uvvenv, "bin", "uv")):
        run([sys.executable, "-m", "venv", uvvenv])
        run([os.path.join(uvvenv, "bin", "pip"), "install", "-q", "uv"], env={k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"})
    uv = os.path.join(uvvenv, "bin", "uv")
    uv_version = run([uv, "--version"]).decode().strip()
    pip_version = run([sys.executable, "-m", "pip", "--version"]).decode().split(" from ")[0]
    mkenv = tool("mkenv")
    py = shutil.which("python3")
    print(f"# machine: {os.cpu_count()} cores; {sys.version.split()[0]}; {pip_version}; {uv_version}", flush=True)
    tables = {}
    for stack in a.stacks.split(","):
        req, wh, full, less, n = prepare(stack)
        d = os.path.join(WORK, f"run-{stack}")
        times = {}

        def add(name, secs):
            times.setdefault(name, []).append(secs)

        def uvi(venv, cache, compile_):
            run([uv, "venv", "-q", "-p", py, venv], env={**env(), "UV_CACHE_DIR": cache})
            cmd = [uv, "pip", "install", "-q", "--offline", "--no-index", "--find-links", wh, "-r", req]
            if compile_:
                cmd.append("--compile-bytecode")
            run(cmd, env={**env(), "UV_CACHE_DIR": cache, "VIRTUAL_ENV": venv})

        warm_cache = os.path.join(d, "uv-warm-cache")
        aside(d)
        os.makedirs(d)
        uvi(os.path.join(d, "prime"), warm_cache, False)
        for r in range(a.runs):
            v = os.path.join(d, "v")
            aside(v)
            add("pip", timed(lambda: (run([py, "-m", "venv", v]), run([os.path.join(v, "bin", "pip"), "install", "-q", "--no-index", "--find-links", wh, "-r", req]))))
            for comp in (False, True):
                label = " --compile-bytecode" if comp else ""
                c = os.path.join(d, "uv-cold-cache")
                aside(v, c)
                add(f"uv cold{label}", timed(lambda: uvi(v, c, comp)))
                aside(v)
                add(f"uv warm{label}", timed(lambda: uvi(v, warm_cache, comp)))
            e = os.path.join(d, "envs")
            aside(e)
            add("mkenv cold --no-compile", timed(lambda: run([mkenv, "--envs", e, "--no-compile"], stdin=full)))
            aside(e)
            add("mkenv cold", timed(lambda: run([mkenv, "--envs", e], stdin=full)))
            add("mkenv warm (new key)", timed(lambda: run([mkenv, "--envs", e], stdin=less)))
            add("mkenv reuse", timed(lambda: run([mkenv, "--envs", e], stdin=less)))
            print(f"{stack} round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), file=sys.stderr, flush=True)
        med = {k: statistics.median(v) for k, v in times.items()}
        tables[stack] = (n, med)
        print(f"\n## {stack} stack ({n} wheels), medians of {a.runs} runs\n")
        print("| variant | median |")
        print("| --- | --- |")
        for k, v in med.items():
            print(f"| {k} | {v * 1000:.0f} ms |" if v < 1 else f"| {k} | {v:.2f} s |")
        ratios = [
            ("uv cold / mkenv cold --no-compile", med["uv cold"] / med["mkenv cold --no-compile"], ">= 1.2"),
            ("uv warm (no .pyc) / mkenv warm (new key, with .pyc)", med["uv warm"] / med["mkenv warm (new key)"], ">= 1.25"),
            ("uv cold --compile-bytecode / mkenv cold", med["uv cold --compile-bytecode"] / med["mkenv cold"], ">= 1.0"),
            ("pip / mkenv cold", med["pip"] / med["mkenv cold"], ""),
            ("mkenv reuse (ms)", med["mkenv reuse"] * 1000, "<= 10"),
        ]
        print("\n| ratio | value | target |")
        print("| --- | --- | --- |")
        for name, val, target in ratios:
            print(f"| {name} | {val:.2f} | {target} |")
        sys.stdout.flush()
    empty_trash()


main()
