using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static unsafe partial int sched_getaffinity(int pid, nuint size, byte* mask);

    [LibraryImport(Libc, EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static unsafe partial int sched_setaffinity(int pid, nuint size, byte* mask);

    /// <summary>
    /// sched_getaffinity(2) of the calling thread (pid 0): its CPU mask, bit n
    /// for CPU n, into <paramref name="mask"/> (EINVAL when it is smaller than
    /// the kernel's mask; 128 bytes hold 1,024 CPUs).
    /// </summary>
    public static unsafe Errno TryGetThreadAffinity(Span<byte> mask)
    {
        fixed (byte* bits = mask)
        {
            return sched_getaffinity(0, (nuint)mask.Length, bits) < 0 ? LastErrno() : Errno.None;
        }
    }

    /// <summary>sched_setaffinity(2) of the calling thread; threads it starts afterwards inherit the mask (sched(7)).</summary>
    public static unsafe Errno TrySetThreadAffinity(ReadOnlySpan<byte> mask)
    {
        fixed (byte* bits = mask)
        {
            return sched_setaffinity(0, (nuint)mask.Length, bits) < 0 ? LastErrno() : Errno.None;
        }
    }
}
