#!/usr/bin/env bash
# Packed vs fp32 KV cache on models/ouro-tiny (docs/RESULTS.md section 6, "Packed KV cache").
# Quantizes ouro-tiny with RTN (W4, activations FP) and KV4 / KV8 (asymmetric, group 128,
# clip 0.95), then runs `loopq generate` greedy with --kv-cache packed and --kv-cache fp32 side by
# side (the order alternates between rounds), OMP_NUM_THREADS=1 --threads 1, in two cases: a
# short prompt with 256 new tokens, and the first 4200 bytes of the test corpus (1337 tokens) as the prompt with 64 new tokens (dequantizing a
# longer cache every step). Prints the median decode tokens/s, the KV bytes per token the cache
# reports, and whether packed and fp32 generated the same text.
# Usage: bench/kv_cache.sh [LOOPQ] [OUTDIR]   (ROUNDS=3 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
loopq=${1:-build/loopq}
out=${2:-/tmp/loopq-kv-bench}
rounds=${ROUNDS:-3}
corpus=../shared/data/corpus/test.txt
mkdir -p "$out"
for b in 4 8; do
  [[ -f $out/kv$b/config.json ]] ||
    "$loopq" quantize --model models/ouro-tiny --method rtn --kv-bits $b --threads 1 -o "$out/kv$b" >/dev/null 2>&1
done
long_prompt=$(head -c 4200 "$corpus")
grep -m1 "model name" /proc/cpuinfo | sed 's/.*: /cpu: /'
echo "rounds: $rounds, OMP_NUM_THREADS=1 --threads 1, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
runs=("kv4 packed" "kv4 fp32" "kv8 packed" "kv8 fp32")
: >"$out/results.tsv"
for r in $(seq 1 "$rounds"); do
  order=("${runs[@]}")
  if ((r % 2 == 0)); then order=("kv8 fp32" "kv8 packed" "kv4 fp32" "kv4 packed"); fi
  for case in short long; do
    for run in "${order[@]}"; do
      read -r m kv <<<"$run"
      if [[ $case == short ]]; then args=(--prompt "ROMEO:" --max-new-tokens 256)
      else args=(--prompt "$long_prompt" --max-new-tokens 64); fi
      OMP_NUM_THREADS=1 "$loopq" generate --model "$out/$m" "${args[@]}" --stop-ids none --threads 1 \
        --kv-cache "$kv" >"$out/$case-$m-$kv.txt" 2>"$out/$case-$m-$kv.err"
      line=$(tail -1 "$out/$case-$m-$kv.err")
      tps=$(sed -E 's/.*decode ([0-9.]+) tok\/s.*/\1/' <<<"$line")
      prompt=$(sed -E 's/^prompt ([0-9]+) tokens.*/\1/' <<<"$line")
      bpt=$(sed -E 's/.*, ([0-9]+) bytes\/token.*/\1/' <<<"$line")
      fmt=$(sed -E 's/.*KV cache ([^,]+), .*/\1/' <<<"$line")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case" "$m" "$kv" "$r" "$tps" "$bpt" "$fmt ($prompt prompt tokens)" >>"$out/results.tsv"
    done
  done
done
python3 - "$out" <<'PY'
import collections, statistics, sys, filecmp, os
out = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "results.tsv"))]
tps = collections.defaultdict(list); info = {}
for case, m, kv, r, t, bpt, fmt in rows:
    tps[(case, m, kv)].append(float(t)); info[(case, m, kv)] = (int(bpt), fmt)
print(f"{'case':6} {'model':5} {'cache':7} {'decode tok/s (median)':>22} {'runs':>22} {'KV bytes/token':>15}  format")
for key in sorted(tps):
    v = tps[key]
    print(f"{key[0]:6} {key[1]:5} {key[2]:7} {statistics.median(v):22.1f} {' '.join(f'{x:.1f}' for x in v):>22} {info[key][0]:15d}  {info[key][1]}")
for case in ("short", "long"):
    for m in ("kv4", "kv8"):
        same = filecmp.cmp(f"{out}/{case}-{m}-packed.txt", f"{out}/{case}-{m}-fp32.txt", shallow=False)
        print(f"{case} {m}: packed and fp32 caches generated {'the same' if same else 'DIFFERENT'} text")
PY
