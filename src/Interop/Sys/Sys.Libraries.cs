using System.Runtime.InteropServices;

namespace Rstmem.Interop;

/// <summary>
/// The system calls rstmemd makes, one native function per file (Sys.Open.cs,
/// Sys.Ioctl.cs, ...). Each file holds the source-generated import and the
/// wrappers that read errno once, straight after the call, retry EINTR where
/// that is safe, and wrap every new descriptor in a <see cref="SafeFd"/>.
/// <c>TryX</c> wrappers return the <see cref="Errno"/>; <c>X</c> wrappers throw
/// <see cref="ErrnoException"/>.
/// </summary>
public static partial class Sys
{
    /// <summary>glibc by its SONAME: the bare "libc.so" is a linker script, not an ELF object.</summary>
    internal const string Libc = "libc.so.6";

    /// <summary>errno as the generated stub saved it right after the last call on this thread.</summary>
    internal static Errno LastErrno() => (Errno)Marshal.GetLastPInvokeError();

    /// <summary>Reads errno for a failed (negative) result; true when the call should be repeated (EINTR).</summary>
    internal static bool Interrupted(long result, out Errno errno)
    {
        errno = result < 0 ? LastErrno() : Errno.None;
        return errno == Errno.EINTR;
    }
}
