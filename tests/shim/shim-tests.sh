#!/usr/bin/env bash
# librstmem-preload.so and `rstmemd exec` on the build machine, against a
# fresh `rstmemd serve --backend model` (the model's system and reserved
# heaps only, as the 6.1 test kernel has) on a private socket. TAP on stdout.
#
#   1. The kernel's own dmabuf-heap selftest, built from Linux 6.1's source
#      (bookworm linux-source-6.1, the tree tests/kernel/build-kernel.sh
#      builds the 6.1 test kernel from) against that kernel's uapi headers,
#      unmodified and dynamically linked, run under `rstmemd exec`: for each
#      heap, each test's verdict (OK or FAIL) must be the one the real 6.1
#      kernel gave. The real verdicts come from this run's 6.1 guest
#      (build/realkernel/kselftest-6.1.err, written by tests/kernel/
#      real-kernels.sh before this stage) or, when that is missing, from the
#      guest output recorded in tests/shim/dmabuf-heap-6.1.real (the TAP says
#      which). The vgem import inside "allocation and importing" cannot run
#      here (no /dev/dri vgem on the build machine): it is reported as a SKIP
#      per heap. Without the shim the same binary must not find the heaps.
#   2. Ordinary programs (sh, ls, cat, python3) run unchanged under the shim:
#      same output and exit status as without it; `ls /dev/dma_heap` lists
#      the served heaps.
#   3. rstmemd exec's exit status: the program's, 128+N for signal N, 127 for
#      a program that does not exist.
#   4. In the 6.1 guest (tests/kernel/run-guest.sh, tests/shim/guest-6.1.sh)
#      against the real heaps: the same selftest binary as the unprivileged
#      user nobody cannot open them; as nobody under `rstmemd exec`, against
#      `rstmemd serve --backend dma-heap`, it gives root's verdicts (the vgem
#      import is a SKIP there: /dev/dri/card0 is root's).
#   5. In the mainline guest (tests/shim/guest-mainline.sh): a small program
#      (tests/shim/protected-alloc.c) run as nobody cannot open
#      /dev/dma_heap/protected,secure-video; under `rstmemd exec` against
#      `serve --backend auto` it gets a real protected dma-buf.
#
# Environment: DAEMON_DLL (rstmemd.dll; build.sh passes it), RSTMEMD_LAUNCHER
# (default build/bin/rstmemd). Needs ./build.sh first. Logs in build/shim/.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
LOG_PREFIX=shim-tests

DAEMON_DLL=${DAEMON_DLL:-$ROOT/src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll}
RSTMEMD=${RSTMEMD_LAUNCHER:-$ROOT/build/bin/rstmemd}
OUT=$ROOT/build/shim
REAL_GUEST_OUTPUT=$ROOT/build/realkernel/kselftest-6.1.err
REAL_RECORDED=$HERE/dmabuf-heap-6.1.real
HEAPS=(system reserved)
# The tests main() runs on each heap, as they print themselves (tests/kernel/kselftest-dmabuf-heap.sh).
TESTS=(
  'Testing allocation and importing:'
  'Testing alloced 4k buffers are zeroed:'
  'Testing alloced 1024k buffers are zeroed:'
  'Testing (theoretical)older alloc compat:'
  'Testing (theoretical)newer alloc compat:'
  'Testing expected error cases:'
)
SKIPPED=0

[ -f "$DAEMON_DLL" ] || die "$DAEMON_DLL is missing: run ./build.sh first"
[ -x "$RSTMEMD" ] || die "$RSTMEMD is missing: run ./build.sh first"
[ -f "$ROOT/build/native/librstmem-preload.so" ] || die "build/native/librstmem-preload.so is missing: run ./build.sh first"
mkdir -p "$OUT"
make_temp_dir WORK shim-tests

tap_skip() { TAP_COUNT=$((TAP_COUNT + 1)); printf 'ok %d - %s # SKIP %s\n' "$TAP_COUNT" "$1" "$2"; SKIPPED=$((SKIPPED + 1)); }

