using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

/// <summary>One received message: its length, the descriptors that came with it, and the kernel's truncation flags.</summary>
public readonly record struct ReceivedMessage(int Length, SafeFd[] Fds, int Flags)
{
    /// <summary>The payload did not fit the buffer (MSG_TRUNC): the rest is lost.</summary>
    public bool PayloadTruncated => (Flags & Sockets.MSG_TRUNC) != 0;

    /// <summary>Control data did not fit (MSG_CTRUNC): some descriptors were dropped by the kernel.</summary>
    public bool ControlTruncated => (Flags & Sockets.MSG_CTRUNC) != 0;

    /// <summary>Closes every received descriptor (for messages that are refused).</summary>
    public void CloseFds()
    {
        foreach (SafeFd fd in Fds)
        {
            fd.Dispose();
        }
    }
}

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "recvmsg", SetLastError = true)]
    private static unsafe partial nint recvmsg(SafeFd fd, msghdr* msg, int flags);

    /// <summary>
    /// recvmsg(2) of one message, accepting up to <paramref name="maxFds"/>
    /// SCM_RIGHTS descriptors. MSG_CMSG_CLOEXEC is always added, so a received
    /// descriptor is close-on-exec from the moment it exists, and each one is
    /// wrapped before this returns. Descriptors in any control message are
    /// owned by the result, even when the message is truncated: the caller
    /// decides whether to keep or close them. EINTR retried.
    /// </summary>
    public static unsafe Errno TryReceiveMessage(SafeFd socket, Span<byte> buffer, int maxFds, int flags, out ReceivedMessage message)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxFds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(maxFds, MaxFdsPerMessage);
        // Room for at least one descriptor even when none is expected, so an
        // unexpected one arrives (and is closed by the caller) instead of
        // silently being dropped with MSG_CTRUNC.
        int controlLength = (int)Sockets.CMSG_SPACE((nuint)(Math.Max(maxFds, 1) * sizeof(int)));
        byte* control = stackalloc byte[controlLength];
        new Span<byte>(control, controlLength).Clear();

        nint result;
        Errno errno;
        msghdr msg;
        fixed (byte* payload = buffer)
        {
            var iov = new iovec { iov_base = payload, iov_len = (nuint)buffer.Length };
            msg = new msghdr
            {
                msg_iov = &iov,
                msg_iovlen = 1,
                msg_control = control,
                msg_controllen = (nuint)controlLength,
            };
            do
            {
                result = recvmsg(socket, &msg, flags | Sockets.MSG_CMSG_CLOEXEC);
            }
            while (Interrupted(result, out errno));
        }

        if (errno != Errno.None)
        {
            message = new ReceivedMessage(0, [], 0);
            return errno;
        }

        // Counted first, so a message without descriptors (every request) allocates nothing.
        int received = 0;
        for (cmsghdr* header = Sockets.CMSG_FIRSTHDR(&msg); header != null; header = Sockets.CMSG_NXTHDR(&msg, header))
        {
            if (header->cmsg_level == Sockets.SOL_SOCKET && header->cmsg_type == Sockets.SCM_RIGHTS)
            {
                received += (int)((header->cmsg_len - Sockets.CMSG_LEN(0)) / sizeof(int));
            }
        }
        SafeFd[] fds = received == 0 ? [] : new SafeFd[received];
        int next = 0;
        for (cmsghdr* header = Sockets.CMSG_FIRSTHDR(&msg); header != null && received > 0; header = Sockets.CMSG_NXTHDR(&msg, header))
        {
            if (header->cmsg_level != Sockets.SOL_SOCKET || header->cmsg_type != Sockets.SCM_RIGHTS)
            {
                continue;
            }
            int count = (int)((header->cmsg_len - Sockets.CMSG_LEN(0)) / sizeof(int));
            int* slots = (int*)Sockets.CMSG_DATA(header);
            for (int i = 0; i < count; i++)
            {
                fds[next++] = SafeFd.DangerousAdopt(slots[i]);
            }
        }
        message = new ReceivedMessage((int)result, fds, msg.msg_flags);
        return Errno.None;
    }
}
