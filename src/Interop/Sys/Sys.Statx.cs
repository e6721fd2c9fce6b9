using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

/// <summary>Which file a descriptor refers to: equal for dups and for copies passed over SCM_RIGHTS.</summary>
public readonly record struct FileIdentity(uint DeviceMajor, uint DeviceMinor, ulong Inode);

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(SafeFd dirfd, string pathname, int flags, uint mask, statx* statxbuf);

    [LibraryImport(Libc, EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int statx(int dirfd, string pathname, int flags, uint mask, statx* statxbuf);

    /// <summary>statx(2) on the descriptor itself (AT_EMPTY_PATH).</summary>
    public static unsafe Errno TryStatx(SafeFd fd, uint mask, out statx result)
    {
        statx buffer = default;
        int status = statx(fd, "", Stat.AT_EMPTY_PATH, mask, &buffer);
        result = buffer;
        return status < 0 ? LastErrno() : Errno.None;
    }

    /// <summary>The (device, inode) pair naming the file behind <paramref name="fd"/>.</summary>
    public static Errno TryGetIdentity(SafeFd fd, out FileIdentity identity)
    {
        Errno errno = TryStatx(fd, Stat.STATX_INO, out statx result);
        identity = new FileIdentity(result.stx_dev_major, result.stx_dev_minor, result.stx_ino);
        return errno;
    }

    /// <summary>The (device, inode) pair of the file <paramref name="path"/> names, symbolic links followed (/proc/self/fd/N: the open file).</summary>
    public static unsafe Errno TryGetIdentity(string path, out FileIdentity identity)
    {
        statx buffer = default;
        int status = statx(Stat.AT_FDCWD, path, 0, Stat.STATX_INO, &buffer);
        identity = new FileIdentity(buffer.stx_dev_major, buffer.stx_dev_minor, buffer.stx_ino);
        return status < 0 ? LastErrno() : Errno.None;
    }
}
