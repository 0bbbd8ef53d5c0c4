#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) into ./build-fuzz and runs each one for
# SECONDS (default 20) from its seed corpus in fuzz/corpus/<target>. Exits non-zero if any target
# finds a crash, an allocation over 1 GB or a timeout; the input is kept in
# build-fuzz/artifacts/<target>/ and the log in build-fuzz/logs/<target>.log. The timeout is 25 s
# of wall time, not 10: libFuzzer's clock is wall time, and a loaded 2-core machine stalls niced
# processes for seconds (inputs it flagged at 10 s reran in < 50 ms). tests/cli/limits.sh checks
# the 10 s bound on CPU time instead.
#   FUZZ_PARALLEL=1   run all targets at once (long campaigns; CI runs them one after another)
#   FUZZ_TARGETS="safetensors args"   a subset
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
root=$PWD
build=$root/build-fuzz
targets=${FUZZ_TARGETS:-"safetensors hf_config tokenizer_json gpt2 task_jsonl args quantized_dir"}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (scripts/install-deps.sh installs clang)" >&2; exit 1; }
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLOOPQ_FUZZ=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  >/dev/null
cmake --build "$build" -j "$(nproc)" --target $(printf 'fuzz_%s ' $targets)

max_len() {
  case $1 in
    tokenizer_json) echo 262144 ;;
    args) echo 4096 ;;
    hf_config) echo 16384 ;;
    *) echo 65536 ;;
  esac
}

run_one() {
  local t=$1 work=$build/corpus/$t
  mkdir -p "$work" "$build/artifacts/$t" "$build/logs"
  # New inputs go to the build folder; the committed seeds stay as they are.
  UBSAN_OPTIONS=print_stacktrace=1 "$build/fuzz/fuzz_$t" "$work" "$root/fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$build/artifacts/$t/" \
    >"$build/logs/$t.log" 2>&1
}

summary() {
  local t=$1 log=$build/logs/$t.log
  local execs cov
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
  cov=$(grep -oE '(DONE|INITED|REDUCE|NEW|pulse) +cov: [0-9]+' "$log" | awk '{print $NF}' | tail -1)
  echo "fuzz_$t: ${execs:-?} executions, cov ${cov:-?} edges, corpus $(ls "$build/corpus/$t" | wc -l) files"
}

failed=()
if [[ "${FUZZ_PARALLEL:-0}" == 1 ]]; then
  declare -A pids
  for t in $targets; do run_one "$t" & pids[$t]=$!; done
  for t in $targets; do wait "${pids[$t]}" || failed+=("$t"); done
else
  for t in $targets; do run_one "$t" || failed+=("$t"); done
fi
for t in $targets; do summary "$t"; done
if ((${#failed[@]})); then
  for t in "${failed[@]}"; do
    echo "fuzz_$t FAILED: $(grep -m1 -E 'ERROR|SUMMARY|deadly|timeout|leak|out-of-memory|malloc' "$build/logs/$t.log" || true)"
    echo "  inputs: $(ls "$build/artifacts/$t" 2>/dev/null | tr '\n' ' ')"
  done
  exit 1
fi
n=$(wc -w <<<"$targets")
echo "fuzz: $n passed, 0 failed"
