using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "chmod", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chmod(string pathname, uint mode);

    /// <summary>chmod(2). A socket's permissions live on its path, not on the descriptor.</summary>
    public static Errno TryChmod(string path, uint mode) => chmod(path, mode) < 0 ? LastErrno() : Errno.None;
}
