namespace Rstmem.Interop.Kernel;

/// <summary>How a kernel reveals that the last reference to a dma-buf is gone.</summary>
public enum ReleaseSignal
{
    /// <summary>
    /// An inotify watch reports the close of the buffer's one open file
    /// (fs/notify: fsnotify_close on __fput). Linux 6.x; the model's own
    /// files report their release the same way.
    /// </summary>
    CloseEvents,

    /// <summary>
    /// No event arrives (Linux 7.x sends no fsnotify events for pseudo files
    /// such as dma-bufs), so the observer keeps one duplicate of each buffer
    /// and reads its fdinfo <c>count</c> (drivers/dma-buf/dma-buf.c
    /// dma_buf_show_fdinfo: file_count) until only the duplicate is left.
    /// </summary>
    ReferenceCount,
}

/// <summary>
/// Reports the last close of buffers anywhere — in this process or any
/// process a buffer was passed to. Made by <see cref="IKernel.ObserveReleases"/>,
/// used from one thread (the broker's loop): callbacks run on that thread,
/// from <see cref="Drain"/>.
/// </summary>
public interface IReleaseObserver : IDisposable
{
    /// <summary>Readable when releases are waiting to be handled: put it in the poll set and call <see cref="Drain"/>.</summary>
    SafeFd Events { get; }

    /// <summary>When not null, <see cref="Drain"/> must also run this often: nothing wakes the caller for some releases.</summary>
    int? PollIntervalMilliseconds { get; }

    /// <summary>Buffers observed and not yet released.</summary>
    int Observed { get; }

    /// <summary>
    /// Starts observing <paramref name="buffer"/> (still open here: call before
    /// giving it away); <paramref name="onRelease"/> runs once, from
    /// <see cref="Drain"/>, after its last reference anywhere is gone.
    /// </summary>
    Errno Observe(SafeFd buffer, Action onRelease);

    /// <summary>
    /// Runs the callbacks of every release that has happened. A release that
    /// completed before this call (a close in this or another process that
    /// has returned) is always handled by it. Returns how many were handled.
    /// </summary>
    int Drain();
}
