using System.Collections.Concurrent;
using System.Diagnostics;
using Rstmem.Daemon.Backends;
using Rstmem.Interop;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// One ALLOC whose kernel call runs off the loop's thread: what the loop
/// decided (client, heap, charged size, name), then what the kernel said.
/// Reused from a pool on the loop's side, so an ALLOC allocates no job.
/// </summary>
internal sealed class AllocationJob
{
    public Connection Client { get; set; } = null!;

    public Protocol.rstmem_header Header { get; set; }

    public HeapProvider Heap { get; set; } = null!;

    public long Size { get; set; }

    /// <summary>The buffer's name in UTF-8 and its NUL.</summary>
    public byte[] Name { get; } = new byte[RSTMEM_BUFFER_NAME_LEN];

    public int NameLength { get; set; }

    public Errno Result { get; set; }

    public SafeFd? Buffer { get; set; }

    public long Actual { get; set; }

    /// <summary>How long the kernel's call took (Stopwatch ticks).</summary>
    public long ElapsedTicks { get; private set; }

    /// <summary>On the heap's worker or, for a heap that has been quick, the loop's thread: the kernel's allocation itself.</summary>
    public void Run()
    {
        long start = Stopwatch.GetTimestamp();
        try
        {
            Result = Heap.Allocate(Size, Name.AsSpan(0, NameLength + 1), out SafeFd buffer, out long actual);
            Buffer = Result == Errno.None ? buffer : null;
            Actual = actual;
        }
        catch (ObjectDisposedException)
        {
            Result = Errno.ENODEV; // the heap went away (a node removed, the daemon stopping) under the call
            Buffer = null;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Result = Errno.EIO; // a failure the kernel surface did not foresee: this request fails, the worker lives on
            Buffer = null;
        }
        ElapsedTicks = Stopwatch.GetTimestamp() - start;
    }
}

/// <summary>
/// Whether one heap's allocations may run on the loop's thread. Handing an
/// allocation to a worker and its result back costs two thread wake-ups (the
/// larger part of a quick ALLOC's round trip); a heap whose allocations are
/// quick does not need it. So a heap starts on its worker and moves to the
/// loop's thread after <see cref="Needed"/> allocations in a row each within
/// the limit (<see cref="FirstStreak"/> at first). There, <see cref="SlowInARow"/>
/// allocations over the limit in a row send it back: a single one is the
/// machine's doing as often as the heap's (a preempted thread, a collection),
/// while a heap that turned slow stalls the loop twice and then no more. A heap
/// sent back before it had settled (<see cref="SettledRun"/> allocations on the
/// loop) needs twice the streak to return, up to <see cref="MaximumStreak"/>,
/// so one that flaps stalls the loop ever more rarely; one sent back after
/// settling starts again from <see cref="FirstStreak"/>. State of the loop's
/// thread only.
/// </summary>
internal sealed class InlinePlacement
{
    public const int FirstStreak = 16;
    public const int MaximumStreak = 4096;
    public const int SlowInARow = 2;
    public const int SettledRun = 1024;

    private int streak;
    private int slowInARow;
    private int inlineRun;

    /// <summary>Whether the next allocation runs on the loop's thread.</summary>
    public bool Inline { get; private set; }

    /// <summary>Quick allocations in a row needed before the heap moves to the loop's thread.</summary>
    public int Needed { get; private set; } = FirstStreak;

    /// <summary>An allocation finished (on the loop's thread when <see cref="Inline"/>): <paramref name="quick"/> if within the limit.</summary>
    public void Ran(bool quick)
    {
        if (Inline)
        {
            if (quick)
            {
                slowInARow = 0;
                inlineRun++;
            }
            else if (++slowInARow >= SlowInARow)
            {
                Needed = inlineRun >= SettledRun ? FirstStreak : Math.Min(Needed * 2, MaximumStreak);
                Inline = false;
                streak = 0;
            }
            return;
        }
        if (!quick)
        {
            streak = 0;
        }
        else if (++streak >= Needed)
        {
            Inline = true;
            slowInARow = 0;
            inlineRun = 0;
        }
    }
}

/// <summary>
/// Kernel allocations off the loop's thread: one worker thread per heap,
/// taking that heap's jobs in order, so a slow heap (a CMA allocation, an
/// OP-TEE lend) delays only the requests for it. A finished job goes back to
/// the loop through <see cref="TryTakeCompleted"/>, and the loop is woken by
/// a byte on <paramref name="wake"/>. The ledger and the replies stay on the
/// loop's thread. A heap whose allocations have been quick runs them on the
/// loop's thread instead (<see cref="TryRunInline"/>, <see cref="InlinePlacement"/>),
/// never while it has a job on its worker.
/// </summary>
internal sealed class AllocationWorkers(SafeFd wake) : IDisposable
{
    /// <summary>An allocation that takes longer than this is not quick (1 ms).</summary>
    public static readonly long DefaultInlineLimitTicks = Stopwatch.Frequency / 1000;

