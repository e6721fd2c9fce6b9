using System.Buffers;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// The broker: one thread, one epoll(7) set holding the listening socket,
/// every client and the release watcher, each registered once. Sockets are
/// non-blocking; a reply the client's socket cannot take now waits in that
/// client's queue (with its descriptor) until EPOLLOUT, so a stalled client
/// delays nobody; while a client has replies waiting, it is registered for
/// EPOLLOUT only, so nothing more is read from it and a client that sends
/// without reading fills its own socket, not the daemon's memory. A client's
/// registration changes only when that state changes, so a turn costs what
/// is ready, not the number of connections. Each client gets at most
/// <see cref="PacketsPerTurn"/> requests handled per wake-up, so a flooding
/// client cannot starve the rest. A reply is written into the dispatcher's
/// one reply buffer and sent from there; only a reply the socket refuses is
/// copied (into a pooled array), so a request costs no managed allocation.
/// The kernel's allocations run on one worker thread per heap
/// (<see cref="AllocationWorkers"/>), so a slow heap delays only its own
/// requests; a connection with an ALLOC in flight is not read until its reply
/// is made, so each connection's replies keep their order. A heap whose
/// allocations have stayed within a millisecond runs them on the loop's
/// thread instead, saving the two hand-offs, until one takes longer
/// (<see cref="InlinePlacement"/>).
/// </summary>
public sealed class BrokerServer : IDisposable
{
    public const int PacketsPerTurn = 16;

    /// <summary>A sweep that releases at least this many buffers is followed by the next after <see cref="BurstSweepMilliseconds"/>.</summary>
    private const int BurstReleases = 64;
    private const int BurstSweepMilliseconds = 10;
    private const int AcceptsPerTurn = 64;
    private const int EventsPerWait = 64;

    // epoll tokens: the fixed descriptors, then connection ids (never reused).
    private const ulong WakeToken = 0;
    private const ulong ReleaseToken = 1;
    private const ulong HeapWatchToken = 2;
    private const ulong ListenerToken = 3;
    private const long FirstConnectionId = 16;

    private readonly SafeFd listener;
    private readonly BackendSelection backend;
    private readonly ILogger logger;
    private readonly BufferLedger ledger;
    private readonly RequestDispatcher dispatcher;
    private readonly AllocationWorkers workers;
    private readonly Dictionary<long, Connection> clients = [];
    private readonly SafeFd epoll;
    private readonly SafeFd wakeReader;
    private readonly SafeFd wakeWriter;
    private readonly byte[] receiveBuffer = new byte[RstmemProtocol.RSTMEM_MAX_PACKET + 1];
    private readonly Sys.EpollEvent[] events = new Sys.EpollEvent[EventsPerWait];
    private readonly Func<bool>? heapDirectoryChanged;
    private readonly Action refreshHeaps;
    private long nextConnectionId = FirstConnectionId - 1;
    private int queuedReplies;
    private long loopAllocatedBytes;
    private bool draining;
    private volatile bool stopRequested;

