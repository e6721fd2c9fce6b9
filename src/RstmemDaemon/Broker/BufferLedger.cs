using Rstmem.Daemon.Policy;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;

namespace Rstmem.Daemon.Broker;

/// <summary>Per-user limits. Every buffer and byte is charged to the uid that asked until the buffer's last close anywhere.</summary>
public sealed record BrokerLimits(int MaxBuffersPerUser, long MaxBytesPerUser, int MaxConnectionsPerUser);

/// <summary>Counts for one heap since start.</summary>
public sealed class HeapUsage
{
    public ulong Allocations { get; set; }

    public ulong Failures { get; set; }

    public ulong LiveBuffers { get; set; }

    public ulong LiveBytes { get; set; }
}

/// <summary>One uid's charges and connections.</summary>
public sealed class UserUsage
{
    public long Buffers { get; set; }

    public long Bytes { get; set; }

    public int Connections { get; set; }

    /// <summary>Each limit's first breach is logged once per uid (dbus-broker's habit), not on every refusal.</summary>
    public HashSet<string> BreachesLogged { get; } = [];

    /// <summary>The release observer's handles of the buffers this uid holds.</summary>
    internal HashSet<long> Live { get; } = [];

    /// <summary>When this uid's buffers were last rechecked before a refusal (the ledger's clock).</summary>
    internal long LastRecount { get; set; } = long.MinValue / 2;
}

/// <summary>
/// Every buffer handed out: who has it, from which heap, and whether its last
/// reference anywhere is gone (the kernel's <see cref="IReleaseObserver"/>).
/// The one owner of the per-user limits: a buffer is charged to its uid
/// before the kernel allocates it (<see cref="TryCharge"/>) and uncharged only
/// at its release. Used from the broker's one thread only.
/// </summary>
public sealed class BufferLedger : IDisposable
{
    private sealed class Record(ulong id, uint uid, int pid, string heap, long size, long connection)
    {
        /// <summary>The observer's name for the buffer (<see cref="IReleaseObserver.Recheck"/>).</summary>
        public long Handle { get; set; }

        public ulong Id { get; } = id;

        public uint Uid { get; } = uid;

        public int Pid { get; } = pid;

        public string Heap { get; } = heap;

        public long Size { get; } = size;

        /// <summary>The connection that may FREE it; 0 once that connection closed or freed it.</summary>
        public long Connection { get; set; } = connection;

        public bool Released { get; set; }
    }

    private readonly IReleaseObserver releases;
    private readonly Func<long> milliseconds;
    private readonly Dictionary<ulong, Record> records = [];
    private readonly Dictionary<uint, UserUsage> users = [];
    private readonly Dictionary<string, HeapUsage> heaps = new(StringComparer.Ordinal);
    private ulong nextId;

    /// <param name="releases">How releases are learned (from the kernel surface); the ledger owns it.</param>
    /// <param name="milliseconds">A monotonic clock in milliseconds (Environment.TickCount64; tests pass their own).</param>
    public BufferLedger(IReleaseObserver releases, BrokerLimits limits, Func<long>? milliseconds = null)
    {
        this.milliseconds = milliseconds ?? (() => Environment.TickCount64);
        ArgumentNullException.ThrowIfNull(releases);
        ArgumentNullException.ThrowIfNull(limits);
        this.releases = releases;
        Limits = limits;
    }

    public BrokerLimits Limits { get; }

    /// <summary>Who may allocate from which heap; swapped on reload (SIGHUP).</summary>
    public PolicyReference Policy { get; } = new(AccessPolicy.Unrestricted);

    /// <summary>Per heap per uid usage: the fair shares, and each caller's own statistics.</summary>
    public HeapShares Shares { get; } = new();

    /// <summary>Readable when releases are waiting to be handled.</summary>
    public SafeFd ReleaseEvents => releases.Events;

    /// <summary>When set, <see cref="Sweep"/> must run this often (releases that wake nobody).</summary>
    public int? PollIntervalMilliseconds => releases.Observed > 0 ? releases.PollIntervalMilliseconds : null;

