using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "accept4", SetLastError = true)]
    private static unsafe partial int accept4(SafeFd fd, void* addr, uint* addrlen, int flags);

    /// <summary>accept4(2); SOCK_CLOEXEC is always added; EINTR retried.</summary>
    public static unsafe Errno TryAccept(SafeFd listener, int flags, out SafeFd connection)
    {
        int result;
        Errno errno;
        do
        {
            result = accept4(listener, null, null, flags | Sockets.SOCK_CLOEXEC);
        }
        while (Interrupted(result, out errno));
        connection = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
