#!/usr/bin/env python3
"""Plots per-loop activation statistics from `loopq calib-stats --json`.
Usage: plot_calib_stats.py STATS.json OUT.png
Left: largest channel absmax of every linear input, by loop. Middle: mean channel kurtosis, by
loop. Right: per-channel absmax of the input with the largest cross-loop spread, one line per loop
(channels sorted by their loop-1 value)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    stats, out = json.load(open(sys.argv[1])), sys.argv[2]
    inputs = stats["inputs"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    colors = {"attn_in": "tab:blue", "o_in": "tab:orange", "mlp_in": "tab:green", "down_in": "tab:red"}
    for e in inputs:
        loops = [p["loop"] for p in e["per_loop"]]
        style = dict(color=colors[e["input"]], alpha=0.5 + 0.5 * e["layer"] / max(1, len(inputs) // 4 - 1),
                     marker="o", ms=3, label=f"L{e['layer']} {e['input']}")
        axes[0].plot(loops, [p["absmax_max"] for p in e["per_loop"]], **style)
        axes[1].plot(loops, [p["kurtosis_mean"] for p in e["per_loop"]], **style)
    for ax, title in zip(axes[:2], ["largest channel absmax", "mean channel kurtosis"]):
        ax.set_xlabel("loop")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xticks(loops)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=6, ncol=2)
    worst = max(inputs, key=lambda e: e["absmax_spread"])
    order = sorted(range(len(worst["per_loop"][0]["absmax"])), key=lambda j: -worst["per_loop"][0]["absmax"][j])
    for p in worst["per_loop"]:
        axes[2].plot([p["absmax"][j] for j in order], lw=0.8, label=f"loop {p['loop']}")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("channel (sorted by loop-1 absmax)")
    axes[2].set_title(f"layer {worst['layer']} {worst['input']}: spread {worst['absmax_spread']:.2f}")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