    /// <summary>The timer's turn: a bounded look for releases nothing reported.</summary>
    public int Sweep() => releases.Sweep();

    public ulong Allocations { get; private set; }

    public ulong Failures { get; private set; }

    public ulong LiveBuffers { get; private set; }

    public ulong LiveBytes { get; private set; }

    public ulong Released { get; private set; }

    /// <summary>Called when a buffer's last reference is gone: (id, uid, heap, size).</summary>
    public event Action<ulong, uint, string, long>? BufferReleased;

    public UserUsage User(uint uid)
    {
        if (!users.TryGetValue(uid, out UserUsage? usage))
        {
            usage = new UserUsage();
            users[uid] = usage;
        }
        return usage;
    }

    public HeapUsage Heap(string name)
    {
        if (!heaps.TryGetValue(name, out HeapUsage? usage))
        {
            usage = new HeapUsage();
            heaps[name] = usage;
        }
        return usage;
    }

    /// <summary>Handles the releases the kernel has reported: no work per live buffer.</summary>
    public int HandleReleases() => releases.Drain();

    public void CountFailure(string heap, uint uid)
    {
        Failures++;
        Heap(heap).Failures++;
        Shares.Of(uid, heap).Failures++;
    }

    /// <summary>
    /// A new connection for <paramref name="uid"/>, within MaxConnectionsPerUser.
    /// On refusal <paramref name="firstBreach"/> is true the first time this uid hits the limit (log it once).
    /// </summary>
    public bool TryConnect(uint uid, out bool firstBreach)
    {
        UserUsage user = User(uid);
        firstBreach = false;
        if (user.Connections >= Limits.MaxConnectionsPerUser)
        {
            firstBreach = user.BreachesLogged.Add(nameof(BrokerLimits.MaxConnectionsPerUser));
            return false;
        }
        user.Connections++;
        return true;
    }

    /// <summary>What a connection refused by <see cref="TryConnect"/> is told.</summary>
    public string ConnectionRefusal(uint uid) =>
        $"MaxConnectionsPerUser: uid {uid} has {User(uid).Connections} connections open; the limit is {Limits.MaxConnectionsPerUser}";

    public void Disconnected(uint uid) => User(uid).Connections--;

