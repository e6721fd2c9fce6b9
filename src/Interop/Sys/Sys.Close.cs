using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "close", SetLastError = true)]
    private static partial int close(int fd);

    /// <summary>close(2) on a raw number; only <see cref="SafeFd"/> should need this. Never retried.</summary>
    public static Errno DangerousClose(int fd) => close(fd) < 0 ? LastErrno() : Errno.None;
}
