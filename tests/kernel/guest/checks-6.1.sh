#!/usr/bin/env bash
# In the Linux 6.1 guest: real /dev/dma_heap/system and /dev/dma_heap/reserved.
#  1. rstmemd conformance, dma-heap and dma-buf suites on both heaps (TAP section for the host);
#  2. rstmemd serve --backend dma-heap brokering real dma-bufs to `rstmemd alloc`:
#     page-rounded sizes, fdinfo exp_name and the daemon's buffer name,
#     release seen at the client's last close;
#  3. the C library's tests against that daemon (RSTMEM_TEST_SOCKET), when built.
. "$(dirname "$(readlink -f "$0")")/lib.sh"

for heap in system reserved; do
  check "/dev/dma_heap/$heap exists" test -c "/dev/dma_heap/$heap"
done

"${RSTMEMD[@]}" conformance --heap system --heap reserved --filter 'dma-heap.*' --filter 'dma-buf.*' --format tap > /tmp/conformance.tap 2> /tmp/conformance.err
status=$?
section conformance-tap < /tmp/conformance.tap
[ "$status" -eq 0 ] && pass "rstmemd conformance: dma-heap and dma-buf suites on system and reserved" \
  || { fail "rstmemd conformance exit $status"; cat /tmp/conformance.err; }

start_daemon --backend dma-heap --config "$ROOT/tests/kernel/guest/heaps-system-reserved.json" || exit "$FAILED"
heaps=$("${RSTMEMD[@]}" heaps --socket "$SOCKET" --json)
printf '%s\n' "$heaps" | section heaps-json
for heap in system reserved; do
  case "$heaps" in *"\"$heap\""*) pass "the daemon offers $heap" ;; *) fail "the daemon does not offer $heap" ;; esac
  for size in 5000 1048576; do
    out=$("${RSTMEMD[@]}" alloc --socket "$SOCKET" --heap "$heap" --size "$size" --json)
    printf '%s\n' "$out" | section "alloc-$heap-$size"
    expected=$(( (size + 4095) / 4096 * 4096 ))
    [ "$(json_field "$out" lseek_size)" = "$expected" ] && pass "$heap $size bytes: lseek size $expected" \
      || fail "$heap $size bytes: lseek size $(json_field "$out" lseek_size), expected $expected"
    [ "$(json_field "$out" size)" = "$expected" ] && pass "$heap $size bytes: reported size $expected" \
      || fail "$heap $size bytes: reported size $(json_field "$out" size), expected $expected"
    [ "$(json_field "$out" exp_name)" = "$heap" ] && pass "$heap: fdinfo exp_name $heap" \
      || fail "$heap: fdinfo exp_name '$(json_field "$out" exp_name)', expected $heap"
    case "$(json_field "$out" name)" in
      "$heap":*:*) pass "$heap: fdinfo name '$(json_field "$out" name)' is the daemon's buffer name" ;;
      *) fail "$heap: fdinfo name '$(json_field "$out" name)', expected $heap:<pid>:<n>" ;;
    esac
  done
  measure_release "$heap"
done

if [ -x "$ROOT/build/native/tests/rstmem-test" ]; then
  RSTMEMD_SOCKET=$SOCKET "$ROOT/build/native/tests/rstmem-test" --real-kernel > /tmp/ctest.out 2>&1
  status=$?
  section c-library-tests < /tmp/ctest.out
  [ "$status" -eq 0 ] && pass "C library tests against the real-kernel daemon" || fail "C library tests exit $status"
fi

stop_daemon
exit "$FAILED"
