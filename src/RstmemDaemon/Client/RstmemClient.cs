using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Client;

/// <summary>The daemon refused a request (status.error) or broke the protocol.</summary>
public sealed class RstmemException : Exception
{
    public RstmemException(Errno errno, string message) : base(message) { Errno = errno; }

    public RstmemException() { }

    public RstmemException(string message) : base(message) { }

    public RstmemException(string message, Exception innerException) : base(message, innerException) { }

    public Errno Errno { get; }
}

public sealed record ServerInfo(ushort Version, uint Capabilities, uint Backend, uint Generation, uint PageSize, uint HeapCount, string Server);

public sealed record HeapInfo(string Name, string UseCase, uint Backend, uint Generation, uint PageSize, uint Flags, ulong TotalBytes, ulong FreeBytes, ulong MaxAllocBytes);

public sealed record HeapStats(string Name, ulong Allocations, ulong Failures, ulong LiveBuffers, ulong LiveBytes, ulong TotalBytes, ulong FreeBytes, ulong LargestFreeBytes, ulong Lends, ulong Reclaims);

public sealed record HeapUsageInfo(string Name, ulong Buffers, ulong Bytes, ulong? ShareBytes, ulong Allocations, ulong Failures, bool Granted);

/// <summary>A uid's usage and limits (USAGE, protocol version 2); <see cref="NextUid"/> is the next uid an administrator may ask about.</summary>
public sealed record UserUsageInfo(uint Uid, bool Admin, uint? NextUid, uint Connections, ulong Buffers, ulong Bytes,
    uint MaxConnections, uint MaxBuffers, ulong MaxBytes, IReadOnlyList<HeapUsageInfo> Heaps);

/// <summary>
/// STATS: the daemon's counters. <see cref="ReleaseLatencyP99Us"/> and
/// <see cref="ReleaseLatencyMaxUs"/> are from a buffer's last close to its
/// uncharge, upper bounds (powers of two), 0 before any release.
/// </summary>
public sealed record DaemonStats(ulong UptimeMs, ulong Allocations, ulong Failures, ulong LiveBuffers, ulong LiveBytes, uint Clients,
    ulong Releases, ulong ReleaseLatencyP99Us, ulong ReleaseLatencyMaxUs, IReadOnlyList<HeapStats> Heaps);

/// <summary>A buffer from the daemon. The caller owns <see cref="Fd"/>; the memory returns when the last copy of it anywhere is closed.</summary>
public sealed record AllocatedBuffer(ulong Id, long Size, string Heap, SafeFd Fd) : IDisposable
{
    public void Dispose() => Fd.Dispose();
}

/// <summary>How an ALLOC target is read.</summary>
public enum AllocTarget
{
    /// <summary>A use case if one has that name, else a heap.</summary>
    Any = 0,
    UseCase = (int)RSTMEM_ALLOC_BY_USE_CASE,
    Heap = (int)RSTMEM_ALLOC_BY_HEAP,
}

/// <summary>
/// A connection to rstmemd (docs/protocol.md). Requests are serialised by a
/// lock, so one client may be shared by threads. Every received descriptor is
/// owned by exactly one object: the returned buffer, or closed at once when a
/// reply is refused.
/// </summary>
public sealed class RstmemClient : IDisposable
{
    private readonly SafeFd socket;
    private readonly Lock gate = new();
    private readonly byte[] buffer = new byte[RSTMEM_MAX_PACKET + 1];
    private uint nextRequest;

    private RstmemClient(SafeFd socket, string path)
    {
        this.socket = socket;
        SocketPath = path;
    }

    public string SocketPath { get; }

    public ServerInfo Server { get; private set; } = null!;

