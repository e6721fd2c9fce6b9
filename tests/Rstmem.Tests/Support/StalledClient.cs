using System.Runtime.InteropServices;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Support;

/// <summary>
/// A client that sends requests and reads none of the replies until the daemon
/// stops reading it: its socket is full of replies, and the daemon holds the
/// next one (BrokerServer: "while a client has replies waiting, nothing more is
/// read from it").
/// </summary>
/// <remarks>
/// The stall is established by counting, not by waiting: after every burst of
/// S requests (sent until the socket's send buffer is full) a probe connection
/// makes S + 50 STATS round trips. The daemon reads at most PacketsPerTurn
/// requests of one client per turn of its poll loop, so those round trips
/// span at least (S + 50) / PacketsPerTurn turns; in each, a client with
/// requests waiting and no reply held has PacketsPerTurn of them read (or all
/// there are). A daemon still reading this client would thus have read all S
/// and left its socket writable; one that is not writable has been left unread
/// on purpose. The probe is closed before this returns.
/// </remarks>
internal sealed class StalledClient : IDisposable
{
    private const int MaxRequests = 100_000;

    private StalledClient(string socketPath)
    {
        Raw = new RawClient(socketPath);
    }

    public RawClient Raw { get; }

    /// <summary>Requests sent, ids 1 to <see cref="Sent"/>.</summary>
    public int Sent { get; private set; }

    /// <summary>Sends <paramref name="request"/> (built for each request id) until the daemon stops reading; fails if it never does.</summary>
    public static StalledClient Establish(string socketPath, Func<uint, byte[]> request)
    {
        var stalled = new StalledClient(socketPath);
        try
        {
            using var probe = new RawClient(socketPath);
            byte[] stats = RawClient.Packet(RstmemProtocol.RSTMEM_OP_STATS, 1, []);
            for (int burst = 0; ; burst++)
            {
                int before = stalled.Sent;
                while (stalled.Sent < MaxRequests && stalled.Raw.TrySend(request((uint)stalled.Sent + 1)) == Errno.None)
                {
                    stalled.Sent++;
                }
                Assert.True(stalled.Sent < MaxRequests, $"the daemon read all {MaxRequests} requests of a client that reads no reply");
                for (int i = 0; i < stalled.Sent - before + 50; i++)
                {
                    probe.Send(stats);
                    Assert.Equal(Errno.None, probe.Receive().Error);
                }
                if (!stalled.Raw.IsWritable())
                {
                    return stalled;
                }
                Assert.True(burst < 100, $"after {burst} bursts ({stalled.Sent} requests) the daemon still reads a client that reads no reply");
            }
        }
        catch
        {
            stalled.Dispose();
            throw;
        }
    }

    /// <summary>Reads every reply, checking they answer requests 1 to <see cref="Sent"/> in order; descriptors are closed.</summary>
    public List<(Errno Error, byte[] Body)> ReadAll()
    {
        var replies = new List<(Errno, byte[])>(Sent);
        for (int i = 1; i <= Sent; i++)
        {
            var reply = Raw.Receive();
            foreach (SafeFd fd in reply.Fds)
            {
                fd.Dispose();
            }
            Assert.Equal((uint)i, reply.Header.request_id);
            replies.Add((reply.Error, reply.Body));
        }
        return replies;
    }

    /// <summary>STATS replies' counters.</summary>
    public static rstmem_stats_reply StatsOf(byte[] body) => MemoryMarshal.Read<rstmem_stats_reply>(body);

    public void Dispose() => Raw.Dispose();
}
