using System.Runtime.InteropServices;

namespace Rstmem.Benchmarks;

/// <summary>
/// Pins the calling thread to CPU 0 (sched_setaffinity on tid 0, the caller)
/// until disposed; threads it starts meanwhile inherit the mask (sched(7)),
/// so a broker started under it runs on CPU 0 with its workers. Unpinned, on
/// the 2-vCPU build VM whether a request wakes an idle vCPU (about 20 us each
/// way) decides a run's p50, so two runs compared with each other are pinned.
/// </summary>
internal sealed partial class CpuPin : IDisposable
{
    /// <summary>Room for 1,024 CPUs (the kernel's cpumask as sched_getaffinity writes it).</summary>
    private const int MaskBytes = 128;

    private readonly byte[] previous = new byte[MaskBytes];

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_getaffinity(int pid, nint size, [Out] byte[] mask);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sched_setaffinity(int pid, nint size, byte[] mask);

    private CpuPin()
    {
        if (sched_getaffinity(0, MaskBytes, previous) < 0)
        {
            throw new InvalidOperationException($"sched_getaffinity: errno {Marshal.GetLastPInvokeError()}");
        }
        byte[] cpu0 = new byte[MaskBytes];
        cpu0[0] = 1;
        if (sched_setaffinity(0, MaskBytes, cpu0) < 0)
        {
            throw new InvalidOperationException($"sched_setaffinity to CPU 0: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    public static CpuPin ToCpu0() => new();

    public void Dispose() => sched_setaffinity(0, MaskBytes, previous);
}
