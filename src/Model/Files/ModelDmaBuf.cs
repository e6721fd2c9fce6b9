using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Globalization;
using System.Text;
using Rstmem.Model.Pools;
using Rstmem.Interop.Uapi;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;

namespace Rstmem.Model.Files;

/// <summary>Who exported a dma-buf, which decides its dma_buf_ops.</summary>
internal enum ExporterKind
{
    /// <summary>heaps/system_heap.c: mappable, CPU-access hooks return 0.</summary>
    SystemHeap,

    /// <summary>heaps/cma_heap.c: mappable (shared mappings only).</summary>
    CmaHeap,

    /// <summary>drivers/tee/tee_heap.c (v6, mainline): no mmap (EINVAL), no CPU-access hooks (SYNC returns 0).</summary>
    TeeHeap,

    /// <summary>v4 drivers/tee/tee_rstmem.c: mmap and begin/end_cpu_access return EPERM.</summary>
    V4Rstmem,
}

/// <summary>
/// A dma-buf the model exported: drivers/dma-buf/dma-buf.c's file
/// operations (dma_buf_llseek, dma_buf_ioctl, dma_buf_show_fdinfo,
/// dma_buf_mmap_internal) over a sealed memfd. Its pool block is freed when
/// the last reference goes: the file's, and one per TEE registration
/// (tee_shm_register_fd holds a dma_buf_get reference).
///
/// One object per buffer and nothing else: the exporter, pool and
/// exp_name come from its heap, the name (DMA_BUF_SET_NAME) is kept as its
/// bytes inside it, and the first observer of its release is kept in three
/// fields, so a buffer held by a client costs no delegate, lock or string.
/// Its mutable state is guarded by the model's <see cref="ModelKernel.BufferGate"/>.
/// </summary>
internal sealed class ModelDmaBuf(ModelKernel kernel, ModelHeap heap, long size, long offset, ModelTeeDevice? teeDevice, int rstmemId) : ModelFile(kernel)
{
    /// <summary>The name's bytes (at most DMA_BUF_NAME_LEN - 1 and a NUL), as dma_buf_set_name keeps them.</summary>
    [InlineArray(DmaBuf.DMA_BUF_NAME_LEN)]
    private struct NameBytes
    {
        private byte first;
    }

    private readonly ModelHeap heap = heap;
    private int references = 1;
    /// <summary>The bytes of <see cref="name"/> in use; -1 before any DMA_BUF_SET_NAME.</summary>
    private int nameLength = -1;
    private NameBytes name;
    // The first observer of the release, inline; any further ones (no broker makes them) in a list.
    private ModelReleaseObserver? observer;
    private IReleaseSink? sink;
    private long token;
    private List<(ModelReleaseObserver Observer, IReleaseSink Sink, long Token)>? moreObservers;

    public ExporterKind Kind => heap.Exporter;

    /// <summary>fdinfo's exp_name: the heap name for system/CMA heaps, "tee" for TEE exporters.</summary>
    public string ExpName => heap.ExpName;

    public long Size { get; } = size;

    public MemoryPool Pool => heap.Pool;

    public long Offset { get; } = offset;

    /// <summary>The TEE device whose heap made it (null for system/CMA heaps).</summary>
    public ModelTeeDevice? TeeDevice { get; } = teeDevice;

    /// <summary>The v4 RSTMEM_ALLOC id it holds of <see cref="TeeDevice"/>'s id space until freed; 0 for none.</summary>
    public int RstmemId { get; } = rstmemId;

    /// <summary>References held by TEE registrations (fdinfo's count includes them).</summary>
    public int KernelHolders
    {
        get
        {
            lock (Kernel.BufferGate)
            {
                return references - 1;
            }
        }
    }

    public void AddReference()
    {
        lock (Kernel.BufferGate)
        {
            if (references == 0)
            {
                throw new InvalidOperationException("reference to a freed dma-buf");
            }
            references++;
        }
    }