    /// <summary>RSTMEMD_SOCKET, else /run/rstmemd/rstmemd.sock for root, else $XDG_RUNTIME_DIR/rstmemd.sock.</summary>
    public static string DefaultSocketPath()
    {
        string? fromEnvironment = Environment.GetEnvironmentVariable(RSTMEM_SOCKET_ENV);
        if (!string.IsNullOrEmpty(fromEnvironment))
        {
            return fromEnvironment;
        }
        // A per-user daemon's socket if there is one (docs/protocol.md section 2), else the system service's.
        string? runtime = Sys.GetEffectiveUserId() == 0 ? null : Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR");
        if (!string.IsNullOrEmpty(runtime) && Path.Exists(Path.Combine(runtime, "rstmemd.sock")))
        {
            return Path.Combine(runtime, "rstmemd.sock");
        }
        return RSTMEM_DEFAULT_SOCKET;
    }

    /// <summary>Connects and negotiates the version (HELLO).</summary>
    public static RstmemClient Connect(string? path = null)
    {
        path ??= DefaultSocketPath();
        Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd socket).ThrowIfError("socket");
        Errno errno = Sys.TryConnectUnix(socket, path);
        if (errno != Errno.None)
        {
            socket.Dispose();
            throw new RstmemException(errno, $"cannot connect to rstmemd at {path}: {errno.Describe()}; is the daemon running? (--socket or {RSTMEM_SOCKET_ENV} name another path)");
        }
        var client = new RstmemClient(socket, path);
        try
        {
            client.Hello();
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private void Hello()
    {
        byte[] reply = Request(RSTMEM_OP_HELLO, Wire.Bytes(new rstmem_hello_request { min_version = RSTMEM_PROTOCOL_MIN_VERSION, max_version = RSTMEM_PROTOCOL_VERSION }), out _);
        var hello = Read<rstmem_hello_reply>(reply, 0);
        string server;
        unsafe
        {
            server = Wire.ReadString(Wire.Field(hello.server, RSTMEM_SERVER_NAME_LEN), "server name");
        }
        if (hello.version is < RSTMEM_PROTOCOL_MIN_VERSION or > RSTMEM_PROTOCOL_VERSION)
        {
            throw new RstmemException(Errno.EPROTONOSUPPORT, $"the daemon chose protocol version {hello.version}, which this client does not speak");
        }
        Server = new ServerInfo(hello.version, hello.capabilities, hello.backend, hello.generation, hello.page_size, hello.heap_count, server);
    }

    public IReadOnlyList<HeapInfo> ListHeaps()
    {
        byte[] reply = Request(RSTMEM_OP_LIST_HEAPS, [], out _);
        var list = Read<rstmem_heap_list>(reply, 0);
        var heaps = new List<HeapInfo>();
        for (int i = 0; i < list.count; i++)
        {
            var info = Read<rstmem_heap_info>(reply, Unsafe.SizeOf<rstmem_heap_list>() + (i * (int)list.entry_size));
            unsafe
            {
                heaps.Add(new HeapInfo(
                    Wire.ReadString(Wire.Field(info.name, RSTMEM_HEAP_NAME_LEN), "heap name"),
                    Wire.ReadString(Wire.Field(info.use_case, RSTMEM_USE_CASE_LEN), "use case"),
                    info.backend, info.generation, info.page_size, info.flags, info.total_bytes, info.free_bytes, info.max_alloc_bytes));
            }
        }
        return heaps;
    }

    /// <summary>Allocates from a use case or heap; the buffer's descriptor is the caller's.</summary>
    public AllocatedBuffer Allocate(string target, long size, AllocTarget kind = AllocTarget.Any, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(target);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var request = new rstmem_alloc_request { size = (ulong)size, flags = (uint)kind };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), target, "target");
            Wire.WriteString(Wire.Field(request.name, RSTMEM_BUFFER_NAME_LEN), name ?? "", "buffer name");
        }
        byte[] reply = Request(RSTMEM_OP_ALLOC, Wire.Bytes(request), out SafeFd? fd);
        var allocated = Read<rstmem_alloc_reply>(reply, 0);
        string heap;
        unsafe
        {
            heap = Wire.ReadString(Wire.Field(allocated.heap, RSTMEM_HEAP_NAME_LEN), "heap");
        }
        return new AllocatedBuffer(allocated.buffer_id, (long)allocated.size, heap, fd!);
    }

    /// <summary>Ends the daemon's record of a buffer; true when its memory was already released.</summary>
    public bool Free(ulong bufferId)
    {
        byte[] reply = Request(RSTMEM_OP_FREE, Wire.Bytes(new rstmem_free_request { buffer_id = bufferId }), out _);
        return Read<rstmem_free_reply>(reply, 0).released != 0;
    }

    public DaemonStats Stats()
    {
        byte[] reply = Request(RSTMEM_OP_STATS, [], out _);
        var stats = Read<rstmem_stats_reply>(reply, 0);
        var heaps = new List<HeapStats>();
        for (int i = 0; i < stats.count; i++)
        {
            var entry = Read<rstmem_heap_stats>(reply, Unsafe.SizeOf<rstmem_stats_reply>() + (i * (int)stats.entry_size));
            unsafe
            {
                heaps.Add(new HeapStats(Wire.ReadString(Wire.Field(entry.name, RSTMEM_HEAP_NAME_LEN), "heap name"),
                    entry.allocations, entry.failures, entry.live_buffers, entry.live_bytes, entry.total_bytes, entry.free_bytes,
                    entry.largest_free_bytes, entry.lends, entry.reclaims));
            }
        }
        return new DaemonStats(stats.uptime_ms, stats.allocations, stats.failures, stats.live_buffers, stats.live_bytes, stats.clients,
            stats.releases, stats.release_latency_p99_us, stats.release_latency_max_us, heaps);
    }

    /// <summary>USAGE: the caller's own usage and limits, or (administrators only) those of <paramref name="uid"/>. Needs protocol version 2.</summary>
    public UserUsageInfo Usage(uint? uid = null)
    {
        if (Server.Version < 2)
        {
            throw new RstmemException(Errno.ENOSYS, $"USAGE needs protocol version 2; the daemon speaks {Server.Version}");
        }
        byte[] reply = Request(RSTMEM_OP_USAGE, Wire.Bytes(new rstmem_usage_request { uid = uid ?? 0, flags = uid is null ? 0 : RSTMEM_USAGE_OF_UID }), out _);
        var usage = Read<rstmem_usage_reply>(reply, 0);
        var heaps = new List<HeapUsageInfo>();
        for (int i = 0; i < usage.count; i++)
        {
            var entry = Read<rstmem_heap_usage>(reply, Unsafe.SizeOf<rstmem_usage_reply>() + (i * (int)usage.entry_size));
            unsafe
            {
                heaps.Add(new HeapUsageInfo(Wire.ReadString(Wire.Field(entry.name, RSTMEM_HEAP_NAME_LEN), "heap name"), entry.buffers, entry.bytes,
                    entry.share_bytes == RSTMEM_NO_LIMIT ? null : entry.share_bytes, entry.allocations, entry.failures, (entry.flags & RSTMEM_HEAP_USAGE_GRANTED) != 0));
            }
        }
        return new UserUsageInfo(usage.uid, (usage.flags & RSTMEM_USAGE_ADMIN) != 0, usage.next_uid == RSTMEM_NO_UID ? null : usage.next_uid,
            usage.connections, usage.buffers, usage.bytes, usage.max_connections, usage.max_buffers, usage.max_bytes, heaps);
    }

    /// <summary>
    /// Sends one request and returns the reply's payload after the status; throws on an error status.
    /// One request at a time per connection (the lock), well within RSTMEM_MAX_PIPELINE.
    /// </summary>
    private byte[] Request(ushort opcode, byte[] payload, out SafeFd? fd)
    {
        lock (gate)
        {
            fd = null;
            uint id = ++nextRequest;
            byte[] packet = new byte[RSTMEM_MAX_PACKET];
            int length = Wire.Build(packet, opcode, id, Server?.Version ?? RSTMEM_PROTOCOL_VERSION, payload);
            Errno sent = Sys.TrySendMessage(socket, packet.AsSpan(0, length), [], Sockets.MSG_NOSIGNAL, out _);
            // A connection the daemon refused may already be closed: its one reply says why.
            Errno received = Sys.TryReceiveMessage(socket, buffer, 1, sent == Errno.None ? 0 : Sockets.MSG_DONTWAIT, out ReceivedMessage message);
            if (received == Errno.ECONNRESET)
            {
                // The kernel reports a reset before the packets still queued: the refusal may follow it.
                received = Sys.TryReceiveMessage(socket, buffer, 1, Sockets.MSG_DONTWAIT, out message) == Errno.None ? Errno.None : received;
            }
            if (received != Errno.None)
            {
                throw new RstmemException(sent != Errno.None ? sent : received,
                    $"rstmemd at {SocketPath}: {(sent != Errno.None ? "sendmsg" : "recvmsg")}: {(sent != Errno.None ? sent : received).Describe()}");
            }
            try
            {
                if (message.Length == 0)
                {
                    throw new RstmemException(sent == Errno.None ? Errno.ECONNRESET : sent, $"rstmemd at {SocketPath} closed the connection");
                }
                if (message.PayloadTruncated || message.ControlTruncated)
                {
                    throw new RstmemException(Errno.EBADMSG, "the reply was truncated");
                }
                ReadOnlySpan<byte> reply = buffer.AsSpan(0, message.Length);
                rstmem_header header = Wire.ReadHeader(reply);
                bool refused = header.opcode == RSTMEM_REPLY && header.request_id == 0; // the daemon refused the connection
                if (!refused && (header.opcode != (opcode | RSTMEM_REPLY) || header.request_id != id))
                {
                    throw new RstmemException(Errno.EBADMSG, $"reply opcode 0x{header.opcode:x} id {header.request_id} does not answer request 0x{opcode:x} id {id}");
                }
                var status = Read<rstmem_status>(reply[Wire.HeaderSize..], 0, "status");
                if (status.error != 0)
                {
                    int textLength = (int)Math.Min(status.message_length, (uint)(reply.Length - Wire.HeaderSize - Wire.StatusSize));
                    string text = System.Text.Encoding.UTF8.GetString(reply.Slice(Wire.HeaderSize + Wire.StatusSize, textLength));
                    throw new RstmemException((Errno)status.error, text.Length > 0 ? text : ((Errno)status.error).Describe());
                }
                if (refused)
                {
                    throw new RstmemException(Errno.EBADMSG, "a connection-level reply (opcode 0x8000, request_id 0) without an error");
                }
                int expectedFds = opcode == RSTMEM_OP_ALLOC ? 1 : 0;
                if (message.Fds.Length != expectedFds)
                {
                    throw new RstmemException(Errno.EBADMSG, $"the reply carried {message.Fds.Length} descriptors; expected {expectedFds}");
                }
                fd = expectedFds == 1 ? message.Fds[0] : null;
                return reply[(Wire.HeaderSize + Wire.StatusSize)..].ToArray();
            }
            catch
            {
                message.CloseFds();
                fd = null;
                throw;
            }
        }
    }

    private static T Read<T>(ReadOnlySpan<byte> bytes, int offset, string what = "reply") where T : unmanaged =>
        bytes.Length >= offset + Unsafe.SizeOf<T>()
            ? MemoryMarshal.Read<T>(bytes[offset..])
            : throw new RstmemException(Errno.EBADMSG, $"{what} is {bytes.Length - offset} bytes; expected {Unsafe.SizeOf<T>()}");

    public void Dispose() => socket.Dispose();
}
