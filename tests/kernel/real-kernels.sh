#!/usr/bin/env bash
# The real-kernel tests, run by `./build.sh test` (and alone: tests/kernel/real-kernels.sh
# after ./build.sh). Builds (or reuses) both test kernels, boots each under
# qemu and runs the in-guest checks:
#   Linux 6.1:  the kernel's own dmabuf-heap kselftest on system and reserved;
#               tests/kernel/guest/checks-6.1.sh (conformance dma-heap/dma-buf
#               suites, the daemon brokering real dma-bufs, release at last close);
#   mainline:   tests/kernel/guest/checks-mainline.sh (conformance on every
#               suite, --backend auto = mainline, protected buffers imported into
#               a TEE context with the real TEE_IOC_SHM_REGISTER_FD);
# then prints the model-vs-real table for each kernel (compare-tap.sh): any
# conformance check whose result differs between the kernel and the model
# fails the run. Output and TAP files: build/realkernel/. Never skips: a
# missing qemu or a failed kernel build is a failure.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT=$ROOT/build/realkernel
DAEMON_DLL=${DAEMON_DLL:-$ROOT/src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900}

log() { printf '==> real kernels: %s\n' "$*" >&2; }
[ -f "$DAEMON_DLL" ] || { log "FAILED: $DAEMON_DLL is not built; run ./build.sh first"; exit 1; }
mkdir -p "$OUT"
status=0
timings=()
elapsed() { local start=$1; echo $(( $(date +%s) - start ))s; }

# extract NAME FILE: the lines between the guest's === BEGIN NAME === / === END NAME === markers.
extract() { sed -n "/^=== BEGIN $1 ===\$/,/^=== END $1 ===\$/{/^=== /d;p}" "$2"; }

# Both kernels at once: a cold build is CPU-bound either way, and together they finish sooner.
start=$(date +%s)
log "kernels 6.1 and mainline (built in parallel when not cached)"
"$HERE/build-kernel.sh" 6.1 > "$OUT/image-6.1" 2> "$OUT/build-6.1.log" & build_61=$!
"$HERE/build-kernel.sh" mainline > "$OUT/image-mainline" 2> "$OUT/build-mainline.log" & build_mainline=$!
wait "$build_61" || { tail -n 30 "$OUT/build-6.1.log" >&2; log "FAILED: building the 6.1 test kernel"; exit 1; }
wait "$build_mainline" || { tail -n 30 "$OUT/build-mainline.log" >&2; log "FAILED: building the mainline test kernel"; exit 1; }
image_6_1=$(cat "$OUT/image-6.1")
image_mainline=$(cat "$OUT/image-mainline")
timings+=("build/reuse both kernels: $(elapsed "$start")")

start=$(date +%s)
log "kselftest dmabuf-heap in Linux 6.1"
if "$HERE/kselftest-dmabuf-heap.sh" > "$OUT/kselftest-6.1.out" 2>&1; then
  tail -n 1 "$OUT/kselftest-6.1.out"
else
  status=1; log "FAILED: kselftest dmabuf-heap"; tail -n 30 "$OUT/kselftest-6.1.out"
fi
timings+=("kselftest in 6.1: $(elapsed "$start")")

model_tap() { # generation filters...: the model's TAP for the same selection
  local generation=$1; shift
  dotnet "$DAEMON_DLL" conformance --model --generation "$generation" --format tap "$@" 2>/dev/null || true
}

run_checks() { # kernel image script append
  local kernel=$1 image=$2 script=$3 append=$4 start guest_status=0
  start=$(date +%s)
  log "checks in $kernel ($script)"
  "$HERE/run-guest.sh" "$image" --timeout "$GUEST_TIMEOUT" --append "$append" --env "DAEMON_DLL=$DAEMON_DLL" \
    -- "$HERE/guest/$script" > "$OUT/$kernel.out" 2> "$OUT/$kernel.err" || guest_status=$?
  grep '^check ' "$OUT/$kernel.out" || true
  if [ "$guest_status" -ne 0 ]; then
    status=1
    log "FAILED: $kernel guest checks (exit $guest_status); output in build/realkernel/$kernel.out and .err"
    tail -n 20 "$OUT/$kernel.err" >&2
  fi
  extract conformance-tap "$OUT/$kernel.out" > "$OUT/real-$kernel.tap"
  timings+=("boot + checks in $kernel: $(elapsed "$start")")
}

run_checks 6.1 "$image_6_1" checks-6.1.sh "cma=64M"
model_tap mainline --heap system --heap reserved --filter 'dma-heap.*' --filter 'dma-buf.*' > "$OUT/model-6.1.tap"
"$HERE/compare-tap.sh" "$OUT/model-6.1.tap" "$OUT/real-6.1.tap" "Linux 6.1 vs model" || status=1

run_checks mainline "$image_mainline" checks-mainline.sh "cma=64M"
model_tap mainline > "$OUT/model-mainline.tap"
"$HERE/compare-tap.sh" "$OUT/model-mainline.tap" "$OUT/real-mainline.tap" "Linux mainline vs model (mainline)" || status=1

log "timings"
printf '  %s\n' "${timings[@]}" >&2
[ "$status" -eq 0 ] && log "all real-kernel checks passed" || log "FAILED"
exit "$status"
