#!/usr/bin/env bash
# Bad input must give a one-line error and a clean non-zero exit (never a crash, hang or a
# half-written output file). Usage: bad_input.sh LOOPQ_BINARY SHARED_DIR
set -u
loopq=$1
shared=${2:-}
source "$(dirname "$0")/harness.sh"

# A small valid model to corrupt.
cat >"$tmp/config.json" <<'JSON'
{"model_type": "ouro", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 44,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
 "tie_word_embeddings": false, "total_ut_steps": 4, "early_exit_threshold": 1.0}
JSON
expect_ok init init --config "$tmp/config.json" -o "$tmp/m" --seed 1 --dtype F32
expect_ok forward forward --model "$tmp/m" --ids 1,2,3 --dump "$tmp/good.safetensors"
expect_ok inspect inspect "$tmp/m"
expect_ok generate generate --model "$tmp/m" --ids 1,2 --max-new-tokens 3 --stop-ids none

# Command line.
expect_error no-command bogus
expect_error unknown-flag forward --model "$tmp/m" --ids 1 --bogus 3
expect_error bench-model-no-model --match "--model" bench model
expect_error bench-model-loops --match "--loops" bench model --model "$tmp/m" --loops 0
expect_error bench-model-kernels --match "unknown --kernels" bench model --model "$tmp/m" --kernels fast
expect_error bench-model-json-dir --match "does not exist" bench model --model "$tmp/m" --json "$tmp/nodir/b.json"
expect_error bench-model-positions --match "positions" bench model --model "$tmp/m" --prefill 1000000
expect_error bench-unknown --match "bench kernels" bench fast
expect_error missing-value forward --model "$tmp/m" --ids
expect_error no-input forward --model "$tmp/m"
expect_error both-inputs forward --model "$tmp/m" --ids 1 --text hi
expect_error bad-ids forward --model "$tmp/m" --ids 1,x,3
expect_error empty-ids forward --model "$tmp/m" --ids ""
expect_error id-out-of-vocab forward --model "$tmp/m" --ids 1,300
expect_error negative-id forward --model "$tmp/m" --ids -1
expect_error loops-zero forward --model "$tmp/m" --ids 1 --loops 0
expect_error loops-text forward --model "$tmp/m" --ids 1 --loops four
expect_error exit-mode forward --model "$tmp/m" --ids 1 --exit sometimes
expect_error exit-step-range forward --model "$tmp/m" --ids 1 --exit step:9
expect_error device forward --model "$tmp/m" --ids 1 --device tpu
expect_error text-without-tokenizer forward --model "$tmp/m" --text "hello"
expect_error temperature generate --model "$tmp/m" --ids 1 --temperature -1
expect_error top-p generate --model "$tmp/m" --ids 1 --top-p 0
expect_error max-new-tokens generate --model "$tmp/m" --ids 1 --max-new-tokens 0
expect_error init-preset init --preset ouro-99b -o "$tmp/x"
expect_error init-no-out init --preset ouro-tiny
expect_error inspect-missing inspect "$tmp/does-not-exist"

# Dump into a missing directory: error and no file.
expect_error dump-dir forward --model "$tmp/m" --ids 1 --dump "$tmp/no/such/dir/out.safetensors"
[[ -e "$tmp/no" ]] && { echo "FAIL [dump-dir] left output behind"; fail=$((fail + 1)); }

