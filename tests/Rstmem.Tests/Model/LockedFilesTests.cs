using System.Globalization;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;
using Rstmem.Model.Files;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>
/// How the model learns the release of a file it has just handed out
/// (src/Model/Files/LockedFiles.cs): from a lock on the description handed
/// out while the file is young, from a watch on its inode once held a while.
/// Tests that must see a file young make its time a lock's an hour
/// (<see cref="ModelKernel.YoungFor"/>) and hold the model's
/// <see cref="ModelKernel.LockedGate"/>, so its drainer does not sweep
/// meanwhile; the test's own calls into the model take it again on the same thread.
/// </summary>
[Collection(SerialTests.Name)]
public sealed class LockedFilesTests
{
    [Fact]
    public void A_young_buffer_is_released_by_the_close_of_its_description_without_a_watch()
    {
        using ModelKernel model = Young();
        lock (model.LockedGate)
        {
            int watched = model.WatchedCount;
            SafeFd buffer = model.HeapAllocOrFail("system", 4096);
            Assert.Equal(1, model.LiveBuffers);
            Assert.Equal(watched, model.WatchedCount);
            Assert.True(model.LockedCount >= 1);

            buffer.Dispose();
            Assert.Equal(0, model.LiveBuffers); // the sweep inside finds the lock gone
            Assert.Equal(watched, model.WatchedCount); // and no watch was ever set
        }
    }

    [Fact]
    public void A_mapping_and_a_duplicate_keep_a_young_buffer_as_they_keep_a_dma_buf()
    {
        using ModelKernel model = Young();
        lock (model.LockedGate)
        {
            SafeFd buffer = model.HeapAllocOrFail("system", 4096);
            Assert.Equal(Errno.None, model.Mmap(buffer, 4096, Mman.PROT_READ, Mman.MAP_SHARED, 0, out nint address));
            Assert.Equal(Errno.None, Interop.Sys.TryDuplicate(buffer, out SafeFd duplicate));
            buffer.Dispose();
            Assert.Equal(1, model.LiveBuffers); // the duplicate holds the description

            duplicate.Dispose();
            Assert.Equal(1, model.LiveBuffers); // the mapping holds it still (vm_file)

            Assert.Equal(Errno.None, model.Munmap(address, 4096));
            Assert.Equal(0, model.LiveBuffers);
        }
    }

    [Fact]
    public void A_buffer_held_past_its_lock_time_is_watched_instead_and_its_release_still_found()
    {
        using ModelKernel model = Young();
        int descriptors = ModelKit.OpenDescriptorCount(model);
        int watched = model.WatchedCount;
        SafeFd buffer = model.HeapAllocOrFail("system", 4096);
        model.Drain();
        Assert.Equal(watched, model.WatchedCount); // young still

        model.YoungFor = TimeSpan.Zero; // its time is up: the next sweep watches it
        model.Drain();
        Assert.Equal(watched + 1, model.WatchedCount);
        Assert.Equal(descriptors + 1, ModelKit.OpenDescriptorCount(model)); // the buffer's, and none of the model's left for it
        Assert.Equal(1, model.LiveBuffers);

        buffer.Dispose();
        Assert.Equal(0, model.LiveBuffers); // the inode's eviction, read from the watch
        Assert.Equal(watched, model.WatchedCount);
    }

    [Fact]
    public void A_buffer_with_access_mode_neither_cannot_be_locked_and_is_watched_at_once()
    {
        using ModelKernel model = Young();
        lock (model.LockedGate)
        {
            using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
            int watched = model.WatchedCount;
            int young = model.LockedCount;
            Assert.Equal(Errno.None, model.HeapAlloc(heap, 4096, out SafeFd buffer, Fcntl.O_ACCMODE | Fcntl.O_CLOEXEC));
            Assert.Equal(Fcntl.O_ACCMODE, Interop.Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE);
            Assert.Equal(watched + 1, model.WatchedCount);
            Assert.Equal(young, model.LockedCount);

            buffer.Dispose();
            Assert.Equal(0, model.LiveBuffers);
            Assert.Equal(watched, model.WatchedCount);
        }
    }

