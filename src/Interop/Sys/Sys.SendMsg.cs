using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint sendmsg(SafeFd fd, msghdr* msg, int flags);

    /// <summary>The most descriptors one message may carry (the kernel's SCM_MAX_FD is 253).</summary>
    public const int MaxFdsPerMessage = 253;

    /// <summary>
    /// sendmsg(2) of one message with <paramref name="fds"/> attached as
    /// SCM_RIGHTS. MSG_NOSIGNAL is always added (a vanished peer gives EPIPE,
    /// never SIGPIPE); EINTR retried. The caller keeps ownership of the descriptors.
    /// </summary>
    public static unsafe Errno TrySendMessage(SafeFd socket, ReadOnlySpan<byte> data, ReadOnlySpan<SafeFd> fds, int flags, out int sent)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fds.Length, MaxFdsPerMessage);
        int controlLength = fds.Length == 0 ? 0 : (int)Sockets.CMSG_SPACE((nuint)(fds.Length * sizeof(int)));
        byte* control = stackalloc byte[Math.Max(controlLength, 1)];
        new Span<byte>(control, Math.Max(controlLength, 1)).Clear();

        int referenced = 0;
        try
        {
            if (fds.Length > 0)
            {
                var header = (cmsghdr*)control;
                header->cmsg_len = Sockets.CMSG_LEN((nuint)(fds.Length * sizeof(int)));
                header->cmsg_level = Sockets.SOL_SOCKET;
                header->cmsg_type = Sockets.SCM_RIGHTS;
                int* slots = (int*)Sockets.CMSG_DATA(header);
                for (; referenced < fds.Length; referenced++)
                {
                    bool added = false;
                    fds[referenced].DangerousAddRef(ref added);
                    slots[referenced] = (int)fds[referenced].DangerousGetHandle();
                }
            }

            nint result;
            Errno errno;
            fixed (byte* payload = data)
            {
                var iov = new iovec { iov_base = payload, iov_len = (nuint)data.Length };
                var msg = new msghdr
                {
                    msg_iov = &iov,
                    msg_iovlen = 1,
                    msg_control = controlLength == 0 ? null : control,
                    msg_controllen = (nuint)controlLength,
                };
                do
                {
                    result = sendmsg(socket, &msg, flags | Sockets.MSG_NOSIGNAL);
                }
                while (Interrupted(result, out errno));
            }
            sent = errno == Errno.None ? (int)result : 0;
            return errno;
        }
        finally
        {
            for (int i = 0; i < referenced; i++)
            {
                fds[i].DangerousRelease();
            }
        }
    }
}
