using System.Globalization;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Model;
using Rstmem.Model.Pools;
using Rstmem.Interop.Uapi;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// The protocol's meaning (docs/protocol.md): one request in, one reply out,
/// with the dma-buf attached to a successful ALLOC. No I/O of its own.
/// </summary>
internal sealed class RequestDispatcher(BackendSelection backend, BufferLedger ledger, Func<int> clientCount, Action refreshHeaps, ILogger logger)
{
    public static readonly string ServerName = "rstmemd " + (typeof(RequestDispatcher).Assembly.GetName().Version?.ToString(3) ?? "0");

    private readonly DateTime started = DateTime.UtcNow;
    private readonly HeapIoctlHandler heapIoctl = new(backend, ledger, refreshHeaps, logger);

    public OutgoingReply Handle(Connection client, ReadOnlySpan<byte> packet)
    {
        rstmem_header header;
        try
        {
            header = Wire.ReadHeader(packet);
        }
        catch (ProtocolException e)
        {
            return Malformed(client, packet, e.Message);
        }
        ReadOnlySpan<byte> payload = packet[Wire.HeaderSize..];
        try
        {
            if (header.opcode == RSTMEM_OP_HELLO)
            {
                return Hello(client, header, payload);
            }
            if (header.version != client.Version)
            {
                return Error(client, header, Errno.EPROTONOSUPPORT,
                    $"header version {header.version} is not the negotiated version {client.Version}");
            }
            return header.opcode switch
            {
                RSTMEM_OP_LIST_HEAPS => ListHeaps(client, header, payload),
                RSTMEM_OP_ALLOC => Alloc(client, header, payload),
                RSTMEM_OP_FREE => Free(client, header, payload),
                RSTMEM_OP_STATS => Stats(client, header, payload),
                RstmemHeapIoctlProtocol.RSTMEM_OP_HEAP_IOCTL => heapIoctl.Handle(client, header, payload),
                _ => Error(client, header, Errno.ENOSYS, $"unknown opcode {header.opcode}"),
            };
        }
        catch (ProtocolException e)
        {
            return Malformed(client, packet, e.Message);
        }
    }

    /// <summary>EBADMSG, and the connection is dropped once it is sent.</summary>
    public OutgoingReply Malformed(Connection client, ReadOnlySpan<byte> packet, string why)
    {
        logger.LogWarning("dropping client uid {Uid} pid {Pid}: malformed request: {Reason}", client.Uid, client.Pid, why);
        client.CloseAfterReplies = true;
        var header = packet.Length >= Wire.HeaderSize
            ? System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_header>(packet)
            : new rstmem_header();
        return Error(client, header, Errno.EBADMSG, why);
    }

    private OutgoingReply Hello(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_hello_request>(payload, "HELLO");
        ushort chosen = Math.Min(request.max_version, RSTMEM_PROTOCOL_VERSION);
        if (chosen < Math.Max(request.min_version, RSTMEM_PROTOCOL_MIN_VERSION) || request.min_version > request.max_version)
        {
            return Error(client, header, Errno.EPROTONOSUPPORT,
                $"no common version: client speaks {request.min_version}..{request.max_version}, server {RSTMEM_PROTOCOL_MIN_VERSION}..{RSTMEM_PROTOCOL_VERSION}");
        }
        client.Version = chosen;
        var reply = new rstmem_hello_reply
        {
            version = chosen,
            capabilities = RSTMEM_CAP_USE_CASES | RSTMEM_CAP_BUFFER_NAMES | RSTMEM_CAP_RELEASE_TRACKING,
            backend = (uint)backend.Kind,
            generation = Generation(backend.Generation),
            page_size = (uint)Environment.SystemPageSize,
            heap_count = (uint)backend.Heaps.Count,
        };
        unsafe
        {
            Wire.WriteString(Wire.Field(reply.server, RSTMEM_SERVER_NAME_LEN), ServerName, "server name");
        }
        return Ok(client, header, Wire.Bytes(reply));
    }

