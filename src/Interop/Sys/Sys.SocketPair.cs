using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "socketpair", SetLastError = true)]
    private static unsafe partial int socketpair(int domain, int type, int protocol, int* sv);

    /// <summary>socketpair(2); SOCK_CLOEXEC is always added.</summary>
    public static unsafe Errno TrySocketPair(int domain, int type, int protocol, out SafeFd first, out SafeFd second)
    {
        int* sv = stackalloc int[2] { -1, -1 };
        int result = socketpair(domain, type | Sockets.SOCK_CLOEXEC, protocol, sv);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        first = SafeFd.DangerousAdopt(sv[0]);
        second = SafeFd.DangerousAdopt(sv[1]);
        return errno;
    }
}
