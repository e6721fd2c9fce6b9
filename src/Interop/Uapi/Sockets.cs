using System.Text;

namespace Rstmem.Interop.Uapi;

/// <summary>
/// &lt;sys/socket.h&gt; and &lt;sys/un.h&gt; as glibc lays them out on x86,
/// arm and arm64, and the CMSG_* macros for SCM_RIGHTS.
/// </summary>
public static class Sockets
{
    public const int AF_UNIX = 1;

    public const int SOCK_STREAM = 1;
    public const int SOCK_DGRAM = 2;
    public const int SOCK_SEQPACKET = 5;
    public const int SOCK_NONBLOCK = Fcntl.O_NONBLOCK;
    public const int SOCK_CLOEXEC = Fcntl.O_CLOEXEC;

    public const int SOL_SOCKET = 1;
    public const int SO_TYPE = 3;
    public const int SO_ACCEPTCONN = 30;
    public const int SO_PEERCRED = 17;
    public const int SO_PEERGROUPS = 59;

    /// <summary>The peer's LSM label, as a string (include/uapi/asm-generic/socket.h; net/core/sock.c, sk_getsockopt).</summary>
    public const int SO_PEERSEC = 31;

    public const int SCM_RIGHTS = 1;

    public const int MSG_PEEK = 0x2;
    public const int MSG_CTRUNC = 0x8;
    public const int MSG_TRUNC = 0x20;
    public const int MSG_DONTWAIT = 0x40;
    public const int MSG_EOR = 0x80;
    public const int MSG_NOSIGNAL = 0x4000;
    public const int MSG_CMSG_CLOEXEC = 0x40000000;

    public const int SHUT_RD = 0;
    public const int SHUT_WR = 1;
    public const int SHUT_RDWR = 2;

    // The CMSG_* macros of <bits/socket.h>: control data is aligned to size_t.
    public static nuint CMSG_ALIGN(nuint length) => (length + (nuint)nuint.Size - 1) & ~((nuint)nuint.Size - 1);

    public static unsafe nuint CMSG_SPACE(nuint length) => CMSG_ALIGN(length) + CMSG_ALIGN((nuint)sizeof(cmsghdr));

    public static unsafe nuint CMSG_LEN(nuint length) => CMSG_ALIGN((nuint)sizeof(cmsghdr)) + length;

    public static unsafe byte* CMSG_DATA(cmsghdr* header) => (byte*)header + CMSG_ALIGN((nuint)sizeof(cmsghdr));

    public static unsafe cmsghdr* CMSG_FIRSTHDR(msghdr* msg) =>
        msg->msg_controllen >= (nuint)sizeof(cmsghdr) ? (cmsghdr*)msg->msg_control : null;

    /// <summary>glibc's __cmsg_nxthdr: null at the end, or when a length would run past the control buffer.</summary>
    public static unsafe cmsghdr* CMSG_NXTHDR(msghdr* msg, cmsghdr* header)
    {
        if (header->cmsg_len < (nuint)sizeof(cmsghdr))
        {
            return null;
        }
        byte* end = (byte*)msg->msg_control + msg->msg_controllen;
        var next = (cmsghdr*)((byte*)header + CMSG_ALIGN(header->cmsg_len));
        if ((byte*)(next + 1) > end || (byte*)next + CMSG_ALIGN(next->cmsg_len) > end)
        {
            return null;
        }
        return next;
    }
}

#pragma warning disable CS8981 // C names.
public unsafe struct iovec
{
    public void* iov_base;
    public nuint iov_len;
}

public unsafe struct msghdr
{
    public void* msg_name;
    public uint msg_namelen;
    public iovec* msg_iov;
    public nuint msg_iovlen;
    public void* msg_control;
    public nuint msg_controllen;
    public int msg_flags;
}

public struct cmsghdr
{
    public nuint cmsg_len;
    public int cmsg_level;
    public int cmsg_type;
}

/// <summary>SO_PEERCRED's answer.</summary>
public struct ucred
{
    public int pid;
    public uint uid;
    public uint gid;
}
#pragma warning restore CS8981

public unsafe struct sockaddr_un
{
    public const int PathCapacity = 108;

    /// <summary>The longest path (in UTF-8 bytes) that fits with its terminating NUL.</summary>
    public const int MaxPathBytes = PathCapacity - 1;

    public ushort sun_family;
    public fixed byte sun_path[PathCapacity];

    /// <summary>An AF_UNIX address for a filesystem path, and the address length to pass with it.</summary>
    public static sockaddr_un ForPath(string path, out uint length)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = Encoding.UTF8.GetBytes(path);
        if (bytes.Length >= PathCapacity)
        {
            throw new ArgumentException(
                $"socket path '{path}' is {bytes.Length} bytes; AF_UNIX paths hold at most {MaxPathBytes}", nameof(path));
        }
        var address = new sockaddr_un { sun_family = Sockets.AF_UNIX };
        bytes.CopyTo(new Span<byte>(address.sun_path, PathCapacity));
        length = (uint)(sizeof(ushort) + bytes.Length + 1);
        return address;
    }

    /// <summary>
    /// An AF_UNIX address in the abstract namespace (unix(7)): a NUL, then the
    /// name, and a length that counts no terminator. False when it does not fit.
    /// </summary>
    public static bool TryForAbstract(ReadOnlySpan<char> name, out sockaddr_un address, out uint length)
    {
        address = new sockaddr_un { sun_family = Sockets.AF_UNIX };
        length = 0;
        int bytes = Encoding.UTF8.GetByteCount(name);
        if (bytes + 1 > PathCapacity)
        {
            return false;
        }
        fixed (byte* path = address.sun_path)
        {
            Encoding.UTF8.GetBytes(name, new Span<byte>(path + 1, PathCapacity - 1));
        }
        length = (uint)(sizeof(ushort) + 1 + bytes);
        return true;
    }
}
