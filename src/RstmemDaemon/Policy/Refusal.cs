using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// A connection refused at accept gets one error reply before it is closed, so the client reads
/// why (docs/protocol.md, section 6) instead of a bare ECONNRESET: opcode RSTMEM_REPLY alone,
/// request_id 0, version 1 (nothing was negotiated).
/// </summary>
internal static class Refusal
{
    public static void SendAndClose(SafeFd socket, Errno errno, string message)
    {
        using (socket)
        {
            byte[] packet = new byte[RSTMEM_MAX_PACKET];
            int length = Wire.Build(packet, RSTMEM_REPLY, 0, RSTMEM_PROTOCOL_MIN_VERSION, Wire.Status(errno, message));
            // A fresh socket's buffer is empty, so this does not block; if it fails, the close alone still tells the client.
            Sys.TrySendMessage(socket, packet.AsSpan(0, length), [], Sockets.MSG_DONTWAIT | Sockets.MSG_NOSIGNAL, out _);
            // Closing with requests unread would give the client ECONNRESET before it could read the
            // reply (net/unix/af_unix.c, unix_release_sock), so what it sent already is read and dropped.
            for (int i = 0; i < RSTMEM_MAX_PIPELINE; i++)
            {
                if (Sys.TryReceiveMessage(socket, packet, 1, Sockets.MSG_DONTWAIT, out ReceivedMessage request) != Errno.None || request.Length == 0)
                {
                    break;
                }
                request.CloseFds();
            }
        }
    }
}
