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
        }
    }
}
