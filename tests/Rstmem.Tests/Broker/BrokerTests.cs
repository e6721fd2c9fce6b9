using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Broker;

/// <summary>
/// The broker on the model, through the real socket, as clients see it. Pool
/// sizes are BrokerFixture's own configuration; the page size is the machine's.
/// </summary>
public sealed class BrokerTests
{
    private static long Page => BrokerFixture.Page;

    [Fact]
    public void Hello_reports_the_backend_generation_page_size_and_the_configured_heaps()
    {
        using var broker = new BrokerFixture("v6");
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        Assert.Equal(RSTMEM_PROTOCOL_VERSION, client.Server.Version);
        Assert.Equal(RSTMEM_BACKEND_MODEL, client.Server.Backend);
        Assert.Equal(RSTMEM_GENERATION_V6, client.Server.Generation);
        Assert.Equal((uint)Environment.SystemPageSize, client.Server.PageSize);
        Assert.Equal((uint)BrokerFixture.HeapCount, client.Server.HeapCount);
        Assert.StartsWith("rstmemd ", client.Server.Server, StringComparison.Ordinal);

        Dictionary<string, HeapInfo> heaps = client.ListHeaps().ToDictionary(h => h.Name);
        Assert.Equal(BrokerFixture.HeapCount, heaps.Count);
        Assert.Equal((ulong)BrokerFixture.SecureVideoBytes, heaps["restricted,secure-video"].TotalBytes);
        Assert.Equal((ulong)BrokerFixture.TrustedUiBytes, heaps["restricted,trusted-ui"].TotalBytes);
        Assert.Equal((ulong)BrokerFixture.CmaHeapBytes, heaps[BrokerFixture.CmaHeapName].TotalBytes);
        Assert.Equal((ulong)BrokerFixture.SystemHeapBytes, heaps["system"].TotalBytes);
        // The dynamic pool has lent nothing yet: no sizes to report.
        Assert.Equal(0u, heaps["restricted,secure-video-record"].Flags & RSTMEM_HEAP_SIZES_KNOWN);
        Assert.All(heaps.Values, h => Assert.Equal(client.Server.PageSize, h.PageSize));
    }

    [Theory]
    [InlineData("mainline", "protected,secure-video")]
    [InlineData("v6", "restricted,secure-video")]
    [InlineData("v4", "secure-video")]
    public void A_use_case_maps_to_whatever_the_generation_provides(string generation, string heap)
    {
        using var broker = new BrokerFixture(generation);
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer buffer = client.Allocate("secure-video", 1 << 20, AllocTarget.UseCase);
        Assert.Equal(heap, buffer.Heap);
        Assert.Equal(1L << 20, buffer.Size);
        Assert.Equal(Errno.None, Interop.Sys.TryLSeek(buffer.Fd, 0, Fcntl.SEEK_END, out long size));
        Assert.Equal(1L << 20, size);
        Assert.True(Interop.Sys.IsCloseOnExec(buffer.Fd));
        Assert.Contains(client.ListHeaps(), h => h.UseCase == "secure-video" && h.Name == heap);
    }

    [Fact]
    public void A_v4_model_offers_its_plain_heaps_beside_the_use_cases()
    {
        using var broker = new BrokerFixture("v4");
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer buffer = client.Allocate("system", Page + 1, AllocTarget.Heap);
        Assert.Equal(2 * Page, buffer.Size);
        Assert.Contains(client.ListHeaps(), h => h.Name == BrokerFixture.CmaHeapName);
    }

    [Fact]
    public void A_heap_whose_name_the_protocol_cannot_carry_is_skipped_not_fatal()
    {
        string longName = "vendor_" + new string('x', 70);
        using var broker = new BrokerFixture("mainline", configure: o => o.CmaHeapName = longName);
        Assert.Contains(broker.Selection.Notes, n => n.Contains("skipped: the protocol carries heap names of at most 63 bytes", StringComparison.Ordinal));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        Assert.DoesNotContain(client.ListHeaps(), h => h.Name.StartsWith("vendor_", StringComparison.Ordinal));
        using AllocatedBuffer buffer = client.Allocate("secure-video", Page);
    }

