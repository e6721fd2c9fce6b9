using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "mmap64", SetLastError = true)]
    private static unsafe partial void* mmap64(void* addr, nuint length, int prot, int flags, SafeFd fd, long offset);

    /// <summary>mmap(2) of a descriptor. Restricted and protected dma-bufs refuse this; the conformance tester checks how.</summary>
    public static unsafe Errno TryMmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        void* p = mmap64(null, length, prot, flags, fd, offset);
        if ((nint)p == -1) // MAP_FAILED
        {
            address = 0;
            return LastErrno();
        }
        address = (nint)p;
        return Errno.None;
    }
}
