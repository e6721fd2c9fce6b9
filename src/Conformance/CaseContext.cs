using System.Diagnostics;
using System.Globalization;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Conformance;

/// <summary>
/// The bytes the tester may hold at once (--max-bytes). An allocation is
/// charged before the call, because the kernel may grant it; one that would
/// go over the limit is not made and its case is skipped.
/// </summary>
public sealed class Budget(long maxBytes)
{
    private long held;

    public long MaxBytes { get; } = maxBytes;

    public long Held => Interlocked.Read(ref held);

    /// <summary>The most held at any moment in the run (a test reads it).</summary>
    public long Peak { get; private set; }

    internal void Charge(ulong bytes, string what)
    {
        if (bytes > (ulong)MaxBytes || Held + (long)bytes > MaxBytes)
        {
            throw new CaseSkippedException(
                $"{what} would hold {ByteSize.Format(Held)} + {Show(bytes)}, over --max-bytes {ByteSize.Format(MaxBytes)}");
        }
        Peak = Math.Max(Peak, Interlocked.Add(ref held, (long)bytes));
    }

    internal void Uncharge(ulong bytes) => Interlocked.Add(ref held, -(long)bytes);

    private static string Show(ulong bytes) => bytes > long.MaxValue ? $"{bytes} bytes" : ByteSize.Format((long)bytes);
}

/// <summary>
/// What a case works with: the kernel, its target, and every resource it
/// opens, each closed when the case ends (pass, fail, skip or interrupt).
/// Devices are opened read-only: neither dma_heap_open nor tee_open looks at
/// the access mode, and their ioctls do not either.
/// </summary>
public sealed class CaseContext : IDisposable
{
    private readonly List<SafeFd> descriptors = [];
    private readonly Dictionary<SafeFd, ulong> charges = [];
    private readonly List<(nint Address, nuint Length)> mappings = [];
    private readonly List<(nint Address, nuint Length)> ownMappings = [];
    private readonly List<ChildHolder> children = [];
    private readonly Dictionary<string, SafeFd> devices = new(StringComparer.Ordinal);

    internal CaseContext(ConformanceEnvironment environment, Target target, Budget budget, CancellationToken cancellation)
    {
        Environment = environment;
        Target = target;
        Budget = budget;
        Cancellation = cancellation;
    }

    public ConformanceEnvironment Environment { get; }

    public IKernel Kernel => Environment.Kernel;

    public Target Target { get; }

    public Budget Budget { get; }

    public CancellationToken Cancellation { get; }

    public KernelGeneration? Generation => Environment.Generation;

    public T TargetAs<T>() where T : Target =>
        Target as T ?? throw new InvalidOperationException($"case runs on {Target.Name}, not a {typeof(T).Name}");

    public static void Skip(string reason) => throw new CaseSkippedException(reason);

    /// <summary>The device opened read-only and close-on-exec, once per case; failure fails the case.</summary>
    public SafeFd Open(string path)
    {
        if (devices.TryGetValue(path, out SafeFd? open))
        {
            return open;
        }
        Errno errno = Kernel.Open(path, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, out SafeFd fd);
        if (errno == Errno.EACCES || errno == Errno.EPERM)
        {
            Skip($"open({path}): {errno.Name()}: run as root (the device nodes are root-only)");
        }
        Check.Errno(Errno.None, errno, $"open({path}, O_RDONLY)");
        devices[path] = Own(fd);
        return fd;
    }

    /// <summary>Closes <paramref name="fd"/> when the case ends.</summary>
    public SafeFd Own(SafeFd fd)
    {
        ArgumentNullException.ThrowIfNull(fd);
        descriptors.Add(fd);
        return fd;
    }

    /// <summary>
    /// Makes an allocating call under the budget: <paramref name="charge"/>
    /// bytes are reserved first, kept while the new descriptor is open, and
    /// returned if the call fails.
    /// </summary>
    public Errno Allocate(ulong charge, string what, Func<(Errno Errno, int Fd)> call, out SafeFd created)
    {
        ArgumentNullException.ThrowIfNull(call);
        Cancellation.ThrowIfCancellationRequested();
        Budget.Charge(charge, what);
        (Errno errno, int fd) = call();
        if (errno != Errno.None || fd < 0)
        {
            Budget.Uncharge(charge);
            created = SafeFd.DangerousAdopt(-1);
            return errno;
        }
        created = Own(SafeFd.DangerousAdopt(fd));
        charges[created] = charge;
        return Errno.None;
    }

