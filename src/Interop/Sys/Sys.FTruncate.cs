using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "ftruncate64", SetLastError = true)]
    private static partial int ftruncate64(SafeFd fd, long length);

    /// <summary>ftruncate(2); EINTR retried.</summary>
    public static Errno TryFTruncate(SafeFd fd, long length)
    {
        int result;
        Errno errno;
        do
        {
            result = ftruncate64(fd, length);
        }
        while (Interrupted(result, out errno));
        return errno;
    }
}
