using System.Collections.Concurrent;
using System.Diagnostics;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model.Files;

namespace Rstmem.Model;

/// <summary>
/// The model's <see cref="IReleaseObserver"/>: a buffer is released when the
/// model frees its memory (its last descriptor anywhere closed and no TEE
/// registration left), which the model learns from its own lock or watch on
/// the buffer's memfd (<see cref="Files.LockedFiles"/>). Nothing more is watched per buffer, and nothing is
/// allocated for it: the buffer keeps this observer, the sink and the token
/// in fields of its own (<see cref="ModelDmaBuf.WhenFreed"/>).
/// </summary>
internal sealed class ModelReleaseObserver : IReleaseObserver
{
    /// <summary>The poll interval of reference counting, which the model imitates when asked to.</summary>
    private const int ReferenceCountPollMilliseconds = 200;

    private readonly ModelKernel model;
    private readonly bool wakes;
    private readonly ConcurrentQueue<(IReleaseSink Sink, long Token, long At)> released = new();
    private readonly SafeFd wakeReader;
    private readonly SafeFd wakeWriter;
    private readonly byte[] drained = new byte[64];
    private int observed;
    private long nextHandle;
    /// <summary>1 while a wake-up byte is in the socket or about to be: at most one is there, and the socket is read only then.</summary>
    private int wakePending;
    /// <summary>1 when a release was queued during a drain of the model, whose end wakes the owner (<see cref="WakeIfFound"/>).</summary>
    private int foundInDrain;

    /// <summary>Set while this thread runs <see cref="Drain"/>: the releases it finds are handled on the spot and need no wake-up.</summary>
    [ThreadStatic]
    private static ModelReleaseObserver? draining;

    public ModelReleaseObserver(ModelKernel model, ReleaseSignal signal)
    {
        this.model = model;
        wakes = signal switch
        {
            ReleaseSignal.CloseEvents => true,
            ReleaseSignal.ReferenceCount => false,
            _ => throw new ArgumentOutOfRangeException(nameof(signal), signal, "expected CloseEvents or ReferenceCount"),
        };
        Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_STREAM | Sockets.SOCK_NONBLOCK, 0, out wakeReader, out wakeWriter)
            .ThrowIfError("socketpair");
        model.AddObserver(this);
    }

    public SafeFd Events => wakeReader;

    public int? PollIntervalMilliseconds => wakes ? null : ReferenceCountPollMilliseconds;

    public int Observed => Volatile.Read(ref observed);

    public Errno Observe(SafeFd buffer, IReleaseSink sink, long token, out long handle)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentNullException.ThrowIfNull(sink);
        handle = -1;
        if (model.FindDmaBuf(buffer) is not { } dmaBuf)
        {
            return Errno.EINVAL; // not a dma-buf of this model
        }
        if (!dmaBuf.WhenFreed(this, sink, token))
        {
            return Errno.EBADF; // already freed: the caller holds no reference
        }
        Interlocked.Increment(ref observed);
        handle = Interlocked.Increment(ref nextHandle);
        return Errno.None;
    }

    public Errno Observe(SafeFd buffer, Action onRelease, out long handle) =>
        Observe(buffer, new ReleaseCallback(onRelease), 0, out handle);

    /// <summary>From the model's release handling, on whichever thread drained its watch.</summary>
    internal void Released(IReleaseSink sink, long token)
    {
        released.Enqueue((sink, token, Stopwatch.GetTimestamp())); // the model knows the moment
        if (ModelKernel.Draining)
        {
            // Found by a drain of the model (its drainer's sweep, another caller's): the owner
            // is woken when that drain ends, not while it still holds what the owner's Drain needs.
            Volatile.Write(ref foundInDrain, 1);
            return;
        }
        Wake();
    }

    /// <summary>From the end of a drain of the model: wakes the owner if that drain found releases for it.</summary>
    internal void WakeIfFound()
    {
        if (Volatile.Read(ref foundInDrain) != 0 && Interlocked.Exchange(ref foundInDrain, 0) != 0)
        {
            Wake();
        }
    }

    /// <summary>
    /// Found by this observer's own Drain: handled before it returns, no
    /// wake-up needed. Found by anyone else (the model's drainer, another call
    /// into the model): wake the owner.
    /// </summary>
    private void Wake()
    {
        if (wakes && draining != this && Interlocked.Exchange(ref wakePending, 1) == 0)
        {
            Sys.TryWrite(wakeWriter, [1], out _);
        }
    }

    /// <summary>
    /// Handles the closes that have happened. With close events their
    /// callbacks run now; with reference counting they wait for the next
    /// <see cref="Sweep"/> or <see cref="Recheck"/>, as on a kernel that reports nothing.
    /// </summary>
    public int Drain()
    {
        // The flag is cleared only once its byte is read: a writer between setting it and
        // writing leaves it set, and its byte's wake-up comes back here. Whatever a writer
        // queued before it saw the flag set is run below.
        if (Volatile.Read(ref wakePending) != 0 && Sys.TryRead(wakeReader, drained, out int length) == Errno.None && length > 0)
        {
            Volatile.Write(ref wakePending, 0);
        }
        ModelReleaseObserver? outer = draining;
        draining = this;
        try
        {
            model.Drain(); // closes that have happened are handled, on this thread if nobody else got there
        }
        finally
        {
            draining = outer;
        }
        return wakes ? RunReleased() : 0;
    }

    /// <summary>With close events, the releases the model found on any thread run now; with reference counting they wait for the sweep.</summary>
    public int HandleFound() => wakes ? RunReleased() : 0;

    public int Sweep()
    {
        if (wakes)
        {
            return 0;
        }
        model.Drain();
        return RunReleased();
    }

    public int Recheck(ReadOnlySpan<long> buffers)
    {
        model.Drain();
        return RunReleased();
    }

    private int RunReleased()
    {
        int count = 0;
        while (released.TryDequeue(out (IReleaseSink Sink, long Token, long At) release))
        {
            Interlocked.Decrement(ref observed);
            release.Sink.Released(release.Token, release.At);
            count++;
        }
        return count;
    }

    public void Dispose()
    {
        model.RemoveObserver(this);
        wakeReader.Dispose();
        wakeWriter.Dispose();
    }
}
