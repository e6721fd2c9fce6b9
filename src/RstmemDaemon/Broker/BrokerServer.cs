using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// The broker: one thread, one poll(2) loop over the listening socket, every
/// client and the release watcher. Sockets are non-blocking; a reply the
/// client's socket cannot take now waits in that client's queue (with its
/// descriptor) until POLLOUT, so a stalled client delays nobody; while a
/// client has replies waiting, nothing more is read from it, so a client that
/// sends without reading fills its own socket, not the daemon's memory. Each client
/// gets at most <see cref="PacketsPerTurn"/> requests handled per turn, so a
/// flooding client cannot starve the rest. Requests are handled where they
/// are read: no hand-off between threads on the allocation path.
/// </summary>
public sealed class BrokerServer : IDisposable
{
    public const int PacketsPerTurn = 16;
    private const int AcceptsPerTurn = 64;

    private readonly SafeFd listener;
    private readonly BackendSelection backend;
    private readonly ILogger logger;
    private readonly BufferLedger ledger;
    private readonly RequestDispatcher dispatcher;
    private readonly Dictionary<long, Connection> clients = [];
    private readonly SafeFd wakeReader;
    private readonly SafeFd wakeWriter;
    private readonly byte[] receiveBuffer = new byte[RstmemProtocol.RSTMEM_MAX_PACKET + 1];
    private readonly Func<bool>? heapDirectoryChanged;
    private readonly Action refreshHeaps;
    private long nextConnectionId;
    private int queuedReplies;
    private volatile bool stopRequested;

