using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "inotify_init1", SetLastError = true)]
    private static partial int inotify_init1(int flags);

    /// <summary>inotify_init1(2); IN_CLOEXEC is always added.</summary>
    public static Errno TryInotifyInit(int flags, out SafeFd fd)
    {
        int result = inotify_init1(flags | Inotify.IN_CLOEXEC);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
