#!/usr/bin/env bash
# Full-size shape check (issue: real shapes): a randomly initialised checkpoint with Ouro-1.4B's
# exact config (bf16, ~2.9 GB) is written, inspected, loaded and run. Needs ~10 GB of RAM and
# ~3 GB of disk. Usage: bench/run_full_size.sh [WORKDIR] (default /tmp/loopq-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/loopq-bench}
mkdir -p "$work"
bin=build/loopq
bench="build/loopq bench model"
[[ -x $bin ]] || bash scripts/build.sh
model="$work/ouro-1.4b-random"
if [[ ! -f "$model/model.safetensors" ]]; then
  /usr/bin/time -f "init: %e s, max RSS %M KiB" $bin init --preset ouro-1.4b -o "$model" --dtype BF16 --seed 0
fi
ls -l "$model/model.safetensors"
$bin inspect "$model" | tee "$work/inspect.txt"
$bench --model "$model" --kernels reference --prefill 512 --decode 16 --loops 1,4 --repeats 3 --json "$work/bench_full_size.json"
$bin generate --model "$model" --ids 1,2,3,4,5,6,7,8 --max-new-tokens 8 --stop-ids none
