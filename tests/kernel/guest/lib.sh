# shellcheck shell=bash
# Shared by the in-guest check scripts: run as root inside a test kernel
# (tests/kernel/run-guest.sh), in the host's root filesystem, read-only
# except /tmp. Each check prints "check ok|FAIL: what (detail)"; the script
# exits with the number of failed checks.
set -u

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
DAEMON_DLL=${DAEMON_DLL:-$ROOT/src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll}
RSTMEMD=(dotnet "$DAEMON_DLL")
SOCKET=/tmp/rstmemd.sock
# Appended to by the daemon (stdout and stderr) and by check_release_at_last_close's
# markers, all with O_APPEND: the order of its lines is the order of the writes.
DAEMON_LOG=/tmp/rstmemd.log
FAILED=0
DAEMON_PID=

pass() { printf 'check ok: %s\n' "$*"; }
fail() { printf 'check FAIL: %s\n' "$*"; FAILED=$((FAILED + 1)); }
# check "what" command...: the command's success is the check.
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what (exit $?)"; fi; }

# Prints a section of the output the host picks up between markers.
section() { printf '=== BEGIN %s ===\n' "$1"; cat; printf '=== END %s ===\n' "$1"; }

# json_field JSON KEY: the first "KEY": string or number anywhere in the flat-ish JSON of `rstmemd ... --json`.
json_field() {
  local text
  text=$(printf '%s' "$1" | grep -o "\"$2\":\"[^\"]*\"" | head -n 1 | sed 's/^[^:]*:"//; s/"$//')
  [ -n "$text" ] || text=$(printf '%s' "$1" | grep -o "\"$2\":[0-9-]*" | head -n 1 | sed 's/^[^:]*://')
  printf '%s' "$text"
}

start_daemon() {
  # $@: extra serve options; DAEMON_LOG_LEVEL, when set, replaces Debug. Waits until the socket answers.
  rm -f "$SOCKET"
  : > "$DAEMON_LOG"
  "${RSTMEMD[@]}" serve --socket "$SOCKET" --log-level "${DAEMON_LOG_LEVEL:-Debug}" "$@" >> "$DAEMON_LOG" 2>&1 &
  DAEMON_PID=$!
  # A bound to give up at, not a measure: a daemon that is still starting after it is broken.
  local deadline=$(( $(date +%s) + 120 ))
  until "${RSTMEMD[@]}" heaps --socket "$SOCKET" > /dev/null 2>&1; do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null || [ "$(date +%s)" -gt "$deadline" ]; then
      fail "rstmemd serve $* did not come up"; cat "$DAEMON_LOG"; DAEMON_PID=; return 1
    fi
    sleep 0.5
  done
  pass "rstmemd serve $* is up"
}

stop_daemon() {
  [ -n "$DAEMON_PID" ] || return 0
  kill -TERM "$DAEMON_PID"
  if wait "$DAEMON_PID"; then pass "rstmemd exits 0 on SIGTERM"; else fail "rstmemd exit status $? on SIGTERM"; fi
  DAEMON_PID=
  section daemon-log < "$DAEMON_LOG"
}

# log_line PATTERN: the number of the first line of the daemon's log matching PATTERN (grep -E), or nothing.
log_line() { grep -n -m 1 -E -- "$1" "$DAEMON_LOG" | cut -d: -f1; }

# Checks that the daemon sees a buffer's release at the client's last close,
# and not before, by the order of the lines in the daemon's log — never by
# how long anything took. A client (`rstmemd alloc --hold`) receives a 1 MiB
# buffer; the daemon closed its own copy right after sending it. Then one
# more request goes through the daemon's poll loop (`rstmemd stats`), where a
# release wrongly seen at the daemon's own close is handled too (with inotify,
# Linux 6.x, before that reply: its event was queued at the close). Then this
# script appends a marker line to the daemon's log and kills the client, whose exit
# closes the last descriptor. The release must be logged after the marker,
# and it must be logged.
check_release_at_last_close() {
  local heap=$1 client id marker marker_at released_at deadline
  rm -f /tmp/hold.out
  # Held "forever": the client ends when this script kills it.
  "${RSTMEMD[@]}" alloc --socket "$SOCKET" --heap "$heap" --size 1M --hold 86400 > /tmp/hold.out 2>&1 &
  client=$!
  until grep -q '^buffer ' /tmp/hold.out 2>/dev/null || ! kill -0 "$client" 2>/dev/null; do sleep 0.05; done
  id=$(sed -n 's/^buffer \([0-9]*\):.*/\1/p' /tmp/hold.out)
  if [ -z "$id" ]; then
    kill -KILL "$client" 2>/dev/null; wait "$client" 2>/dev/null
    fail "$heap: rstmemd alloc --hold got no buffer: $(cat /tmp/hold.out)"
    return
  fi
  local release="^[^ ]+ [A-Z]{3} buffer $id of [0-9]+ bytes from .* released: "
  if ! "${RSTMEMD[@]}" stats --socket "$SOCKET" > /dev/null; then
    kill -KILL "$client" 2>/dev/null; wait "$client" 2>/dev/null
    fail "$heap: rstmemd stats failed while buffer $id was held"
    return
  fi
  marker="check_release_at_last_close: killing pid $client, the client holding buffer $id from $heap"
  printf '%s\n' "$marker" >> "$DAEMON_LOG"
  kill -KILL "$client"
  wait "$client" 2>/dev/null
  # A bound to give up at, not a measure: the release must come, and 60 s is no criterion of when.
  deadline=$(( $(date +%s) + 60 ))
  until [ -n "$(log_line "$release")" ] || [ "$(date +%s)" -gt "$deadline" ]; do sleep 0.2; done
  marker_at=$(grep -n -m 1 -x -F -- "$marker" "$DAEMON_LOG" | cut -d: -f1)
  released_at=$(log_line "$release")
  if [ -z "$released_at" ]; then
    fail "$heap: no release of buffer $id logged within 60 s after its client was killed"
  elif [ "$released_at" -lt "$marker_at" ]; then
    fail "$heap: buffer $id logged released (daemon log line $released_at) while its client still held it (killed at line $marker_at)"
  else
    pass "$heap: buffer $id was not released while its client held it (no release before the kill, daemon log line $marker_at)"
    pass "$heap: buffer $id released once its client exited (daemon log line $released_at, after the kill at line $marker_at)"
  fi
}