    /// <summary>Drops one reference; the last one returns the memory to the pool and tells the observers.</summary>
    public void DropReference()
    {
        ModelReleaseObserver? first;
        IReleaseSink? firstSink;
        long firstToken;
        List<(ModelReleaseObserver Observer, IReleaseSink Sink, long Token)>? more;
        lock (Kernel.BufferGate)
        {
            if (--references > 0)
            {
                return;
            }
        }
        Pool.Free(Offset, Size);
        Kernel.BufferFreed(this);
        lock (Kernel.BufferGate)
        {
            (first, firstSink, firstToken, more) = (observer, sink, token, moreObservers);
            (observer, sink, token, moreObservers) = (null, null, 0, null);
        }
        first?.Released(firstSink!, firstToken);
        if (more is not null)
        {
            foreach ((ModelReleaseObserver Observer, IReleaseSink Sink, long Token) watch in more)
            {
                watch.Observer.Released(watch.Sink, watch.Token);
            }
        }
    }

    /// <summary>
    /// Tells <paramref name="releases"/> (for <paramref name="releaseSink"/>
    /// and <paramref name="releaseToken"/>) once the buffer's memory is freed,
    /// its last reference gone; false if it already is.
    /// </summary>
    public bool WhenFreed(ModelReleaseObserver releases, IReleaseSink releaseSink, long releaseToken)
    {
        lock (Kernel.BufferGate)
        {
            if (references == 0)
            {
                return false;
            }
            if (observer is null)
            {
                (observer, sink, token) = (releases, releaseSink, releaseToken);
            }
            else
            {
                (moreObservers ??= []).Add((releases, releaseSink, releaseToken));
            }
            return true;
        }
    }

    public override void Released() => DropReference();

