#!/usr/bin/env bash
# Whole-model speed and memory (issue 8): FP32, W8A8, W4A8 and W4A4 (QuaRot, rotations online)
# at 1 and 4 loops, on models/ouro-tiny and on a random Ouro-1.4B-shaped model, each format in
# its own `loopq bench model` process (so each peak RSS is that model's own), one after another
# in this one run. Writes docs/results/bench_model/*.json and prints the markdown table for
# docs/RESULTS.md. Needs ~13 GB of RAM (quantizing the 1.4B model) and ~12 GB of disk in WORK.
# Usage: bench/run_model_bench.sh [WORK] (default /tmp/loopq-bench)
#   env: THREADS (default: all cores), SIZES="tiny 1.4b", REPEATS (3), PREFILL (512), DECODE (16)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/loopq-bench}
threads=${THREADS:-$(nproc)}
sizes=${SIZES:-"tiny 1.4b"}
repeats=${REPEATS:-3}
prefill=${PREFILL:-512}
decode=${DECODE:-16}
bin=build/loopq
out=docs/results/bench_model
[[ -x $bin ]] || bash scripts/build.sh
mkdir -p "$work" "$out"
export OMP_NUM_THREADS=$threads

# Quantized variants: method w-bits a-bits. RTN without the clip search: speed does not depend
# on which codes the weights got.
variants=("rtn 8 8" "rtn 4 8" "quarot-rtn 4 4")
for size in $sizes; do
  if [[ $size == tiny ]]; then
    fp=models/ouro-tiny
  else
    fp=$work/ouro-1.4b-random
    [[ -f $fp/model.safetensors ]] || $bin init --preset ouro-1.4b -o "$fp" --dtype BF16 --seed 0
  fi
  models=("$fp")
  for v in "${variants[@]}"; do
    set -- $v
    q=$work/ouro-$size-$1-w$2a$3
    [[ -f $q/config.json ]] || $bin quantize --model "$fp" --method "$1" --w-bits "$2" --a-bits "$3" \
      --no-clip-search --threads "$threads" -o "$q"
    models+=("$q")
  done
  for m in "${models[@]}"; do
    name=$(basename "$m")
    [[ $name == ouro-tiny ]] && name=ouro-tiny-fp32
    [[ $name == ouro-1.4b-random ]] && name=ouro-1.4b-fp32
    echo "== $name"
    $bin bench model --model "$m" --kernels packed --threads "$threads" --prefill "$prefill" --decode "$decode" \
      --loops 1,4 --repeats "$repeats" --json "$out/$name.json"
  done
done
python3 bench/model_bench_table.py "$out"
