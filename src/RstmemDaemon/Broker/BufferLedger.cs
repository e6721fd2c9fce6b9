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

    /// <summary>When this uid's buffers were last rechecked before a refusal (the ledger's clock).</summary>
    internal long LastRecount { get; set; } = long.MinValue / 2;
}

/// <summary>
/// Every buffer handed out: who has it, from which heap, and whether its last
/// reference anywhere is gone (the kernel's <see cref="IReleaseObserver"/>).
/// The one owner of the per-user limits: a buffer is charged to its uid
/// before the kernel allocates it (<see cref="TryCharge"/>) and uncharged only
/// at its release. Used from the broker's one thread only.
///
/// A live buffer costs a slot in one array of structs (the heap as an index
/// into the interned heaps, no string or object of its own) and one entry of
/// the id index; the observer hears about all of them through this one
/// <see cref="IReleaseSink"/>, by slot number, so there is no delegate per buffer.
/// </summary>
public sealed class BufferLedger : IReleaseSink, IDisposable
{
    /// <summary>One buffer handed out. A slot is reused once its buffer is released and no connection can FREE it.</summary>
    private struct Slot
    {
        public ulong Id;
        public long Size;
        /// <summary>The connection that may FREE it; 0 once that connection closed or freed it.</summary>
        public long Connection;
        /// <summary>The observer's name for the buffer (<see cref="IReleaseObserver.Recheck"/>).</summary>
        public long Handle;
        public uint Uid;
        public ushort Heap;
        public bool Released;
    }

    /// <summary>Release latencies are counted in power-of-two microsecond buckets: bucket b holds [2^(b-1), 2^b) µs.</summary>
    private const int LatencyBuckets = 40;

    private readonly IReleaseObserver releases;
    private readonly Func<long> milliseconds;
    private Slot[] slots = new Slot[64];
    private int slotsUsed;
    private readonly Stack<int> freeSlots = new();
    private readonly Dictionary<ulong, int> byId = [];
    private readonly Dictionary<uint, UserUsage> users = [];
    private readonly Dictionary<string, ushort> heapIndex = new(StringComparer.Ordinal);
    private readonly List<(string Name, HeapUsage Usage)> heaps = [];
    private readonly List<long> recheck = [];
    private readonly long[] latencies = new long[LatencyBuckets];
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

    public HeapUsage Heap(string name) => heaps[HeapIndex(name)].Usage;

    /// <summary>The heap's interned number: its name is kept once, not per buffer.</summary>
    private ushort HeapIndex(string name)
    {
        if (!heapIndex.TryGetValue(name, out ushort index))
        {
            index = checked((ushort)heaps.Count);
            heaps.Add((name, new HeapUsage()));
            heapIndex[name] = index;
        }
        return index;
    }

    /// <summary>Releases seen since start, with their latency (see <see cref="ReleaseLatencyMicroseconds"/>).</summary>
    public ulong ReleasesTimed { get; private set; }

