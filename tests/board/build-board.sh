#!/usr/bin/env bash
# Builds the arm64 board once and caches it: the kernel and the root file system.
#
#   tests/board/build-board.sh kernel   arm64 Image from the same Debian sid linux-source
#                                       and tests/kernel/tee-testdrv as the x86 mainline guest
#   tests/board/build-board.sh rootfs   Debian bookworm arm64 ext4 image, systemd as PID 1
#   tests/board/build-board.sh          both, one after the other
#
# stdout: one line per part, KERNEL=<dir> (Image, config, headers/, info) and
# ROOTFS=<dir> (rootfs.ext4, packages, info); logs go to stderr, the builds'
# own output to build.log files (their tail is shown on failure).
#
# Cache: ${RSTMEM_BOARD_CACHE:-~/.cache/rstmemd/board}/kernel-<hash>/ and
# rootfs-<hash>/. The kernel's hash covers the source package's name and
# version, tests/board/config/board.config, the driver source and
# KERNEL_RECIPE; the root file system's covers the suite, the package list,
# tests/board/guest/* and ROOTFS_RECIPE. The sid source .deb is the one
# tests/kernel/build-kernel.sh fetched and pinned for the x86 mainline kernel
# (fetched here the same way when it is not there yet). flock keeps two runs
# from building the same part at once. An interrupted kernel build resumes
# from its tree in work/kernel-<hash>/ (removed once the kernel is cached);
# RSTMEM_BOARD_JOBS sets make's -j (default: nproc).
#
# The root file system is made by mmdebstrap with arm64 maintainer scripts run
# under qemu-user: binfmt_misc is mounted (when it is not) and qemu-aarch64
# registered (when it is not) for the time of the build only, and undone on
# every exit, failures and signals included. Needs root; fails loudly, never skips.
set -euo pipefail

# Bump when the steps below change what gets built (not for comments or logging).
KERNEL_RECIPE=1
ROOTFS_RECIPE=1

BOARD_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(cd "$BOARD_DIR/../.." && pwd)
BOARD_CACHE=${RSTMEM_BOARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rstmemd/board}

# The x86 kernel script's functions: the sid source (source_mainline), the
# driver hook (add_tee_testdrv), the fragment check (verify_config) and
# run_logged. Sourced first: it sources tests/lib/common.sh, which starts a
# fresh list of exit actions.
NAME=board-arm64
FRAGMENTS=("$BOARD_DIR/config/board.config")
REFRESH=0
LOG_PREFIX=build-board
# shellcheck source=tests/kernel/build-kernel.sh
. "$ROOT/tests/kernel/build-kernel.sh"

SUITE=bookworm
# What the board has besides the base system: systemd as init with udev (the
# package's rules own the device nodes), apt to install dist/*.deb, and a C
# toolchain with pkg-config for the librstmem example built on the board.
ROOTFS_PACKAGES=(systemd systemd-sysv udev dbus apt gcc libc6-dev pkg-config procps util-linux)
# Host tools: the cross compiler, the image builder and the machine. arch-test
# is only a Recommends of mmdebstrap, which apt-get --no-install-recommends
# (tests/lib/common.sh) leaves out, but mmdebstrap refuses a foreign
# architecture without it ("install arch-test for foreign architecture support").
HOST_PACKAGES=(gcc-aarch64-linux-gnu mmdebstrap arch-test e2fsprogs qemu-user-static qemu-system-arm qemu-utils)

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

hash_of() { sha256sum | cut -c1-16; }

# --- The kernel.

