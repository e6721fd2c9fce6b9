using System.Diagnostics;
using System.Text.Json;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Broker;

/// <summary>The broker on the model, through the real socket, as clients see it.</summary>
public sealed class BrokerTests
{
    [Fact]
    public void Hello_reports_the_backend_and_generation()
    {
        using var broker = new BrokerFixture("v6");
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        Assert.Equal(1, client.Server.Version);
        Assert.Equal(RSTMEM_BACKEND_MODEL, client.Server.Backend);
        Assert.Equal(RSTMEM_GENERATION_V6, client.Server.Generation);
        Assert.Equal(4096u, client.Server.PageSize);
        Assert.Equal(5u, client.Server.HeapCount);
        Assert.StartsWith("rstmemd ", client.Server.Server, StringComparison.Ordinal);
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
        using AllocatedBuffer buffer = client.Allocate("system", 5000, AllocTarget.Heap);
        Assert.Equal(8192, buffer.Size);
        Assert.Contains(client.ListHeaps(), h => h.Name == "reserved");
    }

    [Fact]
    public void A_heap_whose_name_the_protocol_cannot_carry_is_skipped_not_fatal()
    {
        string longName = "vendor_" + new string('x', 70);
        using var broker = new BrokerFixture("mainline", configure: o => o.CmaHeapName = longName);
        Assert.Contains(broker.Selection.Notes, n => n.Contains("skipped: the protocol carries heap names of at most 63 bytes", StringComparison.Ordinal));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        Assert.DoesNotContain(client.ListHeaps(), h => h.Name.StartsWith("vendor_", StringComparison.Ordinal));
        using AllocatedBuffer buffer = client.Allocate("secure-video", 4096);
    }

    [Fact]
    public void Sizes_are_page_rounded_and_buffers_named_after_the_client()
    {
        using var broker = new BrokerFixture();
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer system = client.Allocate("system", 5000, AllocTarget.Heap);
        Assert.Equal(8192, system.Size);
        using AllocatedBuffer video = client.Allocate("secure-video", 4096);
        using AllocatedBuffer named = client.Allocate("secure-video", 4096, name: "decoder-out-7");
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
        Assert.Equal(1ul, client.Stats().LiveBuffers);

        Assert.False(client.Free(buffer.Id)); // still held: not released
        buffer.Dispose();
        Assert.Equal(free, broker.Model.PoolCounters("secure-video").FreeBytes);
        DaemonStats stats = WaitFor(() => client.Stats(), s => s.LiveBuffers == 0);
        Assert.Equal(0ul, stats.LiveBytes);
        var error = Assert.Throws<RstmemException>(() => client.Free(buffer.Id));
        Assert.Equal(Errno.ENOENT, error.Errno);
    }

    [Fact]
    public void A_buffer_another_connection_holds_cannot_be_freed()
    {
        using var broker = new BrokerFixture();
        using RstmemClient owner = RstmemClient.Connect(broker.SocketPath);
        using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
        using AllocatedBuffer buffer = owner.Allocate("system", 4096);
        Assert.Equal(Errno.ENOENT, Assert.Throws<RstmemException>(() => other.Free(buffer.Id)).Errno);
        Assert.Equal(Errno.ENOENT, Assert.Throws<RstmemException>(() => other.Free(999)).Errno);
    }

    public static TheoryData<string, long, Errno> Refusals => new()
    {
        { "nosuch", 4096, Errno.ENOENT },
        { "secure-video", 65L << 20, Errno.ENOMEM },
        { "trusted-ui", 17L << 20, Errno.ENOMEM },
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
        using AllocatedBuffer fine = client.Allocate("system", 4096); // the connection is still good
    }

    [Fact]
    public void The_per_user_quota_refuses_with_EDQUOT_until_buffers_are_closed()
    {
        using var broker = new BrokerFixture(limits: new BrokerLimits(MaxBuffersPerUser: 2, MaxBytesPerUser: 1L << 30, MaxConnectionsPerUser: 8));
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        AllocatedBuffer first = client.Allocate("system", 4096);
        using AllocatedBuffer second = client.Allocate("system", 4096);
        var error = Assert.Throws<RstmemException>(() => client.Allocate("system", 4096));
        Assert.Equal(Errno.EDQUOT, error.Errno);
        Assert.Contains("limits are 2 buffers", error.Message, StringComparison.Ordinal);
        first.Dispose();
        using AllocatedBuffer third = client.Allocate("system", 4096);
    }