    /// <param name="ledger">The buffers handed out and the per-user limits; the server owns it.</param>
    /// <param name="heapDirectoryChanged">For real heap nodes: drains a watch on /dev/dma_heap and says whether anything changed.</param>
    public BrokerServer(SafeFd listener, BackendSelection backend, BufferLedger ledger, ILogger logger, Action refreshHeaps, SafeFd? heapWatch = null, Func<bool>? heapDirectoryChanged = null)
    {
        ArgumentNullException.ThrowIfNull(ledger);
        ArgumentNullException.ThrowIfNull(listener);
        this.listener = listener;
        this.backend = backend;
        this.ledger = ledger;
        this.logger = logger;
        this.refreshHeaps = refreshHeaps;
        HeapWatch = heapWatch;
        this.heapDirectoryChanged = heapDirectoryChanged;
        ledger.BufferReleased += (id, uid, heap, size) => logger.BufferReleased(id, size, heap, uid);
        Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_STREAM | Sockets.SOCK_NONBLOCK, 0, out wakeReader, out wakeWriter).ThrowIfError("socketpair");
        workers = new AllocationWorkers(wakeWriter);
        dispatcher = new RequestDispatcher(backend, ledger, () => clients.Count, refreshHeaps, logger) { Workers = workers };
        Sys.TryEpollCreate(out epoll).ThrowIfError("epoll_create1");
        Watch(wakeReader, WakeToken);
        Watch(ledger.ReleaseEvents, ReleaseToken);
        if (heapWatch is not null)
        {
            Watch(heapWatch, HeapWatchToken);
        }
        Watch(listener, ListenerToken);
    }

    private void Watch(SafeFd fd, ulong token) =>
        Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_ADD, fd, Epoll.EPOLLIN, token).ThrowIfError("epoll_ctl(EPOLL_CTL_ADD)");

    private SafeFd? HeapWatch { get; }

    public BufferLedger Ledger => ledger;

    /// <summary>Where the kernel's allocations run (for tests: the inline limit, what ran inline).</summary>
    internal AllocationWorkers Workers => workers;

    /// <summary>Set once the loop is waiting for events: READY=1 may be sent.</summary>
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
        DateTime? deadline = null;
        long nextSweep = 0;
        Listening.Set();
        while (true)
        {
            if (stopRequested && deadline is null)
            {
                deadline = DateTime.UtcNow + drainTime;
                logger.Stopping(clients.Count);
                draining = true;
                Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_DEL, listener, 0, ListenerToken);
                foreach (Connection client in clients.Values)
                {
                    UpdateInterest(client);
                }
            }
            if (deadline is not null && ((workers.InFlight == 0 && clients.Values.All(c => c.Outgoing.Count == 0)) || DateTime.UtcNow >= deadline))
            {
                break;
            }

            int timeout = deadline is null ? -1 : Math.Max(1, (int)(deadline.Value - DateTime.UtcNow).TotalMilliseconds);
            // Reference counting: a bounded sweep on a timer, never one per request. A sweep that
            // released many (a player exited with its buffers) is followed soon by the next, with
            // the requests that came meanwhile answered in between, not a whole interval later.
            if (ledger.PollIntervalMilliseconds is { } interval)
            {
                long now = Environment.TickCount64;
                if (now >= nextSweep)
                {
                    int released = ledger.Sweep();
                    nextSweep = now + (released >= BurstReleases ? BurstSweepMilliseconds : interval);
                }
                int untilSweep = (int)Math.Max(1, nextSweep - now);
                timeout = timeout < 0 ? untilSweep : Math.Min(timeout, untilSweep);
            }
            Volatile.Write(ref loopAllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
            Errno errno = Sys.TryEpollWait(epoll, events, timeout, out int ready);
            if (errno == Errno.EINTR || ready == 0)
            {
                continue;
            }
            errno.ThrowIfError("epoll_wait");

            for (int i = 0; i < ready; i++)
            {
                ulong token = events[i].Data;
                uint happened = events[i].Events;
                switch (token)
                {
                    case WakeToken:
                        // A stop request, or allocations the heaps' workers have finished.
                        Sys.TryRead(wakeReader, receiveBuffer, out _);
                        CompleteAllocations();
                        break;
                    case ReleaseToken:
                        ledger.HandleReleases();
                        break;
                    case HeapWatchToken:
                        if (heapDirectoryChanged!())
                        {
                            refreshHeaps();
                        }
                        break;
                    case ListenerToken:
                        if (!draining)
                        {
                            AcceptClients();
                        }
                        break;
                    default:
                        // A connection dropped earlier in this batch is simply not found.
                        if (clients.TryGetValue((long)token, out Connection? client))
                        {
                            ServiceGuarded(client, happened);
                        }
                        break;
                }
            }
        }
        foreach (Connection client in clients.Values.ToList())
        {
            Drop(client, "the daemon is stopping");
        }
    }

    /// <summary>
    /// Registers for what the connection's state calls for: EPOLLIN while it
    /// may send requests, EPOLLOUT (only) while replies wait for it, nothing
    /// but hang-ups while draining. No system call when nothing changed.
    /// </summary>
    private void UpdateInterest(Connection client)
    {
        uint wanted = client.Outgoing.Count > 0 ? Epoll.EPOLLOUT
            : !draining && !client.CloseAfterReplies && !client.AllocationInFlight ? Epoll.EPOLLIN
            : 0;
        if (wanted == client.Registered)
        {
            return;
        }
        Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_MOD, client.Socket, wanted, (ulong)client.Id).ThrowIfError("epoll_ctl(EPOLL_CTL_MOD)");
        client.Registered = wanted;
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
                // EMFILE and friends: leave the connection queued; level-triggered epoll brings it back.
                logger.AcceptFailed(errno.Describe());
                return;
            }
            errno = Sys.TryGetPeerCredentials(socket, out ucred peer);
            if (errno != Errno.None)
            {
                logger.CredentialsUnknown(errno.Describe());
                socket.Dispose();
                continue;
            }
            if (!ledger.TryConnect(peer.uid, out bool firstBreach))
            {
                if (firstBreach)
                {
                    logger.ConnectionLimit(peer.uid, ledger.Limits.MaxConnectionsPerUser);
                }
                Policy.Refusal.SendAndClose(socket, Errno.EUSERS, ledger.ConnectionRefusal(peer.uid));
                continue;
            }
            long id = ++nextConnectionId;
            errno = Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_ADD, socket, Epoll.EPOLLIN, (ulong)id);
            if (errno != Errno.None)
            {
                // ENOSPC (fs.epoll.max_user_watches) or ENOMEM: refuse this one, keep serving the rest.
                logger.CannotWatch(peer.uid, peer.pid, errno.Describe());
                ledger.Disconnected(peer.uid);
                socket.Dispose();
                continue;
            }
            var client = new Connection(id, socket, peer.pid, peer.uid, peer.gid) { Registered = Epoll.EPOLLIN, Peer = Policy.PeerIdentity.Read(socket, peer) };
            clients[client.Id] = client;
            logger.Connected(peer.uid, peer.pid);
        }
    }

    /// <summary>
    /// Managed bytes the loop's thread has allocated since it started, as of
    /// its last wait for events: a request's replies are out by then, so a
    /// client that has its reply to a later request sees every earlier one counted.
    /// </summary>
    public long LoopAllocatedBytes => Volatile.Read(ref loopAllocatedBytes);

    /// <summary>Replies waiting in clients' queues (for tests and diagnostics).</summary>
    public int QueuedReplies => Volatile.Read(ref queuedReplies);

    // One request that fails in an unforeseen way costs its client the connection, not everyone the daemon.
    private void ServiceGuarded(Connection client, uint happened)
    {
        try
        {
            Service(client, happened);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            logger.RequestFailed(e, client.Uid, client.Pid, e.Message);
            Drop(client, e.Message);
        }
    }

    private void Service(Connection client, uint happened)
    {
        if ((happened & Epoll.EPOLLIN) != 0)
        {
            for (int i = 0; i < PacketsPerTurn && !client.CloseAfterReplies && !client.AllocationInFlight && client.Outgoing.Count == 0; i++)
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
                if (reply.IsPending)
                {
                    client.AllocationInFlight = true; // its reply comes from CompleteAllocations; read nothing more till then
                    break;
                }
                if (!Send(client, reply))
                {
                    return;
                }
                // A reply left waiting ends the loop: the client is not reading, so stop taking its requests.
            }
        }
        else if ((happened & Epoll.EPOLLOUT) != 0 && !Flush(client))
        {
            return;
        }
        if ((happened & (Epoll.EPOLLHUP | Epoll.EPOLLERR)) != 0 && (happened & Epoll.EPOLLIN) == 0)
        {
            Drop(client, null);
            return;
        }
        if (client.CloseAfterReplies && client.Outgoing.Count == 0)
        {
            Drop(client, null);
            return;
        }
        UpdateInterest(client);
    }

    /// <summary>
    /// Replies to the ALLOCs whose kernel call has finished, each to its
    /// connection in order (a connection has one at a time), and lets those
    /// connections be read again. A job whose connection is gone gives its
    /// buffer and charge back.
    /// </summary>
    private void CompleteAllocations()
    {
        while (workers.TryTakeCompleted(out AllocationJob job))
        {
            Connection client = job.Client;
            if (!clients.TryGetValue(client.Id, out Connection? current) || current != client)
            {
                dispatcher.AllocAbandoned(job);
                workers.Return(job);
                continue;
            }
            try
            {
                client.AllocationInFlight = false;
                OutgoingReply reply;
                try
                {
                    reply = dispatcher.AllocCompleted(job);
                }
                finally
                {
                    workers.Return(job);
                }
                if (!Send(client, reply))
                {
                    continue;
                }
                if (client.CloseAfterReplies && client.Outgoing.Count == 0)
                {
                    Drop(client, null);
                    continue;
                }
                UpdateInterest(client);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                logger.RequestFailed(e, client.Uid, client.Pid, e.Message);
                Drop(client, e.Message);
            }
        }
    }

    /// <summary>
    /// Sends the reply straight from the dispatcher's buffer when nothing is
    /// queued before it; else (or when the socket is full) queues a copy.
    /// False when the client was dropped.
    /// </summary>
    private bool Send(Connection client, OutgoingReply reply)
    {
        ReadOnlySpan<byte> packet = dispatcher.Reply(reply);
        if (client.Outgoing.Count == 0)
        {
            Errno errno = reply.Fd is null
                ? Sys.TrySendMessage(client.Socket, packet, [], Sockets.MSG_DONTWAIT, out _)
                : Sys.TrySendMessage(client.Socket, packet, [reply.Fd], Sockets.MSG_DONTWAIT, out _);
            if (errno != Errno.EAGAIN)
            {
                // The daemon's copy is closed right after sending (or failing to).
                reply.Fd?.Dispose();
                if (errno != Errno.None)
                {
                    Drop(client, $"sendmsg: {errno.Describe()}");
                    return false;
                }
                return true;
            }
        }
        byte[] copy = ArrayPool<byte>.Shared.Rent(packet.Length);
        packet.CopyTo(copy);
        client.Outgoing.Enqueue(new QueuedReply(copy, packet.Length, reply.Fd));
        Interlocked.Increment(ref queuedReplies);
        return true;
    }

    /// <summary>Sends queued replies until the socket is full; false when the client was dropped.</summary>
    private bool Flush(Connection client)
    {
        while (client.Outgoing.TryPeek(out QueuedReply reply))
        {
            Errno errno = reply.Fd is null
                ? Sys.TrySendMessage(client.Socket, reply.Bytes, [], Sockets.MSG_DONTWAIT, out _)
                : Sys.TrySendMessage(client.Socket, reply.Bytes, [reply.Fd], Sockets.MSG_DONTWAIT, out _);
            if (errno == Errno.EAGAIN)
            {
                return true; // EPOLLOUT will bring us back
            }
            client.Outgoing.Dequeue();
            Interlocked.Decrement(ref queuedReplies);
            // The daemon's copy is closed right after sending (or failing to).
            reply.Release();
            if (errno != Errno.None)
            {
                Drop(client, $"sendmsg: {errno.Describe()}");
                return false;
            }
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
            logger.Dropped(client.Uid, client.Pid, why);
        }
        Sys.TryEpollControl(epoll, Epoll.EPOLL_CTL_DEL, client.Socket, 0, (ulong)client.Id);
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
        workers.Dispose();
        ledger.Dispose();
        epoll.Dispose();
        wakeReader.Dispose();
        wakeWriter.Dispose();
        Listening.Dispose();
    }
}
