using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "connect", SetLastError = true)]
    private static unsafe partial int connect(SafeFd fd, sockaddr_un* addr, uint addrlen);

    /// <summary>connect(2) of an AF_UNIX socket to a filesystem path; EINTR retried.</summary>
    public static Errno TryConnectUnix(SafeFd fd, string path)
    {
        sockaddr_un addr = sockaddr_un.ForPath(path, out uint length);
        return TryConnectUnix(fd, addr, length);
    }

    /// <summary>connect(2) of an AF_UNIX socket to an address built by the caller (an abstract name, for one); EINTR retried.</summary>
    public static unsafe Errno TryConnectUnix(SafeFd fd, sockaddr_un addr, uint length)
    {
        int result;
        Errno errno;
        do
        {
            result = connect(fd, &addr, length);
        }
        while (Interrupted(result, out errno));
        return errno;
    }
}
