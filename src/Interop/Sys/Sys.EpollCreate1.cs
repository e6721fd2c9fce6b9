using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "epoll_create1", SetLastError = true)]
    private static partial int epoll_create1(int flags);

    /// <summary>epoll_create1(2); EPOLL_CLOEXEC is always added.</summary>
    public static Errno TryEpollCreate(out SafeFd epoll)
    {
        int result = epoll_create1(Epoll.EPOLL_CLOEXEC);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        epoll = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