    [Fact]
    public void Sizes_are_page_rounded_and_buffers_named_after_the_client()
    {
        using var broker = new BrokerFixture();
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer system = client.Allocate("system", Page + 1, AllocTarget.Heap);
        Assert.Equal(2 * Page, system.Size);
        using AllocatedBuffer video = client.Allocate("secure-video", Page);
        Assert.Equal(Page, video.Size);
        using AllocatedBuffer named = client.Allocate("secure-video", 1, name: "decoder-out-7");
        Assert.Equal(Page, named.Size);
        // The model sees its own buffers through the received descriptors.
        Assert.Equal($"svp:{Environment.ProcessId}:2", broker.Model.FdInfo(video.Fd)["name"]);
        Assert.Equal("decoder-out-7", broker.Model.FdInfo(named.Fd)["name"]);
        Assert.Equal($"system:{Environment.ProcessId}:1", broker.Model.FdInfo(system.Fd)["name"]);
    }

    [Fact]
    public void The_daemon_keeps_no_copy_and_sees_the_last_close()
    {
        using var broker = new BrokerFixture();
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        long free = broker.Model.PoolCounters("secure-video").FreeBytes;
        AllocatedBuffer buffer = client.Allocate("secure-video", 1 << 20);
        // The daemon closes its copy right after sendmsg: ours becomes the only descriptor.
        WaitFor(() => broker.Model.FdInfo(buffer.Fd)["count"], count => count == "1");
        DaemonStats before = client.Stats();
        Assert.Equal((1ul, 0ul, 0ul, 0ul), (before.LiveBuffers, before.Releases, before.ReleaseLatencyP99Us, before.ReleaseLatencyMaxUs));

        Assert.False(client.Free(buffer.Id)); // still held: not released
        buffer.Dispose();
        Assert.Equal(free, broker.Model.PoolCounters("secure-video").FreeBytes);
        DaemonStats stats = WaitFor(() => client.Stats(), s => s.LiveBuffers == 0);
        Assert.Equal(0ul, stats.LiveBytes);
        // The release is counted with its latency (an upper bound, so at least a microsecond).
        Assert.Equal(1ul, stats.Releases);
        Assert.True(stats.ReleaseLatencyP99Us >= 1 && stats.ReleaseLatencyMaxUs >= 1,
            $"release latency p99 {stats.ReleaseLatencyP99Us} us, max {stats.ReleaseLatencyMaxUs} us");
        var error = Assert.Throws<RstmemException>(() => client.Free(buffer.Id));
        Assert.Equal(Errno.ENOENT, error.Errno);
    }

    /// <summary>Loggers that fail the first time one event is logged, as a broken log sink would; everything else is dropped.</summary>
    private sealed class FailingOnEvent(string eventName) : ILoggerFactory, ILogger
    {
        private int failed;

