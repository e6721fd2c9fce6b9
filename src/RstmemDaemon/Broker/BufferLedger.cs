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
}

/// <summary>
/// Every buffer handed out: who has it, from which heap, and whether its last
/// reference anywhere is gone (inotify, via <see cref="ReleaseWatcher"/>).
/// Used from the broker's one thread only.
/// </summary>
public sealed class BufferLedger : IDisposable
{
    private sealed class Record(ulong id, uint uid, int pid, string heap, long size, long connection)
    {
        public ulong Id { get; } = id;

        public uint Uid { get; } = uid;

        public int Pid { get; } = pid;

        public string Heap { get; } = heap;

        public long Size { get; } = size;

        /// <summary>The connection that may FREE it; 0 once that connection closed or freed it.</summary>
        public long Connection { get; set; } = connection;

        public bool Released { get; set; }
    }

    private readonly ReleaseWatcher watcher;
    private readonly Dictionary<ulong, Record> records = [];
    private readonly Dictionary<uint, UserUsage> users = [];
    private readonly Dictionary<string, HeapUsage> heaps = new(StringComparer.Ordinal);
    private ulong nextId;

    public BufferLedger(bool closeEventMarksRelease)
        : this(new ReleaseWatcher(closeEventMarksRelease))
    {
    }

    /// <param name="watcher">How releases are learned; the ledger owns it.</param>
    public BufferLedger(ReleaseWatcher watcher)
    {
        ArgumentNullException.ThrowIfNull(watcher);
        this.watcher = watcher;
    }

    /// <summary>Readable when releases are waiting to be handled.</summary>
    public SafeFd ReleaseEvents => watcher.Descriptor;

    /// <summary>When set, <see cref="HandleReleases"/> must also run this often (the watcher polls reference counts).</summary>
    public int? PollIntervalMilliseconds => watcher.Watched > 0 ? watcher.PollIntervalMilliseconds : null;

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

    public int HandleReleases() => watcher.Drain();

    public void CountFailure(string heap)
    {
        Failures++;
        Heap(heap).Failures++;
    }

    /// <summary>
    /// Records a buffer about to be sent and starts watching for its last
    /// close; call while <paramref name="buffer"/> is still open here.
    /// </summary>
    public Errno TryRecord(SafeFd buffer, uint uid, int pid, string heap, long size, long connection, out ulong id)
    {
        id = ++nextId;
        var record = new Record(id, uid, pid, heap, size, connection);
        Errno errno = watcher.TryWatch(buffer, () => OnReleased(record));
        if (errno != Errno.None)
        {
            return errno;
        }
        records[id] = record;
        Allocations++;
        LiveBuffers++;
        LiveBytes += (ulong)size;
        HeapUsage usage = Heap(heap);
        usage.Allocations++;
        usage.LiveBuffers++;
        usage.LiveBytes += (ulong)size;
        UserUsage user = User(uid);
        user.Buffers++;
        user.Bytes += size;
        return Errno.None;
    }

    /// <summary>FREE: ends the connection's claim. ENOENT for an id it does not hold.</summary>
    public Errno Free(long connection, ulong id, out bool released)
    {
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
        if (record.Connection == 0)
        {
            records.Remove(record.Id);
        }
        BufferReleased?.Invoke(record.Id, record.Uid, record.Heap, record.Size);
    }

    public void Dispose() => watcher.Dispose();
}