    /// <summary>
    /// Charges one buffer of <paramref name="size"/> bytes to <paramref name="uid"/>
    /// before the kernel allocates it, after handling the releases that have
    /// happened (so a refusal is never stale). EDQUOT when a limit would be
    /// passed: <paramref name="refusal"/> names it, and <paramref name="firstBreach"/>
    /// is the limit's name the first time this uid breaches it (log it once),
    /// else null. A charge is either <see cref="TryRecord">recorded</see> or <see cref="Refund">refunded</see>.
    /// </summary>
    public Errno TryCharge(uint uid, string heap, long size, long shareLimit, out string refusal, out string? firstBreach)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        HandleReleases();
        UserUsage user = User(uid);
        refusal = "";
        firstBreach = null;
        string? limit = user.Buffers + 1 > Limits.MaxBuffersPerUser ? nameof(BrokerLimits.MaxBuffersPerUser)
            : size > Limits.MaxBytesPerUser - user.Bytes ? nameof(BrokerLimits.MaxBytesPerUser)
            : null;
        if (limit is null && !Shares.Fits(uid, heap, size, shareLimit, out refusal))
        {
            limit = "pool share";
        }
        if (limit is not null && RecountBeforeRefusing(user))
        {
            limit = user.Buffers + 1 > Limits.MaxBuffersPerUser ? nameof(BrokerLimits.MaxBuffersPerUser)
                : size > Limits.MaxBytesPerUser - user.Bytes ? nameof(BrokerLimits.MaxBytesPerUser)
                : !Shares.Fits(uid, heap, size, shareLimit, out refusal) ? "pool share"
                : null;
        }
        if (limit is not null)
        {
            firstBreach = user.BreachesLogged.Add(limit) ? limit : null;
            refusal = limit == "pool share" ? refusal : $"{limit}: uid {uid} holds {user.Buffers} buffers of {user.Bytes} bytes and asks for {size} more bytes; " +
                      $"limits are {Limits.MaxBuffersPerUser} buffers and {Limits.MaxBytesPerUser} bytes";
            return Errno.EDQUOT;
        }
        user.Buffers++;
        user.Bytes += size;
        Shares.Add(uid, heap, size, 1);
        return Errno.None;
    }

    /// <summary>
    /// Before a refusal: looks at every buffer the user holds, so releases no
    /// event reported are counted (reference counting). At most once per poll
    /// interval per user, so a client hammering at its limit cannot turn its
    /// refusals into work that delays everyone. True when anything was released.
    /// </summary>
    private bool RecountBeforeRefusing(UserUsage user)
    {
        if (releases.PollIntervalMilliseconds is not { } interval || user.Live.Count == 0)
        {
            return false;
        }
        long now = milliseconds();
        if (now - user.LastRecount < interval)
        {
            return false;
        }
        user.LastRecount = now;
        return releases.Recheck([.. user.Live]) > 0;
    }

    /// <summary>Takes back a charge whose allocation failed.</summary>
    public void Refund(uint uid, string heap, long size)
    {
        UserUsage user = User(uid);
        user.Buffers--;
        user.Bytes -= size;
        Shares.Add(uid, heap, -size, -1);
    }

    /// <summary>
    /// Records a charged buffer about to be sent and starts observing its
    /// last close; call while <paramref name="buffer"/> is still open here.
    /// The charge moves from <paramref name="charged"/> bytes to the buffer's
    /// real <paramref name="size"/> (the kernel rounds to pages). On failure
    /// the charge is refunded.
    /// </summary>
    public Errno TryRecord(SafeFd buffer, uint uid, int pid, string heap, long charged, long size, long connection, out ulong id)
    {
        id = ++nextId;
        var record = new Record(id, uid, pid, heap, size, connection);
        Errno errno = releases.Observe(buffer, () => OnReleased(record), out long handle);
        if (errno != Errno.None)
        {
            Refund(uid, heap, charged);
            return errno;
        }
        record.Handle = handle;
        User(uid).Live.Add(handle);
        records[id] = record;
        Allocations++;
        LiveBuffers++;
        LiveBytes += (ulong)size;
        HeapUsage usage = Heap(heap);
        usage.Allocations++;
        usage.LiveBuffers++;
        usage.LiveBytes += (ulong)size;
        User(uid).Bytes += size - charged;
        Shares.Add(uid, heap, size - charged, 0);
        Shares.Of(uid, heap).Allocations++;
        return Errno.None;
    }

    /// <summary>FREE: ends the connection's claim. ENOENT for an id it does not hold.</summary>
    public Errno Free(long connection, ulong id, out bool released)
    {
        HandleReleases();
        released = false;
        if (!records.TryGetValue(id, out Record? record) || record.Connection != connection)
        {
            return Errno.ENOENT;
        }
        released = record.Released;
        record.Connection = 0;
        if (record.Released)
        {
            records.Remove(id);
        }
        return Errno.None;
    }

    /// <summary>A connection closed: its buffers stay charged until released, but can no longer be freed by id.</summary>
    public void ConnectionClosed(long connection)
    {
        foreach (Record record in records.Values.Where(r => r.Connection == connection).ToList())
        {
            record.Connection = 0;
            if (record.Released)
            {
                records.Remove(record.Id);
            }
        }
    }

    private void OnReleased(Record record)
    {
        record.Released = true;
        Released++;
        LiveBuffers--;
        LiveBytes -= (ulong)record.Size;
        HeapUsage usage = Heap(record.Heap);
        usage.LiveBuffers--;
        usage.LiveBytes -= (ulong)record.Size;
        UserUsage user = User(record.Uid);
        user.Buffers--;
        user.Bytes -= record.Size;
        user.Live.Remove(record.Handle);
        Shares.Add(record.Uid, record.Heap, -record.Size, -1);
        if (record.Connection == 0)
        {
            records.Remove(record.Id);
        }
        BufferReleased?.Invoke(record.Id, record.Uid, record.Heap, record.Size);
    }

    public void Dispose() => releases.Dispose();
}
