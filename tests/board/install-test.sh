#!/usr/bin/env bash
# The install test, on the board (run by tests/board/board-test.sh through
# the board's job runner, from the virtio-9p share, as root, cwd = the share).
#
#   install-test.sh install   first boot: apt install the arm64 packages from debs/
#   install-test.sh serve     second boot of the same disk: socket activation,
#                             the daemon's user, systemd-analyze security, a
#                             player in group rstmem (librstmem example built
#                             with pkg-config, board-player.c, rstmemd alloc),
#                             an outsider refused, the journal, STATS, restart,
#                             then apt purge
#
# TAP lines (tests/lib/tap.sh, copied into the share) on stdout, to
# out/<phase>.tap; the host renumbers them into build/board/results.tap. Each
# phase ends by printing "# phase <name> complete": the host fails a phase
# that did not get there. MAX_EXPOSURE comes from the host
# (packaging/tests/unit-security.sh's bound).
set -uo pipefail
PHASE=${1:?usage: install-test.sh install|serve}
SHARE=$PWD
# shellcheck source=tests/lib/tap.sh
. "$SHARE/tap.sh"
# shellcheck source=/dev/null
. "$SHARE/board.env"   # MAX_EXPOSURE, VERSION, SIZE_1M

SOCKET=/run/rstmemd/rstmemd.sock
PLAYER=player          # in rstmem (and teeclnt, the board's TEE client group)
OUTSIDER=outsider      # in neither
WORK=/var/tmp/board-test

# as USER COMMAND...: COMMAND as USER, in USER's home, no XDG_RUNTIME_DIR.
as() { local user=$1; shift; (cd "/home/$user" && runuser -u "$user" -- "$@"); }

# diag_cmd COMMAND...: the command's output as TAP diagnostics.
diag_cmd() { "$@" 2>&1 | tap_diag; }

# json_number JSON KEY: the first "KEY":<number> in JSON.
json_number() { printf '%s' "$1" | grep -o "\"$2\":[0-9-]*" | head -n 1 | cut -d: -f2; }

# heap_live_bytes HEAP: that heap's LiveBytes in `rstmemd stats --json` (STATS,
# docs/protocol.md), asked as the player: its own buffers are what it sees
# whether STATS is private to the caller or not.
heap_live_bytes() {
  as "$PLAYER" rstmemd stats --json 2>/dev/null | tr '{' '\n' | grep -F "\"Name\":\"$1\"" | grep -o '"LiveBytes":[0-9]*' | head -n 1 | cut -d: -f2
}

# multi_user_reached: when the boot reached multi-user.target (systemd-analyze
# time waits for the whole boot, which includes this job).
multi_user_reached() {
  local usec
  usec=$(systemctl show -P ActiveEnterTimestampMonotonic multi-user.target)
  printf 'multi-user.target reached %s s after the kernel started\n' "$(awk -v u="$usec" 'BEGIN { printf "%.1f", u / 1e6 }')"
}

# main_pid: rstmemd.service's main process, 0 when not running.
main_pid() { systemctl show -p MainPID --value rstmemd.service; }