        public ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Name == eventName && Interlocked.Exchange(ref failed, 1) == 0)
            {
                throw new InvalidOperationException($"the log sink failed on {eventName}");
            }
        }

        public void Dispose()
        {
        }
    }

    [Fact]
    public void A_buffer_recorded_but_never_sent_is_closed_and_its_charge_taken_back()
    {
        // The ALLOC fails after the ledger recorded the buffer (its log line throws): the
        // client is dropped, and the buffer must not stay open in the daemon, charged for ever.
        using var broker = new BrokerFixture(limits: new BrokerLimits(MaxBuffersPerUser: 1, MaxBytesPerUser: 1L << 40, MaxConnectionsPerUser: 64),
            loggers: new FailingOnEvent(nameof(BrokerLog.Handed)));
        long free = broker.Model.PoolCounters("secure-video").FreeBytes;
        using RstmemClient probe = RstmemClient.Connect(broker.SocketPath);
        // No garbage collection meanwhile: a descriptor the daemon forgot would be closed by a
        // finalizer sooner or later, hiding the leak.
        DaemonStats stats = WithoutGarbageCollection(() =>
        {
            using (RstmemClient failing = RstmemClient.Connect(broker.SocketPath))
            {
                var dropped = Assert.Throws<RstmemException>(() => failing.Allocate("secure-video", 1 << 20));
                Assert.Contains("closed", dropped.Message, StringComparison.Ordinal);
            }
            return WaitFor(() => probe.Stats(), s => s.Releases == 1);
        });
        Assert.Equal((1ul, 0ul, 0ul), (stats.Allocations, stats.LiveBuffers, stats.LiveBytes));
        Assert.Equal(free, broker.Model.PoolCounters("secure-video").FreeBytes);
        // The user's one buffer is free to take again: no charge was left behind (MaxBuffersPerUser 1).
        using AllocatedBuffer again = probe.Allocate("secure-video", 1 << 20);
        Assert.Equal(1 << 20, again.Size);
    }

    [Fact]
    public void A_buffer_another_connection_holds_cannot_be_freed()
    {
        using var broker = new BrokerFixture();
        using RstmemClient owner = RstmemClient.Connect(broker.SocketPath);
        using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer buffer = owner.Allocate("system", Page);
        Assert.Equal(Errno.ENOENT, Assert.Throws<RstmemException>(() => other.Free(buffer.Id)).Errno);
        Assert.Equal(Errno.ENOENT, Assert.Throws<RstmemException>(() => other.Free(999)).Errno);
    }

    public static TheoryData<string, long, Errno> Refusals => new()
    {
        { "nosuch", BrokerFixture.Page, Errno.ENOENT },
        { "secure-video", BrokerFixture.SecureVideoBytes + BrokerFixture.Page, Errno.ENOMEM },
        { "trusted-ui", BrokerFixture.TrustedUiBytes + BrokerFixture.Page, Errno.ENOMEM },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void Refusals_carry_the_errno_and_a_message(string target, long size, Errno expected)
    {
        using var broker = new BrokerFixture();
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        var error = Assert.Throws<RstmemException>(() => client.Allocate(target, size));
        Assert.Equal(expected, error.Errno);
        Assert.Contains(target, error.Message, StringComparison.Ordinal);
        using AllocatedBuffer fine = client.Allocate("system", Page); // the connection is still good
    }

    [Fact]
    public void The_per_user_quota_refuses_with_EDQUOT_until_buffers_are_closed()
    {
        using var broker = new BrokerFixture(limits: new BrokerLimits(MaxBuffersPerUser: 2, MaxBytesPerUser: 1L << 30, MaxConnectionsPerUser: 8));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        AllocatedBuffer first = client.Allocate("system", Page);
        using AllocatedBuffer second = client.Allocate("system", Page);
        var error = Assert.Throws<RstmemException>(() => client.Allocate("system", Page));
        Assert.Equal(Errno.EDQUOT, error.Errno);
        Assert.Contains("limits are 2 buffers", error.Message, StringComparison.Ordinal);
        first.Dispose();
        using AllocatedBuffer third = client.Allocate("system", Page);
    }

    [Fact]
    public void The_per_user_byte_limit_counts_page_rounded_sizes()
    {
        using var broker = new BrokerFixture(limits: new BrokerLimits(MaxBuffersPerUser: 100, MaxBytesPerUser: 4 * Page, MaxConnectionsPerUser: 8));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer three = client.Allocate("system", (2 * Page) + 1); // three pages charged
        var error = Assert.Throws<RstmemException>(() => client.Allocate("system", Page + 1));
        Assert.Equal(Errno.EDQUOT, error.Errno);
        Assert.Contains($"limits are 100 buffers and {4 * Page} bytes", error.Message, StringComparison.Ordinal);
        using AllocatedBuffer last = client.Allocate("system", Page);
    }

    [Fact]
    public void Requests_the_protocol_does_not_allow_get_the_documented_errors()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);

        raw.Send(RawClient.Packet(RSTMEM_OP_HELLO, 1, Wire.Bytes(new rstmem_hello_request { min_version = RSTMEM_PROTOCOL_VERSION + 1, max_version = RSTMEM_PROTOCOL_VERSION + 2 })));
        var reply = raw.Receive();
        Assert.Equal((ushort)(RSTMEM_OP_HELLO | RSTMEM_REPLY), reply.Header.opcode);
        Assert.Equal((1u, Errno.EPROTONOSUPPORT), (reply.Header.request_id, reply.Error));

        raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 2, [], version: 7));
        Assert.Equal(Errno.EPROTONOSUPPORT, raw.Receive().Error);

        raw.Send(RawClient.Packet(99, 3, []));
        reply = raw.Receive();
        Assert.Equal((3u, Errno.ENOSYS), (reply.Header.request_id, reply.Error));

        var zero = new rstmem_alloc_request { size = 0 };
        unsafe
        {
            Wire.WriteString(Wire.Field(zero.target, RSTMEM_HEAP_NAME_LEN), "system", "target");
        }
        raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 4, Wire.Bytes(zero)));
        reply = raw.Receive();
        Assert.Equal(Errno.EINVAL, reply.Error);
        Assert.Empty(reply.Fds);

        zero.size = (ulong)Page;
        zero.flags = RSTMEM_ALLOC_BY_HEAP | RSTMEM_ALLOC_BY_USE_CASE;
        raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 5, Wire.Bytes(zero)));
        Assert.Equal(Errno.EINVAL, raw.Receive().Error);

        // Still connected after all of that.
        raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 6, []));
        Assert.Equal(Errno.None, raw.Receive().Error);
    }

    private static int AllocRequestSize => Unsafe.SizeOf<rstmem_alloc_request>();

    /// <summary>Each malformed packet, and the reason the daemon must give (so each case fails for its own reason).</summary>
    public static TheoryData<string, byte[], string> Garbage => new()
    {
        { "short", [1, 2, 3], $"packet of 3 bytes is shorter than the {Wire.HeaderSize}-byte header" },
        { "bad magic", [.. RawClient.Packet(RSTMEM_OP_STATS, 1, []).Select((b, i) => i == 0 ? (byte)0 : b)], "bad magic" },
        { "length mismatch", [.. RawClient.Packet(RSTMEM_OP_STATS, 1, []), 0, 0], "payload_length 0 does not match the 2 bytes that came" },
        { "short struct", RawClient.Packet(RSTMEM_OP_ALLOC, 1, new byte[AllocRequestSize - 1]), $"ALLOC payload is {AllocRequestSize - 1} bytes; expected {AllocRequestSize}" },
        { "unterminated target", RawClient.Packet(RSTMEM_OP_ALLOC, 1, Enumerable.Repeat((byte)'a', AllocRequestSize).ToArray()), "ALLOC target has no terminating NUL" },
        { "oversized", new byte[RSTMEM_MAX_PACKET + 100], $"packet longer than {RSTMEM_MAX_PACKET} bytes" },
    };

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Garbage_gets_EBADMSG_and_the_connection_is_dropped_while_others_are_served(string what, byte[] packet, string reason)
    {
        using var broker = new BrokerFixture();
        using RstmemClient bystander = RstmemClient.Connect(broker.SocketPath);
        using var raw = new RawClient(broker.SocketPath);
        raw.Send(packet);
        var reply = raw.Receive();
        Assert.Equal(Errno.EBADMSG, reply.Error);
        Assert.Contains(reason, reply.Message, StringComparison.Ordinal);
        Assert.True(raw.IsClosedByPeer(), what);
        using AllocatedBuffer buffer = bystander.Allocate("system", Page);
    }

    [Fact]
    public void A_request_carrying_descriptors_is_refused_and_they_are_closed()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        string name = $"smuggled-{Guid.NewGuid():N}";
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate(name, 0, out SafeFd memfd));
        using (memfd)
        {
            raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 1, []), memfd);
            Assert.Equal(Errno.EBADMSG, raw.Receive().Error);
            Assert.True(raw.IsClosedByPeer());
            // The broker runs in this process: the copy it received is closed before it replied.
            Assert.Equal(1, DescriptorsOf($"/memfd:{name} (deleted)"));
        }
    }

    [Fact]
    public void A_client_that_disconnects_before_reading_its_reply_leaves_nothing_allocated()
    {
        using var broker = new BrokerFixture();
        using RstmemClient probe = RstmemClient.Connect(broker.SocketPath);

        // A buffer handed out and waiting, unread, in the client's socket when it closes.
        using (var raw = new RawClient(broker.SocketPath))
        {
            raw.Send(AllocPacket(1, "secure-video", Page));
            WaitFor(() => probe.Stats(), s => s.Allocations == 1);
        }
        // Buffers filling the client's socket, and one more held by the daemon, when it closes.
        using StalledClient stalled = StalledClient.Establish(broker.SocketPath, id => AllocPacket(id, "secure-video", Page));
        Assert.True(probe.Stats().Allocations >= 3, "buffers were handed out to the stalled client before it closed");

        // Every release is queued when close(2) returns, and Settled's last round trip is answered
        // after the daemon saw both hang-ups: no waiting. Nor any garbage collection meanwhile: a
        // descriptor the daemon forgot would be closed by a finalizer sooner or later, hiding the leak.
        DaemonStats stats = WithoutGarbageCollection(() =>
        {
            stalled.Dispose();
            return Settled(probe);
        });
        Assert.Equal((0ul, 1u), (stats.LiveBuffers, stats.Clients));
        PoolCounters pool = broker.Model.PoolCounters("secure-video");
        Assert.Equal(BrokerFixture.SecureVideoBytes, pool.TotalBytes);
        Assert.Equal(pool.TotalBytes, pool.FreeBytes);
    }

    [Fact]
    public async Task A_stalled_client_does_not_delay_others()
    {
        using var broker = new BrokerFixture();
        int replyLength = StatsReplyLength(broker.SocketPath);
        using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
        using StalledClient stalled = StalledClient.Establish(broker.SocketPath, StatsPacket);
        int unread = stalled.Raw.UnreadBytes();

        // The daemon now holds the stalled client's next reply; the other client is served meanwhile.
        const int Allocations = 50;
        await Task.Run(() =>
        {
            for (int i = 0; i < Allocations; i++)
            {
                using AllocatedBuffer buffer = other.Allocate("system", Page);
            }
        }, TestContext.Current.CancellationToken).WaitAsync(GiveUp.After, TestContext.Current.CancellationToken);

        Assert.Equal(unread, stalled.Raw.UnreadBytes()); // nothing reached the stalled client meanwhile
        Assert.Equal(0, unread % replyLength);
        int delivered = unread / replyLength;
        List<(Errno Error, byte[] Body)> replies = stalled.ReadAll();
        Assert.All(replies, r => Assert.Equal(Errno.None, r.Error));
        Assert.True(delivered + 1 < replies.Count, $"{delivered} replies delivered of {replies.Count}: the stalled client had requests left unread");
        // The held reply was computed before the other client's allocations; the next request was read only after all of them.
        Assert.Equal(0ul, StalledClient.StatsOf(replies[delivered].Body).allocations);
        rstmem_stats_reply next = StalledClient.StatsOf(replies[delivered + 1].Body);
        Assert.Equal((ulong)Allocations, next.allocations);
        Assert.Equal(2u, next.clients);
    }

    [Fact]
    public void A_client_that_sends_without_reading_fills_its_own_socket_not_the_daemons_memory()
    {
        using var broker = new BrokerFixture();
        int replyLength = StatsReplyLength(broker.SocketPath);
        using RstmemClient probe = RstmemClient.Connect(broker.SocketPath);
        using StalledClient stalled = StalledClient.Establish(broker.SocketPath, StatsPacket);
        int unread = stalled.Raw.UnreadBytes();
        Assert.Equal(0, unread % replyLength);
        int delivered = unread / replyLength;

        // A mark in the daemon's counters: replies computed from here on show one allocation.
        probe.Allocate("system", Page).Dispose();
        List<(Errno Error, byte[] Body)> replies = stalled.ReadAll();
        int computedBefore = replies.TakeWhile(r => StalledClient.StatsOf(r.Body).allocations == 0).Count();

        // Its socket took `delivered` replies; the daemon computed one more, held it, and read no further.
        Assert.Equal(delivered + 1, computedBefore);
        Assert.True(computedBefore < stalled.Sent, $"all {stalled.Sent} requests were answered before the client read");
        Assert.All(replies.Skip(computedBefore), r => Assert.Equal(1ul, StalledClient.StatsOf(r.Body).allocations));
    }

    [Fact]
    public void Killing_clients_mid_request_never_takes_the_daemon_down()
    {
        using var broker = new BrokerFixture();
        string loadgen = Path.Combine(RepoPaths.Root, "build", "native", "rstmem-bench-client");
        Assert.True(File.Exists(loadgen), $"{loadgen} is missing: ./build.sh builds it");
        using RstmemClient observer = RstmemClient.Connect(broker.SocketPath);
        string size = (16 * Page).ToString(System.Globalization.CultureInfo.InvariantCulture);
        for (int round = 0; round < 3; round++)
        {
            ulong before = observer.Stats().Allocations;
            using var process = Process.Start(new ProcessStartInfo(loadgen, ["--socket", broker.SocketPath, "--clients", "4", "--size", size, "--seconds", "600", "--target", "secure-video"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            try
            {
                // Killed once the daemon is handing it buffers: mid-run, with requests in flight.
                var seen = WaitFor(() => (observer.Stats().Allocations, process.HasExited), s => s.Allocations > before || s.HasExited);
                if (seen.HasExited)
                {
                    Assert.Fail($"the load generator exited before it got a buffer: {process.StandardError.ReadToEnd()}");
                }
            }
            finally
            {
                process.Kill();
                process.WaitForExit();
            }
        }
        // The killed process's descriptors were closed before it was reaped.
        DaemonStats stats = Settled(observer);
        Assert.Equal((0ul, 1u), (stats.LiveBuffers, stats.Clients));
        PoolCounters pool = broker.Model.PoolCounters("secure-video");
        Assert.Equal(BrokerFixture.SecureVideoBytes, pool.TotalBytes);
        Assert.Equal(pool.TotalBytes, pool.FreeBytes);
    }

    /// <summary>
    /// STATS once whatever happened before this call (a hang-up, a last close) has been handled:
    /// after three turns of the daemon's loop. A connection still in the listen backlog is
    /// accepted in one turn and polled (found hung up) in the next, where the asking client may
    /// be answered first. The daemon reads at most PacketsPerTurn requests of one client per
    /// turn, so that many round trips and one more always reach a later turn.
    /// </summary>
    private static DaemonStats Settled(RstmemClient client)
    {
        for (int i = 0; i < 2 * BrokerServer.PacketsPerTurn; i++)
        {
            client.Stats();
        }
        return client.Stats();
    }

    /// <summary>
    /// Runs <paramref name="action"/> with no garbage collection in this process, as far as the
    /// runtime grants it: other tests allocating 64 MiB meanwhile end the region early, which can
    /// only hide a leak, never report one that is not there.
    /// </summary>
    private static T WithoutGarbageCollection<T>(Func<T> action)
    {
        bool region = GC.TryStartNoGCRegion(64L << 20);
        try
        {
            return action();
        }
        finally
        {
            if (region && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
            {
                GC.EndNoGCRegion();
            }
        }
    }

    /// <summary>This process's descriptors open on the file /proc/self/fd names <paramref name="target"/>.</summary>
    private static int DescriptorsOf(string target) =>
        Directory.GetFileSystemEntries("/proc/self/fd").Count(fd => new FileInfo(fd).LinkTarget == target);

    private static byte[] StatsPacket(uint id) => RawClient.Packet(RSTMEM_OP_STATS, id, []);

    private static byte[] AllocPacket(uint id, string target, long size)
    {
        var request = new rstmem_alloc_request { size = (ulong)size };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), target, "target");
        }
        return RawClient.Packet(RSTMEM_OP_ALLOC, id, Wire.Bytes(request));
    }

    /// <summary>The length of a STATS reply from this broker (every one is the same length), measured by asking.</summary>
    private static int StatsReplyLength(string socketPath)
    {
        using var raw = new RawClient(socketPath);
        raw.Send(StatsPacket(1));
        var reply = raw.Receive();
        Assert.Equal(Errno.None, reply.Error);
        return Wire.HeaderSize + (int)reply.Header.payload_length;
    }

    [Fact]
    public void A_client_written_only_from_docs_protocol_md_allocates_and_receives_fds()
    {
        using var broker = new BrokerFixture();
        string script = Path.Combine(RepoPaths.Root, "tests", "protocol", "doc_client.py");
        ProcessResult result = ProcessRunner.Run("python3", [script, broker.SocketPath, "alloc", "secure-video", "1048576", "from-python"]);
        Assert.True(result.ExitCode == 0, result.ToString());
        using JsonDocument reply = JsonDocument.Parse(result.Stdout);
        Assert.Equal(1048576, reply.RootElement.GetProperty("size").GetInt64());
        Assert.Equal(1048576, reply.RootElement.GetProperty("lseek_size").GetInt64());
        Assert.Equal("protected,secure-video", reply.RootElement.GetProperty("heap").GetString());

        result = ProcessRunner.Run("python3", [script, broker.SocketPath, "alloc", "nosuch", "4096"]);
        Assert.Equal(3, result.ExitCode);
        Assert.Contains("\"error\": 2", result.Stdout, StringComparison.Ordinal);
    }

    /// <summary>
    /// Reads until <paramref name="done"/> holds: for what the daemon learns
    /// asynchronously (a release seen through inotify). The bound only ends a
    /// test that would otherwise hang; passing never depends on it.
    /// </summary>
    private static T WaitFor<T>(Func<T> read, Func<T, bool> done)
    {
        var giveUp = Stopwatch.StartNew();
        T value = read();
        while (!done(value) && giveUp.Elapsed < GiveUp.After)
        {
            Thread.Sleep(20);
            value = read();
        }
        Assert.True(done(value), $"condition not reached within {GiveUp.After.TotalSeconds} s (the give-up bound): {value}");
        return value;
    }
}
