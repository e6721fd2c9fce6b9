#!/bin/sh
# check-bench.sh SERVER CLIENT [EMULATOR...]
#
# The benchmark's two C programs still speak the protocol of the header they
# are built from: rstmem-bench-client (under EMULATOR, if any) drives the C
# baseline rstmem-bench-server (under EMULATOR too) on a private socket with two
# clients, at least 20 counted round trips each, and must exit 0 with a JSON
# line that counts round trips. The server does the same with --watch-releases
# and with --lock-releases, and on SIGTERM must report every buffer it sent
# released ("released N of N"), or the benchmark's rows for them would time
# release tracking that tracks nothing.
# When RSTMEMD_SOCKET is set (with-daemon.sh), it then does the same against that
# rstmemd. `./build.sh bench broker` compares the two; a baseline that
# refuses the client's HELLO (it did once, after version 2) ends the
# benchmark before it measures anything.
set -u
server=$1
client=$2
shift 2
die() { printf 'check-bench.sh: %s\n' "$*" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/rstmem-bench.XXXXXX") || die "mktemp failed"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# Runs the client against SOCKET; checks its status and its JSON line.
drive() {
  # At least 20 counted round trips per client, however slow the machine: no time limit decides.
  "$@" "$client" --socket "$socket" --clients 2 --size 4096 --seconds 0.1 --min-round-trips 20 >"$dir/out" 2>"$dir/err"
  status=$?
  [ "$status" -eq 0 ] || die "rstmem-bench-client against $what exited $status: $(cat "$dir/err")"
  grep -q '"round_trips": *[1-9]' "$dir/out" || die "rstmem-bench-client against $what counted no round trip: $(cat "$dir/out")"
  echo "ok: rstmem-bench-client against $what: $(cat "$dir/out")"
}

# A bad --min-round-trips is refused by name before anything connects.
if "$@" "$client" --socket "$dir/none.sock" --clients 1 --size 4096 --seconds 1 --min-round-trips -3 >/dev/null 2>"$dir/err"; then
  die "rstmem-bench-client accepted --min-round-trips -3"
fi
grep -q -- "--min-round-trips -3: expected a whole number" "$dir/err" || die "rstmem-bench-client's refusal of --min-round-trips -3 does not name it: $(cat "$dir/err")"

# Waits until the server started as $pid (named $1 in errors) listens on $socket.
await_listening() {
  tries=0
  while [ ! -S "$socket" ]; do
    kill -0 "$pid" 2>/dev/null || die "$1 exited before listening: $(cat "$dir/server.err")"
    tries=$((tries + 1))
    [ "$tries" -le 1200 ] || die "$1 did not listen on $socket within 120 s"
    sleep 0.1
  done
}

socket=$dir/baseline.sock
"$@" "$server" "$socket" 2>"$dir/server.err" &
pid=$!
await_listening rstmem-bench-server
what="the C baseline"
drive "$@"
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
pid=

# The release-tracking modes: every buffer sent is seen released once the clients are gone.
for mode in --watch-releases --lock-releases; do
  socket=$dir/$mode.sock
  "$@" "$server" "$mode" "$socket" >"$dir/server.out" 2>"$dir/server.err" &
  pid=$!
  await_listening "rstmem-bench-server $mode"
  what="the C baseline with $mode"
  drive "$@"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
  status=$?
  pid=
  [ "$status" -eq 0 ] || die "rstmem-bench-server $mode exited $status on SIGTERM: $(cat "$dir/server.err")"
  counts=$(sed -n 's/^released \([0-9]*\) of \([0-9]*\)$/\1 \2/p' "$dir/server.out")
  [ -n "$counts" ] || die "rstmem-bench-server $mode printed no release count: $(cat "$dir/server.out")"
  released=$(printf '%s\n' "$counts" | cut -d' ' -f1)
  sent=$(printf '%s\n' "$counts" | cut -d' ' -f2)
  [ "$sent" -ge 40 ] && [ "$released" -eq "$sent" ] ||
    die "rstmem-bench-server $mode released $released of $sent buffers: expected all, at least 40 (2 clients x 20 round trips)"
  echo "ok: rstmem-bench-server $mode released $released of $sent"
done
if [ -n "${RSTMEMD_SOCKET:-}" ]; then
  socket=$RSTMEMD_SOCKET
  what="rstmemd"
  drive "$@"
fi
