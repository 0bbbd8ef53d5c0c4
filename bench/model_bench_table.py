#!/usr/bin/env python3
"""The markdown table of bench/run_model_bench.sh's JSON files, one per model and format, named
FAMILY-FORMAT.json (ouro-tiny-fp32.json, ouro-1.4b-rtn-w4a8.json, ...)."""
import json
import pathlib
import sys

d = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/bench_model")
runs = {p.stem: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}
family = lambda stem: "-".join(stem.split("-")[:2])
order = ["fp32", "rtn-w8a8", "rtn-w4a8", "quarot-rtn-w4a4"]
rank = lambda stem: (family(stem), next((i for i, f in enumerate(order) if stem.endswith(f)), 99))
print("| model | linears | loops | prefill tok/s | decode tok/s | decode vs fp32 | MB streamed/token | % of bandwidth limit | % of limit, interleaved | KV bytes/token | peak RSS GB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for stem in sorted(runs, key=rank):
    r = runs[stem]
    base = runs.get(family(stem) + "-fp32")
    for lp in r["loops"]:
        ref = next((x for x in base["loops"] if x["loops"] == lp["loops"]), None) if base else None
        speedup = f"{lp['decode_tok_s'] / ref['decode_tok_s']:.2f}x" if ref else "-"
        inter = f"{100 * lp['fraction_of_limit_interleaved']:.1f}%" if "fraction_of_limit_interleaved" in lp else "-"
        print(f"| {stem} | {r['linear_kind']} | {lp['loops']} | {lp['prefill_tok_s']:.1f} | {lp['decode_tok_s']:.3f} | "
              f"{speedup} | {lp['bytes_streamed_per_token'] / 1e6:.1f} | {100 * lp['fraction_of_limit']:.1f}% | "
              f"{inter} | "
              f"{lp['kv_bytes_per_token']:,} | {r['peak_rss_bytes'] / 1e9:.2f} |")
if runs:
    r = next(iter(runs.values()))
    bws = ", ".join(f"{s} {runs[s]['read_bandwidth_bytes_per_s'] / 1e9:.1f}" for s in sorted(runs, key=rank))
    print(f"\nCPU: {r['cpu']}; kernel path {r['kernel_path']}; {r['threads']} threads; medians of {r['repeats']} runs; "
          f"prefill {r['prefill_tokens']} tokens, decode {r['decode_tokens']} tokens. Read bandwidth (GB/s, measured "
          f"in each process after its runs): {bws}.")
