# shellcheck shell=bash
# TAP (Test Anything Protocol, version 12) for the shell test scripts: one
# "ok N - what" or "not ok N - what" per check, diagnostics as "# " lines,
# the plan at the end, and a closing count as a TAP comment (tests/lib/results.py
# reads the files strictly: every line must be TAP).
#
#   . tests/lib/tap.sh
#   tap_ok "what"; tap_not_ok "what" [detail lines...]; tap_check "what" $?
#   some command | tap_diag
#   tap_plan N           # optional: the plan up front
#   tap_finish NAME      # prints the plan (unless planned) and "# NAME: P passed, F failed, 0 skipped"; false if any failed

TAP_COUNT=0
TAP_FAILED=0
TAP_PLANNED=

# tap_plan N: the plan up front (a script that knows its checks in advance); tap_finish then checks it.
tap_plan() { TAP_PLANNED=$1; printf '1..%d\n' "$1"; }

tap_ok() { TAP_COUNT=$((TAP_COUNT + 1)); printf 'ok %d - %s\n' "$TAP_COUNT" "$1"; }

# tap_not_ok WHAT [DETAIL...]: each detail line becomes a diagnostic.
tap_not_ok() {
  TAP_COUNT=$((TAP_COUNT + 1)); TAP_FAILED=$((TAP_FAILED + 1))
  printf 'not ok %d - %s\n' "$TAP_COUNT" "$1"
  shift
  local line
  for line in "$@"; do printf '%s\n' "$line" | tap_diag; done
}

# tap_check WHAT STATUS: ok when STATUS (an exit status) is 0.
tap_check() { if [ "$2" -eq 0 ]; then tap_ok "$1"; else tap_not_ok "$1"; fi; }

# Standard input as diagnostics.
tap_diag() { sed 's/^/# /'; }

# tap_finish NAME: the plan and the closing count; returns non-zero when a check failed.
tap_finish() {
  if [ -z "$TAP_PLANNED" ]; then
    printf '1..%d\n' "$TAP_COUNT"
  elif [ "$TAP_COUNT" -ne "$TAP_PLANNED" ]; then
    printf 'Bail out! ran %d checks, planned %d\n' "$TAP_COUNT" "$TAP_PLANNED"
    return 1
  fi
  printf '# %s: %d passed, %d failed, 0 skipped\n' "$1" "$((TAP_COUNT - TAP_FAILED))" "$TAP_FAILED"
  [ "$TAP_FAILED" -eq 0 ]
}
