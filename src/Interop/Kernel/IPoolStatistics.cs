
namespace Rstmem.Interop.Kernel;

/// <summary>
/// Pool counters a kernel can report for a heap or use case. The model knows
/// them; the real kernel exposes no such numbers for DMA heaps, so callers
/// treat this as optional ("where known").
/// </summary>
public interface IPoolStatistics
{
    PoolCounters? TryGetCounters(string heapOrUseCase);

    /// <summary>
    /// The pool's size now (<see cref="PoolCounters.TotalBytes"/>, after the
    /// releases that have happened), without making the counters: what the
    /// broker's pool share needs on every ALLOC. False when the kernel does
    /// not know the heap.
    /// </summary>
    bool TryGetTotalBytes(string heapOrUseCase, out long totalBytes);
}
