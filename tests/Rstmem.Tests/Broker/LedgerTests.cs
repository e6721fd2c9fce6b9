using Rstmem.Daemon.Broker;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Broker;

/// <summary>The ledger owns the per-user limits; a refusal is never stale, and rechecking is rate-limited.</summary>
public sealed class LedgerTests
{
    /// <summary>An observer whose releases happen only when the test says, and that counts what the ledger asks of it.</summary>
    private sealed class ScriptedObserver(int? pollInterval) : IReleaseObserver
    {
        private readonly Dictionary<long, Action> observed = [];
        private readonly HashSet<long> closed = [];
        private readonly HashSet<long> reported = [];
        private readonly HashSet<long> found = [];
        private readonly SafeFd events = Interop.Sys.TryMemfdCreate("events", Memfd.MFD_CLOEXEC, out SafeFd fd) == Errno.None ? fd : SafeFd.Invalid;
        private long next;

        public int Rechecks { get; private set; }

        public int Drains { get; private set; }

        public SafeFd Events => events;

        public int? PollIntervalMilliseconds => pollInterval;

        public int Observed => observed.Count;

        /// <summary>How long before its release each buffer was last seen held (the latency the ledger is told of).</summary>
        public TimeSpan Unnoticed { get; set; }

        /// <summary>The ledger's token (its slot number) of each buffer observed, in order.</summary>
        public List<long> Tokens { get; } = [];

        /// <summary>When set, the next observe fails with it (the kernel refused a watch).</summary>
        public Errno FailNext { get; set; }

        /// <summary>When set, the next observe throws it (a broken invariant in the watcher).</summary>
        public Exception? ThrowNext { get; set; }

        public Errno Observe(SafeFd buffer, IReleaseSink sink, long token, out long handle)
        {
            Tokens.Add(token);
            if (ThrowNext is { } exception)
            {
                ThrowNext = null;
                throw exception;
            }
            if (FailNext != Errno.None)
            {
                (Errno failure, FailNext) = (FailNext, Errno.None);
                handle = -1;
                return failure;
            }
            return Observe(buffer, () => sink.Released(token, System.Diagnostics.Stopwatch.GetTimestamp() - (long)(Unnoticed.TotalSeconds * System.Diagnostics.Stopwatch.Frequency)), out handle);
        }

        /// <summary>Every buffer observed and not yet released is released now, silently; the next <see cref="Sweep"/> reports them.</summary>
        public void CloseAllSilently()
        {
            foreach (long handle in observed.Keys)
            {
                closed.Add(handle);
            }
        }

        public Errno Observe(SafeFd buffer, Action onRelease, out long handle)
        {
            handle = ++next;
            observed.Add(handle, onRelease);
            return Errno.None;
        }

        /// <summary>The buffer's last reference went, but nothing reported it (a reference-counting kernel).</summary>
        public void CloseSilently(long handle) => closed.Add(handle);

        /// <summary>The buffer's last reference went, and an event says so: the next <see cref="Drain"/> reports it.</summary>
        public void Close(long handle)
        {
            closed.Add(handle);
            reported.Add(handle);
        }

        /// <summary>Releases found by the kernel's own drain: <see cref="HandleFound"/> runs them.</summary>
        public void Find(long handle)
        {
            closed.Add(handle);
            found.Add(handle);
        }

        public int HandleFound()
        {
            long[] handles = [.. found];
            found.Clear();
            return Release(handles);
        }

        public int Drain()
        {
            Drains++;
            long[] events = [.. reported];
            reported.Clear();
            return Release(events);
        }

        public int Sweep() => Release(closed.ToArray());

        public int Recheck(ReadOnlySpan<long> buffers)
        {
            Rechecks++;
            return Release(buffers.ToArray());
        }

        private int Release(long[] handles)
        {
            int released = 0;
            foreach (long handle in handles.Where(closed.Contains))
            {
                closed.Remove(handle);
                observed.Remove(handle, out Action? onRelease);
                onRelease!();
                released++;
            }
            return released;
        }

        public void Dispose() => events.Dispose();
    }

    private const uint Uid = 1000;

