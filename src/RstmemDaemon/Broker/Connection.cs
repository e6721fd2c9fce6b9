using System.Buffers;
using Rstmem.Interop;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// A reply as the dispatcher made it: <see cref="Length"/> bytes at the start
/// of the dispatcher's reply buffer (valid until its next request), and the
/// descriptor it carries (closed once sent).
/// </summary>
internal readonly record struct OutgoingReply(int Length, SafeFd? Fd)
{
    /// <summary>No reply yet: the kernel's allocation runs on a worker (<see cref="AllocationWorkers"/>).</summary>
    public static OutgoingReply Pending => new(-1, null);

    public bool IsPending => Length < 0;
}

/// <summary>A reply the client's socket could not take yet: its bytes in a pooled array, returned once sent.</summary>
internal readonly record struct QueuedReply(byte[] Packet, int Length, SafeFd? Fd)
{
    public ReadOnlySpan<byte> Bytes => Packet.AsSpan(0, Length);

    /// <summary>Gives the array back and closes the descriptor (sent or not: the daemon's copy is never kept).</summary>
    public void Release()
    {
        ArrayPool<byte>.Shared.Return(Packet);
        Fd?.Dispose();
    }
}

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

    public Queue<QueuedReply> Outgoing { get; } = new();

    /// <summary>The epoll events this connection is registered for now (changed only when its state changes).</summary>
    public uint Registered { get; set; }

    /// <summary>An ALLOC of this connection is with a heap's worker: nothing more is read until its reply is made, so replies keep their order.</summary>
    public bool AllocationInFlight { get; set; }

    /// <summary>Drop the connection once its replies are sent (after EBADMSG).</summary>
    public bool CloseAfterReplies { get; set; }

    public void Dispose()
    {
        foreach (QueuedReply reply in Outgoing)
        {
            reply.Release();
        }
        Outgoing.Clear();
        Socket.Dispose();
    }
}
