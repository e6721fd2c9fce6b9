using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;
using static Rstmem.Daemon.Protocol.RstmemHeapIoctlProtocol;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Broker;

/// <summary>
/// HEAP_IOCTL (docs/protocol.md §10), the operation librstmem-preload.so
/// sends for a program's own ioctl on a heap node: through the real socket,
/// against the model, and compared with what the same kernel (the model the
/// broker serves) answers to the same bytes directly.
/// </summary>
public sealed class HeapIoctlTests
{
    private const int FdOffset = 8; // offsetof(struct dma_heap_allocation_data, fd)

    private static long Page => BrokerFixture.Page;

    private static uint Alloc => DmaHeap.DMA_HEAP_IOCTL_ALLOC;

    /// <summary>_IOWR('H', 0, a struct of <paramref name="size"/> bytes): the selftest's older and newer compat requests.</summary>
    private static uint AllocOfSize(uint size) => Ioc._IOC(Ioc._IOC_READ | Ioc._IOC_WRITE, DmaHeap.DMA_HEAP_IOC_MAGIC, 0, size);

    private static byte[] Argument(int size, ulong len, uint fdFlags, ulong heapFlags = 0, byte fill = 0)
    {
        byte[] argument = Enumerable.Repeat(fill, size).ToArray();
        Span<byte> full = stackalloc byte[24];
        MemoryMarshal.Write(full, new dma_heap_allocation_data { len = len, fd_flags = fdFlags, heap_flags = heapFlags });
        full[..Math.Min(24, size)].CopyTo(argument);
        return argument;
    }

    private static byte[] Packet(uint id, string heap, uint request, byte[] argument, uint? argSize = null, uint flags = 0)
    {
        var header = new rstmem_heap_ioctl_request { request = request, arg_size = argSize ?? (uint)argument.Length, flags = flags };
        unsafe
        {
            Wire.WriteString(Wire.Field(header.heap, RSTMEM_HEAP_NAME_LEN), heap, "heap");
        }
        return RawClient.Packet(RSTMEM_OP_HEAP_IOCTL, id, [.. Wire.Bytes(header), .. argument]);
    }

    private sealed record Answer(Errno Status, string Message, rstmem_heap_ioctl_reply Reply, byte[] Argument, SafeFd? Fd) : IDisposable
    {
        public void Dispose() => Fd?.Dispose();
    }

    private static Answer Ask(RawClient raw, uint id, string heap, uint request, byte[] argument)
    {
        raw.Send(Packet(id, heap, request, argument));
        var (header, error, message, body, fds) = raw.Receive();
        Assert.Equal(RSTMEM_OP_HEAP_IOCTL | RSTMEM_REPLY, header.opcode);
        Assert.True(fds.Length <= 1, $"{fds.Length} descriptors in one reply");
        SafeFd? fd = fds.Length == 1 ? fds[0] : null;
        if (error != Errno.None)
        {
            Assert.Null(fd);
            return new Answer(error, message, default, [], null);
        }
        int fixedSize = Unsafe.SizeOf<rstmem_heap_ioctl_reply>();
        var reply = MemoryMarshal.Read<rstmem_heap_ioctl_reply>(body);
        Assert.Equal(fixedSize + argument.Length, body.Length);
        Assert.Equal((uint)argument.Length, reply.arg_size);
        Assert.Equal(fd is not null, reply.fd_offset != RSTMEM_HEAP_IOCTL_NO_FD);
        return new Answer(Errno.None, "", reply, body[fixedSize..], fd);
    }

    /// <summary>The same request straight on the model's node, as the kernel the broker serves answers it.</summary>
    private static (Errno Errno, byte[] Argument) Direct(BrokerFixture broker, string heap, uint request, byte[] argument)
    {
        byte[] copy = [.. argument];
        Assert.Equal(Errno.None, broker.Model.Open(DevicePaths.HeapNode(heap), Fcntl.O_RDONLY, out SafeFd node));
        using (node)
        {
            Errno errno = broker.Model.Ioctl(node, request, copy, out _);
            if (errno == Errno.None)
            {
                SafeFd.DangerousAdopt((int)MemoryMarshal.Read<uint>(copy.AsSpan(FdOffset))).Dispose();
            }
            return (errno, copy);
        }
    }

    private static PoolCounters Counters(BrokerFixture broker) => ((IPoolStatistics)broker.Model).TryGetCounters("system")!;

