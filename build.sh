#!/usr/bin/env bash
# rstmemd's only build entry point. Idempotent.
#
#   ./build.sh           restore and build everything (C# and C)
#   ./build.sh test      build, then run every test (xunit and ctest)
#   ./build.sh run ...   build, then run `rstmemd serve ...` in the foreground
#   ./build.sh bench ... build, then run a benchmark (default: allocator)
#   ./build.sh publish   self-contained single-file linux-x64 rstmemd in dist/linux-x64,
#                        portable framework-dependent build (arm64 boards) in dist/portable
#
# Debian packages the build needs are installed with apt-get when run as
# root, or named when not.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
cd "$ROOT"

CONFIGURATION=${CONFIGURATION:-Release}
NATIVE_BUILD_DIR=$ROOT/build/native
DAEMON_DLL=$ROOT/src/RstmemDaemon/bin/$CONFIGURATION/net10.0/rstmemd.dll

# cmake/gcc: the C library and helpers. Cross compilers, their libc and
# kernel headers, and qemu-user: the ABI proof runs C for arm64 and armhf.
DEBIAN_PACKAGES=(
  cmake make gcc pkg-config linux-libc-dev
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross
  qemu-user-static
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

ensure_debian_packages() {
  local missing=() package
  for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install ${missing[*]}"
  fi
}

ensure_dotnet() {
  command -v dotnet >/dev/null 2>&1 || die "the .NET 10 SDK is required and 'dotnet' is not on PATH"
  dotnet --list-sdks | grep -q '^10\.' || die "the .NET 10 SDK is required; found: $(dotnet --list-sdks | tr '\n' ' ')"
}

build() {
  ensure_debian_packages
  ensure_dotnet
  log "dotnet build ($CONFIGURATION)"
  dotnet build "$ROOT/rstmemd.sln" -c "$CONFIGURATION" -nologo -v quiet -clp:ErrorsOnly
  log "cmake build (src/Native)"
  cmake -S "$ROOT/src/Native" -B "$NATIVE_BUILD_DIR" -DCMAKE_BUILD_TYPE="$CONFIGURATION" \
    -DRSTMEMD_DLL="$DAEMON_DLL" >/dev/null
  cmake --build "$NATIVE_BUILD_DIR" --parallel "$(nproc)"
  # The same C library and tests for arm64 boards; ctest runs them under qemu-aarch64-static.
  log "cmake build (src/Native, aarch64 cross build)"
  cmake -S "$ROOT/src/Native" -B "$ROOT/build/native-aarch64" -DCMAKE_BUILD_TYPE="$CONFIGURATION" \
    -DCMAKE_TOOLCHAIN_FILE="$ROOT/src/Native/cmake/aarch64-linux-gnu.cmake" -DRSTMEMD_DLL="$DAEMON_DLL" >/dev/null
  cmake --build "$ROOT/build/native-aarch64" --parallel "$(nproc)"
  # A launcher for the client commands: build/bin/rstmemd heaps, alloc, stats, ...
  mkdir -p "$ROOT/build/bin"
  printf '#!/bin/sh\nexec dotnet "%s" "$@"\n' "$DAEMON_DLL" > "$ROOT/build/bin/rstmemd"
  chmod +x "$ROOT/build/bin/rstmemd"
}

run_tests() {
  local log_file status=0
  log_file=$(mktemp)
  log "xunit"
  dotnet test "$ROOT/rstmemd.sln" -c "$CONFIGURATION" --no-build -nologo 2>&1 | tee "$log_file" || status=1
  # The conformance suite is the model's acceptance test: every generation, as the CLI runs it.
  local generation
  mkdir -p "$ROOT/build/conformance"
  for generation in v4 v6 mainline; do
    log "conformance --model --generation $generation (TAP: build/conformance/model-$generation.tap)"
    dotnet "$DAEMON_DLL" conformance --model --generation "$generation" --format tap \
      --output "$ROOT/build/conformance/model-$generation.tap" 2>/dev/null | tail -n 1 | tee -a "$log_file" || status=1
  done
  log "ctest (src/Native)"
  ctest --test-dir "$NATIVE_BUILD_DIR" --output-on-failure 2>&1 | tee -a "$log_file" || status=1
  log "ctest (src/Native, arm64 binaries under qemu-aarch64-static)"
  ctest --test-dir "$ROOT/build/native-aarch64" --output-on-failure 2>&1 | tee -a "$log_file" || status=1

  # Real kernels under qemu: Linux 6.1 (DMA heaps) and mainline 7.x (TEE protected heaps),
  # built once and cached in ~/.cache/rstmemd/testkernel (tests/kernel/README.md).
  log "real kernels under qemu (tests/kernel/real-kernels.sh)"
  "$ROOT/tests/kernel/real-kernels.sh" 2>&1 | tee -a "$log_file" || status=1

  # One plain summary line over all runners (dotnet test's "Failed: 0, Passed: 45, Skipped: 0",
  # conformance's "251 passed, 0 failed, 15 skipped (...)", ctest's "100% tests passed, 0 tests failed out of 3",
  # the real-kernel runs' "check ok: ..." / "check FAIL: ..." lines and the kselftest's "dmabuf-heap: N passed, N failed").
  local summary
  summary=$(awk '
    match($0, /Failed: +[0-9]+, Passed: +[0-9]+, Skipped: +[0-9]+/) {
      n = split(substr($0, RSTART, RLENGTH), f, /[^0-9]+/); failed += f[2]; passed += f[3]; skipped += f[4]
    }
    /^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped \(/ {
      passed += $1; failed += $3; skipped += $5
    }
    /^check ok: / { passed++ }
    /^check FAIL: / { failed++ }
    /^dmabuf-heap: [0-9]+ passed, [0-9]+ failed/ { passed += $2; failed += $4 }
    /tests passed, [0-9]+ tests failed out of [0-9]+/ {
      failed += $(NF-5); passed += $NF - $(NF-5)
    }
    END { printf "%d passed, %d failed, %d skipped", passed, failed, skipped }' "$log_file")
  rm -f "$log_file"
  echo "$summary"
  [ "$status" -eq 0 ] && [[ "$summary" == *" 0 failed,"* ]]
}

publish() {
  log "publish: self-contained single-file linux-x64 -> dist/linux-x64"
  dotnet publish "$ROOT/src/RstmemDaemon/RstmemDaemon.csproj" -c Release -r linux-x64 --self-contained \
    -p:PublishSingleFile=true -p:IncludeNativeLibrariesForSelfExtract=true -p:EnableCompressionInSingleFile=true -nologo -v quiet -o "$ROOT/dist/linux-x64"
  log "publish: portable framework-dependent build -> dist/portable (run with: dotnet rstmemd.dll)"
  dotnet publish "$ROOT/src/RstmemDaemon/RstmemDaemon.csproj" -c Release --no-self-contained -p:UseAppHost=false \
    -nologo -v quiet -o "$ROOT/dist/portable"
  ls -l "$ROOT/dist/linux-x64/rstmemd" "$ROOT/dist/portable/rstmemd.dll"
}

command=${1:-build}
[ $# -gt 0 ] && shift
case "$command" in
  build) build ;;
  test) build; run_tests ;;
  run) build; exec dotnet "$DAEMON_DLL" serve "$@" ;;
  bench) build; exec dotnet "$ROOT/tests/Rstmem.Benchmarks/bin/$CONFIGURATION/net10.0/rstmem-benchmarks.dll" "$@" ;;
  publish) build; publish ;;
  -h|--help|help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$command': expected build, test, run, bench or publish" ;;
esac
