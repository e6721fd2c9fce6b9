using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "getsockopt", SetLastError = true)]
    private static unsafe partial int getsockopt(SafeFd fd, int level, int optname, void* optval, uint* optlen);

    /// <summary>getsockopt(2) into raw bytes; <paramref name="length"/> is what the kernel filled (or needs, after ERANGE).</summary>
    public static unsafe Errno TryGetSocketOption(SafeFd fd, int level, int name, Span<byte> value, out int length)
    {
        uint optlen = (uint)value.Length;
        int result;
        fixed (byte* p = value)
        {
            result = getsockopt(fd, level, name, p, &optlen);
        }
        length = (int)optlen;
        return result < 0 ? LastErrno() : Errno.None;
    }

    /// <summary>SO_PEERCRED: the pid, uid and gid of the peer when it connected.</summary>
    public static unsafe Errno TryGetPeerCredentials(SafeFd fd, out ucred credentials)
    {
        ucred value = default;
        Errno errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_PEERCRED, new Span<byte>(&value, sizeof(ucred)), out _);
        credentials = value;
        return errno;
    }

    /// <summary>SO_PEERGROUPS: the peer's supplementary groups (Linux 4.13+).</summary>
    public static Errno TryGetPeerGroups(SafeFd fd, out uint[] groups)
    {
        // Start with room for 32 groups; the kernel answers ERANGE with the size it needs.
        byte[] buffer = new byte[32 * sizeof(uint)];
        Errno errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_PEERGROUPS, buffer, out int length);
        if (errno == Errno.ERANGE && length > buffer.Length)
        {
            buffer = new byte[length];
            errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_PEERGROUPS, buffer, out length);
        }
        groups = errno == Errno.None ? MemoryMarshal.Cast<byte, uint>(buffer.AsSpan(0, length)).ToArray() : [];
        return errno;
    }
}
