#!/usr/bin/env bash
# Debian packages for boards, built with dpkg-deb from the control files and
# maintainer scripts in packaging/debian, into dist/:
#
#   rstmemd_<version>_<arch>.deb        the NativeAOT daemon, its units, sysusers.d,
#                                       udev rules, /etc/rstmemd/rstmemd.json, man pages
#   librstmem1_<version>_<arch>.deb     librstmem.so.1, rstmem/librstmem-preload.so (rstmemd exec)
#   librstmem-dev_<version>_<arch>.deb  rstmem/rstmem.h, rstmem/protocol.h, rstmem.pc, librstmem.so
#
# for amd64 and arm64, then checks them: lintian (no error, no warning) and
# packaging/tests/unit-security.sh, package-contents.sh and install-boot.sh.
#
#   packaging/package.sh [ARCH...]      ARCH: amd64, arm64 (default: both)
#
# The daemon is dist/linux-x64/rstmemd or dist/linux-arm64/rstmemd, written
# by packaging/publish.sh when missing. The C library is built here by cmake
# for the target architecture, with Debian's build flags, and installed
# through its install rules (components runtime and dev). The version and the
# maintainer come from packaging/debian/changelog. Debian packages the build
# needs are installed with apt-get when run as root, or named when not.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$ROOT"
PACKAGING=$ROOT/packaging
DIST=$ROOT/dist
WORK=$ROOT/build/deb

DEBIAN_PACKAGES=(
  dpkg-dev lintian systemd cmake make gcc pkg-config
  gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
)

# Debian 12's locations: systemd.pc's systemdsystemunitdir and sysusersdir,
# udev.pc's udevdir. lintian checks each file's place.
UNIT_DIR=/lib/systemd/system
SYSUSERS_DIR=/usr/lib/sysusers.d
UDEV_RULES_DIR=/lib/udev/rules.d

# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
LOG_PREFIX=package.sh

# ---- per-architecture facts -------------------------------------------------

# The .NET runtime identifier publish.sh builds for.
runtime_id() {
  case $1 in
    amd64) echo linux-x64 ;;
    arm64) echo linux-arm64 ;;
    *) die "architecture '$1' is not packaged; expected amd64 or arm64" ;;
  esac
}

# What readelf -h prints as Machine for the architecture's binaries.
elf_machine() {
  case $1 in
    amd64) echo 'Advanced Micro Devices X86-64' ;;
    arm64) echo 'AArch64' ;;
  esac
}

# The cmake toolchain file for a cross build; empty for the build machine's own architecture.
toolchain_file() {
  [ "$1" = "$(dpkg-architecture -qDEB_BUILD_ARCH)" ] && return 0
  case $1 in
    arm64) echo "$ROOT/src/Native/cmake/aarch64-linux-gnu.cmake" ;;
    *) die "no cmake toolchain file for architecture '$1' (src/Native/cmake has aarch64-linux-gnu.cmake)" ;;
  esac
}

# ---- checks on ELF files ---------------------------------------------------

check_machine() { # FILE ARCH
  local machine
  machine=$(readelf -h "$1" | sed -n 's/^ *Machine: *//p')
  [ "$machine" = "$(elf_machine "$2")" ] || die "$1 is built for '$machine'; the $2 package needs '$(elf_machine "$2")'"
}

# NativeAOT output has the __managedcode section. A JIT build (dotnet publish
# without PublishAot) cannot run under the service's MemoryDenyWriteExecute=yes.
is_native_aot() { readelf -SW "$1" 2>/dev/null | grep -q ' __managedcode '; }

# Depends for ELF files that need only glibc: libc6, at least the newest
# GLIBC_x.y symbol version they reference (what dpkg-shlibdeps derives from
# libc6's symbols file; packaging/tests/package-contents.sh compares the two
# on the build machine's architecture, where dpkg-shlibdeps can run).
libc6_depends() {
  local needed library floor
  needed=$(readelf -dW "$@" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
  for library in $needed; do
    case $library in
      libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | ld-linux-x86-64.so.2 | ld-linux-aarch64.so.1) ;;
      *) die "$* needs $library, which is not part of libc6; add its package to libc6_depends in packaging/package.sh" ;;
    esac
  done
  floor=$(readelf -VW "$@" | sed -n 's/.*Name: GLIBC_\([0-9][0-9.]*\) .*/\1/p' | sort -uV | tail -n 1)
  [ -n "$floor" ] || die "$* reference no GLIBC_ symbol version; cannot state a libc6 version"
  echo "libc6 (>= $floor)"
}

