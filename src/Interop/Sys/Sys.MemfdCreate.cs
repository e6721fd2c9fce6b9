using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int memfd_create(string name, uint flags);

    [LibraryImport(Libc, EntryPoint = "memfd_create", SetLastError = true)]
    private static unsafe partial int memfd_create(byte* name, uint flags);

    /// <summary>memfd_create(2); MFD_CLOEXEC is always added.</summary>
    public static Errno TryMemfdCreate(string name, uint flags, out SafeFd fd)
    {
        int result = memfd_create(name, flags | Memfd.MFD_CLOEXEC);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }

    /// <summary>
    /// memfd_create(2) with the name as NUL-terminated UTF-8 bytes (no string
    /// to make or marshal); MFD_CLOEXEC is always added.
    /// </summary>
    public static unsafe Errno TryMemfdCreate(ReadOnlySpan<byte> name, uint flags, out SafeFd fd)
    {
        if (name.IsEmpty || name[^1] != 0 || name[..^1].Contains((byte)0))
        {
            throw new ArgumentException("expected UTF-8 bytes ending in their only NUL", nameof(name));
        }
        int result;
        fixed (byte* bytes = name)
        {
            result = memfd_create(bytes, flags | Memfd.MFD_CLOEXEC);
        }
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
