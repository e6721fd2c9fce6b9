#!/usr/bin/env bash
# In the Linux 6.1 guest: real /dev/dma_heap/system and /dev/dma_heap/reserved.
#  1. rstmemd conformance, dma-heap and dma-buf suites on both heaps (TAP section for the host);
#  2. rstmemd serve --backend dma-heap brokering real dma-bufs to `rstmemd alloc`:
#     page-rounded sizes, fdinfo exp_name and the daemon's buffer name,
#     release seen at the client's last close;
#  3. the C library (examples/rstmem-alloc) getting real dma-bufs from that daemon.
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
  for size in 5000; do
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
  check_release_at_last_close "$heap"
done

example="$ROOT/build/native/rstmem-alloc"
for heap in system reserved; do
  "$example" --socket "$SOCKET" --heap "$heap" 5000 > /tmp/example.out 2>&1
  status=$?
  section "rstmem-alloc-$heap" < /tmp/example.out
  [ "$status" -eq 0 ] && grep -q 8192 /tmp/example.out && pass "librstmem (examples/rstmem-alloc): a real $heap dma-buf of 8192 bytes" \
    || fail "examples/rstmem-alloc --heap $heap exit $status"
done

stop_daemon
exit "$FAILED"
