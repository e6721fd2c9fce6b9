#!/usr/bin/env bash
# In the mainline (7.x) guest: upstream drivers/tee/tee_heap.c over our test
# TEE backend serves /dev/dma_heap/protected,* and /dev/tee0.
#  1. rstmemd conformance on everything found (TAP section for the host);
#  2. rstmemd serve --backend auto detects the mainline generation and brokers
#     real protected dma-bufs (page-rounded, exp_name tee, release at last close);
#  3. the C library imports a brokered buffer into a TEE context with the real
#     TEE_IOC_SHM_REGISTER_FD (examples/rstmem-alloc), and its tests run against the daemon.
. "$(dirname "$(readlink -f "$0")")/lib.sh"

check "/dev/tee0 exists" test -c /dev/tee0
for heap in protected,secure-video protected,trusted-ui protected,secure-video-record system; do
  check "/dev/dma_heap/$heap exists" test -c "/dev/dma_heap/$heap"
done

"${RSTMEMD[@]}" conformance --format tap > /tmp/conformance.tap 2> /tmp/conformance.err
status=$?
section conformance-tap < /tmp/conformance.tap
[ "$status" -eq 0 ] && pass "rstmemd conformance: every suite on every device found" \
  || { fail "rstmemd conformance exit $status"; cat /tmp/conformance.err; }

start_daemon --backend auto || exit "$FAILED"
heaps=$("${RSTMEMD[@]}" heaps --socket "$SOCKET" --json)
printf '%s\n' "$heaps" | section heaps-json
grep -q 'serving .*generation mainline\|generation mainline' "$DAEMON_LOG" && pass "serve --backend auto detected the mainline generation" \
  || fail "serve --backend auto did not announce generation mainline: $(head -n 2 "$DAEMON_LOG")"
for useCase in secure-video trusted-ui secure-video-record; do
  out=$("${RSTMEMD[@]}" alloc --socket "$SOCKET" --use-case "$useCase" --size 5000 --json)
  printf '%s\n' "$out" | section "alloc-$useCase"
  [ "$(json_field "$out" lseek_size)" = 8192 ] && pass "$useCase: 5000 bytes arrive as an 8192-byte protected dma-buf" \
    || fail "$useCase: lseek size '$(json_field "$out" lseek_size)', expected 8192"
  [ "$(json_field "$out" exp_name)" = tee ] && pass "$useCase: fdinfo exp_name tee (drivers/tee/tee_heap.c)" \
    || fail "$useCase: fdinfo exp_name '$(json_field "$out" exp_name)', expected tee"
  [ "$(json_field "$out" heap)" = "protected,$useCase" ] && pass "$useCase: served by protected,$useCase" \
    || fail "$useCase: served by '$(json_field "$out" heap)'"
done
check_release_at_last_close protected,trusted-ui

example="$ROOT/build/native/rstmem-alloc"
"$example" --socket "$SOCKET" --tee /dev/tee0 secure-video 5000 > /tmp/example.out 2>&1
status=$?
section rstmem-alloc-example < /tmp/example.out
[ "$status" -eq 0 ] && pass "examples/rstmem-alloc: a brokered protected buffer imported into /dev/tee0" || fail "examples/rstmem-alloc exit $status"
RSTMEMD_SOCKET=$SOCKET RSTMEM_TEST_TEE_DEVICE=/dev/tee0 "$ROOT/build/native/tests/test-tee" > /tmp/test-tee.out 2>&1
status=$?
section c-test-tee < /tmp/test-tee.out
[ "$status" -eq 0 ] && grep -q '^real TEE /dev/tee0: registered a protected buffer' /tmp/test-tee.out \
  && pass "librstmem test-tee: rstmem_tee_register with the real TEE_IOC_SHM_REGISTER_FD" || fail "test-tee exit $status"

stop_daemon
exit "$FAILED"
