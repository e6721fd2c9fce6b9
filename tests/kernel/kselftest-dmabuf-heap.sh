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
# Ends with "dmabuf-heap: N passed, N failed" (one per heap and test).
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
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

log() { printf 'kselftest-dmabuf-heap: %s\n' "$*" >&2; }

kernel=$("$HERE/build-kernel.sh" 6.1) || { log "FAILED: no 6.1 test kernel"; exit 1; }
selftest=$(dirname "$kernel")/dmabuf-heap
[ -x "$selftest" ] || { log "FAILED: $selftest is missing (build-kernel.sh 6.1 builds it)"; exit 1; }

status=0
output=$("$HERE/run-guest.sh" "$kernel" --append cma=64M --timeout 300 -- "$selftest") || status=$?
printf '%s\n' "$output" | sed 's/^/    | /' >&2

passed=0
failed=0
verdict() {
  if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); log "FAIL: $2"; fi
}

verdict "$status" "dmabuf-heap exited with status $status"
for heap in "${REQUIRED_HEAPS[@]}"; do
  # This heap's part of the output: from its header to the next one.
  section=$(printf '%s\n' "$output" | awk -v h="Testing heap: $heap" '
    /^Testing heap: / { inside = ($0 == h) } inside')
  [ -n "$section" ] && ok=0 || ok=1
  verdict "$ok" "heap $heap was not tested (is /dev/dma_heap/$heap there?)"
  for test in "${TESTS[@]}"; do
    printf '%s\n' "$section" | grep -F -- "$test" | grep -Eq 'OK$' && ok=0 || ok=1
    verdict "$ok" "$heap: '$test' did not print OK"
  done
done
# Whatever heap it was, no FAIL and no skipped part anywhere.
printf '%s\n' "$output" | grep -Eq 'FAIL|skipping|failed' && ok=1 || ok=0
verdict "$ok" "the output has a FAIL, failed or skipping line"

echo "dmabuf-heap: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
