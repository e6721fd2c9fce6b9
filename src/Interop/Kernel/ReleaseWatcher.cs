using System.Buffers.Text;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Kernel;

/// <summary>
/// Learns when the last reference to a file anywhere is gone, in this process
/// or any other it was passed to: the real kernel's
/// <see cref="IReleaseObserver"/>, and the model's own watch on its files held a while.
///
/// With inotify (<see cref="ReleaseSignal.CloseEvents"/>): a watch on
/// /proc/self/fd/N follows the link to the file's inode. The kernel reports
/// IN_CLOSE_* whenever an open file description of it is released
/// (fs/file_table.c __fput → fsnotify_close) and IN_IGNORED when the inode is
/// evicted (fs/notify/fsnotify.c fsnotify_inode_delete). A dma-buf has
/// exactly one open file description, so its first IN_CLOSE_* is its last
/// close. A memfd (the model's files) can be reopened through /proc, so for
/// those only the inode's eviction counts (IN_DELETE_SELF / IN_IGNORED).
///
/// With <see cref="ReleaseSignal.ReferenceCount"/> (Linux 7.x sends no
/// fsnotify events for pseudo files, dma-bufs among them: no IN_CLOSE_* and,
/// the watch pinning the inode, no IN_IGNORED either), the watcher keeps one
/// duplicate of each buffer and reads its fdinfo <c>count</c>
/// (dma_buf_show_fdinfo: file_count), a bounded share of the buffers each
/// <see cref="PollIntervalMilliseconds"/> (<see cref="Sweep"/>), or the ones
/// named (<see cref="Recheck"/>): count 1 means only the duplicate is left, so
/// it is closed and the buffer is released. A buffer still held at its first
/// look keeps its fdinfo file open, and later looks re-read it with one
/// pread from offset 0 (a seq_file shows it afresh, fs/seq_file.c): one system
/// call instead of openat, read and close, about a third of the cost in the
/// Linux 7.2 guest (TCG, 2026-12-03: 7.6 against 25 us per buffer). That is
/// two descriptors per held buffer (rstmemd.service's LimitNOFILE=65536).
/// </summary>
public sealed class ReleaseWatcher : IReleaseObserver
{
    private const int ReferenceCountPollMilliseconds = 200;

    /// <summary>
    /// A sweep looks at a quarter of the buffers counted when its pass or the
    /// pass before began, whichever held more (see <see cref="Sweep"/>), within
    /// these bounds.
    /// </summary>
    private const int MinimumSweep = 64;
    private const int MaximumSweep = 4096;

    /// <summary>Who hears a release, and as what: one sink for many buffers, so a buffer costs no delegate.</summary>
    private readonly record struct Listener(IReleaseSink Sink, long Token)
    {
        public void Fire(long notBefore) => Sink.Released(Token, notBefore);
    }

    /// <summary>
    /// A duplicate held to read a buffer's reference count (an entry of the
    /// sweep's ring), its fdinfo file once it has been seen held, and when it
    /// was last seen held (a Stopwatch timestamp).
    /// </summary>
    private readonly record struct Counted(long Handle, SafeFd Copy, SafeFd? Info, Listener Listener, long SeenHeld)
    {
        public void Close()
        {
            Info?.Dispose();
            Copy.Dispose();
        }
    }

    /// <summary>Where a handle's entry is: which list, which index.</summary>
    private readonly record struct Slot(bool Young, int Index);

