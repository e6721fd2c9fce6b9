using Rstmem.Interop;

namespace Rstmem.Daemon.Broker;

/// <summary>A reply waiting to be sent, with the descriptor it carries (closed once sent).</summary>
internal sealed record OutgoingReply(byte[] Packet, SafeFd? Fd);

/// <summary>One client: its socket, who it is (SO_PEERCRED at accept), and replies the socket could not take yet.</summary>
internal sealed class Connection(long id, SafeFd socket, int pid, uint uid, uint gid) : IDisposable
{
    public long Id { get; } = id;

    public SafeFd Socket { get; } = socket;

    public int Pid { get; } = pid;

    public uint Uid { get; } = uid;

    public uint Gid { get; } = gid;

    /// <summary>Everything the kernel says about the peer (groups, LSM label, unit), for the access policy.</summary>
    public Policy.PeerIdentity Peer { get; init; } = Policy.PeerIdentity.Of(uid, gid, pid);

    /// <summary>The protocol version HELLO agreed (1 until then).</summary>
    public ushort Version { get; set; } = 1;

    /// <summary>Per-connection counter for default buffer names.</summary>
    public ulong Sequence { get; set; }

    public Queue<OutgoingReply> Outgoing { get; } = new();

    /// <summary>Drop the connection once its replies are sent (after EBADMSG).</summary>
    public bool CloseAfterReplies { get; set; }

    public void Dispose()
    {
        foreach (OutgoingReply reply in Outgoing)
        {
            reply.Fd?.Dispose();
        }
        Outgoing.Clear();
        Socket.Dispose();
    }
}
