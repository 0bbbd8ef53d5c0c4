#!/usr/bin/env bash
# Crash-safe outputs: every writing command is killed with SIGKILL at several moments of its run;
# afterwards its output is either complete (it loads) or absent, and no visible temp file is left
# beside it. Hidden temps of killed runs (.NAME.tmp.PID) are allowed, and the next completed run
# must remove them. Two concurrent quantize runs with the same -o: one wins, the other fails
# with a one-line error, and the files never mix.
# Usage: kill_safety.sh LOOPQ_BINARY SHARED_DIR REPO_DIR
set -u
loopq=$1
shared=$2
repo=$3
source "$(dirname "$0")/harness.sh"
export OMP_WAIT_POLICY=PASSIVE  # no re-exec: the pid we kill is the one that writes
fractions=(0.05 0.2 0.4 0.6 0.8 0.95)
kills=0

# run_killed SECONDS ARGS...: runs loopq, SIGKILLs it after SECONDS (if still running).
run_killed() {
  local after=$1
  shift
  # In a subshell, so bash's "Killed" job notice stays out of the log.
  (timeout -s KILL "$after" "$loopq" "$@" >/dev/null 2>&1)
  kills=$((kills + 1))
}

# duration ARGS...: wall seconds of a complete run (which must succeed).
duration() {
  local t0 t1
  t0=$(date +%s.%N)
  "$loopq" "$@" >"$tmp/dur.out" 2>"$tmp/dur.err" || { echo "FAIL: reference run failed: $(head -c 300 "$tmp/dur.err")"; exit 1; }
  t1=$(date +%s.%N)
  python3 -c "print(max(float('$t1') - float('$t0'), 0.2))"
}

