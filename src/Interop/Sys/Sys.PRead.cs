using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "pread64", SetLastError = true)]
    private static unsafe partial nint pread64(SafeFd fd, byte* buf, nuint count, long offset);

    /// <summary>pread(2) into <paramref name="buffer"/> from <paramref name="offset"/>; EINTR retried.</summary>
    public static unsafe Errno TryPRead(SafeFd fd, Span<byte> buffer, long offset, out int bytesRead)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        nint result;
        Errno errno;
        fixed (byte* p = buffer)
        {
            do
            {
                result = pread64(fd, p, (nuint)buffer.Length, offset);
            }
            while (Interrupted(result, out errno));
        }
        bytesRead = errno == Errno.None ? (int)result : 0;
        return errno;
    }
}
