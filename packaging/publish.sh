#!/usr/bin/env bash
# Builds the NativeAOT rstmemd: one self-contained native executable per
# architecture, no .NET runtime needed on the board.
#
#   packaging/publish.sh [RID...]     default: linux-x64 linux-arm64
#
# Writes dist/<rid>/rstmemd and its split debug symbols dist/<rid>/rstmemd.dbg.
# linux-arm64 is cross-compiled here: clang-14 drives Debian's aarch64 cross
# binutils and gcc runtime (crt files, libgcc) against libc6-dev-arm64-cross.
# linux-arm (armhf) cannot be built: no NativeAOT runtime pack for it is served.
#
# Warnings are errors (Directory.Build.props): a trimming or AOT warning from
# the compiler, ILC or a package fails the publish, and so does any other
# "warning" line in the output.
#
# Debian packages it needs are installed with apt-get when run as root, or
# named when not. Intermediate files go to build/aot, apart from the JIT build.
set -euo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
PROJECT=$ROOT/src/RstmemDaemon/RstmemDaemon.csproj
ARTIFACTS=$ROOT/build/aot

# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
LOG_PREFIX=publish.sh

# The C toolchain NativeAOT links with, per RID: packages, then the MSBuild
# properties that select the linker driver and the symbol stripper.
check_rid() {
  case "$1" in
    linux-x64|linux-arm64) ;;
    linux-arm) die "linux-arm: no NativeAOT runtime pack for armhf is served, so rstmemd cannot be built for it; expected linux-x64 or linux-arm64" ;;
    *) die "unknown runtime identifier '$1'; expected linux-x64 or linux-arm64" ;;
  esac
}

packages_for() {
  case "$1" in
    linux-x64) echo clang-14 binutils libc6-dev ;;
    linux-arm64) echo clang-14 binutils binutils-aarch64-linux-gnu gcc-aarch64-linux-gnu libc6-dev-arm64-cross ;;
  esac
}

objcopy_for() {
  case "$1" in
    linux-x64) echo objcopy ;;
    linux-arm64) echo aarch64-linux-gnu-objcopy ;;
  esac
}

# What `readelf -h` says in its Machine line for each RID.
elf_machine_for() {
  case "$1" in
    linux-x64) echo 'Advanced Micro Devices X86-64' ;;
    linux-arm64) echo 'AArch64' ;;
  esac
}

publish_rid() {
  local rid=$1 staging=$ARTIFACTS/dist/$1 out=$ROOT/dist/$1 log_file
  log "publish: NativeAOT $rid -> dist/$rid/rstmemd"
  log_file=$(mktemp)
  rm -rf "$staging"
  if ! dotnet publish "$PROJECT" -c Release -r "$rid" -nologo \
      --artifacts-path "$ARTIFACTS" -o "$staging" \
      -p:PublishAot=true -p:CppCompilerAndLinker=clang-14 -p:ObjCopyName="$(objcopy_for "$rid")" \
      >"$log_file" 2>&1; then
    cat "$log_file" >&2
    rm -f "$log_file"
    die "dotnet publish for $rid failed"
  fi
  # MSBuild prints a warning as "file(line,col): warning CODE: ..."; a linker prints "warning:".
  if grep -Ei '(: warning |warning:)' "$log_file" >&2; then
    rm -f "$log_file"
    die "dotnet publish for $rid printed the warnings above; rstmemd must publish with none"
  fi
  rm -f "$log_file"
  [ -x "$staging/rstmemd" ] && [ -f "$staging/rstmemd.dbg" ] \
    || die "dotnet publish for $rid wrote no rstmemd and rstmemd.dbg in $staging"
  local machine
  machine=$(readelf -h "$staging/rstmemd" | sed -n 's/^ *Machine: *//p')
  [ "$machine" = "$(elf_machine_for "$rid")" ] \
    || die "$staging/rstmemd is an ELF for '$machine'; expected '$(elf_machine_for "$rid")'"
  # Only the executable and its debug symbols ship (the publish folder also
  # holds the managed projects' .pdb files, which a native binary does not use).
  rm -rf "$out"
  mkdir -p "$out"
  install -m 0755 "$staging/rstmemd" "$out/rstmemd"
  install -m 0644 "$staging/rstmemd.dbg" "$out/rstmemd.dbg"
  ls -l "$out/rstmemd" >&2
}

command -v dotnet >/dev/null 2>&1 || die "the .NET 10 SDK is required and 'dotnet' is not on PATH"
RIDS=("$@")
[ ${#RIDS[@]} -gt 0 ] || RIDS=(linux-x64 linux-arm64)
needed=()
for rid in "${RIDS[@]}"; do
  check_rid "$rid"
  read -r -a pkgs <<<"$(packages_for "$rid")"
  needed+=("${pkgs[@]}")
done
ensure_debian_packages "${needed[@]}"
for rid in "${RIDS[@]}"; do
  publish_rid "$rid"
done
