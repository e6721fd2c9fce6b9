using System.Text;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// sd_notify(3) for Type=notify: READY=1 once listening, STATUS= lines,
/// RELOADING=1 around a reload, STOPPING=1. A datagram to $NOTIFY_SOCKET (a
/// path, or '@' for the abstract namespace); without it every call is a
/// no-op. The environment comes in through the constructor so tests need no
/// systemd. Sent through the project's own syscalls, not System.Net.Sockets:
/// the notification is on the start-up path, and that stack is not.
/// </summary>
public sealed class SystemdNotifier(string? notifySocket)
{
    public bool Enabled { get; } = !string.IsNullOrEmpty(notifySocket);

    public static SystemdNotifier FromEnvironment() => new(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));

    public void Ready(string status) => _ = Send($"READY=1\nSTATUS={status}");

    public void Status(string status) => _ = Send($"STATUS={status}");

    public void Stopping(string status) => _ = Send($"STOPPING=1\nSTATUS={status}");

    /// <summary>RELOADING=1 with CLOCK_MONOTONIC in microseconds (Stopwatch's clock on Linux); READY=1 ends it.</summary>
    public void Reloading() => _ = Send($"RELOADING=1\nMONOTONIC_USEC={System.Diagnostics.Stopwatch.GetTimestamp() / (System.Diagnostics.Stopwatch.Frequency / 1_000_000)}");

    /// <summary>
    /// Best effort, as sd_notify(3) is: a notification that cannot be sent
    /// must not stop the daemon (it may be sent from a signal handler);
    /// systemd's own timeout reports a READY=1 that never came.
    /// </summary>
    public Errno Send(string message)
    {
        if (!Enabled)
        {
            return Errno.None;
        }
        Errno errno = Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_DGRAM | Sockets.SOCK_CLOEXEC, 0, out SafeFd socket);
        if (errno != Errno.None)
        {
            return errno;
        }
        using (socket)
        {
            if (notifySocket!.StartsWith('@'))
            {
                if (!sockaddr_un.TryForAbstract(notifySocket.AsSpan(1), out sockaddr_un address, out uint length))
                {
                    return Errno.ENAMETOOLONG;
                }
                errno = Sys.TryConnectUnix(socket, address, length);
            }
            else
            {
                errno = Encoding.UTF8.GetByteCount(notifySocket) > sockaddr_un.MaxPathBytes ? Errno.ENAMETOOLONG : Sys.TryConnectUnix(socket, notifySocket);
            }
            return errno != Errno.None ? errno : Sys.TryWrite(socket, Encoding.UTF8.GetBytes(message), out _);
        }
    }
}
