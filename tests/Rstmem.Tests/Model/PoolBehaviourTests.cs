using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>
/// Pools behind the heaps, seen through the model's counters (free bytes,
/// lends, reclaims, live buffers), fault injection and concurrency: what the
/// conformance suite cannot see. Release at the last close anywhere is the
/// pools.release-at-last-close-* cases.
/// </summary>
public sealed class PoolBehaviourTests
{
    [Theory]
    [InlineData("mainline", "protected,trusted-ui", "trusted-ui")]
    [InlineData("v6", "restricted,trusted-ui", "trusted-ui")]
    [InlineData("mainline", "reserved", "reserved")]
    public void A_static_pool_fills_up_with_ENOMEM_and_recovers_when_a_buffer_is_closed(string generation, string heap, string pool)
    {
        // tee_heap.c protmem_pool_op_static_alloc / cma_heap_allocate: no fit → -ENOMEM.
        using ModelKernel model = ModelKit.Model(generation, o => { o.UseCases["trusted-ui"].Size = "16MiB"; o.CmaHeapSize = "16MiB"; });
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode(heap));
        var held = new List<SafeFd>();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(Errno.None, model.HeapAlloc(node, 4 << 20, out SafeFd buffer));
            held.Add(buffer);
        }
        Assert.Equal(Errno.ENOMEM, model.HeapAlloc(node, 4096, out _));
        Assert.Equal(0, model.PoolCounters(pool).FreeBytes);

        held[1].Dispose();
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4 << 20, out SafeFd again));
        held[1] = again;
        foreach (SafeFd fd in held)
        {
            fd.Dispose();
        }
        Assert.Equal(16L << 20, model.PoolCounters(pool).FreeBytes);
        Assert.Equal(0, model.LiveBuffers);
    }

    [Fact]
    public void Freed_space_is_reused_first_fit_from_the_lowest_address()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video"));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 1 << 20, out SafeFd a));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 1 << 20, out SafeFd b));
        a.Dispose();
        long total = model.PoolCounters("secure-video").TotalBytes;
        Assert.Equal(total - (1L << 20), model.PoolCounters("secure-video").FreeBytes);
        // a left a 1 MiB hole at the bottom, below b. First fit puts a small buffer into
        // that hole, so the free run above b stays whole; anything else would shorten it.
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd c));
        var counters = model.PoolCounters("secure-video");
        Assert.Equal(total - (1L << 20) - 4096, counters.FreeBytes);
        Assert.Equal(total - (2L << 20), counters.LargestFreeExtentBytes);
        b.Dispose();
        c.Dispose();
    }

    [Fact]
    public void The_dynamic_pool_lends_on_the_first_buffer_and_reclaims_after_the_last()
    {
        // optee/protmem.c: init_dyn_protmem on first alloc, release_dyn_protmem when the last buffer goes.
        using ModelKernel model = ModelKit.Model("mainline");
        Assert.Equal((0L, 0L, 0L), Lending(model));
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video-record"));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd a));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd b));
        Assert.Equal((1L, 0L, 32L << 20), Lending(model));
        Assert.Equal(Errno.ENOMEM, model.HeapAlloc(node, 32 << 20, out _)); // never grows
        a.Dispose();
        Assert.Equal((1L, 0L, 32L << 20), Lending(model));
        b.Dispose();
        Assert.Equal((1L, 1L, 0L), Lending(model));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd c));
        Assert.Equal((2L, 1L, 32L << 20), Lending(model));
        c.Dispose();
        Assert.Equal((2L, 2L, 0L), Lending(model));

        static (long, long, long) Lending(ModelKernel model)
        {
            var counters = model.PoolCounters("secure-video-record");
            return (counters.Lends, counters.Reclaims, counters.TotalBytes);
        }
    }

    [Fact]
    public void Injected_failures_hit_the_next_allocations_of_that_heap_only()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        model.InjectFailures("protected,secure-video", 2, Errno.EIO);
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video"));
        Assert.Equal(Errno.EIO, model.HeapAlloc(node, 4096, out _));
        using (SafeFd other = model.HeapAllocOrFail("system", 4096))
        {
            Assert.False(other.IsInvalid);
        }
        Assert.Equal(Errno.EIO, model.HeapAlloc(node, 4096, out _));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd fine));
        fine.Dispose();
        Assert.Throws<ArgumentException>(() => model.InjectFailures("nosuch", 1, Errno.EIO));
    }

    [Fact]
    public void Unbinding_the_TEE_leaves_the_heap_node_but_allocations_give_EINVAL()
    {
        // tee_heap.c after tee_device_unregister: h->teedev == NULL → EINVAL; the node stays.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video"));
        using SafeFd before = model.HeapAllocOrFail("protected,secure-video", 4096);
        model.UnbindTee();
        Assert.Equal(Errno.EINVAL, model.HeapAlloc(node, 4096, out _));
        Assert.Contains("protected,secure-video", model.ListDirectory(DevicePaths.HeapDirectory));
        Assert.Equal(Errno.ENOENT, model.Open("/dev/tee0", Fcntl.O_RDWR, out _));
        Assert.Equal(4096, model.SizeOf(before));
        using SafeFd system = model.HeapAllocOrFail("system", 4096);
    }

    [Fact]
    public void A_removed_heap_disappears_but_open_descriptors_keep_working()
    {
        using ModelKernel model = ModelKit.Model("v6");
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("restricted,trusted-ui"));
        model.RemoveHeap("restricted,trusted-ui");
        Assert.Equal(Errno.ENOENT, model.Open(DevicePaths.HeapNode("restricted,trusted-ui"), Fcntl.O_RDONLY, out _));
        Assert.DoesNotContain("restricted,trusted-ui", model.ListDirectory(DevicePaths.HeapDirectory));
        Assert.Equal(Errno.None, model.HeapAlloc(node, 4096, out SafeFd buffer));
        buffer.Dispose();
    }

    [Fact]
    public void Concurrent_allocation_and_release_from_many_threads_stays_consistent()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        long free = model.PoolCounters("secure-video").FreeBytes;
        int failures = 0;
        Parallel.For(0, 8, worker =>
        {
            using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video"));
            var held = new Queue<SafeFd>();
            for (int i = 0; i < 500; i++)
            {
                if (model.HeapAlloc(node, (ulong)(4096 << (i % 4)), out SafeFd buffer) == Errno.None)
                {
                    held.Enqueue(buffer);
                }
                else
                {
                    Interlocked.Increment(ref failures);
                }
                if (held.Count > 4)
                {
                    held.Dequeue().Dispose();
                }
            }
            while (held.Count > 0)
            {
                held.Dequeue().Dispose();
            }
        });
        Assert.Equal(0, failures);
        Assert.Equal(free, model.PoolCounters("secure-video").FreeBytes);
        Assert.Equal(free, model.PoolCounters("secure-video").LargestFreeExtentBytes);
        Assert.Equal(0, model.LiveBuffers);
    }
}
