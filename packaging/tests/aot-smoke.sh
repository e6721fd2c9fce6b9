#!/usr/bin/env bash
# The NativeAOT rstmemd binaries that packaging/publish.sh writes, run for
# real, as TAP on stdout (one "ok N - ..." or "not ok N - ..." per check,
# the plan first; details of a failure as "#" lines):
#
#   - dist/linux-x64/rstmemd: the ABI and the command line's texts equal the
#     JIT build's; the model passes the conformance suite for v4, v6 and
#     mainline with the same TAP as the JIT build; it serves its own client,
#     the JIT client and librstmem's example; configuration errors read as
#     the JIT's; SIGTERM stops it cleanly.
#   - dist/linux-arm64/rstmemd under qemu-aarch64-static: the same ABI but
#     for the arch, the same conformance TAP as x64 for every generation, and
#     it serves x64 clients (AOT, JIT and librstmem's example).
#
# Needs packaging/publish.sh (both RIDs) and ./build.sh (the JIT rstmemd.dll
# and build/native/rstmem-alloc) first. Anything missing fails the checks
# that need it; nothing is skipped. The last line is
# "# aot-smoke: N passed, M failed, 0 skipped"; the exit status is 0 only when
# every check passed. About 45 s on the 2-core build machine.
set -uo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
AOT_X64=$ROOT/dist/linux-x64/rstmemd
AOT_ARM64=$ROOT/dist/linux-arm64/rstmemd
JIT_DLL=$ROOT/src/RstmemDaemon/bin/${CONFIGURATION:-Release}/net10.0/rstmemd.dll
C_ALLOC=$ROOT/build/native/rstmem-alloc
QEMU=qemu-aarch64-static
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
PLAN=23

WORK=$(mktemp -d /tmp/rstmemd-aot-smoke.XXXXXX)
DAEMONS=()
cleanup() {
  local pid
  for pid in "${DAEMONS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT
unset NOTIFY_SOCKET JOURNAL_STREAM LISTEN_FDS LISTEN_PID

# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
pass() { tap_ok "$1"; }
fail() { tap_not_ok "$@"; }

# need FILE WHAT: true if FILE is there; else false, with the reason in $MISSING.
need() {
  if [ -e "$1" ]; then return 0; fi
  MISSING="$1 is missing ($2)"
  return 1
}
have_x64() { need "$AOT_X64" "run packaging/publish.sh linux-x64"; }
have_arm64() { need "$AOT_ARM64" "run packaging/publish.sh linux-arm64" && { command -v "$QEMU" >/dev/null || { MISSING="$QEMU is not installed (apt-get install qemu-user-static)"; false; }; }; }
have_jit() { need "$JIT_DLL" "run ./build.sh"; }
have_c() { need "$C_ALLOC" "run ./build.sh"; }

jit() { dotnet "$JIT_DLL" "$@"; }
arm64() { "$QEMU" "$AOT_ARM64" "$@"; }

# elf_check FILE MACHINE: the ELF machine, and only libc, libm and the loader as NEEDED.
elf_check() {
  local machine needed
  machine=$(readelf -h "$1" | sed -n 's/^ *Machine: *//p')
  [ "$machine" = "$2" ] || { DETAIL="Machine: '$machine', expected '$2'"; return 1; }
  needed=$(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -Ev '^(libc\.so\.6|libm\.so\.6|ld-linux-(x86-64|aarch64)\.so\.[12])$')
  [ -z "$needed" ] || { DETAIL="needs libraries a board may lack: $needed"; return 1; }
}

# start_daemon NAME SOCKET COMMAND...: starts `COMMAND serve ...` in the
# background and waits until the x64 AOT client gets an answer on SOCKET.
start_daemon() {
  local name=$1 socket=$2; shift 2
  rm -f "$socket"
  "$@" >"$WORK/$name.log" 2>&1 &
  local pid=$!
  DAEMONS+=("$pid")
  eval "PID_$name=$pid"
  local tries=0
  until "$AOT_X64" heaps --socket "$socket" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 600 ]; then
      DETAIL="$name did not answer on $socket; its log: $(cat "$WORK/$name.log")"
      return 1
    fi
    tries=$((tries + 1)); sleep 0.2
  done
}

