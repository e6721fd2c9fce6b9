# Shared by the in-guest check scripts: run as root inside a test kernel
# (tests/kernel/run-guest.sh), in the host's root filesystem, read-only
# except /tmp. Each check prints "check ok|FAIL: what (detail)"; the script
# exits with the number of failed checks.
set -u

ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
DAEMON_DLL=${DAEMON_DLL:-$ROOT/src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll}
RSTMEMD=(dotnet "$DAEMON_DLL")
SOCKET=/tmp/rstmemd.sock
FAILED=0
DAEMON_PID=

pass() { printf 'check ok: %s\n' "$*"; }
fail() { printf 'check FAIL: %s\n' "$*"; FAILED=$((FAILED + 1)); }
# check "what" command...: the command's success is the check.
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what (exit $?)"; fi; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

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
  # $@: extra serve options. Waits until the socket answers.
  rm -f "$SOCKET"
  "${RSTMEMD[@]}" serve --socket "$SOCKET" --log-level Debug "$@" > /tmp/rstmemd.log 2>&1 &
  DAEMON_PID=$!
  local deadline=$(( $(now_ms) + 120000 ))
  until "${RSTMEMD[@]}" heaps --socket "$SOCKET" > /dev/null 2>&1; do
    if ! kill -0 "$DAEMON_PID" 2>/dev/null || [ "$(now_ms)" -gt "$deadline" ]; then
      fail "rstmemd serve $* did not come up"; cat /tmp/rstmemd.log; DAEMON_PID=; return 1
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
  section daemon-log < /tmp/rstmemd.log
}

# log_ms PATTERN: the daemon log timestamp (ms since the epoch) of the first line matching PATTERN.
log_ms() {
  local stamp
  stamp=$(grep -m 1 -- "$1" /tmp/rstmemd.log | cut -d' ' -f1) || return 1
  [ -n "$stamp" ] && echo $(( $(date -d "$stamp" +%s%N) / 1000000 ))
}

# Measures when the daemon sees a buffer's last close. A client holds a
# 1 MiB buffer for HOLD seconds, then exits. The daemon closed its own copy
# right after sending it; its inotify watch must fire only at the client's
# close. Timestamps: the daemon's debug log line and the guest clock.
measure_release() {
  local heap=$1 hold=4 id received exited released
  "${RSTMEMD[@]}" alloc --socket "$SOCKET" --heap "$heap" --size 1M --hold "$hold" > /tmp/hold.out 2>&1 &
  local client=$!
  until grep -q '^buffer ' /tmp/hold.out || ! kill -0 "$client" 2>/dev/null; do sleep 0.05; done
  received=$(now_ms)
  wait "$client" || { fail "$heap: rstmemd alloc --hold failed: $(cat /tmp/hold.out)"; return; }
  exited=$(now_ms)
  id=$(sed -n 's/^buffer \([0-9]*\):.*/\1/p' /tmp/hold.out)
  sleep 1
  released=$(log_ms "buffer $id of .* released") || { fail "$heap: no release logged for buffer $id"; return; }
  if [ "$released" -ge $((received + (hold - 1) * 1000)) ]; then
    pass "$heap: buffer $id was not released while the client held it (released $((released - received)) ms after it arrived, hold ${hold} s)"
  else
    fail "$heap: buffer $id logged released $((released - received)) ms after it arrived, while the client held it for ${hold} s"
  fi
  if [ "$released" -le $((exited + 5000)) ]; then
    pass "$heap: release of buffer $id seen $((released - exited)) ms from the client's exit (negative: before wait returned)"
  else
    fail "$heap: release of buffer $id seen $((released - exited)) ms after the client's exit, expected within 5000"
  fi
}
