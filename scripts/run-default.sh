#!/usr/bin/env bash
# Sets up, builds, and runs the main job on the embedded default model (models/ouro-tiny):
# inspect it, generate from a prompt at 1 and 4 loops, and measure per-loop perplexity on the
# corpus test split.
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