# stop_daemon NAME: SIGTERM, then its exit status and its log's last line.
stop_daemon() {
  local pid
  eval "pid=\${PID_$1:-}"
  [ -n "$pid" ] || { DETAIL="$1 was not running"; return 1; }
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  local status=$?
  eval "PID_$1="
  [ "$status" -eq 0 ] || { DETAIL="exit status $status; log: $(cat "$WORK/$1.log")"; return 1; }
  tail -n 1 "$WORK/$1.log" | grep -q 'rstmemd stopped' || { DETAIL="no 'rstmemd stopped' at the end of: $(cat "$WORK/$1.log")"; return 1; }
}

begin() { MISSING=; DETAIL=; }
json_number() { grep -o "\"$2\":[0-9]*" <<<"$1" | head -n 1 | cut -d: -f2; }

tap_plan "$PLAN"

# --- the binaries -------------------------------------------------------------
begin
if have_x64 && elf_check "$AOT_X64" 'Advanced Micro Devices X86-64'; then
  pass "dist/linux-x64/rstmemd: x86-64 ELF needing only libc, libm and the loader"
else fail "dist/linux-x64/rstmemd: x86-64 ELF needing only libc, libm and the loader" "${MISSING:-$DETAIL}"; fi
begin
if have_arm64 && elf_check "$AOT_ARM64" 'AArch64'; then
  pass "dist/linux-arm64/rstmemd: AArch64 ELF needing only libc, libm and the loader"
else fail "dist/linux-arm64/rstmemd: AArch64 ELF needing only libc, libm and the loader" "${MISSING:-$DETAIL}"; fi

# --- the ABI ------------------------------------------------------------------
begin; what="x64 AOT 'rstmemd abi --json' equals the JIT build's"
if have_x64 && have_jit; then
  jit abi --json >"$WORK/abi-jit.json" 2>&1; "$AOT_X64" abi --json >"$WORK/abi-x64.json" 2>&1
  if [ -s "$WORK/abi-x64.json" ] && diff -u "$WORK/abi-jit.json" "$WORK/abi-x64.json" >"$WORK/abi.diff"; then pass "$what"
  else fail "$what" "$(head -n 40 "$WORK/abi.diff")"; fi
else fail "$what" "$MISSING"; fi
begin; what="arm64 AOT 'rstmemd abi --json' under qemu equals x64's but for \"arch\": \"aarch64\""
if have_x64 && have_arm64; then
  "$AOT_X64" abi --json 2>&1 | sed 's/"arch": "x86_64"/"arch": "aarch64"/' >"$WORK/abi-x64-as-arm64.json"
  arm64 abi --json >"$WORK/abi-arm64.json" 2>&1
  if grep -q '"arch": "aarch64"' "$WORK/abi-arm64.json" && diff -u "$WORK/abi-x64-as-arm64.json" "$WORK/abi-arm64.json" >"$WORK/abi-arm64.diff"; then pass "$what"
  else fail "$what" "$(head -n 40 "$WORK/abi-arm64.diff")"; fi
else fail "$what" "$MISSING"; fi

begin; what="x64 AOT prints the JIT build's help, case list and usage errors, with the same exit codes"
if have_x64 && have_jit; then
  : >"$WORK/cli.diff"
  for args in "--help" "serve --help" "alloc --help" "conformance --list" "alloc --size" "bogus"; do
    read -r -a argv <<<"$args"
    { jit "${argv[@]}"; echo "exit $?"; } >"$WORK/cli-jit.txt" 2>&1
    { "$AOT_X64" "${argv[@]}"; echo "exit $?"; } >"$WORK/cli-aot.txt" 2>&1
    diff -u --label "JIT $args" --label "AOT $args" "$WORK/cli-jit.txt" "$WORK/cli-aot.txt" >>"$WORK/cli.diff"
  done
  if [ ! -s "$WORK/cli.diff" ]; then pass "$what"; else fail "$what" "$(head -n 40 "$WORK/cli.diff")"; fi
else fail "$what" "$MISSING"; fi

