#!/usr/bin/env bash
# The real-kernel tests, run by `./build.sh test` (and alone: tests/kernel/real-kernels.sh
# after ./build.sh). Builds (or reuses) both test kernels, boots each under
# qemu and runs the in-guest checks:
#   Linux 6.1:  the kernel's own dmabuf-heap kselftest on system and reserved;
#               tests/kernel/guest/checks-6.1.sh (conformance dma-heap/dma-buf
#               suites, the daemon brokering real dma-bufs, release at last close);
#   mainline:   tests/kernel/guest/checks-mainline.sh (conformance on every
#               suite, --backend auto = mainline, protected buffers imported into
#               a TEE context with the real TEE_IOC_SHM_REGISTER_FD);
# then prints the model-vs-real table for each kernel (compare-tap.sh): any
# conformance check whose result differs between the kernel and the model
# fails the run. Never skips: a missing qemu or a failed kernel build is a failure.
#
# Results, in build/realkernel/:
#   results.tap        TAP 13, one line per check: each kernel build, every
#                      "check ok|FAIL:" line of the kselftest and of the guests,
#                      each guest's exit status agreeing with its failed checks,
#                      and each model-vs-real comparison. Written when the script
#                      ends, however it ends; its plan comes last, so a run cut
#                      short by SIGKILL leaves a file without one (tests/lib/results.py:
#                      a failure); any other early end adds a failed line saying so.
#   real-6.1.tap, real-mainline.tap
#                      the conformance suites as each real kernel ran them
#   *.out, *.err, *.log the guests' and builds' output
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
LOG_PREFIX="real kernels"
OUT=$ROOT/build/realkernel
DAEMON_DLL=${DAEMON_DLL:-$ROOT/src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900}
RESULTS=$OUT/results.tap