    /// <param name="ledger">The buffers handed out and the per-user limits; the server owns it.</param>
    /// <param name="heapDirectoryChanged">For real heap nodes: drains a watch on /dev/dma_heap and says whether anything changed.</param>
    public BrokerServer(SafeFd listener, BackendSelection backend, BufferLedger ledger, ILogger logger, Action refreshHeaps, SafeFd? heapWatch = null, Func<bool>? heapDirectoryChanged = null)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        this.listener = listener;
        this.backend = backend;
        this.ledger = ledger;
        this.logger = logger;
        this.refreshHeaps = refreshHeaps;
        HeapWatch = heapWatch;
        this.heapDirectoryChanged = heapDirectoryChanged;
        ledger.BufferReleased += (id, uid, heap, size) =>
            logger.LogDebug("buffer {BufferId} of {Size} bytes from {Heap} (uid {Uid}) released: its last descriptor was closed", id, size, heap, uid);
        dispatcher = new RequestDispatcher(backend, ledger, () => clients.Count, refreshHeaps, logger);
        Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_STREAM | Sockets.SOCK_NONBLOCK, 0, out wakeReader, out wakeWriter).ThrowIfError("socketpair");
    }

    private SafeFd? HeapWatch { get; }

    public BufferLedger Ledger => ledger;

    /// <summary>Set once the loop is polling: READY=1 may be sent.</summary>
    public ManualResetEventSlim Listening { get; } = new();

    /// <summary>Stop accepting, answer what has been received, send what is queued (at most <paramref name="drainTime"/>), return.</summary>
    public void RequestStop()
    {
        stopRequested = true;
        Sys.TryWrite(wakeWriter, [1], out _);
    }

    /// <summary>Runs the loop on the calling thread until <see cref="RequestStop"/>.</summary>
    public void Run(TimeSpan drainTime)
    {
        var fds = new List<pollfd>();
        var order = new List<Connection?>();
        DateTime? deadline = null;
        long nextSweep = 0;
        Listening.Set();
        while (true)
        {
            if (stopRequested && deadline is null)
            {
                deadline = DateTime.UtcNow + drainTime;
                logger.LogInformation("stopping: no new connections; answering {Clients} connected client(s)", clients.Count);
            }
            if (deadline is not null && (clients.Values.All(c => c.Outgoing.Count == 0) || DateTime.UtcNow >= deadline))
            {
                break;
            }

            fds.Clear();
            order.Clear();
            Add(fds, order, wakeReader, Poll.POLLIN);
            Add(fds, order, ledger.ReleaseEvents, Poll.POLLIN);
            if (HeapWatch is not null)
            {
                Add(fds, order, HeapWatch, Poll.POLLIN);
            }
            if (deadline is null)
            {
                Add(fds, order, listener, Poll.POLLIN);
            }
            int fixedCount = fds.Count;
            foreach (Connection client in clients.Values)
            {
                // Backpressure: read a client's next request only once its replies are out.
                bool readable = deadline is null && !client.CloseAfterReplies && client.Outgoing.Count == 0;
                short events = (short)((readable ? Poll.POLLIN : 0) | (client.Outgoing.Count > 0 ? Poll.POLLOUT : 0));
                fds.Add(new pollfd { fd = client.Socket.DangerousFd, events = events });
                order.Add(client);
            }

            int timeout = deadline is null ? -1 : Math.Max(1, (int)(deadline.Value - DateTime.UtcNow).TotalMilliseconds);
            // Reference counting: a bounded sweep on a timer, never one per request.
            if (ledger.PollIntervalMilliseconds is { } interval)
            {
                long now = Environment.TickCount64;
                if (now >= nextSweep)
                {
                    ledger.Sweep();
                    nextSweep = now + interval;
                }
                int untilSweep = (int)Math.Max(1, nextSweep - now);
                timeout = timeout < 0 ? untilSweep : Math.Min(timeout, untilSweep);
            }
            Span<pollfd> span = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(fds);
            Errno errno = Sys.TryPoll(span, timeout, out int ready);
            if (errno == Errno.EINTR || ready == 0)
            {
                continue;
            }
            errno.ThrowIfError("poll");

            int index = 0;
            if (span[index++].revents != 0)
            {
                Sys.TryRead(wakeReader, receiveBuffer, out _);
            }
            if (span[index++].revents != 0)
            {
                ledger.HandleReleases();
            }
            if (HeapWatch is not null && span[index++].revents != 0 && heapDirectoryChanged!())
            {
                refreshHeaps();
            }
            if (deadline is null && span[index++].revents != 0)
            {
                AcceptClients();
            }
            for (int i = fixedCount; i < span.Length; i++)
            {
                if (span[i].revents != 0)
                {
                    ServiceGuarded(order[i]!, span[i].revents);
                }
            }
        }
        foreach (Connection client in clients.Values.ToList())
        {
            Drop(client, "the daemon is stopping");
        }
    }

    private static void Add(List<pollfd> fds, List<Connection?> order, SafeFd fd, short events)
    {
        fds.Add(new pollfd { fd = fd.DangerousFd, events = events });
        order.Add(null);
    }

    private void AcceptClients()
    {
        for (int i = 0; i < AcceptsPerTurn; i++)
        {
            Errno errno = Sys.TryAccept(listener, Sockets.SOCK_NONBLOCK, out SafeFd socket);
            if (errno == Errno.EAGAIN)
            {
                return;
            }
            if (errno != Errno.None)
            {
                // EMFILE and friends: leave the connection queued; it is retried next turn.
                logger.LogWarning("accept: {Errno}", errno.Describe());
                return;
            }
            errno = Sys.TryGetPeerCredentials(socket, out ucred peer);
            if (errno != Errno.None)
            {
                logger.LogWarning("refusing a client whose credentials are unknown: SO_PEERCRED: {Errno}", errno.Describe());
                socket.Dispose();
                continue;
            }
            if (!ledger.TryConnect(peer.uid, out bool firstBreach))
            {
                if (firstBreach)
                {
                    logger.LogWarning("uid {Uid} reached its MaxConnectionsPerUser limit ({Limit}); further refusals are not logged", peer.uid, ledger.Limits.MaxConnectionsPerUser);
                }
                Policy.Refusal.SendAndClose(socket, Errno.EUSERS, ledger.ConnectionRefusal(peer.uid));
                continue;
            }
            var client = new Connection(++nextConnectionId, socket, peer.pid, peer.uid, peer.gid) { Peer = Policy.PeerIdentity.Read(socket, peer) };
            clients[client.Id] = client;
            logger.LogDebug("client connected: uid {Uid} pid {Pid}", peer.uid, peer.pid);
        }
    }

    /// <summary>Replies waiting in clients' queues (for tests and diagnostics).</summary>
    public int QueuedReplies => Volatile.Read(ref queuedReplies);

    // One request that fails in an unforeseen way costs its client the connection, not everyone the daemon.
    private void ServiceGuarded(Connection client, short revents)
    {
        try
        {
            Service(client, revents);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.LogError(e, "dropping client uid {Uid} pid {Pid}: handling its request failed: {Message}", client.Uid, client.Pid, e.Message);
            Drop(client, e.Message);
        }
    }

    private void Service(Connection client, short revents)
    {
        if ((revents & Poll.POLLIN) != 0)
        {
            for (int i = 0; i < PacketsPerTurn && !client.CloseAfterReplies; i++)
            {
                Errno errno = Sys.TryReceiveMessage(client.Socket, receiveBuffer, 1, Sockets.MSG_DONTWAIT, out ReceivedMessage message);
                if (errno == Errno.EAGAIN)
                {
                    break;
                }
                if (errno != Errno.None || message.Length == 0)
                {
                    message.CloseFds();
                    Drop(client, errno == Errno.None ? null : $"recvmsg: {errno.Describe()}");
                    return;
                }
                OutgoingReply reply;
                if (message.Fds.Length > 0 || message.ControlTruncated)
                {
                    message.CloseFds();
                    reply = dispatcher.Malformed(client, receiveBuffer.AsSpan(0, message.Length), "requests carry no descriptors");
                }
                else if (message.PayloadTruncated)
                {
                    reply = dispatcher.Malformed(client, receiveBuffer.AsSpan(0, message.Length), $"packet longer than {RstmemProtocol.RSTMEM_MAX_PACKET} bytes");
                }
                else
                {
                    reply = dispatcher.Handle(client, receiveBuffer.AsSpan(0, message.Length));
                }
                client.Outgoing.Enqueue(reply);
                Interlocked.Increment(ref queuedReplies);
                if (!Flush(client))
                {
                    return;
                }
                if (client.Outgoing.Count > 0)
                {
                    break; // the client is not reading: stop taking its requests
                }
            }
        }
        else if ((revents & Poll.POLLOUT) != 0 && !Flush(client))
        {
            return;
        }
        if ((revents & (Poll.POLLHUP | Poll.POLLERR | Poll.POLLNVAL)) != 0 && (revents & Poll.POLLIN) == 0)
        {
            Drop(client, null);
        }
        else if (client.CloseAfterReplies && client.Outgoing.Count == 0)
        {
            Drop(client, null);
        }
    }

    /// <summary>Sends queued replies until the socket is full; false when the client was dropped.</summary>
    private bool Flush(Connection client)
    {
        while (client.Outgoing.TryPeek(out OutgoingReply? reply))
        {
            ReadOnlySpan<SafeFd> fds = reply.Fd is null ? [] : [reply.Fd];
            Errno errno = Sys.TrySendMessage(client.Socket, reply.Packet, fds, Sockets.MSG_DONTWAIT, out _);
            if (errno == Errno.EAGAIN)
            {
                return true; // POLLOUT will bring us back
            }
            client.Outgoing.Dequeue();
            Interlocked.Decrement(ref queuedReplies);
            // The daemon's copy is closed right after sending (or failing to).
            reply.Fd?.Dispose();
            if (errno != Errno.None)
            {
                Drop(client, $"sendmsg: {errno.Describe()}");
                return false;
            }
        }
        if (client.CloseAfterReplies)
        {
            Drop(client, null);
            return false;
        }
        return true;
    }

    private void Drop(Connection client, string? why)
    {
        if (!clients.Remove(client.Id))
        {
            return;
        }
        if (why is not null)
        {
            logger.LogDebug("client uid {Uid} pid {Pid} dropped: {Reason}", client.Uid, client.Pid, why);
        }
        ledger.Disconnected(client.Uid);
        ledger.ConnectionClosed(client.Id);
        Interlocked.Add(ref queuedReplies, -client.Outgoing.Count);
        client.Dispose();
    }

    public int ClientCount => clients.Count;

    public void Dispose()
    {
        foreach (Connection client in clients.Values)
        {
            client.Dispose();
        }
        clients.Clear();
        ledger.Dispose();
        wakeReader.Dispose();
        wakeWriter.Dispose();
        Listening.Dispose();
    }
}
