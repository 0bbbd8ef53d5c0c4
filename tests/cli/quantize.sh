#!/usr/bin/env bash
# `loopq quantize` end to end on a small model (every method, then eval/generate/forward on the
# quantized directory) and on bad input: one-line errors, non-zero exit, and never a partial
# output directory.
# Usage: quantize.sh LOOPQ_BINARY SHARED_DIR REPO_DIR   (SHARED_DIR holds data/corpus)
set -u
loopq=$1
shared=$2
repo=$3
source "$(dirname "$0")/harness.sh"

tok=$repo/models/ouro-tiny/tokenizer.json
small_config() {  # intermediate size
  cat <<JSON
{"model_type": "ouro", "vocab_size": 4096, "hidden_size": 32, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": $1,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
 "tie_word_embeddings": false, "total_ut_steps": 3, "early_exit_threshold": 1.0}
JSON
}
small_config 44 >"$tmp/small.json"
small_config 22 >"$tmp/odd.json"
expect_ok init-small init --config "$tmp/small.json" -o "$tmp/m" --seed 1 --dtype F32 --tokenizer "$tok"
expect_ok init-odd init --config "$tmp/odd.json" -o "$tmp/odd" --seed 1 --dtype F32 --tokenizer "$tok"
head -c 60000 "$shared/data/corpus/train.txt" >"$tmp/calib.txt"
head -c 20000 "$shared/data/corpus/test.txt" >"$tmp/test.txt"
: >"$tmp/empty.txt"
[[ -s $tmp/calib.txt && -s $tmp/test.txt ]] || { echo "FAIL: no corpus under $shared/data"; exit 1; }
calib=(--calib "$tmp/calib.txt" --nsamples 4 --seqlen 64)

# Every method quantizes, and the result runs through eval, generate and forward.
for method in rtn smoothquant gptq quarot-rtn quarot-gptq; do
  expect_ok "quantize-$method" quantize --model "$tmp/m" --method "$method" --w-bits 4 --a-bits 4 --kv-bits 4 \
    --kv-group-size 16 "${calib[@]}" -o "$tmp/q-$method"
  check "config-$method" grep -q "\"method\": \"$method\"" "$tmp/q-$method/config.json"
  expect_ok "eval-$method" eval ppl --model "$tmp/q-$method" --file "$tmp/test.txt" --seqlen 64 --json "$tmp/ppl-$method.json"
  check "ppl-json-$method" python3 -c "import json,math,sys; r=json.load(open(sys.argv[1])); assert math.isfinite(r['ppl']) and r['ppl'] > 1" "$tmp/ppl-$method.json"
done
expect_ok generate-quantized generate --model "$tmp/q-quarot-gptq" --prompt "It was" --max-new-tokens 5
expect_ok forward-quantized forward --model "$tmp/q-rtn" --text "It was"
expect_ok inspect-quantized inspect "$tmp/q-rtn"
check inspect-says-quantized grep -q "quantized: rtn W4A4KV4" "$tmp/out"
expect_ok group-asym quantize --model "$tmp/m" --method gptq --w-bits 3 --w-asym --group-size 4 "${calib[@]}" -o "$tmp/q-g16"
expect_ok w8 quantize --model "$tmp/m" --method rtn --w-bits 8 --a-bits 8 -o "$tmp/q-w8"
expect_ok eval-w8 eval ppl --model "$tmp/q-w8" --file "$tmp/test.txt" --seqlen 64
# Same command, same bytes (determinism).
expect_ok repeat quantize --model "$tmp/m" --method quarot-gptq --w-bits 4 --a-bits 4 --kv-bits 4 \
  --kv-group-size 16 "${calib[@]}" -o "$tmp/q-again"
check deterministic cmp "$tmp/q-quarot-gptq/model.safetensors" "$tmp/q-again/model.safetensors"

