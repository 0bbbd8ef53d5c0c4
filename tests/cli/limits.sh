#!/usr/bin/env bash
# Resource limits on untrusted input, end to end: each hostile file or oversized flag fails with
# a one-line error and a non-zero exit, within 10 s and under 1 GB of memory (measured with GNU
# time); NaN/Inf weights are refused naming the tensor. Usage: limits.sh LOOPQ SHARED_DIR REPO
set -u
loopq=$1
shared=$2
repo=$3
source "$(dirname "$0")/harness.sh"

# expect_bounded NAME MATCH ARGS...: like expect_error --match, and the run stays under 10 s of
# CPU time (user + system: wall time on a loaded 2-core machine is mostly waiting) and 1 GB
# resident. Size checks run against a 1 GB budget (LOOPQ_MEMORY_LIMIT), whatever the machine.
expect_bounded() {
  local name=$1 match=$2
  shift 2
  LOOPQ_MEMORY_LIMIT=1G /usr/bin/time -f "%M %U %S" -o "$tmp/time" timeout 120 "$loopq" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? kb user sys secs
  read -r kb user sys < <(tail -n 1 "$tmp/time")
  secs=$(python3 -c "print(float('$user') + float('$sys'))")
  if [[ $rc -ge 1 && $rc -le 2 && $(wc -l <"$tmp/err") -eq 1 ]] && grep -q error "$tmp/err" &&
    grep -qF -- "$match" "$tmp/err" && (( kb < 1048576 )) &&
    python3 -c "import sys; sys.exit(0 if float('$secs') < 10 else 1)"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL [$name] rc=$rc rss=${kb}KB time=${secs}s: $(head -c 300 "$tmp/err")"
  fi
}

cat >"$tmp/config.json" <<'JSON'
{"model_type": "ouro", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 44,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
 "tie_word_embeddings": false, "total_ut_steps": 4, "early_exit_threshold": 1.0}
JSON
expect_ok init init --config "$tmp/config.json" -o "$tmp/m" --seed 1 --dtype F32
copy() { rm -rf "$tmp/$1"; cp -r "$tmp/m" "$tmp/$1"; }
# set_weight DIR TENSOR INDEX VALUE: overwrites one fp32 element in model.safetensors in place.
set_weight() {
  python3 - "$1/model.safetensors" "$2" "$3" "$4" <<'PY'
import json, struct, sys
path, name, index, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with open(path, "r+b") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    t = json.loads(f.read(n))[name]
    assert t["dtype"] == "F32"
    f.seek(8 + n + t["data_offsets"][0] + 4 * index)
    f.write(struct.pack("<f", value))
PY
}

# ---- hostile config.json: counts that would mean absurd allocations or loops ----
for field in num_hidden_layers total_ut_steps vocab_size max_position_embeddings; do
  copy "c-$field"
  python3 - "$tmp/c-$field/config.json" "$field" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c[sys.argv[2]] = 10**12
json.dump(c, open(sys.argv[1], "w"))
PY
  expect_bounded "config-$field" "$field 1000000000000 exceeds the limit" forward --model "$tmp/c-$field" --ids 1
done
copy c-big && truncate -s 20M "$tmp/c-big/config.json"
expect_bounded config-file-size "16 MiB limit" forward --model "$tmp/c-big" --ids 1
copy c-nan && sed -i 's/"rope_theta": 10000.0/"rope_theta": 1e999/' "$tmp/c-nan/config.json"
expect_bounded config-number-overflow "invalid JSON" forward --model "$tmp/c-nan" --ids 1

# ---- hostile safetensors: 1 KB files claiming huge sizes ----
st() {  # st DIR HEADER_JSON: replaces the model's weights with a header-only file
  python3 - "$1/model.safetensors" "$2" <<'PY'
import struct, sys
h = sys.argv[2].encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)
PY
}
copy s1 && st "$tmp/s1" '{"model.embed_tokens.weight": {"dtype": "F32", "shape": [300, 32], "data_offsets": [0, 38400]}}'
expect_bounded st-data-past-end "exceeds data section" forward --model "$tmp/s1" --ids 1
copy s2 && st "$tmp/s2" '{"t": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}}'
expect_bounded st-shape-overflow "too many elements" forward --model "$tmp/s2" --ids 1
copy s3 && printf '\x00\x00\x00\x00\x00\x01\x00\x00{}' >"$tmp/s3/model.safetensors"
expect_bounded st-header-length "header length" inspect "$tmp/s3"

# ---- NaN / Inf weights ----
copy w1 && set_weight "$tmp/w1" model.norm.weight 5 nan
expect_bounded nan-weight "tensor 'model.norm.weight' has NaN at element 5 of 32" forward --model "$tmp/w1" --ids 1
copy w2 && set_weight "$tmp/w2" model.layers.1.mlp.down_proj.weight 0 inf
expect_bounded inf-weight "tensor 'model.layers.1.mlp.down_proj.weight' has Inf at element 0" generate --model "$tmp/w2" --ids 1 --max-new-tokens 2

# ---- hostile tokenizers ----
printf '{"model": {"type": "BPE", "vocab": {"a": 16777215}, "merges": []}}' >"$tmp/sparse.json"
expect_bounded tokenizer-sparse-ids "too sparse" tokenize --tokenizer "$tmp/sparse.json" --text a
printf '{"model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}}' >"$tmp/unk.json"
expect_bounded tokenizer-missing-unk "unk_token '<unk>' is not in the vocab" tokenize --tokenizer "$tmp/unk.json" --text b
mkdir -p "$tmp/g" && printf '{"a": 0, "b": 1}' >"$tmp/g/encoder.json" && printf '#version: 0.2\na b\n' >"$tmp/g/vocab.bpe"
expect_bounded gpt2-merge-unknown "not in the vocab" tokenize --tokenizer "$tmp/g/encoder.json" --text ab
truncate -s 300M "$tmp/huge.json"
expect_bounded tokenizer-file-size "256 MiB limit" tokenize --tokenizer "$tmp/huge.json" --text a

# ---- flags whose memory would not fit ----
expect_bounded generate-kv-cache "the KV cache needs" generate --model "$tmp/m" --ids 1 --max-new-tokens 1048576
LOOPQ_MEMORY_LIMIT=lots expect_error memory-limit-malformed --match "LOOPQ_MEMORY_LIMIT" generate --model "$tmp/m" --ids 1
head -c 4000 "$tmp/config.json" >"$tmp/text.txt"
expect_bounded train-attention "training's attention scores needs" train --train "$tmp/text.txt" --valid "$tmp/text.txt" \
  --tokenizer "$repo/models/ouro-tiny/tokenizer.json" --hidden 32 --layers 2 --heads 4 --intermediate 44 \
  --seqlen 65536 --batch 65536 --steps 1 -o "$tmp/t"
[[ -e "$tmp/t" ]] && { fail=$((fail + 1)); echo "FAIL [train-attention] created $tmp/t"; }
if [[ -f "$shared/data/corpus/train.txt" ]]; then
  head -c 300000 "$shared/data/corpus/train.txt" >"$tmp/calib.txt"
  expect_bounded calib-windows "the calibration windows needs" calib-stats --model "$repo/models/ouro-tiny" \
    --calib "$tmp/calib.txt" --nsamples 100000 --seqlen 2048
  expect_bounded calib-attention "the attention scores needs" calib-stats --model "$repo/models/ouro-tiny" \
    --calib "$tmp/calib.txt" --nsamples 64 --batch 64 --seqlen 2048
fi

finish
