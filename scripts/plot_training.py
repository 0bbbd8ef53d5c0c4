#!/usr/bin/env python3
"""Plots a loopq train_log.csv: training CE (smoothed) and validation perplexity per loop.
Usage: plot_training.py TRAIN_LOG.csv OUT.png [--title TEXT]"""
import argparse
import csv
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.log)))
    loops = sum(1 for k in rows[0] if k.startswith("train_ce_loop"))
    steps = [int(r["step"]) for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for t in range(1, loops + 1):
        ce = [float(r[f"train_ce_loop{t}"]) for r in rows]
        smooth, s = [], None
        for v in ce:  # exponential moving average, for readability only
            s = v if s is None else 0.95 * s + 0.05 * v
            smooth.append(math.exp(s))
        ax1.plot(steps, smooth, label=f"loop {t}")
        vs = [(int(r["step"]), math.exp(float(r[f"valid_ce_loop{t}"]))) for r in rows if r[f"valid_ce_loop{t}"]]
        ax2.plot([x for x, _ in vs], [y for _, y in vs], marker=".", label=f"loop {t}")
    for ax, name in ((ax1, "train perplexity (EMA of batch CE)"), (ax2, "valid perplexity")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(a.title)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)


if __name__ == "__main__":
    main()
