#!/usr/bin/env python3
"""Renders the LoopQ ablation (JSON files written by scripts/loopq_table.sh) as Markdown.

usage: loopq_table.py DIR [--out DIR/table.md]
One table per activation mode and bit setting. Columns: corpus-test perplexity (and how many
windows), WikiText-2 and held-out (tiny-shakespeare) perplexity, per-loop corpus perplexity L1..LT,
top-1 next-token accuracy on corpus test, the nine-task average, adaptation bytes (and % of the
model's bytes), quantize wall time, and the share of the reference row's excess perplexity that a
row removes: (ref - row) / (ref - FP), against the strongest static baseline (best of the five)
and against learned-static.
"""
import json
import os
import sys

# "+T": with the closed-form input-shaping transforms (--input-transform); "+TK" also with the KV
# cache's key transform (--kv-transform k). A static method with them is a static baseline too
# (loopq-method.md section 3).
BASELINES = ["rtn", "smoothquant", "gptq", "quarot-rtn", "quarot-gptq", "quarot-gptq+T", "quarot-gptq+TK"]
ROWS = BASELINES + ["learned-static", "loopq-A", "loopq-AB", "loopq-ABC", "loopq-ABCD",
                    "learned-static+T", "loopq-A+T", "loopq-AB+T", "loopq-ABC+T", "loopq-ABD+T", "loopq-ABCD+T",
                    "learned-static+TK", "loopq-A+TK", "loopq-ABCD+TK"]
CONFIGS = [("w4a4", "W4A4-KV16"), ("w4a4kv4", "W4A4-KV4"), ("w4a8", "W4A8"), ("w4a16", "W4A16")]
TASKS = [("arc_easy", "acc_norm"), ("arc_challenge", "acc_norm"), ("hellaswag", "acc_norm"), ("piqa", "acc_norm"),
         ("winogrande", "acc"), ("boolq", "acc"), ("lambada", "acc"), ("openbookqa", "acc_norm"), ("mmlu", "acc_macro")]


def load(d, name, kind):
    p = os.path.join(d, f"{name}.{kind}.json")
    return json.load(open(p)) if os.path.exists(p) else None


def task_avg(t):
    if not t:
        return None
    vals = [t["tasks"].get(k, {}).get(m) for k, m in TASKS]
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def fmt(v, spec, scale=1.0):
    return "-" if v is None else format(v * scale, spec)


def removed(ref, row, fp):
    if ref is None or row is None or ref <= fp:
        return None
    return (ref - row) / (ref - fp)


