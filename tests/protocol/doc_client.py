#!/usr/bin/env python3
"""A minimal rstmemd client written only from docs/protocol.md.

Usage:
  doc_client.py SOCKET hello
  doc_client.py SOCKET heaps
  doc_client.py SOCKET alloc TARGET SIZE [NAME]

SOCKET "-" means the default location (docs/protocol.md section 2).
Prints one JSON line. Error reply: {"error": errno, "message": text}, exit 3.
Usage error: exit 2. Protocol violations raise ProtocolError.
"""
import json
import os
import socket
import struct
import sys

# ---- constants (docs/protocol.md section 4) ----
MAGIC = 0x4D545352
VERSION = 1
MAX_PACKET = 8192
REPLY = 0x8000
OP_HELLO, OP_LIST_HEAPS, OP_ALLOC = 1, 2, 3
HEAP_NAME_LEN, BUFFER_NAME_LEN = 64, 32

# ---- layouts, little-endian, no implicit padding (sections 5 and 7) ----
HEADER = struct.Struct("<IHHII")               # magic version opcode request_id payload_length: 16
STATUS = struct.Struct("<iI")                  # error message_length: 8
HELLO_REQUEST = struct.Struct("<HHI")          # min_version max_version flags: 8
HELLO_REPLY = struct.Struct("<HHIIIII32s")     # version reserved capabilities backend generation
                                               # page_size heap_count server: 56
HEAP_LIST = struct.Struct("<II")               # count entry_size: 8
HEAP_INFO = struct.Struct("<64s32sIIIIQQQ")    # name use_case backend generation page_size flags
                                               # total free max_alloc: 136
ALLOC_REQUEST = struct.Struct("<64sQII32s")    # target size flags reserved name: 112
ALLOC_REPLY = struct.Struct("<QQ64s")          # buffer_id size heap: 80

assert (HEADER.size, STATUS.size, HELLO_REQUEST.size, HELLO_REPLY.size, HEAP_LIST.size,
        HEAP_INFO.size, ALLOC_REQUEST.size, ALLOC_REPLY.size) == (16, 8, 8, 56, 8, 136, 112, 80)


class ProtocolError(Exception):
    """The server broke docs/protocol.md."""


class ErrorReply(Exception):
    def __init__(self, errno, message):
        super().__init__(errno, message)
        self.errno, self.message = errno, message


class UsageError(Exception):
    pass


def fixed_string(text, length, what):
    """Encode as UTF-8, NUL-padded to length bytes, keeping at least one NUL."""
    data = text.encode("utf-8")
    if len(data) > length - 1 or b"\0" in data:
        raise UsageError(f"{what} must be at most {length - 1} UTF-8 bytes without NUL")
    return data.ljust(length, b"\0")


def c_string(field):
    return field.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def default_socket_path():
    if os.environ.get("RSTMEMD_SOCKET"):
        return os.environ["RSTMEMD_SOCKET"]
    if os.geteuid() == 0:
        return "/run/rstmemd/rstmemd.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if not runtime:
        raise UsageError("RSTMEMD_SOCKET and XDG_RUNTIME_DIR are both unset")
    return os.path.join(runtime, "rstmemd.sock")