    /// <summary>
    /// The <paramref name="fraction"/> quantile (0.99 for p99) of release
    /// latency in microseconds: from a buffer's last close to its uncharge, an
    /// upper bound (the observer says when it last saw the buffer held; the
    /// model knows the moment). Reported as the top of its power-of-two bucket; 0 before any release.
    /// </summary>
    public ulong ReleaseLatencyMicroseconds(double fraction)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(fraction);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(fraction, 1);
        if (ReleasesTimed == 0)
        {
            return 0;
        }
        ulong wanted = (ulong)Math.Ceiling(ReleasesTimed * fraction);
        ulong seen = 0;
        for (int bucket = 0; bucket < LatencyBuckets; bucket++)
        {
            seen += (ulong)latencies[bucket];
            if (seen >= wanted && latencies[bucket] > 0)
            {
                return bucket == 0 ? 1 : 1UL << bucket;
            }
        }
        return 1UL << (LatencyBuckets - 1);
    }

    /// <summary>The longest release latency seen, in microseconds (an upper bound, as for the quantiles).</summary>
    public ulong ReleaseLatencyMaxMicroseconds { get; private set; }

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
        if (limit is not null && RecountBeforeRefusing(uid, user))
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
    private bool RecountBeforeRefusing(uint uid, UserUsage user)
    {
        if (releases.PollIntervalMilliseconds is not { } interval || user.Buffers == 0)
        {
            return false;
        }
        long now = milliseconds();
        if (now - user.LastRecount < interval)
        {
            return false;
        }
        user.LastRecount = now;
        recheck.Clear();
        for (int i = 0; i < slotsUsed; i++)
        {
            if (slots[i].Id != 0 && !slots[i].Released && slots[i].Uid == uid)
            {
                recheck.Add(slots[i].Handle);
            }
        }
        return recheck.Count > 0 && releases.Recheck(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(recheck)) > 0;
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
        int slot = freeSlots.Count > 0 ? freeSlots.Pop() : NewSlot();
        Errno errno = releases.Observe(buffer, this, slot, out long handle);
        if (errno != Errno.None)
        {
            freeSlots.Push(slot);
            Refund(uid, heap, charged);
            id = 0;
            return errno;
        }
        id = ++nextId;
        ushort heapNumber = HeapIndex(heap);
        slots[slot] = new Slot { Id = id, Size = size, Connection = connection, Handle = handle, Uid = uid, Heap = heapNumber };
        byId[id] = slot;
        Allocations++;
        LiveBuffers++;
        LiveBytes += (ulong)size;
        HeapUsage usage = heaps[heapNumber].Usage;
        usage.Allocations++;
        usage.LiveBuffers++;
        usage.LiveBytes += (ulong)size;
        User(uid).Bytes += size - charged;
        Shares.Add(uid, heap, size - charged, 0);
        Shares.Of(uid, heap).Allocations++;
        return Errno.None;
    }

    private int NewSlot()
    {
        if (slotsUsed == slots.Length)
        {
            Array.Resize(ref slots, slots.Length * 2);
        }
        return slotsUsed++;
    }

    /// <summary>FREE: ends the connection's claim. ENOENT for an id it does not hold.</summary>
    public Errno Free(long connection, ulong id, out bool released)
    {
        HandleReleases();
        released = false;
        if (!byId.TryGetValue(id, out int slot) || slots[slot].Connection != connection)
        {
            return Errno.ENOENT;
        }
        released = slots[slot].Released;
        slots[slot].Connection = 0;
        if (released)
        {
            Forget(slot);
        }
        return Errno.None;
    }

    /// <summary>A connection closed: its buffers stay charged until released, but can no longer be freed by id.</summary>
    public void ConnectionClosed(long connection)
    {
        for (int slot = 0; slot < slotsUsed; slot++)
        {
            if (slots[slot].Id != 0 && slots[slot].Connection == connection)
            {
                slots[slot].Connection = 0;
                if (slots[slot].Released)
                {
                    Forget(slot);
                }
            }
        }
    }

    private void Forget(int slot)
    {
        byId.Remove(slots[slot].Id);
        slots[slot] = default;
        freeSlots.Push(slot);
    }

    /// <summary>From the observer (on this thread): the buffer in <paramref name="token"/>'s slot is released.</summary>
    void IReleaseSink.Released(long token, long notBefore)
    {
        int slot = checked((int)token);
        ref Slot record = ref slots[slot];
        record.Released = true;
        Released++;
        LiveBuffers--;
        LiveBytes -= (ulong)record.Size;
        (string heapName, HeapUsage usage) = heaps[record.Heap];
        usage.LiveBuffers--;
        usage.LiveBytes -= (ulong)record.Size;
        UserUsage user = User(record.Uid);
        user.Buffers--;
        user.Bytes -= record.Size;
        Shares.Add(record.Uid, heapName, -record.Size, -1);
        CountLatency(notBefore);
        ulong id = record.Id;
        uint uid = record.Uid;
        long size = record.Size;
        if (record.Connection == 0)
        {
            Forget(slot);
        }
        BufferReleased?.Invoke(id, uid, heapName, size);
    }

    private void CountLatency(long notBefore)
    {
        long micros = Math.Max(0, (long)System.Diagnostics.Stopwatch.GetElapsedTime(notBefore).TotalMicroseconds);
        int bucket = micros == 0 ? 0 : Math.Min(LatencyBuckets - 1, 64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)micros));
        latencies[bucket]++;
        ReleasesTimed++;
        ReleaseLatencyMaxMicroseconds = Math.Max(ReleaseLatencyMaxMicroseconds, (ulong)micros);
    }

    public void Dispose() => releases.Dispose();
}
