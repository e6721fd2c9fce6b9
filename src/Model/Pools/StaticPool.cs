using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Pools;

/// <summary>
/// A static carve-out: a fixed range handed to the secure world at boot,
/// allocated first-fit by page like the kernel's gen_pool
/// (tee_protmem_static_pool_alloc in drivers/tee/tee_heap.c; the v4 series'
/// tee_rstmem_gen_pool_alloc). Also the model's CMA region.
/// </summary>
public sealed class StaticPool : MemoryPool
{
    private readonly ExtentAllocator allocator;
    private long live;

    public StaticPool(string name, long sizeBytes, long pageSize) : base(name, pageSize)
    {
        allocator = new ExtentAllocator(PagesOf(sizeBytes));
    }

    public override Errno TryAllocate(long bytes, out long offset)
    {
        long pages = PagesOf(bytes);
        lock (Gate)
        {
            if (!allocator.TryAllocate(pages, out long start))
            {
                offset = -1;
                return Errno.ENOMEM;
            }
            live++;
            offset = start * PageSize;
            return Errno.None;
        }
    }

    public override void Free(long offset, long bytes)
    {
        long pages = PagesOf(bytes);
        lock (Gate)
        {
            allocator.Free(offset / PageSize, pages);
            live--;
        }
    }

    public override long TotalBytes => allocator.TotalPages * PageSize;

    public override PoolCounters Counters
    {
        get
        {
            lock (Gate)
            {
                return new PoolCounters(Name, "static", allocator.TotalPages * PageSize, allocator.FreePages * PageSize,
                    allocator.LargestFreeExtent * PageSize, live, Lends: 0, Reclaims: 0);
            }
        }
    }
}
