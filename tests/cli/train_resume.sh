#!/usr/bin/env bash
# Training end to end on a tiny setup: a run interrupted after a checkpoint and resumed must end
# with exactly the weights of an uninterrupted run; resuming with other options is refused; the
# output loads as a model. Usage: train_resume.sh LOOPQ_BINARY SHARED_DIR
set -u
loopq=$1
shared=$2
source "$(dirname "$0")/harness.sh"

head -c 60000 "$shared/data/text/tiny-shakespeare.txt" >"$tmp/train.txt"
tail -c 20000 "$shared/data/text/tiny-shakespeare.txt" >"$tmp/valid.txt"
check tokenizer "$loopq" train-tokenizer --file "$tmp/train.txt" --vocab-size 320 -o "$tmp/tok"
common=(--train "$tmp/train.txt" --valid "$tmp/valid.txt" --tokenizer "$tmp/tok/tokenizer.json"
        --hidden 32 --layers 2 --heads 2 --intermediate 44 --loops 3 --seqlen 32 --batch 4
        --steps 8 --warmup 2 --eval-every 4 --ckpt-every 4 --eval-windows 4 --threads 1 --seed 7)
check straight "$loopq" train "${common[@]}" -o "$tmp/a"
check slice1 "$loopq" train "${common[@]}" -o "$tmp/b" --stop-after 3
check slice1-no-final-model test ! -e "$tmp/b/training.json"
check refuse-overwrite bash -c "! '$loopq' train ${common[*]} -o '$tmp/b' 2>/dev/null"
check refuse-other-options bash -c "! '$loopq' train ${common[*]} --lr 0.01 -o '$tmp/b' --resume 2>/dev/null"
check slice2 "$loopq" train "${common[@]}" -o "$tmp/b" --resume
check same-weights cmp "$tmp/a/model.safetensors" "$tmp/b/model.safetensors"
check same-log cmp <(cut -d, -f1-5 "$tmp/a/train_log.csv") <(cut -d, -f1-5 "$tmp/b/train_log.csv")
check loads "$loopq" forward --model "$tmp/a" --text "ROMEO: hello" --loops 3
check generates "$loopq" generate --model "$tmp/a" --prompt "ROMEO:" --max-new-tokens 5
finish
