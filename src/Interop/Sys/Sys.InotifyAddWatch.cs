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

    [LibraryImport(Libc, EntryPoint = "inotify_add_watch", SetLastError = true)]
    private static unsafe partial int inotify_add_watch(SafeFd fd, byte* pathname, uint mask);

    /// <summary>inotify_add_watch(2) of a NUL-terminated UTF-8 path: no managed string, for a watch per buffer.</summary>
    public static unsafe Errno TryInotifyAddWatch(SafeFd inotify, ReadOnlySpan<byte> nulTerminatedPath, uint mask, out int watch)
    {
        if (nulTerminatedPath.IsEmpty || nulTerminatedPath[^1] != 0)
        {
            throw new ArgumentException("the path must end with a NUL byte", nameof(nulTerminatedPath));
        }
        fixed (byte* path = nulTerminatedPath)
        {
            watch = inotify_add_watch(inotify, path, mask);
        }
        return watch < 0 ? LastErrno() : Errno.None;
    }
}