    [Theory]
    [InlineData("system", 24, Fcntl.O_RDWR | Fcntl.O_CLOEXEC)]
    [InlineData(BrokerFixture.CmaHeapName, 24, Fcntl.O_RDWR)]
    [InlineData("system", 16, Fcntl.O_RDWR | Fcntl.O_CLOEXEC)]
    [InlineData("protected,secure-video", 48, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC)]
    public void An_allocation_returns_the_buffer_and_the_bytes_the_kernel_wrote(string heap, int size, int fdFlags)
    {
        using var broker = new BrokerFixture("mainline");
        using var raw = new RawClient(broker.SocketPath);
        byte[] argument = Argument(size, (ulong)Page + 1, (uint)fdFlags, fill: 0x5a);
        uint request = size == 24 ? Alloc : AllocOfSize((uint)size);

        using Answer answer = Ask(raw, 1, heap, request, argument);

        Assert.Equal(Errno.None, answer.Status);
        Assert.Equal(0, answer.Reply.error);
        Assert.Equal(0, answer.Reply.result);
        Assert.Equal((uint)FdOffset, answer.Reply.fd_offset);
        Assert.NotNull(answer.Fd);
        Assert.Equal(Errno.None, Interop.Sys.TryLSeek(answer.Fd!, 0, Fcntl.SEEK_END, out long length));
        Assert.Equal(2 * Page, length);
        Assert.Equal((fdFlags & Fcntl.O_CLOEXEC) != 0 ? 1u : 0u, answer.Reply.fd_cloexec);
        Assert.Equal(fdFlags & Fcntl.O_ACCMODE, Interop.Sys.GetStatusFlags(answer.Fd!) & Fcntl.O_ACCMODE);
        // Every byte but the descriptor number is the kernel's: the same request on the node gives the same bytes.
        var (errno, direct) = Direct(broker, heap, request, argument);
        Assert.Equal(Errno.None, errno);
        Assert.Equal(direct.AsSpan(0, FdOffset).ToArray(), answer.Argument.AsSpan(0, FdOffset).ToArray());
        Assert.Equal(direct.AsSpan(FdOffset + 4).ToArray(), answer.Argument.AsSpan(FdOffset + 4).ToArray());
        Assert.NotEqual(0u, answer.Reply.buffer_id);

        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        DaemonStats stats = client.Stats();
        Assert.Equal(1ul, stats.Allocations);
        Assert.Equal(1ul, stats.LiveBuffers);
    }

    /// <summary>_IOR('H', 0, 24 bytes): the kernel reads nothing (len 0, EINVAL) and 6.x copies its zeros back; 7.x copies nothing.</summary>
    private static uint ReadOnlyAlloc => Ioc._IOC(Ioc._IOC_READ, DmaHeap.DMA_HEAP_IOC_MAGIC, 0, 24);

    public static TheoryData<string, string, uint, byte[]> Refusals => new()
    {
        { "mainline", "heap_flags", Alloc, Argument(24, 4096, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, heapFlags: 0x111111) },
        { "mainline", "fd_flags", Alloc, Argument(24, 4096, ~(uint)(Fcntl.O_RDWR | Fcntl.O_CLOEXEC)) },
        { "mainline", "len 0", Alloc, Argument(24, 0, Fcntl.O_RDWR) },
        { "mainline", "_IOR, nothing copied back", ReadOnlyAlloc, Argument(24, 4096, Fcntl.O_RDWR, fill: 0x33) },
        { "v6", "heap_flags", Alloc, Argument(24, 4096, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, heapFlags: 0x111111) },
        { "v6", "fd set", Alloc, [.. Argument(24, 4096, Fcntl.O_RDWR).Select((b, i) => i == FdOffset ? (byte)3 : b)] },
        { "v6", "_IOR, zeros copied back", ReadOnlyAlloc, Argument(24, 4096, Fcntl.O_RDWR, fill: 0x33) },
    };

    [Theory]
    [MemberData(nameof(Refusals))]
    public void A_refused_allocation_returns_the_kernels_errno_and_bytes_and_no_buffer(string generation, string what, uint request, byte[] argument)
    {
        using var broker = new BrokerFixture(generation);
        using var raw = new RawClient(broker.SocketPath);
        using Answer answer = Ask(raw, 1, "system", request, argument);
        var (errno, direct) = Direct(broker, "system", request, argument);

        Assert.Equal(Errno.None, answer.Status);
        Assert.NotEqual(Errno.None, errno);
        Assert.True((int)errno == answer.Reply.error, $"{what}: kernel {errno}, reply {(Errno)answer.Reply.error}");
        Assert.Equal(-1, answer.Reply.result);
        Assert.Null(answer.Fd);
        // v6 copies the struct back on failure, mainline does not (docs/kernel-semantics.md): either way, as the kernel did.
        Assert.Equal(direct, answer.Argument);
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        Assert.Equal(0ul, client.Stats().LiveBuffers);
    }

