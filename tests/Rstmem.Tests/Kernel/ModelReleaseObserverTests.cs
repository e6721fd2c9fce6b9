using System.Globalization;
using System.Runtime.CompilerServices;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Kernel;

/// <summary>
/// The model's release observation: a buffer is released when the model frees
/// its memory, learned from the model's own lock or watch, with nothing more per
/// buffer; a TEE registration keeps it alive as tee_shm_register_fd's
/// dma_buf_get reference does.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class ModelReleaseObserverTests
{
    [Fact]
    public void A_buffer_is_released_at_its_last_close_and_not_before()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        SafeFd buffer = model.HeapAllocOrFail("system", 4096);
        Assert.Equal(Errno.None, Interop.Sys.TryDuplicate(buffer, out SafeFd duplicate));
        var events = new List<string>();
        Assert.Equal(Errno.None, observer.Observe(buffer, () => events.Add("released"), out _));
        Assert.Equal(1, observer.Observed);

        buffer.Dispose();
        events.Add("first close");
        observer.Drain();
        duplicate.Dispose();
        events.Add("last close");
        observer.Drain();

        Assert.Equal(["first close", "last close", "released"], events);
        Assert.Equal(0, observer.Observed);
    }

    [Fact]
    public void A_close_wakes_the_observer_with_close_events_and_waits_for_the_poll_with_reference_counting()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver events = model.ObserveReleases(ReleaseSignal.CloseEvents);
        using IReleaseObserver counting = model.ObserveReleases(ReleaseSignal.ReferenceCount);
        Assert.Null(events.PollIntervalMilliseconds);
        Assert.NotNull(counting.PollIntervalMilliseconds);
        using (SafeFd a = model.HeapAllocOrFail("system", 4096))
        using (SafeFd b = model.HeapAllocOrFail("system", 4096))
        {
            Assert.Equal(Errno.None, events.Observe(a, () => { }, out _));
            Assert.Equal(Errno.None, counting.Observe(b, () => { }, out _));
        }
        model.Drain(); // the model handles both closes; only the close-event observer is woken
        Assert.True(Readable(events.Events));
        Assert.False(Readable(counting.Events));
        Assert.Equal(1, events.Drain());
        Assert.False(Readable(events.Events)); // its one wake-up was read: epoll does not come back for nothing
        Assert.Equal(0, counting.Drain()); // reference counting: released by the timer's sweep, not by a drain
        Assert.Equal(1, counting.Sweep());
    }

    [Fact]
    public void A_release_the_observer_finds_itself_is_handled_without_a_wake_up()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        lock (model.LockedGate) // the model's drainer does not sweep meanwhile and find the release first
        {
            StrongBox<int> released = ObservedAndClosed(model, observer);

            Assert.Equal(1, observer.Drain()); // the close is found by this very drain
            Assert.Equal(1, released.Value);
            Assert.False(Readable(observer.Events)); // nothing was written for the owner to wake up to
        }
    }

    [Fact]
    public void A_release_nobody_asked_for_is_handed_on_by_the_model_and_runs_without_a_system_call()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        StrongBox<int> released = ObservedAndClosed(model, observer);

        // Nothing calls into the model: its drainer reads the watch and wakes the observer.
        Span<pollfd> fds = [new pollfd { fd = observer.Events.DangerousFd, events = Poll.POLLIN }];
        Assert.Equal(Errno.None, Interop.Sys.TryPoll(fds, GiveUp.Milliseconds, out int ready));
        Assert.Equal(1, ready);
        Assert.Equal(0, released.Value); // found, not yet run: callbacks run on the observer's thread

        Assert.Equal(1, observer.HandleFound());
        Assert.Equal(1, released.Value);
        Assert.Equal(0, observer.Drain()); // the wake-up written for it finds nothing left to run
        Assert.Equal(1, released.Value);
    }

    [Fact]
    public void An_allocation_the_pool_can_serve_only_after_a_close_handles_that_release_first()
    {
        // A 16-page CMA heap, filled, emptied by a close, and filled again at once: the
        // allocation that finds the pool full handles the releases waiting before it refuses.
        ulong size = 16 * (ulong)ModelKit.Page;
        using ModelKernel model = ModelKit.Model("mainline", o => o.CmaHeapSize = size.ToString(CultureInfo.InvariantCulture));
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        using SafeFd heap = model.OpenOrFail($"/dev/dma_heap/{model.Options.CmaHeapName}"); // opening drains: done before
        StrongBox<int> released = new();
        Assert.Equal(Errno.None, model.HeapAlloc(heap, size, out SafeFd full));
        using (full)
        {
            Assert.Equal(Errno.None, observer.Observe(full, () => released.Value++, out _));
            Assert.Equal(Errno.ENOMEM, model.HeapAlloc(heap, (ulong)ModelKit.Page, out _));
        }

        Assert.Equal(Errno.None, model.HeapAlloc(heap, size, out SafeFd again));
        again.Dispose();
        Assert.Equal(1, observer.HandleFound() + observer.Drain()); // released once, found by the allocation or the drainer
        Assert.Equal(1, released.Value);
    }

    [Fact]
    public void A_full_pool_serves_again_after_a_close_even_when_the_drainer_read_that_close_first()
    {
        // The allocation that finds the pool full drains the watch; when the model's drainer
        // has just read the close itself, that drain finds nothing new, and the pool must be
        // asked again anyway (a conformance run failed on it, 2026-12-03 18:40). Each round
        // waits about one drainer batch after the close, so that some meet the drainer
        // mid-drain: with the retry made conditional on this drain's count again, one run in
        // three or four failed here (18:50), so this catches it often, not always.
        ulong size = 4 * (ulong)ModelKit.Page;
        using ModelKernel model = ModelKit.Model("mainline", o => o.CmaHeapSize = size.ToString(CultureInfo.InvariantCulture));
        using SafeFd heap = model.OpenOrFail($"/dev/dma_heap/{model.Options.CmaHeapName}");
        for (int round = 0; round < 600; round++)
        {
            Assert.Equal(Errno.None, model.HeapAlloc(heap, size, out SafeFd full));
            full.Dispose();
            Thread.Sleep(TimeSpan.FromMilliseconds(ModelKernel.ReleaseBatchMilliseconds + round % 5 - 2));
        }
    }

    [Fact]
    public void A_TEE_registration_holds_the_buffer_after_its_descriptor_closes()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        using SafeFd tee = model.OpenOrFail("/dev/tee0", Fcntl.O_RDWR);
        SafeFd buffer = model.HeapAllocOrFail("protected,secure-video", 4096);
        int released = 0;
        Assert.Equal(Errno.None, observer.Observe(buffer, () => released++, out _));
        var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_SHM_REGISTER_FD, ref data, out int shmFd));
        SafeFd shm = SafeFd.DangerousAdopt(shmFd);

        buffer.Dispose();
        observer.Drain();
        Assert.Equal(0, released);

        shm.Dispose();
        observer.Drain();
        Assert.Equal(1, released);
    }

    [Fact]
    public void Observing_adds_no_watch_and_no_descriptor_of_its_own()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        var buffers = new List<SafeFd>();
        try
        {
            for (int i = 0; i < 8; i++)
            {
                buffers.Add(model.HeapAllocOrFail("system", 4096));
            }
            // The model's drainer neither locks nor watches a file while its gate is held.
            lock (model.LockedGate)
            {
                int watches = InotifyWatches();
                int descriptors = ModelKit.OpenDescriptorCount();
                foreach (SafeFd buffer in buffers)
                {
                    Assert.Equal(Errno.None, observer.Observe(buffer, () => { }, out _));
                }

                Assert.Equal(watches, InotifyWatches());
                Assert.Equal(descriptors, ModelKit.OpenDescriptorCount());
            }
        }
        finally
        {
            buffers.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void A_descriptor_the_model_did_not_make_is_refused()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("stranger", Memfd.MFD_CLOEXEC, out SafeFd stranger));
        using (stranger)
        {
            Assert.Equal(Errno.EINVAL, observer.Observe(stranger, () => { }, out _));
        }
        Assert.Equal(0, observer.Observed);
    }

    /// <summary>A system-heap buffer observed and closed at once; the box counts its release callbacks.</summary>
    private static StrongBox<int> ObservedAndClosed(ModelKernel model, IReleaseObserver observer)
    {
        var released = new StrongBox<int>();
        using SafeFd buffer = model.HeapAllocOrFail("system", 4096);
        Assert.Equal(Errno.None, observer.Observe(buffer, () => released.Value++, out _));
        return released;
    }

    private static bool Readable(SafeFd fd)
    {
        Span<pollfd> fds = [new pollfd { fd = fd.DangerousFd, events = Poll.POLLIN }];
        Interop.Sys.TryPoll(fds, 0, out int ready);
        return ready > 0;
    }

    /// <summary>inotify watches this process holds: the "inotify wd:" lines of every descriptor's fdinfo.</summary>
    private static int InotifyWatches() =>
        Directory.EnumerateFiles("/proc/self/fdinfo").Sum(path =>
        {
            try
            {
                return File.ReadLines(path).Count(line => line.StartsWith("inotify wd:", StringComparison.Ordinal));
            }
            catch (IOException)
            {
                return 0; // closed meanwhile
            }
        });
}
