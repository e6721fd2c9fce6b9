using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Kernel;

/// <summary>
/// The release-detection probe on this host (a memfd stands in for a dma-buf:
/// its close is reported on this kernel). The reference-counting path needs a
/// real dma-buf's fdinfo count and is covered in the Linux 7.2 guest
/// (tests/kernel/guest/checks-mainline.sh).
/// </summary>
public sealed class ReleaseWatcherTests
{
    [Fact]
    public void The_probe_sees_a_reported_close_and_closes_the_probe_buffer()
    {
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("probe", Memfd.MFD_CLOEXEC, out SafeFd buffer));

        Assert.True(ReleaseWatcher.CloseEventsArrive(buffer));
        Assert.True(buffer.IsClosed);
    }

    [Fact]
    public void A_reference_counting_watcher_polls_and_holds_one_duplicate_per_buffer()
    {
        using var watcher = ReleaseWatcher.ReferenceCounting();
        Assert.Equal(200, watcher.PollIntervalMilliseconds);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("held", Memfd.MFD_CLOEXEC, out SafeFd buffer));
        int before = Directory.GetFiles("/proc/self/fd").Length;
        using (buffer)
        {
            Assert.Equal(Errno.None, watcher.TryWatch(buffer, () => { }));
        }
        Assert.Equal(1, watcher.Watched);
        Assert.Equal(before, Directory.GetFiles("/proc/self/fd").Length); // the duplicate replaced the closed original
        using var events = new ReleaseWatcher(closeMeansRelease: true);
        Assert.Null(events.PollIntervalMilliseconds);
    }
}
