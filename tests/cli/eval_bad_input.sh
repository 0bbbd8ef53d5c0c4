#!/usr/bin/env bash
# `loopq eval ppl|tasks` on bad input must give a one-line error and a clean non-zero exit (no
# crash, hang or half-written output file); good input must work end to end on a tiny model.
# Usage: eval_bad_input.sh LOOPQ_BINARY SHARED_DIR
set -u
loopq=$1
shared=${2:-}
source "$(dirname "$0")/harness.sh"

# A small model without a tokenizer.
cat >"$tmp/small.json" <<'JSON'
{"model_type": "ouro", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 44,
 "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
 "tie_word_embeddings": false, "total_ut_steps": 3, "early_exit_threshold": 1.0}
JSON
expect_ok init-small init --config "$tmp/small.json" -o "$tmp/m" --seed 1 --dtype F32

# Task files: a valid pair and broken ones.
mkdir -p "$tmp/tasks" "$tmp/bad1" "$tmp/bad2" "$tmp/bad3" "$tmp/bad4"
cat >"$tmp/tasks/mc.jsonl" <<'JSONL'
{"task": "mc", "id": "0", "requests": [{"context": "Question: Is the sky blue?\nAnswer:", "continuation": " yes"}, {"context": "Question: Is the sky blue?\nAnswer:", "continuation": " no"}], "gold": 0}
{"task": "mc", "id": "1", "requests": [{"context": "Sarah was better than Maria so Sarah", "continuation": " won."}, {"context": "Sarah was better than Maria so Maria", "continuation": " won."}], "gold": 0}
{"task": "mc", "id": "2", "subject": "caf\u00e9", "requests": [{"context": "The letter after A is", "continuation": " B"}, {"context": "The letter after A is", "continuation": " \u00e9t\u00e9"}], "gold": 0}
JSONL
cat >"$tmp/tasks/lambada.jsonl" <<'JSONL'
{"task": "lambada", "id": "0", "requests": [{"context": "He opened the door and saw the", "continuation": " dog"}], "gold": 0}
{"task": "lambada", "id": "1", "requests": [{"context": "", "continuation": "Hello there"}], "gold": 0}
JSONL
{ head -n 1 "$tmp/tasks/mc.jsonl"; echo '{"task": "mc", "id": "1", "requests": [{"context": "x"'; } >"$tmp/bad1/mc.jsonl"
{ head -n 2 "$tmp/tasks/mc.jsonl"; echo '{"task": "mc", "id": "9", "requests": [{"context": "x", "continuation": " y"}], "gold": 3}'; } >"$tmp/bad2/mc.jsonl"
: >"$tmp/bad3/mc.jsonl"
echo '{"task": "mc", "id": "9", "requests": [{"context": "x", "continuation": ""}], "gold": 0}' >"$tmp/bad4/mc.jsonl"

# Command line and model checks that need no tokenizer.
expect_error no-subcommand eval
expect_error bad-subcommand --match "unknown eval subcommand" eval perplexity
expect_error ppl-unknown-flag eval ppl --model "$tmp/m" --file "$tmp/small.json" --bogus 1
expect_error ppl-positional eval ppl --model "$tmp/m" --file "$tmp/small.json" extra
expect_error ppl-no-file --match "--file" eval ppl --model "$tmp/m"
expect_error ppl-no-model --match "--model" eval ppl --file "$tmp/small.json"
expect_error ppl-missing-file --match "cannot open" eval ppl --model "$tmp/m" --file "$tmp/nofile.txt"
expect_error ppl-dir-file --match "directory" eval ppl --model "$tmp/m" --file "$tmp"
: >"$tmp/empty.txt"
expect_error ppl-empty-file --match "empty" eval ppl --model "$tmp/m" --file "$tmp/empty.txt"
expect_error ppl-seqlen-1 --match "--seqlen" eval ppl --model "$tmp/m" --file "$tmp/small.json" --seqlen 1
expect_error ppl-seqlen-text eval ppl --model "$tmp/m" --file "$tmp/small.json" --seqlen many
expect_error ppl-nsamples-0 eval ppl --model "$tmp/m" --file "$tmp/small.json" --nsamples 0
expect_error ppl-no-tokenizer --match "tokenizer" eval ppl --model "$tmp/m" --file "$tmp/small.json"
expect_error ppl-json-dir --match "does not exist" eval ppl --model "$tmp/m" --file "$tmp/small.json" --json "$tmp/no/dir/r.json"
expect_error ppl-missing-model eval ppl --model "$tmp/nomodel" --file "$tmp/small.json"
expect_error tasks-no-tasks --match "--tasks" eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks"
expect_error tasks-no-dir --match "--tasks-dir" eval tasks --model "$tmp/m" --tasks mc
expect_error tasks-dir-missing --match "not a directory" eval tasks --model "$tmp/m" --tasks-dir "$tmp/nodir" --tasks mc
expect_error tasks-unknown --match "available: lambada, mc" eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc,hellaswag
expect_error tasks-empty-name eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc,,lambada
expect_error tasks-malformed --match "mc.jsonl:2:" eval tasks --model "$tmp/m" --tasks-dir "$tmp/bad1" --tasks mc
expect_error tasks-gold-range --match "mc.jsonl:3: gold 3" eval tasks --model "$tmp/m" --tasks-dir "$tmp/bad2" --tasks all
expect_error tasks-empty-file --match "empty" eval tasks --model "$tmp/m" --tasks-dir "$tmp/bad3" --tasks mc
expect_error tasks-empty-continuation --match "mc.jsonl:1:" eval tasks --model "$tmp/m" --tasks-dir "$tmp/bad4" --tasks mc
expect_error tasks-no-files --match "no *.jsonl" eval tasks --model "$tmp/m" --tasks-dir "$tmp/m" --tasks all
expect_error tasks-limit-0 eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc --limit 0
expect_error tasks-batch-0 eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc --batch-size 0
expect_error tasks-no-tokenizer --match "tokenizer" eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc
expect_error tasks-dump-dir --match "does not exist" eval tasks --model "$tmp/m" --tasks-dir "$tmp/tasks" --tasks mc --dump-requests "$tmp/no/d.jsonl"

