#!/usr/bin/env bash
# The packages installed on a booted Debian 12 under systemd: a throw-away
# copy of this machine's root (overlayfs over /, changes kept in a tmpfs and
# dropped at the end) booted by systemd-nspawn, where dpkg installs them,
# socket activation starts the hardened rstmemd.service, clients connect, and
# dpkg purges them again. TAP on stdout.
#
#   packaging/tests/install-boot.sh [DEB...]     (default: dist/*_<this machine's arch>.deb)
#
# Needs root (overlayfs, nspawn); systemd-container and udev are installed
# with apt-get when missing. Without root it says SKIP and exits 0.
set -uo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
ARCH=$(dpkg --print-architecture)
VERSION=$(dpkg-parsechangelog -l "$ROOT/packaging/debian/changelog" -S Version)
SOCKET=/run/rstmemd/rstmemd.sock

if [ "$(id -u)" -ne 0 ]; then
  echo "1..0 # SKIP needs root: overlayfs and systemd-nspawn"
  exit 0
fi
debs=("$@")
[ ${#debs[@]} -gt 0 ] || debs=("$ROOT/dist/rstmemd_${VERSION}_$ARCH.deb" "$ROOT/dist/librstmem1_${VERSION}_$ARCH.deb" "$ROOT/dist/librstmem-dev_${VERSION}_$ARCH.deb")
for deb in "${debs[@]}"; do
  [ -f "$deb" ] || { echo "install-boot.sh: $deb does not exist (packaging/package.sh builds it)" >&2; exit 1; }
done

missing=()
for package in systemd-container udev; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "# installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "install-boot.sh: cannot install ${missing[*]}" >&2; exit 1; }
fi

TMP=$(mktemp -d)
machine=
nspawn_pid=
cleanup() {
  if [ -n "$machine" ]; then
    nsenter -t "$machine" -a -- systemctl poweroff >/dev/null 2>&1 || kill "$nspawn_pid" 2>/dev/null
    wait "$nspawn_pid" 2>/dev/null
  fi
  umount "$TMP/root" 2>/dev/null
  umount "$TMP/changes" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"
finish() { tap_finish install-boot; exit; }
# A command inside the booted container.
inside() { nsenter -t "$machine" -a -- "$@"; }

# ---- the throw-away root ----------------------------------------------------------
mkdir -p "$TMP/changes" "$TMP/root"
mount -t tmpfs -o size=2g tmpfs "$TMP/changes" && mkdir -p "$TMP/changes/upper" "$TMP/changes/work" &&
  mount -t overlay overlay -o "lowerdir=/,upperdir=$TMP/changes/upper,workdir=$TMP/changes/work" "$TMP/root"
tap_check "a copy-on-write root: overlayfs over / with its changes in a tmpfs" $?
[ "$TAP_FAILED" -eq 0 ] || finish
# A machine of its own: its own id, and dpkg allowed to start services (a
# container image's policy-rc.d forbids it; a board has none).
systemd-id128 new >"$TMP/root/etc/machine-id"
rm -f "$TMP/root/usr/sbin/policy-rc.d"
mkdir -p "$TMP/root/root/debs"
cp "${debs[@]}" "$TMP/root/root/debs/"

# basic.target: sockets and sysinit, not the host's other services.
systemd-nspawn -D "$TMP/root" --register=no --keep-unit --machine=rstmemd-test --boot -- systemd.unit=basic.target \
  >"$TMP/console" 2>&1 &
nspawn_pid=$!
# The container's init: a systemd below systemd-nspawn that is pid 1 in its namespace.
container_init() {
  local pid parent
  for pid in $(pgrep -x systemd); do
    parent=$(ps -o ppid= -p "$pid" | tr -d ' ')
    [ "$parent" = "$nspawn_pid" ] || [ "$(ps -o ppid= -p "$parent" 2>/dev/null | tr -d ' ')" = "$nspawn_pid" ] || continue
    grep -q '^NSpid:.*[[:space:]]1$' "/proc/$pid/status" && echo "$pid" && return
  done
}
for _ in $(seq 1 600); do
  machine=$(container_init)
  [ -n "$machine" ] || ! kill -0 "$nspawn_pid" 2>/dev/null && break
  sleep 0.1
done
# is-system-running --wait waits for the boot to finish, once the manager answers at all.
state=
for _ in $(seq 1 600); do
  [ -n "$machine" ] || break
  state=$(inside systemctl is-system-running --wait 2>/dev/null)
  [ -z "$state" ] || [ "$state" = offline ] || break
  sleep 0.1
done
[ "$state" = running ] || [ "$state" = degraded ]
tap_check "systemd-nspawn boots it to basic.target (system state: ${state:-no systemd})" $?
[ "$TAP_FAILED" -eq 0 ] || { tail -n 20 "$TMP/console" | tap_diag; finish; }

# ---- install ------------------------------------------------------------------------
inside sh -c 'dpkg -i /root/debs/*.deb' >"$TMP/dpkg" 2>&1
status=$?
tap_check "dpkg -i ${debs[*]##*/}" $status
[ $status -eq 0 ] || { tap_diag <"$TMP/dpkg"; finish; }

# This container has no restricted-memory device, and the shipped configuration
# says Backend=real (a board's service must not fall back to the model): a
# drop-in, as an administrator would write one, lets the installed service run
# on the model here. RSTMEMD_* variables override the configuration file.
inside mkdir -p /etc/systemd/system/rstmemd.service.d &&
  printf '[Service]\nEnvironment=RSTMEMD_BACKEND=model\n' | inside tee /etc/systemd/system/rstmemd.service.d/model.conf >/dev/null &&
  inside systemctl daemon-reload
tap_check "a drop-in selects the model backend in this device-less container" $?

[ "$(inside getent passwd rstmemd | cut -d: -f7)" = /usr/sbin/nologin ] && inside getent group rstmem >/dev/null
tap_check "postinst: system user rstmemd (nologin) and group rstmem exist" $?

[ "$(inside systemctl is-enabled rstmemd.socket)" = enabled ] && [ "$(inside systemctl is-active rstmemd.socket)" = active ] &&
  [ "$(inside systemctl is-active rstmemd.service)" = inactive ]
tap_check "postinst: rstmemd.socket enabled and listening, rstmemd.service not started yet" $?

[ "$(inside stat -c '%U:%G %a %F' "$SOCKET")" = "root:rstmem 660 socket" ]
tap_check "$SOCKET is root:rstmem, mode 660" $?

inside useradd -M -G rstmem member && inside useradd -M outsider
as() { local user=$1; shift; inside setpriv --reuid="$user" --regid="$user" --init-groups env RSTMEMD_SOCKET="$SOCKET" "$@"; }

as member rstmemd heaps >"$TMP/heaps" 2>&1 && grep -q '^rstmemd ' "$TMP/heaps"
status=$?
tap_check "a member of rstmem lists the heaps: the socket starts rstmemd.service" $status
[ $status -eq 0 ] || tap_diag <"$TMP/heaps"

[ "$(inside systemctl is-active rstmemd.service)" = active ] &&
  [[ "$(inside systemctl show -P StatusText rstmemd.service)" == *"listening on (socket activation)"* ]]
tap_check "rstmemd.service is active and said READY=1 with its status (Type=notify): $(inside systemctl show -P StatusText rstmemd.service)" $?

pid=$(inside systemctl show -P MainPID rstmemd.service)
inside cat "/proc/$pid/status" >"$TMP/status"
field() { sed -n "s/^$1:[[:space:]]*//p" "$TMP/status"; }
uid=$(inside id -u rstmemd)
[ "$(field Uid)" = "$uid	$uid	$uid	$uid" ] && [ "$(field CapEff)" = 0000000000000000 ] && [ "$(field CapBnd)" = 0000000000000000 ] &&
  [ "$(field NoNewPrivs)" = 1 ] && [ "$(field Seccomp)" = 2 ]
status=$?
tap_check "the daemon runs as rstmemd with no capabilities (effective, bounding), NoNewPrivs, a seccomp filter" $status
[ $status -eq 0 ] || grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' "$TMP/status" | tap_diag

inside cat "/proc/$pid/mountinfo" >"$TMP/mountinfo"
mount_options() { awk -v m="$1" '$5 == m { print $6 }' "$TMP/mountinfo" | tail -n 1; }
super_options() { awk -v m="$1" '$5 == m { for (i = 7; $i != "-"; i++); print $(i + 3) }' "$TMP/mountinfo" | tail -n 1; }
[[ "$(mount_options /)" == ro,* ]] && [[ "$(mount_options /dev)" == ro,* ]] && [[ "$(mount_options /run)" == ro,* ]] &&
  [[ "$(super_options /proc)" == *hidepid=invisible*subset=pid* ]]
status=$?
tap_check "in its mount namespace /, /dev and /run are read-only and /proc is hidepid=invisible,subset=pid" $status
[ $status -eq 0 ] || echo "/ $(mount_options /); /dev $(mount_options /dev); /run $(mount_options /run); /proc $(super_options /proc)" | tap_diag

as member rstmemd alloc --use-case secure-video --size 1M >"$TMP/alloc" 2>&1 && grep -q 'lseek(fd, 0, SEEK_END) = 1048576' "$TMP/alloc"
status=$?
tap_check "a member of rstmem allocates 1 MiB of secure-video through the service" $status
[ $status -eq 0 ] || { tap_diag <"$TMP/alloc"; inside journalctl -u rstmemd.service -o cat --no-pager | grep -v '^   at ' | tail -n 6 | tap_diag; }

as outsider rstmemd heaps >"$TMP/outsider" 2>&1
[ $? -ne 0 ] && grep -q EACCES "$TMP/outsider"
tap_check "a user outside rstmem is refused (EACCES on the socket)" $?

# udev loads the rules and resolves OWNER:="rstmemd" (an unknown user would be logged and ignored).
inside udevadm test /sys/class/mem/null >"$TMP/udev" 2>&1
grep -q 'Reading rules file: .*/70-rstmemd.rules' "$TMP/udev" && ! grep '70-rstmemd.rules:' "$TMP/udev" | grep -q .
status=$?
tap_check "udevadm test reads 70-rstmemd.rules without a complaint" $status
[ $status -eq 0 ] || grep '70-rstmemd' "$TMP/udev" | tap_diag

# The upgrade path: postinst configure with the old version restarts the socket and a running service.
inside sh -c 'dpkg -i /root/debs/*.deb' >"$TMP/reinstall" 2>&1 && [ "$(inside systemctl is-active rstmemd.socket)" = active ] &&
  as member rstmemd stats >/dev/null 2>&1 && [ "$(inside systemctl show -P MainPID rstmemd.service)" != "$pid" ]
status=$?
tap_check "dpkg -i again (upgrade): the socket listens, the service was restarted and answers" $status
[ $status -eq 0 ] || tap_diag <"$TMP/reinstall"

inside systemctl stop rstmemd.service 2>/dev/null # it warns that the socket can start it again
[ "$(inside systemctl show -P Result rstmemd.service)" = success ] && [ "$(inside systemctl show -P ExecMainStatus rstmemd.service)" = 0 ]
tap_check "systemctl stop: SIGTERM, the daemon exits 0" $?

# ---- purge ----------------------------------------------------------------------------
inside dpkg --purge rstmemd librstmem-dev librstmem1 >"$TMP/purge" 2>&1
status=$?
tap_check "dpkg --purge rstmemd librstmem-dev librstmem1" $status
[ $status -eq 0 ] || tap_diag <"$TMP/purge"
! inside test -e /etc/rstmemd && ! inside test -e /lib/systemd/system/rstmemd.socket && ! inside test -e "$SOCKET" &&
  ! inside test -e /etc/systemd/system/sockets.target.wants/rstmemd.socket && [ "$(inside systemctl is-active rstmemd.socket)" != active ]
tap_check "after purge: socket stopped and gone, unit links and /etc/rstmemd removed" $?

finish
