# Shared helpers for the CLI test scripts. Source after setting $loopq; provides $tmp (removed on
# exit), pass/fail counters, expect_error, expect_ok, check and finish.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0

# expect_error NAME [--match TEXT] ARGS...: exit code 1 or 2 (no crash), exactly one stderr line
# containing "error" (and TEXT when given).
expect_error() {
  local name=$1 match=""
  shift
  if [[ "${1:-}" == "--match" ]]; then
    match=$2
    shift 2
  fi
  timeout 120 "$loopq" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  local lines
  lines=$(wc -l <"$tmp/err")
  if [[ $rc -ge 1 && $rc -le 2 && $lines -eq 1 ]] && grep -q "error" "$tmp/err" &&
    { [[ -z "$match" ]] || grep -qF -- "$match" "$tmp/err"; }; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL [$name] rc=$rc stderr lines=$lines: $(head -c 300 "$tmp/err")"
  fi
}

# expect_ok NAME ARGS...: loopq ARGS succeeds (stdout in $tmp/out).
expect_ok() {
  local name=$1
  shift
  if timeout 300 "$loopq" "$@" >"$tmp/out" 2>"$tmp/err"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL [$name] expected success: $(head -c 300 "$tmp/err")"
  fi
}

# check NAME COMMAND...: any command that must succeed (output kept in $tmp/check.log).
check() {
  local name=$1
  shift
  if "$@" >"$tmp/check.log" 2>&1; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    echo "FAIL [$name] $*: $(tail -n 3 "$tmp/check.log")"
  fi
}

finish() {
  echo "$pass passed, $fail failed"
  [[ $fail -eq 0 ]]
}
