using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    // lseek64: a 64-bit offset on 32-bit ARM too.
    [LibraryImport(Libc, EntryPoint = "lseek64", SetLastError = true)]
    private static partial long lseek64(SafeFd fd, long offset, int whence);

    /// <summary>lseek(2). For a dma-buf, (0, SEEK_END) is how userspace learns the size.</summary>
    public static Errno TryLSeek(SafeFd fd, long offset, int whence, out long position)
    {
        position = lseek64(fd, offset, whence);
        return position < 0 ? LastErrno() : Errno.None;
    }
}
