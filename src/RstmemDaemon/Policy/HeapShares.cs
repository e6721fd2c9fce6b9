namespace Rstmem.Daemon.Policy;

/// <summary>One uid's use of one heap: what it holds now and what it asked for since start.</summary>
public sealed class UserHeapUsage
{
    /// <summary>Bytes charged: held buffers, and requests between charge and hand-off.</summary>
    public long Bytes { get; set; }

    public long Buffers { get; set; }

    public ulong Allocations { get; set; }

    public ulong Failures { get; set; }
}

/// <summary>
/// Per heap per uid usage, kept by the broker's ledger beside its per-uid totals: the fair-share
/// limit is checked against it, and STATS/USAGE show a caller its own part of each heap.
/// </summary>
public sealed class HeapShares
{
    private readonly Dictionary<(uint Uid, string Heap), UserHeapUsage> usage = [];

    // The entry asked for last: an ALLOC asks for its uid and heap four times (share,
    // charge, record), and a client's requests come in runs. Entries are never removed,
    // so what this holds stays the table's entry for that uid and heap.
    private uint lastUid;
    private string? lastHeap;
    private UserHeapUsage? lastEntry;

    public UserHeapUsage Of(uint uid, string heap) => Find(uid, heap) ?? Create(uid, heap);

    private UserHeapUsage Create(uint uid, string heap)
    {
        var entry = new UserHeapUsage();
        usage[(uid, heap)] = entry;
        return Remember(uid, heap, entry);
    }

    /// <summary>Reads without creating an entry.</summary>
    public UserHeapUsage? Find(uint uid, string heap)
    {
        if (lastEntry is not null && uid == lastUid && (ReferenceEquals(heap, lastHeap) || heap == lastHeap))
        {
            return lastEntry;
        }
        return usage.TryGetValue((uid, heap), out UserHeapUsage? entry) ? Remember(uid, heap, entry) : null;
    }

    private UserHeapUsage Remember(uint uid, string heap, UserHeapUsage entry)
    {
        lastUid = uid;
        lastHeap = heap;
        lastEntry = entry;
        return entry;
    }

    /// <summary>Adds <paramref name="bytes"/> (negative to take back) and <paramref name="buffers"/>.</summary>
    public void Add(uint uid, string heap, long bytes, long buffers)
    {
        UserHeapUsage entry = Of(uid, heap);
        entry.Bytes += bytes;
        entry.Buffers += buffers;
    }

    /// <summary>
    /// Whether <paramref name="size"/> more bytes keep the uid within <paramref name="limit"/> on the heap;
    /// if not, <paramref name="refusal"/> names the limit and the arithmetic.
    /// </summary>
    public bool Fits(uint uid, string heap, long size, long limit, out string refusal)
    {
        long held = Find(uid, heap)?.Bytes ?? 0;
        if (limit == long.MaxValue || size <= limit - held)
        {
            refusal = "";
            return true;
        }
        refusal = $"pool share (Access:MaxPoolSharePercent or Access:PoolShares): uid {uid} holds {held} bytes of {heap} " +
                  $"and asks for {size} more; its share is {limit} bytes";
        return false;
    }

    /// <summary>Every heap entry of one uid.</summary>
    public IEnumerable<UserHeapUsage> OfUid(uint uid) => usage.Where(e => e.Key.Uid == uid).Select(e => e.Value);

    /// <summary>The uids with anything charged, in order (for administrators' listings).</summary>
    public IEnumerable<uint> Uids => usage.Where(e => e.Value.Bytes > 0 || e.Value.Buffers > 0).Select(e => e.Key.Uid).Distinct().Order();
}
