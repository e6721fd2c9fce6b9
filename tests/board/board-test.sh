#!/usr/bin/env bash
# The board: an arm64 Debian bookworm system under qemu-system-aarch64 -M virt
# (TCG), systemd as PID 1, on a mainline kernel with the TEE protected heaps
# (tests/board/README.md). Installs the arm64 packages from dist/ on it and
# checks that they install, start and serve there (tests/board/install-test.sh).
#
#   tests/board/board-test.sh       after ./build.sh package (or packaging/package.sh arm64)
#
# TAP in build/board/results.tap (also on stdout); the boards' serial consoles
# in build/board/console-<phase>.log, the guest's stderr in
# build/board/<phase>.err. The kernel and the root file system are built once
# and cached (tests/board/build-board.sh). Every boot runs on a throw-away
# qcow2 overlay of the cached image: boot 1 installs the packages, boot 2 (the
# same overlay) finds rstmemd.socket listening and runs the rest.
#
# Fails (exit 1, with a "not ok") when the board cannot be built, qemu is
# missing, a package is missing from dist/, or a boot never reports back;
# nothing is skipped. Needs root (apt-get, the rootfs build).
set -euo pipefail

BOARD_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
ROOT=$(cd "$BOARD_DIR/../.." && pwd)
RESULTS=$ROOT/build/board
# A bound to give up at, not a measure: a boot takes about 10-20 s under TCG,
# the install and serve phases a few minutes on a loaded machine.
BOOT_TIMEOUT=${RSTMEM_BOARD_TIMEOUT:-1200}
# shellcheck source=tests/lib/common.sh
. "$ROOT/tests/lib/common.sh"
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
LOG_PREFIX=board-test

# bail WHAT [DETAIL...]: one failed check, the closing count, exit 1.
bail() {
  tap_not_ok "$@"
  tap_finish board || true
  exit 1
}

# tap_import FILE PREFIX: the guest's TAP lines as this run's checks (renumbered).
tap_import() {
  local line
  while IFS= read -r line; do
    case "$line" in
      'ok '*) tap_ok "$2: ${line#* - }" ;;
      'not ok '*) tap_not_ok "$2: ${line#* - }" ;;
      '#'*) printf '%s\n' "$line" ;;
      *) printf '%s\n' "$line" | tap_diag ;;
    esac
  done < "$1"
}

# boot PHASE: one boot of the board with the install test's PHASE as its job.
boot() {
  local phase=$1 start status=0 qemu_pid
  local console=$RESULTS/console-$phase.log
  rm -rf "$SHARE/out"
  printf '#!/bin/bash\n# Written by tests/board/board-test.sh: phase %s.\nbash ./install-test.sh %s > out/%s.tap 2> out/%s.err\n' \
    "$phase" "$phase" "$phase" "$phase" > "$SHARE/job.sh"
  start=$SECONDS
  timeout --kill-after=10 "$BOOT_TIMEOUT" qemu-system-aarch64 \
    -M virt -cpu max,pauth-impdef=on -smp 2 -m 2048 -nographic -no-reboot \
    -kernel "$KERNEL/Image" \
    -append "console=ttyAMA0 root=/dev/vda rw rootfstype=ext4 cma=64M panic=-1" \
    -drive if=none,id=disk,file="$DISK",format=qcow2 -device virtio-blk-device,drive=disk \
    -fsdev local,id=share,path="$SHARE",security_model=none -device virtio-9p-device,fsdev=share,mount_tag=host \
    -device virtio-rng-device -nic none \
    < /dev/null > "$console" 2>&1 &
  qemu_pid=$!
  on_exit "kill $qemu_pid 2>/dev/null || true"
  wait "$qemu_pid" || status=$?
  local seconds=$((SECONDS - start)) ready
  ready=$(sed -n 's/.*BOARD-READY uptime=\([0-9.]*\).*/\1/p' "$console" | head -n 1)
  log "boot $phase: qemu exited with status $status after $seconds s; job started at guest uptime ${ready:-never}"
  [ -f "$SHARE/out/$phase.err" ] && cp "$SHARE/out/$phase.err" "$RESULTS/$phase.err"
  if [ ! -f "$SHARE/out/rc" ]; then
    bail "boot $phase: the board never reported back (qemu status $status after $seconds s$([ "$status" -eq 124 ] && echo ', timed out'))" \
      "$(tail -n 30 "$console" | tr -d '\r')"
  fi
  tap_ok "boot $phase: the board booted, reached multi-user.target and ran its job (job at uptime $ready s; qemu ran $seconds s)"
  tap_import "$SHARE/out/$phase.tap" "$phase"
  if grep -qx "# phase $phase complete" "$SHARE/out/$phase.tap"; then
    tap_ok "phase $phase ran to its end"
  else
    tap_not_ok "phase $phase stopped early (job status $(cat "$SHARE/out/rc"))" "$(tail -n 20 "$SHARE/out/$phase.err" 2>/dev/null)"
  fi
}