    private readonly SafeFd inotify;
    private readonly bool closeMeansRelease;
    private readonly IReferenceCounter? counter;
    private readonly Dictionary<int, Listener> pending = [];
    /// <summary>The ring the sweeps go round: buffers seen held at least once.</summary>
    private readonly List<Counted> counted = [];
    /// <summary>
    /// Buffers observed since the last sweep, not looked at yet, in order of
    /// arrival: the next sweep looks at all of them first (up to
    /// <see cref="MaximumSweep"/>), releasing those already gone and moving
    /// the rest into the ring.
    /// </summary>
    private readonly List<Counted> young = [];
    /// <summary>Where each handle sits: in <see cref="young"/> or <see cref="counted"/>, at which index (kept up to date as entries move).</summary>
    private readonly Dictionary<long, Slot> slots = [];
    private long nextHandle;
    private int cursor;
    /// <summary>How many entries each sweep of the current pass looks at, fixed when the pass began.</summary>
    private int passBudget;
    /// <summary>How many entries the ring held when the current pass began.</summary>
    private int passStartCount;
    /// <summary>When the last drain found the event queue empty: a release reported now happened after it.</summary>
    private long drainedEmpty = Stopwatch.GetTimestamp();
    private readonly Lock gate = new();
    private readonly byte[] events = new byte[16 * 1024];
    /// <summary>The largest inotify event: the header and a name of NAME_MAX bytes with its NUL (inotify(7)).</summary>
    private static readonly int LargestEvent = Unsafe.SizeOf<inotify_event>() + Inotify.NAME_MAX + 1;

    private ReleaseWatcher(bool closeMeansRelease, IReferenceCounter? counter)
    {
        this.closeMeansRelease = closeMeansRelease;
        Sys.TryInotifyInit(Inotify.IN_NONBLOCK, out inotify).ThrowIfError("inotify_init1");
        this.counter = counter;
    }

    /// <summary>dma-bufs on a kernel that reports their close (<see cref="ReleaseSignal.CloseEvents"/>).</summary>
    public static ReleaseWatcher ForDmaBufs() => new(closeMeansRelease: true, counter: null);

    /// <summary>dma-bufs on a kernel that reports nothing (<see cref="ReleaseSignal.ReferenceCount"/>).</summary>
    public static ReleaseWatcher ReferenceCounting() => new(closeMeansRelease: true, new FdInfoCounter());

    /// <summary>Reference counting with the count read by <paramref name="counter"/> (the tests' stand-in for fdinfo).</summary>
    internal static ReleaseWatcher ReferenceCounting(IReferenceCounter counter) =>
        new(closeMeansRelease: true, counter ?? throw new ArgumentNullException(nameof(counter)));

    /// <summary>Files that can be reopened (memfds, the model's files): only the inode's eviction is a release.</summary>
    public static ReleaseWatcher ForReopenableFiles() => new(closeMeansRelease: false, counter: null);

    /// <summary>The watcher for <paramref name="signal"/> on dma-bufs.</summary>
    public static ReleaseWatcher For(ReleaseSignal signal) => signal switch
    {
        ReleaseSignal.CloseEvents => ForDmaBufs(),
        ReleaseSignal.ReferenceCount => ReferenceCounting(),
        _ => throw new ArgumentOutOfRangeException(nameof(signal), signal, "expected CloseEvents or ReferenceCount"),
    };

    /// <summary>
    /// Whether this kernel reports the last close of <paramref name="sample"/>
    /// (a fresh dma-buf the caller gives up: it is closed here) as an inotify
    /// event within <paramref name="waitMilliseconds"/>.
    /// </summary>
    public static ReleaseSignal Probe(SafeFd sample, int waitMilliseconds = 200)
    {
        ArgumentNullException.ThrowIfNull(sample);
        using ReleaseWatcher probe = ForDmaBufs();
        bool released = false;
        using (sample)
        {
            probe.Observe(sample, () => released = true).ThrowIfError("inotify_add_watch", "a probe buffer");
        }
        Span<pollfd> fds = [new pollfd { fd = probe.Events.DangerousFd, events = Poll.POLLIN }];
        Sys.TryPoll(fds, waitMilliseconds, out _);
        probe.Drain();
        return released ? ReleaseSignal.CloseEvents : ReleaseSignal.ReferenceCount;
    }

    /// <summary>The inotify descriptor, readable when events are waiting (for a poll loop).</summary>
    public SafeFd Events => inotify;

