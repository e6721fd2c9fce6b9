using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Pools;

/// <summary>
/// Memory a model heap allocates from. Sizes are whole pages; a request the
/// pool cannot satisfy (including 0 bytes, as gen_pool_alloc returns no
/// address for it) gives ENOMEM. Thread-safe.
/// </summary>
public abstract class MemoryPool(string name, long pageSize)
{
    protected Lock Gate { get; } = new();

    public string Name { get; } = name;

    public long PageSize { get; } = pageSize;

    /// <summary>Takes <paramref name="bytes"/> (a multiple of the page size); <paramref name="offset"/> is where in the pool.</summary>
    public abstract Errno TryAllocate(long bytes, out long offset);

    /// <summary>Returns what <see cref="TryAllocate"/> gave.</summary>
    public abstract void Free(long offset, long bytes);

    public abstract PoolCounters Counters { get; }

    /// <summary>The pool's size now: <see cref="PoolCounters.TotalBytes"/> without making the counters.</summary>
    public abstract long TotalBytes { get; }

    /// <summary>Whether a free can change <see cref="TotalBytes"/> (a dynamic pool gives its chunk back with its last buffer).</summary>
    public virtual bool TotalFollowsFrees => false;

    protected long PagesOf(long bytes)
    {
        if (bytes % PageSize != 0)
        {
            throw new ArgumentException($"{bytes} bytes is not a multiple of the {PageSize}-byte page", nameof(bytes));
        }
        return bytes / PageSize;
    }
}
