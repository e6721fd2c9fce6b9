using System.Globalization;
using System.Text;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>
/// What a held buffer keeps alive in the daemon: the reference model's
/// objects for it and the ledger's record, measured as the managed heap's
/// live bytes (after full collections) with 10,000 buffers held, as by a
/// client, against none. The daemon's footprint target (README, "Footprint")
/// is +8 MB of RSS for 10,000 buffers; what is live is the floor of that.
/// Alone: GC.GetTotalMemory counts every thread's objects.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class HeldBufferFootprintTests(ITestOutputHelper output)
{
    private const int Buffers = 10_000;
    private const long Size = 4096;
    private const uint Uid = 1000;

    /// <summary>
    /// The model's dma-buf (about 160 bytes: identity, heap, size, offset, the
    /// name's 32 bytes inline, the first observer), its share of the file
    /// table's buckets and of the release watch's table, and the ledger's
    /// 48-byte slot and id bucket: about 290 bytes, and room for small changes.
    /// </summary>
    private const int MaxLiveBytesPerBuffer = 400;

    [Fact]
    public void Ten_thousand_held_buffers_keep_at_most_400_live_bytes_each_in_the_model_and_the_ledger()
    {
        var model = new ModelKernel(BrokerFixture.ModelConfiguration("mainline"));
        using BackendSelection selection = BackendProbe.Select("model", LinuxKernel.Instance, () => model, [], new Dictionary<string, string>());
        HeapProvider heap = selection.Heaps.ByName("system") ?? throw new InvalidOperationException("the model has no system heap");
        using var ledger = new BufferLedger(selection.Kernel.ObserveReleases(selection.ReleaseSignal),
            new BrokerLimits(MaxBuffersPerUser: Buffers + 100, MaxBytesPerUser: 1L << 40, MaxConnectionsPerUser: 4));
        int[] held = new int[Buffers];
        byte[] name = new byte[32];
        int sequence = 0;

        void Allocate(int index)
        {
            // The broker's default name, "<heap>:<pid>:<seq>", as bytes with their NUL.
            int length = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"system:4242:{++sequence}"), name);
            name[length] = 0;
            Assert.Equal(Errno.None, ledger.TryCharge(Uid, "system", Size, long.MaxValue, out _, out _));
            Assert.Equal(Errno.None, heap.Allocate(Size, name.AsSpan(0, length + 1), out SafeFd buffer, out long actual));
            Assert.Equal(Errno.None, ledger.TryRecord(buffer, Uid, 4242, "system", Size, actual, connection: 1, out _));
            held[index] = buffer.DangerousReleaseOwnership(); // the client's descriptor; the daemon closed its own
        }

        void ReleaseAll(int count)
        {
            for (int i = 0; i < count; i++)
            {
                Assert.Equal(Errno.None, Interop.Sys.DangerousClose(held[i]));
            }
            ledger.HandleReleases();
            Assert.Equal(0UL, ledger.LiveBuffers);
            ledger.ConnectionClosed(1);
        }

        // Warm-up: every code path has run and the fixed tables exist.
        for (int i = 0; i < 100; i++)
        {
            Allocate(i);
        }
        ReleaseAll(100);

        long before = GC.GetTotalMemory(forceFullCollection: true);
        long allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
        for (int i = 0; i < Buffers; i++)
        {
            Allocate(i);
        }
        long allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
        long after = GC.GetTotalMemory(forceFullCollection: true);
        output.WriteLine($"allocated {allocated / Buffers} bytes per buffer, garbage included (this test's name string too)");
        Assert.Equal((ulong)Buffers, ledger.LiveBuffers);
        double perBuffer = (double)(after - before) / Buffers;
        output.WriteLine($"{Buffers} held buffers: {after - before} live bytes, {perBuffer:F0} per buffer");
        ReleaseAll(Buffers);
        GC.KeepAlive(model);
        // 856 bytes before the model kept one object per buffer and the ledger its chunks; 286 after.
        Assert.True(perBuffer <= MaxLiveBytesPerBuffer, $"{perBuffer:F0} live bytes per held buffer; at most {MaxLiveBytesPerBuffer} expected");
    }
}