    private static ulong Record(BufferLedger ledger, long size, long connection = 1)
    {
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", size, long.MaxValue, out _, out _));
        Assert.Equal(Errno.None, ledger.TryRecord(SafeFd.Invalid, Uid, 42, "heap", size, size, connection, out ulong id));
        return id;
    }

    [Fact]
    public void A_charge_past_a_limit_is_EDQUOT_naming_the_limit_and_logged_once()
    {
        using var ledger = new BufferLedger(new ScriptedObserver(null), new BrokerLimits(2, 10_000, 4));
        Record(ledger, 4096);

        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 8192, long.MaxValue, out string refusal, out string? first));
        Assert.StartsWith("MaxBytesPerUser:", refusal, StringComparison.Ordinal);
        Assert.Equal("MaxBytesPerUser", first);
        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 8192, long.MaxValue, out _, out first));
        Assert.Null(first);

        Record(ledger, 4096);
        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 1, long.MaxValue, out refusal, out first));
        Assert.StartsWith("MaxBuffersPerUser:", refusal, StringComparison.Ordinal);
        Assert.Equal("MaxBuffersPerUser", first);
    }

    [Fact]
    public void A_refused_or_failed_charge_leaves_nothing_charged()
    {
        using var ledger = new BufferLedger(new ScriptedObserver(null), new BrokerLimits(1, 10_000, 4));
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        ledger.Refund(Uid, "heap", 4096); // the kernel's allocation failed

        Assert.Equal(0, ledger.User(Uid).Buffers);
        Assert.Equal(0, ledger.User(Uid).Bytes);
        Record(ledger, 4096);
        Assert.Equal(1, ledger.User(Uid).Buffers);
    }

    [Fact]
    public void The_charge_becomes_the_size_the_kernel_gave()
    {
        using var ledger = new BufferLedger(new ScriptedObserver(null), new BrokerLimits(4, 1 << 20, 4));
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 5000, long.MaxValue, out _, out _));
        Assert.Equal(Errno.None, ledger.TryRecord(SafeFd.Invalid, Uid, 42, "heap", 5000, 8192, 1, out _));

        Assert.Equal(8192, ledger.User(Uid).Bytes);
        Assert.Equal(8192ul, ledger.LiveBytes);
    }

    [Fact]
    public void Before_refusing_on_a_reference_counting_kernel_the_users_buffers_are_recounted()
    {
        var observer = new ScriptedObserver(pollInterval: 60_000);
        using var ledger = new BufferLedger(observer, new BrokerLimits(1, 1 << 20, 4));
        Record(ledger, 4096);
        observer.CloseSilently(1); // released, and no event said so

        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(1, observer.Rechecks);
        Assert.Equal(1ul, ledger.Released);
    }

    [Fact]
    public void A_charge_within_every_limit_handles_no_releases_and_a_refusal_handles_them_first()
    {
        var observer = new ScriptedObserver(null);
        using var ledger = new BufferLedger(observer, new BrokerLimits(1, 1 << 20, 4));
        Record(ledger, 4096);
        Assert.Equal(0, observer.Drains); // within the limits: nothing to look at again

        observer.Close(1); // the first buffer observed is released; the event waits in the queue
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(1, observer.Drains); // over MaxBuffersPerUser until the release was handled
        Assert.Equal(1ul, ledger.Released);
    }

    [Fact]
    public void Releases_the_kernel_found_while_a_buffer_was_made_are_handled_when_it_is_recorded()
    {
        var observer = new ScriptedObserver(null);
        using var ledger = new BufferLedger(observer, new BrokerLimits(4, 1 << 20, 4));
        Record(ledger, 4096);
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        observer.Find(1); // the first buffer's release, found by the kernel as it allocated the second
        Assert.Equal(0ul, ledger.Released);

        Assert.Equal(Errno.None, ledger.TryRecord(SafeFd.Invalid, Uid, 42, "heap", 4096, 4096, 1, out _));
        Assert.Equal(1ul, ledger.Released);
        Assert.Equal(0, observer.Drains);
        Assert.Equal(1, ledger.User(Uid).Buffers);
    }

    [Fact]
    public void A_connection_that_never_frees_keeps_a_bounded_number_of_released_records()
    {
        var observer = new ScriptedObserver(null);
        int buffers = BufferLedger.KeptPerConnection + 10;
        using var ledger = new BufferLedger(observer, new BrokerLimits(buffers, 1L << 40, 4));
        var ids = new List<ulong>();
        for (int i = 0; i < buffers; i++)
        {
            ids.Add(Record(ledger, 4096));
            observer.Close(i + 1); // the client closes each buffer and never sends FREE
            ledger.HandleReleases();
        }
        Assert.Equal((ulong)buffers, ledger.Released);
        Assert.Equal(BufferLedger.KeptPerConnection, ledger.SlotsInUse);

        // The oldest were forgotten; the newest can still be freed, once.
        Assert.Equal(Errno.ENOENT, ledger.Free(1, ids[9], out _));
        Assert.Equal(Errno.None, ledger.Free(1, ids[10], out bool released));
        Assert.True(released);
        Assert.Equal(Errno.ENOENT, ledger.Free(1, ids[10], out _));
        Assert.Equal(BufferLedger.KeptPerConnection - 1, ledger.SlotsInUse);
    }

    [Fact]
    public void A_freed_record_leaves_the_kept_list_and_the_oldest_is_still_forgotten_first()
    {
        var observer = new ScriptedObserver(null);
        using var ledger = new BufferLedger(observer, new BrokerLimits(BufferLedger.KeptPerConnection + 2, 1L << 40, 4));
        ulong first = Record(ledger, 4096);
        ulong second = Record(ledger, 4096);
        ulong third = Record(ledger, 4096);
        observer.Close(1);
        observer.Close(2);
        observer.Close(3);
        ledger.HandleReleases();
        Assert.Equal(Errno.None, ledger.Free(1, second, out bool released)); // out of the middle of the list
        Assert.True(released);

        // Kept: first, third. Fill the list to its bound and one past: the first goes, the third stays.
        for (int i = 0; i < BufferLedger.KeptPerConnection - 1; i++)
        {
            Record(ledger, 4096);
            observer.Close(4 + i);
            ledger.HandleReleases();
        }
        Assert.Equal(BufferLedger.KeptPerConnection, ledger.SlotsInUse);
        Assert.Equal(Errno.ENOENT, ledger.Free(1, first, out _));
        Assert.Equal(Errno.None, ledger.Free(1, third, out released));
        Assert.True(released);

        // Another connection's list is its own, and closing a connection drops its list.
        ulong other = Record(ledger, 4096, connection: 2);
        observer.Close(3 + BufferLedger.KeptPerConnection);
        ledger.HandleReleases();
        ledger.ConnectionClosed(1);
        Assert.Equal(1, ledger.SlotsInUse);
        Assert.Equal(Errno.None, ledger.Free(2, other, out released));
        Assert.True(released);
        Assert.Equal(0, ledger.SlotsInUse);
    }

    [Fact]
    public void A_client_hammering_at_its_limit_causes_at_most_one_recount_per_interval()
    {
        var observer = new ScriptedObserver(pollInterval: 200);
        long now = 1_000;
        using var ledger = new BufferLedger(observer, new BrokerLimits(1, 1 << 20, 4), () => now);
        Record(ledger, 4096);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        }
        Assert.Equal(1, observer.Rechecks);
        Assert.Equal(100, observer.Drains); // the reported releases are handled at every refusal: cheap, no per-buffer work

        now += 199;
        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(1, observer.Rechecks);
        now += 1; // one poll interval after the last recount
        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(2, observer.Rechecks);
    }

    [Fact]
    public void On_an_event_kernel_a_refusal_needs_no_recount()
    {
        var observer = new ScriptedObserver(pollInterval: null);
        using var ledger = new BufferLedger(observer, new BrokerLimits(1, 1 << 20, 4));
        Record(ledger, 4096);
        Assert.Equal(Errno.EDQUOT, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(0, observer.Rechecks);
    }

    [Fact]
    public void Connections_past_the_limit_are_refused_and_the_first_refusal_is_flagged_once()
    {
        using var ledger = new BufferLedger(new ScriptedObserver(null), new BrokerLimits(1, 1, 2));
        Assert.True(ledger.TryConnect(Uid, out _));
        Assert.True(ledger.TryConnect(Uid, out _));
        Assert.False(ledger.TryConnect(Uid, out bool first));
        Assert.True(first);
        Assert.False(ledger.TryConnect(Uid, out first));
        Assert.False(first);
        ledger.Disconnected(Uid);
        Assert.True(ledger.TryConnect(Uid, out _));
    }

    [Fact]
    public void Release_latency_is_counted_from_when_the_observer_last_saw_the_buffer_held()
    {
        var observer = new ScriptedObserver(200) { Unnoticed = TimeSpan.FromMilliseconds(5) };
        using var ledger = new BufferLedger(observer, new BrokerLimits(4, 10_000, 4));
        Assert.Equal((0UL, 0UL, 0UL), (ledger.ReleasesTimed, ledger.ReleaseLatencyMicroseconds(0.99), ledger.ReleaseLatencyMaxMicroseconds));
        Record(ledger, 100);
        observer.CloseSilently(1);

        Assert.Equal(1, ledger.Sweep());

        ulong max = ledger.ReleaseLatencyMaxMicroseconds;
        ulong p99 = ledger.ReleaseLatencyMicroseconds(0.99);
        Assert.Equal(1UL, ledger.ReleasesTimed);
        Assert.True(max >= 5000, $"latency {max} µs: the observer last saw it held 5 ms before");
        // One sample: the 99th percentile is the top of its power-of-two bucket.
        Assert.Equal(System.Numerics.BitOperations.RoundUpToPowerOf2(max + 1), p99);
    }

    [Fact]
    public void Slots_come_in_fixed_chunks_below_the_large_object_threshold_and_freed_slots_are_reused_before_new_ones()
    {
        Assert.True(BufferLedger.ChunkBytes < 85_000, $"a chunk is {BufferLedger.ChunkBytes} bytes: on the large object heap");
        var observer = new ScriptedObserver(pollInterval: 200);
        int buffers = 2 * BufferLedger.ChunkSlots + 100;
        using var ledger = new BufferLedger(observer, new BrokerLimits(buffers + 1, 1L << 40, 4));
        for (int i = 0; i < buffers; i++)
        {
            Record(ledger, 4096);
        }
        Assert.Equal(3, ledger.Chunks);
        Assert.Equal(buffers, ledger.SlotsInUse);
        Assert.Equal(Enumerable.Range(0, buffers).Select(i => (long)i), observer.Tokens); // new slots in order

        // Released, and their connection may still FREE the newest of them: those slots stay taken.
        observer.CloseAllSilently();
        while (ledger.Sweep() > 0)
        {
        }
        Assert.Equal(0UL, ledger.LiveBuffers);
        Assert.Equal(BufferLedger.KeptPerConnection, ledger.SlotsInUse);
        ledger.ConnectionClosed(1);
        Assert.Equal(0, ledger.SlotsInUse);

        // The same number again: every slot is a reused one, no chunk is added.
        observer.Tokens.Clear();
        for (int i = 0; i < buffers; i++)
        {
            Record(ledger, 4096);
        }
        Assert.Equal(3, ledger.Chunks);
        Assert.Equal(buffers, observer.Tokens.Distinct().Count());
        Assert.All(observer.Tokens, token => Assert.InRange(token, 0, buffers - 1));
        Record(ledger, 4096);
        Assert.Equal(buffers, observer.Tokens[^1]); // the free list is empty: the next slot of the last chunk
    }

    [Fact]
    public void The_free_list_hands_out_the_last_freed_slot_first_and_a_failed_observe_gives_its_slot_back()
    {
        var observer = new ScriptedObserver(pollInterval: 200);
        using var ledger = new BufferLedger(observer, new BrokerLimits(100, 1L << 40, 4));
        ulong[] ids = [.. Enumerable.Range(0, 5).Select(_ => Record(ledger, 4096))];
        Assert.Equal([0L, 1, 2, 3, 4], observer.Tokens);

        // Slots 1 and 3 are released and FREEd, in that order.
        observer.CloseSilently(2);
        observer.CloseSilently(4);
        Assert.Equal(2, ledger.Sweep());
        Assert.Equal(Errno.None, ledger.Free(1, ids[1], out bool released));
        Assert.True(released);
        Assert.Equal(Errno.None, ledger.Free(1, ids[3], out released));
        Assert.True(released);
        Assert.Equal(3, ledger.SlotsInUse);

        observer.Tokens.Clear();
        Record(ledger, 4096);
        observer.FailNext = Errno.ENOSPC;
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 4096, long.MaxValue, out _, out _));
        Assert.Equal(Errno.ENOSPC, ledger.TryRecord(SafeFd.Invalid, Uid, 42, "heap", 4096, 4096, 1, out _));
        Assert.Equal(4, ledger.SlotsInUse);
        Record(ledger, 4096);
        Record(ledger, 4096);
        Assert.Equal([3L, 1, 1, 5], observer.Tokens);
        Assert.Equal(6, ledger.SlotsInUse);
        Assert.Equal(6, ledger.User(Uid).Buffers); // the failed one was refunded
    }

    [Fact]
    public void A_watch_that_throws_takes_back_the_charge_and_the_slot_and_the_exception_goes_on()
    {
        var observer = new ScriptedObserver(null);
        using var ledger = new BufferLedger(observer, new BrokerLimits(4, 1 << 20, 4));
        Record(ledger, 4096);
        Assert.Equal(Errno.None, ledger.TryCharge(Uid, "heap", 8192, long.MaxValue, out _, out _));
        observer.ThrowNext = new InvalidOperationException("/proc/self/fd/7 is already watched (watch 3)");

        var thrown = Assert.Throws<InvalidOperationException>(() => ledger.TryRecord(SafeFd.Invalid, Uid, 42, "heap", 8192, 8192, 1, out _));

        Assert.Equal("/proc/self/fd/7 is already watched (watch 3)", thrown.Message);
        Assert.Equal(1, ledger.User(Uid).Buffers); // the first buffer's charge only
        Assert.Equal(4096, ledger.User(Uid).Bytes);
        Assert.Equal(1, ledger.SlotsInUse);
        Record(ledger, 4096); // the slot is taken again, and the ledger goes on
        Assert.Equal(2, ledger.SlotsInUse);
        Assert.Equal(2, ledger.User(Uid).Buffers);
    }

    [Fact]
    public void Buffers_are_found_by_id_across_the_growth_of_the_id_index()
    {
        var observer = new ScriptedObserver(pollInterval: 200);
        const int Buffers = 5_000;
        using var ledger = new BufferLedger(observer, new BrokerLimits(Buffers, 1L << 40, 4));
        ulong[] ids = new ulong[Buffers];
        for (int i = 0; i < Buffers; i++)
        {
            ids[i] = Record(ledger, 4096, connection: 1 + (i % 2));
        }
        Assert.Equal(Buffers, ids.Distinct().Count());
        Assert.Equal(ids.Order(), ids); // ids still rise by one per buffer

        // Another connection's id, or an id never given, is ENOENT; the holder's FREE works once.
        for (int i = 0; i < Buffers; i++)
        {
            long holder = 1 + (i % 2);
            Assert.Equal(Errno.ENOENT, ledger.Free(3 - holder, ids[i], out _));
            Assert.Equal(Errno.None, ledger.Free(holder, ids[i], out bool released));
            Assert.False(released);
            Assert.Equal(Errno.ENOENT, ledger.Free(holder, ids[i], out _));
        }
        Assert.Equal(Errno.ENOENT, ledger.Free(1, 0, out _));
        Assert.Equal(Errno.ENOENT, ledger.Free(1, ids[^1] + 1, out _));

        // FREE ended the claims, so each release forgets its slot at once.
        observer.CloseAllSilently();
        while (ledger.Sweep() > 0)
        {
        }
        Assert.Equal(0, ledger.SlotsInUse);
        Assert.Equal((ulong)Buffers, ledger.Released);
    }
}
