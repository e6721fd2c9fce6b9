using System.Globalization;
using Rstmem.Daemon.Backends;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// systemd socket activation (sd_listen_fds): LISTEN_PID must name this
/// process and LISTEN_FDS must be exactly "1" — the one SOCK_SEQPACKET socket
/// of rstmemd.socket at descriptor 3. Anything malformed fails closed; the
/// variables are removed once read, and the descriptor gets FD_CLOEXEC and
/// O_NONBLOCK.
/// </summary>
public static class SocketActivation
{
    public const int FirstDescriptor = 3;

    /// <summary>The activated listener, or null when this process was not socket-activated.</summary>
    public static SafeFd? TryTake(Func<string, string?> getenv, Action<string> unsetenv, int processId)
    {
        ArgumentNullException.ThrowIfNull(getenv);
        ArgumentNullException.ThrowIfNull(unsetenv);
        string? pidText = getenv("LISTEN_PID");
        string? countText = getenv("LISTEN_FDS");
        if (pidText is null && countText is null)
        {
            return null;
        }
        try
        {
            if (!TryParseStrict(pidText, out int pid))
            {
                throw new StartupException($"LISTEN_PID: '{pidText}' is not a process id; expected decimal digits");
            }
            if (pid != processId)
            {
                return null; // meant for another process (the variables were inherited)
            }
            if (!TryParseStrict(countText, out int count) || count != 1)
            {
                throw new StartupException($"LISTEN_FDS: '{countText}' is not usable; expected exactly 1 socket (rstmemd.socket)");
            }
            SafeFd fd = SafeFd.DangerousAdopt(FirstDescriptor);
            Check(fd);
            Sys.TryFcntl(fd, Fcntl.F_SETFD, Fcntl.FD_CLOEXEC, out _).ThrowIfError("fcntl(F_SETFD)", "3");
            // systemd passes a blocking socket; the broker accepts until EAGAIN, which needs O_NONBLOCK.
            Sys.TryFcntl(fd, Fcntl.F_SETFL, Sys.GetStatusFlags(fd) | Fcntl.O_NONBLOCK, out _).ThrowIfError("fcntl(F_SETFL)", "3");
            return fd;
        }
        finally
        {
            unsetenv("LISTEN_PID");
            unsetenv("LISTEN_FDS");
            unsetenv("LISTEN_FDNAMES");
        }
    }

    private static void Check(SafeFd fd)
    {
        Errno errno = Sys.TryStatx(fd, Stat.STATX_TYPE, out statx info);
        if (errno != Errno.None || (info.stx_mode & Stat.S_IFMT) != Stat.S_IFSOCK)
        {
            throw new StartupException($"LISTEN_FDS: descriptor 3 is not a socket ({(errno != Errno.None ? errno.Describe() : $"mode 0{Convert.ToString(info.stx_mode, 8)}")})");
        }
        Span<byte> value = stackalloc byte[4];
        errno = Sys.TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_TYPE, value, out _);
        int type = BitConverter.ToInt32(value);
        if (errno != Errno.None || type != Sockets.SOCK_SEQPACKET)
        {
            throw new StartupException($"LISTEN_FDS: descriptor 3 is socket type {type}; expected SOCK_SEQPACKET ({Sockets.SOCK_SEQPACKET}): use ListenSequentialPacket= in rstmemd.socket");
        }
        errno = Sys.TryGetSocketOption(fd, Sockets.SOL_SOCKET, Sockets.SO_ACCEPTCONN, value, out _);
        if (errno != Errno.None || BitConverter.ToInt32(value) == 0)
        {
            throw new StartupException("LISTEN_FDS: descriptor 3 is not listening");
        }
    }

    /// <summary>Decimal digits only: no sign, no spaces, no leading '+', fits an int.</summary>
    public static bool TryParseStrict(string? text, out int value)
    {
        value = 0;
        return !string.IsNullOrEmpty(text) && text.All(char.IsAsciiDigit)
            && int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value) && value > 0;
    }
}