main() {
  ensure_debian_packages qemu-system-arm qemu-utils dpkg-dev
  command -v qemu-system-aarch64 >/dev/null || bail "qemu-system-aarch64 is not on PATH although qemu-system-arm is installed"

  local version package debs=()
  version=$(dpkg-parsechangelog -l "$ROOT/packaging/debian/changelog" -S Version)
  for package in rstmemd librstmem1 librstmem-dev; do
    debs+=("$ROOT/dist/${package}_${version}_arm64.deb")
  done
  for package in "${debs[@]}"; do
    [ -f "$package" ] || bail "${package#"$ROOT"/} is missing: run ./build.sh package (or packaging/package.sh arm64) first"
  done
  tap_ok "the arm64 packages $version are in dist/"

  local work
  make_temp_dir work board

  # Cold, the two builds overlap: the image's downloads and emulated
  # maintainer scripts leave room beside the kernel's make -j$(nproc).
  local rootfs_pid kernel_status=0 rootfs_status=0
  "$BOARD_DIR/build-board.sh" rootfs > "$work/rootfs.out" &
  rootfs_pid=$!
  on_exit "kill $rootfs_pid 2>/dev/null || true"
  "$BOARD_DIR/build-board.sh" kernel > "$work/kernel.out" || kernel_status=$?
  wait "$rootfs_pid" || rootfs_status=$?
  [ "$kernel_status" -eq 0 ] || bail "the board's kernel could not be built (tests/board/build-board.sh kernel: exit $kernel_status; its log is above)"
  KERNEL=$(sed -n 's/^KERNEL=//p' "$work/kernel.out")
  tap_ok "board kernel: $(sed -n 's/^package=//p' "$KERNEL/info") $(sed -n 's/^version=//p' "$KERNEL/info") for arm64 with tee-testdrv ($KERNEL)"
  [ "$rootfs_status" -eq 0 ] || bail "the board's root file system could not be built (tests/board/build-board.sh rootfs: exit $rootfs_status; its log is above)"
  ROOTFS=$(sed -n 's/^ROOTFS=//p' "$work/rootfs.out")
  tap_ok "board root file system: Debian bookworm arm64, $(wc -l < "$ROOTFS/packages") packages ($ROOTFS)"

  SHARE=$work/share
  DISK=$work/disk.qcow2
  mkdir -p "$SHARE/debs"
  cp "${debs[@]}" "$SHARE/debs/"
  cp "$ROOT/tests/lib/tap.sh" "$BOARD_DIR/install-test.sh" "$BOARD_DIR/board-player.c" \
    "$ROOT/src/Native/examples/rstmem-alloc.c" "$SHARE/"
  local max_exposure
  max_exposure=$(sed -n 's/^MAX_EXPOSURE=\([0-9.]*\)$/\1/p' "$ROOT/packaging/tests/unit-security.sh")
  [ -n "$max_exposure" ] || bail "no MAX_EXPOSURE=N in packaging/tests/unit-security.sh"
  printf 'MAX_EXPOSURE=%s\nVERSION=%s\nSIZE_1M=%s\n' "$max_exposure" "$version" $((1024 * 1024)) > "$SHARE/board.env"
  qemu-img create -q -f qcow2 -F raw -b "$ROOTFS/rootfs.ext4" "$DISK" || bail "qemu-img create of the overlay failed"

  boot install
  boot serve
  tap_finish board
}

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, mmdebstrap and binfmt_misc for the root file system)"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
# In a subshell, so that a bail leaves the TAP file complete and this shell prints it.
set +e
(set -e; main) > "$RESULTS/results.tap"
status=$?
set -e
cat "$RESULTS/results.tap"
exit "$status"
