#!/usr/bin/env bash
# rstmemd's systemd units, sysusers.d file and udev rules (systemd/) as
# Debian 12's systemd (252) reads them offline. TAP on stdout.
#
#   packaging/tests/unit-security.sh [ROOT]
#
# ROOT is an unpacked rstmemd package, for `systemd-analyze verify` (which
# checks that ExecStart= names an executable there); by default the
# build machine's dist/rstmemd_*.deb is unpacked. Exits non-zero when a check
# fails; the exposure score above MAX_EXPOSURE (2.0) is a failure.
set -uo pipefail

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
SYSTEMD=$ROOT/systemd
SERVICE=$SYSTEMD/rstmemd.service
SOCKET=$SYSTEMD/rstmemd.socket
SYSUSERS=$SYSTEMD/rstmemd.sysusers
RULES=$SYSTEMD/70-rstmemd.rules
MAX_EXPOSURE=2.0

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# shellcheck source=tests/lib/tap.sh
. "$ROOT/tests/lib/tap.sh"

# The value of KEY= in a unit file (the last assignment wins, as in systemd).
unit_value() { sed -n "s/^$2=//p" "$1" | tail -n 1; }

# ---- exposure ---------------------------------------------------------------
# systemd-analyze prints the level as 0.0-10.0; --threshold= takes it times ten.
threshold=$(awk -v m="$MAX_EXPOSURE" 'BEGIN { printf "%d", m * 10 }')
systemd-analyze security --offline=yes --threshold="$threshold" "$SERVICE" >"$TMP/security" 2>&1
status=$?
level=$(sed -n 's/.*Overall exposure level for rstmemd.service: \([0-9.]*\).*/\1/p' "$TMP/security")
if [ $status -eq 0 ] && [ -n "$level" ]; then
  tap_ok "systemd-analyze security: exposure $level <= $MAX_EXPOSURE"
  grep '✗' "$TMP/security" | sed 's/  */ /g' | tap_diag
else
  tap_not_ok "systemd-analyze security: exposure ${level:-unknown} > $MAX_EXPOSURE (exit $status)"
  tap_diag <"$TMP/security"
fi

# ---- what the daemon expects of its units (src/RstmemDaemon/Hosting) ----------
[ "$(unit_value "$SERVICE" Type)" = notify ] && [ "$(unit_value "$SERVICE" NotifyAccess)" = main ]
tap_check "service: Type=notify, NotifyAccess=main (DaemonLifetime sends READY=1 from the main process)" $?

listen=$(grep -c '^Listen[A-Za-z]*=' "$SOCKET")
[ "$listen" -eq 1 ] && [ -n "$(unit_value "$SOCKET" ListenSequentialPacket)" ]
tap_check "socket: exactly one listener, ListenSequentialPacket= (SocketActivation takes LISTEN_FDS=1, SOCK_SEQPACKET)" $?

grep -q '^Requires=rstmemd.socket$' "$SERVICE" && grep -q '^After=rstmemd.socket$' "$SERVICE"
tap_check "service: Requires= and After=rstmemd.socket (never started without its socket)" $?

# ---- one user, one group, named alike everywhere --------------------------------
# systemd-sysusers creates them in an empty root.
mkdir -p "$TMP/sysroot/etc"
if systemd-sysusers --root="$TMP/sysroot" "$SYSUSERS" >"$TMP/sysusers" 2>&1; then
  tap_ok "sysusers.d file applies (systemd-sysusers --root)"
else
  tap_not_ok "sysusers.d file applies (systemd-sysusers --root)"
  tap_diag <"$TMP/sysusers"
fi
user=$(unit_value "$SERVICE" User)
shell=$(awk -F: -v u="$user" '$1 == u { print $7 }' "$TMP/sysroot/etc/passwd" 2>/dev/null)
[ -n "$user" ] && [ "$shell" = /usr/sbin/nologin ]
tap_check "service: User=$user is a system user of the sysusers.d file, without a login shell" $?

group=$(unit_value "$SOCKET" SocketGroup)
[ -n "$group" ] && grep -q "^$group:" "$TMP/sysroot/etc/group" 2>/dev/null && [ "$(unit_value "$SOCKET" SocketMode)" = 0660 ]
tap_check "socket: SocketGroup=$group is a group of the sysusers.d file, SocketMode=0660" $?

grep -v '^[[:space:]]*\(#\|$\)' "$RULES" >"$TMP/rules"
owners=$(grep -o 'OWNER:*="[^"]*"' "$TMP/rules" | sed 's/.*"\(.*\)"/\1/' | sort -u)
[ "$owners" = "$user" ] && [ "$(grep -c 'OWNER:*=' "$TMP/rules")" -eq 2 ] && ! grep -q 'GROUP\|MODE' "$TMP/rules"
tap_check "udev rules: the TEE and DMA-heap nodes get OWNER $user, no GROUP or MODE" $?

# /dev/teeprivN is tee-supplicant's: the rule's pattern must not match it.
pattern=$(sed -n 's/.*SUBSYSTEM=="tee".*KERNEL=="\([^"]*\)".*/\1/p' "$RULES")
matches() { case $2 in $1) return 0 ;; esac; return 1; }
[ -n "$pattern" ] && matches "$pattern" tee0 && matches "$pattern" tee12 && ! matches "$pattern" teepriv0
tap_check "udev rules: KERNEL==\"$pattern\" takes tee0 and tee12, not teepriv0" $?

# ---- systemd-analyze verify -------------------------------------------------
# In a root holding the host's units (sysinit.target, modprobe@.service, ...)
# and the package: warnings go to stderr and leave the exit status at 0, so
# any output fails.
package_root=${1:-}
if [ -z "$package_root" ]; then
  deb=$(ls "$ROOT"/dist/rstmemd_*_"$(dpkg --print-architecture)".deb 2>/dev/null | tail -n 1)
  if [ -n "$deb" ]; then
    package_root=$TMP/package
    dpkg-deb -x "$deb" "$package_root"
  fi
fi
if [ -z "$package_root" ] || [ ! -f "$package_root/lib/systemd/system/rstmemd.service" ]; then
  tap_not_ok "systemd-analyze verify: no unpacked rstmemd package (build it with packaging/package.sh, or pass its root)"
else
  mkdir -p "$TMP/verify/lib/systemd/system"
  cp -a /lib/systemd/system/. "$TMP/verify/lib/systemd/system/"
  cp -a "$package_root/." "$TMP/verify/"
  for unit in rstmemd.socket rstmemd.service; do
    cmp -s "$package_root/lib/systemd/system/$unit" "$SYSTEMD/$unit" || echo "the package's $unit differs from systemd/$unit" >>"$TMP/verify.out"
  done
  systemd-analyze verify --man=no --root="$TMP/verify" rstmemd.socket rstmemd.service >>"$TMP/verify.out" 2>&1
  status=$?
  if [ $status -eq 0 ] && [ ! -s "$TMP/verify.out" ]; then
    tap_ok "systemd-analyze verify rstmemd.socket rstmemd.service: no complaint"
  else
    tap_not_ok "systemd-analyze verify rstmemd.socket rstmemd.service (exit $status)"
    tap_diag <"$TMP/verify.out"
  fi
fi

tap_finish unit-security
