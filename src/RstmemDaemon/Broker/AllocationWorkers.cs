using System.Collections.Concurrent;
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

    /// <summary>On the heap's worker: the kernel's allocation itself.</summary>
    public void Run()
    {
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
    }
}

/// <summary>
/// Kernel allocations off the loop's thread: one worker thread per heap,
/// taking that heap's jobs in order, so a slow heap (a CMA allocation, an
/// OP-TEE lend) delays only the requests for it. A finished job goes back to
/// the loop through <see cref="TryTakeCompleted"/>, and the loop is woken by
/// a byte on <paramref name="wake"/>. The ledger and the replies stay on the
/// loop's thread.
/// </summary>
internal sealed class AllocationWorkers(SafeFd wake) : IDisposable
{
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

    private readonly Dictionary<HeapProvider, Worker> workers = new(ReferenceEqualityComparer.Instance);
    private readonly ConcurrentQueue<AllocationJob> completed = new();
    private readonly Stack<AllocationJob> spare = new();

    /// <summary>Jobs posted and not yet taken back by the loop.</summary>
    public int InFlight { get; private set; }

    /// <summary>A job from the pool (loop thread).</summary>
    public AllocationJob Rent() => spare.Count > 0 ? spare.Pop() : new AllocationJob();

    /// <summary>Hands <paramref name="job"/> to its heap's worker (loop thread).</summary>
    public void Post(AllocationJob job)
    {
        if (!workers.TryGetValue(job.Heap, out Worker? worker))
        {
            worker = new Worker(this, job.Heap.Name);
            workers[job.Heap] = worker;
        }
        InFlight++;
        worker.Post(job);
    }

    /// <summary>A finished job, if any (loop thread); give it back with <see cref="Return"/>.</summary>
    public bool TryTakeCompleted(out AllocationJob job)
    {
        if (!completed.TryDequeue(out job!))
        {
            return false;
        }
        InFlight--;
        return true;
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
        foreach (Worker worker in workers.Values)
        {
            worker.Dispose();
        }
        workers.Clear();
        while (completed.TryDequeue(out AllocationJob? job))
        {
            job.Buffer?.Dispose();
        }
    }
}
