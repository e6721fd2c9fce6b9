using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "munmap", SetLastError = true)]
    private static unsafe partial int munmap(void* addr, nuint length);

    /// <summary>munmap(2) of a mapping made by <see cref="TryMmap"/>.</summary>
    public static unsafe Errno TryMunmap(nint address, nuint length) =>
        munmap((void*)address, length) < 0 ? LastErrno() : Errno.None;
}
