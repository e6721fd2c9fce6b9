
namespace Rstmem.Interop.Kernel;

/// <summary>
/// Pool counters a kernel can report for a heap or use case. The model knows
/// them; the real kernel exposes no such numbers for DMA heaps, so callers
/// treat this as optional ("where known").
/// </summary>
public interface IPoolStatistics
{
    PoolCounters? TryGetCounters(string heapOrUseCase);
}
