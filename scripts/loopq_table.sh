#!/usr/bin/env bash
# The LoopQ ablation in one run (loopq-method.md §6, issue "LoopQ itself"): FP, the five static
# baselines and learned-static, then LoopQ with A, A+B, A+B+C and A+B+C+D, at W4A4-KV16 and
# W4A4-KV4 (every row) and W4A8 / W4A16 (FP, the strongest static baseline, full LoopQ), each with
# dynamic and with static activations. Every run calibrates on the same train windows (seed 0).
# For each: quantize, inspect --json (adaptation bytes), perplexity with per-loop readouts and
# top-1 on corpus test, WikiText-2 test and a held-out text (tiny-shakespeare, never used for any
# choice), the nine tasks. Results are JSON files under $OUT, one per run and evaluation; a
# finished file is never recomputed, so an interrupted run resumes where it stopped. Then
# scripts/loopq_table.py renders docs/results/loopq/table.md.
#
# Knobs (environment): MODEL, OUT, DATA, NSAMPLES/SEQLEN (calibration), HEADLINE_WINDOWS (corpus
# test windows for the W4A4 rows, 0 = the whole split), PPL_WINDOWS (windows for every other
# perplexity, 0 = all), FULL_ROWS (rows also scored on the whole corpus test split, default FP and
# the figure's rows), TASK_LIMIT (docs per task, 0 = all), ROWS, CONFIGS, MODES, THREADS, plus
# PLOT_ROWS (the error-against-loop figure's rows, NAME-CONFIG-MODE), FIGURE, and
# the LoopQ/learned-static settings chosen on valid (scripts/tune_loopq.sh): OPT_STEPS, OPT_LR,
# OPT_KL, OPT_BATCH, OPT_SEQLEN, and the optimization's validation guard (the same for
# learned-static and LoopQ D): OPT_VALID (a valid-split file, never test; empty = no guard),
# OPT_VALID_WINDOWS (its first N windows of SEQLEN tokens), OPT_VALID_EVERY (steps between checks),
# OPT_PATIENCE (stop after that many checks in a row without a better one; 0: never).
# A row name ending in +T (e.g. quarot-gptq+T, loopq-ABCD+T) adds the closed-form input-shaping
# transforms (--input-transform $TRANSFORM_GROUPS) to that method; +TK adds the KV cache's key
# transform too (--kv-transform k) and +TKV both cache transforms (--kv-transform k,v); those
# rows run only where the cache is quantized (w4a4kv4).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/ouro-tiny}
OUT=${OUT:-docs/results/loopq}
DATA=${DATA:-../shared/data}
NSAMPLES=${NSAMPLES:-32}
SEQLEN=${SEQLEN:-512}
HEADLINE_WINDOWS=${HEADLINE_WINDOWS:-0}
PPL_WINDOWS=${PPL_WINDOWS:-30}
TASK_LIMIT=${TASK_LIMIT:-40}
SQ_ALPHA=${SQ_ALPHA:-0.7}
ALL_ROWS="rtn smoothquant gptq quarot-rtn quarot-gptq learned-static loopq-A loopq-AB loopq-ABC loopq-ABCD"
TRANSFORM_GROUPS=${TRANSFORM_GROUPS:-attn,o,mlp,down}
ROWS=${ROWS:-$ALL_ROWS}
CONFIGS=${CONFIGS:-"w4a4 w4a4kv4 w4a8 w4a16"}
MODES=${MODES:-"dynamic static"}
THREADS=${THREADS:-0}
# The tables are fake-quant numbers (the reference path). The packed kernels give the same
# numbers bit for bit (both sum the integer codes exactly, tests/packed); KERNELS=packed uses them.
KERNELS=${KERNELS:-reference}
DIAGNOSE_ALL=${DIAGNOSE_ALL:-0}  # 1: per-loop diagnostics JSON for every row, not only the figure's
OPT_STEPS=${OPT_STEPS:-15}
OPT_LR=${OPT_LR:-5e-3}
OPT_KL=${OPT_KL:-1.0}
OPT_BATCH=${OPT_BATCH:-4}
OPT_SEQLEN=${OPT_SEQLEN:-256}
OPT_VALID=${OPT_VALID-$DATA/corpus/valid.txt}
OPT_VALID_WINDOWS=${OPT_VALID_WINDOWS:-16}
OPT_VALID_EVERY=${OPT_VALID_EVERY:-5}
OPT_PATIENCE=${OPT_PATIENCE:-0}
LOOPQ=${LOOPQ:-build/loopq}
FIGURE=${FIGURE:-docs/figures/ouro-tiny-loopq-error-by-loop.png}
# Quantized directories are kept here until their row is evaluated; the ones the figure needs
# stay (a re-run of the figure then needs no quantization).
WORK=${WORK:-${TMPDIR:-/tmp}/loopq-table-models}
mkdir -p "$OUT" "$WORK"
PLOT_ROWS=${PLOT_ROWS:-"quarot-gptq-w4a4-dynamic loopq-ABCD-w4a4-dynamic quarot-gptq-w4a4-static loopq-ABCD-w4a4-static"}

