using Rstmem.Interop;

namespace Rstmem.Conformance.Suites;

/// <summary>
/// Restricted/protected pools: drivers/tee/tee_heap.c over the pool's
/// gen_pool (mainline), the v6 series' restricted heaps, and v4's
/// tee_rstmem pools. Every case fills the pool, so it runs only when the
/// pool fits in --max-bytes.
/// </summary>
internal static class PoolSuite
{
    private const ulong Chunk = 1 << 20;
    private const string TeeHeap = "drivers/tee/tee_heap.c";

    public static IEnumerable<ConformanceCase> Cases()
    {
        yield return Case("pools.exhaustion-and-recovery", "1 MiB at a time until ENOMEM; one freed buffer's room is allocatable again, and only that",
            $"{TeeHeap}: tee_dma_heap_alloc → pool->ops->alloc: gen_pool_alloc fails → -ENOMEM; tee_heap_buf_free returns it", c =>
            {
                List<SafeFd> held = Fill(c, Chunk);
                Check.That(held.Count > 0, "1 MiB buffers before ENOMEM", "at least 1", "0");
                c.Close(held[^1]);
                Check.Errno(Errno.None, TryAllocate(c, Chunk, out _), "allocating 1 MiB after freeing one");
                Check.Errno(Errno.ENOMEM, TryAllocate(c, Chunk, out _), "allocating 1 MiB more");
            });

        yield return Case("pools.capacity-stable-across-cycles", "fill, free all, fill again, three times: the same number of buffers each time (dynamic pools lend and reclaim)",
            $"{TeeHeap}: tee_heap_buf_free; dynamic pools: pool->ops->free returns memory lent from the kernel", c =>
            {
                int first = -1;
                for (int cycle = 1; cycle <= 3; cycle++)
                {
                    List<SafeFd> held = Fill(c, Chunk);
                    if (first < 0)
                    {
                        first = held.Count;
                    }
                    Check.Equal(first, held.Count, $"1 MiB buffers in cycle {cycle}");
                    held.ForEach(c.Close);
                }
            });

        yield return Case("pools.release-at-last-close-in-child", "memory returns only when the last reference anywhere closes: a child holding a copy keeps it",
            "drivers/dma-buf/dma-buf.c: dma_buf_file_release runs at the file's last fput", c =>
            {
                List<SafeFd> held = Fill(c, Chunk);
                SafeFd shared = held[^1];
                ChildHolder child = c.HoldInChild(shared);
                c.Close(shared);
                Check.Errno(Errno.ENOMEM, TryAllocate(c, Chunk, out _), $"allocating while child {child.Pid} holds the freed buffer");
                child.Release();
                Check.Errno(Errno.None, TryAllocate(c, Chunk, out _), "allocating after the child exited");
            });

        yield return Case("pools.release-at-last-close-dup", "a dup in this process also keeps the memory until it closes",
            "drivers/dma-buf/dma-buf.c: dma_buf_file_release runs at the file's last fput", c =>
            {
                List<SafeFd> held = Fill(c, Chunk);
                Check.Errno(Errno.None, Sys.TryDuplicate(held[^1], out SafeFd copy), "dup");
                c.Own(copy);
                c.Close(held[^1]);
                Check.Errno(Errno.ENOMEM, TryAllocate(c, Chunk, out _), "allocating while a dup is open");
                c.Close(copy);
                Check.Errno(Errno.None, TryAllocate(c, Chunk, out _), "allocating after the dup closed");
            });

        yield return Case("pools.larger-than-pool", "a request larger than the whole pool: ENOMEM, and the pool is intact after",
            $"{TeeHeap}: pool->ops->alloc → -ENOMEM", c =>
            {
                List<SafeFd> held = Fill(c, Chunk);
                int capacity = held.Count;
                held.ForEach(c.Close);
                ulong request = (ulong)(capacity + 1) * Chunk;
                Check.Errno(Errno.ENOMEM, TryAllocate(c, request, out _), $"allocating {capacity + 1} MiB from a {capacity} MiB pool");
                Check.Equal(capacity, Fill(c, Chunk).Count, "1 MiB buffers after the refusal");
            });
    }

    private static ConformanceCase Case(string id, string title, string mirrors, Action<CaseContext> run) =>
        new(id, title, mirrors, TargetKind.Pool, run);

    public static Errno TryAllocate(CaseContext c, ulong length, out SafeFd buffer) =>
        c.TargetAs<BufferTarget>().Allocate(c, length, out buffer);

    /// <summary>
    /// Allocates <paramref name="chunk"/>-sized buffers until ENOMEM; skips the
    /// case when the pool is larger than --max-bytes allows to fill.
    /// </summary>
    public static List<SafeFd> Fill(CaseContext c, ulong chunk) => Fill(c, c.TargetAs<BufferTarget>(), chunk);

    /// <summary>As <see cref="Fill(CaseContext, ulong)"/>, from another buffer target than the case's own.</summary>
    public static List<SafeFd> Fill(CaseContext c, BufferTarget target, ulong chunk)
    {
        var held = new List<SafeFd>();
        while (true)
        {
            c.Cancellation.ThrowIfCancellationRequested();
            Errno errno;
            SafeFd buffer;
            try
            {
                errno = target.Allocate(c, chunk, out buffer);
            }
            catch (CaseSkippedException)
            {
                int count = held.Count;
                held.ForEach(c.Close);
                throw new CaseSkippedException(
                    $"{target.Name} still allocates after {count} x {chunk >> 20} MiB: filling the pool needs more than --max-bytes {ByteSize.Format(c.Budget.MaxBytes)}");
            }
            if (errno == Errno.ENOMEM)
            {
                return held;
            }
            Check.Errno(Errno.None, errno, $"allocating buffer {held.Count + 1} of {chunk >> 20} MiB from {target.Name}");
            held.Add(buffer);
        }
    }
}
