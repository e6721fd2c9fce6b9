using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int memfd_create(string name, uint flags);

    /// <summary>memfd_create(2); MFD_CLOEXEC is always added.</summary>
    public static Errno TryMemfdCreate(string name, uint flags, out SafeFd fd)
    {
        int result = memfd_create(name, flags | Memfd.MFD_CLOEXEC);
        Errno errno = result < 0 ? LastErrno() : Errno.None;
        fd = SafeFd.DangerousAdopt(result);
        return errno;
    }
}
