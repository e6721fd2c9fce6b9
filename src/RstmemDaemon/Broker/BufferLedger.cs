using System.Runtime.InteropServices;
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
/// A live buffer costs one 48-byte slot and a bucket of the id index, and
/// nothing on the managed heap of its own: the slots live in fixed chunks of
/// <see cref="ChunkSlots"/> (each below the large object heap's threshold,
/// never moved or copied when the ledger grows, and kept for reuse), a free
/// slot is found through a free list threaded through the free slots, and the
/// id index is a hash table whose chains run through the slots. The heap is an
/// index into the interned heaps, not a string. The observer hears about all
/// buffers through this one <see cref="IReleaseSink"/>, by slot number, so
/// there is no delegate per buffer.
/// </summary>
public sealed class BufferLedger : IReleaseSink, IDisposable
{
    /// <summary>One buffer handed out. A slot is reused once its buffer is released and no connection can FREE it.</summary>
    private struct Slot
    {
        /// <summary>0 while the slot is free.</summary>
        public ulong Id;
        public long Size;
        /// <summary>The connection that may FREE it; 0 once that connection closed or freed it.</summary>
        public long Connection;
        /// <summary>The observer's name for the buffer (<see cref="IReleaseObserver.Recheck"/>).</summary>
        public long Handle;
        public uint Uid;
        /// <summary>In use: the next slot in the id index's chain; free: the next free slot. -1 ends either.</summary>
        public int Next;
        public ushort Heap;
        public bool Released;
        /// <summary>Released and still FREE-able: the neighbours in its connection's <see cref="Kept"/> list.</summary>
        public int KeptPrevious;
        public int KeptNext;
    }

    /// <summary>
    /// A connection's released buffers it may still FREE, oldest first, linked
    /// through the slots: at most <see cref="KeptPerConnection"/>, so a client
    /// that never sends FREE cannot grow the ledger for as long as it stays connected.
    /// </summary>
    private struct Kept
    {
        public int Oldest;
        public int Newest;
        public int Count;
    }

    /// <summary>Released buffers a connection may still FREE; past this the oldest is forgotten (its FREE is ENOENT).</summary>
    internal const int KeptPerConnection = 1024;

    /// <summary>Slots per chunk: 1,024 slots of 56 bytes, 56 KiB, below the large object threshold (85,000 bytes).</summary>
    internal const int ChunkSlots = 1 << ChunkShift;
    private const int ChunkShift = 10;
    private const int NoSlot = -1;

    /// <summary>The size of one chunk's array data.</summary>
    internal static int ChunkBytes => ChunkSlots * System.Runtime.CompilerServices.Unsafe.SizeOf<Slot>();

    /// <summary>Release latencies are counted in power-of-two microsecond buckets: bucket b holds [2^(b-1), 2^b) µs.</summary>
    private const int LatencyBuckets = 40;