    /// <summary>DMA_HEAP_IOCTL_ALLOC with the current struct.</summary>
    public Errno HeapAlloc(SafeFd heap, ulong length, uint fdFlags, out SafeFd buffer)
    {
        var data = new dma_heap_allocation_data { len = length, fd_flags = fdFlags };
        return Allocate(Page.Align(length), $"allocating {length} bytes", () =>
        {
            Errno errno = Kernel.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _);
            return (errno, errno == Errno.None ? (int)data.fd : -1);
        }, out buffer);
    }

    /// <summary>TEE_IOC_RSTMEM_ALLOC (v4); <paramref name="data"/> is written back as the kernel leaves it.</summary>
    public Errno TeeRstmemAlloc(SafeFd tee, ref tee_ioctl_rstmem_alloc_data data, out SafeFd buffer)
    {
        tee_ioctl_rstmem_alloc_data argument = data;
        Errno result = Allocate(Page.Align(data.size), $"allocating {data.size} bytes", () =>
        {
            Errno errno = Kernel.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref argument, out int fd);
            return (errno, fd);
        }, out buffer);
        data = argument;
        return result;
    }

    /// <summary>A buffer from the target (a heap or a v4 use case); failure fails the case.</summary>
    public SafeFd AllocateFromTarget(ulong length)
    {
        Errno errno = TargetAs<BufferTarget>().Allocate(this, length, out SafeFd buffer);
        Check.Errno(Errno.None, errno, $"allocating {length} bytes from {Target.Name}");
        return buffer;
    }

    /// <summary>Closes a descriptor now and returns its charge.</summary>
    public void Close(SafeFd fd)
    {
        ArgumentNullException.ThrowIfNull(fd);
        if (charges.Remove(fd, out ulong charge))
        {
            Budget.Uncharge(charge);
        }
        descriptors.Remove(fd);
        fd.Dispose();
    }

    /// <summary>The memory of <paramref name="from"/> is now also held by <paramref name="to"/> (a TEE registration): its charge stays until both are closed.</summary>
    public void ShareCharge(SafeFd from, SafeFd to)
    {
        if (charges.Remove(from, out ulong charge))
        {
            charges[to] = charge;
        }
    }

    public Errno Map(SafeFd fd, nuint length, int prot, int flags, out nint address) => Map(fd, length, prot, flags, 0, out address);

    /// <summary>mmap of <paramref name="fd"/> at <paramref name="offset"/>; a mapping made is unmapped when the case ends.</summary>
    public Errno Map(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        Errno errno = Kernel.Mmap(fd, length, prot, flags, offset, out address);
        if (errno == Errno.None)
        {
            mappings.Add((address, length));
        }
        return errno;
    }

    /// <summary>
    /// <paramref name="length"/> writable bytes of this process's memory that
    /// end where its memory ends: a page of a memfd mapped twice its size, so
    /// the next page is past the file's end. The kernel's copy_from_user or
    /// copy_to_user of more than <paramref name="length"/> bytes from here
    /// faults (-EFAULT); an argument span of exactly these bytes tells a model
    /// the same thing. Unmapped when the case ends.
    /// </summary>
    public unsafe Span<byte> BytesBeforeUnmappedMemory(int length)
    {
        int page = (int)Page.Size;
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, page);
        Check.Errno(Errno.None, Sys.TryMemfdCreate("conformance-fault", Memfd.MFD_CLOEXEC, out SafeFd memfd), "memfd_create");
        using (memfd)
        {
            Check.Errno(Errno.None, Sys.TryFTruncate(memfd, page), "ftruncate of the memfd to one page");
            Check.Errno(Errno.None, Sys.TryMmap(memfd, (nuint)(2 * page), Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, 0, out nint address),
                "mmap of two pages of a one-page memfd");
            ownMappings.Add((address, (nuint)(2 * page)));
            return new Span<byte>((byte*)address + page - length, length);
        }
    }

    /// <summary>munmap of a mapping made by <see cref="Map"/>.</summary>
    public void Unmap(nint address)
    {
        int index = mappings.FindIndex(m => m.Address == address);
        if (index >= 0)
        {
            Check.Errno(Errno.None, Kernel.Munmap(address, mappings[index].Length), "munmap");
            mappings.RemoveAt(index);
        }
    }

    /// <summary>A child process that holds a reference to <paramref name="fd"/> until released or the case ends.</summary>
    public ChildHolder HoldInChild(SafeFd fd)
    {
        var child = ChildHolder.Start(fd);
        children.Add(child);
        return child;
    }

    public IReadOnlyDictionary<string, string> FdInfo(SafeFd fd)
    {
        Errno errno = Kernel.ReadFdInfoFields(fd, out IReadOnlyDictionary<string, string> fields);
        Check.Errno(Errno.None, errno, "reading /proc/self/fdinfo");
        return fields;
    }

    public long SizeOf(SafeFd buffer)
    {
        Errno errno = Kernel.LSeek(buffer, 0, Fcntl.SEEK_END, out long size);
        Check.Errno(Errno.None, errno, "lseek(buffer, 0, SEEK_END)");
        return size;
    }

    public void Dispose()
    {
        foreach (ChildHolder child in children)
        {
            child.Dispose();
        }
        foreach ((nint address, nuint length) in mappings)
        {
            Kernel.Munmap(address, length);
        }
        foreach ((nint address, nuint length) in ownMappings)
        {
            Sys.TryMunmap(address, length);
        }
        for (int i = descriptors.Count - 1; i >= 0; i--)
        {
            descriptors[i].Dispose();
        }
        foreach (ulong charge in charges.Values)
        {
            Budget.Uncharge(charge);
        }
        children.Clear();
        mappings.Clear();
        ownMappings.Clear();
        descriptors.Clear();
        charges.Clear();
    }
}