config_flags() {
  case $1 in
    w4a16) echo "--w-bits 4" ;;
    w4a8) echo "--w-bits 4 --a-bits 8" ;;
    w4a4) echo "--w-bits 4 --a-bits 4" ;;
    w4a4kv4) echo "--w-bits 4 --a-bits 4 --kv-bits 4" ;;
    *) echo "unknown config $1" >&2; exit 2 ;;
  esac
}

# W4A8 and W4A16 need only FP, the strongest static baseline and full LoopQ (plus its control).
row_wanted() {  # row config
  [[ $1 == *+TK* && $2 != *kv* ]] && return 1
  local base=${1%%+*}
  set -- "$base" "$2"
  case $2 in
    w4a4|w4a4kv4) return 0 ;;
    *) [[ $1 == quarot-gptq || $1 == gptq || $1 == learned-static || $1 == loopq-ABCD || $1 == loopq-ABD ]] ;;
  esac
}

ppl_flags() {  # file-kind config
  local n=$PPL_WINDOWS
  [[ $1 == corpus && ( $2 == w4a4 || $2 == w4a4kv4 || $2 == fp ) ]] && n=$HEADLINE_WINDOWS
  [[ $n != 0 ]] && echo "--nsamples $n"
  return 0
}

evaluate() {  # name model_dir config
  local name=$1 dir=$2 config=$3
  local -a task_flags=()
  [[ $TASK_LIMIT != 0 ]] && task_flags=(--limit "$TASK_LIMIT")
  # shellcheck disable=SC2046
  [[ -f $OUT/$name.corpus.json ]] || "$LOOPQ" eval ppl --model "$dir" --file "$DATA/corpus/test.txt" \
      --seqlen 512 $(ppl_flags corpus "$config") --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.corpus.json" >/dev/null
  # shellcheck disable=SC2046
  [[ -f $OUT/$name.wikitext2.json ]] || "$LOOPQ" eval ppl --model "$dir" --file "$DATA/text/wikitext2-test.txt" \
      --seqlen 512 $(ppl_flags other "$config") --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.wikitext2.json" >/dev/null
  # shellcheck disable=SC2046
  [[ -f $OUT/$name.heldout.json ]] || "$LOOPQ" eval ppl --model "$dir" --file "$DATA/text/tiny-shakespeare.txt" \
      --seqlen 512 $(ppl_flags other "$config") --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.heldout.json" >/dev/null
  [[ -f $OUT/$name.tasks.json ]] || "$LOOPQ" eval tasks --model "$dir" --tasks-dir "$DATA/tasks" --tasks all \
      "${task_flags[@]}" --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/$name.tasks.json" >/dev/null
  echo "done: $name"
}

evaluate fp "$MODEL" fp
# FP on the windows of the non-headline rows too, so that every row is compared on its own windows.
# shellcheck disable=SC2046
[[ -f $OUT/fp.corpus-other.json ]] || "$LOOPQ" eval ppl --model "$MODEL" --file "$DATA/corpus/test.txt" --seqlen 512 \
  $(ppl_flags other w4a8) --threads "$THREADS" --kernels "$KERNELS" --json "$OUT/fp.corpus-other.json" >/dev/null