    public override Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        result = -1;
        // dma_buf_ioctl switches on the exact value; anything else is ENOTTY.
        if (request == DmaBuf.DMA_BUF_IOCTL_SYNC)
        {
            Errno errno = Sync(argument);
            result = errno == Errno.None ? 0 : -1;
            return errno;
        }
        if (request == DmaBuf.DMA_BUF_SET_NAME_A || request == DmaBuf.DMA_BUF_SET_NAME_B)
        {
            Errno errno = SetName(argument);
            result = errno == Errno.None ? 0 : -1;
            return errno;
        }
        // EXPORT/IMPORT_SYNC_FILE: the model has no sync_file, as a kernel built without CONFIG_SYNC_FILE.
        return Errno.ENOTTY;
    }

    private Errno Sync(ReadOnlySpan<byte> argument)
    {
        if (argument.Length < Unsafe.SizeOf<dma_buf_sync>())
        {
            return Errno.EFAULT;
        }
        ulong flags = MemoryMarshal.Read<dma_buf_sync>(argument).flags;
        if ((flags & ~DmaBuf.DMA_BUF_SYNC_VALID_FLAGS_MASK) != 0 || (flags & DmaBuf.DMA_BUF_SYNC_RW) == 0)
        {
            return Errno.EINVAL;
        }
        // begin/end_cpu_access: v4 refuses CPU access; TEE heaps have no hook (0); system/CMA sync caches (0).
        return Kind == ExporterKind.V4Rstmem ? Errno.EPERM : Errno.None;
    }

    // dma_buf_set_name: strndup_user(arg, DMA_BUF_NAME_LEN). The argument is the string itself.
    private Errno SetName(ReadOnlySpan<byte> argument)
    {
        if (argument.IsEmpty)
        {
            return Errno.EFAULT;
        }
        int limit = Math.Min(argument.Length, DmaBuf.DMA_BUF_NAME_LEN);
        int nul = argument[..limit].IndexOf((byte)0);
        if (nul < 0)
        {
            // No NUL within the first 32 bytes: too long (EINVAL); past the end of readable memory: EFAULT.
            return argument.Length >= DmaBuf.DMA_BUF_NAME_LEN ? Errno.EINVAL : Errno.EFAULT;
        }
        lock (Kernel.BufferGate)
        {
            argument[..nul].CopyTo(name);
            nameLength = nul;
        }
        return Errno.None;
    }

    /// <summary>The name set by DMA_BUF_SET_NAME (decoded as UTF-8), or null.</summary>
    public string? Name
    {
        get
        {
            lock (Kernel.BufferGate)
            {
                return nameLength < 0 ? null : Encoding.UTF8.GetString(((ReadOnlySpan<byte>)name)[..nameLength]);
            }
        }
    }

    public override Errno LSeek(SafeFd fd, long offset, int whence, out long position)
    {
        position = -1;
        long @base;
        if (whence == Fcntl.SEEK_END)
        {
            @base = Size;
        }
        else if (whence == Fcntl.SEEK_SET)
        {
            @base = 0;
        }
        else
        {
            return Errno.EINVAL;
        }
        if (offset != 0)
        {
            return Errno.EINVAL;
        }
        position = @base;
        return Errno.None;
    }

    public override Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        address = 0;
        Errno errno = GenericMmapChecks(fd, length, prot, flags, offset);
        if (errno != Errno.None)
        {
            return errno;
        }
        if (Kind == ExporterKind.TeeHeap)
        {
            return Errno.EINVAL; // no dma_buf_ops.mmap
        }
        long page = Environment.SystemPageSize;
        long pages = ((long)length + page - 1) / page;
        if (offset / page + pages > Size / page)
        {
            return Errno.EINVAL;
        }
        bool shared = (flags & Mman.MAP_SHARED) != 0;
        switch (Kind)
        {
            case ExporterKind.V4Rstmem:
                return Errno.EPERM;
            case ExporterKind.CmaHeap when !shared:
                return Errno.EINVAL;
            case ExporterKind.SystemHeap when !shared && (prot & Mman.PROT_WRITE) != 0 && pages > 1:
                return Errno.EINVAL; // remap_pfn_range refuses a partial COW mapping
        }
        return Sys.TryMmap(fd, length, prot, flags, offset, out address);
    }

    // dma-buf f_flags are masked to O_ACCMODE | O_NONBLOCK (dma_buf_getfile).
    public override int FdInfoFlagsMask => Fcntl.O_ACCMODE | Fcntl.O_NONBLOCK | Fcntl.O_CLOEXEC;

    public override IEnumerable<string> FdInfoLines(FileIdentity shown)
    {
        var inv = CultureInfo.InvariantCulture;
        yield return string.Create(inv, $"size:\t{Size}");
        yield return string.Create(inv, $"count:\t{CountReferences(shown)}");
        yield return $"exp_name:\t{ExpName}";
        if (Name is { } current)
        {
            yield return $"name:\t{current}";
        }
    }

    // file_count - 1: the descriptors of this process that share the file,
    // plus kernel holders. References in other processes are not visible
    // from here; the real kernel would count them too. Matched by (device,
    // inode), not by the memfd's name: several models in one process (the
    // tests run them in parallel) name their buffers alike. The model's own
    // description of a young buffer (LockedFiles) is not a reference a
    // dma-buf would have: it is left out, and does not move while counted.
    private int CountReferences(FileIdentity identity)
    {
        int count = 0;
        lock (Kernel.LockedGate)
        {
            foreach (string entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
            {
                // An entry closed while we looked fails the stat, and is not counted.
                if (Sys.TryGetIdentity(entry, out FileIdentity candidate) == Errno.None && candidate == identity
                    && !(int.TryParse(Path.GetFileName(entry), NumberStyles.None, CultureInfo.InvariantCulture, out int fd) && LockedFiles.IsOwn(this, fd)))
                {
                    count++;
                }
            }
        }
        return count + KernelHolders;
    }
}
