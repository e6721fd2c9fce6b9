#!/usr/bin/env bash
# rstmemd's only build entry point. Idempotent.
#
#   ./build.sh            restore and build everything (C# and C, natively and for arm64)
#   ./build.sh test       build, then run every test: xunit, the model's conformance
#                         suite (v4, v6, mainline), ctest (x86_64 and arm64 under
#                         qemu-user), the NativeAOT binaries and Debian packages
#                         (packaging/tests) and the real kernels under qemu (tests/kernel);
#                         counts only their result files (build/test-results,
#                         build/conformance, build/realkernel) and ends with the line
#                         "N passed, N failed, N skipped"; exits non-zero when a test
#                         or a stage failed
#   ./build.sh run ...    build, then run `rstmemd serve ...` in the foreground
#   ./build.sh bench ...  build, then run a benchmark: allocator or broker [options];
#                         broker measures the NativeAOT rstmemd (published first) and
#                         also runs its Linux 7.2 part (tests/kernel/bench-guest.sh)
#                         unless given --no-guest, and exits non-zero if either failed to run
#   ./build.sh publish    packaging/publish.sh: the published daemon in dist/
#   ./build.sh package    packaging/package.sh: the Debian packages
#
# Debian packages the build needs are installed with apt-get when run as
# root, or named when not.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
cd "$ROOT"
# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
LOG_PREFIX=build.sh

CONFIGURATION=${CONFIGURATION:-Release}
NATIVE_BUILD_DIR=$ROOT/build/native
NATIVE_AARCH64_BUILD_DIR=$ROOT/build/native-aarch64
DAEMON_DLL=$ROOT/src/RstmemDaemon/bin/$CONFIGURATION/net10.0/rstmemd.dll
TEST_RESULTS=$ROOT/build/test-results
CONFORMANCE_RESULTS=$ROOT/build/conformance
REALKERNEL_RESULTS=$ROOT/build/realkernel

# cmake/gcc: the C library and helpers. Cross compilers, their libc and
# kernel headers, and qemu-user: the ABI proof runs C for arm64 and armhf.
# python3: tests/lib/results.py counts the test results; a protocol test's client.
DEBIAN_PACKAGES=(
  cmake make gcc pkg-config linux-libc-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross
  qemu-user-static python3
)

ensure_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET 10 SDK is required and 'dotnet' is not on PATH"
  dotnet --list-sdks | grep -q '^10\.' || die "the .NET 10 SDK is required; found: $(dotnet --list-sdks | tr '\n' ' ')"
}

build() {
  ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
  ensure_dotnet
  log "dotnet build ($CONFIGURATION)"
  dotnet build "$ROOT/rstmemd.sln" -c "$CONFIGURATION" -nologo -v quiet -clp:ErrorsOnly
  log "cmake build (src/Native)"
  cmake -S "$ROOT/src/Native" -B "$NATIVE_BUILD_DIR" -DCMAKE_BUILD_TYPE="$CONFIGURATION" \
    -DRSTMEMD_DLL="$DAEMON_DLL" >/dev/null
  cmake --build "$NATIVE_BUILD_DIR" --parallel "$(nproc)"
  # The same C library and tests for arm64 boards; ctest runs them under qemu-aarch64-static.
  log "cmake build (src/Native, aarch64 cross build)"
  cmake -S "$ROOT/src/Native" -B "$NATIVE_AARCH64_BUILD_DIR" -DCMAKE_BUILD_TYPE="$CONFIGURATION" \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/src/Native/cmake/aarch64-linux-gnu.cmake" -DRSTMEMD_DLL="$DAEMON_DLL" >/dev/null
  cmake --build "$NATIVE_AARCH64_BUILD_DIR" --parallel "$(nproc)"
  # A launcher for the client commands: build/bin/rstmemd heaps, alloc, stats, ...
  mkdir -p "$ROOT/build/bin"
  printf '#!/bin/sh\nexec dotnet "%s" "$@"\n' "$DAEMON_DLL" > "$ROOT/build/bin/rstmemd"
  chmod +x "$ROOT/build/bin/rstmemd"
}

