namespace Rstmem.Interop;

/// <summary>Which restricted-memory ABI a kernel speaks (docs/kernel-semantics.md describes each).</summary>
public enum KernelGeneration
{
    /// <summary>The v4 series: TEE_IOC_RSTMEM_ALLOC on /dev/teeN; gen_caps bit 4 = RSTMEM.</summary>
    V4,

    /// <summary>The v6 series: DMA heaps restricted,secure-video|trusted-ui|secure-video-record.</summary>
    V6,

    /// <summary>Mainline: DMA heaps protected,*, imported with TEE_IOC_SHM_REGISTER_FD; bit 4 = OBJREF.</summary>
    Mainline,
}

public static class KernelGenerations
{
    public static string Name(this KernelGeneration generation) => generation switch
    {
        KernelGeneration.V4 => "v4",
        KernelGeneration.V6 => "v6",
        KernelGeneration.Mainline => "mainline",
        _ => throw new ArgumentOutOfRangeException(nameof(generation)),
    };

    public static bool TryParse(string? text, out KernelGeneration generation)
    {
        foreach (KernelGeneration candidate in Enum.GetValues<KernelGeneration>())
        {
            if (string.Equals(text, candidate.Name(), StringComparison.OrdinalIgnoreCase))
            {
                generation = candidate;
                return true;
            }
        }
        generation = default;
        return false;
    }

    /// <summary>The DMA-heap name prefix for restricted memory, or null where heaps are not the interface (v4).</summary>
    public static string? HeapPrefix(this KernelGeneration generation) => generation switch
    {
        KernelGeneration.V6 => "restricted,",
        KernelGeneration.Mainline => "protected,",
        _ => null,
    };

    /// <summary>The generation a set of heap names shows: protected,* heaps are mainline, restricted,* the v6 series, else none.</summary>
    public static KernelGeneration? FromHeapNames(IEnumerable<string> heapNames)
    {
        ArgumentNullException.ThrowIfNull(heapNames);
        List<string> names = heapNames.ToList();
        foreach (KernelGeneration generation in new[] { KernelGeneration.Mainline, KernelGeneration.V6 })
        {
            if (names.Any(n => n.StartsWith(generation.HeapPrefix()!, StringComparison.Ordinal)))
            {
                return generation;
            }
        }
        return null;
    }

    /// <summary>Whether a heap name is a restricted/protected heap of some generation.</summary>
    public static bool IsRestrictedHeap(string heapName) => FromHeapNames([heapName]) is not null;
}
