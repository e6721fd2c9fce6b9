using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chown(string pathname, uint owner, uint group);

    /// <summary>The "leave unchanged" value for an owner or group ((uid_t)-1).</summary>
    public const uint Unchanged = uint.MaxValue;

    /// <summary>chown(2); pass <see cref="Unchanged"/> to keep the owner or the group.</summary>
    public static Errno TryChown(string path, uint owner, uint group) =>
        chown(path, owner, group) < 0 ? LastErrno() : Errno.None;
}
