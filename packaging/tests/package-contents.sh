#!/usr/bin/env bash
# What the .deb files hold and whether it works, unpacked (not installed).
# TAP on stdout.
#
#   packaging/tests/package-contents.sh DEB...     (default: dist/*.deb)
#
# For each package: the control fields, exactly the expected files, the
# maintainer scripts, conffiles, shlibs/symbols/triggers. Then, per
# architecture, the packaged pieces together: the rstmemd binary runs
# (arm64 under qemu-aarch64-static), the librstmem example builds with only
# the -dev package's pkg-config file, and allocates from the packaged daemon,
# socket-activated by systemd-socket-activate, with the packaged
# configuration file. On the build machine's architecture the Depends on
# libc6 are compared with dpkg-shlibdeps.
set -uo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
CHANGELOG=$ROOT/packaging/debian/changelog
VERSION=$(dpkg-parsechangelog -l "$CHANGELOG" -S Version)
UPSTREAM_VERSION=${VERSION%-*}
BUILD_ARCH=$(dpkg --print-architecture)

TMP=$(mktemp -d)
daemon_pid=
cleanup() {
  [ -z "$daemon_pid" ] || kill "$daemon_pid" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"

debs=("$@")
[ ${#debs[@]} -gt 0 ] || debs=("$ROOT"/dist/*.deb)
[ -f "${debs[0]}" ] || { echo "1..0 # SKIP no .deb given and none in dist/ (packaging/package.sh builds them)"; exit 1; }

# Runs a binary of ARCH: natively, or under qemu-user with the cross libc.
run_arch() { # ARCH COMMAND...
  local arch=$1
  shift
  if [ "$arch" = "$BUILD_ARCH" ]; then
    "$@"
  else
    "qemu-$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_CPU 2>/dev/null)-static" -L "/usr/$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)" "$@"
  fi
}

# The package's files and symlinks (not directories), as paths.
files_of() { dpkg-deb --fsys-tarfile "$1" | tar -t | grep -v '/$' | sed 's|^\./|/|' | LC_ALL=C sort; }

expected_files() { # PACKAGE MULTIARCH
  case $1 in
    rstmemd) printf '%s\n' /usr/bin/rstmemd /lib/systemd/system/rstmemd.socket /lib/systemd/system/rstmemd.service \
      /usr/lib/sysusers.d/rstmemd.conf /lib/udev/rules.d/70-rstmemd.rules /etc/rstmemd/rstmemd.json \
      /usr/share/man/man8/rstmemd.8.gz /usr/share/man/man5/rstmemd.json.5.gz /usr/share/doc/rstmemd/protocol.md \
      /usr/share/doc/rstmemd/copyright /usr/share/doc/rstmemd/changelog.Debian.gz /usr/share/lintian/overrides/rstmemd ;;
    librstmem1) printf '%s\n' "/usr/lib/$2/librstmem.so.1" "/usr/lib/$2/librstmem.so.$UPSTREAM_VERSION" "/usr/lib/$2/rstmem/librstmem-preload.so" \
      /usr/share/doc/librstmem1/copyright /usr/share/doc/librstmem1/changelog.Debian.gz /usr/share/lintian/overrides/librstmem1 ;;
    librstmem-dev) printf '%s\n' /usr/include/rstmem/rstmem.h /usr/include/rstmem/protocol.h "/usr/lib/$2/librstmem.so" \
      "/usr/lib/$2/pkgconfig/rstmem.pc" /usr/share/doc/librstmem-dev/copyright /usr/share/doc/librstmem-dev/changelog.Debian.gz \
      /usr/share/lintian/overrides/librstmem-dev ;;
  esac | LC_ALL=C sort
}