    /// <summary>How often <see cref="Drain"/> must be called when nothing wakes the caller (reference counting), else null.</summary>
    public int? PollIntervalMilliseconds => counter is null ? null : ReferenceCountPollMilliseconds;

    /// <summary>Files watched and not yet released.</summary>
    public int Observed
    {
        get
        {
            lock (gate)
            {
                return pending.Count + counted.Count + young.Count;
            }
        }
    }

    /// <summary>fdinfo reads that failed or found no count (reference counting): those buffers stay held.</summary>
    public long CountReadFailures { get; private set; }

    /// <summary>Times the kernel's event queue overflowed (IN_Q_OVERFLOW): releases may have been missed.</summary>
    public long Overflows { get; private set; }

    /// <summary>
    /// Watches the file behind <paramref name="buffer"/>; <paramref name="sink"/>
    /// hears <paramref name="token"/> once, from <see cref="Drain"/> (or the
    /// sweep), after its last reference is gone. Call this while
    /// <paramref name="buffer"/> is still open.
    /// </summary>
    public Errno Observe(SafeFd buffer, IReleaseSink sink, long token, out long handle)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(sink);
        handle = -1;
        var listener = new Listener(sink, token);
        lock (gate)
        {
            if (counter is not null)
            {
                Errno duplicated = Sys.TryDuplicate(buffer, out SafeFd copy);
                if (duplicated == Errno.None)
                {
                    handle = ++nextHandle;
                    slots.Add(handle, new Slot(Young: true, young.Count));
                    young.Add(new Counted(handle, copy, null, listener, Stopwatch.GetTimestamp()));
                }
                return duplicated;
            }
            Errno errno = Sys.TryInotifyAddWatch(inotify, DescriptorPath(buffer, stackalloc byte[DescriptorPathLength]), WatchMask, out int watch);
            if (errno == Errno.None)
            {
                if (!pending.TryAdd(watch, listener))
                {
                    // The same inode watched twice: the kernel reuses the watch descriptor.
                    throw new InvalidOperationException($"/proc/self/fd/{buffer.DangerousFd} is already watched (watch {watch})");
                }
                handle = watch;
            }
            return errno;
        }
    }

    /// <summary>
    /// What a watch asks for. A memfd's only IN_DELETE_SELF: it stays silent
    /// until the inode goes (then IN_DELETE_SELF and IN_IGNORED), instead of
    /// an event for every close.
    /// </summary>
    private uint WatchMask => closeMeansRelease ? Inotify.IN_CLOSE_WRITE | Inotify.IN_CLOSE_NOWRITE : Inotify.IN_DELETE_SELF;

    /// <summary>"/proc/self/fd/" and an int's digits and a NUL.</summary>
    public const int DescriptorPathLength = 32;

    /// <summary>/proc/self/fd/N, NUL-terminated, formatted into <paramref name="destination"/> (<see cref="DescriptorPathLength"/> bytes) without a string.</summary>
    public static ReadOnlySpan<byte> DescriptorPath(SafeFd fd, Span<byte> destination)
    {
        "/proc/self/fd/"u8.CopyTo(destination);
        Utf8Formatter.TryFormat(fd.DangerousFd, destination[14..], out int digits);
        destination[14 + digits] = 0;
        return destination[..(15 + digits)];
    }

    /// <summary>As the sink overload, with a callback of its own.</summary>
    public Errno Observe(SafeFd buffer, Action onRelease, out long handle) =>
        Observe(buffer, new ReleaseCallback(onRelease), 0, out handle);

    /// <summary>Observes with no need to <see cref="Recheck"/> later.</summary>
    public Errno Observe(SafeFd buffer, Action onRelease) => Observe(buffer, onRelease, out _);

    /// <summary>
    /// Reads every event waiting, runs the release callbacks and returns how
    /// many files were released. The lock is held through the callbacks, so a
    /// caller that drains after a close has returned — in this process or
    /// another — finds that release fully handled, even when another thread
    /// (a background drainer) read the event first. Callbacks must therefore
    /// not call back into this watcher.
    /// </summary>
    public int Drain()
    {
        lock (gate)
        {
            int released = 0;
            bool overflowed = false;
            while (true)
            {
                Errno errno = Sys.TryRead(inotify, events, out int length);
                if (errno == Errno.EAGAIN || (errno == Errno.None && length == 0))
                {
                    drainedEmpty = Stopwatch.GetTimestamp();
                    return overflowed ? released + ReleaseUnwatched() : released;
                }
                errno.ThrowIfError("read(inotify)");
                // inotify_read (fs/notify/inotify/inotify_user.c) copies events while the next
                // one fits in what is left of the buffer, so a read that left room for the
                // largest event emptied the queue: no second read to hear EAGAIN.
                long readAt = Stopwatch.GetTimestamp();
                bool emptied = length <= events.Length - LargestEvent;
                for (int offset = 0; offset < length;)
                {
                    inotify_event e = MemoryMarshal.Read<inotify_event>(events.AsSpan(offset));
                    offset += Unsafe.SizeOf<inotify_event>() + (int)e.len;
                    if ((e.mask & Inotify.IN_Q_OVERFLOW) != 0)
                    {
                        Overflows++;
                        overflowed = true; // events were dropped: ask the kernel which watches are left
                        continue;
                    }
                    bool evicted = (e.mask & (Inotify.IN_IGNORED | Inotify.IN_DELETE_SELF)) != 0;
                    bool closed = (e.mask & Inotify.IN_CLOSE) != 0;
                    if ((evicted || (closed && closeMeansRelease)) && pending.Remove(e.wd, out Listener listener))
                    {
                        if (!evicted)
                        {
                            // A close with the inode still there: drop the watch now; its IN_IGNORED
                            // will find nothing pending. After IN_DELETE_SELF the kernel has removed
                            // it already (fsnotify_inoderemove; inotify_rm_watch would fail EINVAL).
                            Sys.TryInotifyRmWatch(inotify, e.wd);
                        }
                        listener.Fire(drainedEmpty);
                        released++;
                    }
                }
                if (emptied)
                {
                    drainedEmpty = readAt;
                    return overflowed ? released + ReleaseUnwatched() : released;
                }
            }
        }
    }

    /// <summary>
    /// After IN_Q_OVERFLOW some events are lost, and a lost IN_IGNORED would
    /// leave its buffer charged for ever. The kernel removes a watch when its
    /// inode is evicted (fsnotify_inoderemove), and the inotify descriptor's
    /// fdinfo lists the watches left ("inotify wd:%x ...",
    /// fs/notify/fdinfo.c, inotify_fdinfo): every pending watch missing there
    /// is a release. Returns how many were released.
    /// </summary>
    public int ReleaseUnwatched()
    {
        lock (gate)
        {
            if (pending.Count == 0)
            {
                return 0;
            }
            var live = new HashSet<int>();
            string info = File.ReadAllText($"/proc/self/fdinfo/{inotify.DangerousFd.ToString(System.Globalization.CultureInfo.InvariantCulture)}");
            foreach (string line in info.Split('\n'))
            {
                if (line.StartsWith("inotify wd:", StringComparison.Ordinal))
                {
                    int end = line.IndexOf(' ', 11);
                    live.Add(int.Parse(line.AsSpan(11, (end < 0 ? line.Length : end) - 11), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture));
                }
            }
            var gone = new List<int>();
            foreach (int watch in pending.Keys)
            {
                if (!live.Contains(watch))
                {
                    gone.Add(watch);
                }
            }
            foreach (int watch in gone)
            {
                pending.Remove(watch, out Listener listener);
                listener.Fire(drainedEmpty);
            }
            return gone.Count;
        }
    }

    /// <summary>
    /// Reference counting: first looks at the buffers observed since the last
    /// sweep (all of them, up to <see cref="MaximumSweep"/>, oldest first), so
    /// one handed out and closed soon after is released at the next sweep
    /// however many others come and go; those still held join the ring. Then
    /// reads the fdinfo count of the next buffers in the ring, releasing those
    /// whose duplicate is the last reference. The ring's budget is fixed when
    /// its pass begins: a quarter of the ring then or at the previous pass's
    /// start, whichever is larger (at least <see cref="MinimumSweep"/>, at most
    /// <see cref="MaximumSweep"/>). A buffer's slot only moves down the ring
    /// (a released entry's slot takes the last one), so between two looks at a
    /// buffer there are at most four sweeps, even when most buffers are
    /// released at once (a budget that shrank with the ring took six and more).
    /// Nothing to do on an event kernel.
    /// </summary>
    public int Sweep()
    {
        lock (gate)
        {
            if (counter is null)
            {
                return 0;
            }
            int ringBefore = counted.Count;
            int released = SweepYoung();
            if (counted.Count == 0)
            {
                return released;
            }
            if (cursor == 0 || cursor >= counted.Count)
            {
                BeginPass();
            }
            // No buffer is read twice in one sweep: not those the young list just moved in, and not
            // the same ones round and round when the ring is smaller than the budget.
            int budget = Math.Min(passBudget, ringBefore);
            for (int looked = 0; looked < budget && counted.Count > 0; looked++)
            {
                if (cursor >= counted.Count)
                {
                    BeginPass(); // the rest of this sweep's budget starts the next pass
                }
                if (Check(young: false, cursor))
                {
                    released++; // the last entry moved into this slot: look at it next
                }
                else
                {
                    cursor++;
                }
            }
            return released;
        }
    }

    /// <summary>Looks at the young buffers in order of arrival: releases the gone, moves the held into the ring.</summary>
    private int SweepYoung()
    {
        int looked = Math.Min(young.Count, MaximumSweep);
        int released = 0;
        for (int i = 0; i < looked; i++)
        {
            Counted entry = young[i];
            SafeFd? info = entry.Info;
            long count = ReadCount(entry.Copy, ref info);
            entry = entry with { Info = info };
            if (count == 1)
            {
                Release(entry);
                released++;
            }
            else
            {
                slots[entry.Handle] = new Slot(Young: false, counted.Count);
                counted.Add(entry with { SeenHeld = Stopwatch.GetTimestamp() });
            }
        }
        young.RemoveRange(0, looked);
        for (int i = 0; i < young.Count; i++)
        {
            slots[young[i].Handle] = new Slot(Young: true, i); // more arrived than one sweep looks at: they moved up
        }
        return released;
    }

    private void BeginPass()
    {
        cursor = 0;
        int basis = Math.Max(counted.Count, passStartCount);
        passStartCount = counted.Count;
        passBudget = Math.Clamp((basis + 3) / 4, MinimumSweep, MaximumSweep);
    }

    /// <summary>Looks at these buffers now: their fdinfo counts (reference counting), or the events waiting.</summary>
    public int Recheck(ReadOnlySpan<long> buffers)
    {
        if (counter is null)
        {
            return Drain();
        }
        lock (gate)
        {
            int released = 0;
            foreach (long handle in buffers)
            {
                if (slots.TryGetValue(handle, out Slot slot) && Check(slot.Young, slot.Index))
                {
                    released++;
                }
            }
            return released;
        }
    }

    /// <summary>
    /// Releases the entry at <paramref name="index"/> of the young list or the
    /// ring when its duplicate is the last reference left (the last entry of
    /// that list takes its slot); true if it did.
    /// </summary>
    private bool Check(bool young, int index)
    {
        List<Counted> list = young ? this.young : counted;
        Counted entry = list[index];
        SafeFd? info = entry.Info;
        long count = ReadCount(entry.Copy, ref info);
        entry = entry with { Info = info };
        if (count != 1)
        {
            list[index] = count > 1 ? entry with { SeenHeld = Stopwatch.GetTimestamp() } : entry;
            return false;
        }
        Counted last = list[^1];
        list[index] = last;
        slots[last.Handle] = new Slot(young, index);
        list.RemoveAt(list.Count - 1);
        Release(entry);
        return true;
    }

    /// <summary>
    /// The count of the file behind <paramref name="copy"/>, or -1 when it
    /// cannot be read; through <paramref name="info"/> when it is open, else
    /// opening it there (kept if the counter can).
    /// </summary>
    private long ReadCount(SafeFd copy, ref SafeFd? info)
    {
        if (counter!.TryRead(copy, ref info, out long count) != Errno.None)
        {
            // Not a dma-buf (no count), or procfs refused: it stays held; counted for diagnostics.
            CountReadFailures++;
            return -1;
        }
        return count;
    }

    private void Release(Counted entry)
    {
        slots.Remove(entry.Handle);
        entry.Close();
        entry.Listener.Fire(entry.SeenHeld);
    }

    public void Dispose()
    {
        lock (gate)
        {
            counted.ForEach(c => c.Close());
            young.ForEach(c => c.Close());
            counted.Clear();
            young.Clear();
            slots.Clear();
        }
        inotify.Dispose();
        counter?.Dispose();
    }

    /// <summary>
    /// A dma-buf's fdinfo <c>count</c> (file_count of its file), read into a
    /// buffer kept for the purpose: the first time with openat and read, the
    /// fdinfo file then kept open, and after that with one pread from offset 0.
    /// No managed allocation per read beyond the kept file's handle, so a sweep
    /// over many buffers costs system calls only. When the kept open fails
    /// (EMFILE), the next read opens it again.
    /// </summary>
    private sealed class FdInfoCounter : IReferenceCounter
    {
        private static ReadOnlySpan<byte> CountKey => "\ncount:"u8;

        private readonly SafeFd directory = Sys.Open("/proc/self/fdinfo", Fcntl.O_RDONLY);
        private readonly byte[] text = new byte[4096];

        public Errno TryRead(SafeFd fd, ref SafeFd? info, out long count)
        {
            count = 0;
            int length;
            Errno errno;
            // fdinfo is a seq_file: "pos:\t...\nflags:\t...\n...", one page at most for a dma-buf.
            text[0] = (byte)'\n';
            if (info is not null)
            {
                errno = Sys.TryPRead(info, text.AsSpan(1), 0, out length);
            }
            else
            {
                Span<byte> name = stackalloc byte[16];
                if (!Utf8Formatter.TryFormat(fd.DangerousFd, name, out int written))
                {
                    return Errno.EINVAL;
                }
                name[written] = 0;
                errno = Sys.TryOpenAt(directory, name[..(written + 1)], Fcntl.O_RDONLY, out SafeFd opened);
                if (errno != Errno.None)
                {
                    return errno;
                }
                errno = Sys.TryRead(opened, text.AsSpan(1), out length);
                if (errno == Errno.None)
                {
                    info = opened;
                }
                else
                {
                    opened.Dispose();
                }
            }
            if (errno != Errno.None)
            {
                return errno;
            }
            ReadOnlySpan<byte> lines = text.AsSpan(0, length + 1);
            int key = lines.IndexOf(CountKey);
            if (key < 0)
            {
                return Errno.ENOENT; // not a dma-buf: its fdinfo has no count
            }
            ReadOnlySpan<byte> value = lines[(key + CountKey.Length)..].TrimStart((byte)'\t');
            return Utf8Parser.TryParse(value, out count, out _) ? Errno.None : Errno.EINVAL;
        }

        public void Dispose() => directory.Dispose();
    }

    /// <summary>Reads how many references a buffer's file has (fdinfo <c>count</c> on a real kernel).</summary>
    internal interface IReferenceCounter : IDisposable
    {
        /// <summary>
        /// The count of the file behind <paramref name="fd"/>. <paramref name="info"/>
        /// is what the counter keeps for this buffer between reads (null at
        /// first; the watcher closes it with the buffer's entry).
        /// </summary>
        Errno TryRead(SafeFd fd, ref SafeFd? info, out long count);
    }
}
