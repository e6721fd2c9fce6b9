using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "listen", SetLastError = true)]
    private static partial int listen(SafeFd fd, int backlog);

    /// <summary>listen(2).</summary>
    public static Errno TryListen(SafeFd fd, int backlog) =>
        listen(fd, backlog) < 0 ? LastErrno() : Errno.None;
}
