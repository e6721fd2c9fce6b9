using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "openat", SetLastError = true)]
    private static unsafe partial int openat(SafeFd dirfd, byte* pathname, int flags, uint mode);

    /// <summary>
    /// openat(2) with a NUL-terminated UTF-8 name relative to <paramref name="directory"/>:
    /// no managed string on the way, for paths opened on a hot path. O_CLOEXEC is always added.
    /// </summary>
    public static unsafe Errno TryOpenAt(SafeFd directory, ReadOnlySpan<byte> nulTerminatedName, int flags, out SafeFd fd)
    {
        if (nulTerminatedName.IsEmpty || nulTerminatedName[^1] != 0)
        {
            throw new ArgumentException("the name must end with a NUL byte", nameof(nulTerminatedName));
        }
        int result;
        Errno errno;
        fixed (byte* name = nulTerminatedName)
        {
            do
            {
                result = openat(directory, name, flags | Fcntl.O_CLOEXEC, 0);
            }
            while (Interrupted(result, out errno));
        }
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
