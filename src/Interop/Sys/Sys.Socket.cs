using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "socket", SetLastError = true)]
    private static partial int socket(int domain, int type, int protocol);

    /// <summary>socket(2); SOCK_CLOEXEC is always added.</summary>
    public static Errno TrySocket(int domain, int type, int protocol, out SafeFd fd)
    {
        int result = socket(domain, type | Sockets.SOCK_CLOEXEC, protocol);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
