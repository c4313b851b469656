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
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BIN, ROOT, WORK, aside, build, empty_trash, lock as stack_lock, run, timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--level", type=int, default=10)
    ap.add_argument("--repo", default=ROOT)
    a = ap.parse_args()
    build()
    lock, wh = stack_lock("web")
    wheels = [os.path.join(wh, w["file"]) for w in json.loads(lock)["wheelhouse"]["wheels"]]
    d = os.path.join(WORK, "bundle")
    aside(d)
    os.makedirs(d)
    times = {}

    def add(k, v):
        times.setdefault(k, []).append(v)

    lvl = str(a.level)
    add_files = " ".join(f"--add-file={w}" for w in wheels)
    for r in range(a.runs):
        out = os.path.join(d, "dist")
        aside(out)
        add("bundle pack", timed(lambda: run([os.path.join(BIN, "bundle"), "pack", "--repo", a.repo, "--out", out, "--level", lvl], stdin=lock)))
        archive = next(os.path.join(out, f) for f in os.listdir(out))
        base = os.path.join(d, "base.tar.zst")
        add("git archive | zstd -T0", timed(lambda: run(f"git -C {a.repo} archive --format=tar {add_files} HEAD | zstd -q -T0 -{lvl} -f -o {base}", shell=True)))
        rel = os.path.join(d, "releases")
        aside(rel)
        packed = run([os.path.join(BIN, "bundle"), "pack", "--repo", a.repo, "--out", out, "--level", lvl], stdin=lock)
        add("bundle unpack", timed(lambda: run([os.path.join(BIN, "bundle"), "unpack", "--releases", rel], stdin=packed)))
        x = os.path.join(d, "x")
        aside(x)
        os.makedirs(x)
        add("tar -I zstd -xf", timed(lambda: run(["tar", "-I", "zstd", "-xf", base, "-C", x])))
        aside(x)
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
    empty_trash()


main()
