#!/usr/bin/env bash
# Runs the kernel's own DMA-heap selftest (tools/testing/selftests/dmabuf-heaps/
# dmabuf-heap.c, built by build-kernel.sh from the same Linux 6.1 tree) inside
# the 6.1 test kernel booted with cma=64M, and checks that it passed on both
# the system heap and the CMA heap ("reserved").
#
# The 6.1 test's exit status is not enough: it returns 0 after printing
# "FAIL (Allocated buffer not zeroed ...)", and it leaves the import part out
# ("Could not open vgem - skipping") when there is no vgem. So the output is
# read: for every heap, each of the six tests must print OK, nothing may print
# FAIL or skip, and both required heaps must have been tested.
# stdout: one "check ok: WHAT" or "check FAIL: WHAT" line per heap and test
# (real-kernels.sh turns them into TAP), then "dmabuf-heap: N passed, N
# failed". stderr: the selftest's own output and the guest's timing.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
# shellcheck source=tests/lib/common.sh
. "$HERE/../lib/common.sh"
LOG_PREFIX=kselftest-dmabuf-heap
REQUIRED_HEAPS=(system reserved)
# The tests main() runs on each heap, in order, as they print themselves.
TESTS=(
  'Testing allocation and importing:'
  'Testing alloced 4k buffers are zeroed:'
  'Testing alloced 1024k buffers are zeroed:'
  'Testing (theoretical)older alloc compat:'
  'Testing (theoretical)newer alloc compat:'
  'Testing expected error cases:'
)

kernel=$("$HERE/build-kernel.sh" 6.1) || die "no 6.1 test kernel"
selftest=$(dirname "$kernel")/dmabuf-heap
[ -x "$selftest" ] || die "$selftest is missing (build-kernel.sh 6.1 builds it)"

status=0
output=$("$HERE/run-guest.sh" "$kernel" --append cma=64M --timeout 300 -- "$selftest") || status=$?
printf '%s\n' "$output" | sed 's/^/    | /' >&2

passed=0
failed=0
# verdict STATUS WHAT: WHAT is the check, stated as what must hold.
verdict() {
  if [ "$1" -eq 0 ]; then passed=$((passed + 1)); echo "check ok: $2"
  else failed=$((failed + 1)); echo "check FAIL: $2"; fi
}

verdict "$status" "dmabuf-heap exits 0 (exit $status)"
for heap in "${REQUIRED_HEAPS[@]}"; do
  # This heap's part of the output: from its header to the next one.
  section=$(printf '%s\n' "$output" | awk -v h="Testing heap: $heap" '
    /^Testing heap: / { inside = ($0 == h) } inside')
  [ -n "$section" ] && ok=0 || ok=1
  verdict "$ok" "heap $heap was tested (/dev/dma_heap/$heap)"
  for test in "${TESTS[@]}"; do
    printf '%s\n' "$section" | grep -F -- "$test" | grep -Eq 'OK$' && ok=0 || ok=1
    verdict "$ok" "$heap: '$test' prints OK"
  done
done
# Whatever heap it was, no FAIL and no skipped part anywhere.
printf '%s\n' "$output" | grep -Eq 'FAIL|skipping|failed' && ok=1 || ok=0
verdict "$ok" "no FAIL, failed or skipping line in the output"

echo "dmabuf-heap: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