class Client:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(path)
        self.version = VERSION      # HELLO header: our highest version
        self.next_id = 1            # fixed request_id sequence: 1, 2, 3, ...

    def close(self):
        self.sock.close()

    def call(self, opcode, payload=b"", fds_on_success=0):
        """Send one request; return (reply struct bytes, fds). Raise ErrorReply on error."""
        request_id = self.next_id
        self.next_id += 1
        self.sock.send(HEADER.pack(MAGIC, self.version, opcode, request_id, len(payload)) + payload)

        data, ancdata, msg_flags, _ = self.sock.recvmsg(
            MAX_PACKET, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, kind, cdata in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(cdata) - len(cdata) % 4
                fds.extend(struct.unpack(f"<{usable // 4}i", cdata[:usable]))
        try:
            return self._check(data, msg_flags, opcode, request_id, fds, fds_on_success), fds
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise

    def _check(self, data, msg_flags, opcode, request_id, fds, fds_on_success):
        if not data:
            raise ProtocolError("server closed the connection")
        if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            raise ProtocolError(f"truncated reply (msg_flags {msg_flags:#x})")
        if len(data) < HEADER.size + STATUS.size:
            raise ProtocolError(f"reply of {len(data)} bytes is too short")
        magic, _version, r_opcode, r_id, payload_length = HEADER.unpack_from(data, 0)
        if magic != MAGIC:
            raise ProtocolError(f"bad magic {magic:#x}")
        if r_opcode != opcode | REPLY:
            raise ProtocolError(f"opcode {r_opcode:#x}, expected {opcode | REPLY:#x}")
        if r_id != request_id:
            raise ProtocolError(f"request_id {r_id}, expected {request_id}")
        if payload_length != len(data) - HEADER.size:
            raise ProtocolError(f"payload_length {payload_length}, packet has {len(data) - HEADER.size}")

        error, message_length = STATUS.unpack_from(data, HEADER.size)
        body = data[HEADER.size + STATUS.size:]
        if error != 0:
            if message_length != len(body):
                raise ProtocolError(f"message_length {message_length}, {len(body)} bytes follow")
            if fds:
                raise ProtocolError(f"error reply carried {len(fds)} descriptors")
            raise ErrorReply(error, body.decode("utf-8", errors="replace"))
        if message_length != 0:
            raise ProtocolError(f"success reply with message_length {message_length}")
        if len(fds) != fds_on_success:
            raise ProtocolError(f"reply carried {len(fds)} descriptors, expected {fds_on_success}")
        return body

    def hello(self):
        body, _ = self.call(OP_HELLO, HELLO_REQUEST.pack(VERSION, VERSION, 0))
        if len(body) < HELLO_REPLY.size:
            raise ProtocolError(f"HELLO reply of {len(body)} bytes")
        version, _, caps, backend, generation, page_size, heap_count, server = \
            HELLO_REPLY.unpack_from(body, 0)
        if version != VERSION:
            raise ProtocolError(f"server chose version {version}, we only speak {VERSION}")
        self.version = version      # every later header carries the negotiated version
        return {"version": version, "backend": backend, "generation": generation,
                "page_size": page_size, "heap_count": heap_count, "server": c_string(server)}

    def list_heaps(self):
        body, _ = self.call(OP_LIST_HEAPS)
        if len(body) < HEAP_LIST.size:
            raise ProtocolError(f"LIST_HEAPS reply of {len(body)} bytes")
        count, entry_size = HEAP_LIST.unpack_from(body, 0)
        if count and entry_size < HEAP_INFO.size:
            raise ProtocolError(f"entry_size {entry_size} < {HEAP_INFO.size}")
        if HEAP_LIST.size + count * entry_size > len(body):
            raise ProtocolError(f"{count} entries of {entry_size} bytes do not fit in {len(body)}")
        heaps = []
        for i in range(count):
            name, use_case, _backend, _generation, _page, flags, total, free, _max = \
                HEAP_INFO.unpack_from(body, HEAP_LIST.size + i * entry_size)
            heaps.append({"name": c_string(name), "use_case": c_string(use_case),
                          "total_bytes": total, "free_bytes": free, "flags": flags})
        return heaps

    def alloc(self, target, size, name=""):
        payload = ALLOC_REQUEST.pack(fixed_string(target, HEAP_NAME_LEN, "TARGET"), size, 0, 0,
                                     fixed_string(name, BUFFER_NAME_LEN, "NAME"))
        body, fds = self.call(OP_ALLOC, payload, fds_on_success=1)
        if len(body) < ALLOC_REPLY.size:
            os.close(fds[0])
            raise ProtocolError(f"ALLOC reply of {len(body)} bytes")
        buffer_id, real_size, heap = ALLOC_REPLY.unpack_from(body, 0)
        return {"buffer_id": buffer_id, "size": real_size, "heap": c_string(heap)}, fds[0]


def read_fdinfo(fd):
    info = {}
    with open(f"/proc/self/fdinfo/{fd}") as f:
        for line in f:
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
    return info


def run(argv):
    if len(argv) < 3:
        raise UsageError("missing arguments")
    path, command, args = argv[1], argv[2], argv[3:]
    if command not in ("hello", "heaps", "alloc") or \
            (command != "alloc" and args) or (command == "alloc" and len(args) not in (2, 3)):
        raise UsageError(f"bad command line: {' '.join(argv[2:])}")
    if command == "alloc":
        try:
            size = int(args[1], 0)
        except ValueError:
            raise UsageError(f"SIZE must be an integer, not {args[1]!r}")
        if not 0 <= size < 1 << 64:
            raise UsageError("SIZE must fit in 64 bits")

    client = Client(default_socket_path() if path == "-" else path)
    try:
        hello = client.hello()
        if command == "hello":
            return hello
        if command == "heaps":
            return {"heaps": client.list_heaps()}
        result, fd = client.alloc(args[0], size, args[2] if len(args) == 3 else "")
        try:
            fdinfo = read_fdinfo(fd)        # before lseek, so "pos" is the received position
            result["lseek_size"] = os.lseek(fd, 0, os.SEEK_END)
            result["fdinfo"] = fdinfo
        finally:
            os.close(fd)
        return result
    finally:
        client.close()


def main():
    try:
        print(json.dumps(run(sys.argv)))
    except UsageError as e:
        print(f"usage error: {e}\n{__doc__}", file=sys.stderr)
        sys.exit(2)
    except ErrorReply as e:
        print(json.dumps({"error": e.errno, "message": e.message}))
        sys.exit(3)


if __name__ == "__main__":
    main()