phase_install() {
  local debs=() package state
  for package in rstmemd librstmem1 librstmem-dev; do
    debs+=("$WORK/debs/${package}_${VERSION}_arm64.deb")
  done
  # apt reads the files as its sandbox user _apt: a local copy, not the 9p share.
  rm -rf "$WORK"
  mkdir -p "$WORK/debs"
  cp debs/*.deb "$WORK/debs/"
  chmod -R a+rX "$WORK"
  tap_diag <<<"board: $(uname -srm); $(. /etc/os-release && echo "$PRETTY_NAME"); systemd $(systemctl --version | head -n 1 | cut -d' ' -f2)"
  multi_user_reached | tap_diag
  local init
  init=$(readlink /proc/1/exe)
  [ "$init" = /usr/lib/systemd/systemd ] && [ "$(systemctl is-system-running 2>&1)" != offline ] \
    && tap_ok "PID 1 is systemd ($init), system state $(systemctl is-system-running 2>&1)" \
    || tap_not_ok "PID 1 is '$init', expected /usr/lib/systemd/systemd"

  apt install -y "${debs[@]}" > "$WORK/apt.log" 2>&1
  local status=$?
  if [ "$status" -eq 0 ]; then
    tap_ok "apt install ./rstmemd ./librstmem1 ./librstmem-dev ($VERSION, arm64) from dist/"
  else
    tap_not_ok "apt install of the arm64 packages: exit $status" "$(tail -n 30 "$WORK/apt.log")"
  fi
  for package in rstmemd librstmem1 librstmem-dev; do
    state=$(dpkg-query -W -f='${Status} ${Version} ${Architecture}' "$package" 2>&1)
    [ "$state" = "install ok installed $VERSION arm64" ] && tap_ok "$package: $state" \
      || tap_not_ok "$package: dpkg says '$state', expected 'install ok installed $VERSION arm64'"
  done
  state=$(systemctl is-enabled rstmemd.socket 2>&1)
  [ "$state" = enabled ] && tap_ok "rstmemd.socket is enabled by the package" \
    || tap_not_ok "rstmemd.socket is '$state' after install, expected enabled"
  getent passwd rstmemd >/dev/null && getent group rstmem >/dev/null \
    && tap_ok "sysusers: the user rstmemd and the group rstmem exist" \
    || tap_not_ok "sysusers: user rstmemd '$(getent passwd rstmemd)', group rstmem '$(getent group rstmem)'"

  useradd --create-home --groups rstmem,teeclnt "$PLAYER" && useradd --create-home "$OUTSIDER" \
    && tap_ok "users: $PLAYER in rstmem and teeclnt, $OUTSIDER in neither" \
    || tap_not_ok "useradd $PLAYER / $OUTSIDER failed"
}

phase_serve() {
  local out status pid state
  mkdir -p "$WORK"
  multi_user_reached | sed 's/^/second boot: /' | tap_diag
  systemctl --failed --no-legend 2>&1 | tap_diag

  # --- Socket activation, after a boot.
  state=$(systemctl is-active rstmemd.socket)
  [ "$state" = active ] && [ -S "$SOCKET" ] && tap_ok "after boot rstmemd.socket is listening on $SOCKET" \
    || tap_not_ok "after boot rstmemd.socket is '$state', $SOCKET $( [ -S "$SOCKET" ] && echo exists || echo 'is missing')"
  out=$(stat -c '%U:%G %a' "$SOCKET" 2>&1)
  [ "$out" = "root:rstmem 660" ] && tap_ok "$SOCKET is root:rstmem 0660" \
    || tap_not_ok "$SOCKET is '$out', expected root:rstmem 660"
  state=$(systemctl is-active rstmemd.service)
  [ "$state" = inactive ] && tap_ok "rstmemd.service is not started before the first connection" \
    || tap_not_ok "rstmemd.service is '$state' before any connection, expected inactive"
  for node in /dev/tee0 /dev/dma_heap/protected,secure-video; do
    out=$(stat -c '%U' "$node" 2>&1)
    [ "$out" = rstmemd ] && tap_ok "udev: $node belongs to rstmemd" || tap_not_ok "udev: $node belongs to '$out', expected rstmemd"
  done

  out=$(as "$PLAYER" rstmemd heaps --json 2>&1)
  status=$?
  printf '%s\n' "$out" | tap_diag
  [ "$status" -eq 0 ] && tap_ok "first connection ($PLAYER: rstmemd heaps) answered" || tap_not_ok "rstmemd heaps as $PLAYER: exit $status"
  for heap in protected,secure-video protected,trusted-ui protected,secure-video-record; do
    printf '%s' "$out" | grep -qF "\"Name\":\"$heap\"" && tap_ok "the daemon serves the kernel's $heap" \
      || tap_not_ok "heaps does not list $heap"
  done
  state=$(systemctl is-active rstmemd.service)
  pid=$(main_pid)
  [ "$state" = active ] && [ "$pid" -gt 0 ] && tap_ok "the first connection started rstmemd.service (pid $pid)" \
    || tap_not_ok "after the first connection rstmemd.service is '$state' (MainPID $pid)"
  out=$(ps -o user= -p "$pid" 2>&1)
  [ "$out" = rstmemd ] && tap_ok "rstmemd.service runs as the user rstmemd" || tap_not_ok "rstmemd.service runs as '$out', expected rstmemd"
  out=$(systemctl show -p StatusText --value rstmemd.service)
  tap_diag <<<"StatusText: $out"
  journalctl -u rstmemd.service -o cat --no-pager 2>&1 | head -n 5 | tap_diag
  journalctl -u rstmemd.service -o cat --no-pager | grep -q 'generation mainline' \
    && tap_ok "backend auto found the mainline TEE heaps (journal: generation mainline)" \
    || tap_not_ok "the journal does not say the daemon detected generation mainline"

  # --- The unit's sandbox as this board's systemd rates it.
  out=$(systemd-analyze security rstmemd.service 2>&1)
  local level
  level=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for rstmemd.service: \([0-9.]*\).*/\1/p')
  printf '%s\n' "$out" | grep -E '^(→|✗)|Overall' | tap_diag
  if [ -n "$level" ] && awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l <= m) }'; then
    tap_ok "systemd-analyze security rstmemd.service on the board: exposure $level <= $MAX_EXPOSURE"
  else
    tap_not_ok "systemd-analyze security rstmemd.service: exposure '${level:-none}', expected <= $MAX_EXPOSURE" "$(printf '%s\n' "$out" | tail -n 5)"
  fi

  # --- A player in group rstmem: the example, built with pkg-config on the board.
  install -o "$PLAYER" -m 0644 rstmem-alloc.c board-player.c "/home/$PLAYER/"
  out=$(as "$PLAYER" sh -c 'cc -Wall -o rstmem-alloc rstmem-alloc.c $(pkg-config --cflags --libs rstmem) && cc -Wall -o board-player board-player.c $(pkg-config --cflags --libs rstmem)' 2>&1)
  status=$?
  [ "$status" -eq 0 ] && tap_ok "$PLAYER builds examples/rstmem-alloc.c and board-player.c with pkg-config rstmem" \
    || tap_not_ok "building with pkg-config rstmem as $PLAYER: exit $status" "$out"
  tap_diag <<<"pkg-config --cflags --libs rstmem: $(pkg-config --cflags --libs rstmem 2>&1)"

  # librstmem's default socket for a non-root caller is $XDG_RUNTIME_DIR's, so name the system one.
  out=$(as "$PLAYER" ./rstmem-alloc --socket "$SOCKET" --use-case secure-video "$SIZE_1M" 2>&1)
  status=$?
  printf '%s\n' "$out" | tap_diag
  [ "$status" -eq 0 ] && printf '%s\n' "$out" | grep -q "^buffer [0-9]* from protected,secure-video: size $SIZE_1M, lseek(SEEK_END) $SIZE_1M" \
    && tap_ok "rstmem-alloc: $PLAYER gets a $SIZE_1M-byte protected,secure-video buffer" \
    || tap_not_ok "rstmem-alloc: exit $status, no $SIZE_1M-byte buffer from protected,secure-video"
  [ "$status" -eq 0 ] && printf '%s\n' "$out" | grep -q '^tee /dev/tee0: shm id [0-9]*, size '"$SIZE_1M" \
    && tap_ok "rstmem-alloc: registered with /dev/tee0 (TEE_IOC_SHM_REGISTER_FD)" \
    || tap_not_ok "rstmem-alloc: no TEE registration of the buffer on /dev/tee0"

  out=$(as "$PLAYER" rstmemd alloc --use-case secure-video --size 1M --json 2>&1)
  status=$?
  printf '%s\n' "$out" | tap_diag
  [ "$status" -eq 0 ] && [ "$(json_number "$out" lseek_size)" = "$SIZE_1M" ] \
    && printf '%s' "$out" | grep -q '"heap":"protected,secure-video"' \
    && tap_ok "rstmemd alloc --use-case secure-video --size 1M as $PLAYER: $SIZE_1M bytes from protected,secure-video" \
    || tap_not_ok "rstmemd alloc --use-case secure-video --size 1M as $PLAYER: exit $status"

  # --- The buffers of rstmem-alloc and rstmemd alloc, whose processes are gone,
  # return: on Linux 7.x the daemon sees a last close by reading fdinfo counts
  # (dma-bufs send no inotify events), so poll STATS, with a bound to give up at.
  local before held after fifo player_out player_pid i
  for ((i = 0; i < 300; i++)); do before=$(heap_live_bytes protected,secure-video); [ "$before" = 0 ] && break; sleep 0.2; done
  [ "$before" = 0 ] && tap_ok "STATS: the buffers of the exited rstmem-alloc and rstmemd alloc were returned (live bytes 0)" \
    || tap_not_ok "STATS: protected,secure-video still has '$before' live bytes after its clients exited"

  # --- Held by a player: exp_name, mmap, and the charge; returned at its exit.
  fifo=$WORK/hold
  player_out=$WORK/player.out
  rm -f "$fifo"
  mkfifo -m 0644 "$fifo"
  (cd "/home/$PLAYER" && exec runuser -u "$PLAYER" -- ./board-player "$SOCKET" secure-video "$SIZE_1M" < "$fifo" > "$player_out" 2>&1) &
  player_pid=$!
  exec 8>"$fifo"
  # A bound to give up at, not a measure: the player is waiting on its stdin once it printed "holding".
  for ((i = 0; i < 600; i++)); do grep -q '^holding' "$player_out" 2>/dev/null && break; kill -0 "$player_pid" 2>/dev/null || break; sleep 0.1; done
  tap_diag < "$player_out"
  grep -q '^heap protected,secure-video$' "$player_out" && tap_ok "board-player: the buffer comes from protected,secure-video" \
    || tap_not_ok "board-player: no protected,secure-video buffer"
  grep -q '^exp_name tee$' "$player_out" && tap_ok "board-player: fdinfo exp_name tee (drivers/tee/tee_heap.c)" \
    || tap_not_ok "board-player: exp_name '$(sed -n 's/^exp_name //p' "$player_out")', expected tee"
  grep -q '^mmap refused: ' "$player_out" && tap_ok "board-player: mmap of the protected buffer is refused ($(sed -n 's/^mmap refused: //p' "$player_out"))" \
    || tap_not_ok "board-player: mmap was not refused"
  held=$(heap_live_bytes protected,secure-video)
  [ -n "$before" ] && [ "$held" = "$((before + SIZE_1M))" ] && tap_ok "STATS: $SIZE_1M bytes live on protected,secure-video while the player holds it ($before before)" \
    || tap_not_ok "STATS while held: live bytes '$held', expected $before + $SIZE_1M"
  exec 8>&-
  wait "$player_pid"
  status=$?
  for ((i = 0; i < 300; i++)); do after=$(heap_live_bytes protected,secure-video); [ "$after" = "$before" ] && break; sleep 0.2; done
  [ "$status" -eq 0 ] && [ "$after" = "$before" ] && tap_ok "STATS: the player's quota returns after it exits (live bytes $after)" \
    || tap_not_ok "STATS after the player exited (exit $status): live bytes '$after', expected $before"
  rm -f "$fifo"

  # --- Outside the group: refused at connect.
  out=$(as "$OUTSIDER" rstmemd heaps 2>&1)
  status=$?
  tap_diag <<<"$out"
  [ "$status" -ne 0 ] && printf '%s' "$out" | grep -qi 'permission denied\|EACCES' \
    && tap_ok "$OUTSIDER (not in rstmem) is refused at connect" \
    || tap_not_ok "$OUTSIDER: exit $status, expected a refused connection (EACCES)"

  # --- The journal: hand-offs at priority info (6), with no "<6>" left in the text.
  local player_uid handoffs
  player_uid=$(id -u "$PLAYER")
  handoffs=$(journalctl -u rstmemd.service -p 6..6 -o cat --no-pager | grep -c "^handed buffer .* from protected,secure-video to uid $player_uid pid ")
  journalctl -u rstmemd.service -p 6..6 -o cat --no-pager | grep '^handed buffer' | head -n 3 | tap_diag
  [ "$handoffs" -ge 3 ] && tap_ok "journalctl -u rstmemd: $handoffs hand-off lines for uid $player_uid at priority info" \
    || tap_not_ok "journalctl -u rstmemd -p info: $handoffs hand-off lines for uid $player_uid, expected 3 (rstmem-alloc, alloc, board-player)"
  out=$(journalctl -u rstmemd.service -p 0..5 -o cat --no-pager | grep -c '^handed buffer')
  [ "$out" -eq 0 ] && tap_ok "journalctl -u rstmemd: no hand-off line at a priority above info" \
    || tap_not_ok "journalctl -u rstmemd -p 0..5: $out hand-off lines"
  out=$(journalctl -u rstmemd.service -o cat --no-pager | grep -c '^<[0-7]>')
  [ "$out" -eq 0 ] && tap_ok "journalctl -u rstmemd: the <N> priority prefixes were read by journald, none left in the text" \
    || tap_not_ok "journalctl -u rstmemd: $out lines still start with <N>"

  # --- Restart keeps serving.
  pid=$(main_pid)
  systemctl restart rstmemd.service
  status=$?
  out=$(as "$PLAYER" rstmemd alloc --use-case secure-video --size 1M --json 2>&1)
  local alloc_status=$? new_pid
  new_pid=$(main_pid)
  [ "$status" -eq 0 ] && [ "$alloc_status" -eq 0 ] && [ "$new_pid" -gt 0 ] && [ "$new_pid" != "$pid" ] \
    && [ "$(json_number "$out" lseek_size)" = "$SIZE_1M" ] \
    && tap_ok "systemctl restart rstmemd: a new daemon (pid $pid -> $new_pid) serves $PLAYER" \
    || tap_not_ok "systemctl restart rstmemd: exit $status, then alloc exit $alloc_status, pid $pid -> $new_pid" "$out"
  state=$(systemctl is-active rstmemd.socket)
  [ "$state" = active ] && tap_ok "rstmemd.socket stayed active across the restart" || tap_not_ok "rstmemd.socket is '$state' after the restart"

  # --- Purge removes the units and the configuration.
  local files
  files=$(dpkg -L rstmemd librstmem1 librstmem-dev 2>/dev/null | while IFS= read -r path; do [ -d "$path" ] || printf '%s\n' "$path"; done)
  apt purge -y rstmemd librstmem-dev librstmem1 > "$WORK/purge.log" 2>&1
  status=$?
  [ "$status" -eq 0 ] && tap_ok "apt purge rstmemd librstmem-dev librstmem1" || tap_not_ok "apt purge: exit $status" "$(tail -n 20 "$WORK/purge.log")"
  local left=() path
  printf '%s\n' "$files" | grep -q '^/lib/systemd/system/rstmemd.service$' && printf '%s\n' "$files" | grep -q '^/etc/rstmemd/rstmemd.json$' \
    && tap_ok "dpkg -L listed the packages' $(printf '%s\n' "$files" | wc -l) files before the purge, units and conffile among them" \
    || tap_not_ok "dpkg -L before the purge did not list rstmemd.service and /etc/rstmemd/rstmemd.json"
  while IFS= read -r path; do
    [ -n "$path" ] && { [ -e "$path" ] || [ -L "$path" ]; } && left+=("$path")
  done <<<"$files
/etc/rstmemd
$SOCKET
/etc/systemd/system/sockets.target.wants/rstmemd.socket
/etc/systemd/system/rstmemd.socket
/etc/systemd/system/rstmemd.service"
  [ ${#left[@]} -eq 0 ] && tap_ok "after purge no file of the packages is left: units, configuration, binary, rules, sysusers, socket" \
    || tap_not_ok "after purge these remain: ${left[*]}"
  out=$(systemctl list-unit-files --no-legend 'rstmemd*' 2>&1)
  [ -z "$out" ] && tap_ok "after purge systemd knows no rstmemd unit" || tap_not_ok "after purge systemctl list-unit-files: $out"
  [ -z "$(pgrep -x rstmemd)" ] && tap_ok "after purge no rstmemd process runs" || tap_not_ok "after purge rstmemd still runs: $(pgrep -a -x rstmemd)"
  rm -rf "$WORK"
}

case "$PHASE" in
  install) phase_install ;;
  serve) phase_serve ;;
  *) echo "install-test.sh: unknown phase '$PHASE': expected install or serve" >&2; exit 2 ;;
esac
printf '# phase %s complete\n' "$PHASE"
