#!/usr/bin/env bash
# Boots a test kernel under qemu (TCG), runs one command inside it in the
# host's own root filesystem, and hands back its output and exit status.
#
#   tests/kernel/run-guest.sh BZIMAGE [options] -- COMMAND [ARGS...]
#
#   --mem SIZE        guest memory (qemu -m), default 2G
#   --timeout SEC     limit for the whole boot, run and shutdown, default 300
#   --append ARGS     extra kernel command line, e.g. 'cma=64M'
#   --env NAME=VALUE  set a variable for COMMAND (repeatable)
#   --console         copy the guest's kernel console to stderr afterwards
#
# Inside: an initramfs from busybox-static mounts the host's / read-only over
# virtio-9p, mounts proc, sysfs, devtmpfs and tmpfs on /tmp, /run and
# /dev/shm inside it (the caller's current directory and the test kernel
# cache stay the host's, read-only, when they lie under /tmp or /run),
# chroots there, cds to the caller's current directory and runs COMMAND as root with stdin from /dev/null, PATH from the
# caller, HOME and DOTNET_CLI_HOME in the guest's /tmp. Only the tmpfs
# directories are writable: everything else is the host, read-only.
#
# COMMAND's stdout and stderr come back on two virtio serial ports, streamed to
# this script's stdout and stderr; the kernel's console goes to a log of its
# own, so printk never mixes into them. The exit status comes back in a file
# on a second, writable 9p share. This script exits with COMMAND's status, or
# with 125 and a message (and the console's tail) when the guest never
# reported one: qemu missing or failing, a kernel panic, or the timeout.
# It always ends: `timeout` around qemu, and -no-reboot, which turns both
# panic=-1 and the `reboot -f` at the end of /init into qemu exiting.
#
# The initramfs is cached in ${RSTMEM_TESTKERNEL_CACHE:-~/.cache/rstmemd/testkernel}
# by a hash of /init and the busybox binary.
set -euo pipefail

HERE=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
CACHE=${RSTMEM_TESTKERNEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rstmemd/testkernel}
NO_REPORT=125
# shellcheck source=tests/lib/common.sh
. "$HERE/../lib/common.sh"
LOG_PREFIX=run-guest
DIE_STATUS=$NO_REPORT
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "$NO_REPORT"; }

