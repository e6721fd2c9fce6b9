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
}