/// <summary>
/// A child process holding one reference to a file: <c>/bin/sh -c 'read -r _'</c>
/// started with an inheritable duplicate of the descriptor. It exits when
/// its stdin closes — on <see cref="Release"/>, or when the tester itself
/// dies, however it dies — so it never outlives the tester.
/// </summary>
public sealed class ChildHolder : IDisposable
{
    private readonly Process process;

    private ChildHolder(Process process, int childFd)
    {
        this.process = process;
        ChildFd = childFd;
    }

    /// <summary>The descriptor number in the child (the same number as the inherited duplicate).</summary>
    public int ChildFd { get; }

    public int Pid => process.Id;

    public static ChildHolder Start(SafeFd fd)
    {
        ArgumentNullException.ThrowIfNull(fd);
        // F_DUPFD (not _CLOEXEC): the one descriptor the child inherits; every
        // other descriptor of this process is close-on-exec. A process another
        // thread starts before it is closed below inherits it too: callers that
        // run beside other work (the daemon's tests) keep that work out.
        Sys.TryFcntl(fd, Fcntl.F_DUPFD, 3, out int inheritable).ThrowIfError("fcntl(F_DUPFD)");
        Process process;
        using (SafeFd.DangerousAdopt(inheritable))
        {
            var start = new ProcessStartInfo("/bin/sh")
            {
                RedirectStandardInput = true,
                UseShellExecute = false,
            };
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add("read -r _");
            process = Process.Start(start) ?? throw new InvalidOperationException("could not start /bin/sh");
        }
        var holder = new ChildHolder(process, inheritable);
        string ours = Link($"/proc/self/fd/{fd.DangerousFd.ToString(CultureInfo.InvariantCulture)}");
        string theirs = Link($"/proc/{process.Id.ToString(CultureInfo.InvariantCulture)}/fd/{inheritable.ToString(CultureInfo.InvariantCulture)}");
        if (ours != theirs)
        {
            holder.Dispose();
            throw new CaseFailedException($"child {process.Id} holding fd {inheritable}", ours, theirs.Length == 0 ? "no such descriptor in the child" : theirs);
        }
        return holder;
    }

    /// <summary>Lets the child exit and waits for it: its reference is gone when this returns.</summary>
    public void Release()
    {
        if (process.HasExited)
        {
            return;
        }
        process.StandardInput.Close();
        if (!process.WaitForExit(5000))
        {
            process.Kill();
            process.WaitForExit();
        }
    }

    public void Dispose()
    {
        Release();
        process.Dispose();
    }

    private static string Link(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget ?? "";
        }
        catch (IOException)
        {
            return "";
        }
        catch (UnauthorizedAccessException)
        {
            return "";
        }
    }
}