# ---- staging -----------------------------------------------------------------

# /usr/share/doc/PACKAGE: copyright and the Debian changelog (gzip -n: byte-identical
# across architectures, as Multi-Arch: same requires).
install_docs() { # STAGE PACKAGE
  local doc=$1/usr/share/doc/$2
  install -d "$doc"
  install -m 0644 "$PACKAGING/debian/copyright" "$doc/copyright"
  gzip -9n <"$PACKAGING/debian/changelog" >"$doc/changelog.Debian.gz"
  # Overrides, each with its reason: packaging/debian/PACKAGE.lintian-overrides.
  if [ -f "$PACKAGING/debian/$2.lintian-overrides" ]; then
    install -D -m 0644 "$PACKAGING/debian/$2.lintian-overrides" "$1/usr/share/lintian/overrides/$2"
  fi
}

install_man() { # STAGE SOURCE SECTION
  local name dir
  name=$(basename "$2")
  dir=$1/usr/share/man/man$3
  install -d "$dir"
  sed "s/@UPSTREAM_VERSION@/$UPSTREAM_VERSION/g" "$2" | gzip -9n >"$dir/$name.gz"
}

# DEBIAN/control from packaging/debian/PACKAGE.control, md5sums, then the .deb.
build_deb() { # STAGE PACKAGE ARCH DEPENDS
  local stage=$1 package=$2 arch=$3 depends=$4 size deb
  install -d "$stage/DEBIAN"
  # Installed-Size as dpkg-gencontrol counts it: KiB per file rounded up, 1 per directory or link.
  size=$(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%s\n' -o -printf '1\n' |
    awk '{ kib += int(($1 + 1023) / 1024) } END { print kib }')
  sed -e "s/@VERSION@/$VERSION/g" -e "s/@ARCH@/$arch/g" -e "s|@MAINTAINER@|$MAINTAINER|g" \
      -e "s/@INSTALLED_SIZE@/$size/g" -e "s/@SHLIBS@/$depends/g" \
      "$PACKAGING/debian/$package.control" >"$stage/DEBIAN/control"
  if grep -q '@[A-Z_]*@' "$stage/DEBIAN/control"; then
    die "packaging/debian/$package.control: unknown placeholder $(grep -o '@[A-Z_]*@' "$stage/DEBIAN/control" | head -n 1)"
  fi
  (cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0r md5sum) >"$stage/DEBIAN/md5sums"
  deb=$DIST/${package}_${VERSION}_${arch}.deb
  dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
  log "$(basename "$deb"): $(stat -c %s "$deb") bytes, Installed-Size $size KiB"
}

daemon_binary() { # ARCH
  local arch=$1 binary
  binary=$DIST/$(runtime_id "$arch")/rstmemd
  if [ ! -f "$binary" ] || ! is_native_aot "$binary"; then
    [ -x "$PACKAGING/publish.sh" ] || die "$binary is missing or not a NativeAOT build, and packaging/publish.sh (which writes it) is not there"
    log "${binary#"$ROOT"/}: $([ -f "$binary" ] && echo 'not a NativeAOT build' || echo missing); running packaging/publish.sh $(runtime_id "$arch")"
    "$PACKAGING/publish.sh" "$(runtime_id "$arch")" >&2
    [ -f "$binary" ] || die "packaging/publish.sh did not write $binary"
    is_native_aot "$binary" || die "$binary is not a NativeAOT build (no __managedcode section); rstmemd.service runs it with MemoryDenyWriteExecute=yes, where a JIT cannot run"
  fi
  check_machine "$binary" "$arch"
  echo "$binary"
}

