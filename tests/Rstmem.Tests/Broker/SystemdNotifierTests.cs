using System.Net.Sockets;
using System.Text;
using Rstmem.Daemon.Hosting;
using Rstmem.Interop;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>sd_notify(3)'s two address forms, and a notification that cannot be sent.</summary>
public sealed class SystemdNotifierTests
{
    private static string Receive(Socket socket)
    {
        byte[] buffer = new byte[4096];
        socket.ReceiveTimeout = (int)GiveUp.After.TotalMilliseconds;
        int length = socket.Receive(buffer);
        return Encoding.UTF8.GetString(buffer, 0, length);
    }

    [Fact]
    public void Sends_to_a_path_and_to_an_abstract_name()
    {
        string directory = Directory.CreateTempSubdirectory("rstmemd-notify-").FullName;
        try
        {
            string path = Path.Combine(directory, "notify.sock");
            using var byPath = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            byPath.Bind(new UnixDomainSocketEndPoint(path));
            Assert.Equal(Errno.None, new SystemdNotifier(path).Send("READY=1\nSTATUS=by path"));
            Assert.Equal("READY=1\nSTATUS=by path", Receive(byPath));

            // The abstract name has no terminating NUL: a notifier that sent one would reach another address.
            string name = $"rstmemd-test-notify-{Environment.ProcessId}-{Guid.NewGuid():N}";
            using var byName = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            byName.Bind(new UnixDomainSocketEndPoint("\0" + name));
            Assert.Equal(Errno.None, new SystemdNotifier("@" + name).Send("STOPPING=1"));
            Assert.Equal("STOPPING=1", Receive(byName));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_notification_that_cannot_be_sent_returns_the_errno_and_never_throws()
    {
        Assert.Equal(Errno.ENOENT, new SystemdNotifier(Path.Combine(Path.GetTempPath(), $"rstmemd-no-such-{Guid.NewGuid():N}.sock")).Send("READY=1"));
        Assert.Equal(Errno.ENAMETOOLONG, new SystemdNotifier("@" + new string('n', 200)).Send("READY=1"));
        Assert.Equal(Errno.ENAMETOOLONG, new SystemdNotifier("/" + new string('n', 200)).Send("READY=1"));
        Assert.False(new SystemdNotifier(null).Enabled);
        Assert.Equal(Errno.None, new SystemdNotifier("").Send("READY=1")); // no systemd: nothing to do
    }
}
