using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Policy;
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

    /// <summary>The job of an ALLOC run on the loop's thread (no workers: the kernel's call inline).</summary>
    private readonly AllocationJob inlineJob = new();

    /// <summary>Where the kernel's allocations run; null runs them inline, on the loop's thread.</summary>
    public AllocationWorkers? Workers { get; init; }

    /// <summary>Every reply is written here; the server sends it (or copies it) before the next request.</summary>
    private readonly byte[] replyBuffer = new byte[RSTMEM_MAX_PACKET];
    private HeapIoctlHandler? heapIoctl;

    /// <summary>HEAP_IOCTL (the preload shim's requests), writing into the same reply buffer.</summary>
    private HeapIoctlHandler HeapIoctl => heapIoctl ??= new(backend, ledger, refreshHeaps, logger, replyBuffer);

    /// <summary>The bytes of <paramref name="reply"/>, valid until the next request is handled.</summary>
    public ReadOnlySpan<byte> Reply(OutgoingReply reply) => replyBuffer.AsSpan(0, reply.Length);

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
                RSTMEM_OP_USAGE => Usage(client, header, payload),
                RstmemHeapIoctlProtocol.RSTMEM_OP_HEAP_IOCTL => HeapIoctl.Handle(client, header, payload),
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
        logger.Malformed(client.Uid, client.Pid, why);
        client.CloseAfterReplies = true;
        var header = packet.Length >= Wire.HeaderSize
            ? System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_header>(packet)
            : new rstmem_header();
        return Error(client, header, Errno.EBADMSG, why);
    }

    private OutgoingReply Hello(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_hello_request>(payload, "HELLO");
        if (request.flags != 0)
        {
            return Error(client, header, Errno.EINVAL, $"HELLO flags 0x{request.flags:x}: expected 0");
        }
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
        return Ok(client, header, reply);
    }

    private OutgoingReply ListHeaps(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        if (!payload.IsEmpty)
        {
            throw new ProtocolException($"LIST_HEAPS takes no payload; got {payload.Length} bytes");
        }
        refreshHeaps();
        ledger.HandleReleases();
        PacketWriter reply = Begin();
        reply.Append(new rstmem_heap_list { count = (uint)backend.Heaps.Count, entry_size = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_heap_info>() });
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
                max_alloc_bytes = (ulong)(known ? Math.Min(Admission.Headroom(ledger, client, heap, quotaLeft), counters!.LargestFreeExtentBytes) : Admission.Headroom(ledger, client, heap, quotaLeft)),
            };
            unsafe
            {
                Wire.WriteString(Wire.Field(info.name, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
                Wire.WriteString(Wire.Field(info.use_case, RSTMEM_USE_CASE_LEN), heap.UseCase?.Name ?? "", "use case");
            }
            reply.Append(info);
        }
        return Finish(client, header, reply, null);
    }

    private OutgoingReply Alloc(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_alloc_request>(payload, "ALLOC");
        // The strings stay bytes and stack chars: a steady stream of ALLOCs makes no garbage.
        Span<byte> fields = stackalloc byte[RSTMEM_HEAP_NAME_LEN + RSTMEM_BUFFER_NAME_LEN];
        unsafe
        {
            Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN).CopyTo(fields);
            Wire.Field(request.name, RSTMEM_BUFFER_NAME_LEN).CopyTo(fields[RSTMEM_HEAP_NAME_LEN..]);
        }
        ReadOnlySpan<byte> targetBytes = Wire.StringBytes(fields[..RSTMEM_HEAP_NAME_LEN], "ALLOC target");
        ReadOnlySpan<byte> nameField = Wire.StringBytes(fields[RSTMEM_HEAP_NAME_LEN..], "ALLOC name");
        Span<char> targetChars = stackalloc char[RSTMEM_HEAP_NAME_LEN];
        ReadOnlySpan<char> target = targetChars[..Encoding.UTF8.GetChars(targetBytes, targetChars)];
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
        Errno errno = Admission.Admit(ledger, client, heap, out long share, out string refusal);
        string? firstBreach = null;
        if (errno == Errno.None)
        {
            errno = ledger.TryCharge(client.Uid, heap.Name, size, share, out refusal, out firstBreach);
        }
        if (errno != Errno.None)
        {
            if (firstBreach is not null)
            {
                logger.QuotaLimit(client.Uid, firstBreach, refusal);
            }
            ledger.CountFailure(heap.Name, client.Uid);
            return Error(client, header, errno, refusal);
        }

        AllocationJob job = Workers?.Rent() ?? inlineJob;
        job.Client = client;
        job.Header = header;
        job.Heap = heap;
        job.Size = size;
        job.NameLength = BufferName(heap, client, nameField, job.Name);
        if (Workers is null)
        {
            job.Run();
            return AllocCompleted(job);
        }
        if (Workers.TryRunInline(job))
        {
            // A heap that has been quick: the kernel's call ran here, and the job goes back at once.
            try
            {
                return AllocCompleted(job);
            }
            finally
            {
                Workers.Return(job);
            }
        }
        // The kernel's call runs on the heap's worker; AllocCompleted makes the reply on this thread.
        Workers.Post(job);
        return OutgoingReply.Pending;
    }

    /// <summary>
    /// The second half of an ALLOC, on the loop's thread once the kernel has
    /// answered: record and observe the buffer, or refund the charge.
    /// </summary>
    public OutgoingReply AllocCompleted(AllocationJob job)
    {
        Connection client = job.Client;
        rstmem_header header = job.Header;
        HeapProvider heap = job.Heap;
        long size = job.Size;
        Errno errno = job.Result;
        if (errno != Errno.None)
        {
            ledger.Refund(client.Uid, heap.Name, size);
            ledger.CountFailure(heap.Name, client.Uid);
            logger.AllocationFailed(size, heap.Name, client.Uid, client.Pid, errno.Name());
            return Error(client, header, errno, $"allocating {size} bytes from {heap.Name}: {errno.Describe()}");
        }
        SafeFd buffer = job.Buffer!;
        long actual = job.Actual;

        try
        {
            errno = ledger.TryRecord(buffer, client.Uid, client.Pid, heap.Name, size, actual, client.Id, out ulong id);
            if (errno != Errno.None)
            {
                buffer.Dispose();
                ledger.CountFailure(heap.Name, client.Uid);
                return Error(client, header, errno, $"cannot track the buffer's release: {errno.Describe()}");
            }
            if (logger.IsEnabled(LogLevel.Information))
            {
                logger.Handed(id, Encoding.UTF8.GetString(job.Name, 0, job.NameLength), actual, heap.Name, client.Uid, client.Pid);
            }

            var reply = new rstmem_alloc_reply { buffer_id = id, size = (ulong)actual };
            unsafe
            {
                Wire.WriteString(Wire.Field(reply.heap, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
            }
            return Ok(client, header, reply, buffer);
        }
        catch
        {
            // Never sent: closing the only descriptor releases the buffer. A recorded buffer's
            // charge comes back when its release is reported; TryRecord refunded an unrecorded one.
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>An ALLOC whose client went away while the kernel worked: the buffer is closed and the charge taken back.</summary>
    public void AllocAbandoned(AllocationJob job)
    {
        job.Buffer?.Dispose();
        ledger.Refund(job.Client.Uid, job.Heap.Name, job.Size);
        if (job.Result != Errno.None)
        {
            ledger.CountFailure(job.Heap.Name, job.Client.Uid);
        }
    }

    private OutgoingReply Free(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        var request = Wire.ReadStruct<rstmem_free_request>(payload, "FREE");
        Errno errno = ledger.Free(client.Id, request.buffer_id, out bool released);
        if (errno != Errno.None)
        {
            return Error(client, header, errno, $"buffer {request.buffer_id} is not held by this connection");
        }
        return Ok(client, header, new rstmem_free_reply { released = released ? 1u : 0u });
    }

    private OutgoingReply Stats(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        if (!payload.IsEmpty)
        {
            throw new ProtocolException($"STATS takes no payload; got {payload.Length} bytes");
        }
        ledger.HandleReleases();
        StatsView view = Admission.Stats(ledger, client, clientCount());
        PacketWriter reply = Begin();
        var totals = new rstmem_stats_reply
        {
            uptime_ms = (ulong)(DateTime.UtcNow - started).TotalMilliseconds,
            allocations = view.Allocations,
            failures = view.Failures,
            live_buffers = view.LiveBuffers,
            live_bytes = view.LiveBytes,
            clients = view.Clients,
            count = (uint)backend.Heaps.Count,
            entry_size = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_heap_stats>(),
            releases = ledger.Released,
            release_latency_p99_us = ledger.ReleaseLatencyMicroseconds(0.99),
            release_latency_max_us = ledger.ReleaseLatencyMaxMicroseconds,
        };
        // Version 1's reply ended before the release fields: its clients find the entries right after it.
        reply.AppendPrefix(totals, client.Version >= 2 ? System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_stats_reply>() : RstmemProtocol.StatsReplyVersion1Size);
        foreach (HeapProvider heap in backend.Heaps.All)
        {
            var usage = view.Heap(heap.Name);
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
            reply.Append(entry);
        }
        return Finish(client, header, reply, null);
    }

    private OutgoingReply Usage(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        if (client.Version < 2)
        {
            return Error(client, header, Errno.ENOSYS, $"USAGE needs protocol version 2; this connection negotiated {client.Version}");
        }
        Errno errno = Admission.Usage(ledger, backend, client, payload, out byte[][] parts, out string refusal);
        return errno == Errno.None ? Ok(client, header, parts) : Error(client, header, errno, refusal);
    }

    private HeapProvider? Resolve(ReadOnlySpan<char> target, uint flags) => flags switch
    {
        RSTMEM_ALLOC_BY_USE_CASE => backend.Heaps.ByUseCase(target),
        RSTMEM_ALLOC_BY_HEAP => backend.Heaps.ByName(target),
        _ => backend.Heaps.ByUseCase(target) ?? backend.Heaps.ByName(target),
    };

    /// <summary>
    /// The buffer's name in UTF-8 with its NUL, in <paramref name="name"/>
    /// (RSTMEM_BUFFER_NAME_LEN bytes); returns its length without the NUL. The
    /// client's <paramref name="requested"/> name as it came when it is valid
    /// UTF-8 (else decoded and re-encoded, as the text the log shows), or
    /// <see cref="DefaultName"/>.
    /// </summary>
    private static int BufferName(HeapProvider heap, Connection client, ReadOnlySpan<byte> requested, Span<byte> name)
    {
        int length;
        if (requested.Length > 0 && System.Text.Unicode.Utf8.IsValid(requested))
        {
            requested.CopyTo(name);
            length = requested.Length;
        }
        else if (requested.Length == 0)
        {
            length = DefaultName(heap, client, name[..^1]);
        }
        else
        {
            string text = Encoding.UTF8.GetString(requested); // invalid UTF-8: replacement characters
            if (!Encoding.UTF8.TryGetBytes(text, name[..^1], out length))
            {
                // Replacement characters made it longer than the field: keep what fits, whole characters only.
                System.Text.Unicode.Utf8.FromUtf16(text, name[..^1], out _, out length);
            }
        }
        name[length] = 0;
        return length;
    }

    /// <summary>
    /// &lt;use case short name&gt;:&lt;pid&gt;:&lt;seq&gt; ("svp:812:3"), or the heap's name
    /// (at most 12 characters) for a plain heap, in UTF-8 straight into
    /// <paramref name="name"/> (no string: every unnamed ALLOC makes one), cut
    /// to fit it at a character's start; its length.
    /// </summary>
    private static int DefaultName(HeapProvider heap, Connection client, Span<byte> name)
    {
        ReadOnlySpan<char> prefix = heap.UseCase is { } useCase ? useCase.ShortName : heap.Name.AsSpan(0, Math.Min(heap.Name.Length, 12));
        // 12 characters of at most 3 bytes, two colons and two numbers of at most 20 digits fit.
        Span<byte> text = stackalloc byte[96];
        if (!System.Text.Unicode.Utf8.TryWrite(text, CultureInfo.InvariantCulture, $"{prefix}:{client.Pid}:{++client.Sequence}", out int length))
        {
            throw new InvalidOperationException($"a default buffer name did not fit {text.Length} bytes");
        }
        if (length > name.Length)
        {
            length = name.Length;
            while (length > 0 && (text[length] & 0xC0) == 0x80)
            {
                length--; // not inside a character
            }
        }
        text[..length].CopyTo(name);
        return length;
    }

    private static uint Generation(KernelGeneration? generation) => generation switch
    {
        KernelGeneration.V4 => RSTMEM_GENERATION_V4,
        KernelGeneration.V6 => RSTMEM_GENERATION_V6,
        KernelGeneration.Mainline => RSTMEM_GENERATION_MAINLINE,
        _ => RSTMEM_GENERATION_NONE,
    };

    /// <summary>A packet with status 0 in the reply buffer; append the reply's structs, then <see cref="Finish"/>.</summary>
    private PacketWriter Begin()
    {
        var writer = new PacketWriter(replyBuffer);
        writer.Append(new rstmem_status());
        return writer;
    }

    private static OutgoingReply Finish(Connection client, rstmem_header header, PacketWriter writer, SafeFd? fd) =>
        new(writer.Finish((ushort)(header.opcode | RSTMEM_REPLY), header.request_id, client.Version), fd);

    private OutgoingReply Ok<T>(Connection client, rstmem_header header, in T value, SafeFd? fd = null) where T : unmanaged
    {
        PacketWriter writer = Begin();
        writer.Append(value);
        return Finish(client, header, writer, fd);
    }

    /// <summary>Status 0 followed by <paramref name="parts"/> as they are.</summary>
    private OutgoingReply Ok(Connection client, rstmem_header header, params ReadOnlySpan<byte[]> parts)
    {
        int length = Wire.Build(replyBuffer, (ushort)(header.opcode | RSTMEM_REPLY), header.request_id, client.Version, [Wire.Ok, .. parts]);
        return new OutgoingReply(length, null);
    }

    private OutgoingReply Error(Connection client, rstmem_header header, Errno errno, string message)
    {
        var writer = new PacketWriter(replyBuffer);
        writer.AppendStatus(errno, message);
        return Finish(client, header, writer, null);
    }
}
