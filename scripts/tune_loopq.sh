#!/usr/bin/env bash
# Chooses the optimization settings of LoopQ D and learned-static on the valid split, never on
# test (loopq-method.md §9): for every row and every (lr, steps, KL weight) in the grid, quantize
# with the validation guard on (--opt-valid), and read the guard's record from the quantized
# directory's config.json: the exit-readout NLL of the kept checkpoint on the first
# VALID_WINDOWS windows of corpus/valid.txt. One JSON per run under $OUT (a finished one is never
# recomputed, so an interrupted sweep resumes), then a table sorted by valid perplexity, with the
# best setting per row. Pass the winners to scripts/loopq_table.sh as OPT_LR / OPT_STEPS / OPT_KL.
#
# Knobs (environment): MODEL, DATA, OUT, ROWS (learned-static and/or loopq-<components with D>),
# CONFIG (w4a4, w4a4kv4, w4a8), MODES (dynamic static), LRS, STEPS, KLS, NSAMPLES/SEQLEN
# (calibration, as loopq_table.sh), OPT_BATCH, OPT_SEQLEN, VALID_WINDOWS, VALID_EVERY, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/ouro-tiny}
DATA=${DATA:-../shared/data}
OUT=${OUT:-docs/results/tune-loopq}
ROWS=${ROWS:-"loopq-ABCD learned-static"}
CONFIG=${CONFIG:-w4a4}
MODES=${MODES:-"dynamic static"}
LRS=${LRS:-"1e-3 2e-3 5e-3 1e-2"}
STEPS=${STEPS:-60}
KLS=${KLS:-1.0}
NSAMPLES=${NSAMPLES:-16}
SEQLEN=${SEQLEN:-512}
OPT_BATCH=${OPT_BATCH:-4}
OPT_SEQLEN=${OPT_SEQLEN:-256}
VALID_WINDOWS=${VALID_WINDOWS:-16}
VALID_EVERY=${VALID_EVERY:-10}
THREADS=${THREADS:-0}
LOOPQ=${LOOPQ:-build/loopq}

# Bad settings fail before anything is built, created or quantized.
case $CONFIG in
  w4a4) config_flags=(--w-bits 4 --a-bits 4) ;;
  w4a4kv4) config_flags=(--w-bits 4 --a-bits 4 --kv-bits 4) ;;
  w4a8) config_flags=(--w-bits 4 --a-bits 8) ;;
  *) echo "tune_loopq.sh: CONFIG must be w4a4, w4a4kv4 or w4a8, got '$CONFIG'" >&2; exit 2 ;;
esac
for row in $ROWS; do
  [[ $row == learned-static || ($row == loopq-* && $row == *D*) ]] ||
    { echo "tune_loopq.sh: row '$row' has no optimization to tune (learned-static or loopq-...D)" >&2; exit 2; }
done
[[ -x $LOOPQ ]] || bash scripts/build.sh
mkdir -p "$OUT"
work=$(mktemp -d "${TMPDIR:-/tmp}/loopq-tune.XXXXXX")
trap 'rm -rf "$work"' EXIT

for mode in $MODES; do
  for row in $ROWS; do
    for lr in $LRS; do
      for steps in $STEPS; do
        for kl in $KLS; do
          name=$row-$CONFIG-$mode-lr$lr-steps$steps-kl$kl
          [[ -f $OUT/$name.json ]] && continue
          method=$row
          extra=()
          [[ $row == loopq-* ]] && method=loopq && extra=(--loopq-components "${row#loopq-}")
          "$LOOPQ" quantize --model "$MODEL" --method "$method" "${config_flags[@]}" --act-mode "$mode" "${extra[@]}" \
            --calib "$DATA/corpus/train.txt" --nsamples "$NSAMPLES" --seqlen "$SEQLEN" \
            --opt-steps "$steps" --opt-lr "$lr" --opt-kl "$kl" --opt-batch "$OPT_BATCH" --opt-seqlen "$OPT_SEQLEN" \
            --opt-valid "$DATA/corpus/valid.txt" --opt-valid-windows "$VALID_WINDOWS" --opt-valid-every "$VALID_EVERY" \
            --threads "$THREADS" -o "$work/$name" 2>"$work/$name.log" >/dev/null ||
            { cat "$work/$name.log" >&2; exit 1; }
          python3 - "$work/$name/config.json" "$OUT/$name.json" "$row" "$CONFIG" "$mode" "$lr" "$steps" "$kl" <<'PY'
import json, math, os, sys
src, dst, row, config, mode, lr, steps, kl = sys.argv[1:]
q = json.load(open(src))["quantization_config"]
valid = q["optimize"]["report"]["valid"]
out = {"row": row, "config": config, "mode": mode, "lr": float(lr), "steps": int(steps), "kl": float(kl),
       "valid_nll": valid["chosen_nll"], "valid_ppl": math.exp(valid["chosen_nll"]),
       "chosen_step": valid["chosen_step"], "checkpoints": valid["steps"], "checkpoint_nll": valid["nll"],
       "quantize_seconds": q.get("quantize_seconds")}
tmp = dst + ".tmp"
json.dump(out, open(tmp, "w"), indent=1)
os.replace(tmp, dst)
PY
          rm -rf "${work:?}/$name"
          echo "done: $name"
        done
      done
    done
  done
done

python3 - "$OUT" <<'PY'
import json, pathlib, sys
runs = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))]
runs.sort(key=lambda r: (r["row"], r["config"], r["mode"], r["valid_nll"]))
print("| row | config | mode | lr | steps | KL | valid ppl | kept step |")
print("|---|---|---|---:|---:|---:|---:|---:|")
best = {}
for r in runs:
    print(f"| {r['row']} | {r['config']} | {r['mode']} | {r['lr']:g} | {r['steps']} | {r['kl']:g} | "
          f"{r['valid_ppl']:.3f} | {r['chosen_step']} |")
    best.setdefault((r["row"], r["config"], r["mode"]), r)
for (row, config, mode), r in sorted(best.items()):
    print(f"best {row} {config} {mode}: OPT_LR={r['lr']:g} OPT_STEPS={r['steps']} OPT_KL={r['kl']:g} "
          f"(valid ppl {r['valid_ppl']:.3f})")
PY
