using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Support;

/// <summary>A client that sends whatever bytes a test wants and reads the raw reply.</summary>
internal sealed class RawClient : IDisposable
{
    /// <summary>FIONREAD (SIOCINQ): include/uapi/asm-generic/ioctls.h; on a unix SOCK_SEQPACKET socket the bytes of every queued packet (net/unix/af_unix.c, unix_inq_len).</summary>
    private const uint FIONREAD = 0x541B;

    private readonly SafeFd socket;

    public RawClient(string path)
    {
        Assert.Equal(Errno.None, Interop.Sys.TrySocket(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out socket));
        Assert.Equal(Errno.None, Interop.Sys.TryConnectUnix(socket, path));
    }

    public SafeFd Socket => socket;

    public void Send(ReadOnlySpan<byte> packet, params SafeFd[] fds) =>
        Assert.Equal(Errno.None, Interop.Sys.TrySendMessage(socket, packet, fds, 0, out _));

    /// <summary>Sends without waiting: EAGAIN when the socket's send buffer is full (the daemon is not reading).</summary>
    public Errno TrySend(ReadOnlySpan<byte> packet) =>
        Interop.Sys.TrySendMessage(socket, packet, [], Sockets.MSG_DONTWAIT, out _);

    /// <summary>Whether a send would not block now (POLLOUT), asked without waiting.</summary>
    public bool IsWritable() => Ready(Poll.POLLOUT, TimeSpan.Zero);

    /// <summary>Bytes of replies that have arrived and are not read yet.</summary>
    public int UnreadBytes()
    {
        int bytes = 0;
        Assert.Equal(Errno.None, Interop.Sys.TryIoctl(socket, FIONREAD, ref bytes, out _));
        return bytes;
    }

    public static byte[] Packet(ushort opcode, uint id, ReadOnlySpan<byte> payload, ushort version = 1)
    {
        byte[] buffer = new byte[RstmemProtocol.RSTMEM_MAX_PACKET];
        int length = Wire.Build(buffer, opcode, id, version, payload.ToArray());
        return buffer[..length];
    }

    /// <summary>The next reply: header, error, message, the rest of the payload, and descriptors (closed by the caller).</summary>
    public (rstmem_header Header, Errno Error, string Message, byte[] Body, SafeFd[] Fds) Receive()
    {
        Assert.True(Ready(Poll.POLLIN, GiveUp.After), $"no reply within {GiveUp.After.TotalSeconds} s (the give-up bound)");
        byte[] buffer = new byte[RstmemProtocol.RSTMEM_MAX_PACKET];
        Assert.Equal(Errno.None, Interop.Sys.TryReceiveMessage(socket, buffer, 4, 0, out ReceivedMessage message));
        Assert.True(message.Length >= Wire.HeaderSize + Wire.StatusSize, $"reply of {message.Length} bytes");
        rstmem_header header = Wire.ReadHeader(buffer.AsSpan(0, message.Length));
        var status = System.Runtime.InteropServices.MemoryMarshal.Read<rstmem_status>(buffer.AsSpan(Wire.HeaderSize));
        string text = System.Text.Encoding.UTF8.GetString(buffer, Wire.HeaderSize + Wire.StatusSize, (int)status.message_length);
        byte[] body = buffer[(Wire.HeaderSize + Wire.StatusSize + (int)status.message_length)..message.Length];
        return (header, (Errno)status.error, text, body, message.Fds);
    }

    /// <summary>True when the daemon has closed the connection (recv returns end of file).</summary>
    public bool IsClosedByPeer()
    {
        Assert.True(Ready(Poll.POLLIN, GiveUp.After), $"the connection neither closed nor answered within {GiveUp.After.TotalSeconds} s (the give-up bound)");
        byte[] buffer = new byte[64];
        Errno errno = Interop.Sys.TryReceiveMessage(socket, buffer, 1, 0, out ReceivedMessage message);
        message.CloseFds();
        return errno == Errno.ECONNRESET || (errno == Errno.None && message.Length == 0);
    }

    /// <summary>Whether <paramref name="events"/> (or a hang-up or error) are pending, waiting at most <paramref name="wait"/>.</summary>
    private bool Ready(short events, TimeSpan wait)
    {
        Span<pollfd> fds = [new pollfd { fd = socket.DangerousFd, events = events }];
        Errno errno;
        int ready;
        do
        {
            errno = Interop.Sys.TryPoll(fds, (int)wait.TotalMilliseconds, out ready);
        }
        while (errno == Errno.EINTR);
        Assert.Equal(Errno.None, errno);
        return ready == 1;
    }

    public void Dispose() => socket.Dispose();
}