[ $# -ge 1 ] || usage
KERNEL=$1
shift
MEM=2G
TIMEOUT=300
APPEND=
CONSOLE=0
GUEST_ENV=()
while [ $# -gt 0 ]; do
  case "$1" in
    --mem) MEM=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --append) APPEND=$2; shift 2 ;;
    --env) [[ "$2" == [A-Za-z_]*=* ]] || die "--env wants NAME=VALUE, got '$2'"; GUEST_ENV+=("$2"); shift 2 ;;
    --console) CONSOLE=1; shift ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[ $# -ge 1 ] || usage
[ -f "$KERNEL" ] || die "no kernel image at '$KERNEL' (build one with tests/kernel/build-kernel.sh)"

ensure_debian_packages qemu-system-x86 busybox-static cpio gzip
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not on PATH although qemu-system-x86 is installed"
[ -x /bin/busybox ] || die "/bin/busybox is missing although busybox-static is installed"
# The initramfs needs a /dev/console node, and 9p with security_model=none
# shows the guest the files as the user running qemu sees them.
[ "$(id -u)" -eq 0 ] || die "run-guest.sh must run as root (it builds device nodes and exports / to the guest)"

# --- /init of the initramfs. Output of its own goes to the console (ttyS0).
read -r -d '' INIT <<'INIT_EOF' || true
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

report() {
	[ -d /xfer/result ] && echo "$1" > /xfer/result/status
	sync
	echo "RSTMEM_GUEST_EXIT=$1"
	reboot -f
	sleep 10
}
fail() { echo "rstmem-guest: $*"; report 125; }

mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xfer /xfer || fail "cannot mount the xfer share"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro host /newroot || fail "cannot mount the host root"
R=/newroot
mount -t proc proc $R/proc && mount -t sysfs sysfs $R/sys && mount -t devtmpfs devtmpfs $R/dev || fail "cannot mount proc, sysfs, devtmpfs"
mkdir -p $R/dev/shm $R/dev/pts
# The caller's directory and the test kernel cache (/xfer/keep, one a line)
# may lie where a tmpfs below goes (a CI clone in /tmp, XDG_CACHE_HOME under
# /tmp): keep the host's copies aside and bind them back on top.
n=0
: > /kept
while IFS= read -r dir; do
	case "$dir" in
	/tmp/*|/run/*)
		n=$((n + 1))
		mkdir -p /keep$n && mount -o bind "$R$dir" /keep$n || fail "cannot keep $dir"
		echo "$n $dir" >> /kept ;;
	esac
done < /xfer/keep
for d in /tmp /run /dev/shm; do
	[ -d $R$d ] && { mount -t tmpfs -o mode=1777 tmpfs $R$d || fail "cannot mount tmpfs on $d"; }
done
while read -r n dir; do
	mkdir -p "$R$dir" && mount -o bind /keep$n "$R$dir" || fail "cannot bind $dir back over the tmpfs"
done < /kept
mkdir -p $R/run/rstmem-guest && mount -o bind /xfer $R/run/rstmem-guest || fail "cannot bind the xfer share"

# The virtio serial ports carry the command's stdout and stderr (names from qemu).
for port in /sys/class/virtio-ports/*; do
	case "$(cat $port/name)" in
	rstmem.stdout) out=/dev/${port##*/} ;;
	rstmem.stderr) err=/dev/${port##*/} ;;
	esac
done
[ -n "$out" ] && [ -n "$err" ] || fail "no rstmem.stdout/rstmem.stderr virtio ports"

read -r up _ < /proc/uptime
echo "$up" > /xfer/result/start-uptime
chroot $R /bin/sh /run/rstmem-guest/command < /dev/null > "$out" 2> "$err"
rc=$?
read -r up _ < /proc/uptime
echo "$up" > /xfer/result/end-uptime
report $rc
INIT_EOF

build_initramfs() {
  local key out staging
  key=$( { printf '%s' "$INIT"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
  out=$CACHE/initramfs-$key.cpio.gz
  if [ ! -f "$out" ]; then
    mkdir -p "$CACHE"
    make_temp_dir staging initramfs
    on_exit "rm -f $(shell_quote "$out.tmp.$$")"
    mkdir -p "$staging"/{bin,dev,proc,sys,newroot,xfer}
    cp /bin/busybox "$staging/bin/busybox"
    printf '%s\n' "$INIT" > "$staging/init"
    chmod 755 "$staging/init"
    mknod -m 600 "$staging/dev/console" c 5 1
    mknod -m 666 "$staging/dev/null" c 1 3
    (cd "$staging" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0 | gzip -9) > "$out.tmp.$$"
    mv "$out.tmp.$$" "$out"
  fi
  INITRAMFS=$out
}
build_initramfs

# --- The command, as a script the guest's /bin/sh runs inside the chroot.

make_temp_dir WORK guest
READERS=()
stop_readers() {
  # A reader still blocked in open() (qemu never opened its end) gets EOF.
  local fifo
  for fifo in "$WORK/stdout" "$WORK/stderr"; do
    [ -p "$fifo" ] && { exec 7<>"$fifo"; exec 7>&-; }
  done
  [ ${#READERS[@]} -gt 0 ] && wait "${READERS[@]}" 2>/dev/null
}
# Runs before WORK is removed (registered after it).
on_exit stop_readers

mkdir -p "$WORK/xfer/result"
printf '%s\n' "$PWD" "$CACHE" > "$WORK/xfer/keep"
{
  echo "# generated by tests/kernel/run-guest.sh"
  echo "export PATH=$(shell_quote "$PATH")"
  echo "export HOME=/tmp/home DOTNET_CLI_HOME=/tmp/home TMPDIR=/tmp LANG=C.UTF-8 TERM=dumb"
  echo "export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1"
  for assignment in "${GUEST_ENV[@]}"; do echo "export ${assignment%%=*}=$(shell_quote "${assignment#*=}")"; done
  echo 'mkdir -p "$HOME"'
  echo "cd $(shell_quote "$PWD") || { echo $(shell_quote "run-guest: cannot cd to $PWD inside the guest (under a tmpfs there?)") >&2; exit $NO_REPORT; }"
  printf 'exec'
  for arg in "$@"; do printf ' %s' "$(shell_quote "$arg")"; done
  printf '\n'
} > "$WORK/xfer/command"

mkfifo "$WORK/stdout" "$WORK/stderr"
cat "$WORK/stdout" &
READERS+=($!)
cat "$WORK/stderr" >&2 &
READERS+=($!)

# Two sockets of one CPU each: the test kernels have no ACPI and find their
# CPUs in SeaBIOS's MP table, which lists only the first CPU of each package
# (with plain -smp 2, one package of two cores, the guest would see one CPU).
start=$(date +%s.%N)
set +e
timeout --kill-after=10 "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg -cpu max -smp 2,sockets=2,cores=1,threads=1 -m "$MEM" \
  -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$KERNEL" -initrd "$INITRAMFS" \
  -append "console=ttyS0 loglevel=7 panic=-1 rdinit=/init $APPEND" \
  -chardev file,id=console,path="$WORK/console.log" -serial chardev:console \
  -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$WORK/xfer",mount_tag=xfer,security_model=none \
  -device virtio-serial-pci \
  -chardev file,id=stdout,path="$WORK/stdout" -device virtserialport,chardev=stdout,name=rstmem.stdout \
  -chardev file,id=stderr,path="$WORK/stderr" -device virtserialport,chardev=stderr,name=rstmem.stderr \
  </dev/null >"$WORK/qemu.log" 2>&1
qemu_status=$?
set -e
end=$(date +%s.%N)

# Let the readers drain what qemu wrote, then let go of the fifos.
for fifo in "$WORK/stdout" "$WORK/stderr"; do exec 7<>"$fifo"; exec 7>&-; done
wait "${READERS[@]}" 2>/dev/null || true
READERS=()

[ "$CONSOLE" -eq 1 ] && { log "guest console:"; cat "$WORK/console.log" >&2 || true; }

elapsed=$(printf '%.1f' "$(echo "$end - $start" | bc)")
status=$(cat "$WORK/xfer/result/status" 2>/dev/null || true)
if ! [[ "$status" =~ ^[0-9]+$ ]]; then
  case "$qemu_status" in
    124|137) reason="the guest did not finish within ${TIMEOUT}s" ;;
    0) reason="the guest powered off without reporting (kernel panic or broken /init?)" ;;
    *) reason="qemu exited with status $qemu_status" ;;
  esac
  log "qemu: $(tail -n 5 "$WORK/qemu.log" | tr '\n' ' ')"
  log "guest console (last 30 lines):"
  tail -n 30 "$WORK/console.log" >&2 2>/dev/null || true
  die "no exit status from the guest after ${elapsed}s: $reason ($(basename "$KERNEL" ) at $KERNEL)"
fi

boot=$(cat "$WORK/xfer/result/start-uptime" 2>/dev/null || echo '?')
ran=$(echo "$(cat "$WORK/xfer/result/end-uptime" 2>/dev/null || echo 0) - ${boot/\?/0}" | bc)
log "$(printf 'exit %s; qemu %ss in all (guest booted in %ss, command ran %ss)' "$status" "$elapsed" "$boot" "$ran")"
exit "$status"