# ---- the selftest from Linux 6.1's source ------------------------------------

# The 6.1 test kernel (cached; built by real-kernels.sh earlier in ./build.sh
# test) gives the uapi headers; its source package gives dmabuf-heap.c.
kernel=$("$ROOT/tests/kernel/build-kernel.sh" 6.1) || die "no 6.1 test kernel (tests/kernel/build-kernel.sh 6.1)"
headers=$(dirname "$kernel")/headers/include
ensure_debian_packages linux-source-6.1 gcc
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
source=$OUT/dmabuf-heap-$version.c
member=linux-source-6.1/tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c
if [ ! -f "$source" ]; then
  log "extracting $member from /usr/src/linux-source-6.1.tar.xz ($version)"
  tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$WORK" "$member" || die "cannot extract $member"
  mv "$WORK/$member" "$source"
fi
selftest=$OUT/dmabuf-heap
gcc -O2 -Wall -I"$headers" -o "$selftest" "$source" 2>"$OUT/selftest-build.log" ||
  die "building $source failed: $(cat "$OUT/selftest-build.log")"
# LD_PRELOAD reaches dynamically linked programs only.
readelf -d "$selftest" | grep -q 'NEEDED.*libc\.so' || die "$selftest is not dynamically linked"

# ---- the daemon ----------------------------------------------------------------

socket=$WORK/rstmemd.sock
# The 6.1 guest has system and reserved only: no use-case heaps in the model either.
cat > "$WORK/rstmemd.json" <<'EOF'
{ "Model": { "Generation": "mainline", "CmaHeapName": "reserved", "CmaHeapSize": "64MiB",
  "UseCases": { "secure-video": { "Enabled": false }, "trusted-ui": { "Enabled": false },
                "secure-video-record": { "Enabled": false } } } }
EOF
env -u RSTMEMD_SOCKET dotnet "$DAEMON_DLL" serve --backend model --config "$WORK/rstmemd.json" \
  --socket "$socket" > "$OUT/rstmemd.log" 2>&1 &
daemon=$!
on_exit "kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true"
# Ready = it said so and the socket exists; 120 s is a bound to give up at, not a measure.
for _ in $(seq 1200); do
  grep -q 'rstmemd ready' "$OUT/rstmemd.log" && [ -S "$socket" ] && break
  kill -0 "$daemon" 2>/dev/null || die "rstmemd exited before it was ready: $(tail -n 20 "$OUT/rstmemd.log")"
  sleep 0.1
done
[ -S "$socket" ] || die "rstmemd not ready after 120 s: $(tail -n 20 "$OUT/rstmemd.log")"

run_exec() { env -u LD_PRELOAD "$RSTMEMD" exec --socket "$socket" -- "$@"; }

# ---- 1. the selftest, under the shim and on the real kernel -------------------

status=0
run_exec "$selftest" > "$OUT/selftest-shim.out" 2>&1 || status=$?
sed 's/^/# shim | /' "$OUT/selftest-shim.out"
if [ -f "$REAL_GUEST_OUTPUT" ] && grep -q '| Testing heap: ' "$REAL_GUEST_OUTPUT"; then
  real_name="this run's Linux 6.1 guest ($REAL_GUEST_OUTPUT)"
  sed -n 's/^    | //p' "$REAL_GUEST_OUTPUT" > "$OUT/selftest-real.out"
else
  real_name="the recorded Linux 6.1 guest output ($REAL_RECORDED)"
  cp "$REAL_RECORDED" "$OUT/selftest-real.out"
fi
echo "# real verdicts from $real_name"

# verdict FILE HEAP TEST: OK, FAIL, or "missing" (the test's line did not appear).
verdict() {
  local line
  line=$(awk -v h="Testing heap: $2" -v t="$3" '/^Testing heap: / { inside = ($0 == h) }
    inside && index($0, t) { print; exit }' "$1")
  case "$line" in *FAIL*) echo FAIL ;; *OK) echo OK ;; '') echo missing ;; *) echo "other: $line" ;; esac
}

