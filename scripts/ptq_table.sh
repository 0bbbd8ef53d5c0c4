#!/usr/bin/env bash
# The static-PTQ results table in one run: FP and every baseline (rtn, smoothquant, gptq,
# quarot-rtn, quarot-gptq) at W8A8, W4A16, W4A8, W4A4-KV16 and W4A4-KV4 on one model. For each:
# quantize (calibrating on the train split), then perplexity on corpus test and WikiText-2 test
# (per loop) and the nine zero-shot tasks. Results are JSON files under $OUT, one per run and
# eval; a finished file is never recomputed, so an interrupted run resumes where it stopped.
# Then scripts/ptq_table.py renders the table.
#
# Knobs (environment): MODEL, OUT, DATA, NSAMPLES/SEQLEN (calibration windows), PPL_WINDOWS
# (first N eval windows, 0 = all), TASK_LIMIT (first N docs per task, 0 = all), SQ_ALPHA,
# METHODS, CONFIGS, THREADS.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/ouro-tiny}
OUT=${OUT:-docs/results/ptq}
DATA=${DATA:-../shared/data}
NSAMPLES=${NSAMPLES:-64}
SEQLEN=${SEQLEN:-512}
PPL_WINDOWS=${PPL_WINDOWS:-0}
TASK_LIMIT=${TASK_LIMIT:-0}
SQ_ALPHA=${SQ_ALPHA:-0.5}
METHODS=${METHODS:-"rtn smoothquant gptq quarot-rtn quarot-gptq"}
CONFIGS=${CONFIGS:-"w8a8 w4a16 w4a8 w4a4 w4a4kv4"}
THREADS=${THREADS:-0}
# The tables are fake-quant numbers (the reference path). The packed kernels give the same
# numbers bit for bit (both sum the integer codes exactly, tests/packed); KERNELS=packed uses them.
KERNELS=${KERNELS:-reference}
LOOPQ=${LOOPQ:-build/loopq}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loopq-ptq.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"

config_flags() {
  case $1 in
    w8a8) echo "--w-bits 8 --a-bits 8" ;;
    w4a16) echo "--w-bits 4" ;;
    w4a8) echo "--w-bits 4 --a-bits 8" ;;
    w4a4) echo "--w-bits 4 --a-bits 4" ;;
    w4a4kv4) echo "--w-bits 4 --a-bits 4 --kv-bits 4" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}

limit_flags=()
[[ $PPL_WINDOWS != 0 ]] && limit_flags=(--nsamples "$PPL_WINDOWS")
task_flags=()
[[ $TASK_LIMIT != 0 ]] && task_flags=(--limit "$TASK_LIMIT")

evaluate() {  # name model_dir
  local name=$1 dir=$2
  [[ -f $OUT/$name.corpus.json ]] || "$LOOPQ" eval ppl --model "$dir" --file "$DATA/corpus/test.txt" \
      --seqlen 512 "${limit_flags[@]}" --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.corpus.json" >/dev/null
  [[ -f $OUT/$name.wikitext2.json ]] || "$LOOPQ" eval ppl --model "$dir" --file "$DATA/text/wikitext2-test.txt" \
      --seqlen 512 "${limit_flags[@]}" --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.wikitext2.json" >/dev/null
  [[ -f $OUT/$name.tasks.json ]] || "$LOOPQ" eval tasks --model "$dir" --tasks-dir "$DATA/tasks" --tasks all \
      "${task_flags[@]}" --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.tasks.json" >/dev/null
  echo "done: $name"
}

evaluate fp "$MODEL"
for config in $CONFIGS; do
  for method in $METHODS; do
    name=$method-$config
    if [[ -f $OUT/$name.corpus.json && -f $OUT/$name.wikitext2.json && -f $OUT/$name.tasks.json ]]; then
      continue
    fi
    calib=()
    [[ $method == smoothquant || $method == *gptq ]] && calib=(--calib "$DATA/corpus/train.txt" --nsamples "$NSAMPLES" --seqlen "$SEQLEN")
    extra=()
    [[ $method == smoothquant ]] && extra=(--alpha "$SQ_ALPHA")
    # shellcheck disable=SC2046
    "$LOOPQ" quantize --model "$MODEL" --method "$method" $(config_flags "$config") "${calib[@]}" "${extra[@]}" \
      --threads "$THREADS" -o "$WORK/$name" >/dev/null
    python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["quantization_config"], open(sys.argv[2], "w"), indent=1)' \
      "$WORK/$name/config.json" "$OUT/$name.quant.json"
    evaluate "$name" "$WORK/$name"
    rm -rf "${WORK:?}/$name"
  done
done
python3 scripts/ptq_table.py "$OUT"