kernel_key() {
  {
    printf 'recipe %s\npackage %s %s\n' "$KERNEL_RECIPE" "$SOURCE_PACKAGE" "$SOURCE_VERSION"
    local file
    for file in "${FRAGMENTS[@]}"; do printf 'fragment %s\n' "$(basename "$file")"; cat "$file"; done
    for file in "$DRIVER_DIR"/*; do printf 'driver %s\n' "$(basename "$file")"; cat "$file"; done
  } | hash_of
}

build_kernel() { # OUT KEY
  local out=$1 key=$2 work tree build_log start make_args jobs=${RSTMEM_BOARD_JOBS:-$(nproc)}
  work=$BOARD_CACHE/work/kernel-$key
  build_log=$work/build.log
  start=$SECONDS
  if [ -f "$work/configured" ]; then
    # An interrupted build of these same inputs: make carries on where it stopped.
    tree=$(ls -d "$work"/linux-source-*/)
    tree=${tree%/}
    log "kernel: resuming the build in $work"
  else
    # Trees of earlier (failed or superseded) builds go.
    rm -rf "$BOARD_CACHE"/work/kernel-*
    mkdir -p "$work"
    log "kernel: unpacking $SOURCE_PACKAGE $SOURCE_VERSION into $work"
    dpkg-deb --fsys-tarfile "$SOURCE_DEB" | tar -x -C "$work" --wildcards './usr/src/linux-source-*.tar.xz'
    tar -xf "$work"/usr/src/linux-source-*.tar.xz -C "$work"
    rm -rf "${work:?}/usr"
    tree=$(ls -d "$work"/linux-source-*/)
    tree=${tree%/}
    add_tee_testdrv "$tree"
  fi

  make_args=(-C "$tree" ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
  if [ ! -f "$work/configured" ]; then
    log "kernel: configuring: arm64 tinyconfig + ${FRAGMENTS[*]##*/}"
    run_logged "$build_log" make "${make_args[@]}" tinyconfig
    run_logged "$build_log" env ARCH=arm64 "$tree/scripts/kconfig/merge_config.sh" -m -O "$tree" "$tree/.config" "${FRAGMENTS[@]}"
    run_logged "$build_log" make "${make_args[@]}" olddefconfig
    verify_config "$tree/.config"
    touch "$work/configured"
  fi

  log "kernel: configured in $((SECONDS - start)) s; make -j$jobs Image (log: $build_log)"
  run_logged "$build_log" make "${make_args[@]}" -j"$jobs" Image
  log "kernel: Image in $((SECONDS - start)) s"

  local staging=$out.tmp.$$
  on_exit "rm -rf $(shell_quote "$staging")"
  rm -rf "$staging"
  mkdir -p "$staging"
  cp "$tree/arch/arm64/boot/Image" "$staging/Image"
  cp "$tree/.config" "$staging/config"
  # The tree's arm64 uapi headers, for programs built on the board against this exact kernel.
  run_logged "$build_log" make "${make_args[@]}" headers_install INSTALL_HDR_PATH="$staging/headers"
  printf 'package=%s\nversion=%s\nrecipe=%s\nbuilt=%s\nbuild_seconds=%s\n' \
    "$SOURCE_PACKAGE" "$SOURCE_VERSION" "$KERNEL_RECIPE" "$(date -u +%FT%TZ)" "$((SECONDS - start))" > "$staging/info"
  rm -rf "$out"
  mv -T "$staging" "$out"
  # 1.5 GB of tree: not worth keeping for a cache that rarely changes.
  rm -rf "$work"
  log "kernel: built in $((SECONDS - start)) s"
}

kernel() {
  ensure_debian_packages "${BUILD_PACKAGES[@]}" gcc-aarch64-linux-gnu
  # The sid linux-source .deb tests/kernel/build-kernel.sh uses for the x86 mainline guest.
  source_mainline
  local key out
  key=$(kernel_key)
  out=$BOARD_CACHE/kernel-$key
  if [ ! -f "$out/Image" ]; then
    exec 9>"$BOARD_CACHE/.lock-kernel"
    if ! flock -n 9; then
      log "another build of the board kernel is running; waiting for it"
      flock 9
    fi
    [ -f "$out/Image" ] || build_kernel "$out" "$key"
    exec 9>&-
  fi
  log "kernel: $SOURCE_PACKAGE $SOURCE_VERSION, cached at $out"
  printf 'KERNEL=%s\n' "$out"
}

# --- The root file system.

# binfmt_misc for mmdebstrap's arm64 maintainer scripts: mounted and
# qemu-aarch64 registered only if they are not already, and exactly that undone
# by binfmt_off (run at the end of the build and by on_exit on any exit). A
# machine-wide lock keeps a second build from registering and undoing
# underneath the first.
BINFMT=/proc/sys/fs/binfmt_misc
BINFMT_CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
BINFMT_LOCK=/tmp/rstmemd-board-binfmt.lock
BINFMT_MOUNTED=0
BINFMT_REGISTERED=0

binfmt_on() {
  [ -f "$BINFMT_CONF" ] || die "$BINFMT_CONF is missing (qemu-user-static installs it)"
  exec {BINFMT_LOCK_FD}>"$BINFMT_LOCK"
  flock "$BINFMT_LOCK_FD"
  on_exit binfmt_off
  if ! mountpoint -q "$BINFMT"; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
    BINFMT_MOUNTED=1
  fi
  if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    cat "$BINFMT_CONF" > "$BINFMT/register" || die "cannot register qemu-aarch64 with binfmt_misc"
    BINFMT_REGISTERED=1
  fi
  log "rootfs: binfmt_misc: qemu-aarch64 $([ "$BINFMT_REGISTERED" -eq 1 ] && echo registered || echo 'was registered already')$([ "$BINFMT_MOUNTED" -eq 1 ] && echo ', binfmt_misc mounted')"
}

binfmt_off() {
  if [ "$BINFMT_REGISTERED" -eq 1 ]; then
    echo -1 > "$BINFMT/qemu-aarch64" || log "WARNING: could not unregister qemu-aarch64: echo -1 > $BINFMT/qemu-aarch64"
    BINFMT_REGISTERED=0
  fi
  if [ "$BINFMT_MOUNTED" -eq 1 ]; then
    umount "$BINFMT" || log "WARNING: could not unmount $BINFMT"
    BINFMT_MOUNTED=0
  fi
}

rootfs_key() {
  {
    printf 'recipe %s\nsuite %s\npackages %s\n' "$ROOTFS_RECIPE" "$SUITE" "${ROOTFS_PACKAGES[*]}"
    local file
    for file in "$BOARD_DIR"/guest/*; do printf 'guest %s\n' "$(basename "$file")"; cat "$file"; done
  } | hash_of
}

# The board's own settings, written into the tree from the host (no arm64 code runs).
customize_rootfs() { # TREE KEY
  local tree=$1 key=$2
  echo board > "$tree/etc/hostname"
  # A fixed machine id: every boot of the image is the same boot, not a first boot.
  printf '%s\n' "$(printf 'board %s' "$key" | md5sum | cut -c1-32)" > "$tree/etc/machine-id"
  # root without a password, for a look on the serial console (board.nopoweroff).
  sed -i 's/^root:[^:]*:/root::/' "$tree/etc/shadow"
  install -m 0755 "$BOARD_DIR/guest/board-job" "$tree/usr/local/sbin/board-job"
  install -m 0644 "$BOARD_DIR/guest/board-job.service" "$tree/etc/systemd/system/board-job.service"
  install -m 0644 "$BOARD_DIR/guest/60-board-teeclnt.rules" "$tree/etc/udev/rules.d/60-board-teeclnt.rules"
  groupadd --root "$tree" --system teeclnt
  systemctl --root="$tree" enable board-job.service
  # No network on the board: nothing to fetch on a timer.
  systemctl --root="$tree" mask apt-daily.timer apt-daily-upgrade.timer
  rm -f "$tree"/var/cache/apt/archives/*.deb "$tree"/var/cache/apt/*.bin
}

build_rootfs() { # OUT KEY
  local out=$1 key=$2 work build_log start tree staging
  work=$BOARD_CACHE/work/rootfs
  # --one-file-system: should an interrupted mmdebstrap leave a mount in the tree.
  rm -rf --one-file-system "$work"
  mkdir -p "$work"
  build_log=$work/build.log
  tree=$work/tree
  start=$SECONDS
  on_exit "rm -rf --one-file-system $(shell_quote "$work")"

  binfmt_on
  local packages
  packages=$(IFS=,; echo "${ROOTFS_PACKAGES[*]}")
  log "rootfs: mmdebstrap $SUITE arm64 with $packages (log: $build_log)"
  # In the background, so that a signal to this script is handled at once
  # (bash runs traps only between foreground commands): mmdebstrap is stopped
  # (it unmounts what it mounted), then binfmt_misc is restored.
  mmdebstrap --arch=arm64 --variant=apt --include="$packages" "$SUITE" "$tree" "$DEBIAN_MIRROR" >>"$build_log" 2>&1 &
  local mmdebstrap_pid=$!
  on_exit "kill $mmdebstrap_pid 2>/dev/null && wait $mmdebstrap_pid"
  if ! wait "$mmdebstrap_pid"; then
    tail -n 40 "$build_log" >&2
    die "mmdebstrap failed; full log: $build_log"
  fi
  binfmt_off
  log "rootfs: mmdebstrap done in $((SECONDS - start)) s; binfmt_misc restored"

  customize_rootfs "$tree" "$key" >>"$build_log" 2>&1 || { tail -n 20 "$build_log" >&2; die "customizing the root file system failed"; }

  staging=$out.tmp.$$
  on_exit "rm -rf $(shell_quote "$staging")"
  rm -rf "$staging"
  mkdir -p "$staging"
  dpkg-query --admindir="$tree/var/lib/dpkg" -W -f='${Package} ${Version} ${Architecture}\n' > "$staging/packages"
  # A sparse 4 GiB image: room for the packages under test and what apt unpacks.
  run_logged "$build_log" mke2fs -q -t ext4 -L board -d "$tree" "$staging/rootfs.ext4" 4G
  printf 'suite=%s\npackages=%s\nrecipe=%s\nbuilt=%s\nbuild_seconds=%s\n' \
    "$SUITE" "$(wc -l < "$staging/packages")" "$ROOTFS_RECIPE" "$(date -u +%FT%TZ)" "$((SECONDS - start))" > "$staging/info"
  rm -rf "$out"
  mv -T "$staging" "$out"
  log "rootfs: built in $((SECONDS - start)) s ($(wc -l < "$out/packages") packages)"
}

rootfs() {
  ensure_debian_packages "${HOST_PACKAGES[@]}"
  local key out
  key=$(rootfs_key)
  out=$BOARD_CACHE/rootfs-$key
  if [ ! -f "$out/rootfs.ext4" ]; then
    exec 7>"$BOARD_CACHE/.lock-rootfs"
    if ! flock -n 7; then
      log "another build of the board's root file system is running; waiting for it"
      flock 7
    fi
    [ -f "$out/rootfs.ext4" ] || build_rootfs "$out" "$key"
    exec 7>&-
  fi
  log "rootfs: Debian $SUITE arm64, cached at $out"
  printf 'ROOTFS=%s\n' "$out"
}

main() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, mmdebstrap, binfmt_misc)"
  mkdir -p "$BOARD_CACHE"
  case "${1:-all}" in
    kernel) kernel ;;
    rootfs) rootfs ;;
    all) kernel; rootfs ;;
    *) usage ;;
  esac
}

main "$@"