tap_check "dmabuf-heap exits 0 under rstmemd exec (exit $status), as on Linux 6.1" "$status"
for heap in "${HEAPS[@]}"; do
  for test in "${TESTS[@]}"; do
    shim=$(verdict "$OUT/selftest-shim.out" "$heap" "$test")
    real=$(verdict "$OUT/selftest-real.out" "$heap" "$test")
    if [ "$shim" = "$real" ] && [ "$real" != missing ]; then
      tap_ok "$heap: '$test' $shim under the shim, $real on Linux 6.1"
    else
      tap_not_ok "$heap: '$test' $shim under the shim, $real on Linux 6.1"
    fi
  done
  section=$(awk -v h="Testing heap: $heap" '/^Testing heap: / { inside = ($0 == h) } inside' "$OUT/selftest-shim.out")
  if [ -z "$section" ]; then
    tap_not_ok "$heap: not tested under the shim, so neither was its vgem import"
  elif printf '%s\n' "$section" | grep -q 'Could not open vgem - skipping'; then
    tap_skip "$heap: the vgem import of 'Testing allocation and importing'" "no vgem (/dev/dri/card*) on the build machine"
  else
    tap_ok "$heap: the vgem import of 'Testing allocation and importing' ran"
  fi
done
# Control: the same binary without the shim does not see these heaps here.
plain=0
env -u LD_PRELOAD "$selftest" > "$OUT/selftest-plain.out" 2>&1 || plain=$?
if grep -q '^Testing heap: system$' "$OUT/selftest-plain.out" && grep -q '^Testing heap: reserved$' "$OUT/selftest-plain.out"; then
  tap_not_ok "without the shim the selftest does not reach the model's heaps (it did: the comparison proves nothing)"
else
  tap_ok "without the shim the selftest does not reach the model's heaps (exit $plain: $(head -n 1 "$OUT/selftest-plain.out"))"
fi

# ---- 2. ordinary programs ---------------------------------------------------------

mkdir "$WORK/files"
printf 'line one\nline two\n' > "$WORK/files/file.txt"
ln -s file.txt "$WORK/files/link"
# same_output WHAT COMMAND...: stdout, stderr and status equal with and without the shim.
same_output() {
  local what=$1 a=0 b=0
  shift
  env -u LD_PRELOAD "$@" > "$WORK/plain.out" 2>&1 || a=$?
  run_exec "$@" > "$WORK/shim.out" 2>&1 || b=$?
  if [ "$a" = "$b" ] && cmp -s "$WORK/plain.out" "$WORK/shim.out"; then
    tap_ok "$what: same output and exit status ($a) under the shim"
  else
    tap_not_ok "$what: differs under the shim (exit $a without, $b with)" \
      "$(diff "$WORK/plain.out" "$WORK/shim.out" | head -n 20)"
  fi
}
same_output "sh -c (pipes, redirections, subshells)" sh -c 'echo hello | tr a-z A-Z; (exit 3); echo "status $?"; cat < /dev/null; ls -d / >/dev/null'
same_output "ls -la of a directory" ls -la "$WORK/files"
same_output "cat of a file" cat "$WORK/files/file.txt"
same_output "python3 -c (open, listdir, dup2, ioctl, subprocess)" python3 -c '
import fcntl, os, subprocess, sys, termios
with open(sys.argv[1]) as f: print(f.read().strip())
print(sorted(os.listdir(os.path.dirname(sys.argv[1]))))
r, w = os.pipe(); os.dup2(w, 100); os.write(100, b"x"); print(os.read(r, 1)); os.close(100)
try: fcntl.ioctl(r, termios.TIOCGWINSZ, b"\0" * 8)
except OSError as e: print("ioctl", e.errno)
print(subprocess.run(["cat", sys.argv[1]], capture_output=True, text=True).stdout.split())
' "$WORK/files/file.txt"
listing=$(run_exec ls /dev/dma_heap 2>&1 | tr '\n' ' ') || true
# ls stats the directory first (statx), then reads it (opendir/readdir).
if [ "$listing" = "reserved system " ] || [ "$listing" = "system reserved " ]; then
  tap_ok "ls /dev/dma_heap under the shim lists the served heaps ($listing)"
