using Rstmem.Interop;
using Rstmem.Model.Pools;

namespace Rstmem.Tests.Model;

public sealed class PoolTests
{
    private const long Page = 4096;

    [Fact]
    public void A_static_pool_is_first_fit_and_reports_exhaustion_as_ENOMEM()
    {
        // drivers/tee/tee_heap.c: protmem_pool_op_static_alloc → gen_pool_alloc; no address → -ENOMEM.
        var pool = new StaticPool("carveout", 4 * Page, Page);
        Assert.Equal(Errno.None, pool.TryAllocate(2 * Page, out long first));
        Assert.Equal(Errno.None, pool.TryAllocate(Page, out long second));
        Assert.Equal((0L, 2 * Page), (first, second));
        Assert.Equal(Errno.ENOMEM, pool.TryAllocate(2 * Page, out _));
        Assert.Equal(Errno.ENOMEM, pool.TryAllocate(0, out _));
        pool.Free(first, 2 * Page);
        Assert.Equal(Errno.None, pool.TryAllocate(Page, out long reused));
        Assert.Equal(0, reused);

        PoolCounters counters = pool.Counters;
        Assert.Equal(4 * Page, counters.TotalBytes);
        Assert.Equal(2 * Page, counters.FreeBytes);
        Assert.Equal(Page, counters.LargestFreeExtentBytes);
        Assert.Equal(2, counters.LiveBuffers);
        Assert.Equal(0.5, counters.Contiguity);
    }

    [Fact]
    public void A_dynamic_pool_lends_on_first_use_and_reclaims_at_its_last_free()
    {
        // drivers/tee/optee/protmem.c: init_dyn_protmem on the first alloc, release_dyn_protmem when the refcount drops to 0.
        var pool = new DynamicPool("dyn", 8 * Page, Page);
        Assert.False(pool.IsLent);
        Assert.Equal(0, pool.Counters.TotalBytes);

        Assert.Equal(Errno.None, pool.TryAllocate(Page, out long a));
        Assert.Equal(Errno.None, pool.TryAllocate(Page, out long b));
        Assert.True(pool.IsLent);
        Assert.Equal((1L, 0L), (pool.Counters.Lends, pool.Counters.Reclaims));
        Assert.Equal(8 * Page, pool.Counters.TotalBytes);

        pool.Free(a, Page);
        Assert.True(pool.IsLent);
        pool.Free(b, Page);
        Assert.False(pool.IsLent);
        Assert.Equal((1L, 1L), (pool.Counters.Lends, pool.Counters.Reclaims));

        Assert.Equal(Errno.None, pool.TryAllocate(Page, out _));
        Assert.Equal((2L, 1L), (pool.Counters.Lends, pool.Counters.Reclaims));
    }

    [Fact]
    public void A_dynamic_pool_request_larger_than_its_chunk_fails_and_returns_the_chunk()
    {
        var pool = new DynamicPool("dyn", 4 * Page, Page);
        Assert.Equal(Errno.ENOMEM, pool.TryAllocate(5 * Page, out _));
        Assert.False(pool.IsLent);
        Assert.Equal((1L, 1L), (pool.Counters.Lends, pool.Counters.Reclaims));
    }

    [Fact]
    public void A_page_pool_has_a_limit_and_no_fragmentation()
    {
        var pool = new PagePool("system", 4 * Page, Page);
        Assert.Equal(Errno.None, pool.TryAllocate(3 * Page, out long a));
        Assert.Equal(Errno.ENOMEM, pool.TryAllocate(2 * Page, out _));
        pool.Free(a, 3 * Page);
        Assert.Equal(4 * Page, pool.Counters.FreeBytes);
        Assert.Throws<ArgumentException>(() => pool.TryAllocate(100, out _));
    }

    [Fact]
    public void Pools_stay_consistent_under_concurrent_allocation_and_free()
    {
        var pool = new StaticPool("shared", 1024 * Page, Page);
        Parallel.For(0, 8, worker =>
        {
            var random = new Random(worker);
            var held = new List<(long Offset, long Bytes)>();
            for (int i = 0; i < 5000; i++)
            {
                if (held.Count > 0 && random.Next(2) == 0)
                {
                    var (offset, bytes) = held[^1];
                    held.RemoveAt(held.Count - 1);
                    pool.Free(offset, bytes);
                }
                else
                {
                    long bytes = random.Next(1, 8) * Page;
                    if (pool.TryAllocate(bytes, out long offset) == Errno.None)
                    {
                        held.Add((offset, bytes));
                    }
                }
            }
            foreach (var (offset, bytes) in held)
            {
                pool.Free(offset, bytes);
            }
        });
        Assert.Equal(1024 * Page, pool.Counters.FreeBytes);
        Assert.Equal(1024 * Page, pool.Counters.LargestFreeExtentBytes);
        Assert.Equal(0, pool.Counters.LiveBuffers);
    }
}
