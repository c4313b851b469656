"""Benchmark: wheelhouse cold and cache-hit on the web stack, next to `pip wheel` on the same.

    python3 bench/wheelhouse.py [--runs N]

Cold: an empty wheel directory and an empty wheelship cache (pip's own HTTP cache is left as
the machine has it, the same for both). Cache hit: the same request again, unchanged.
Needs PyPI.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(os.path.dirname(HERE), "target", "release")
WORK = os.path.join(HERE, ".work", "wheelhouse")


def timed(cmd, stdin=None, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, input=stdin, capture_output=True, env=env)
    if p.returncode != 0:
        sys.exit(f"failed: {cmd}\n{p.stderr.decode()}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    req = os.path.join(HERE, "web-requirements.txt")
    doc = subprocess.run([os.path.join(BIN, "hashreq"), req], capture_output=True, check=True).stdout
    times = {}
    for r in range(a.runs):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        env = {**os.environ, "WHEELSHIP_CACHE": os.path.join(WORK, "cache")}
        wh = os.path.join(WORK, "wh")
        times.setdefault("wheelhouse cold", []).append(timed([os.path.join(BIN, "wheelhouse"), "--dir", wh], doc, env))
        times.setdefault("wheelhouse cache hit", []).append(timed([os.path.join(BIN, "wheelhouse"), "--dir", wh], doc, env))
        times.setdefault("wheelhouse --offline --no-cache", []).append(timed([os.path.join(BIN, "wheelhouse"), "--dir", wh, "--offline", "--no-cache"], doc, env))
        times.setdefault("pip wheel -w (empty dir)", []).append(timed([sys.executable, "-m", "pip", "wheel", "-q", "-w", os.path.join(WORK, "pw"), "-r", req]))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), file=sys.stderr, flush=True)
    print(f"\n## wheelhouse: web stack, medians of {a.runs} runs\n\n| variant | median |\n| --- | --- |")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"| {k} | {m * 1000:.0f} ms |" if m < 1 else f"| {k} | {m:.2f} s |")


main()