else
  tap_not_ok "ls /dev/dma_heap under the shim: '$listing'; expected system and reserved"
fi

nodes=0
run_exec sh -c 'test -d /dev/dma_heap && test -c /dev/dma_heap/system && test -c /dev/dma_heap/reserved && ! test -e /dev/dma_heap/nonexistent' || nodes=$?
[ "$nodes" -eq 0 ]; tap_check "under the shim test -d/-c see /dev/dma_heap and its served nodes, and nothing else (exit $nodes)" $?

# ---- 3. exit status ------------------------------------------------------------------

status=0
run_exec sh -c 'exit 7' || status=$?
[ "$status" -eq 7 ]; tap_check "rstmemd exec returns the program's exit status (7: got $status)" $?
status=0
run_exec sh -c 'kill -TERM $$' || status=$?
[ "$status" -eq 143 ]; tap_check "rstmemd exec returns 128+N for signal N (SIGTERM: 143, got $status)" $?
status=0
run_exec "$WORK/no-such-program" 2> "$WORK/exec.err" || status=$?
[ "$status" -eq 127 ] && grep -q 'no-such-program' "$WORK/exec.err"; tap_check "rstmemd exec of a missing program: 127 and its name (got $status: $(head -n 1 "$WORK/exec.err"))" $?

# ---- 4. in the Linux 6.1 guest, as an unprivileged user -------------------------

log "the 6.1 guest: dmabuf-heap as root, as nobody, and as nobody under rstmemd exec (tests/shim/guest-6.1.sh)"
guest_status=0
"$ROOT/tests/kernel/run-guest.sh" "$kernel" --timeout 600 --append cma=64M --env "DAEMON_DLL=$DAEMON_DLL" \
  -- "$HERE/guest-6.1.sh" "$selftest" > "$OUT/guest-6.1.out" 2> "$OUT/guest-6.1.err" || guest_status=$?
# extract NAME: a section the guest script printed.
extract() { awk -v b="=== BEGIN $1 ===" -v e="=== END $1 ===" '$0 == e { inside = 0 } inside; $0 == b { inside = 1 }' "$OUT/guest-6.1.out"; }
while IFS= read -r line; do
  case "$line" in
    'check ok: '*) tap_ok "6.1 guest: ${line#check ok: }" ;;
    'check FAIL: '*) tap_not_ok "6.1 guest: ${line#check FAIL: }" ;;
  esac