# Bad flags are refused before any work, and no output directory appears.
expect_error no-method --match "--method" quantize --model "$tmp/m" -o "$tmp/x"
expect_error bad-method --match "unknown quantization method" quantize --model "$tmp/m" --method awq -o "$tmp/x"
expect_error w-bits-low --match "--w-bits" quantize --model "$tmp/m" --method rtn --w-bits 1 -o "$tmp/x"
expect_error w-bits-high --match "--w-bits" quantize --model "$tmp/m" --method rtn --w-bits 9 -o "$tmp/x"
expect_error a-bits --match "--a-bits" quantize --model "$tmp/m" --method rtn --a-bits 12 -o "$tmp/x"
expect_error kv-bits --match "--kv-bits" quantize --model "$tmp/m" --method rtn --kv-bits 1 -o "$tmp/x"
expect_error group --match "does not divide" quantize --model "$tmp/m" --method rtn --group-size 5 -o "$tmp/x"
expect_error kv-group --match "does not divide" quantize --model "$tmp/m" --method rtn --kv-bits 4 --kv-group-size 48 -o "$tmp/x"
expect_error a-clip --match "--a-clip" quantize --model "$tmp/m" --method rtn --a-bits 4 --a-clip 1.5 -o "$tmp/x"
expect_error alpha --match "--alpha" quantize --model "$tmp/m" --method smoothquant --alpha 2 "${calib[@]}" -o "$tmp/x"
expect_error sequential --match "--sequential" quantize --model "$tmp/m" --method gptq --sequential maybe "${calib[@]}" -o "$tmp/x"
expect_error gptq-no-calib --match "needs --calib" quantize --model "$tmp/m" --method gptq -o "$tmp/x"
expect_error calib-missing --match "--calib" quantize --model "$tmp/m" --method gptq --calib "$tmp/nope.txt" -o "$tmp/x"
expect_error calib-empty --match "fewer than one window" quantize --model "$tmp/m" --method gptq --calib "$tmp/empty.txt" -o "$tmp/x"
expect_error nsamples --match "--nsamples" quantize --model "$tmp/m" --method gptq "${calib[@]}" --nsamples 0 -o "$tmp/x"
expect_error seqlen --match "--seqlen" quantize --model "$tmp/m" --method gptq --calib "$tmp/calib.txt" --seqlen 4096 -o "$tmp/x"
expect_error hadamard --match "Hadamard" quantize --model "$tmp/odd" --method quarot-rtn -o "$tmp/x"
expect_error no-out --match "-o" quantize --model "$tmp/m" --method rtn
expect_error out-parent --match "does not exist" quantize --model "$tmp/m" --method rtn -o "$tmp/no/such/dir"
expect_error out-exists --match "already exists" quantize --model "$tmp/m" --method rtn -o "$tmp/q-rtn"
expect_error requantize --match "already quantized" quantize --model "$tmp/q-rtn" --method rtn -o "$tmp/x"
check no-partial-output test ! -e "$tmp/x"
check no-temp-dirs bash -c "! ls -d '$tmp'/*.partial-* 2>/dev/null | grep -q ."

# Corrupt quantized directories are refused with one line.
cp -r "$tmp/q-rtn" "$tmp/c1"
python3 - "$tmp/c1/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["quantization_config"]["weights"]["bits"] = 8
json.dump(c, open(p, "w"))
PY
expect_error qweight-dtype --match "qweight" eval ppl --model "$tmp/c1" --file "$tmp/test.txt" --seqlen 64
cp -r "$tmp/q-rtn" "$tmp/c2"
python3 - "$tmp/c2/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["quantization_config"]["method"] = "magic"
json.dump(c, open(p, "w"))
PY
expect_error bad-qmethod --match "unknown quantization method" eval ppl --model "$tmp/c2" --file "$tmp/test.txt" --seqlen 64
cp -r "$tmp/q-rtn" "$tmp/c3"
python3 - "$tmp/c3/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); del c["quantization_config"]["weights"]
json.dump(c, open(p, "w"))
PY
expect_error missing-field --match "quantization_config" eval ppl --model "$tmp/c3" --file "$tmp/test.txt" --seqlen 64
cp -r "$tmp/q-rtn" "$tmp/c4"
truncate -s 5000 "$tmp/c4/model.safetensors"
expect_error truncated generate --model "$tmp/c4" --prompt "It" --max-new-tokens 2
cp -r "$tmp/q-rtn" "$tmp/c5"
python3 - "$tmp/c5/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["quantization_config"]["weights"]["group_size"] = 4
json.dump(c, open(p, "w"))
PY
expect_error group-shape --match "scales" eval ppl --model "$tmp/c5" --file "$tmp/test.txt" --seqlen 64

# Statistics command.
expect_ok calib-stats calib-stats --model "$tmp/m" --calib "$tmp/calib.txt" --nsamples 2 --seqlen 32 --json "$tmp/stats.json"
check stats-json python3 -c "import json,sys; s=json.load(open(sys.argv[1])); assert len(s['inputs']) == 8 and len(s['inputs'][0]['per_loop']) == 3" "$tmp/stats.json"
expect_error stats-no-calib --match "--calib" calib-stats --model "$tmp/m"
finish
