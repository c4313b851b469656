"""Benchmark: bundle pack/unpack against the shell pipeline at the same zstd level.

    python3 bench/bundle.py [--runs N] [--level L] [--repo DIR]

The app is a git repository (default: this one) and the lock is the web stack's (49 wheels,
filled by bench/envs.py or here). The shell pipeline packs the same content:
  git archive --add-file=<each wheel> HEAD | zstd -T0 -L      and     tar -I zstd -xf
Medians of N interleaved runs; bundle unpack also verifies the sha256 and syncs, so the
baseline is given with and without a `sync -f` after tar.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, ".work")
BIN = os.path.join(ROOT, "target", "release")


def run(cmd, stdin=None, shell=False):
    p = subprocess.run(cmd, input=stdin, capture_output=True, shell=shell,
                       env={**os.environ, "WHEELSHIP_CACHE": os.path.join(WORK, "cache")})
    if p.returncode != 0:
        sys.exit(f"failed: {cmd}\n{p.stderr.decode()}")
    return p.stdout


def timed(fn):
    subprocess.run(["sync"])
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--level", type=int, default=10)
    ap.add_argument("--repo", default=ROOT)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    wh = os.path.join(WORK, "wh-web")
    doc = run([os.path.join(BIN, "hashreq"), os.path.join(HERE, "web-requirements.txt")])
    lock = run([os.path.join(BIN, "wheelhouse"), "--dir", wh], stdin=doc)
    wheels = [os.path.join(wh, w["file"]) for w in json.loads(lock)["wheelhouse"]["wheels"]]
    d = os.path.join(WORK, "bundle")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    times = {}

    def add(k, v):
        times.setdefault(k, []).append(v)

    lvl = str(a.level)
    add_files = " ".join(f"--add-file={w}" for w in wheels)
    for r in range(a.runs):
        out = os.path.join(d, "dist")
        shutil.rmtree(out, ignore_errors=True)
        add("bundle pack", timed(lambda: run([os.path.join(BIN, "bundle"), "pack", "--repo", a.repo, "--out", out, "--level", lvl], stdin=lock)))
        archive = next(os.path.join(out, f) for f in os.listdir(out))
        base = os.path.join(d, "base.tar.zst")
        add("git archive | zstd -T0", timed(lambda: run(f"git -C {a.repo} archive --format=tar {add_files} HEAD | zstd -q -T0 -{lvl} -f -o {base}", shell=True)))
        rel = os.path.join(d, "releases")
        shutil.rmtree(rel, ignore_errors=True)
        packed = run([os.path.join(BIN, "bundle"), "pack", "--repo", a.repo, "--out", out, "--level", lvl], stdin=lock)
        add("bundle unpack", timed(lambda: run([os.path.join(BIN, "bundle"), "unpack", "--releases", rel], stdin=packed)))
        x = os.path.join(d, "x")
        shutil.rmtree(x, ignore_errors=True)
        os.makedirs(x)
        add("tar -I zstd -xf", timed(lambda: run(["tar", "-I", "zstd", "-xf", base, "-C", x])))
        shutil.rmtree(x)
        os.makedirs(x)
        add("tar -I zstd -xf + sync -f", timed(lambda: run(f"tar -I zstd -xf {base} -C {x} && sync -f {x}", shell=True)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.3f}s" for k, v in times.items()), file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    size = os.path.getsize(archive)
    print(f"\n## bundle: {a.repo} at HEAD + {len(wheels)} wheels, zstd level {lvl}, medians of {a.runs} runs\n")
    print(f"archive: {size / 1e6:.1f} MB (shell pipeline: {os.path.getsize(base) / 1e6:.1f} MB)\n")
    print("| variant | median |\n| --- | --- |")
    for k, v in med.items():
        print(f"| {k.replace('|', chr(92) + '|')} | {v:.3f} s |")
    print("\n| ratio | value | target |\n| --- | --- | --- |")
    print(f"| bundle pack / (git archive \\| zstd -T0) | {med['bundle pack'] / med['git archive | zstd -T0']:.2f} | <= 1 |")
    print(f"| bundle unpack / tar -I zstd -xf | {med['bundle unpack'] / med['tar -I zstd -xf']:.2f} | <= 1 |")
    print(f"| bundle unpack / (tar -xf + sync -f) | {med['bundle unpack'] / med['tar -I zstd -xf + sync -f']:.2f} | <= 1 |")


main()
