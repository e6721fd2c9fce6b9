using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    /// <summary>
    /// SO_PEERSEC: the peer's LSM label (AppArmor profile, SELinux context), without the
    /// trailing NUL some LSMs include. ENOPROTOOPT when no LSM provides one.
    /// </summary>
    public static Errno TryGetPeerSecurityLabel(SafeFd fd, out string label)
    {
        byte[] buffer = new byte[256];
        Errno errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_PEERSEC, buffer, out int length);
        if (errno == Errno.ERANGE && length > buffer.Length)
        {
            buffer = new byte[length];
            errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_PEERSEC, buffer, out length);
        }
        label = "";
        if (errno == Errno.None)
        {
            ReadOnlySpan<byte> text = buffer.AsSpan(0, Math.Min(length, buffer.Length));
            int nul = text.IndexOf((byte)0);
            label = System.Text.Encoding.UTF8.GetString(nul >= 0 ? text[..nul] : text);
        }
        return errno;
    }

    /// <summary>
    /// SO_PEERPIDFD (include/uapi/asm-generic/socket.h, Linux 6.5; net/core/sock.c, sk_getsockopt).
    /// Kept out of the uapi classes: Debian 12's headers (Linux 6.1) lack it, so the ABI proof
    /// cannot compare it with C. 77 on x86, arm and arm64 (asm-generic).
    /// </summary>
    private const int SO_PEERPIDFD = 77;

    /// <summary>SO_PEERPIDFD (Linux 6.5+): a pidfd for the process that connected; ENOPROTOOPT on older kernels.</summary>
    public static unsafe Errno TryGetPeerPidFd(SafeFd fd, out SafeFd pidfd)
    {
        int value = -1;
        Errno errno = TryGetSocketOption(fd, Sockets.SOL_SOCKET, SO_PEERPIDFD, new Span<byte>(&value, sizeof(int)), out _);
        // net/core/sock.c: the pidfd is created with O_CLOEXEC (pidfd_prepare with flags 0 gives O_RDWR | O_CLOEXEC).
        pidfd = SafeFd.DangerousAdopt(errno == Errno.None ? value : -1);
        return errno;
    }

    [LibraryImport(Libc, EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall_pidfd_send_signal(long number, SafeFd pidfd, int signal, nint info, uint flags);

    /// <summary>pidfd_send_signal(2): the system call's number, 424, is the same on every architecture (include/uapi/asm-generic/unistd.h, arch/x86/entry/syscalls/syscall_64.tbl).</summary>
    private const long SYS_pidfd_send_signal = 424;

    /// <summary>
    /// Whether the process behind <paramref name="pidfd"/> still runs: signal 0 through the pidfd
    /// (kernel/signal.c, pidfd_send_signal). ESRCH once it has exited; EPERM means it exists but
    /// belongs to someone this process may not signal, which is still "alive".
    /// </summary>
    public static Errno TryProbePidFd(SafeFd pidfd) =>
        syscall_pidfd_send_signal(SYS_pidfd_send_signal, pidfd, 0, 0, 0) < 0 ? LastErrno() : Errno.None;
}
