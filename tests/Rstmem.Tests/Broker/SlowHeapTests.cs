using Rstmem.Daemon.Client;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Tests.Support;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Tests.Broker;

/// <summary>
/// The kernel's allocations run off the loop's thread: while one heap's
/// allocation is held inside the model (a latency fault blocked on a gate the
/// test opens), other clients are answered and other heaps allocate; the
/// slow client's own replies keep their order. Checked by the order of
/// events, never by time.
/// </summary>
public sealed class SlowHeapTests
{
    private const string SlowHeap = "protected,trusted-ui";

    [Fact]
    public async Task Other_clients_are_answered_while_an_allocation_on_a_slow_heap_is_blocked()
    {
        using var broker = new BrokerFixture("mainline");
        using var entered = new SemaphoreSlim(0);
        using var gate = new ManualResetEventSlim(false);
        broker.Model.InjectLatency(SlowHeap, () =>
        {
            entered.Release();
            gate.Wait(GiveUp.After);
        });
        using RstmemClient slowClient = RstmemClient.Connect(broker.SocketPath);
        Task<AllocatedBuffer> slow = Task.Run(() => slowClient.Allocate(SlowHeap, BrokerFixture.Page, AllocTarget.Heap), TestContext.Current.CancellationToken);
        try
        {
            Assert.True(await entered.WaitAsync(GiveUp.After, TestContext.Current.CancellationToken), "the allocation never reached the model");

            // While it is held: another client's LIST_HEAPS, STATS and an ALLOC on another heap are all answered.
            Task<(int Heaps, ulong Clients, long Size)> others = Task.Run(() =>
            {
                using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
                int heaps = other.ListHeaps().Count;
                ulong clients = other.Stats().Clients;
                using AllocatedBuffer fast = other.Allocate("system", BrokerFixture.Page, AllocTarget.Heap);
                return (heaps, (ulong)clients, fast.Size);
            }, TestContext.Current.CancellationToken);
            Task first = await Task.WhenAny(others, Task.Delay(GiveUp.After, TestContext.Current.CancellationToken));
            Assert.True(first == others, "another client was not answered while one heap's allocation was blocked");
            (int heapCount, ulong connected, long size) = await others;
            Assert.Equal(BrokerFixture.HeapCount, heapCount);
            Assert.Equal(2UL, connected);
            Assert.Equal(BrokerFixture.Page, size);
            Assert.False(slow.IsCompleted, "the slow allocation finished before its gate was opened");
        }
        finally
        {
            gate.Set();
        }
        using AllocatedBuffer buffer = await slow;
        Assert.Equal(SlowHeap, buffer.Heap);
    }

    [Fact]
    public void A_connection_s_replies_keep_their_order_behind_its_slow_allocation()
    {
        using var broker = new BrokerFixture("mainline");
        using var entered = new SemaphoreSlim(0);
        using var gate = new ManualResetEventSlim(false);
        broker.Model.InjectLatency(SlowHeap, () =>
        {
            entered.Release();
            gate.Wait(GiveUp.After);
        });
        using var raw = new RawClient(broker.SocketPath);
        var request = new rstmem_alloc_request { size = (ulong)BrokerFixture.Page, flags = RSTMEM_ALLOC_BY_HEAP };
        unsafe
        {
            Wire.WriteString(Wire.Field(request.target, RSTMEM_HEAP_NAME_LEN), SlowHeap, "target");
        }
        try
        {
            raw.Send(RawClient.Packet(RSTMEM_OP_ALLOC, 1, Wire.Bytes(request)));
            Assert.True(entered.Wait(GiveUp.After, TestContext.Current.CancellationToken), "the allocation never reached the model");
            raw.Send(RawClient.Packet(RSTMEM_OP_STATS, 2, []));
            raw.Send(RawClient.Packet(RSTMEM_OP_LIST_HEAPS, 3, []));
            // Both later requests are in the daemon's socket; it must not answer them before the ALLOC.
            using RstmemClient other = RstmemClient.Connect(broker.SocketPath);
            other.Stats(); // a turn of the loop after both were sent
            Assert.Equal(0, raw.UnreadBytes());
        }
        finally
        {
            gate.Set();
        }
        var alloc = raw.Receive();
        var stats = raw.Receive();
        var heaps = raw.Receive();
        Array.ForEach(alloc.Fds, fd => fd.Dispose());

        Assert.Equal([1u, 2u, 3u], new[] { alloc.Header.request_id, stats.Header.request_id, heaps.Header.request_id });
        Assert.Equal(Errno.None, alloc.Error);
        Assert.Single(alloc.Fds);
    }
}
