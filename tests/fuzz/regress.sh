#!/usr/bin/env bash
# Replay a checked-in corpus once, no fuzzing: regress.sh FUZZER CORPUS_DIR LOG [OPTS...]
# The seeds run in one process; each crash-* (a bug found once) runs in its own, so one
# that still fails does not hide the others. Prints one line per failure and a summary;
# exits 1 when anything failed (the full output is in LOG).
set -uo pipefail
bin=$1 dir=$2 log=$3
shift 3
name=$(basename "$bin")
: >"$log"
seeds=() crashes=() failed=()
for f in "$dir"/*; do
  [ -f "$f" ] || continue
  case $(basename "$f") in crash-*) crashes+=("$f") ;; *) seeds+=("$f") ;; esac
done
summary() { # the first line that says what went wrong, from the log of one run
  grep -m1 -E 'INVARIANT VIOLATED|ERROR: AddressSanitizer|runtime error|ERROR: libFuzzer|ERROR: LeakSanitizer' "$1" |
    sed 's/^ *//' | cut -c1-240
}
# the seeds in one process; after a failure, go on with the seeds after the failing one
rest=("${seeds[@]}")
while ((${#rest[@]})); do
  one=$(mktemp)
  if "$bin" "$@" "${rest[@]}" >"$one" 2>&1; then
    rest=()
  else
    bad=$(grep '^Running: ' "$one" | tail -n1 | sed 's/^Running: //')
    failed+=("$bad")
    echo "fuzz-regress: $name: FAILED on $bad: $(summary "$one")"
    next=()
    seen=0
    for f in "${rest[@]}"; do
      ((seen)) && next+=("$f")
      [ "$f" = "$bad" ] && seen=1
    done
    ((seen)) || next=() # could not tell which input failed: stop
    rest=("${next[@]}")
  fi
  cat "$one" >>"$log"
  rm -f "$one"
done
for f in "${crashes[@]}"; do
  one=$(mktemp)
  if ! "$bin" "$@" "$f" >"$one" 2>&1; then
    failed+=("$f")
    echo "fuzz-regress: $name: FAILED on $f: $(summary "$one")"
  fi
  cat "$one" >>"$log"
  rm -f "$one"
done
total=$((${#seeds[@]} + ${#crashes[@]}))
if ((${#failed[@]})); then
  echo "fuzz-regress: $name: ${#failed[@]} of $total inputs fail (log $log)"
  exit 1
fi
echo "fuzz-regress: $name: $total inputs ok"
