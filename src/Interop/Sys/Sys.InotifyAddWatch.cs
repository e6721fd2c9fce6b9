using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "inotify_add_watch", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int inotify_add_watch(SafeFd fd, string pathname, uint mask);

    /// <summary>inotify_add_watch(2); <paramref name="watch"/> is the watch descriptor.</summary>
    public static Errno TryInotifyAddWatch(SafeFd inotify, string path, uint mask, out int watch)
    {
        watch = inotify_add_watch(inotify, path, mask);
        return watch < 0 ? LastErrno() : Errno.None;
    }
}
