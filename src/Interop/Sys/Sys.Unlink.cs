using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int unlink(string pathname);

    /// <summary>unlink(2).</summary>
    public static Errno TryUnlink(string path) => unlink(path) < 0 ? LastErrno() : Errno.None;
}
