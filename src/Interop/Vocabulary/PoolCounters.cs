namespace Rstmem.Interop;

/// <summary>A pool's state at one moment. Byte values are multiples of the page size.</summary>
public sealed record PoolCounters(
    string Name,
    string Kind,
    long TotalBytes,
    long FreeBytes,
    long LargestFreeExtentBytes,
    long LiveBuffers,
    long Lends,
    long Reclaims)
{
    /// <summary>Largest free extent / free bytes: 1 when the free space is one run, toward 0 as it fragments.</summary>
    public double Contiguity => FreeBytes == 0 ? 1 : (double)LargestFreeExtentBytes / FreeBytes;
}