package_arch() { # ARCH
  local arch=$1 multiarch gnu_type toolchain work cmake_dir binary library soname
  multiarch=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
  gnu_type=$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)
  toolchain=$(toolchain_file "$arch")
  work=$WORK/$arch
  cmake_dir=$work/cmake
  rm -rf "$work"
  mkdir -p "$work" "$DIST"

  # ---- librstmem1 and librstmem-dev: cmake's install rules ----
  # A build tree of its own: build/native and build/native-aarch64 are the test
  # builds (install prefix /usr/local, no Debian flags), and this one must not
  # change them. Only the library target is built.
  log "$arch: cmake (src/Native, prefix /usr, libdir lib/$multiarch)"
  (
    eval "$(DEB_HOST_ARCH=$arch DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --export=sh 2>/dev/null)"
    export CFLAGS="$CFLAGS $CPPFLAGS"
    cmake -S "$ROOT/src/Native" -B "$cmake_dir" -DCMAKE_BUILD_TYPE=None -DCMAKE_INSTALL_PREFIX=/usr \
      -DCMAKE_INSTALL_LIBDIR="lib/$multiarch" ${toolchain:+-DCMAKE_TOOLCHAIN_FILE="$toolchain"} >/dev/null
    cmake --build "$cmake_dir" --target rstmem rstmem-preload --parallel "$(nproc)" >/dev/null
  )
  DESTDIR=$work/librstmem1 cmake --install "$cmake_dir" --component runtime >/dev/null
  # The LD_PRELOAD shim `rstmemd exec` loads (src/Native/preload/README.md), in its private directory.
  DESTDIR=$work/librstmem1 cmake --install "$cmake_dir" --component preload >/dev/null
  DESTDIR=$work/librstmem-dev cmake --install "$cmake_dir" --component dev >/dev/null

  library=$(readlink -f "$work/librstmem1/usr/lib/$multiarch/librstmem.so.1")
  [ -f "$library" ] || die "cmake --install (component runtime) wrote no usr/lib/$multiarch/librstmem.so.1"
  check_machine "$library" "$arch"
  soname=$(readelf -dW "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [ "$soname" = librstmem.so.1 ] || die "$library has SONAME '$soname'; the package librstmem1 holds librstmem.so.1"
  # What dh_strip does to a shared library: debug information (-g) out.
  "$gnu_type-strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$library"
  local shim=$work/librstmem1/usr/lib/$multiarch/rstmem/librstmem-preload.so
  [ -f "$shim" ] || die "cmake --install (component preload) wrote no usr/lib/$multiarch/rstmem/librstmem-preload.so"
  check_machine "$shim" "$arch"
  "$gnu_type-strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$shim"

  # The exported symbols must be those of packaging/debian/librstmem1.symbols:
  # a change fails here (-c4) until that file says which version added it.
  # DEB_HOST_ARCH: dpkg-gensymbols reads the library with the host triplet's objdump.
  DEB_HOST_ARCH=$arch dpkg-gensymbols -q -c4 -plibrstmem1 -a"$arch" -v"$UPSTREAM_VERSION" -P"$work/librstmem1" \
    -I"$PACKAGING/debian/librstmem1.symbols" -O"$work/librstmem1.symbols" >&2 ||
    die "$arch: librstmem.so.1 exports differ from packaging/debian/librstmem1.symbols (diff above)"
  install -d "$work/librstmem1/DEBIAN"
  install -m 0644 "$work/librstmem1.symbols" "$work/librstmem1/DEBIAN/symbols"
  # shlibs: the newest version in the symbols file.
  printf 'librstmem 1 librstmem1 (>= %s)\n' \
    "$(awk '/^ / { print $2 }' "$PACKAGING/debian/librstmem1.symbols" | sort -V | tail -n 1)" >"$work/librstmem1/DEBIAN/shlibs"
  install -m 0644 "$PACKAGING/debian/librstmem1.triggers" "$work/librstmem1/DEBIAN/triggers"
  install_docs "$work/librstmem1" librstmem1
  build_deb "$work/librstmem1" librstmem1 "$arch" "$(libc6_depends "$library" "$shim")"

  install_docs "$work/librstmem-dev" librstmem-dev
  build_deb "$work/librstmem-dev" librstmem-dev "$arch" ""

  # ---- rstmemd ----
  binary=$(daemon_binary "$arch")
  local stage=$work/rstmemd
  install -D -m 0755 "$binary" "$stage/usr/bin/rstmemd"
  # publish.sh strips it; the compiler notes in .comment go too, as dh_strip does.
  "$gnu_type-objcopy" --remove-section=.comment "$stage/usr/bin/rstmemd"
  install -D -m 0644 "$ROOT/systemd/rstmemd.socket" "$stage$UNIT_DIR/rstmemd.socket"
  install -D -m 0644 "$ROOT/systemd/rstmemd.service" "$stage$UNIT_DIR/rstmemd.service"
  install -D -m 0644 "$ROOT/systemd/rstmemd.sysusers" "$stage$SYSUSERS_DIR/rstmemd.conf"
  install -D -m 0644 "$ROOT/systemd/70-rstmemd.rules" "$stage$UDEV_RULES_DIR/70-rstmemd.rules"
  install -D -m 0644 "$PACKAGING/etc/rstmemd.json" "$stage/etc/rstmemd/rstmemd.json"
  install_man "$stage" "$PACKAGING/man/rstmemd.8" 8
  install_man "$stage" "$PACKAGING/man/rstmemd.json.5" 5
  install_docs "$stage" rstmemd
  install -m 0644 "$ROOT/docs/protocol.md" "$stage/usr/share/doc/rstmemd/protocol.md"
  install -d "$stage/DEBIAN"
  local script
  for script in postinst prerm postrm; do
    install -m 0755 "$PACKAGING/debian/rstmemd.$script" "$stage/DEBIAN/$script"
  done
  # Every file under /etc is a conffile (as dh_installdeb decides).
  (cd "$stage" && find etc -type f | sed 's|^|/|' | LC_ALL=C sort) >"$stage/DEBIAN/conffiles"
  build_deb "$stage" rstmemd "$arch" "$(libc6_depends "$stage/usr/bin/rstmemd")"
}