    private readonly IReleaseObserver releases;
    private readonly Func<long> milliseconds;
    /// <summary>The chunks of slots; slot n is chunks[n / ChunkSlots][n % ChunkSlots]. Only this directory is ever copied.</summary>
    private Slot[][] chunks = [];
    /// <summary>Slots ever handed out: the high-water mark, every slot below it in a chunk.</summary>
    private int slotsUsed;
    /// <summary>The first free slot below <see cref="slotsUsed"/>, or <see cref="NoSlot"/>; the rest follow through <see cref="Slot.Next"/>.</summary>
    private int freeHead = NoSlot;
    /// <summary>The id index: the first slot of each chain (a power of two of them, at least as many as the slots in use).</summary>
    private int[] byId = NewBuckets(ChunkSlots);
    private int slotsInUse;
    private readonly Dictionary<uint, UserUsage> users = [];
    private readonly Dictionary<long, Kept> kept = [];
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
    /// before the kernel allocates it. A limit it would pass is looked at again
    /// after handling the releases that have happened (so a refusal is never
    /// stale); a charge within every limit needs no such look. EDQUOT when a limit would be
    /// passed: <paramref name="refusal"/> names it, and <paramref name="firstBreach"/>
    /// is the limit's name the first time this uid breaches it (log it once),
    /// else null. A charge is either <see cref="TryRecord">recorded</see> or <see cref="Refund">refunded</see>.
    /// </summary>
    public Errno TryCharge(uint uid, string heap, long size, long shareLimit, out string refusal, out string? firstBreach)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(size);
        UserUsage user = User(uid);
        firstBreach = null;
        string? limit = LimitPassed(uid, user, heap, size, shareLimit, out refusal);
        if (limit is not null && HandleReleases() > 0)
        {
            limit = LimitPassed(uid, user, heap, size, shareLimit, out refusal);
        }
        if (limit is not null && RecountBeforeRefusing(uid, user))
        {
            limit = LimitPassed(uid, user, heap, size, shareLimit, out refusal);
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

    /// <summary>The limit one more buffer of <paramref name="size"/> bytes would pass, or null; <paramref name="refusal"/> explains a pool share's.</summary>
    private string? LimitPassed(uint uid, UserUsage user, string heap, long size, long shareLimit, out string refusal)
    {
        refusal = "";
        return user.Buffers + 1 > Limits.MaxBuffersPerUser ? nameof(BrokerLimits.MaxBuffersPerUser)
            : size > Limits.MaxBytesPerUser - user.Bytes ? nameof(BrokerLimits.MaxBytesPerUser)
            : !Shares.Fits(uid, heap, size, shareLimit, out refusal) ? "pool share"
            : null;
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
            ref Slot slot = ref At(i);
            if (slot.Id != 0 && !slot.Released && slot.Uid == uid)
            {
                recheck.Add(slot.Handle);
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
    /// real <paramref name="size"/> (the kernel rounds to pages). On failure,
    /// an error or an exception from the observer, the charge is refunded
    /// and the slot is free again.
    /// </summary>
    public Errno TryRecord(SafeFd buffer, uint uid, int pid, string heap, long charged, long size, long connection, out ulong id)
    {
        int slot = TakeSlot();
        Errno errno;
        long handle;
        try
        {
            errno = releases.Observe(buffer, this, slot, out handle);
        }
        catch
        {
            FreeSlot(slot);
            Refund(uid, heap, charged);
            throw;
        }
        if (errno != Errno.None)
        {
            FreeSlot(slot);
            Refund(uid, heap, charged);
            id = 0;
            return errno;
        }
        id = ++nextId;
        ushort heapNumber = HeapIndex(heap);
        At(slot) = new Slot { Id = id, Size = size, Connection = connection, Handle = handle, Uid = uid, Heap = heapNumber };
        Index(slot);
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
        // The kernel may have found releases meanwhile (the model's drainer, or an allocation that
        // needed their memory): they are handled now, not after the wake-up's turn of the loop.
        releases.HandleFound();
        return Errno.None;
    }

    /// <summary>Slots in use (live, or released and still FREE-able by their connection).</summary>
    internal int SlotsInUse => slotsInUse;

    /// <summary>Chunks of slots made so far: they stay, and are reused, once their buffers are gone.</summary>
    internal int Chunks => (slotsUsed + ChunkSlots - 1) / ChunkSlots;

    private ref Slot At(int slot) => ref chunks[slot >> ChunkShift][slot & (ChunkSlots - 1)];

    /// <summary>A free slot: the last one freed, else the next of the current chunk, else the first of a new chunk.</summary>
    private int TakeSlot()
    {
        int slot = freeHead;
        if (slot != NoSlot)
        {
            freeHead = At(slot).Next;
        }
        else
        {
            slot = slotsUsed++;
            int chunk = slot >> ChunkShift;
            if (chunk == chunks.Length)
            {
                Array.Resize(ref chunks, Math.Max(4, chunks.Length * 2));
            }
            chunks[chunk] ??= new Slot[ChunkSlots];
        }
        At(slot) = default;
        slotsInUse++;
        return slot;
    }

    private void FreeSlot(int slot)
    {
        At(slot) = new Slot { Next = freeHead };
        freeHead = slot;
        slotsInUse--;
    }

    private static int[] NewBuckets(int count)
    {
        int[] buckets = new int[count];
        Array.Fill(buckets, NoSlot);
        return buckets;
    }

    private int Bucket(ulong id) => (int)((id * 0x9E3779B97F4A7C15UL) >> (64 - System.Numerics.BitOperations.Log2((uint)byId.Length)));

    /// <summary>Puts a slot in use into the id index; the index doubles when the slots in use outnumber its buckets.</summary>
    private void Index(int slot)
    {
        if (slotsInUse > byId.Length)
        {
            int[] old = byId;
            byId = NewBuckets(old.Length * 2);
            foreach (int head in old)
            {
                for (int moving = head; moving != NoSlot;)
                {
                    ref Slot record = ref At(moving);
                    int next = record.Next;
                    ref int bucket = ref byId[Bucket(record.Id)];
                    record.Next = bucket;
                    bucket = moving;
                    moving = next;
                }
            }
        }
        ref int first = ref byId[Bucket(At(slot).Id)];
        At(slot).Next = first;
        first = slot;
    }

    /// <summary>The slot of buffer <paramref name="id"/>, or <see cref="NoSlot"/>.</summary>
    private int Find(ulong id)
    {
        if (id == 0)
        {
            return NoSlot;
        }
        for (int slot = byId[Bucket(id)]; slot != NoSlot; slot = At(slot).Next)
        {
            if (At(slot).Id == id)
            {
                return slot;
            }
        }
        return NoSlot;
    }

    /// <summary>Takes a slot out of the id index.</summary>
    private void Unindex(int slot)
    {
        ulong id = At(slot).Id;
        ref int link = ref byId[Bucket(id)];
        while (link != slot)
        {
            link = ref At(link).Next;
        }
        link = At(slot).Next;
    }

    /// <summary>FREE: ends the connection's claim. ENOENT for an id it does not hold.</summary>
    public Errno Free(long connection, ulong id, out bool released)
    {
        HandleReleases();
        released = false;
        int slot = Find(id);
        if (slot == NoSlot || At(slot).Connection != connection)
        {
            return Errno.ENOENT;
        }
        released = At(slot).Released;
        if (released)
        {
            Unkeep(ref CollectionsMarshal.GetValueRefOrNullRef(kept, connection), slot);
            Forget(slot);
        }
        else
        {
            At(slot).Connection = 0;
        }
        return Errno.None;
    }

    /// <summary>A connection closed: its buffers stay charged until released, but can no longer be freed by id.</summary>
    public void ConnectionClosed(long connection)
    {
        for (int slot = 0; slot < slotsUsed; slot++)
        {
            ref Slot record = ref At(slot);
            if (record.Id != 0 && record.Connection == connection)
            {
                record.Connection = 0;
                if (record.Released)
                {
                    Forget(slot);
                }
            }
        }
        kept.Remove(connection); // every slot on its list was forgotten above
    }

    /// <summary>A released buffer its connection may still FREE goes on the connection's list; past the bound the oldest there is forgotten.</summary>
    private void Keep(int slot)
    {
        ref Slot record = ref At(slot);
        ref Kept list = ref CollectionsMarshal.GetValueRefOrAddDefault(kept, record.Connection, out bool listed);
        if (!listed)
        {
            list.Oldest = list.Newest = NoSlot;
        }
        record.KeptNext = NoSlot;
        record.KeptPrevious = list.Newest;
        if (list.Newest != NoSlot)
        {
            At(list.Newest).KeptNext = slot;
        }
        else
        {
            list.Oldest = slot;
        }
        list.Newest = slot;
        if (++list.Count > KeptPerConnection)
        {
            int oldest = list.Oldest;
            Unkeep(ref list, oldest);
            Forget(oldest);
        }
    }

    private void Unkeep(ref Kept list, int slot)
    {
        ref Slot record = ref At(slot);
        if (record.KeptPrevious != NoSlot)
        {
            At(record.KeptPrevious).KeptNext = record.KeptNext;
        }
        else
        {
            list.Oldest = record.KeptNext;
        }
        if (record.KeptNext != NoSlot)
        {
            At(record.KeptNext).KeptPrevious = record.KeptPrevious;
        }
        else
        {
            list.Newest = record.KeptPrevious;
        }
        list.Count--;
    }

    private void Forget(int slot)
    {
        Unindex(slot);
        FreeSlot(slot);
    }

    /// <summary>From the observer (on this thread): the buffer in <paramref name="token"/>'s slot is released.</summary>
    void IReleaseSink.Released(long token, long notBefore)
    {
        int slot = checked((int)token);
        ref Slot record = ref At(slot);
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
        else
        {
            Keep(slot);
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
