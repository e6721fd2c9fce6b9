using Rstmem.Interop;

namespace Rstmem.Benchmarks;

/// <summary>
/// Pins the calling thread to CPU 0 until disposed; threads it starts
/// meanwhile inherit the mask, so a broker started under it runs on CPU 0
/// with its workers. Unpinned, on the 2-vCPU build VM whether a request wakes
/// an idle vCPU (about 20 us each way) decides a run's p50, so two runs
/// compared with each other are pinned.
/// </summary>
internal sealed class CpuPin : IDisposable
{
    /// <summary>Room for 1,024 CPUs.</summary>
    private const int MaskBytes = 128;

    private readonly byte[] previous = new byte[MaskBytes];

    private CpuPin()
    {
        Sys.TryGetThreadAffinity(previous).ThrowIfError("sched_getaffinity");
        byte[] cpu0 = new byte[MaskBytes];
        cpu0[0] = 1;
        Sys.TrySetThreadAffinity(cpu0).ThrowIfError("sched_setaffinity", "CPU 0");
    }

    public static CpuPin ToCpu0() => new();

    public void Dispose() => Sys.TrySetThreadAffinity(previous).ThrowIfError("sched_setaffinity", "the mask before");
}
