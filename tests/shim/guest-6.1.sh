#!/usr/bin/env bash
# In the Linux 6.1 guest (tests/kernel/run-guest.sh, as root), with the real
# /dev/dma_heap/system and /dev/dma_heap/reserved (mode 0600, root):
#   1. the kernel's dmabuf-heap selftest (argument 1: the dynamically linked
#      build tests/shim/shim-tests.sh made from Linux 6.1's source) as root,
#      without the shim: the reference;
#   2. the same binary as the unprivileged user nobody, without the shim:
#      it cannot open the heaps;
#   3. the same binary as nobody under `rstmemd exec`, against `rstmemd serve
#      --backend dma-heap` (root) serving system and reserved to the group
#      nogroup: the host compares its verdicts with 1.
# Output: "check ok|FAIL:" lines and sections selftest-root, selftest-plain,
# selftest-shim (the host reads them); exit status = failed checks.
. "$(dirname "$(readlink -f "$0")")/../kernel/guest/lib.sh"

selftest=$1
NOBODY=65534
mkdir -p /tmp/nobody
chown "$NOBODY:$NOBODY" /tmp/nobody
as_nobody() {
  setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups \
    env HOME=/tmp/nobody DOTNET_CLI_HOME=/tmp/nobody "$@"
}

for heap in system reserved; do
  check "/dev/dma_heap/$heap exists and only root may open it" sh -c "test -c /dev/dma_heap/$heap && [ \"\$(stat -c %a /dev/dma_heap/$heap)\" = 600 ]"
done

status=0
"$selftest" > /tmp/root.out 2>&1 || status=$?
section selftest-root < /tmp/root.out
echo "selftest-root-exit $status"

status=0
as_nobody "$selftest" > /tmp/plain.out 2>&1 || status=$?
section selftest-plain < /tmp/plain.out
if [ "$status" -ne 0 ] && grep -q '^open /dev/dma_heap/.* failed!' /tmp/plain.out && ! grep -q 'OK$' /tmp/plain.out; then
  pass "as nobody without the shim the selftest cannot open the heaps (exit $status: $(grep -m1 '^open ' /tmp/plain.out))"
else
  fail "as nobody without the shim the selftest got further than opening the heaps (exit $status)"
fi

start_daemon --backend dma-heap --config "$ROOT/tests/kernel/guest/heaps-system-reserved.json" --socket-group nogroup || exit "$FAILED"
status=0
as_nobody "${RSTMEMD[@]}" exec --socket "$SOCKET" -- "$selftest" > /tmp/shim.out 2>&1 || status=$?
section selftest-shim < /tmp/shim.out
echo "selftest-shim-exit $status"
grep -q "handed buffer .* (program's own DMA_HEAP_IOCTL_ALLOC) to uid $NOBODY " "$DAEMON_LOG" &&
  pass "the daemon handed real dma-bufs to uid $NOBODY through HEAP_IOCTL" ||
  fail "the daemon's log shows no HEAP_IOCTL allocation for uid $NOBODY"
stop_daemon
exit "$FAILED"