mkdir -p "$OUT"
# Nothing of an earlier run may be counted as this one's.
rm -f "$OUT"/*.tap "$OUT"/*.out "$OUT"/*.err "$OUT"/*.log "$OUT"/image-*
status=0
timings=()
elapsed() { local start=$1; echo $(( $(date +%s) - start ))s; }

# --- results.tap
TAP_LINES=()
# result STATUS DESCRIPTION: one test line (STATUS 0 = ok). A '#' in the
# description is escaped, as TAP wants, so that it never reads as a directive.
result() {
  local description=${2//#/\\#}
  if [ "$1" -eq 0 ]; then TAP_LINES+=("ok $(( ${#TAP_LINES[@]} + 1 )) - $description")
  else TAP_LINES+=("not ok $(( ${#TAP_LINES[@]} + 1 )) - $description"); status=1; fi
}
# check_lines PREFIX FILE: every "check ok: X" / "check FAIL: X" line of FILE as a result "PREFIX: X".
check_lines() {
  local prefix=$1 line
  while IFS= read -r line; do
    case "$line" in
      "check ok: "*) result 0 "$prefix: ${line#check ok: }" ;;
      "check FAIL: "*) result 1 "$prefix: ${line#check FAIL: }" ;;
    esac
  done < "$2"
}
FINISHED=0
write_results() {
  [ "$FINISHED" -eq 1 ] || result 1 "real-kernels.sh ran to its end (it stopped early, exit status $EXIT_STATUS)"
  { echo "TAP version 13"; printf '%s\n' "${TAP_LINES[@]}"; echo "1..${#TAP_LINES[@]}"; } > "$RESULTS.tmp"
  mv "$RESULTS.tmp" "$RESULTS"
}
on_exit write_results
[ -f "$DAEMON_DLL" ] || die "$DAEMON_DLL is not built; run ./build.sh first"

# extract NAME FILE: the lines between the guest's === BEGIN NAME === / === END NAME === markers.
extract() { sed -n "/^=== BEGIN $1 ===\$/,/^=== END $1 ===\$/{/^=== /d;p}" "$2"; }

# Both kernels at once: a cold build is CPU-bound either way, and together they finish sooner.
start=$(date +%s)
log "kernels 6.1 and mainline (built in parallel when not cached)"
"$HERE/build-kernel.sh" 6.1 > "$OUT/image-6.1" 2> "$OUT/build-6.1.log" & build_61=$!
"$HERE/build-kernel.sh" mainline > "$OUT/image-mainline" 2> "$OUT/build-mainline.log" & build_mainline=$!
built=0
wait "$build_61" || built=$?
result "$built" "build or reuse the Linux 6.1 test kernel (tests/kernel/build-kernel.sh 6.1)"
[ "$built" -eq 0 ] || tail -n 30 "$OUT/build-6.1.log" >&2
built=0
wait "$build_mainline" || built=$?
result "$built" "build or reuse the mainline test kernel (tests/kernel/build-kernel.sh mainline)"
[ "$built" -eq 0 ] || tail -n 30 "$OUT/build-mainline.log" >&2
[ "$status" -eq 0 ] || die "a test kernel did not build; see build/realkernel/build-*.log"
image_6_1=$(cat "$OUT/image-6.1")
image_mainline=$(cat "$OUT/image-mainline")
timings+=("build/reuse both kernels: $(elapsed "$start")")

start=$(date +%s)
log "kselftest dmabuf-heap in Linux 6.1"
kselftest=0
"$HERE/kselftest-dmabuf-heap.sh" > "$OUT/kselftest-6.1.out" 2> "$OUT/kselftest-6.1.err" || kselftest=$?
check_lines "kselftest dmabuf-heap (Linux 6.1)" "$OUT/kselftest-6.1.out"
tail -n 1 "$OUT/kselftest-6.1.out"
failed_checks=$(grep -c '^check FAIL: ' "$OUT/kselftest-6.1.out" || true)
[ "$kselftest" -eq 0 ] || [ "$failed_checks" -gt 0 ] || tail -n 30 "$OUT/kselftest-6.1.err" >&2
# Its exit status must tell what its lines tell: a crash after them is a failure of its own.
agree=1
if [ "$kselftest" -eq 0 ]; then [ "$failed_checks" -eq 0 ] && agree=0; else [ "$failed_checks" -gt 0 ] && agree=0; fi
result "$agree" "kselftest-dmabuf-heap.sh exit status $kselftest agrees with its $failed_checks failed check(s)"
timings+=("kselftest in 6.1: $(elapsed "$start")")

model_tap() { # generation filters...: the model's TAP for the same selection
  local generation=$1; shift
  dotnet "$DAEMON_DLL" conformance --model --generation "$generation" --format tap "$@" 2>/dev/null || true
}

run_checks() { # kernel image script append
  local kernel=$1 image=$2 script=$3 append=$4 start guest_status=0 failed_checks
  start=$(date +%s)
  log "checks in $kernel ($script)"
  "$HERE/run-guest.sh" "$image" --timeout "$GUEST_TIMEOUT" --append "$append" --env "DAEMON_DLL=$DAEMON_DLL" \
    -- "$HERE/guest/$script" > "$OUT/$kernel.out" 2> "$OUT/$kernel.err" || guest_status=$?
  grep '^check ' "$OUT/$kernel.out" || true
  check_lines "Linux $kernel" "$OUT/$kernel.out"
  # The guest script exits with its number of failed checks; anything else
  # (125: the guest never reported; a crash) means it did not run to its end.
  failed_checks=$(grep -c '^check FAIL: ' "$OUT/$kernel.out" || true)
  agree=1
  [ "$guest_status" -eq "$failed_checks" ] && agree=0
  result "$agree" "Linux $kernel: $script ran to its end (exit $guest_status, $failed_checks failed check(s))"
  if [ "$guest_status" -ne 0 ]; then
    log "FAILED: $kernel guest checks (exit $guest_status); output in build/realkernel/$kernel.out and .err"
    tail -n 20 "$OUT/$kernel.err" >&2
  fi
  extract conformance-tap "$OUT/$kernel.out" > "$OUT/real-$kernel.tap"
  timings+=("boot + checks in $kernel: $(elapsed "$start")")
}

compare() { # model.tap real.tap label
  local compared=0
  "$HERE/compare-tap.sh" "$1" "$2" "$3" || compared=$?
  result "$compared" "$3: every conformance check that ran on both has the same result (compare-tap.sh)"
}

run_checks 6.1 "$image_6_1" checks-6.1.sh "cma=64M"
model_tap mainline --heap system --heap reserved --filter 'dma-heap.*' --filter 'dma-buf.*' > "$OUT/model-6.1.tap"
compare "$OUT/model-6.1.tap" "$OUT/real-6.1.tap" "Linux 6.1 vs model"

run_checks mainline "$image_mainline" checks-mainline.sh "cma=64M"
model_tap mainline > "$OUT/model-mainline.tap"
compare "$OUT/model-mainline.tap" "$OUT/real-mainline.tap" "Linux mainline vs model (mainline)"

log "timings"
printf '  %s\n' "${timings[@]}" >&2
[ "$status" -eq 0 ] && log "all real-kernel checks passed ($RESULTS)" || log "FAILED (see $RESULTS)"
FINISHED=1
exit "$status"
