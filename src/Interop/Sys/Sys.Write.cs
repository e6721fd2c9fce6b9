using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "write", SetLastError = true)]
    private static unsafe partial nint write(SafeFd fd, byte* buf, nuint count);

    /// <summary>write(2) from <paramref name="buffer"/>; EINTR retried. A short write is reported, not hidden.</summary>
    public static unsafe Errno TryWrite(SafeFd fd, ReadOnlySpan<byte> buffer, out int bytesWritten)
    {
        nint result;
        Errno errno;
        fixed (byte* p = buffer)
        {
            do
            {
                result = write(fd, p, (nuint)buffer.Length);
            }
            while (Interrupted(result, out errno));
        }
        bytesWritten = errno == Errno.None ? (int)result : 0;
        return errno;
    }
}