    [Fact]
    public void Beyond_the_most_young_files_a_new_one_is_watched_at_once()
    {
        using ModelKernel model = Young();
        var buffers = new List<SafeFd>();
        try
        {
            lock (model.LockedGate)
            {
                using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
                int young = model.LockedCount;
                int watched = model.WatchedCount;
                int beyond = 100;
                for (int i = 0; i < LockedFiles.MaximumLocked - young + beyond; i++)
                {
                    Assert.Equal(Errno.None, model.HeapAlloc(heap, 4096, out SafeFd buffer));
                    buffers.Add(buffer);
                }

                Assert.Equal(LockedFiles.MaximumLocked, model.LockedCount); // so at most that many descriptors of the model's own
                Assert.Equal(watched + beyond, model.WatchedCount);

                buffers.ForEach(b => b.Dispose());
                heap.Dispose();
                Assert.Equal(0, model.LiveBuffers); // the locked ones by the sweep, the others by the watch
                Assert.Equal(watched, model.WatchedCount);
            }
        }
        finally
        {
            buffers.ForEach(b => b.Dispose());
        }
    }

    [Fact]
    public void Fdinfo_shows_a_lock_the_holder_takes_and_not_the_models()
    {
        using ModelKernel model = Young();
        lock (model.LockedGate)
        {
            using SafeFd buffer = model.HeapAllocOrFail("system", 4096);
            Assert.Equal(Errno.None, model.ReadFdInfo(buffer, out string before));
            Assert.DoesNotContain("lock:", before, StringComparison.Ordinal);
            Assert.Contains("exp_name:", before, StringComparison.Ordinal);

            var range = new flock { l_type = Fcntl.F_RDLCK, l_whence = (short)Fcntl.SEEK_SET, l_start = 0, l_len = 16 };
            Assert.Equal(Errno.None, Interop.Sys.TryFcntl(buffer, Fcntl.F_OFD_SETLK, ref range));
            Assert.Equal(Errno.None, model.ReadFdInfo(buffer, out string after));
            string[] locks = after.Split('\n').Where(line => line.StartsWith("lock:", StringComparison.Ordinal)).ToArray();
            string line = Assert.Single(locks);
            Assert.EndsWith(" 0 15", line, StringComparison.Ordinal); // fs/locks.c lock_get_status: start and end
            Assert.Equal(1, model.LiveBuffers); // the holder's lock did not take the model's away
        }
    }

    [Fact]
    public void A_young_buffer_passed_back_is_found_though_no_sweep_has_put_it_in_the_table()
    {
        using ModelKernel model = Young();
        Assert.Equal(Errno.None, Interop.Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        using (sender)
        using (receiver)
        lock (model.LockedGate)
        {
            using SafeFd buffer = model.HeapAllocOrFail("system", 4096);
            Assert.Equal(Errno.None, Interop.Sys.TrySendMessage(sender, "b"u8, [buffer], 0, out _));
            byte[] message = new byte[8];
            Assert.Equal(Errno.None, Interop.Sys.TryReceiveMessage(receiver, message, 1, 0, out ReceivedMessage received));
            using SafeFd copy = received.Fds.Single(); // a handle the model never resolved
            long lookups = model.DescriptorLookups;
            using IReleaseObserver observer = model.ObserveReleases(ReleaseSignal.CloseEvents);

            // Observing looks the buffer up (fdget) without draining first: no sweep ran since the allocation.
            Assert.Equal(Errno.None, observer.Observe(copy, () => { }, out _));
            Assert.Equal(lookups + 1, model.DescriptorLookups);
        }
    }

    [Fact]
    public void The_drainer_runs_at_its_nice_value()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        var deadline = DateTime.UtcNow + GiveUp.After;
        while (model.DrainerThreadId == 0 && DateTime.UtcNow < deadline)
        {
            Thread.Sleep(5);
        }
        Assert.NotEqual(0, model.DrainerThreadId);

        // proc(5) /proc/PID/task/TID/stat: field 19 is nice; the fields after the ")" of comm start at 3.
        string stat = File.ReadAllText($"/proc/self/task/{model.DrainerThreadId.ToString(CultureInfo.InvariantCulture)}/stat");
        string[] fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        Assert.Equal(ModelKernel.DrainerNice, int.Parse(fields[19 - 3], CultureInfo.InvariantCulture));
    }

    /// <summary>A model whose files stay young (their release learned from the lock) for the whole test, however slow the machine.</summary>
    private static ModelKernel Young()
    {
        ModelKernel model = ModelKit.Model("mainline");
        model.YoungFor = TimeSpan.FromHours(1);
        return model;
    }
}