# --- test: every stage writes a machine-readable result file; only those are counted.

RESULTS_MANIFEST=

# record_results STAGE STATUS FORMAT PATH: one line of the manifest tests/lib/results.py reads.
record_results() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS_MANIFEST"; }

# stage NAME FORMAT PATH COMMAND...: runs COMMAND (its output goes to the
# terminal) and records its exit status with its result file.
stage() {
  local name=$1 format=$2 path=$3 status=0
  shift 3
  log "$name"
  "$@" || status=$?
  [ "$status" -eq 0 ] || log "$name: exit status $status"
  record_results "$name" "$status" "$format" "$path"
}

run_conformance() { # generation: the TAP file, and the table's last line on the terminal
  dotnet "$DAEMON_DLL" conformance --model --generation "$1" --format tap \
    --output "$CONFORMANCE_RESULTS/model-$1.tap" 2>/dev/null | tail -n 1
}

# Cold, most of a `./build.sh test` is building its caches: the two x86 test
# kernels (tests/kernel/build-kernel.sh) and the board's kernel and root file
# system (tests/board/build-board.sh). They start at once, in the background and
# niced, so they use the CPU the .NET build and the first stages leave idle. The
# stages that need them run the same scripts, which wait on each cache's lock and
# then reuse the entry (or build it again and fail visibly, if the background
# build failed). Warm, each script only hashes its inputs. The board's kernel,
# the largest (about 1,050 CPU-s against 670 and 700 for the x86 kernels,
# tests/board/README.md), runs at nice 8 against the others' 10 (about 1.6
# times their share), so that it is not the one left compiling alone at the end.
CACHE_BUILDS_PGID=
start_cache_builds() {
  local logs=$ROOT/build/cache-builds
  rm -rf "$logs"
  mkdir -p "$logs"
  log "test kernels and the board image: built or reused in the background (logs in build/cache-builds/)"
  # Its own process group, so that an early exit stops the whole tree (make and its compilers).
  setsid bash -c '
    nice -n 10 "$1/tests/kernel/build-kernel.sh" 6.1 >/dev/null 2>"$2/kernel-6.1.log" &
    nice -n 10 "$1/tests/kernel/build-kernel.sh" mainline >/dev/null 2>"$2/kernel-mainline.log" &
    nice -n 8 "$1/tests/board/build-board.sh" kernel >/dev/null 2>"$2/board-kernel.log" &
    nice -n 10 "$1/tests/board/build-board.sh" rootfs >/dev/null 2>"$2/board-rootfs.log" &
    wait' cache-builds "$ROOT" "$logs" </dev/null &
  CACHE_BUILDS_PGID=$!
  on_exit 'stop_cache_builds'
}

# On any exit: a cache build still running is stopped (its script cleans its work tree up).
stop_cache_builds() {
  [ -n "$CACHE_BUILDS_PGID" ] || return 0
  kill -TERM -- "-$CACHE_BUILDS_PGID" 2>/dev/null || true
  wait "$CACHE_BUILDS_PGID" 2>/dev/null || true
  CACHE_BUILDS_PGID=
}

run_real_kernels() {
  local status=0
  # Real kernels under qemu: Linux 6.1 (DMA heaps) and mainline 7.x (TEE protected heaps),
  # built once and cached in ~/.cache/rstmemd/testkernel (tests/kernel/README.md).
  log "real kernels under qemu (tests/kernel/real-kernels.sh)"
  DAEMON_DLL=$DAEMON_DLL "$ROOT/tests/kernel/real-kernels.sh" || status=$?
  [ "$status" -eq 0 ] || log "real kernels: exit status $status"
  # Its own checks (in-guest checks, kselftest, model-vs-real comparisons), and
  # the conformance suites as each real kernel ran them.
  record_results "real kernels" "$status" tap "$REALKERNEL_RESULTS/results.tap"
  record_results "real-kernel conformance (6.1)" 0 tap "$REALKERNEL_RESULTS/real-6.1.tap"
  record_results "real-kernel conformance (mainline)" 0 tap "$REALKERNEL_RESULTS/real-mainline.tap"
}