# Corrupted model directories.
corrupt() {  # corrupt NAME: fresh copy of the model in $tmp/NAME
  rm -rf "$tmp/$1"
  cp -r "$tmp/m" "$tmp/$1"
}
expect_error missing-model forward --model "$tmp/nope" --ids 1
corrupt c1 && rm "$tmp/c1/config.json"
expect_error no-config forward --model "$tmp/c1" --ids 1
corrupt c2 && echo "{ not json" >"$tmp/c2/config.json"
expect_error bad-config-json forward --model "$tmp/c2" --ids 1
corrupt c3 && sed -i 's/"ouro"/"gpt2"/' "$tmp/c3/config.json"
expect_error unsupported-type forward --model "$tmp/c3" --ids 1
corrupt c4 && sed -i 's/"num_key_value_heads": 2/"num_key_value_heads": 3/' "$tmp/c4/config.json"
expect_error inconsistent-heads forward --model "$tmp/c4" --ids 1
corrupt c5 && sed -i 's/"hidden_size": 32/"hidden_size": 48/' "$tmp/c5/config.json"
expect_error shape-mismatch forward --model "$tmp/c5" --ids 1
corrupt c6 && truncate -s -100 "$tmp/c6/model.safetensors"
expect_error truncated forward --model "$tmp/c6" --ids 1
corrupt c7 && : >"$tmp/c7/model.safetensors"
expect_error empty-safetensors forward --model "$tmp/c7" --ids 1
corrupt c8 && printf '\xff\xff\xff\xff\xff\xff\xff\x7f' | dd of="$tmp/c8/model.safetensors" conv=notrunc status=none
expect_error huge-header forward --model "$tmp/c8" --ids 1
corrupt c9 && rm "$tmp/c9/model.safetensors"
expect_error no-weights forward --model "$tmp/c9" --ids 1
expect_error inspect-truncated inspect "$tmp/c6"

# Training command.
head -c 3000 "$tmp/config.json" >"$tmp/tiny.txt"
if [[ -n "$shared" && -d "$shared/data/tokenizers/gpt2" ]]; then
  gpt2="$shared/data/tokenizers/gpt2/encoder.json"
  tr_args=(--valid "$tmp/tiny.txt" --tokenizer "$gpt2" --hidden 16 --layers 1 --heads 2 --intermediate 16 --steps 1)
  expect_error train-missing-file train --train "$tmp/nope.txt" "${tr_args[@]}" -o "$tmp/t1"
  expect_error train-no-out train --train "$tmp/tiny.txt" "${tr_args[@]}"
  expect_error train-short-text train --train "$tmp/tiny.txt" "${tr_args[@]}" --seqlen 4096 -o "$tmp/t2"
  expect_error train-loop-weights train --train "$tmp/tiny.txt" "${tr_args[@]}" --loops 3 --loop-weights 1,2 -o "$tmp/t3"
  expect_error train-device train --train "$tmp/tiny.txt" "${tr_args[@]}" --device tpu -o "$tmp/t4"
  expect_error train-bad-tokenizer train --train "$tmp/tiny.txt" --valid "$tmp/tiny.txt" --tokenizer "$tmp/none.json" -o "$tmp/t5"
  expect_error train-init-from train --train "$shared/data/text/tiny-shakespeare.txt" "${tr_args[@]}" --seqlen 8 --init-from "$tmp/m" -o "$tmp/t6"
fi

# Tokenizer command.
expect_error tok-missing tokenize --tokenizer "$tmp/none.json" --text hi
expect_error tok-no-input tokenize --tokenizer "$tmp/m"
echo '{"model": {"type": "Unigram"}}' >"$tmp/tokenizer.json"
expect_error tok-unsupported tokenize --tokenizer "$tmp/tokenizer.json" --text hi
if [[ -n "$shared" && -d "$shared/data/tokenizers/gpt2" ]]; then
  expect_ok tok-gpt2 tokenize --tokenizer "$shared/data/tokenizers/gpt2/encoder.json" --text "Hello world"
  grep -q '^\[15496,995\]$' "$tmp/out" || { echo "FAIL [tok-gpt2] got $(cat "$tmp/out")"; fail=$((fail + 1)); }
  expect_error tok-both tokenize --tokenizer "$shared/data/tokenizers/gpt2/encoder.json" --text a --file "$tmp/config.json"
  expect_error tok-file-missing tokenize --tokenizer "$shared/data/tokenizers/gpt2/encoder.json" --file "$tmp/nofile"
  expect_error tok-decode-bad tokenize --tokenizer "$shared/data/tokenizers/gpt2/encoder.json" --text "1,x" --decode
  expect_error tok-decode-range tokenize --tokenizer "$shared/data/tokenizers/gpt2/encoder.json" --text "99999999" --decode
fi

finish