gpt2="$shared/data/tokenizers/gpt2"
if [[ -n "$shared" && -f "$gpt2/encoder.json" ]]; then
  # The GPT-2 tokenizer beside a 300-token model: refused (ids >= vocab_size).
  cp -r "$tmp/m" "$tmp/m300"
  cp "$gpt2/encoder.json" "$gpt2/vocab.bpe" "$tmp/m300/"
  expect_error ppl-tokenizer-too-big --match "vocab_size" eval ppl --model "$tmp/m300" --file "$tmp/small.json"
  expect_error tasks-tokenizer-too-big --match "vocab_size" eval tasks --model "$tmp/m300" --tasks-dir "$tmp/tasks" --tasks mc

  # A tiny model with GPT-2's vocabulary and tokenizer.
  sed 's/"vocab_size": 300/"vocab_size": 50257/' "$tmp/small.json" >"$tmp/gpt2cfg.json"
  expect_ok init-gpt2 init --config "$tmp/gpt2cfg.json" -o "$tmp/g" --seed 2 --dtype F32 --tokenizer "$gpt2/encoder.json"
  [[ -f "$tmp/g/vocab.bpe" ]] || cp "$gpt2/vocab.bpe" "$tmp/g/"
  printf 'Hello world. ' >"$tmp/short.txt"
  expect_error ppl-too-short --match "fewer than one window" eval ppl --model "$tmp/g" --file "$tmp/short.txt" --seqlen 64
  expect_error ppl-exit-step --match "out of range" eval ppl --model "$tmp/g" --file "$tmp/short.txt" --seqlen 2 --exit step:9
  expect_error ppl-exit-bad eval ppl --model "$tmp/g" --file "$tmp/short.txt" --exit sometimes
  expect_error ppl-json-missing-dir eval ppl --model "$tmp/g" --file "$tmp/short.txt" --seqlen 2 --json "$tmp/x/y.json"
  check no-partial-json test ! -e "$tmp/x"

  text="$shared/data/text/tiny-shakespeare.txt"
  if [[ -f "$text" ]]; then
    head -c 20000 "$text" >"$tmp/text.txt"
    expect_ok ppl-good eval ppl --model "$tmp/g" --file "$tmp/text.txt" --seqlen 64 --nsamples 3 --json "$tmp/ppl.json" --threads 1
    check ppl-table grep -q "^loop 3 " "$tmp/out"
    check ppl-json-windows grep -q '"windows": 3' "$tmp/ppl.json"
    check ppl-json-tokens grep -q '"tokens": 189' "$tmp/ppl.json"
    check ppl-json-per-loop grep -q '"per_loop"' "$tmp/ppl.json"
    check ppl-json-bpb grep -q '"bits_per_byte"' "$tmp/ppl.json"
    # seqlen above max_position_embeddings (128) is capped, with a warning.
    expect_ok ppl-capped eval ppl --model "$tmp/g" --file "$tmp/text.txt" --seqlen 4096 --nsamples 1 --json "$tmp/ppl2.json" --threads 1
    check ppl-capped-seqlen grep -q '"seqlen": 128' "$tmp/ppl2.json"
    expect_ok ppl-exit-only eval ppl --model "$tmp/g" --file "$tmp/text.txt" --seqlen 64 --nsamples 1 --no-per-loop --json "$tmp/ppl3.json" --threads 1
    check ppl-exit-only-json grep -q '"per_loop": \[\]' "$tmp/ppl3.json"
  fi

  expect_ok tasks-good eval tasks --model "$tmp/g" --tasks-dir "$tmp/tasks" --tasks all --json "$tmp/tasks.json" --dump-requests "$tmp/req.jsonl" --threads 1
  check tasks-table grep -q "^lambada " "$tmp/out"
  check tasks-dump-lines test "$(wc -l <"$tmp/req.jsonl")" -eq 8
  check tasks-json-mc grep -q '"acc_norm"' "$tmp/tasks.json"
  check tasks-json-lambada-ppl grep -q '"ppl"' "$tmp/tasks.json"
  check tasks-json-subjects grep -q '"subjects"' "$tmp/tasks.json"
  check tasks-json-limit grep -q '"limit": null' "$tmp/tasks.json"
  # The empty LAMBADA context is scored after <|endoftext|> (50256).
  check tasks-empty-context grep -q '"context_ids":\[50256\]' "$tmp/req.jsonl"
  expect_ok tasks-limit eval tasks --model "$tmp/g" --tasks-dir "$tmp/tasks" --tasks mc --limit 1 --json "$tmp/t1.json" --batch-size 1 --threads 1
  check tasks-limit-docs grep -q '"docs": 1' "$tmp/t1.json"
  expect_ok tasks-exit-only eval tasks --model "$tmp/g" --tasks-dir "$tmp/tasks" --tasks lambada --no-per-loop --json "$tmp/t2.json" --threads 1
  check tasks-exit-only-json grep -q '"per_loop": \[\]' "$tmp/t2.json"
fi

finish