# no_visible_temps NAME DIR: DIR holds no *.tmp.* / *.partial-* entry that is not hidden.
no_visible_temps() {
  local name=$1 dir=$2 found
  found=$(find "$dir" -maxdepth 2 \( -name '*.tmp.*' -o -name '*.partial-*' \) ! -name '.*' 2>/dev/null)
  if [[ -z "$found" ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL [$name] visible temp: $found"; fi
}

# no_temps NAME DIR: after a completed run, not even hidden temps remain.
no_temps() {
  local name=$1 dir=$2 found
  found=$(find "$dir" -maxdepth 2 \( -name '*.tmp.*' -o -name '*.partial-*' \) 2>/dev/null)
  if [[ -z "$found" ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL [$name] stale temp left: $found"; fi
}

# whole_or_absent NAME PATH CHECK...: PATH does not exist, or CHECK (a command) succeeds on it.
whole_or_absent() {
  local name=$1 path=$2
  shift 2
  if [[ ! -e "$path" ]]; then
    absent=$((absent + 1)); pass=$((pass + 1))
  elif "$@" >"$tmp/check.log" 2>&1; then
    whole=$((whole + 1)); pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL [$name] partial output at $path: $(tail -n 2 "$tmp/check.log")"
  fi
}

valid_json() { python3 -c "import json,sys; json.load(open(sys.argv[1]))" "$1"; }
valid_safetensors() {
  python3 - "$1" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
end = max([v["data_offsets"][1] for k, v in h.items() if k != "__metadata__"] + [0])
assert len(b) == 8 + n + end, (len(b), 8 + n + end)
PY
}
tokenizer_loads() { "$loopq" tokenize --tokenizer "$1" --text "It was a dark night" >/dev/null; }
model_loads() { "$loopq" inspect "$1" >/dev/null; }
train_outputs_whole() {
  local d=$1
  # config.json is written last: when it is there, the weights beside it are whole and load.
  if [[ -e "$d/config.json" ]]; then model_loads "$d" || return 1; fi
  if [[ -e "$d/training.json" ]]; then valid_json "$d/training.json" || return 1; fi
  if [[ -e "$d/train_log.csv" ]]; then [[ -s "$d/train_log.csv" ]] || return 1; fi
  if [[ -e "$d/checkpoint/train_state.safetensors" ]]; then valid_safetensors "$d/checkpoint/train_state.safetensors" || return 1; fi
  return 0
}

head -c 200000 "$shared/data/text/tiny-shakespeare.txt" >"$tmp/train.txt"
tail -c 20000 "$shared/data/text/tiny-shakespeare.txt" >"$tmp/valid.txt"
head -c 6000 "$tmp/valid.txt" >"$tmp/eval.txt"  # ~3 windows of 256 tokens: a short eval
[[ -s $tmp/train.txt ]] || { echo "FAIL: no data under $shared/data"; exit 1; }
model=$repo/models/ouro-tiny

# report NAME: one summary line per command.
report() { echo "kill-safety $1: $kills kills, $whole complete, $absent absent"; kills=0 whole=0 absent=0; }
whole=0 absent=0

# ---- train-tokenizer (folder output) ----
tt=(train-tokenizer --file "$tmp/train.txt" --vocab-size 1024)
d=$(duration "${tt[@]}" -o "$tmp/tt-ref")
for f in "${fractions[@]}"; do
  out=$tmp/tt/run-$f
  mkdir -p "$tmp/tt"
  run_killed "$(python3 -c "print($d * $f)")" "${tt[@]}" -o "$out"
  whole_or_absent "train-tokenizer@$f" "$out" tokenizer_loads "$out"
  no_visible_temps "train-tokenizer@$f" "$tmp/tt"
done
# A completed run to the same output removes what killed runs left there.
for staged in "$tmp"/tt/.run-*.tmp.*; do
  [[ -e "$staged" ]] || continue
  target=$(basename "$staged")
  target=${target#.}
  target=${target%.tmp.*}
  expect_ok "train-tokenizer-after-$target" "${tt[@]}" -o "$tmp/tt/$target"
  check "train-tokenizer-after-$target-loads" tokenizer_loads "$tmp/tt/$target"
done
no_temps train-tokenizer-cleanup "$tmp/tt"
report train-tokenizer

# ---- eval ppl --json ----
ev=(eval ppl --model "$model" --file "$tmp/eval.txt" --seqlen 256)
d=$(duration "${ev[@]}" --json "$tmp/ev-ref.json")
mkdir -p "$tmp/ev"
for f in "${fractions[@]}"; do
  out=$tmp/ev/ppl.json
  rm -f "$out"
  run_killed "$(python3 -c "print($d * $f)")" "${ev[@]}" --json "$out"
  whole_or_absent "eval-json@$f" "$out" valid_json "$out"
  no_visible_temps "eval-json@$f" "$tmp/ev"
done
expect_ok eval-json-after "${ev[@]}" --json "$tmp/ev/ppl.json"
no_temps eval-json-cleanup "$tmp/ev"
report "eval --json"

# ---- forward --dump ----
fw=(forward --model "$model" --text "$(head -c 1500 "$tmp/valid.txt")")
d=$(duration "${fw[@]}" --dump "$tmp/fw-ref.safetensors")
mkdir -p "$tmp/fw"
for f in "${fractions[@]}"; do
  out=$tmp/fw/dump.safetensors
  rm -f "$out"
  run_killed "$(python3 -c "print($d * $f)")" "${fw[@]}" --dump "$out"
  whole_or_absent "forward-dump@$f" "$out" valid_safetensors "$out"
  no_visible_temps "forward-dump@$f" "$tmp/fw"
done
expect_ok forward-dump-after "${fw[@]}" --dump "$tmp/fw/dump.safetensors"
no_temps forward-dump-cleanup "$tmp/fw"
report "forward --dump"

# ---- train ----
check train-tokenizer-for-train "$loopq" train-tokenizer --file "$tmp/train.txt" --vocab-size 320 -o "$tmp/tok"
tr=(train --train "$tmp/train.txt" --valid "$tmp/valid.txt" --tokenizer "$tmp/tok/tokenizer.json"
    --hidden 32 --layers 2 --heads 2 --intermediate 44 --loops 2 --seqlen 32 --batch 4
    --steps 12 --warmup 2 --eval-every 2 --ckpt-every 2 --eval-windows 2 --threads 1 --seed 7)
d=$(duration "${tr[@]}" -o "$tmp/tr-ref")
mkdir -p "$tmp/tr"
for f in "${fractions[@]}"; do
  out=$tmp/tr/run-$f
  run_killed "$(python3 -c "print($d * $f)")" "${tr[@]}" -o "$out"
  whole_or_absent "train@$f" "$out" train_outputs_whole "$out"
  no_visible_temps "train@$f" "$tmp/tr"
done
report train

# ---- quantize (writes a staging folder, then renames it) ----
qz=(quantize --model "$model" --method rtn --w-bits 4)
d=$(duration "${qz[@]}" -o "$tmp/qz-ref")
mkdir -p "$tmp/qz"
for f in "${fractions[@]}"; do
  out=$tmp/qz/q-$f
  run_killed "$(python3 -c "print($d * $f)")" "${qz[@]}" -o "$out"
  whole_or_absent "quantize@$f" "$out" model_loads "$out"
done
# A killed quantize leaves at most its hidden staging folder, which the next save removes.
no_visible_temps quantize-temps "$tmp/qz"
expect_ok_quiet() { "$loopq" "$@" >/dev/null 2>&1; }
for f in "${fractions[@]}"; do [[ -d $tmp/qz/q-$f ]] || expect_ok_quiet "${qz[@]}" -o "$tmp/qz/q-$f"; done
left=$(find "$tmp/qz" -maxdepth 1 -name '.*.tmp.*' | wc -l)
if [[ $left -eq 0 ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL [quantize-stale] $left staging folders left"; fi
report quantize

# ---- two quantize runs at once with the same -o ----
for round in 1 2 3; do
  out=$tmp/race/r-$round
  mkdir -p "$tmp/race"
  "$loopq" quantize --model "$model" --method rtn --w-bits 4 -o "$out" >"$tmp/a.out" 2>"$tmp/a.err" &
  pa=$!
  "$loopq" quantize --model "$model" --method rtn --w-bits 8 -o "$out" >"$tmp/b.out" 2>"$tmp/b.err" &
  pb=$!
  wait $pa; ra=$?
  wait $pb; rb=$?
  if (( (ra == 0) + (rb == 0) != 1 )); then
    fail=$((fail + 1)); echo "FAIL [race-$round] exit codes $ra and $rb: exactly one run must win"
    continue
  fi
  loser=$tmp/a.err; winner_bits=8
  (( ra == 0 )) && { loser=$tmp/b.err; winner_bits=4; }
  # The loser may have printed progress first; its error is one line, and the last.
  if [[ $(grep -c error "$loser") -eq 1 ]] && tail -n 1 "$loser" | grep -q "error: .*$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL [race-$round] loser's stderr does not end in one error line: $(head -c 300 "$loser")"
  fi
  no_visible_temps "race-$round" "$tmp/race"
  # Not mixed: the config is the winner's and the weights load against it.
  check "race-$round-loads" model_loads "$out"
  check "race-$round-winner-config" python3 -c "
import json, sys
c = json.load(open(sys.argv[1]))
assert c['quantization_config']['weights']['bits'] == $winner_bits, c['quantization_config']" "$out/config.json"
  echo "kill-safety quantize race $round: winner w_bits=$winner_bits, loser: $(head -c 200 "$loser")"
done

finish
