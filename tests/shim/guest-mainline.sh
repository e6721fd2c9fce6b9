#!/usr/bin/env bash
# In the mainline (7.x) guest (tests/kernel/run-guest.sh, as root), with
# upstream tee_heap.c's /dev/dma_heap/protected,secure-video (mode 0600,
# root): protected-alloc (argument 1, tests/shim/protected-alloc.c) run as
# the unprivileged user nobody,
#   1. without the shim: it cannot open the heap (EACCES);
#   2. under `rstmemd exec` against `rstmemd serve --backend auto` (root,
#      socket group nogroup) whose access policy grants nobody the
#      restricted heaps: it gets a real protected dma-buf (page-rounded,
#      exp_name tee, no CPU mapping);
#   3. the same against a daemon whose policy grants them only to root: the
#      program's own DMA_HEAP_IOCTL_ALLOC fails with EACCES.
# Output: "check ok|FAIL:" lines; exit status = failed checks.
. "$(dirname "$(readlink -f "$0")")/../kernel/guest/lib.sh"

program=$1
heap=protected,secure-video
NOBODY=65534
mkdir -p /tmp/nobody
chown "$NOBODY:$NOBODY" /tmp/nobody
as_nobody() {
  setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups \
    env HOME=/tmp/nobody DOTNET_CLI_HOME=/tmp/nobody "$@"
}

check "/dev/dma_heap/$heap exists and only root may open it" sh -c "test -c '/dev/dma_heap/$heap' && [ \"\$(stat -c %a '/dev/dma_heap/$heap')\" = 600 ]"

out=$(as_nobody "$program" "$heap" 2>&1)
status=$?
[ "$status" -eq 2 ] && [ "$out" = "open: EACCES" ] && pass "as nobody without the shim: $out" \
  || fail "as nobody without the shim: exit $status, '$out'; expected exit 2, 'open: EACCES'"

# Access policy (rstmemd.json(5), Access): who may allocate from the restricted heaps.
granted=/tmp/nobody/granted.json
refused=/tmp/nobody/refused.json
printf '{ "Access": { "Rules": [ { "Name": "player", "Heaps": ["@restricted"], "Users": ["%s"] } ], "MaxPoolSharePercent": 100 } }\n' "$NOBODY" >"$granted"
printf '{ "Access": { "Rules": [ { "Name": "root-only", "Heaps": ["@restricted"], "Users": ["0"] } ] } }\n' >"$refused"

start_daemon --backend auto --socket-group nogroup --config "$granted" || exit "$FAILED"
out=$(as_nobody "${RSTMEMD[@]}" exec --socket "$SOCKET" -- "$program" "$heap" 2>&1)
status=$?
# tee_heap.c: exp_name "tee"; no mmap (tee_heap_buf_ops has none: dma_buf_mmap_internal gives EINVAL).
expected="buffer size=8192 exp_name=tee mmap=EINVAL"
[ "$status" -eq 0 ] && [ "$out" = "$expected" ] && pass "as nobody under rstmemd exec: $out" \
  || fail "as nobody under rstmemd exec: exit $status, '$out'; expected '$expected'"
grep -q "handed buffer .* from $heap (program's own DMA_HEAP_IOCTL_ALLOC) to uid $NOBODY " "$DAEMON_LOG" &&
  pass "the daemon handed the protected buffer to uid $NOBODY through HEAP_IOCTL" ||
  fail "the daemon's log shows no HEAP_IOCTL allocation from $heap for uid $NOBODY"
stop_daemon

start_daemon --backend auto --socket-group nogroup --config "$refused" || exit "$FAILED"
out=$(as_nobody "${RSTMEMD[@]}" exec --socket "$SOCKET" -- "$program" "$heap" 2>&1)
status=$?
[ "$status" -eq 3 ] && [ "$out" = "alloc: EACCES" ] && pass "as nobody under rstmemd exec, not granted $heap by the policy: $out" \
  || fail "as nobody under rstmemd exec, not granted $heap: exit $status, '$out'; expected exit 3, 'alloc: EACCES'"
stop_daemon
exit "$FAILED"
