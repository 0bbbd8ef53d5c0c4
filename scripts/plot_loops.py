#!/usr/bin/env python3
"""Plots perplexity against loop index from `loopq eval ppl --json` files.
Usage: plot_loops.py OUT.png LABEL=RESULT.json [LABEL=RESULT.json ...]"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    out, series = sys.argv[1], sys.argv[2:]
    fig, ax = plt.subplots(figsize=(6, 4))
    for item in series:
        label, path = item.split("=", 1)
        r = json.load(open(path))
        loops = [p["loop"] for p in r["per_loop"]]
        ax.plot(loops, [p["ppl"] for p in r["per_loop"]], marker="o", label=label)
        for x, p in zip(loops, r["per_loop"]):
            ax.annotate(f"{p['ppl']:.1f}", (x, p["ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("loop readout")
    ax.set_ylabel("perplexity")
    ax.set_xticks(loops)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
