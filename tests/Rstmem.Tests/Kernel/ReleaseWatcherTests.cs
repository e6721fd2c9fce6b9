using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Kernel;

/// <summary>
/// The real kernel's release observation on this host. A memfd stands in for
/// a dma-buf: its close is reported here, but its fdinfo has no count, so the
/// reference-counting path's release is covered in the Linux 7.2 guest
/// (tests/kernel/guest/checks-mainline.sh), where buffers are real.
/// </summary>
[Collection(SerialTests.Name)] // counts this process's descriptors
public sealed class ReleaseWatcherTests
{
    [Fact]
    public void The_probe_sees_a_reported_close_and_closes_the_probe_buffer()
    {
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("probe", Memfd.MFD_CLOEXEC, out SafeFd buffer));

        Assert.Equal(ReleaseSignal.CloseEvents, LinuxKernel.Instance.ProbeReleaseSignal(buffer));
        Assert.True(buffer.IsClosed);
    }

    [Fact]
    public void A_close_event_observer_reports_the_last_close_once_and_only_after_it()
    {
        using IReleaseObserver observer = LinuxKernel.Instance.ObserveReleases(ReleaseSignal.CloseEvents);
        Assert.Null(observer.PollIntervalMilliseconds);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("observed", Memfd.MFD_CLOEXEC, out SafeFd buffer));
        int released = 0;
        Assert.Equal(Errno.None, observer.Observe(buffer, () => released++, out _));
        Assert.Equal(0, observer.Drain());
        Assert.Equal(0, released);

        buffer.Dispose();

        Assert.Equal(1, observer.Drain());
        Assert.Equal(1, released);
        Assert.Equal(0, observer.Observed);
        Assert.Equal(0, observer.Drain());
    }

    [Fact]
    public void Watches_the_kernel_removed_are_releases_even_when_their_events_were_never_read()
    {
        using ReleaseWatcher watcher = ReleaseWatcher.ForReopenableFiles();
        var released = new List<int>();
        var buffers = new SafeFd[3];
        for (int i = 0; i < buffers.Length; i++)
        {
            Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate($"lost-{i}", Memfd.MFD_CLOEXEC, out buffers[i]));
            int which = i;
            Assert.Equal(Errno.None, watcher.Observe(buffers[i], () => released.Add(which)));
        }
        buffers[0].Dispose();
        buffers[2].Dispose();

        // As after IN_Q_OVERFLOW: no event read, the kernel's list of watches asked instead.
        Assert.Equal(2, watcher.ReleaseUnwatched());
        Assert.Equal([0, 2], released.Order());
        Assert.Equal(1, watcher.Observed);
        Assert.Equal(0, watcher.Drain()); // their IN_IGNORED finds nothing pending: no second release

        buffers[1].Dispose();
        Assert.Equal(1, watcher.Drain());
        Assert.Equal([0, 1, 2], released.Order());
    }


    [Fact]
    public void No_release_is_lost_when_the_event_queue_overflows()
    {
        int queue = int.Parse(File.ReadAllText("/proc/sys/fs/inotify/max_queued_events").Trim(), System.Globalization.CultureInfo.InvariantCulture);
        if (queue > 200_000)
        {
            Assert.Skip($"fs.inotify.max_queued_events is {queue}: overflowing it would take too many files here");
        }
        // Each memfd's eviction queues IN_DELETE_SELF and IN_IGNORED: this many overflow the queue.
        int files = queue / 2 + 64;
        using ReleaseWatcher watcher = ReleaseWatcher.ForReopenableFiles();
        int released = 0;
        for (int i = 0; i < files; i++)
        {
            Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("overflow", Memfd.MFD_CLOEXEC, out SafeFd buffer));
            using (buffer)
            {
                Assert.Equal(Errno.None, watcher.Observe(buffer, () => released++));
            }
        }

        Assert.Equal(files, watcher.Drain());
        Assert.True(watcher.Overflows > 0, $"the queue of {queue} events did not overflow with {files} files");
        Assert.Equal(files, released);
        Assert.Equal(0, watcher.Observed);
    }

    [Fact]
    public void A_reference_counting_observer_polls_and_holds_one_duplicate_per_buffer()
    {
        using IReleaseObserver observer = LinuxKernel.Instance.ObserveReleases(ReleaseSignal.ReferenceCount);
        Assert.NotNull(observer.PollIntervalMilliseconds);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("held", Memfd.MFD_CLOEXEC, out SafeFd buffer));
        int before = Directory.GetFiles("/proc/self/fd").Length;
        using (buffer)
        {
            Assert.Equal(Errno.None, observer.Observe(buffer, () => { }, out _));
        }
        Assert.Equal(1, observer.Observed);
        Assert.Equal(before, Directory.GetFiles("/proc/self/fd").Length); // the duplicate replaced the closed original
        Assert.Equal(0, observer.Drain()); // a memfd has no fdinfo count: never taken for released
        Assert.Equal(1, observer.Observed);
    }

    [Fact]
    public void A_reference_counting_sweep_sees_every_release_within_four_sweeps_when_most_buffers_go_at_once()
    {
        // 400 buffers: each sweep looks at 100 (a quarter). Buffers 1-99 were seen held by the
        // first sweep; released with all the others just after it, they must be seen again
        // within four sweeps. A budget recomputed from the shrinking ring took six, and one
        // fixed per pass from that pass's count alone five.
        const int buffers = 400;
        var counter = new SizeCounter();
        using ReleaseWatcher watcher = ReleaseWatcher.ReferenceCounting(counter);
        var files = new SafeFd[buffers];
        int released = 0;
        try
        {
            for (int i = 0; i < buffers; i++)
            {
                Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate($"counted-{i}", Memfd.MFD_CLOEXEC, out files[i]));
                Assert.Equal(Errno.None, watcher.Observe(files[i], () => released++, out _));
            }
            // All held: the first sweep reads every new buffer and moves them into the ring, whose
            // pass starts at the next sweep (no buffer is read twice in one sweep); it releases none.
            Assert.Equal(0, watcher.Sweep());
            Assert.Equal(buffers, counter.Reads);

            // Every buffer but the first is released at once, as when a player exits.
            for (int i = 1; i < buffers; i++)
            {
                Assert.Equal(Errno.None, Interop.Sys.TryFTruncate(files[i], SizeCounter.ReleasedMark));
                files[i].Dispose();
            }
            int sweeps = 0;
            while (released < buffers - 1 && sweeps < 20)
            {
                watcher.Sweep();
                sweeps++;
            }

            Assert.Equal(buffers - 1, released);
            Assert.True(sweeps <= 4, $"seeing {buffers - 1} of {buffers} buffers released took {sweeps} sweeps");
            Assert.Equal(1, watcher.Observed); // the one still held stays
            Assert.Equal(0, watcher.CountReadFailures);
        }
        finally
        {
            foreach (SafeFd file in files)
            {
                file?.Dispose();
            }
        }
    }

    [Fact]
    public void A_buffer_closed_soon_after_it_was_handed_out_is_released_at_the_next_sweep_however_many_come_and_go()
    {
        // 200 held buffers, then ten sweeps each after 150 new ones were handed out and closed
        // (a player cycling buffers): every one of them must be released by the next sweep. With
        // new buffers appended to the round-robin ring alone, a sweep that releases at its
        // cursor takes the newest entry next, so older ones starved for seconds in the 7.2 guest.
        const int held = 200;
        const int perSweep = 150;
        var counter = new SizeCounter();
        using ReleaseWatcher watcher = ReleaseWatcher.ReferenceCounting(counter);
        var files = new List<SafeFd>();
        var released = new HashSet<int>();
        try
        {
            for (int i = 0; i < held; i++)
            {
                files.Add(Observe(watcher, $"held-{i}", -1 - i, released));
            }
            watcher.Sweep();
            for (int sweep = 0; sweep < 10; sweep++)
            {
                for (int i = 0; i < perSweep; i++)
                {
                    int id = (sweep * perSweep) + i;
                    using SafeFd cycled = Observe(watcher, $"cycled-{id}", id, released);
                    Assert.Equal(Errno.None, Interop.Sys.TryFTruncate(cycled, SizeCounter.ReleasedMark));
                }

                Assert.Equal(perSweep, watcher.Sweep());

                Assert.Equal((sweep + 1) * perSweep, released.Count);
                Assert.Equal(held, watcher.Observed);
            }
            Assert.DoesNotContain(released, id => id < 0); // the held ones stay held
        }
        finally
        {
            files.ForEach(file => file.Dispose());
        }
    }

    [Fact]
    public void A_held_buffer_s_count_file_is_opened_once_reread_after_and_closed_with_its_release()
    {
        var counter = new SizeCounter();
        var released = new HashSet<int>();
        var files = new List<SafeFd>();
        using (ReleaseWatcher watcher = ReleaseWatcher.ReferenceCounting(counter))
        {
            try
            {
                for (int i = 0; i < 3; i++)
                {
                    files.Add(Observe(watcher, $"kept-{i}", i, released));
                }
                watcher.Sweep(); // the first look at each: opened
                watcher.Sweep(); // the ring: read again through what was kept
                Assert.Equal(3, counter.Kept.Count);
                Assert.Equal(3, counter.ReadsThroughKept);

                Assert.Equal(Errno.None, Interop.Sys.TryFTruncate(files[1], SizeCounter.ReleasedMark));
                Assert.Equal(1, watcher.Sweep());
                Assert.Equal([1], released);
                Assert.Equal(3, counter.Kept.Count); // nothing opened again
                Assert.Equal([false, true, false], counter.Kept.Select(k => k.IsClosed));
            }
            finally
            {
                files.ForEach(file => file.Dispose());
            }
        }
        Assert.All(counter.Kept, kept => Assert.True(kept.IsClosed, "a kept count file outlived its watcher"));
    }

    private static SafeFd Observe(ReleaseWatcher watcher, string name, int id, HashSet<int> released)
    {
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate(name, Memfd.MFD_CLOEXEC, out SafeFd file));
        Assert.Equal(Errno.None, watcher.Observe(file, () => Assert.True(released.Add(id), $"buffer {id} released twice"), out _));
        return file;
    }

    /// <summary>
    /// A memfd has no fdinfo count, so its size stands in: a file truncated to
    /// <see cref="ReleasedMark"/> bytes reads as count 1 (only the watcher's
    /// duplicate left), any other as 2.
    /// </summary>
    private sealed class SizeCounter : ReleaseWatcher.IReferenceCounter
    {
        public const long ReleasedMark = 1;

        public int Reads { get; private set; }

        /// <summary>What the counter kept per buffer (a /dev/null descriptor standing in for its fdinfo file), in order of opening.</summary>
        public List<SafeFd> Kept { get; } = [];

        /// <summary>Reads through a kept descriptor rather than a fresh one.</summary>
        public int ReadsThroughKept { get; private set; }

        public Errno TryRead(SafeFd fd, ref SafeFd? info, out long count)
        {
            Reads++;
            if (info is null)
            {
                info = Interop.Sys.Open("/dev/null", Fcntl.O_RDONLY);
                Kept.Add(info);
            }
            else
            {
                ReadsThroughKept++;
            }
            Errno errno = Interop.Sys.TryLSeek(fd, 0, Fcntl.SEEK_END, out long size);
            count = size == ReleasedMark ? 1 : 2;
            return errno;
        }

        public void Dispose()
        {
        }
    }
}
