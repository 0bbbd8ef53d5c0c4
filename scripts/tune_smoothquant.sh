#!/usr/bin/env bash
# Tunes SmoothQuant's alpha on the VALID split (calibration on train, as the table): for each
# alpha and precision, quantize and measure perplexity on the first PPL_WINDOWS windows of
# corpus/valid.txt. The table (scripts/ptq_table.sh) then uses the best alpha via SQ_ALPHA.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/ouro-tiny}
OUT=${OUT:-docs/results/ptq-tuning}
DATA=${DATA:-../shared/data}
ALPHAS=${ALPHAS:-"0.3 0.5 0.7 0.85"}
CONFIGS=${CONFIGS:-"w4a4 w8a8"}
PPL_WINDOWS=${PPL_WINDOWS:-30}
THREADS=${THREADS:-0}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loopq-sq.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
for config in $CONFIGS; do
  case $config in
    w4a4) flags="--w-bits 4 --a-bits 4" ;;
    w8a8) flags="--w-bits 8 --a-bits 8" ;;
    *) echo "unknown config $config" >&2; exit 2 ;;
  esac
  for alpha in $ALPHAS; do
    name=smoothquant-$config-alpha$alpha
    [[ -f $OUT/$name.valid.json ]] && continue
    # shellcheck disable=SC2086
    build/loopq quantize --model "$MODEL" --method smoothquant $flags --alpha "$alpha" \
      --calib "$DATA/corpus/train.txt" --nsamples 32 --seqlen 512 --threads "$THREADS" -o "$WORK/$name" >/dev/null 2>&1
    build/loopq eval ppl --model "$WORK/$name" --file "$DATA/corpus/valid.txt" --seqlen 512 \
      --nsamples "$PPL_WINDOWS" --no-per-loop --threads "$THREADS" --kernels reference --json "$OUT/$name.valid.json" >/dev/null 2>&1
    rm -rf "${WORK:?}/$name"
  done
done
for f in "$OUT"/smoothquant-*.valid.json; do
  printf '%s %s\n' "$(basename "$f" .valid.json)" "$(python3 -c 'import json,sys; print(round(json.load(open(sys.argv[1]))["ppl"], 3))' "$f")"
done
