#!/usr/bin/env python3
"""SQNR of per-token symmetric int4 quantization (grid -8..7, scale = clip * absmax / 7) on
Gaussian rows, the distribution a randomized Hadamard leaves: at the quantizer's clip 0.9, at
other fixed clips, and with an oracle that picks each row's best clip. It bounds what any
activation clip or scale parameter can gain on rotated activations (RESULTS section 7).

    python3 scripts/int4_gaussian_floor.py [--dim 256] [--rows 600] [--seed 0]
"""
import argparse
import math
import random


def row_error(row, scale):
    return sum((max(-8, min(7, round(v / scale))) * scale - v) ** 2 for v in row)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.dim < 2 or a.rows < 1:
        raise SystemExit("int4_gaussian_floor.py: --dim >= 2 and --rows >= 1")
    rng = random.Random(a.seed)
    rows = [[rng.gauss(0, 1) for _ in range(a.dim)] for _ in range(a.rows)]
    signal = sum(v * v for r in rows for v in r)
    absmax = [max(abs(v) for v in r) for r in rows]
    db = lambda err: 10 * math.log10(signal / err)
    for clip in (0.7, 0.8, 0.9, 1.0):
        err = sum(row_error(r, clip * m / 7) for r, m in zip(rows, absmax))
        print(f"clip {clip:.2f}: {db(err):6.2f} dB")
    grid = [i / 100 for i in range(50, 101)]
    oracle = sum(min(row_error(r, c * m / 7) for c in grid) for r, m in zip(rows, absmax))
    print(f"per-row oracle clip: {db(oracle):6.2f} dB")


if __name__ == "__main__":
    main()