    [Fact]
    public void Requests_the_protocol_does_not_allow_get_the_documented_errors()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);

        raw.Send(RawClient.Packet(RSTMEM_OP_HELLO, 1, Wire.Bytes(new rstmem_hello_request { min_version = 2, max_version = 3 })));
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

        zero.size = 4096;
        zero.flags = RSTMEM_ALLOC_BY_HEAP | RSTMEM_ALLOC_BY_USE_CASE;
        raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 5, Wire.Bytes(zero)));
        Assert.Equal(Errno.EINVAL, raw.Receive().Error);

        // Still connected after all of that.
        raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 6, []));
        Assert.Equal(Errno.None, raw.Receive().Error);
    }

    public static TheoryData<string, byte[]> Garbage => new()
    {
        { "short", [1, 2, 3] },
        { "bad magic", [.. RawClient.Packet(RSTMEM_OP_STATS, 1, []).Select((b, i) => i == 0 ? (byte)0 : b)] },
        { "length mismatch", [.. RawClient.Packet(RSTMEM_OP_STATS, 1, []), 0, 0] },
        { "short struct", RawClient.Packet(RSTMEM_OP_ALLOC, 1, new byte[40]) },
        { "unterminated target", RawClient.Packet(RSTMEM_OP_ALLOC, 1, Enumerable.Repeat((byte)'a', 112).ToArray()) },
        { "oversized", new byte[RSTMEM_MAX_PACKET + 100] },
    };

    [Theory]
    [MemberData(nameof(Garbage))]
    public void Garbage_gets_EBADMSG_and_the_connection_is_dropped_while_others_are_served(string what, byte[] packet)
    {
        using var broker = new BrokerFixture();
        using RstmemClient bystander = RstmemClient.Connect(broker.SocketPath);
        using var raw = new RawClient(broker.SocketPath);
        raw.Send(packet);
        Assert.Equal(Errno.EBADMSG, raw.Receive().Error);
        Assert.True(raw.IsClosedByPeer(), what);
        using AllocatedBuffer buffer = bystander.Allocate("system", 4096);
    }

    [Fact]
    public void A_request_carrying_descriptors_is_refused_and_they_are_closed()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("smuggled", 0, out SafeFd memfd));
        using (memfd)
        {
            raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 1, []), memfd);
            Assert.Equal(Errno.EBADMSG, raw.Receive().Error);
            Assert.True(raw.IsClosedByPeer());
        }
    }

    [Fact]
    public void A_client_that_disconnects_before_its_reply_leaves_nothing_allocated()
    {
        using var broker = new BrokerFixture();
        long free = broker.Model.PoolCounters("secure-video").FreeBytes;
        var request = new rstmem_alloc_request { size = 1 << 20 };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), "secure-video", "target");
        }
        for (int i = 0; i < 20; i++)
        {
            using var raw = new RawClient(broker.SocketPath);
            raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 1, Wire.Bytes(request)));
        }
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        WaitFor(() => client.Stats(), s => s.LiveBuffers == 0 && s.Clients == 1);
        Assert.Equal(free, broker.Model.PoolCounters("secure-video").FreeBytes);
    }

    [Fact]
    public void A_stalled_client_does_not_delay_others()
    {
        using var broker = new BrokerFixture();
        using var stalled = new RawClient(broker.SocketPath);
        // Fill the stalled client's receive queue with replies it never reads.
        for (uint i = 0; i < 2000; i++)
        {
            if (Interop.Sys.TrySendMessage(stalled.Socket, RawClient.Packet(RSTMEM_OP_STATS, i, []), [], Sockets.MSG_DONTWAIT, out _) != Errno.None)
            {
                break;
            }
        }
        var clock = Stopwatch.StartNew();
        using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
        for (int i = 0; i < 50; i++)
        {
            using AllocatedBuffer buffer = other.Allocate("system", 4096);
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the other client was served");
        Assert.Equal(2u, other.Stats().Clients);
    }

    [Fact]
    public void A_client_that_sends_without_reading_fills_its_own_socket_not_the_daemons_memory()
    {
        using var broker = new BrokerFixture();
        using var stalled = new RawClient(broker.SocketPath);
        int sent = 0;
        for (uint i = 0; i < 50_000; i++, sent++)
        {
            if (Interop.Sys.TrySendMessage(stalled.Socket, RawClient.Packet(RSTMEM_OP_STATS, i, []), [], Sockets.MSG_DONTWAIT, out _) != Errno.None)
            {
                // The daemon stopped reading: the client's own queue is full.
                Thread.Sleep(200);
                if (Interop.Sys.TrySendMessage(stalled.Socket, RawClient.Packet(RSTMEM_OP_STATS, i, []), [], Sockets.MSG_DONTWAIT, out _) != Errno.None)
                {
                    break;
                }
            }
        }
        Assert.True(sent < 50_000, "the daemon kept reading from a client that does not read");
        Assert.InRange(broker.Server.QueuedReplies, 0, 1);
    }

    [Fact]
    public void Killing_clients_mid_request_never_takes_the_daemon_down()
    {
        using var broker = new BrokerFixture();
        string loadgen = Path.Combine(RepoPaths.Root, "build", "native", "rstmem-bench-client");
        Assert.True(File.Exists(loadgen), $"{loadgen} is missing: ./build.sh builds it");
        for (int round = 0; round < 3; round++)
        {
            using var process = Process.Start(new ProcessStartInfo(loadgen, ["--socket", broker.SocketPath, "--clients", "4", "--size", "65536", "--seconds", "30"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            })!;
            Thread.Sleep(300);
            process.Kill();
            process.WaitForExit();
        }
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        DaemonStats stats = WaitFor(() => client.Stats(), s => s.LiveBuffers == 0 && s.Clients == 1);
        Assert.True(stats.Allocations > 0, "the load generator got buffers before it was killed");
        Assert.Equal(64L << 20, broker.Model.PoolCounters("secure-video").FreeBytes);
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

    private static T WaitFor<T>(Func<T> read, Func<T, bool> done)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        T value = read();
        while (!done(value) && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(20);
            value = read();
        }
        Assert.True(done(value), $"condition not reached: {value}");
        return value;
    }
}