# ---- main ----------------------------------------------------------------------

ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64)
for arch in "${ARCHES[@]}"; do runtime_id "$arch" >/dev/null; done

ensure_debian_packages "${DEBIAN_PACKAGES[@]}"

VERSION=$(dpkg-parsechangelog -l "$PACKAGING/debian/changelog" -S Version)
UPSTREAM_VERSION=${VERSION%-*}
MAINTAINER=$(dpkg-parsechangelog -l "$PACKAGING/debian/changelog" -S Maintainer)
# Reproducible archives: dpkg-deb clamps file times to this.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$PACKAGING/debian/changelog" -S Timestamp)
export SOURCE_DATE_EPOCH
CMAKE_VERSION=$(sed -n 's/^project(rstmem .*VERSION \([0-9.]*\).*/\1/p' "$ROOT/src/Native/CMakeLists.txt")
[ "$CMAKE_VERSION" = "$UPSTREAM_VERSION" ] ||
  die "packaging/debian/changelog is at $VERSION but src/Native/CMakeLists.txt is at $CMAKE_VERSION; add a changelog entry (dch -v $CMAKE_VERSION-1)"

debs=()
for arch in "${ARCHES[@]}"; do
  package_arch "$arch"
  for package in rstmemd librstmem1 librstmem-dev; do
    debs+=("$DIST/${package}_${VERSION}_${arch}.deb")
  done
done

log "lintian (no error, no warning allowed)"
# lintian advises against running as root: as nobody then (the .debs are world-readable).
lint=(lintian --fail-on error,warning "${debs[@]}")
[ "$(id -u)" -ne 0 ] || lint=(runuser -u nobody -- "${lint[@]}")
"${lint[@]}" || die "lintian found errors or warnings (above)"

log "tests: packaging/tests/unit-security.sh, package-contents.sh, install-boot.sh"
# With PACKAGING_TAP_DIR set (./build.sh test), each test's TAP is also kept there as NAME.tap.
packaging_test() { # NAME ARGS...
  local name=$1
  shift
  if [ -n "${PACKAGING_TAP_DIR:-}" ]; then
    mkdir -p "$PACKAGING_TAP_DIR"
    "$PACKAGING/tests/$name.sh" "$@" | tee "$PACKAGING_TAP_DIR/$name.tap"
    return "${PIPESTATUS[0]}"
  fi
  "$PACKAGING/tests/$name.sh" "$@"
}
status=0
packaging_test unit-security || status=1
packaging_test package-contents "${debs[@]}" || status=1
# Installed and booted: the build machine's architecture only (nspawn runs it natively).
build_arch=$(dpkg --print-architecture)
if [[ " ${ARCHES[*]} " == *" $build_arch "* ]]; then
  packaging_test install-boot "$DIST"/{rstmemd,librstmem1,librstmem-dev}_"${VERSION}_$build_arch.deb" || status=1
fi
[ $status -eq 0 ] || die "a packaging test failed (above)"
ls -l "${debs[@]}"
