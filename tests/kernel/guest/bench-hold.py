#!/usr/bin/env python3
"""Buffers held and let go, for the Linux 7.2 guest benchmark
(tests/kernel/guest/bench-mainline.sh), over the protocol of docs/protocol.md
(tests/protocol/doc_client.py).

  bench-hold.py hold SOCKET TARGET SIZE COUNT READY_FILE
      Allocates COUNT buffers of SIZE bytes from TARGET over one connection,
      keeps every descriptor open, writes "held COUNT" to READY_FILE and
      sleeps until a signal ends it: its exit closes all their last
      descriptors at once, as a player's exit would.

  bench-hold.py stats SOCKET
      Prints STATS' live buffers, releases and release latency p99 and max
      (over the daemon's life so far) as one JSON line.

  bench-hold.py release SOCKET PID
      Kills PID (the holder) with SIGKILL and asks STATS every 50 ms until
      the daemon counts no live buffer, then prints one JSON line: the
      seconds from the kill to that answer (an upper bound of the last
      release's latency, as seen by a client), and STATS' releases and
      release latency p99 and max (version 2 fields, over the daemon's life).
"""
import json
import os
import signal
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "protocol"))
import doc_client  # noqa: E402

OP_STATS = 5
# rstmem_stats_reply, version 2 (docs/protocol.md 7.5): uptime allocations failures
# live_buffers live_bytes clients count entry_size reserved releases p99 max
STATS_REPLY = struct.Struct("<QQQQQIIIIQQQ")


def hold(path, target, size, count, ready):
    client = doc_client.Client(path)
    client.hello()
    held = [client.alloc(target, int(size))[1] for _ in range(int(count))]
    with open(ready, "w") as f:
        f.write(f"held {len(held)}\n")
    while True:
        signal.pause()


def stats_client(path):
    """A connection that negotiated version 2, which STATS' release fields need."""
    client = doc_client.Client(path)
    body, _ = client.call(doc_client.OP_HELLO, doc_client.HELLO_REQUEST.pack(1, 2, 0))
    version = doc_client.HELLO_REPLY.unpack_from(body, 0)[0]
    if version != 2:
        raise doc_client.ProtocolError(f"the daemon chose version {version}; STATS' release fields need 2")
    client.version = version
    return client


def stats(client):
    body, _ = client.call(OP_STATS)
    fields = STATS_REPLY.unpack_from(body, 0)
    return {"live_buffers": fields[3], "releases": fields[9],
            "release_latency_p99_us": fields[10], "release_latency_max_us": fields[11]}


def release(path, pid):
    client = stats_client(path)
    os.kill(int(pid), signal.SIGKILL)
    start = time.monotonic()
    while True:
        now = stats(client)
        if now["live_buffers"] == 0:
            break
        if time.monotonic() - start > 300:
            sys.exit(f"bench-hold: {now['live_buffers']} buffers still live 300 s after the holder was killed")
        time.sleep(0.05)
    now["seconds_to_zero"] = round(time.monotonic() - start, 3)
    print(json.dumps(now))


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "hold":
        hold(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "stats":
        print(json.dumps(stats(stats_client(sys.argv[2]))))
    elif len(sys.argv) == 4 and sys.argv[1] == "release":
        release(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