# --- conformance on the model ---------------------------------------------------
# conformance GEN BINARY-LABEL: runs it, checks exit 0 and "0 failed", compares the TAP with the reference run.
for generation in v4 v6 mainline; do
  begin; what="x64 AOT: conformance --model --generation $generation passes with the JIT build's TAP"
  if have_x64 && have_jit; then
    jit conformance --model --generation "$generation" --format tap --output "$WORK/jit-$generation.tap" >/dev/null 2>&1
    "$AOT_X64" conformance --model --generation "$generation" --format tap --output "$WORK/x64-$generation.tap" >/dev/null 2>"$WORK/x64-$generation.err"
    status=$?
    summary=$(tail -n 1 "$WORK/x64-$generation.tap" 2>/dev/null | sed 's/^# //')
    if [ "$status" -eq 0 ] && [[ "$summary" == *" passed, 0 failed, "* ]] \
        && diff -u "$WORK/jit-$generation.tap" "$WORK/x64-$generation.tap" >"$WORK/x64-$generation.diff"; then
      pass "$what ($summary)"
    else fail "$what" "exit $status, '$summary'" "$(head -n 40 "$WORK/x64-$generation.diff" "$WORK/x64-$generation.err" 2>/dev/null)"; fi
  else fail "$what" "$MISSING"; fi
done
# qemu-user translates only the access modes 0, 1 and 2 of open(2) and
# fcntl(2) flags (linux-user/syscall.c, fcntl_flags_tbl): a file opened with
# O_ACCMODE (3), as dma-heap.fd.accmode-cloexec asks for, reads back as
# O_RDONLY under it. That case cannot pass under qemu-user (on an arm64 board
# it does); every other result must equal x64's, and so must that case's
# place in the run.
QEMU_USER_CANNOT=dma-heap.fd.accmode-cloexec
tap_results() { # TAP: each test point's verdict, case and target, without numbers; the qemu-user case left out
  grep -E '^(not )?ok [0-9]+ ' "$1" | sed -E 's/^(not ok|ok) [0-9]+ /\1 /' | grep -v " $QEMU_USER_CANNOT @ "
}
for generation in v4 v6 mainline; do
  begin; what="arm64 AOT under qemu: conformance --model --generation $generation passes with x64's TAP (but $QEMU_USER_CANNOT, which qemu-user cannot run)"
  if have_x64 && have_arm64; then
    [ -f "$WORK/x64-$generation.tap" ] || "$AOT_X64" conformance --model --generation "$generation" --format tap --output "$WORK/x64-$generation.tap" >/dev/null 2>&1
    arm64 conformance --model --generation "$generation" --format tap --output "$WORK/arm64-$generation.tap" >/dev/null 2>"$WORK/arm64-$generation.err"
    status=$?
    summary=$(tail -n 1 "$WORK/arm64-$generation.tap" 2>/dev/null | sed 's/^# //')
    unexpected=$(grep -E '^not ok [0-9]+ ' "$WORK/arm64-$generation.tap" 2>/dev/null | grep -v " $QEMU_USER_CANNOT @ ")
    if [ -s "$WORK/arm64-$generation.tap" ] && [ -z "$unexpected" ] \
        && [ "$(grep -c '^ok \|^not ok ' "$WORK/x64-$generation.tap")" = "$(grep -c '^ok \|^not ok ' "$WORK/arm64-$generation.tap")" ] \
        && diff -u <(tap_results "$WORK/x64-$generation.tap") <(tap_results "$WORK/arm64-$generation.tap") >"$WORK/arm64-$generation.diff"; then
      pass "$what ($summary)"
    else fail "$what" "exit $status, '$summary'" "$unexpected" "$(head -n 40 "$WORK/arm64-$generation.diff" "$WORK/arm64-$generation.err" 2>/dev/null)"; fi
  else fail "$what" "$MISSING"; fi
done

