using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Unicode;
using Rstmem.Interop.Kernel;
using Rstmem.Model.Files;
using Rstmem.Model.Pools;
using Rstmem.Interop.Uapi;
using Rstmem.Interop;

namespace Rstmem.Model;

/// <summary>
/// The reference kernel model: TEE devices and DMA heaps of one kernel
/// generation, in-process, answering the <see cref="IKernel"/> surface as the
/// real kernel does (docs/kernel-semantics.md). Buffers are sealed memfds —
/// real descriptors that can be passed to other processes — and their pool
/// memory is returned when the last reference anywhere is closed, learned from
/// a lock on the description handed out while a file is young and from inotify
/// once it has been held a while (<see cref="LockedFiles"/>). A descriptor the model did not create is passed to the real
/// system call, as a real kernel would treat it.
/// </summary>
public sealed class ModelKernel : IKernel, IPoolStatistics, IDisposable
{
    public const string TeeName = "tee0";
    public const string TeePrivName = "teepriv0";

    private readonly FileTable files = new();
    private readonly ReleaseWatcher releases = ReleaseWatcher.ForReopenableFiles();
    private readonly LockedFiles locked;
    /// <summary><see cref="FileReleased"/>, made a delegate once: a sweep allocates nothing.</summary>
    private readonly Action<ModelFile> fileReleased;
    private readonly Dictionary<string, ModelHeap> heaps = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ModelHeap> useCaseHeaps = new(StringComparer.Ordinal);
    private readonly Dictionary<string, FaultPlan> faults = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Action> latencies = new(StringComparer.Ordinal);
    private readonly Lock gate = new();
    /// <summary>The observers made by <see cref="ObserveReleases"/> and not disposed; guarded by <see cref="gate"/>.</summary>
    private readonly List<ModelReleaseObserver> observers = [];
    private readonly ModelTeeDevice tee = new(TeeName, privileged: false);
    private readonly ModelTeeDevice teePriv = new(TeePrivName, privileged: true);
    private readonly Thread drainer;
    private readonly SafeFd wakeWriter;
    private readonly SafeFd wakeReader;
    private long nextBufferId;
    private long liveBuffers;
    private long descriptorLookups;
    private volatile bool disposed;
    private Exception? drainFailure;

