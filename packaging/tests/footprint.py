#!/usr/bin/env python3
"""Footprint of rstmemd serving the reference model: a benchmark, not a test.

  packaging/tests/footprint.py [--binary PATH | --jit] [--runs N] [--buffers N]

Measures, for the NativeAOT build (dist/linux-x64/rstmemd by default) or the
JIT build (--jit: dotnet src/RstmemDaemon/bin/Release/net10.0/rstmemd.dll):

  ready   time from exec to READY=1 on NOTIFY_SOCKET (a datagram socket this
          script binds), over --runs starts: min, median, max; and the CPU
          time the daemon's threads had used by then (/proc/PID/task/*/schedstat),
          which a busy machine does not inflate;
  idle    the daemon's VmRSS once ready, with no client;
  held    its VmRSS while one client holds --buffers live 4 KiB buffers of the
          model's system heap (limits raised in a generated configuration),
          and the growth over idle; the daemon's own count of live buffers is
          read back so the figure is known to be taken at the peak;
  after   its VmRSS once the client has closed them all and the daemon has
          seen every release.

Prints one line per figure and one JSON line. Targets (issue "rstmemd as a
board product"): ready within 25 ms, idle <= 15 MB, +10,000 buffers <= +8 MB.
The protocol client is tests/protocol/doc_client.py.
"""
import argparse
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "protocol"))
import doc_client  # noqa: E402

AOT = os.path.join(ROOT, "dist", "linux-x64", "rstmemd")
JIT_DLL = os.path.join(ROOT, "src", "RstmemDaemon", "bin", "Release", "net10.0", "rstmemd.dll")


def cpu_ms(pid):
    """CPU time used so far by every live thread of pid (schedstat: nanoseconds on a CPU)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return total / 1e6


def vm_status(pid):
    """VmRSS, RssAnon, RssFile, RssShmem of pid, in KiB."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM", "Threads"):
                fields[key] = int(value.split()[0])
    return fields


class Daemon:
    """One `rstmemd serve`, started with a NOTIFY_SOCKET bound here."""

    def __init__(self, command, config, work):
        self.sock_path = os.path.join(work, "rstmemd.sock")
        notify_path = os.path.join(work, "notify.sock")
        if os.path.exists(notify_path):
            os.unlink(notify_path)
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(notify_path)
        env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID")}
        env["NOTIFY_SOCKET"] = notify_path
        self.log_path = os.path.join(work, "rstmemd.log")
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        argv = command + ["serve", "--config", config, "--socket", self.sock_path]
        started = time.monotonic_ns()
        self.pid = os.posix_spawn(argv[0], argv, env, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1), (os.POSIX_SPAWN_DUP2, log, 2)])
        os.close(log)
        self.notify.settimeout(60)
        while True:
            try:
                message = self.notify.recv(4096).decode()
            except socket.timeout:
                self.stop()
                raise SystemExit(f"footprint: no READY=1 within 60 s; log:\n{open(self.log_path).read()}")
            if "READY=1" in message.split("\n"):
                self.ready_ms = (time.monotonic_ns() - started) / 1e6
                self.ready_cpu_ms = cpu_ms(self.pid)
                break

    def stop(self):
        os.kill(self.pid, 15)
        _, status = os.waitpid(self.pid, 0)
        self.notify.close()
        return os.waitstatus_to_exitcode(status)


def stats(command, sock_path):
    out = subprocess.run(command + ["stats", "--socket", sock_path, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=AOT)
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--buffers", type=int, default=10_000)
    args = parser.parse_args()
    command = ["/usr/bin/dotnet", JIT_DLL] if args.jit else [args.binary]
    for path in command:
        if not os.path.exists(path):
            raise SystemExit(f"footprint: {path} does not exist (packaging/publish.sh or ./build.sh builds it)")
    client_command = [AOT] if os.path.exists(AOT) else ["/usr/bin/dotnet", JIT_DLL]

    # The client holds every buffer, and the daemon may keep one descriptor per buffer too.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = args.buffers + 256
    if hard < needed:
        raise SystemExit(f"footprint: RLIMIT_NOFILE hard limit {hard} is below the {needed} descriptors {args.buffers} buffers need")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with tempfile.TemporaryDirectory(prefix="rstmemd-footprint-") as work:
        config = os.path.join(work, "rstmemd.json")
        with open(config, "w") as f:
            json.dump({"Backend": "model", "LogLevel": "Warning",
                       "Limits": {"MaxBuffersPerUser": args.buffers + 100, "MaxBytesPerUser": "1GiB"}}, f)

        ready = []
        ready_cpu = []
        for _ in range(args.runs):
            daemon = Daemon(command, config, work)
            ready.append(daemon.ready_ms)
            ready_cpu.append(daemon.ready_cpu_ms)
            status = daemon.stop()
            if status != 0:
                raise SystemExit(f"footprint: the daemon exited {status}; log:\n{open(daemon.log_path).read()}")

        daemon = Daemon(command, config, work)
        try:
            time.sleep(2)
            idle = vm_status(daemon.pid)

            client = doc_client.Client(daemon.sock_path)
            client.hello()
            fds = []
            for _ in range(args.buffers):
                _, fd = client.alloc("system", 4096)
                fds.append(fd)
            live = stats(client_command, daemon.sock_path)["LiveBuffers"]
            if live != args.buffers:
                raise SystemExit(f"footprint: the daemon counts {live} live buffers, expected {args.buffers}")
            time.sleep(2)
            held = vm_status(daemon.pid)

            for fd in fds:
                os.close(fd)
            client.close()
            deadline = time.monotonic() + 120
            while stats(client_command, daemon.sock_path)["LiveBuffers"] != 0:
                if time.monotonic() > deadline:
                    raise SystemExit("footprint: the daemon did not see every release within 120 s")
                time.sleep(0.2)
            time.sleep(2)
            after = vm_status(daemon.pid)
        finally:
            daemon.stop()

    which = "JIT (dotnet rstmemd.dll)" if args.jit else args.binary
    print(f"rstmemd footprint, {which}, reference model, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    print(f"exec to READY=1 over {args.runs} starts: min {min(ready):.1f} ms, median {statistics.median(ready):.1f} ms, max {max(ready):.1f} ms")
    print(f"CPU time used by READY=1: min {min(ready_cpu):.1f} ms, median {statistics.median(ready_cpu):.1f} ms")
    print(f"idle RSS: {idle['VmRSS'] / 1024:.1f} MiB (anon {idle['RssAnon'] / 1024:.1f}, file {idle['RssFile'] / 1024:.1f}), {idle['Threads']} threads")
    print(f"RSS with {args.buffers:,} live buffers held by a client: {held['VmRSS'] / 1024:.1f} MiB, "
          f"+{(held['VmRSS'] - idle['VmRSS']) / 1024:.1f} MiB over idle ({(held['VmRSS'] - idle['VmRSS']) * 1024 / args.buffers:.0f} bytes per buffer)")
    print(f"RSS after every buffer was released: {after['VmRSS'] / 1024:.1f} MiB (peak VmHWM {after['VmHWM'] / 1024:.1f} MiB)")
    print(json.dumps({"ready_ms": {"min": min(ready), "median": statistics.median(ready), "max": max(ready)},
                      "ready_cpu_ms": {"min": min(ready_cpu), "median": statistics.median(ready_cpu)},
                      "idle_kib": idle, "held_kib": held, "after_kib": after, "buffers": args.buffers}))


if __name__ == "__main__":
    main()