# --- serving on x64 -------------------------------------------------------------
# One configuration file for every daemon: the v4 model (use cases through
# /dev/tee0) and a non-default limit, so the file is really read and bound.
cat >"$WORK/rstmemd.json" <<'EOF'
{ "Backend": "model", "Model": { "Generation": "v4", "SystemHeapSize": "256MiB" }, "Limits": { "MaxBuffersPerUser": 100 } }
EOF
X64_SOCK=$WORK/x64.sock
JIT_SOCK=$WORK/jit.sock
ARM_SOCK=$WORK/arm64.sock

begin; what="x64 AOT serve --config: 'heaps --json' equals a JIT daemon's with the same file"
x64_up=false
if have_x64 && have_jit; then
  if start_daemon x64 "$X64_SOCK" "$AOT_X64" serve --config "$WORK/rstmemd.json" --socket "$X64_SOCK" \
      && start_daemon jit "$JIT_SOCK" dotnet "$JIT_DLL" serve --config "$WORK/rstmemd.json" --socket "$JIT_SOCK"; then
    x64_up=true
    "$AOT_X64" heaps --socket "$X64_SOCK" --json >"$WORK/heaps-x64.json" 2>&1
    jit heaps --socket "$JIT_SOCK" --json >"$WORK/heaps-jit.json" 2>&1
    if grep -q '"Generation":1,' "$WORK/heaps-x64.json" && grep -q '"MaxAllocBytes":268435456' "$WORK/heaps-x64.json" \
        && cmp -s "$WORK/heaps-jit.json" "$WORK/heaps-x64.json"; then pass "$what"
    else fail "$what" "AOT: $(cat "$WORK/heaps-x64.json")" "JIT: $(cat "$WORK/heaps-jit.json")"; fi
  else fail "$what" "$DETAIL"; fi
else fail "$what" "$MISSING"; fi
[ "$x64_up" = true ] && stop_daemon jit >/dev/null 2>&1

begin; what="x64 AOT client allocates 5000 bytes of secure-video from the x64 AOT daemon: 8192 by lseek"
if $x64_up; then
  out=$("$AOT_X64" alloc --socket "$X64_SOCK" --use-case secure-video --size 5000 --json 2>&1)
  if [ "$(json_number "$out" size)" = 8192 ] && [ "$(json_number "$out" lseek_size)" = 8192 ] && [[ "$out" == *'"heap":"secure-video"'* ]]; then pass "$what"
  else fail "$what" "$out"; fi
else fail "$what" "${MISSING:-the x64 AOT daemon is not running}"; fi
begin; what="JIT client allocates from the x64 AOT daemon"
if $x64_up && have_jit; then
  out=$(jit alloc --socket "$X64_SOCK" --heap system --size 1M --json 2>&1)
  if [ "$(json_number "$out" lseek_size)" = 1048576 ]; then pass "$what"; else fail "$what" "$out"; fi
else fail "$what" "${MISSING:-the x64 AOT daemon is not running}"; fi
begin; what="librstmem's rstmem-alloc allocates from the x64 AOT daemon"
if $x64_up && have_c; then
  out=$("$C_ALLOC" --socket "$X64_SOCK" --use-case trusted-ui 5000 2>&1)
  if [[ "$out" == *"size 8192, lseek(SEEK_END) 8192"* ]]; then pass "$what"; else fail "$what" "$out"; fi
else fail "$what" "${MISSING:-the x64 AOT daemon is not running}"; fi
begin; what="x64 AOT 'stats --json' counts the 3 allocations and sees every buffer released"
if $x64_up; then
  # Released at the clients' last close, seen by the daemon's release watcher: wait for it (bounded).
  tries=0
  while :; do
    out=$("$AOT_X64" stats --socket "$X64_SOCK" --json 2>&1)
    [ "$(json_number "$out" LiveBuffers)" = 0 ] || [ "$tries" -ge 150 ] && break
    tries=$((tries + 1)); sleep 0.2
  done
  if [ "$(json_number "$out" Allocations)" = 3 ] && [ "$(json_number "$out" Failures)" = 0 ] && [ "$(json_number "$out" LiveBuffers)" = 0 ]; then pass "$what"
  else fail "$what" "$out"; fi
