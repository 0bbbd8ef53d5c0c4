#!/usr/bin/env python3
"""Renders the static-PTQ results (JSON files written by scripts/ptq_table.sh) as Markdown.

usage: ptq_table.py DIR [--out DIR/table.md]
Main metric per task as in QuaRot/FlatQuant (quantization-reference.md section 4.7): acc_norm
where it exists (arc, hellaswag, piqa, openbookqa), acc otherwise (winogrande, boolq, lambada);
MMLU macro accuracy over subjects. avg = plain mean of those nine numbers.
"""
import json
import os
import sys

METHODS = ["rtn", "smoothquant", "gptq", "quarot-rtn", "quarot-gptq"]
CONFIGS = [("w8a8", "W8A8"), ("w4a16", "W4A16"), ("w4a8", "W4A8"), ("w4a4", "W4A4-KV16"), ("w4a4kv4", "W4A4-KV4")]
TASKS = [("arc_easy", "acc_norm", "ARC-e"), ("arc_challenge", "acc_norm", "ARC-c"), ("hellaswag", "acc_norm", "HS"),
         ("piqa", "acc_norm", "PIQA"), ("winogrande", "acc", "WG"), ("boolq", "acc", "BoolQ"),
         ("lambada", "acc", "LAMB"), ("openbookqa", "acc_norm", "OBQA"), ("mmlu", "acc_macro", "MMLU")]


def load(d, name, kind):
    p = os.path.join(d, f"{name}.{kind}.json")
    return json.load(open(p)) if os.path.exists(p) else None


def row(d, name, label):
    c, w, t, q = (load(d, name, k) for k in ("corpus", "wikitext2", "tasks", "quant"))
    if not (c and w and t):
        return None
    cells = [label, f"{c['ppl']:.2f}", f"{w['ppl']:.1f}"]
    cells += [f"{p['ppl']:.2f}" for p in c["per_loop"]]
    scores = []
    for task, metric, _ in TASKS:
        v = t["tasks"].get(task, {}).get(metric)
        scores.append(v)
        cells.append("-" if v is None else f"{100 * v:.1f}")
    valid = [s for s in scores if s is not None]
    cells.append(f"{100 * sum(valid) / len(valid):.1f}" if valid else "-")
    lamb = t["tasks"].get("lambada", {}).get("ppl")
    cells.append("-" if lamb is None else f"{lamb:.0f}")
    cells.append("-" if q is None else f"{q.get('quantize_seconds', 0):.1f}")
    return cells, c, w, t


def main():
    d = sys.argv[1]
    out = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--out" else os.path.join(d, "table.md")
    fp = row(d, "fp", "FP32")
    if fp is None:
        sys.exit(f"{d}: FP results missing")
    _, c, w, t = fp
    loops = len(c["per_loop"])
    head = ["method", "corpus ppl", "wiki2 ppl"] + [f"L{i + 1}" for i in range(loops)] + \
        [x[2] for x in TASKS] + ["avg", "LAMB ppl", "quant s"]
    lines = [f"Corpus test: {c['tokens']} scored tokens in {c['windows']} windows of {c['seqlen']}; "
             f"WikiText-2 test: {w['tokens']} tokens in {w['windows']} windows; tasks: "
             + ", ".join(f"{k} {v['docs']}" for k, v in t["tasks"].items()) + " docs. "
             "L1..L4: corpus-test perplexity of each loop's readout.", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    lines.append("| " + " | ".join(fp[0]) + " |")
    for key, label in CONFIGS:
        lines.append("| **" + label + "** |" + " |" * (len(head) - 1))
        for m in METHODS:
            r = row(d, f"{m}-{key}", m)
            lines.append("| " + " | ".join(r[0] if r else [m] + ["(not run)"] + [""] * (len(head) - 2)) + " |")
    text = "\n".join(lines) + "\n"
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    print(text)


if __name__ == "__main__":
    main()
