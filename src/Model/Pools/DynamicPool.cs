using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Pools;

/// <summary>
/// OP-TEE's dynamic protected-memory pool (drivers/tee/optee/protmem.c): it
/// holds nothing until the first allocation, then lends a <c>min_size</c>
/// chunk to the secure world and allocates from it first-fit; when its last
/// buffer is freed the chunk is reclaimed, and the next allocation lends a
/// fresh one. A request that does not fit the chunk fails with ENOMEM (the
/// chunk does not grow); if that was the first, the chunk is lent and
/// reclaimed at once, as the kernel's refcount put does.
/// </summary>
public sealed class DynamicPool : MemoryPool
{
    private readonly long chunkPages;
    private ExtentAllocator? lent;
    private long live;
    private long lends;
    private long reclaims;

    public DynamicPool(string name, long minSizeBytes, long pageSize) : base(name, pageSize)
    {
        chunkPages = PagesOf(minSizeBytes);
        ArgumentOutOfRangeException.ThrowIfZero(chunkPages, nameof(minSizeBytes));
    }

    /// <summary>True while a chunk is lent to the secure world.</summary>
    public bool IsLent
    {
        get
        {
            lock (Gate)
            {
                return lent is not null;
            }
        }
    }

    public override Errno TryAllocate(long bytes, out long offset)
    {
        long pages = PagesOf(bytes);
        lock (Gate)
        {
            if (lent is null)
            {
                lent = new ExtentAllocator(chunkPages);
                lends++;
            }
            if (!lent.TryAllocate(pages, out long start))
            {
                offset = -1;
                ReclaimIfIdle();
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
            if (lent is null)
            {
                throw new InvalidOperationException($"{Name}: free of [{offset}, +{bytes}) while nothing is lent");
            }
            lent.Free(offset / PageSize, pages);
            live--;
            ReclaimIfIdle();
        }
    }

    private void ReclaimIfIdle()
    {
        if (live == 0 && lent is not null)
        {
            lent = null;
            reclaims++;
        }
    }

    public override bool TotalFollowsFrees => true;

    public override long TotalBytes
    {
        get
        {
            lock (Gate)
            {
                return lent is null ? 0 : chunkPages * PageSize;
            }
        }
    }

    public override PoolCounters Counters
    {
        get
        {
            lock (Gate)
            {
                long total = lent is null ? 0 : chunkPages * PageSize;
                long free = lent is null ? 0 : lent.FreePages * PageSize;
                long largest = lent is null ? 0 : lent.LargestFreeExtent * PageSize;
                return new PoolCounters(Name, "dynamic", total, free, largest, live, lends, reclaims);
            }
        }
    }
}
