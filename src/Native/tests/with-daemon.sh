#!/bin/sh
# with-daemon.sh DOTNET RSTMEMD_DLL COMMAND [ARG...]
#
# Runs COMMAND against a fresh `rstmemd serve --backend model` listening on a
# private socket in a temporary directory (exported as RSTMEMD_SOCKET), then
# stops the daemon with SIGTERM (SIGKILL after 60 s) whatever COMMAND did.
# Fails, never skips, when the daemon is missing, does not get ready within
# 120 s, dies early, or does not exit 0 on SIGTERM. Both times are bounds to
# give up at on a busy machine, not measures of the daemon. The daemon's log is shown
# when anything failed. COMMAND gets TMPDIR inside that directory. Extra
# daemon options: RSTMEM_TEST_DAEMON_ARGS.
set -u

dotnet=$1
dll=$2
shift 2
die() { printf 'with-daemon.sh: %s\n' "$*" >&2; exit 1; }

[ -f "$dll" ] || die "rstmemd is not built: $dll is missing (run ./build.sh)"
command -v "$dotnet" >/dev/null 2>&1 || die "'$dotnet' not found: the .NET 10 SDK runs rstmemd"

dir=$(mktemp -d "${TMPDIR:-/tmp}/rstmem-test.XXXXXX") || die "mktemp failed"
socket=$dir/rstmemd.sock
log=$dir/rstmemd.log
pid=

show_log() {
  echo "---- rstmemd log ($log) ----" >&2
  tail -n 40 "$log" >&2
  echo "---- end of rstmemd log ----" >&2
}

# Stops the daemon; returns its exit status (137 if it had to be killed).
stop_daemon() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  deadline=$(($(date +%s) + 60))
  while kill -0 "$pid" 2>/dev/null && [ "$(date +%s)" -le "$deadline" ]; do
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "with-daemon.sh: rstmemd ignored SIGTERM for 60 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid"
  status=$?
  pid=
  return "$status"
}

cleanup() {
  stop_daemon >/dev/null 2>&1
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Our own configuration: /etc/rstmemd/rstmemd.json on this machine must not matter.
# No pool share: these tests fill pools to check ENOMEM and max_alloc_bytes
# (the share is tested by the daemon's own tests, tests/Rstmem.Tests/Policy).
echo '{ "Access": { "MaxPoolSharePercent": 100 } }' >"$dir/rstmemd.json"
# shellcheck disable=SC2086 # RSTMEM_TEST_DAEMON_ARGS is a word list on purpose
env -u RSTMEMD_SOCKET "$dotnet" "$dll" serve --backend model --config "$dir/rstmemd.json" \
  --socket "$socket" ${RSTMEM_TEST_DAEMON_ARGS:-} >"$log" 2>&1 &
pid=$!
# If this script is killed outright (SIGKILL from a test timeout), a watchdog
# still takes the daemon down.
self=$$
( while kill -0 "$self" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done
  kill -0 "$self" 2>/dev/null || kill -KILL "$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 &
watchdog=$!

# Ready = the daemon logged it and the socket exists (it is listening by then).
deadline=$(($(date +%s) + 120))
until grep -q 'rstmemd ready' "$log" 2>/dev/null && [ -S "$socket" ]; do
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    echo "with-daemon.sh: rstmemd exited with status $? before it was ready" >&2
    pid=
    show_log
    exit 1
  fi
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "with-daemon.sh: rstmemd not ready after 120 s" >&2
    show_log
    exit 1
  fi
  sleep 0.1
done

# TMPDIR: what the test creates is removed with the rest, even if it crashes.
mkdir "$dir/tmp"
RSTMEMD_SOCKET=$socket TMPDIR=$dir/tmp "$@"
test_status=$?

stop_daemon
daemon_status=$?
if [ "$daemon_status" -ne 0 ]; then
  echo "with-daemon.sh: rstmemd exited with status $daemon_status on SIGTERM (expected 0)" >&2
  show_log
  exit 1
fi
if [ "$test_status" -ne 0 ]; then
  echo "with-daemon.sh: '$*' failed with status $test_status" >&2
  show_log
fi
exit "$test_status"
