using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Pools;

/// <summary>
/// The system heap's memory: pages from anywhere, no address space to
/// fragment, only a limit (the model's stand-in for available RAM).
/// </summary>
public sealed class PagePool(string name, long limitBytes, long pageSize) : MemoryPool(name, pageSize)
{
    private long used;
    private long live;
    private long nextOffset;

    public long LimitBytes { get; } = limitBytes;

    public override Errno TryAllocate(long bytes, out long offset)
    {
        PagesOf(bytes);
        lock (Gate)
        {
            if (bytes == 0 || used + bytes > LimitBytes)
            {
                offset = -1;
                return Errno.ENOMEM;
            }
            used += bytes;
            live++;
            // Offsets only identify buffers here; pages come from anywhere.
            offset = nextOffset;
            nextOffset += bytes;
            return Errno.None;
        }
    }

    public override void Free(long offset, long bytes)
    {
        lock (Gate)
        {
            if (bytes > used || live == 0)
            {
                throw new InvalidOperationException($"{Name}: free of {bytes} bytes with {used} in use");
            }
            used -= bytes;
            live--;
        }
    }

    public override long TotalBytes => LimitBytes;

    public override PoolCounters Counters
    {
        get
        {
            lock (Gate)
            {
                return new PoolCounters(Name, "pages", LimitBytes, LimitBytes - used, LimitBytes - used, live, Lends: 0, Reclaims: 0);
            }
        }
    }
}