# The headline rows (FULL_ROWS, default the figure's) and FP also on the whole corpus test split.
FULL_ROWS=${FULL_ROWS-fp $PLOT_ROWS}
full_split() {  # name model_dir
  [[ " $FULL_ROWS " == *" $1 "* && ! -f $OUT/$1.corpus-full.json ]] || return 0
  "$LOOPQ" eval ppl --model "$2" --file "$DATA/corpus/test.txt" --seqlen 512 --threads "$THREADS" --kernels "$KERNELS" \
    --json "$OUT/$1.corpus-full.json" >/dev/null
}
full_split fp "$MODEL"
calib=(--calib "$DATA/corpus/train.txt" --nsamples "$NSAMPLES" --seqlen "$SEQLEN")
opt=(--opt-steps "$OPT_STEPS" --opt-lr "$OPT_LR" --opt-kl "$OPT_KL" --opt-batch "$OPT_BATCH" --opt-seqlen "$OPT_SEQLEN")
[[ -n $OPT_VALID ]] && opt+=(--opt-valid "$OPT_VALID" --opt-valid-windows "$OPT_VALID_WINDOWS" --opt-valid-every "$OPT_VALID_EVERY" --opt-patience "$OPT_PATIENCE")
for config in $CONFIGS; do
  for mode in $MODES; do
    [[ $config == w4a16 && $mode == static ]] && continue  # no activation quantization to calibrate
    for row in $ROWS; do
      row_wanted "$row" "$config" || continue
      name=$row-$config-$mode
      if [[ -f $OUT/$name.corpus.json && -f $OUT/$name.wikitext2.json && -f $OUT/$name.heldout.json &&
            -f $OUT/$name.tasks.json && -f $OUT/$name.inspect.json &&
            ( " $FULL_ROWS " != *" $name "* || -f $OUT/$name.corpus-full.json ) ]]; then
        continue
      fi
      base=${row%%+*}
      method=$base
      extra=()
      case $base in
        loopq-*) method=loopq; extra=(--loopq-components "${base#loopq-}") ;;
      esac
      [[ $row == smoothquant ]] && extra=(--alpha "$SQ_ALPHA")
      [[ $row == *+T* ]] && extra+=(--input-transform "$TRANSFORM_GROUPS")
      [[ $row == *+TK ]] && extra+=(--kv-transform k)
      [[ $row == *+TKV ]] && extra+=(--kv-transform k,v)
      [[ $base == learned-static || $base == loopq-*D ]] && extra+=("${opt[@]}")
      mode_flags=()
      [[ $config != w4a16 ]] && mode_flags=(--act-mode "$mode")
      if [[ ! -d $WORK/$name ]]; then
        # shellcheck disable=SC2046
        "$LOOPQ" quantize --model "$MODEL" --method "$method" $(config_flags "$config") "${mode_flags[@]}" \
          "${extra[@]}" "${calib[@]}" --threads "$THREADS" -o "$WORK/$name" 2>"$WORK/$name.log" >/dev/null ||
          { cat "$WORK/$name.log" >&2; exit 1; }
      fi
      python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["quantization_config"], open(sys.argv[2], "w"), indent=1)' \
        "$WORK/$name/config.json" "$OUT/$name.quant.json"
      "$LOOPQ" inspect "$WORK/$name" --json "$OUT/$name.inspect.json" >/dev/null
      [[ -f $OUT/$name.diagnose.json || ( $DIAGNOSE_ALL == 0 && " $PLOT_ROWS " != *" $name "* ) ]] || "$LOOPQ" diagnose --model "$WORK/$name" --reference "$MODEL" \
        --file "$DATA/corpus/test.txt" --windows 8 --seqlen 512 --threads "$THREADS" --json "$OUT/$name.diagnose.json" >/dev/null
      evaluate "$name" "$WORK/$name" "$config"
      full_split "$name" "$WORK/$name"
      [[ " $PLOT_ROWS " == *" $name "* ]] || rm -rf "${WORK:?}/$name"
    done
  done
done
# Error against loop: the strongest static baseline against LoopQ, in both activation modes.
plot_models=()
for r in $PLOT_ROWS; do [[ -d $WORK/$r ]] && plot_models+=("$WORK/$r"); done
if ((${#plot_models[@]} >= 2)); then
  rest=$(IFS=,; echo "${plot_models[*]:1}")
  "$LOOPQ" diagnose --model "${plot_models[0]}" --reference "$MODEL" --file "$DATA/corpus/test.txt" --windows 8 \
    --seqlen 512 --threads "$THREADS" --compare "$rest" --plot "$FIGURE" --json "$OUT/figure.diagnose.json" >/dev/null
fi
python3 scripts/loopq_table.py "$OUT"
