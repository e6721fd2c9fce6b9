using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "bind", SetLastError = true)]
    private static unsafe partial int bind(SafeFd fd, sockaddr_un* addr, uint addrlen);

    /// <summary>bind(2) of an AF_UNIX socket to a filesystem path.</summary>
    public static unsafe Errno TryBindUnix(SafeFd fd, string path)
    {
        sockaddr_un addr = sockaddr_un.ForPath(path, out uint length);
        return bind(fd, &addr, length) < 0 ? LastErrno() : Errno.None;
    }
}
