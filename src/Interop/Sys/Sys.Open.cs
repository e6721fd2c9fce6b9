using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string pathname, int flags, uint mode);

    /// <summary>open(2); O_CLOEXEC is always added.</summary>
    public static Errno TryOpen(string path, int flags, out SafeFd fd, uint mode = 0)
    {
        int result;
        Errno errno;
        do
        {
            result = open(path, flags | Fcntl.O_CLOEXEC, mode);
        }
        while (Interrupted(result, out errno));
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }

    [LibraryImport(Libc, EntryPoint = "open", SetLastError = true)]
    private static unsafe partial int open(byte* pathname, int flags, uint mode);

    /// <summary>open(2) of a NUL-terminated UTF-8 path (no managed string, for a file per buffer); O_CLOEXEC is always added.</summary>
    public static unsafe Errno TryOpen(ReadOnlySpan<byte> nulTerminatedPath, int flags, out SafeFd fd)
    {
        if (nulTerminatedPath.IsEmpty || nulTerminatedPath[^1] != 0)
        {
            throw new ArgumentException("the path must end with a NUL byte", nameof(nulTerminatedPath));
        }
        int result;
        Errno errno;
        fixed (byte* path = nulTerminatedPath)
        {
            do
            {
                result = open(path, flags | Fcntl.O_CLOEXEC, 0);
            }
            while (Interrupted(result, out errno));
        }
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }

    /// <inheritdoc cref="TryOpen(string, int, out SafeFd, uint)"/>
    public static SafeFd Open(string path, int flags, uint mode = 0)
    {
        TryOpen(path, flags, out SafeFd fd, mode).ThrowIfError("open", path);
        return fd;
    }
}
