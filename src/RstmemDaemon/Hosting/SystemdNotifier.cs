using System.Net.Sockets;
using System.Text;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// sd_notify(3) for Type=notify: READY=1 once listening, STATUS= lines,
/// RELOADING=1 around a reload, STOPPING=1. A datagram to $NOTIFY_SOCKET (a path, or '@' for the abstract
/// namespace); without it every call is a no-op. The environment comes in
/// through the constructor so tests need no systemd.
/// </summary>
public sealed class SystemdNotifier(string? notifySocket)
{
    public bool Enabled { get; } = !string.IsNullOrEmpty(notifySocket);

    public static SystemdNotifier FromEnvironment() => new(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));

    public void Ready(string status) => Send($"READY=1\nSTATUS={status}");

    public void Status(string status) => Send($"STATUS={status}");

    public void Stopping(string status) => Send($"STOPPING=1\nSTATUS={status}");

    /// <summary>RELOADING=1 with CLOCK_MONOTONIC in microseconds (Stopwatch's clock on Linux) (Type=notify-reload, systemd 253); READY=1 ends it.</summary>
    public void Reloading() => Send($"RELOADING=1\nMONOTONIC_USEC={System.Diagnostics.Stopwatch.GetTimestamp() / (System.Diagnostics.Stopwatch.Frequency / 1_000_000)}");

    private void Send(string message)
    {
        if (!Enabled)
        {
            return;
        }
        string path = notifySocket!.StartsWith('@') ? "\0" + notifySocket[1..] : notifySocket;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.SendTo(Encoding.UTF8.GetBytes(message), new UnixDomainSocketEndPoint(path));
    }
}