    [Fact]
    public void A_request_number_other_than_0_is_EINVAL_with_the_argument_untouched()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        uint request = Ioc._IOC(Ioc._IOC_READ | Ioc._IOC_WRITE, DmaHeap.DMA_HEAP_IOC_MAGIC, 1, 24);
        byte[] argument = Argument(24, 4096, Fcntl.O_RDWR, fill: 0x77);
        using Answer answer = Ask(raw, 1, "system", request, argument);
        Assert.Equal(Errno.None, answer.Status);
        Assert.Equal((int)Errno.EINVAL, answer.Reply.error);
        Assert.Equal(argument, answer.Argument);
        Assert.Equal(Direct(broker, "system", request, argument).Errno, (Errno)answer.Reply.error);
    }

    [Fact]
    public void Quotas_apply_as_to_ALLOC_and_a_refusal_reaches_no_kernel()
    {
        using var broker = new BrokerFixture(limits: new BrokerLimits(MaxBuffersPerUser: 1, MaxBytesPerUser: 1L << 30, MaxConnectionsPerUser: 8));
        using var raw = new RawClient(broker.SocketPath);
        using Answer first = Ask(raw, 1, "system", Alloc, Argument(24, 4096, Fcntl.O_RDWR | Fcntl.O_CLOEXEC));
        Assert.NotNull(first.Fd);
        long free = Counters(broker).FreeBytes;

        using Answer second = Ask(raw, 2, "system", Alloc, Argument(24, 4096, Fcntl.O_RDWR | Fcntl.O_CLOEXEC));
        Assert.Equal(Errno.EDQUOT, second.Status);
        Assert.Contains("MaxBuffersPerUser", second.Message, StringComparison.Ordinal);
        Assert.Equal(free, Counters(broker).FreeBytes);
    }

    [Theory]
    [InlineData("mainline", "no-such-heap")]
    [InlineData("v4", "secure-video")] // a v4 use case is TEE_IOC_RSTMEM_ALLOC, not a node
    public void A_name_that_is_not_a_served_node_is_ENOENT(string generation, string heap)
    {
        using var broker = new BrokerFixture(generation);
        using var raw = new RawClient(broker.SocketPath);
        using Answer answer = Ask(raw, 1, heap, Alloc, Argument(24, 4096, Fcntl.O_RDWR));
        Assert.Equal(Errno.ENOENT, answer.Status);
        Assert.Contains($"no heap node '{heap}'", answer.Message, StringComparison.Ordinal);
        Assert.Contains("system", answer.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_allocation_whose_descriptor_would_not_come_back_is_refused()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        uint writeOnly = Ioc._IOC(Ioc._IOC_WRITE, DmaHeap.DMA_HEAP_IOC_MAGIC, 0, 24);
        using Answer answer = Ask(raw, 1, "system", writeOnly, Argument(24, 4096, Fcntl.O_RDWR));
        Assert.Equal(Errno.EINVAL, answer.Status);
        Assert.Contains("not brokered", answer.Message, StringComparison.Ordinal);
        Assert.Equal(Counters(broker).TotalBytes, Counters(broker).FreeBytes);
    }

    [Fact]
    public void Bad_sizes_and_flags_are_named()
    {
        using var broker = new BrokerFixture();
        using var raw = new RawClient(broker.SocketPath);
        raw.Send(Packet(1, "system", Alloc, new byte[16], argSize: 16));
        var reply = raw.Receive();
        Assert.Equal(Errno.EINVAL, reply.Error);
        Assert.Contains("arg_size 16 for request 0xc0184800: expected 24", reply.Message, StringComparison.Ordinal);

        raw.Send(Packet(2, "system", Alloc, new byte[24], flags: 1));
        Assert.Equal(Errno.EINVAL, raw.Receive().Error);

        // arg_size that disagrees with the bytes that came: malformed, and the connection goes.
        raw.Send(Packet(3, "system", Alloc, new byte[24], argSize: 20));
        reply = raw.Receive();
        Assert.Equal(Errno.EBADMSG, reply.Error);
        Assert.Contains("arg_size 20 does not match the 24 argument bytes", reply.Message, StringComparison.Ordinal);
        Assert.True(raw.IsClosedByPeer());
    }
}
