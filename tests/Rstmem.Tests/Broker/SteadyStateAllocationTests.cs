using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Client;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>
/// The request path allocates no managed memory of its own in steady state:
/// what the broker's thread allocates per ALLOC is what the kernel model
/// allocates for the buffer itself (measured alone, on this thread) plus a
/// little for observing its release, nothing per request (no reply array, no strings).
/// Alone: a test beside it that looks at /proc/self/fd (statx, readlink,
/// inotify_add_watch of a descriptor's path) holds a buffer's file for a
/// moment, so its release would land after the close that should free it.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class SteadyStateAllocationTests
{
    private const int Cycles = 400;
    private const long Size = 4096;

    /// <summary>
    /// Observing a buffer's release keeps nothing per buffer on the managed heap
    /// (the model's dma-buf holds the observer, sink and token in fields of its
    /// own; the ledger's slot is in a chunk made once); what is left is the
    /// short-lived garbage of finding the buffer by its descriptor and the
    /// release's queue entry. A reply buffer per request alone was 8 KiB.
    /// </summary>
    private const long AllowancePerBuffer = 256;

    [Fact]
    public void An_ALLOC_and_FREE_cost_the_broker_thread_no_more_than_the_kernel_model_allocating_alone()
    {
        using var broker = new BrokerFixture("mainline");
        using RstmemClient client = RstmemClient.Connect(broker.SocketPath);
        void Cycle()
        {
            AllocatedBuffer buffer = client.Allocate("system", Size, AllocTarget.Heap);
            buffer.Dispose(); // the last reference: the model frees it and the ledger hears of it
            client.Free(buffer.Id);
        }
        for (int i = 0; i < Cycles; i++)
        {
            Cycle(); // warm-up: pools, queues and tables reach their working size
        }
        client.Stats();
        long before = broker.Server.LoopAllocatedBytes;
        for (int i = 0; i < Cycles; i++)
        {
            Cycle();
        }
        client.Stats(); // its reply means the loop has counted every cycle before it
        double brokerPerCycle = (double)(broker.Server.LoopAllocatedBytes - before) / Cycles;

        double modelPerCycle = ModelAloneBytesPerCycle();

        Assert.True(brokerPerCycle <= modelPerCycle + AllowancePerBuffer,
            $"the broker's thread allocated {brokerPerCycle:F0} bytes per ALLOC+FREE; the model alone {modelPerCycle:F0}; allowed {AllowancePerBuffer} more");
    }

    /// <summary>The same allocations straight from the model's heap provider, on this thread.</summary>
    private static double ModelAloneBytesPerCycle()
    {
        var model = new ModelKernel(BrokerFixture.ModelConfiguration("mainline"));
        using BackendSelection selection = BackendProbe.Select("model", LinuxKernel.Instance, () => model, [], new Dictionary<string, string>());
        HeapProvider heap = selection.Heaps.ByName("system") ?? throw new InvalidOperationException("the model has no system heap");
        ReadOnlySpan<byte> name = "system:1:1\0"u8;
        void Cycle(ReadOnlySpan<byte> name)
        {
            Assert.Equal(Errno.None, heap.Allocate(Size, name, out SafeFd buffer, out _));
            buffer.Dispose();
            Assert.Equal(0, model.LiveBuffers); // the release is handled here, on this thread
        }
        for (int i = 0; i < Cycles; i++)
        {
            Cycle(name);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Cycles; i++)
        {
            Cycle(name);
        }
        return (double)(GC.GetAllocatedBytesForCurrentThread() - before) / Cycles;
    }
}