    /// <summary>A heap's placement, its worker once it has one, and its jobs on that worker.</summary>
    private sealed class Lane
    {
        public readonly InlinePlacement Placement = new();
        public Worker? Worker;
        public int InFlight;
    }

    private sealed class Worker : IDisposable
    {
        private readonly Queue<AllocationJob> jobs = new();
        private readonly object gate = new(); // Monitor.Wait and Pulse need a monitor, not a Lock
        private readonly Thread thread;
        private readonly AllocationWorkers owner;
        private bool stopping;

        public Worker(AllocationWorkers owner, string heap)
        {
            this.owner = owner;
            thread = new Thread(Run) { IsBackground = true, Name = $"alloc {heap}" };
            thread.Start();
        }

        public void Post(AllocationJob job)
        {
            lock (gate)
            {
                jobs.Enqueue(job);
                Monitor.Pulse(gate);
            }
        }

        private void Run()
        {
            while (true)
            {
                AllocationJob job;
                lock (gate)
                {
                    while (jobs.Count == 0 && !stopping)
                    {
                        Monitor.Wait(gate);
                    }
                    if (jobs.Count == 0)
                    {
                        return;
                    }
                    job = jobs.Dequeue();
                }
                job.Run();
                owner.Complete(job);
            }
        }

        public void Dispose()
        {
            lock (gate)
            {
                stopping = true;
                Monitor.Pulse(gate);
            }
            thread.Join();
        }
    }

    private readonly Dictionary<HeapProvider, Lane> lanes = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentQueue<AllocationJob> completed = new();
    private readonly Stack<AllocationJob> spare = new();

    /// <summary>Jobs posted and not yet taken back by the loop.</summary>
    public int InFlight { get; private set; }

    private long inlineLimitTicks = DefaultInlineLimitTicks;

    /// <summary>Above this (Stopwatch ticks) an allocation is not quick; tests set it from their own thread.</summary>
    public long InlineLimitTicks
    {
        get => Volatile.Read(ref inlineLimitTicks);
        set => Volatile.Write(ref inlineLimitTicks, value);
    }

    private long ranInline;

    /// <summary>Allocations run on the loop's thread so far (read from any thread).</summary>
    public long RanInline => Interlocked.Read(ref ranInline);

    /// <summary>A job from the pool (loop thread).</summary>
    public AllocationJob Rent() => spare.Count > 0 ? spare.Pop() : new AllocationJob();

    /// <summary>
    /// Runs <paramref name="job"/> here, on the loop's thread, when its heap
    /// has been quick and has nothing on its worker; false leaves it to
    /// <see cref="Post"/>.
    /// </summary>
    public bool TryRunInline(AllocationJob job)
    {
        Lane lane = LaneOf(job.Heap);
        if (!lane.Placement.Inline || lane.InFlight > 0)
        {
            return false;
        }
        job.Run();
        Interlocked.Increment(ref ranInline);
        lane.Placement.Ran(job.ElapsedTicks <= InlineLimitTicks);
        return true;
    }

    /// <summary>Hands <paramref name="job"/> to its heap's worker (loop thread).</summary>
    public void Post(AllocationJob job)
    {
        Lane lane = LaneOf(job.Heap);
        lane.Worker ??= new Worker(this, job.Heap.Name);
        lane.InFlight++;
        InFlight++;
        lane.Worker.Post(job);
    }

    /// <summary>A finished job, if any (loop thread); give it back with <see cref="Return"/>.</summary>
    public bool TryTakeCompleted(out AllocationJob job)
    {
        if (!completed.TryDequeue(out job!))
        {
            return false;
        }
        InFlight--;
        Lane lane = LaneOf(job.Heap);
        lane.InFlight--;
        lane.Placement.Ran(job.ElapsedTicks <= InlineLimitTicks);
        return true;
    }

    private Lane LaneOf(HeapProvider heap)
    {
        if (!lanes.TryGetValue(heap, out Lane? lane))
        {
            lane = new Lane();
            lanes[heap] = lane;
        }
        return lane;
    }

    public void Return(AllocationJob job)
    {
        job.Client = null!;
        job.Heap = null!;
        job.Buffer = null;
        spare.Push(job);
    }

    private void Complete(AllocationJob job)
    {
        completed.Enqueue(job);
        Sys.TryWrite(wake, [1], out _); // EAGAIN: a wake-up is already pending
    }

    /// <summary>Stops the workers after their queued jobs; buffers of jobs nobody took back are closed.</summary>
    public void Dispose()
    {
        foreach (Lane lane in lanes.Values)
        {
            lane.Worker?.Dispose();
        }
        lanes.Clear();
        while (completed.TryDequeue(out AllocationJob? job))
        {
            job.Buffer?.Dispose();
        }
    }
}