declare -A unpacked   # PACKAGE_ARCH -> directory
arches=()
for deb in "${debs[@]}"; do
  name=$(basename "$deb" .deb)
  IFS=_ read -r package version arch <<<"$name"
  multiarch=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
  dir=$TMP/$name
  dpkg-deb -R "$deb" "$dir"
  unpacked[${package}_$arch]=$dir
  [[ " ${arches[*]} " == *" $arch "* ]] || arches+=("$arch")
  field() { dpkg-deb -f "$deb" "$1"; }

  [ "$(field Package)" = "$package" ] && [ "$(field Version)" = "$VERSION" ] && [ "$version" = "$VERSION" ] &&
    [ "$(field Architecture)" = "$arch" ] && [ -n "$(field Description)" ] && [ -n "$(field Maintainer)" ]
  tap_check "$name: Package, Version ($VERSION, packaging/debian/changelog), Architecture, Maintainer, Description" $?

  files_of "$deb" >"$TMP/files"
  expected_files "$package" "$multiarch" >"$TMP/expected"
  if cmp -s "$TMP/files" "$TMP/expected"; then
    tap_ok "$name: holds exactly the expected $(wc -l <"$TMP/expected") files"
  else
    tap_not_ok "$name: holds exactly the expected files (< missing, > unexpected)"
    diff "$TMP/expected" "$TMP/files" | grep '^[<>]' | tap_diag
  fi

  case $package in
    rstmemd)
      [ "$(cat "$dir/DEBIAN/conffiles")" = /etc/rstmemd/rstmemd.json ]
      tap_check "$name: conffiles: /etc/rstmemd/rstmemd.json" $?
      status=0
      for script in postinst prerm postrm; do
        [ -x "$dir/DEBIAN/$script" ] && sh -n "$dir/DEBIAN/$script" || status=1
      done
      tap_check "$name: postinst, prerm, postrm are executable and parse (sh -n)" $status
      [ "$(stat -c %a "$dir/usr/bin/rstmemd")" = 755 ] && readelf -SW "$dir/usr/bin/rstmemd" | grep -q ' __managedcode '
      tap_check "$name: /usr/bin/rstmemd is a NativeAOT executable (mode 755)" $?
      run_arch "$arch" "$dir/usr/bin/rstmemd" --help >"$TMP/help" 2>&1 && grep -q '^  serve ' "$TMP/help"
      tap_check "$name: rstmemd --help runs and lists serve" $?
      printed=$(run_arch "$arch" "$dir/usr/bin/rstmemd" --version 2>&1)
      [[ "$printed" == "$UPSTREAM_VERSION" || "$printed" == "$UPSTREAM_VERSION"+* ]]
      tap_check "$name: rstmemd --version ($printed) is the package's upstream version $UPSTREAM_VERSION" $?
      ;;
    librstmem1)
      library=$dir/usr/lib/$multiarch/librstmem.so.1
      [ "$(readlink "$library")" = librstmem.so.$UPSTREAM_VERSION ] &&
        [ "$(readelf -dW "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')" = librstmem.so.1 ]
      tap_check "$name: librstmem.so.1 -> librstmem.so.$UPSTREAM_VERSION, SONAME librstmem.so.1" $?
      ! readelf -SW "$library" | grep -q ' \.debug_' && ! readelf -SW "$library" | grep -q ' \.comment '
      tap_check "$name: the library is stripped (no .debug_*, no .comment)" $?
      grep -qx 'librstmem 1 librstmem1 (>= [0-9.]*)' "$dir/DEBIAN/shlibs" && grep -qx 'activate-noawait ldconfig' "$dir/DEBIAN/triggers" &&
        cmp -s "$dir/DEBIAN/symbols" "$ROOT/packaging/debian/librstmem1.symbols"
      tap_check "$name: shlibs, ldconfig trigger, symbols = packaging/debian/librstmem1.symbols" $?
      ;;
    librstmem-dev)
      [ "$(field Depends)" = "librstmem1 (= $VERSION)" ] && [ "$(readlink "$dir/usr/lib/$multiarch/librstmem.so")" = librstmem.so.1 ]
      tap_check "$name: Depends: librstmem1 (= $VERSION); librstmem.so -> librstmem.so.1" $?
      pc=$dir/usr/lib/$multiarch/pkgconfig/rstmem.pc
      grep -qx 'prefix=/usr' "$pc" && grep -qx "libdir=\${prefix}/lib/$multiarch" "$pc" && grep -qx "Version: $UPSTREAM_VERSION" "$pc"
      tap_check "$name: rstmem.pc: prefix /usr, libdir lib/$multiarch, Version $UPSTREAM_VERSION" $?
      ;;
  esac

  # Depends on libc6 as dpkg-shlibdeps computes it, where it can (the build
  # machine's architecture: it reads the installed libc6's symbols file).
  if [ "$package" != librstmem-dev ] && [ "$arch" = "$BUILD_ARCH" ]; then
    mkdir -p "$TMP/shlibdeps/debian"
    printf 'Source: rstmemd\n\nPackage: %s\nArchitecture: any\n' "$package" >"$TMP/shlibdeps/debian/control"
    elves=("$dir/usr/bin/rstmemd")
    [ "$package" = librstmem1 ] && elves=("$dir/usr/lib/$multiarch/librstmem.so.$UPSTREAM_VERSION" "$dir/usr/lib/$multiarch/rstmem/librstmem-preload.so")
    expected=$(cd "$TMP/shlibdeps" && dpkg-shlibdeps -O "${elves[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    depends=$(field Depends | tr ',' '\n' | sed 's/^ *//' | grep '^libc6 ')
    [ -n "$expected" ] && [ "$depends" = "$expected" ]
    tap_check "$name: Depends $depends = dpkg-shlibdeps' $expected" $?
  fi
done

# ---- the packaged pieces together, per architecture ---------------------------
for arch in "${arches[@]}"; do
  daemon=${unpacked[rstmemd_$arch]:-}
  lib=${unpacked[librstmem1_$arch]:-}
  dev=${unpacked[librstmem-dev_$arch]:-}
  if [ -z "$daemon" ] || [ -z "$lib" ] || [ -z "$dev" ]; then
    tap_not_ok "$arch: rstmemd, librstmem1 and librstmem-dev are all given"
    continue
  fi
  multiarch=$(dpkg-architecture -a"$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
  gnu_type=$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)
  # One tree with both library packages, as the system would have it.
  sysroot=$TMP/sysroot-$arch
  mkdir -p "$sysroot"
  cp -a "$lib/usr" "$dev/usr" "$sysroot/"
  flags=$(PKG_CONFIG_SYSROOT_DIR=$sysroot PKG_CONFIG_LIBDIR=$sysroot/usr/lib/$multiarch/pkgconfig \
    PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1 pkg-config --cflags --libs rstmem 2>&1)
  example=$TMP/rstmem-alloc-$arch
  # shellcheck disable=SC2086 # $flags is a word list
  "$gnu_type-gcc" -Wall -Wextra -Werror -o "$example" "$ROOT/src/Native/examples/rstmem-alloc.c" $flags >"$TMP/cc" 2>&1 &&
    readelf -dW "$example" | grep -q 'NEEDED.*\[librstmem\.so\.1\]'
  status=$?
  tap_check "$arch: the example builds with the -dev package's pkg-config flags alone ($flags) and needs librstmem.so.1" $status
  [ $status -eq 0 ] || { tap_diag <"$TMP/cc"; continue; }

  # The packaged daemon, socket-activated as rstmemd.socket does it (one
  # SOCK_SEQPACKET listener, LISTEN_FDS=1), on the packaged configuration.
  # systemd-socket-activate says "Listening on ..." once the socket is
  # bound; connections made after that queue until the daemon accepts.
  # The configuration's access rule names the group rstmem, which sysusers
  # creates on install and this build machine lacks: an override, as
  # RSTMEMD_* variables allow, names this test's own group instead.
  socket=$TMP/rstmemd-$arch.sock
  mkfifo "$TMP/activate-$arch"
  systemd-socket-activate --seqpacket -l "$socket" -E "RSTMEMD_ACCESS__RULES__0__GROUPS__0=$(id -gn)" \
    $( [ "$arch" = "$BUILD_ARCH" ] || echo "qemu-$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_CPU 2>/dev/null)-static -L /usr/$multiarch" ) \
    "$daemon/usr/bin/rstmemd" serve --backend model --config "$daemon/etc/rstmemd/rstmemd.json" >"$TMP/activate-$arch" 2>&1 &
  daemon_pid=$!
  exec 9<"$TMP/activate-$arch"
  IFS= read -r listening <&9
  cat <&9 >"$TMP/daemon-$arch.log" &
  exec 9<&-
  [[ "$listening" == "Listening on $socket"* ]]
  tap_check "$arch: systemd-socket-activate listens on $socket for the packaged rstmemd" $?
  LD_LIBRARY_PATH=$sysroot/usr/lib/$multiarch run_arch "$arch" "$example" --socket "$socket" --list secure-video 4096 >"$TMP/list" 2>&1
  grep -q '^server rstmemd' "$TMP/list" && grep -q 'use case secure-video ' "$TMP/list"
  tap_check "$arch: the example connects to the packaged daemon and lists its heaps (librstmem1 against rstmemd)" $?
  LD_LIBRARY_PATH=$sysroot/usr/lib/$multiarch run_arch "$arch" "$example" --socket "$socket" secure-video 1048576 >"$TMP/alloc" 2>&1 &&
    grep -q 'size 1048576, lseek(SEEK_END) 1048576' "$TMP/alloc"
  status=$?
  tap_check "$arch: the example allocates 1 MiB of secure-video from the packaged daemon, lseek agrees" $status
  [ $status -eq 0 ] || { tap_diag <"$TMP/alloc"; grep -v '^   at ' "$TMP/daemon-$arch.log" | tail -n 8 | tap_diag; }
  kill -TERM "$daemon_pid"
  wait "$daemon_pid"
  status=$?
  daemon_pid=
  tap_check "$arch: the packaged daemon stops on SIGTERM with status 0" $status
done

tap_finish package-contents