    public ModelKernel(ModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
        Generation = options.ValidatedGeneration();
        PageSize = (long)Page.Size;
        CreateHeaps();
        locked = new LockedFiles(releases, files);
        fileReleased = FileReleased;

        Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_STREAM | Sockets.SOCK_NONBLOCK, 0, out wakeReader, out wakeWriter)
            .ThrowIfError("socketpair");
        // Hands releases on as they happen (within ReleaseBatchMilliseconds), off the
        // allocating threads, and keeps the inotify queue short, so none is lost to IN_Q_OVERFLOW.
        drainer = new Thread(DrainLoop) { IsBackground = true, Name = "rstmem-model-releases" };
        drainer.Start();
    }

    public ModelOptions Options { get; }

    /// <summary>Held while young files are swept (<see cref="LockedFiles.Gate"/>): a file's own description does not move under it.</summary>
    internal Lock LockedGate => locked.Gate;

    /// <summary>Files the model's watch follows (held past their lock's time, or never lockable).</summary>
    internal int WatchedCount => releases.Observed;

    /// <summary>How long a held file's release is learned from its lock before the model watches it (tests set it; else <see cref="LockedFiles.PromoteAfterMilliseconds"/>).</summary>
    internal TimeSpan YoungFor
    {
        get => TimeSpan.FromSeconds((double)locked.PromoteAfterTicks / System.Diagnostics.Stopwatch.Frequency);
        set => locked.PromoteAfterTicks = (long)(value.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
    }

    /// <summary>Files whose release is still learned from their lock (<see cref="LockedFiles"/>), each with a description of the model's own.</summary>
    internal int LockedCount => locked.Count;

    /// <summary>Guards the state of every dma-buf of this model (references, name, observers): one lock, none per buffer.</summary>
    internal Lock BufferGate { get; } = new();

    public KernelGeneration Generation { get; }

    public long PageSize { get; }

    public string Description => $"reference kernel model (generation {Generation.Name()})";

    /// <summary>The model's files report their release through its own watch: no probe needed.</summary>
    public ReleaseSignal ProbeReleaseSignal(SafeFd sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        sample.Dispose();
        return ReleaseSignal.CloseEvents;
    }

    /// <summary>
    /// Observes the model's dma-bufs through the model's own release tracking
    /// (a lock while young, then a watch: <see cref="LockedFiles"/>), shared
    /// with every observer. With <see cref="ReleaseSignal.ReferenceCount"/>
    /// releases wait for the observer's next poll, as they would on a kernel
    /// that sends no events; with <see cref="ReleaseSignal.CloseEvents"/> they wake it.
    /// </summary>
    public IReleaseObserver ObserveReleases(ReleaseSignal signal) => new ModelReleaseObserver(this, signal);

    PoolCounters? IPoolStatistics.TryGetCounters(string heapOrUseCase)
    {
        Drain();
        return HeapOrUseCase(heapOrUseCase)?.Pool.Counters;
    }

    bool IPoolStatistics.TryGetTotalBytes(string heapOrUseCase, out long totalBytes)
    {
        MemoryPool? pool = HeapOrUseCase(heapOrUseCase)?.Pool;
        if (pool is null)
        {
            totalBytes = 0;
            return false;
        }
        if (pool.TotalFollowsFrees)
        {
            Drain(); // a dynamic pool's chunk goes back with the last buffer freed, maybe by a close that has happened
        }
        totalBytes = pool.TotalBytes;
        return true;
    }

    /// <summary>Buffers exported and not yet released (dma-bufs only).</summary>
    public long LiveBuffers
    {
        get
        {
            Drain();
            return Interlocked.Read(ref liveBuffers);
        }
    }

    /// <summary>The descriptor this thread's last ioctl installed, and its file, for <see cref="AdoptInstalled"/>.</summary>
    [ThreadStatic]
    private static (ModelKernel? Kernel, int Fd, ModelFile? File) installed;

    /// <summary>Descriptors looked up by their identity since start (a statx each); a handle the model resolved before costs none.</summary>
    internal long DescriptorLookups => Interlocked.Read(ref descriptorLookups);

    /// <summary>The inotify queue overflowed: some releases may have been missed (never expected).</summary>
    public long ReleaseEventsLost => releases.Overflows;

    internal bool HasRstmemPools => useCaseHeaps.Count > 0;

    // ---- the kernel surface ----------------------------------------------

    public Errno Open(string path, int flags, out SafeFd fd)
    {
        ArgumentNullException.ThrowIfNull(path);
        Drain();
        fd = SafeFd.Invalid;
        if (TeeDeviceAt(path) is { } device)
        {
            if (!device.Bound)
            {
                return Errno.ENOENT;
            }
            // optee_open: the supplicant device may be opened once.
            if (device.Privileged && Interlocked.CompareExchange(ref device.OpenCount, 1, 0) != 0)
            {
                return Errno.EBUSY;
            }
            var context = new TeeContextFile(this, device);
            Errno errno = CreateFile(MemfdName(stackalloc byte[MemfdNameMax], $"model:{device.Name}"), 0, flags & Fcntl.O_ACCMODE, closeOnExec: true, sealWrite: false, context, out fd);
            if (errno != Errno.None && device.Privileged)
            {
                Interlocked.Exchange(ref device.OpenCount, 0);
            }
            fd.Resolved = errno == Errno.None ? context : null;
            return errno;
        }
        if (path.StartsWith(DevicePaths.HeapDirectory + "/", StringComparison.Ordinal) && HeapAt(path[(DevicePaths.HeapDirectory.Length + 1)..]) is { Removed: false } heap)
        {
            var node = new HeapFile(this, heap);
            Errno errno = CreateFile(MemfdName(stackalloc byte[MemfdNameMax], $"model:dma_heap:{heap.Name}"), 0, flags & Fcntl.O_ACCMODE, closeOnExec: true, sealWrite: false, node, out fd);
            fd.Resolved = errno == Errno.None ? node : null;
            return errno;
        }
        return Errno.ENOENT;
    }

    public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        installed = default; // only what this call installs may be adopted after it
        Errno errno = Lookup(fd, out ModelFile? file);
        if (file is null)
        {
            result = -1;
            return errno != Errno.None ? errno : Sys.TryIoctl(fd, request, argument, out result);
        }
        return file.Ioctl(fd, request, argument, out result);
    }

    public SafeFd AdoptInstalled(int fd)
    {
        (ModelKernel? kernel, int number, ModelFile? file) = installed;
        installed = default;
        var handle = SafeFd.DangerousAdopt(fd);
        if (ReferenceEquals(kernel, this) && number == fd)
        {
            // Installed by this thread's last ioctl and not closed since (the caller
            // adopts it before anything else): the number still names that file.
            handle.Resolved = file;
        }
        return handle;
    }

    public Errno LSeek(SafeFd fd, long offset, int whence, out long position)
    {
        Errno errno = Lookup(fd, out ModelFile? file);
        if (file is null)
        {
            position = -1;
            return errno != Errno.None ? errno : Sys.TryLSeek(fd, offset, whence, out position);
        }
        return file.LSeek(fd, offset, whence, out position);
    }

    public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        Errno errno = Lookup(fd, out ModelFile? file);
        if (file is null)
        {
            address = 0;
            return errno != Errno.None ? errno : Sys.TryMmap(fd, length, prot, flags, offset, out address);
        }
        return file.Mmap(fd, length, prot, flags, offset, out address);
    }

    public Errno Munmap(nint address, nuint length) => Sys.TryMunmap(address, length);

    public Errno ReadFdInfo(SafeFd fd, out string fdinfo)
    {
        // A dma-buf's count includes the TEE registrations holding it: closed ones are dropped first.
        Drain();
        Errno errno = LinuxKernel.Instance.ReadFdInfo(fd, out string generic);
        fdinfo = generic;
        if (errno != Errno.None || Lookup(fd, out ModelFile? file) != Errno.None || file is null
            || Sys.TryGetIdentity(fd, out FileIdentity shown) != Errno.None)
        {
            return errno;
        }
        var lines = new List<string>();
        foreach (string line in generic.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith("lock:", StringComparison.Ordinal) && line.EndsWith(ModelLockLine, StringComparison.Ordinal))
            {
                continue; // the model's own lock (LockedFiles), which a dma-buf does not carry
            }
            if (line.StartsWith("flags:", StringComparison.Ordinal))
            {
                int flags = Convert.ToInt32(line["flags:".Length..].Trim(), 8);
                lines.Add("flags:\t" + Convert.ToString(flags & file.FdInfoFlagsMask, 8).PadLeft(8, '0'));
            }
            else
            {
                lines.Add(line);
            }
        }
        lines.AddRange(file.FdInfoLines(shown));
        fdinfo = string.Join('\n', lines) + "\n";
        return Errno.None;
    }

    /// <summary>How fdinfo's lock line ends for the model's lock: its start, and "EOF" for an end at OFFSET_MAX (fs/locks.c lock_get_status).</summary>
    private static readonly string ModelLockLine = " " + LockedFiles.LockStart.ToString(CultureInfo.InvariantCulture) + " EOF";

    public IReadOnlyList<string> ListDirectory(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        string directory = path.TrimEnd('/');
        lock (gate)
        {
            if (directory == DevicePaths.HeapDirectory)
            {
                return heaps.Values.Where(h => !h.Removed).Select(h => h.Name).Order(StringComparer.Ordinal).ToList();
            }
            if (directory == DevicePaths.DeviceDirectory)
            {
                var names = new List<string>();
                if (heaps.Values.Any(h => !h.Removed))
                {
                    names.Add("dma_heap");
                }
                names.AddRange(new[] { tee, teePriv }.Where(d => d.Bound).Select(d => d.Name));
                return names.Order(StringComparer.Ordinal).ToList();
            }
        }
        return [];
    }

    // ---- model controls: counters and fault injection --------------------

    /// <summary>Every pool's counters, after handling releases that have happened.</summary>
    public IReadOnlyList<PoolCounters> PoolCounters()
    {
        Drain();
        lock (gate)
        {
            return heaps.Values.Concat(useCaseHeaps.Values).Select(h => h.Pool).Distinct().Select(p => p.Counters).ToList();
        }
    }

    /// <summary>One pool's counters, by heap name or use case.</summary>
    public PoolCounters PoolCounters(string heapOrUseCase)
    {
        Drain();
        return (HeapOrUseCase(heapOrUseCase) ?? throw UnknownHeap(heapOrUseCase)).Pool.Counters;
    }

    /// <summary>The names of the heaps (by node name) and, in v4, the use cases that have a pool.</summary>
    public IReadOnlyList<string> PoolNames()
    {
        lock (gate)
        {
            return heaps.Keys.Concat(useCaseHeaps.Keys).Order(StringComparer.Ordinal).ToList();
        }
    }

    /// <summary>Makes the next <paramref name="count"/> allocations from a heap (or v4 use case) fail with <paramref name="errno"/>.</summary>
    public void InjectFailures(string heapOrUseCase, int count, Errno errno)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ModelHeap heap = HeapOrUseCase(heapOrUseCase) ?? throw UnknownHeap(heapOrUseCase);
        lock (gate)
        {
            faults[heap.Pool.Name] = new FaultPlan(count, errno);
        }
    }

    /// <summary>
    /// A latency fault: every allocation from a heap (or v4 use case) first
    /// runs <paramref name="wait"/> on the allocating thread, outside the
    /// model's locks (a CMA allocation or an OP-TEE lend that takes its
    /// time). A test passes a wait on a gate it opens; null removes the fault.
    /// </summary>
    public void InjectLatency(string heapOrUseCase, Action? wait)
    {
        ModelHeap heap = HeapOrUseCase(heapOrUseCase) ?? throw UnknownHeap(heapOrUseCase);
        lock (gate)
        {
            if (wait is null)
            {
                latencies.Remove(heap.Pool.Name);
            }
            else
            {
                latencies[heap.Pool.Name] = wait;
            }
        }
    }

    /// <summary>A latency fault of <paramref name="delay"/> per allocation (see <see cref="InjectLatency(string, Action?)"/>).</summary>
    public void InjectLatency(string heapOrUseCase, TimeSpan delay)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(delay, TimeSpan.Zero);
        InjectLatency(heapOrUseCase, () => Thread.Sleep(delay));
    }

    /// <summary>
    /// Unbinds the TEE backend (mainline tee_device_unregister after its last
    /// buffer): /dev/tee0 and /dev/teepriv0 disappear, the TEE heap nodes
    /// stay, and allocations from them give EINVAL. Existing buffers stay valid.
    /// </summary>
    public void UnbindTee()
    {
        lock (gate)
        {
            tee.Bound = false;
            teePriv.Bound = false;
        }
    }

    /// <summary>Removes a heap node: open gives ENOENT and it leaves the listing; open descriptors keep working.</summary>
    public void RemoveHeap(string name)
    {
        lock (gate)
        {
            (heaps.GetValueOrDefault(name) ?? throw UnknownHeap(name)).Removed = true;
        }
    }

    /// <summary>Handles every release that has happened; returns how many files were released.</summary>
    public int Drain()
    {
        if (Volatile.Read(ref drainFailure) is { } failure)
        {
            throw new InvalidOperationException("the model's release handling failed: " + failure.Message, failure);
        }
        int released;
        drainDepth++;
        try
        {
            released = locked.Sweep(fileReleased) + releases.Drain();
        }
        finally
        {
            drainDepth--;
        }
        if (drainDepth == 0 && released > 0)
        {
            // The observers hear of this drain's releases now that it holds nothing.
            lock (gate)
            {
                foreach (ModelReleaseObserver observer in observers)
                {
                    observer.WakeIfFound();
                }
            }
        }
        return released;
    }

    /// <summary>How deep in <see cref="Drain"/> this thread is.</summary>
    [ThreadStatic]
    private static int drainDepth;

    /// <summary>Whether this thread is inside a drain of a model (its releases wake observers when it ends).</summary>
    internal static bool Draining => drainDepth > 0;

    internal void AddObserver(ModelReleaseObserver observer)
    {
        lock (gate)
        {
            observers.Add(observer);
        }
    }

    internal void RemoveObserver(ModelReleaseObserver observer)
    {
        lock (gate)
        {
            observers.Remove(observer);
        }
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        Sys.TryWrite(wakeWriter, [1], out _);
        drainer.Join();
        locked.Dispose();
        releases.Dispose();
        wakeWriter.Dispose();
        wakeReader.Dispose();
    }

    // ---- used by the model's files ----------------------------------------

    internal ModelHeap? UseCaseHeap(UseCase useCase)
    {
        lock (gate)
        {
            return useCaseHeaps.GetValueOrDefault(useCase.Name);
        }
    }

    /// <summary>A heap's ops->allocate (after dma_heap_ioctl's own checks): TEE binding, faults, pool, export.</summary>
    internal Errno AllocateFromHeap(ModelHeap heap, ulong length, int fdFlags, out int fd)
    {
        fd = -1;
        if (heap.TeeDevice is { Bound: false })
        {
            return Errno.EINVAL; // tee_dma_heap_alloc: h->teedev is NULL after teardown
        }
        if (length > long.MaxValue)
        {
            return Errno.ENOMEM;
        }
        return Export(heap, (long)length, fdFlags & Fcntl.O_ACCMODE, (fdFlags & Fcntl.O_CLOEXEC) != 0, heap.TeeDevice, rstmemId: 0, out fd);
    }

    /// <summary>v4 tee_rstmem_alloc after its checks: id from the device, pool, read-only close-on-exec dma-buf.</summary>
    internal Errno AllocateRstmem(ModelTeeDevice device, ModelHeap pool, long size, out int id, out int fd)
    {
        Drain(); // the ids of buffers released already are free again
        int reserved = device.Ids.Allocate();
        Errno errno = Export(pool, size, Fcntl.O_RDONLY, closeOnExec: true, device, reserved, out fd);
        if (errno != Errno.None)
        {
            device.Ids.Release(reserved);
        }
        id = errno == Errno.None ? reserved : 0;
        return errno;
    }

    /// <summary>A tee_shm descriptor: from SHM_ALLOC (<paramref name="registered"/> null) or SHM_REGISTER_FD.</summary>
    internal Errno CreateTeeShm(ModelTeeDevice device, long size, ModelDmaBuf? registered, out int id, out long rounded, out int fd)
    {
        rounded = (long)Page.Align((ulong)size);
        Drain(); // the ids of tee_shm files closed already are free again
        id = device.Ids.Allocate();
        registered?.AddReference();
        var shm = new TeeShmFile(this, device.Ids, id, rounded, registered);
        Errno errno = CreateFile(MemfdName(stackalloc byte[MemfdNameMax], $"model:tee_shm:{device.Name}:{id}"), registered is null ? rounded : 0, Fcntl.O_RDWR, closeOnExec: false,
            sealWrite: false, shm, out SafeFd handle);
        if (errno != Errno.None)
        {
            registered?.DropReference();
            device.Ids.Release(id);
            fd = -1;
            return errno;
        }
        fd = handle.DangerousReleaseOwnership();
        installed = (this, fd, shm);
        return Errno.None;
    }

    /// <summary>The model's dma-buf behind a raw descriptor number of this process, or null (closed, or not one of ours).</summary>
    internal ModelDmaBuf? FindDmaBuf(int fd)
    {
        if (fd < 0)
        {
            return null;
        }
        using SafeFd borrowed = SafeFd.DangerousBorrow(fd);
        return FindDmaBuf(borrowed);
    }

    /// <summary>The model's dma-buf behind a handle, or null (closed, or not one of ours).</summary>
    internal ModelDmaBuf? FindDmaBuf(SafeFd fd) => Lookup(fd, out ModelFile? file) == Errno.None ? file as ModelDmaBuf : null;

    // ---- internals --------------------------------------------------------

    /// <summary>A new dma-buf from <paramref name="heap"/>'s pool; <paramref name="rstmemId"/> (v4, else 0) goes back to <paramref name="device"/> when it is freed.</summary>
    private Errno Export(ModelHeap heap, long size, int accessMode, bool closeOnExec, ModelTeeDevice? device, int rstmemId, out int fd)
    {
        fd = -1;
        FaultPlan? plan;
        Action? latency;
        lock (gate)
        {
            plan = faults.GetValueOrDefault(heap.Pool.Name);
            latency = latencies.GetValueOrDefault(heap.Pool.Name);
        }
        latency?.Invoke();
        if (plan is not null && plan.TryTake(out Errno injected))
        {
            return injected;
        }
        // Memory freed by closes that already happened is available: when the pool cannot
        // serve the request without it, those releases are handled and it is asked again.
        // A pool that can serve it needs no look at the watch (the model's drainer hands
        // releases on within ReleaseBatchMilliseconds), so an allocation costs no read.
        // Asked again whatever this drain found: the drainer may have read those closes a
        // moment before, and Drain returns once their handling is done, counting none of it
        // (an x64 AOT conformance run failed tee.register-fd.survives-close on that, 18:40).
        Errno errno = heap.Pool.TryAllocate(size, out long offset);
        if (errno != Errno.None)
        {
            Drain();
            errno = heap.Pool.TryAllocate(size, out offset);
        }
        if (errno != Errno.None)
        {
            return errno;
        }
        long bufferId = Interlocked.Increment(ref nextBufferId);
        var buffer = new ModelDmaBuf(this, heap, size, offset, device, rstmemId);
        bool restricted = heap.Exporter is ExporterKind.TeeHeap or ExporterKind.V4Rstmem;
        errno = CreateFile(MemfdName(stackalloc byte[MemfdNameMax], $"{heap.Name}:{bufferId}"), size, accessMode, closeOnExec, sealWrite: restricted,
            buffer, out SafeFd handle);
        if (errno != Errno.None)
        {
            heap.Pool.Free(offset, size);
            return errno;
        }
        Interlocked.Increment(ref liveBuffers);
        fd = handle.DangerousReleaseOwnership();
        installed = (this, fd, buffer);
        return Errno.None;
    }

    /// <summary>
    /// The longest memfd name: mm/memfd.c refuses one of more than
    /// MFD_NAME_MAX_LEN (NAME_MAX - strlen("memfd:"), 249) bytes before its NUL.
    /// </summary>
    private const int MemfdNameMax = Inotify.NAME_MAX - 6;

    /// <summary>
    /// A memfd's name (what /proc/PID/fd shows for the model's file) formatted
    /// into <paramref name="destination"/> without a string. One that does not
    /// fit (a heap or device name of some 240 bytes) is left empty, as
    /// Utf8.TryWrite leaves it: the name is only a label, and memfd_create
    /// takes an empty one.
    /// </summary>
    private static ReadOnlySpan<byte> MemfdName(Span<byte> destination,
        [InterpolatedStringHandlerArgument(nameof(destination))] ref Utf8.TryWriteInterpolatedStringHandler name)
    {
        Utf8.TryWrite(destination, ref name, out int written);
        return destination[..written];
    }

    /// <summary>
    /// Makes the real descriptor behind a model file: a memfd of the given size,
    /// sealed against resizing (and writes, for restricted memory), reopened
    /// with the requested access mode, registered by identity and watched for
    /// its last close. The caller owns the returned descriptor.
    /// </summary>
    private Errno CreateFile(ReadOnlySpan<byte> name, long size, int accessMode, bool closeOnExec, bool sealWrite, ModelFile file, out SafeFd fd)
    {
        fd = SafeFd.Invalid;
        Span<byte> terminated = stackalloc byte[MemfdNameMax + 1];
        name.CopyTo(terminated);
        terminated[name.Length] = 0;
        Errno errno = Sys.TryMemfdCreate(terminated[..(name.Length + 1)], Memfd.MFD_ALLOW_SEALING, out SafeFd memfd);
        if (errno != Errno.None)
        {
            return errno;
        }
        bool handedOver = false;
        try
        {
            if (size > 0 && (errno = Sys.TryFTruncate(memfd, size)) != Errno.None)
            {
                return errno;
            }
            int seals = Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_SEAL | (sealWrite ? Fcntl.F_SEAL_WRITE : 0);
            if ((errno = Sys.TryFcntl(memfd, Fcntl.F_ADD_SEALS, seals, out _)) != Errno.None)
            {
                return errno;
            }
            // The access mode of a dma-buf comes from fd_flags (O_CLOEXEC alone: read-only;
            // O_ACCMODE: neither). A fresh open of the memfd gives exactly that; the model
            // keeps the other description, to ask about the lock (LockedFiles), and its
            // close is not a release.
            Span<byte> path = stackalloc byte[ReleaseWatcher.DescriptorPathLength];
            SafeFd handle;
            SafeFd own;
            if (accessMode == Fcntl.O_RDWR)
            {
                handle = memfd;
                if ((errno = Sys.TryOpen(ReleaseWatcher.DescriptorPath(memfd, path), Fcntl.O_RDONLY, out own)) != Errno.None)
                {
                    return errno;
                }
            }
            else if ((errno = Sys.TryOpen(ReleaseWatcher.DescriptorPath(memfd, path), accessMode, out handle)) != Errno.None)
            {
                return errno;
            }
            else
            {
                own = memfd;
            }
            handedOver = true; // memfd is handle or own from here
            if (!closeOnExec && (errno = Sys.TryFcntl(handle, Fcntl.F_SETFD, 0, out _)) != Errno.None)
            {
                own.Dispose();
                handle.Dispose();
                return errno;
            }
            if (locked.TryAdd(file, handle, accessMode, own, out bool wakeDrainer) == Errno.None)
            {
                // In the model's table once a sweep finds it held, or a look-up needs it.
                if (wakeDrainer)
                {
                    Sys.TryWrite(wakeWriter, [1], out _); // the drainer slept with nothing to sweep
                }
                fd = handle;
                return Errno.None;
            }
            // Access mode "neither" cannot be locked, and a full LockedFiles takes no more: in
            // the table now (a release takes it out) and watched at once, the file its own sink.
            own.Dispose();
            if ((errno = Sys.TryGetIdentity(handle, out FileIdentity identity)) != Errno.None)
            {
                handle.Dispose();
                return errno;
            }
            file.Identity = identity;
            files.Add(file);
            if ((errno = releases.Observe(handle, file, 0, out _)) != Errno.None)
            {
                files.Remove(file);
                handle.Dispose();
                return errno;
            }
            fd = handle;
            return Errno.None;
        }
        finally
        {
            if (!handedOver)
            {
                memfd.Dispose();
            }
        }
    }

    /// <summary>From the release watch (through the file, its own sink: the file's inode was evicted) or the lock's sweep (the description handed out was released).</summary>
    internal void FileReleased(ModelFile file)
    {
        files.Remove(file);
        file.Released();
    }

    /// <summary>A dma-buf's memory went back to its pool: one live buffer fewer, and a v4 buffer's id is free again.</summary>
    internal void BufferFreed(ModelDmaBuf buffer)
    {
        Interlocked.Decrement(ref liveBuffers);
        if (buffer.RstmemId != 0)
        {
            buffer.TeeDevice!.Ids.Release(buffer.RstmemId);
        }
    }

    /// <summary>
    /// The file behind a descriptor (fdget): null when it is not one of the
    /// model's. A handle the model resolved before answers from what it kept
    /// (<see cref="SafeFd.Resolved"/>): while it is open its file is alive,
    /// so no release can have changed the answer. Otherwise the model finds the
    /// file by its (device, inode), the key of its table (young files join it
    /// when first needed, <see cref="LockedFiles.KeyAll"/>): the open descriptor
    /// keeps the inode alive, and the kernel numbers a memfd's inode from a
    /// 64-bit counter (mm/shmem.c shmem_reserve_inode), so no stale entry can answer.
    /// </summary>
    private Errno Lookup(SafeFd fd, out ModelFile? file)
    {
        ArgumentNullException.ThrowIfNull(fd);
        if (fd.Resolved is ModelFile known && known.BelongsTo(this))
        {
            file = known;
            return Errno.None;
        }
        file = null;
        Interlocked.Increment(ref descriptorLookups);
        Errno errno = Sys.TryGetIdentity(fd, out FileIdentity identity);
        if (errno != Errno.None)
        {
            return errno;
        }
        file = files.Find(identity);
        if (file is null)
        {
            locked.KeyAll(); // it may be a young file no sweep has put in the table yet
            file = files.Find(identity);
        }
        if (file is not null)
        {
            fd.Resolved = file;
        }
        return Errno.None;
    }

    private ModelTeeDevice? TeeDeviceAt(string path) => path switch
    {
        DevicePaths.DeviceDirectory + "/" + TeeName => tee,
        DevicePaths.DeviceDirectory + "/" + TeePrivName => teePriv,
        _ => null,
    };

    private ModelHeap? HeapAt(string name)
    {
        lock (gate)
        {
            return heaps.GetValueOrDefault(name);
        }
    }

    private ModelHeap? HeapOrUseCase(string name)
    {
        lock (gate)
        {
            return heaps.GetValueOrDefault(name) ?? useCaseHeaps.GetValueOrDefault(name)
                ?? heaps.Values.FirstOrDefault(h => h.UseCase?.Name == name);
        }
    }

    private ArgumentException UnknownHeap(string name) =>
        new($"the model has no heap or use case '{name}'; it has {string.Join(", ", PoolNames())}", nameof(name));

    private void CreateHeaps()
    {
        long systemSize = ByteSize.Parse(Options.SystemHeapSize, "Model:SystemHeapSize");
        AddHeap(new ModelHeap("system", ExporterKind.SystemHeap, new PagePool("system", systemSize, PageSize), "system", null, null));
        long cmaSize = ByteSize.Parse(Options.CmaHeapSize, "Model:CmaHeapSize");
        if (cmaSize > 0)
        {
            AddHeap(new ModelHeap(Options.CmaHeapName, ExporterKind.CmaHeap, new StaticPool(Options.CmaHeapName, cmaSize, PageSize), Options.CmaHeapName, null, null));
        }
        foreach (UseCase useCase in UseCase.All)
        {
            if (!Options.UseCases.TryGetValue(useCase.Name, out UseCasePoolOptions? pool) || !pool.Enabled)
            {
                continue;
            }
            long size = ByteSize.Parse(pool.Size, $"Model:UseCases:{useCase.Name}:Size");
            MemoryPool memory = pool.Kind == "dynamic"
                ? new DynamicPool(useCase.Name, size, PageSize)
                : new StaticPool(useCase.Name, size, PageSize);
            if (Generation.HeapPrefix() is { } prefix)
            {
                // drivers/tee/tee_heap.c: exp_name is never set, so it is KBUILD_MODNAME, "tee".
                AddHeap(new ModelHeap(prefix + useCase.Name, ExporterKind.TeeHeap, memory, "tee", tee, useCase));
            }
            else
            {
                useCaseHeaps[useCase.Name] = new ModelHeap(useCase.Name, ExporterKind.V4Rstmem, memory, "tee", tee, useCase);
            }
        }
    }

    private void AddHeap(ModelHeap heap) => heaps[heap.Name] = heap;

    /// <summary>
    /// How long the drainer lets releases gather once the watch has one
    /// waiting: one wake-up and one read for every release in that time, not
    /// a context switch per released buffer. It bounds how late the model
    /// frees memory nobody asks for; whoever does ask (an allocation the pool
    /// cannot serve, the counters, an observer) handles the waiting releases first.
    /// </summary>
    internal const int ReleaseBatchMilliseconds = 5;

    /// <summary>
    /// The drainer's nice value. Its sweeps close the descriptors the model
    /// kept of released files, a few hundred a batch under load; at the
    /// broker's own priority a sweep on the broker's CPU held its replies
    /// back (x64 AOT, `rstmem-bench-client` 1 client, 2026-12-03: p99 157-591
    /// us pinned and 174-382 us unpinned at nice 0, 75-107 and 122-131 us at
    /// nice 10, the C baseline 44-95 us). A niced drainer still gets its share
    /// on a busy CPU, and one that falls behind leaves files to the watch
    /// (<see cref="LockedFiles.MaximumLocked"/>).
    /// </summary>
    internal const int DrainerNice = 10;

    private int drainerThreadId;

    /// <summary>The drainer's thread id once it has set its nice value, else 0.</summary>
    internal int DrainerThreadId => Volatile.Read(ref drainerThreadId);

    private void DrainLoop()
    {
        Sys.TrySetThreadNice(DrainerNice); // best effort: the releases are found at any priority
        Volatile.Write(ref drainerThreadId, Sys.GetThreadId());
        Span<pollfd> fds = stackalloc pollfd[2];
        byte[] wakeBytes = new byte[64];
        while (!disposed)
        {
            fds[0] = new pollfd { fd = wakeReader.DangerousFd, events = Poll.POLLIN };
            fds[1] = new pollfd { fd = releases.Events.DangerousFd, events = Poll.POLLIN };
            // Files under a lock are asked about every batch; with none, only the watch wakes it
            // (or the first file locked, LockedFiles.TryAdd).
            Sys.TryPoll(fds, locked.SleepIfEmpty() ? -1 : ReleaseBatchMilliseconds, out _);
            if ((fds[0].revents & Poll.POLLIN) != 0)
            {
                Sys.TryRead(wakeReader, wakeBytes, out _);
            }
            if (!disposed && (fds[1].revents & Poll.POLLIN) != 0)
            {
                Sys.TryPoll(fds[..1], ReleaseBatchMilliseconds, out _); // the batch gathers; Dispose cuts it short
            }
            if (disposed)
            {
                return;
            }
            try
            {
                Drain();
            }
            catch (Exception e) when (e is InvalidOperationException or ErrnoException or ArgumentException)
            {
                // A broken invariant (a double free): report it to the next caller instead of killing the process.
                Volatile.Write(ref drainFailure, e);
                return;
            }
        }
    }
}
