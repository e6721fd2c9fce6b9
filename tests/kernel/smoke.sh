#!/usr/bin/env bash
# Smoke test of the real-kernel test infrastructure: builds (or finds cached)
# both test kernels, boots each under qemu and checks inside:
#   6.1       /dev/dma_heap/system and /dev/dma_heap/reserved exist, and the
#             host's dotnet runs (`dotnet --info`) over 9p
#   mainline  /dev/tee0 and /dev/dma_heap/protected,{secure-video,trusted-ui,
#             secure-video-record} exist, and protected-heap-check (built here
#             against that kernel's uapi headers) passes: tee-testdrv and
#             upstream's tee_heap.c behave as the kernel source says
# Prints build, boot and run timings; ends with "smoke: N passed, N failed".
# Exits non-zero when anything is missing: no qemu, a kernel that does not
# build, a guest that does not report. It never skips.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=tests/lib/common.sh
. "$HERE/../lib/common.sh"
LOG_PREFIX=smoke
passed=0
failed=0

result() {
  if [ "$1" -eq 0 ]; then passed=$((passed + 1)); log "ok   $2"; else failed=$((failed + 1)); log "FAIL $2"; fi
}
finish() {
  echo "smoke: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}
now() { date +%s.%N; }
seconds_since() { printf '%.1f' "$(echo "$(now) - $1" | bc)"; }

# Both kernels build at once: while one is in a single-threaded step
# (unpacking, configuring, linking, compressing) the other keeps the cores busy.
# Sets KERNEL_6_1 and KERNEL_mainline; a kernel that does not build ends the test.
build_both() {
  local start name status kind paths
  make_temp_dir paths smoke
  start=$(now)
  local -A pid=()
  for name in 6.1 mainline; do
    { "$HERE/build-kernel.sh" "$name" > "$paths/$name"; status=$?; now > "$paths/$name.end"; exit "$status"; } &
    pid[$name]=$!
  done
  for name in 6.1 mainline; do
    status=0
    wait "${pid[$name]}" || status=$?
    if [ "$status" -ne 0 ]; then
      result 1 "build-kernel.sh $name (exit $status)"
      continue
    fi
    local kernel
    kernel=$(cat "$paths/$name")
    # A kernel built by this very call is newer than the start of the call.
    kind=warm
    [ "$(stat -c %Y "$(dirname "$kernel")/info")" -ge "${start%.*}" ] && kind=cold
    result 0 "build-kernel.sh $name: $kind, $(printf '%.1f' "$(echo "$(cat "$paths/$name.end") - $start" | bc)") s -> $kernel"
    printf -v "KERNEL_${name//./_}" '%s' "$kernel"
  done
  [ "$failed" -eq 0 ] || finish
}

# run_guest DESCRIPTION KERNEL RUN-GUEST-OPTIONS... -- COMMAND...: the guest's
# output goes to stderr (for the log) and to $GUEST_OUTPUT.
GUEST_OUTPUT=
run_guest() {
  local description=$1 start status=0
  shift
  start=$(now)
  GUEST_OUTPUT=$("$HERE/run-guest.sh" "$@" 2>&1) || status=$?
  printf '%s\n' "$GUEST_OUTPUT" | sed 's/^/    | /' >&2
  result "$status" "$description: exit $status, $(seconds_since "$start") s boot+run+poweroff"
}

build_both

run_guest "6.1 guest: dma heaps and dotnet --info" "$KERNEL_6_1" --append cma=64M -- sh -c '
  set -e
  ls -l /dev/dma_heap/
  test -c /dev/dma_heap/system
  test -c /dev/dma_heap/reserved
  uname -r
  dotnet --info
'
printf '%s\n' "$GUEST_OUTPUT" | grep -q '^ *Version: *10\.' && ok=0 || ok=1
result "$ok" "6.1 guest: dotnet --info names a .NET 10 host"

# Built next to the kernel (the guest sees the host's files, but a fresh tmpfs on /tmp).
kernel_dir=$(dirname "$KERNEL_mainline")
check_program=$kernel_dir/protected-heap-check
on_exit "rm -f $(shell_quote "$check_program.tmp.$$")"
gcc -O2 -Wall -Werror -static -I"$kernel_dir/headers/include" -o "$check_program.tmp.$$" "$HERE/protected-heap-check.c" \
  && mv "$check_program.tmp.$$" "$check_program" && ok=0 || ok=1
result "$ok" "protected-heap-check.c built against $kernel_dir/headers"

run_guest "mainline guest: TEE device, protected heaps, protected-heap-check" "$KERNEL_mainline" --append cma=64M -- sh -c '
  set -e
  ls -l /dev/tee0 /dev/dma_heap/
  test -c /dev/tee0
  test -c /dev/dma_heap/protected,secure-video
  test -c /dev/dma_heap/protected,trusted-ui
  test -c /dev/dma_heap/protected,secure-video-record
  uname -r
  "$1"
' sh "$check_program"
printf '%s\n' "$GUEST_OUTPUT" | grep -q '^protected-heap-check: [1-9][0-9]* passed, 0 failed$' && ok=0 || ok=1
result "$ok" "mainline guest: protected-heap-check reported no failure"

finish
