using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "inotify_rm_watch", SetLastError = true)]
    private static partial int inotify_rm_watch(SafeFd fd, int wd);

    /// <summary>inotify_rm_watch(2). EINVAL means the watch is already gone (its inode was evicted: IN_IGNORED).</summary>
    public static Errno TryInotifyRmWatch(SafeFd inotify, int watch) =>
        inotify_rm_watch(inotify, watch) < 0 ? LastErrno() : Errno.None;
}