done < <(grep '^check ' "$OUT/guest-6.1.out" || true)
failed_in_guest=$(grep -c '^check FAIL: ' "$OUT/guest-6.1.out" || true)
[ "$guest_status" -eq "$failed_in_guest" ]
tap_check "6.1 guest: guest-6.1.sh ran to its end (exit $guest_status, $failed_in_guest failed check(s); build/shim/guest-6.1.err)" $?
extract selftest-root > "$OUT/guest-root.out"
extract selftest-shim > "$OUT/guest-shim.out"
sed 's/^/# 6.1 root | /' "$OUT/guest-root.out"
sed 's/^/# 6.1 nobody under exec | /' "$OUT/guest-shim.out"
root_exit=$(sed -n 's/^selftest-root-exit //p' "$OUT/guest-6.1.out")
shim_exit=$(sed -n 's/^selftest-shim-exit //p' "$OUT/guest-6.1.out")
[ -n "$root_exit" ] && [ "$root_exit" = "$shim_exit" ]
tap_check "6.1 guest: dmabuf-heap exits the same as nobody under rstmemd exec ($shim_exit) as root without it ($root_exit)" $?
for heap in "${HEAPS[@]}"; do
  for test in "${TESTS[@]}"; do
    shim=$(verdict "$OUT/guest-shim.out" "$heap" "$test")
    real=$(verdict "$OUT/guest-root.out" "$heap" "$test")
    if [ "$shim" = "$real" ] && [ "$real" != missing ]; then
      tap_ok "6.1 guest, $heap: '$test' $shim as nobody under rstmemd exec, $real as root"
    else
      tap_not_ok "6.1 guest, $heap: '$test' $shim as nobody under rstmemd exec, $real as root"
    fi
  done
  section=$(awk -v h="Testing heap: $heap" '/^Testing heap: / { inside = ($0 == h) } inside' "$OUT/guest-shim.out")
  if printf '%s\n' "$section" | grep -q 'Could not open vgem - skipping'; then
    root_section=$(awk -v h="Testing heap: $heap" '/^Testing heap: / { inside = ($0 == h) } inside' "$OUT/guest-root.out")
    if printf '%s\n' "$root_section" | grep -q 'Could not open vgem - skipping'; then root_vgem="root's run did not import either"; else root_vgem="root's run imported"; fi
    tap_skip "6.1 guest, $heap: the vgem import as nobody" "/dev/dri/card0 is root's (0600) in the guest; $root_vgem"
  elif [ -n "$section" ]; then
    tap_ok "6.1 guest, $heap: the vgem import ran as nobody"
  fi
done

# ---- 5. in the mainline guest: a protected heap, as an unprivileged user ----------

mainline=$("$ROOT/tests/kernel/build-kernel.sh" mainline) || die "no mainline test kernel (tests/kernel/build-kernel.sh mainline)"
gcc -O2 -Wall -Wextra -Werror -I"$(dirname "$mainline")/headers/include" -o "$OUT/protected-alloc" "$HERE/protected-alloc.c" \
  2>"$OUT/protected-alloc-build.log" || die "building tests/shim/protected-alloc.c failed: $(cat "$OUT/protected-alloc-build.log")"
log "the mainline guest: protected-alloc as nobody, without and under rstmemd exec (tests/shim/guest-mainline.sh)"
guest_status=0
"$ROOT/tests/kernel/run-guest.sh" "$mainline" --timeout 600 --append cma=64M --env "DAEMON_DLL=$DAEMON_DLL" \
  -- "$HERE/guest-mainline.sh" "$OUT/protected-alloc" > "$OUT/guest-mainline.out" 2> "$OUT/guest-mainline.err" || guest_status=$?
while IFS= read -r line; do
  case "$line" in
    'check ok: '*) tap_ok "mainline guest: ${line#check ok: }" ;;
    'check FAIL: '*) tap_not_ok "mainline guest: ${line#check FAIL: }" ;;
  esac
done < <(grep '^check ' "$OUT/guest-mainline.out" || true)
failed_in_guest=$(grep -c '^check FAIL: ' "$OUT/guest-mainline.out" || true)
[ "$guest_status" -eq "$failed_in_guest" ]
tap_check "mainline guest: guest-mainline.sh ran to its end (exit $guest_status, $failed_in_guest failed check(s); build/shim/guest-mainline.err)" $?

# ---- the end ------------------------------------------------------------------------

kill -TERM "$daemon"
daemon_status=0
wait "$daemon" || daemon_status=$?
[ "$daemon_status" -eq 0 ]; tap_check "rstmemd exits 0 on SIGTERM after the runs (exit $daemon_status)" $?
printf '1..%d\n' "$TAP_COUNT"
printf '# shim: %d passed, %d failed, %d skipped\n' "$((TAP_COUNT - TAP_FAILED - SKIPPED))" "$TAP_FAILED" "$SKIPPED"
[ "$TAP_FAILED" -eq 0 ]
