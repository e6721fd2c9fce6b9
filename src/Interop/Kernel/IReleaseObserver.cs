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

/// <summary>Hears the releases of the buffers observed with it, by the token each was observed with.</summary>
public interface IReleaseSink
{
    /// <summary>
    /// The buffer observed with <paramref name="token"/> has lost its last
    /// reference anywhere, at <paramref name="notBefore"/> or later (a
    /// <see cref="System.Diagnostics.Stopwatch.GetTimestamp"/> value: when the
    /// observer last saw it held, or the moment of the release when it knows
    /// it), so now minus it bounds the release's latency from above.
    /// </summary>
    void Released(long token, long notBefore);
}

/// <summary>A callback as a sink (its token is ignored).</summary>
public sealed class ReleaseCallback(Action onRelease) : IReleaseSink
{
    private readonly Action onRelease = onRelease ?? throw new ArgumentNullException(nameof(onRelease));

    public void Released(long token, long notBefore) => onRelease();
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

    /// <summary>When not null, <see cref="Sweep"/> must run this often: nothing wakes the caller for those releases.</summary>
    int? PollIntervalMilliseconds { get; }

    /// <summary>Buffers observed and not yet released.</summary>
    int Observed { get; }

    /// <summary>
    /// Starts observing <paramref name="buffer"/> (still open here: call before
    /// giving it away); <paramref name="sink"/> hears <paramref name="token"/>
    /// once, from <see cref="Drain"/>, <see cref="Sweep"/> or <see cref="Recheck"/>,
    /// after its last reference anywhere is gone. One sink serves every buffer,
    /// so observing allocates no delegate per buffer. <paramref name="handle"/>
    /// names the buffer to <see cref="Recheck"/>.
    /// </summary>
    Errno Observe(SafeFd buffer, IReleaseSink sink, long token, out long handle);

    /// <summary>As the sink overload, with a callback of its own (one delegate per buffer: for tests and probes).</summary>
    Errno Observe(SafeFd buffer, Action onRelease, out long handle);

    /// <summary>
    /// Runs the callbacks of the releases the kernel has reported (events that
    /// have arrived): no work per live buffer. On an event kernel a release
    /// that completed before this call (a close in this or another process
    /// that has returned) is always handled by it. Returns how many were handled.
    /// </summary>
    int Drain();

    /// <summary>
    /// Runs the callbacks of releases already found but not yet run (by a
    /// kernel's own drain: the model's drainer thread, or a model allocation
    /// that needed the memory they held), without a system call: the part of
    /// <see cref="Drain"/> that needs none. The broker calls it after
    /// recording each new buffer, so a release found meanwhile is handled
    /// then, not after the wake-up's turn of the loop. Returns
    /// how many were handled; an observer that runs every release it finds at
    /// once has none waiting.
    /// </summary>
    int HandleFound() => 0;

    /// <summary>
    /// The timer's turn (every <see cref="PollIntervalMilliseconds"/>): finds
    /// releases nothing reported, looking at a bounded number of buffers per
    /// call, round robin, so every buffer is looked at within a few turns.
    /// </summary>
    int Sweep();

    /// <summary>Looks at these buffers now (for example before refusing a quota), whatever the sweep's position.</summary>
    int Recheck(ReadOnlySpan<long> buffers);
}
