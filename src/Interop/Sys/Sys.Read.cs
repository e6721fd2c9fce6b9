using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "read", SetLastError = true)]
    private static unsafe partial nint read(SafeFd fd, byte* buf, nuint count);

    /// <summary>read(2) into <paramref name="buffer"/>; EINTR retried.</summary>
    public static unsafe Errno TryRead(SafeFd fd, Span<byte> buffer, out int bytesRead)
    {
        nint result;
        Errno errno;
        fixed (byte* p = buffer)
        {
            do
            {
                result = read(fd, p, (nuint)buffer.Length);
            }
            while (Interrupted(result, out errno));
        }
        bytesRead = errno == Errno.None ? (int)result : 0;
        return errno;
    }
}
