#!/usr/bin/env bash
# Sets up, builds, and runs the main job on the embedded default model (models/ouro-tiny):
# inspect it, generate from a prompt at 1 and 4 loops, and measure per-loop perplexity on the
# corpus test split, then quantize it to W4A4KV4 and compare perplexity.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
model=models/ouro-tiny
shared=../shared/data
[[ -f $model/model.safetensors ]] || { echo "error: $model/model.safetensors is missing" >&2; exit 1; }
build/loopq inspect "$model"
for loops in 1 4; do
  echo "--- generate, $loops loop(s)"
  build/loopq generate --model "$model" --prompt "It was a truth universally acknowledged" \
    --max-new-tokens 40 --loops "$loops"
done
echo "--- perplexity on corpus/test.txt, per loop"
build/loopq eval ppl --model "$model" --file "$shared/corpus/test.txt" --seqlen 512
echo "--- quantize to W4A4 with a 4-bit KV cache (QuaRot + RTN, no calibration) and compare"
qdir=$(mktemp -d)/ouro-tiny-w4a4kv4
trap 'rm -rf "$(dirname "$qdir")"' EXIT
build/loopq quantize --model "$model" --method quarot-rtn --w-bits 4 --a-bits 4 --kv-bits 4 -o "$qdir"
for m in "$model" "$qdir"; do
  echo "perplexity of $m on the first 60 windows of corpus/test.txt"
  build/loopq eval ppl --model "$m" --file "$shared/corpus/test.txt" --seqlen 512 --nsamples 60
done