else fail "$what" "the x64 AOT daemon is not running"; fi
begin; what="x64 AOT 'usage --all --json' lists root as an administrator with its 3 allocations"
if $x64_up; then
  out=$("$AOT_X64" usage --socket "$X64_SOCK" --all --json 2>&1)
  if [[ "$out" == '[{"Uid":0,"Admin":true,'* ]] && [ "$(grep -o '"Allocations":1,' <<<"$out" | wc -l)" = 3 ]; then pass "$what"
  else fail "$what" "$out"; fi
else fail "$what" "the x64 AOT daemon is not running"; fi
begin; what="x64 AOT serve exits 0 on SIGTERM and logs 'rstmemd stopped'"
if $x64_up && stop_daemon x64; then pass "$what"; else fail "$what" "${DETAIL:-the x64 AOT daemon is not running}"; fi

begin; what="x64 AOT serve refuses a bad configuration with the JIT build's message"
if have_x64 && have_jit; then
  printf '{ "Limits": { "MaxBuffersPerUser": "lots" }, "Model": { "Generation": "v5" } }' >"$WORK/bad.json"
  "$AOT_X64" serve --config "$WORK/bad.json" --socket "$WORK/bad.sock" >"$WORK/bad-x64.out" 2>&1; aot_status=$?
  jit serve --config "$WORK/bad.json" --socket "$WORK/bad.sock" >"$WORK/bad-jit.out" 2>&1; jit_status=$?
  if [ "$aot_status" -eq 1 ] && [ "$jit_status" -eq 1 ] && grep -q "'lots' at 'Limits:MaxBuffersPerUser'" "$WORK/bad-x64.out" \
      && cmp -s "$WORK/bad-jit.out" "$WORK/bad-x64.out"; then pass "$what"
  else fail "$what" "AOT (exit $aot_status): $(cat "$WORK/bad-x64.out")" "JIT (exit $jit_status): $(cat "$WORK/bad-jit.out")"; fi
else fail "$what" "$MISSING"; fi

# --- serving from arm64 under qemu to x64 clients --------------------------------
begin; what="arm64 AOT serve under qemu: 'heaps --json' equals the x64 AOT daemon's"
arm_up=false
if have_x64 && have_arm64; then
  if start_daemon arm64 "$ARM_SOCK" "$QEMU" "$AOT_ARM64" serve --config "$WORK/rstmemd.json" --socket "$ARM_SOCK"; then
    arm_up=true
    "$AOT_X64" heaps --socket "$ARM_SOCK" --json >"$WORK/heaps-arm64.json" 2>&1
    if [ -s "$WORK/heaps-x64.json" ] && cmp -s "$WORK/heaps-x64.json" "$WORK/heaps-arm64.json"; then pass "$what"
    else fail "$what" "arm64: $(cat "$WORK/heaps-arm64.json")" "x64: $(cat "$WORK/heaps-x64.json" 2>/dev/null)"; fi
  else fail "$what" "$DETAIL"; fi
else fail "$what" "$MISSING"; fi
begin; what="librstmem's rstmem-alloc (x64) allocates from the arm64 daemon"
if $arm_up && have_c; then
  out=$("$C_ALLOC" --socket "$ARM_SOCK" --use-case secure-video 5000 2>&1)
  if [[ "$out" == *"size 8192, lseek(SEEK_END) 8192"* ]]; then pass "$what"; else fail "$what" "$out"; fi
else fail "$what" "${MISSING:-the arm64 daemon is not running}"; fi
begin; what="JIT client (x64) allocates from the arm64 daemon"
if $arm_up && have_jit; then
  out=$(jit alloc --socket "$ARM_SOCK" --heap system --size 5000 --json 2>&1)
  if [ "$(json_number "$out" size)" = 8192 ] && [ "$(json_number "$out" lseek_size)" = 8192 ]; then pass "$what"; else fail "$what" "$out"; fi
else fail "$what" "${MISSING:-the arm64 daemon is not running}"; fi
begin; what="arm64 AOT serve under qemu exits 0 on SIGTERM and logs 'rstmemd stopped'"
if $arm_up && stop_daemon arm64; then pass "$what"; else fail "$what" "${DETAIL:-the arm64 daemon is not running}"; fi

tap_finish aot-smoke