    private OutgoingReply ListHeaps(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        if (!payload.IsEmpty)
        {
            throw new ProtocolException($"LIST_HEAPS takes no payload; got {payload.Length} bytes");
        }
        refreshHeaps();
        ledger.HandleReleases();
        var parts = new List<byte[]>
        {
            Wire.Bytes(new rstmem_heap_list { count = (uint)backend.Heaps.Count, entry_size = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_heap_info>() }),
        };
        UserUsage user = ledger.User(client.Uid);
        long quotaLeft = Math.Max(0, Math.Min(ledger.Limits.MaxBytesPerUser - user.Bytes, ledger.Limits.MaxBuffersPerUser > user.Buffers ? long.MaxValue : 0));
        foreach (HeapProvider heap in backend.Heaps.All)
        {
            PoolCounters? counters = heap.Counters;
            bool known = counters is { TotalBytes: > 0 };
            var info = new rstmem_heap_info
            {
                backend = (uint)backend.Kind,
                generation = Generation(heap.Generation),
                page_size = (uint)heap.PageSize,
                flags = (heap.Restricted ? RSTMEM_HEAP_RESTRICTED : RSTMEM_HEAP_MAPPABLE) | (known ? RSTMEM_HEAP_SIZES_KNOWN : 0),
                total_bytes = known ? (ulong)counters!.TotalBytes : 0,
                free_bytes = known ? (ulong)counters!.FreeBytes : 0,
                max_alloc_bytes = (ulong)(known ? Math.Min(quotaLeft, counters!.LargestFreeExtentBytes) : quotaLeft),
            };
            unsafe
            {
                Wire.WriteString(Wire.Field(info.name, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
                Wire.WriteString(Wire.Field(info.use_case, RSTMEM_USE_CASE_LEN), heap.UseCase?.Name ?? "", "use case");
            }
            parts.Add(Wire.Bytes(info));
        }
        return Ok(client, header, [.. parts]);
    }

    private OutgoingReply Alloc(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_alloc_request>(payload, "ALLOC");
        string target;
        string name;
        unsafe
        {
            target = Wire.ReadString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), "ALLOC target");
            name = Wire.ReadString(Wire.Field(request.name, RSTMEM_BUFFER_NAME_LEN), "ALLOC name");
        }
        const uint known = RSTMEM_ALLOC_BY_USE_CASE | RSTMEM_ALLOC_BY_HEAP;
        if ((request.flags & ~known) != 0 || request.flags == known || request.reserved != 0)
        {
            return Error(client, header, Errno.EINVAL, $"flags 0x{request.flags:x} (reserved {request.reserved}): expected 0, BY_USE_CASE or BY_HEAP and reserved 0");
        }
        if (request.size == 0 || request.size > long.MaxValue)
        {
            return Error(client, header, Errno.EINVAL, $"size {request.size}: expected 1 to {long.MaxValue} bytes");
        }
        if (target.Length == 0)
        {
            return Error(client, header, Errno.EINVAL, "empty target: expected a use case or heap name");
        }
        HeapProvider? heap = Resolve(target, request.flags);
        if (heap is null)
        {
            refreshHeaps(); // a heap node may have appeared since the last scan
            heap = Resolve(target, request.flags);
        }
        if (heap is null)
        {
            string kind = request.flags == RSTMEM_ALLOC_BY_USE_CASE ? "use case" : request.flags == RSTMEM_ALLOC_BY_HEAP ? "heap" : "heap or use case";
            string available = string.Join(", ", backend.Heaps.All.Select(h => h.UseCase is null ? h.Name : $"{h.UseCase.Name} ({h.Name})"));
            return Error(client, header, Errno.ENOENT, $"no {kind} '{target}'; available: {available}");
        }

        long size = (long)request.size;
        Errno errno = ledger.TryCharge(client.Uid, size, out string refusal, out string? firstBreach);
        if (errno != Errno.None)
        {
            if (firstBreach is not null)
            {
                logger.LogWarning("uid {Uid} reached its {Limit} limit: {Refusal}; further refusals are not logged", client.Uid, firstBreach, refusal);
            }
            ledger.CountFailure(heap.Name);
            return Error(client, header, errno, refusal);
        }

        string bufferName = name.Length > 0 ? name : DefaultName(heap, client);
        byte[] nameBytes = [.. System.Text.Encoding.UTF8.GetBytes(bufferName), 0];
        errno = heap.Allocate(size, nameBytes, out SafeFd buffer, out long actual);
        if (errno != Errno.None)
        {
            ledger.Refund(client.Uid, size);
            ledger.CountFailure(heap.Name);
            logger.LogInformation("allocation of {Size} bytes from {Heap} for uid {Uid} pid {Pid} failed: {Errno}", size, heap.Name, client.Uid, client.Pid, errno.Name());
            return Error(client, header, errno, $"allocating {size} bytes from {heap.Name}: {errno.Describe()}");
        }

        errno = ledger.TryRecord(buffer, client.Uid, client.Pid, heap.Name, size, actual, client.Id, out ulong id);
        if (errno != Errno.None)
        {
            buffer.Dispose();
            ledger.CountFailure(heap.Name);
            return Error(client, header, errno, $"cannot track the buffer's release: {errno.Describe()}");
        }
        logger.LogInformation("handed buffer {BufferId} '{BufferName}' of {Size} bytes from {Heap} to uid {Uid} pid {Pid}",
            id, bufferName, actual, heap.Name, client.Uid, client.Pid);

        var reply = new rstmem_alloc_reply { buffer_id = id, size = (ulong)actual };
        unsafe
        {
            Wire.WriteString(Wire.Field(reply.heap, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
        }
        return new OutgoingReply(Packet(client, header, Wire.Ok, Wire.Bytes(reply)), buffer);
    }

    private OutgoingReply Free(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_free_request>(payload, "FREE");
        Errno errno = ledger.Free(client.Id, request.buffer_id, out bool released);
        if (errno != Errno.None)
        {
            return Error(client, header, errno, $"buffer {request.buffer_id} is not held by this connection");
        }
        return Ok(client, header, Wire.Bytes(new rstmem_free_reply { released = released ? 1u : 0u }));
    }

    private OutgoingReply Stats(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        if (!payload.IsEmpty)
        {
            throw new ProtocolException($"STATS takes no payload; got {payload.Length} bytes");
        }
        ledger.HandleReleases();
        var parts = new List<byte[]>
        {
            Wire.Bytes(new rstmem_stats_reply
            {
                uptime_ms = (ulong)(DateTime.UtcNow - started).TotalMilliseconds,
                allocations = ledger.Allocations,
                failures = ledger.Failures,
                live_buffers = ledger.LiveBuffers,
                live_bytes = ledger.LiveBytes,
                clients = (uint)clientCount(),
                count = (uint)backend.Heaps.Count,
                entry_size = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_heap_stats>(),
            }),
        };
        foreach (HeapProvider heap in backend.Heaps.All)
        {
            HeapUsage usage = ledger.Heap(heap.Name);
            PoolCounters? counters = heap.Counters;
            var entry = new rstmem_heap_stats
            {
                allocations = usage.Allocations,
                failures = usage.Failures,
                live_buffers = usage.LiveBuffers,
                live_bytes = usage.LiveBytes,
                total_bytes = (ulong)(counters?.TotalBytes ?? 0),
                free_bytes = (ulong)(counters?.FreeBytes ?? 0),
                largest_free_bytes = (ulong)(counters?.LargestFreeExtentBytes ?? 0),
                lends = (ulong)(counters?.Lends ?? 0),
                reclaims = (ulong)(counters?.Reclaims ?? 0),
            };
            unsafe
            {
                Wire.WriteString(Wire.Field(entry.name, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
            }
            parts.Add(Wire.Bytes(entry));
        }
        return Ok(client, header, [.. parts]);
    }

    private HeapProvider? Resolve(string target, uint flags) => flags switch
    {
        RSTMEM_ALLOC_BY_USE_CASE => backend.Heaps.ByUseCase(target),
        RSTMEM_ALLOC_BY_HEAP => backend.Heaps.ByName(target),
        _ => backend.Heaps.ByUseCase(target) ?? backend.Heaps.ByName(target),
    };

    /// <summary>
    /// &lt;use case short name&gt;:&lt;pid&gt;:&lt;seq&gt; ("svp:812:3"), or the heap's name
    /// (at most 12 characters) for a plain heap; at most DMA_BUF_NAME_LEN - 1 characters.
    /// </summary>
    private static string DefaultName(HeapProvider heap, Connection client)
    {
        string prefix = heap.UseCase?.ShortName ?? (heap.Name.Length > 12 ? heap.Name[..12] : heap.Name);
        string name = string.Create(CultureInfo.InvariantCulture, $"{prefix}:{client.Pid}:{++client.Sequence}");
        return name.Length > RSTMEM_BUFFER_NAME_LEN - 1 ? name[..(RSTMEM_BUFFER_NAME_LEN - 1)] : name;
    }

    private static uint Generation(KernelGeneration? generation) => generation switch
    {
        KernelGeneration.V4 => RSTMEM_GENERATION_V4,
        KernelGeneration.V6 => RSTMEM_GENERATION_V6,
        KernelGeneration.Mainline => RSTMEM_GENERATION_MAINLINE,
        _ => RSTMEM_GENERATION_NONE,
    };

    private static OutgoingReply Ok(Connection client, rstmem_header header, params byte[][] parts) =>
        new(Packet(client, header, [Wire.Ok, .. parts]), null);

    private static OutgoingReply Error(Connection client, rstmem_header header, Errno errno, string message) =>
        new(Packet(client, header, Wire.Status(errno, message)), null);

    private static byte[] Packet(Connection client, rstmem_header header, params byte[][] parts)
    {
        byte[] buffer = new byte[RSTMEM_MAX_PACKET];
        int length = Wire.Build(buffer, (ushort)(header.opcode | RSTMEM_REPLY), header.request_id, client.Version, parts);
        return buffer[..length];
    }
}
