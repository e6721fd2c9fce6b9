using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "shutdown", SetLastError = true)]
    private static partial int shutdown(SafeFd fd, int how);

    /// <summary>shutdown(2): wakes a peer or a thread blocked on the socket without closing the descriptor.</summary>
    public static Errno TryShutdown(SafeFd fd, int how) =>
        shutdown(fd, how) < 0 ? LastErrno() : Errno.None;
}