run_board() {
  local status=0
  # The arm64 board under qemu-system-aarch64: a mainline kernel with the TEE
  # protected heaps, Debian bookworm with systemd, and the arm64 packages from
  # dist/ installed and served there; built once and cached in
  # ~/.cache/rstmemd/board (tests/board/README.md).
  log "the arm64 board under qemu (tests/board/board-test.sh)"
  "$ROOT/tests/board/board-test.sh" || status=$?
  [ "$status" -eq 0 ] || log "board: exit status $status"
  record_results "board (arm64, systemd, packages installed)" "$status" tap "$ROOT/build/board/results.tap"
}

run_packaging_tests() {
  # The board product: NativeAOT binaries for x64 and arm64 (run for real, the
  # arm64 one under qemu-aarch64-static), then the Debian packages: lintian,
  # the unit's security rating, their contents, and an install booted under
  # systemd-nspawn (packaging/README.md).
  local status=0
  log "publish: NativeAOT rstmemd for linux-x64 and linux-arm64 (packaging/publish.sh)"
  "$ROOT/packaging/publish.sh" || status=$?
  [ "$status" -eq 0 ] || record_results "publish (NativeAOT)" "$status" tap "$TEST_RESULTS/publish-failed.tap"
  stage "NativeAOT binaries (packaging/tests/aot-smoke.sh)" tap "$TEST_RESULTS/aot-smoke.tap" \
    bash -c '"$0" > "$1"; status=$?; cat "$1"; exit $status' "$ROOT/packaging/tests/aot-smoke.sh" "$TEST_RESULTS/aot-smoke.tap"
  status=0
  log "Debian packages (packaging/package.sh)"
  PACKAGING_TAP_DIR=$TEST_RESULTS/packaging "$ROOT/packaging/package.sh" || status=$?
  record_results "packages: unit security" "$status" tap "$TEST_RESULTS/packaging/unit-security.tap"
  record_results "packages: contents" "$status" tap "$TEST_RESULTS/packaging/package-contents.tap"
  record_results "packages: installed and booted" "$status" tap "$TEST_RESULTS/packaging/install-boot.tap"
}

run_shim_tests() {
  # librstmem-preload.so and rstmemd exec: the kernel's dmabuf-heap selftest from
  # Linux 6.1's source under the shim against the model, compared with the 6.1
  # guest's verdicts (after run_real_kernels, which writes them); ordinary programs.
  stage "preload shim (tests/shim/shim-tests.sh)" tap "$TEST_RESULTS/shim.tap" \
    bash -c 'DAEMON_DLL=$2 "$0" > "$1"; status=$?; grep -v "^# shim | " "$1"; exit $status' \
    "$ROOT/tests/shim/shim-tests.sh" "$TEST_RESULTS/shim.tap" "$DAEMON_DLL"
}

