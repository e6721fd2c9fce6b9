#!/bin/sh
# check-pkg-config.sh BUILD_DIR CC EXAMPLE_SOURCE DOTNET RSTMEMD_DLL [EMULATOR...]
#
# Proves the build tree's rstmem.pc: compiles and links the example with
# nothing but `pkg-config --cflags --libs rstmem` (PKG_CONFIG_PATH=BUILD_DIR),
# checks the result needs librstmem.so.1, and runs it against a daemon
# (under EMULATOR, e.g. qemu-aarch64-static, for a cross build).
set -eu
build=$1 cc=$2 example=$3 dotnet=$4 dll=$5
shift 5
here=$(cd "$(dirname "$0")" && pwd)
fail() { printf 'check-pkg-config.sh: %s\n' "$*" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Only this build tree: no host .pc files (the cross build must not see them).
flags=$(PKG_CONFIG_LIBDIR="$build" PKG_CONFIG_PATH="$build" pkg-config --cflags --libs rstmem) ||
  fail "pkg-config --cflags --libs rstmem failed with PKG_CONFIG_PATH=$build"
echo "pkg-config --cflags --libs rstmem: $flags"
case "$flags" in *"-I"*"-L$build"*"-lrstmem"*) ;; *) fail "unexpected flags: $flags" ;; esac
version=$(PKG_CONFIG_LIBDIR="$build" pkg-config --modversion rstmem)
echo "pkg-config --modversion rstmem: $version"

# shellcheck disable=SC2086 # $flags is a word list
"$cc" -Wall -Wextra -Werror -o "$tmp/rstmem-alloc" "$example" $flags || fail "the example does not build with pkg-config's flags"
readelf -d "$tmp/rstmem-alloc" | grep -q 'NEEDED.*\[librstmem\.so\.1\]' || fail "the example does not link librstmem.so.1"

LD_LIBRARY_PATH=$build sh "$here/with-daemon.sh" "$dotnet" "$dll" "$@" "$tmp/rstmem-alloc" secure-video 1048576