def render(d):
    fp = load(d, "fp", "corpus")
    if not fp:
        return "no FP results yet\n"
    fp_ppl = fp["ppl"]
    loops = len(fp["per_loop"])
    out = []
    fpw, fph = load(d, "fp", "wikitext2"), load(d, "fp", "heldout")
    out.append(f"FP: corpus test {fp_ppl:.2f} ({fp['windows']} windows), WikiText-2 "
               f"{fmt(fpw and fpw['ppl'], '.1f')}, held-out {fmt(fph and fph['ppl'], '.1f')}, "
               f"top-1 {fmt(fp.get('top1'), '.2f', 100)}%, per loop "
               + " / ".join(f"{p['ppl']:.2f}" for p in fp["per_loop"]) + "\n")
    fp_other = load(d, "fp", "corpus-other")
    fp_by_windows = {fp["windows"]: fp_ppl}
    if fp_other:
        fp_by_windows[fp_other["windows"]] = fp_other["ppl"]
        out.append(f"FP on the first {fp_other['windows']} corpus test windows (the reference of the rows "
                   f"scored on them): {fp_other['ppl']:.2f}\n")
    head = (["row", "corpus ppl", "win", "vs FP %", "wiki2", "held-out"] + [f"L{t + 1}" for t in range(loops)]
            + ["top-1 %", "tasks avg", "adapt bytes (%)", "quant s", "removed vs quarot-gptq", "removed vs best static",
               "removed vs learned-static"])
    for config, title in CONFIGS:
        for mode in ["dynamic", "static"]:
            if config == "w4a16" and mode == "static":
                continue
            rows = []
            res = {}
            for r in ROWS:
                name = f"{r}-{config}-{mode}"
                c = load(d, name, "corpus")
                if c:
                    res[r] = (name, c)
            if not res:
                continue
            best_static = min((res[b][1]["ppl"], b) for b in BASELINES if b in res) if any(b in res for b in BASELINES) else None
            qg = res.get("quarot-gptq")
            # Every row of a table is scored on the same windows; FP on those windows is the reference.
            ref_fp = fp_by_windows.get(next(iter(res.values()))[1]["windows"])
            for r in ROWS:
                if r not in res:
                    continue
                name, c = res[r]
                # LoopQ's control: learned-static with the same transforms (or without).
                control = res.get("learned-static" + r[len(r.rstrip("+TKV")):] if "+" in r else "learned-static")
                w, h, t, i, q = (load(d, name, k) for k in ("wikitext2", "heldout", "tasks", "inspect", "quant"))
                ab = i and i.get("adaptation_bytes")
                ab_s = "-" if i is None else f"{ab} ({100 * i['adaptation_fraction']:.2f}%)"
                label = f"**{r}**" if best_static and r == best_static[1] else r
                vs_fp = fmt(ref_fp and 100 * (c["ppl"] / ref_fp - 1), "+.2f")
                rows.append([label, f"{c['ppl']:.2f}", str(c["windows"]), vs_fp, fmt(w and w["ppl"], ".1f"), fmt(h and h["ppl"], ".1f")]
                            + [f"{p['ppl']:.2f}" for p in c["per_loop"]]
                            + [fmt(c.get("top1"), ".2f", 100), fmt(task_avg(t), ".1f", 100), ab_s,
                               fmt(q and q.get("quantize_seconds"), ".0f"),
                               fmt(ref_fp and removed(qg and qg[1]["ppl"], c["ppl"], ref_fp), ".0f", 100) if r != "quarot-gptq" and r in res and r not in BASELINES[:5] else "",
                               fmt(ref_fp and removed(best_static and best_static[0], c["ppl"], ref_fp), ".0f", 100) if r.startswith(("loopq", "learned")) else "",
                               fmt(ref_fp and removed(control and control[1]["ppl"], c["ppl"], ref_fp), ".0f", 100) if r.startswith("loopq") else ""])
            out.append(f"\n#### {title}, {mode} activations\n")
            if best_static:
                out.append(f"Strongest static baseline: {best_static[1]} ({best_static[0]:.2f}). "
                           "\"removed\" = share of that row's excess over FP that a row removes, in %.\n")
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(r) + " |" for r in rows]
    full = {n[: -len(".corpus-full.json")]: load(d, n[: -len(".corpus-full.json")], "corpus-full")
            for n in sorted(os.listdir(d)) if n.endswith(".corpus-full.json")}
    if "fp" in full:
        fpf = full.pop("fp")["ppl"]
        out.append(f"\n#### Headline rows on the whole corpus test split\n")
        out.append(f"FP {fpf:.2f}. \"removed\" = share of the QuaRot-GPTQ row's excess (same mode) that the row removes.\n")
        out.append("| row | windows | corpus ppl | vs FP % | " + " | ".join(f"L{t + 1}" for t in range(loops)) + " | top-1 % | removed |")
        out.append("|" + "---|" * (loops + 6))
        for name, c in full.items():
            # loopq-ABCD-w4a4-dynamic, quarot-gptq+T-w4a4-static, ...: the mode's QuaRot-GPTQ row
            base = full.get("quarot-gptq-" + name.split("-", 2)[2]) if not name.startswith("quarot-gptq-") else None
            rem = fmt(base and removed(base["ppl"], c["ppl"], fpf), ".0f", 100) if base else ""
            out.append(f"| {name} | {c['windows']} | {c['ppl']:.2f} | {100 * (c['ppl'] / fpf - 1):+.2f} | "
                       + " | ".join(f"{p['ppl']:.2f}" for p in c["per_loop"])
                       + f" | {fmt(c.get('top1'), '.2f', 100)} | {rem} |")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    d = sys.argv[1]
    out = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--out" else os.path.join(d, "table.md")
    text = render(d)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out)
    print(text)


if __name__ == "__main__":
    main()