run_tests() {
  make_temp_file RESULTS_MANIFEST results-manifest
  # Results of an earlier run must not be counted as this one's.
  rm -rf "$TEST_RESULTS" "$CONFORMANCE_RESULTS"
  mkdir -p "$TEST_RESULTS" "$CONFORMANCE_RESULTS"
  local started=$SECONDS generation

  # One TRX per test project (LogFilePrefix adds the framework and a timestamp).
  stage xunit trx "$TEST_RESULTS/dotnet_*.trx" \
    dotnet test "$ROOT/rstmemd.sln" -c "$CONFIGURATION" --no-build -nologo \
    --logger "trx;LogFilePrefix=dotnet" --results-directory "$TEST_RESULTS"

  # The conformance suite is the model's acceptance test: every generation, as the CLI runs it.
  for generation in v4 v6 mainline; do
    stage "conformance --model ($generation)" tap "$CONFORMANCE_RESULTS/model-$generation.tap" \
      run_conformance "$generation"
  done

  stage "ctest (x86_64)" junit "$TEST_RESULTS/ctest-x86_64.xml" \
    ctest --test-dir "$NATIVE_BUILD_DIR" --output-on-failure --output-junit "$TEST_RESULTS/ctest-x86_64.xml"
  stage "ctest (arm64 under qemu-aarch64-static)" junit "$TEST_RESULTS/ctest-aarch64.xml" \
    ctest --test-dir "$NATIVE_AARCH64_BUILD_DIR" --output-on-failure --output-junit "$TEST_RESULTS/ctest-aarch64.xml"

  run_packaging_tests

  # The board runs beside the x86 guests and the shim: each waits on its own
  # caches, and the board's guest (apt, gcc, systemd under TCG) leaves a CPU
  # idle that the x86 guests use, so neither waits for the other to finish.
  # Each records its own results; their log lines interleave.
  run_board &
  local board=$!
  run_real_kernels

  run_shim_tests

  wait "$board" || log "the board stage's shell ended with status $?"

  # Every stage that needed a cache has waited for it; nothing of the background builds is left.
  wait "$CACHE_BUILDS_PGID" 2>/dev/null || true
  CACHE_BUILDS_PGID=
  log "results ($((SECONDS - started)) s of tests):"
  python3 "$ROOT/tests/lib/results.py" "$RESULTS_MANIFEST"
}

# run_packaging SCRIPT ARGS...: packaging/SCRIPT, written alongside the Debian packaging.
run_packaging() {
  local script=$ROOT/packaging/$1
  shift
  [ -f "$script" ] || die "$script does not exist: the packaging scripts are not in this tree yet"
  [ -x "$script" ] || die "$script is not executable"
  exec "$script" "$@"
}

# The benchmarks. `broker` is the model benchmark, then its part on a real
# reference-counting kernel, the Linux 7.2 guest (tests/kernel/bench-guest.sh);
# --no-guest leaves that out. Both run even when the first fails. The model
# benchmark measures the NativeAOT rstmemd the packages ship, published here
# first (packaging/publish.sh for this machine's architecture), unless
# --daemon names another executable.
bench() {
  local benchmarks=$ROOT/tests/Rstmem.Benchmarks/bin/$CONFIGURATION/net10.0/rstmem-benchmarks.dll
  [ "${1:-}" = broker ] || exec dotnet "$benchmarks" "$@"
  local guest=1 args=() status=0 daemon_given=0 rid
  for arg in "$@"; do
    [ "$arg" = --daemon ] && daemon_given=1
    if [ "$arg" = --no-guest ]; then guest=0; else args+=("$arg"); fi
  done
  if [ "$daemon_given" -eq 0 ]; then
    case "$(uname -m)" in
      x86_64) rid=linux-x64 ;;
      aarch64) rid=linux-arm64 ;;
      *) die "bench broker: no NativeAOT rstmemd for $(uname -m); pass --daemon PATH" ;;
    esac
    "$ROOT/packaging/publish.sh" "$rid" || die "bench broker: publishing the NativeAOT rstmemd failed"
    args+=(--daemon "$ROOT/dist/$rid/rstmemd")
  fi
  dotnet "$benchmarks" "${args[@]}" || status=$?
  if [ "$guest" -eq 1 ]; then
    "$ROOT/tests/kernel/bench-guest.sh" || status=$?
  fi
  return "$status"
}

command=${1:-build}
[ $# -gt 0 ] && shift
case "$command" in
  build) build ;;
  test) start_cache_builds; build; run_tests ;;
  run) build; exec dotnet "$DAEMON_DLL" serve "$@" ;;
  bench) build; bench "$@" ;;
  publish) run_packaging publish.sh "$@" ;;
  package) run_packaging package.sh "$@" ;;
  -h|--help|help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" ;;
  *) die "unknown command '$command': expected build, test, run, bench, publish or package" ;;
esac
