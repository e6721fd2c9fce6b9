using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Backends;

/// <summary>Which kernel interface a heap comes through.</summary>
public enum BackendKind
{
    Model = (int)RstmemProtocol.RSTMEM_BACKEND_MODEL,
    Tee = (int)RstmemProtocol.RSTMEM_BACKEND_TEE,
    DmaHeap = (int)RstmemProtocol.RSTMEM_BACKEND_DMA_HEAP,
}

/// <summary>
/// Something clients can allocate from, by its name or its use case: a DMA
/// heap node, or (v4) a use case of TEE_IOC_RSTMEM_ALLOC. Written against
/// <see cref="IKernel"/>, so the same code serves real devices and the model.
/// </summary>
public abstract class HeapProvider(IKernel kernel, string name, UseCase? useCase, KernelGeneration? generation, bool restricted) : IDisposable
{
    protected IKernel Kernel { get; } = kernel;

    public string Name { get; } = name;

    public UseCase? UseCase { get; } = useCase;

    /// <summary>Null for plain heaps (system, CMA, vendor) that belong to no generation.</summary>
    public KernelGeneration? Generation { get; } = generation;

    /// <summary>Restricted memory: no CPU access, no mmap.</summary>
    public bool Restricted { get; } = restricted;

    public long PageSize { get; } = Environment.SystemPageSize;

    /// <summary>Allocates; on success <paramref name="buffer"/> is a dma-buf the caller owns and <paramref name="size"/> its lseek size.</summary>
    public abstract Errno Allocate(long requestedSize, out SafeFd buffer, out long size);

    /// <summary>The pool's counters, when the kernel knows them.</summary>
    public PoolCounters? Counters =>
        (Kernel as IPoolStatistics)?.TryGetCounters(UseCase is not null && Generation == KernelGeneration.V4 ? UseCase.Name : Name);

    /// <summary>The dma-buf's size as the kernel reports it: lseek(fd, 0, SEEK_END).</summary>
    protected Errno SizeOf(SafeFd buffer, out long size) => Kernel.LSeek(buffer, 0, Fcntl.SEEK_END, out size);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected virtual void Dispose(bool disposing) { }
}

/// <summary>A /dev/dma_heap node, opened once and kept open (DMA_HEAP_IOCTL_ALLOC).</summary>
public sealed class DmaHeapProvider : HeapProvider
{
    private readonly SafeFd node;

    private DmaHeapProvider(IKernel kernel, string name, UseCase? useCase, KernelGeneration? generation, bool restricted, SafeFd node)
        : base(kernel, name, useCase, generation, restricted)
    {
        this.node = node;
    }

    public static Errno TryOpen(IKernel kernel, string name, UseCase? useCase, KernelGeneration? generation, bool restricted, out DmaHeapProvider? provider)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Errno errno = kernel.Open($"/dev/dma_heap/{name}", Fcntl.O_RDONLY, out SafeFd node);
        provider = errno == Errno.None ? new DmaHeapProvider(kernel, name, useCase, generation, restricted, node) : null;
        return errno;
    }

    public override Errno Allocate(long requestedSize, out SafeFd buffer, out long size)
    {
        buffer = SafeFd.Invalid;
        size = 0;
        var data = new dma_heap_allocation_data { len = (ulong)requestedSize, fd_flags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC };
        Errno errno = Kernel.Ioctl(node, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _);
        if (errno != Errno.None)
        {
            return errno;
        }
        buffer = SafeFd.DangerousAdopt((int)data.fd);
        errno = SizeOf(buffer, out size);
        if (errno != Errno.None)
        {
            buffer.Dispose();
        }
        return errno;
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            node.Dispose();
        }
        base.Dispose(disposing);
    }
}

/// <summary>A v4 use case: TEE_IOC_RSTMEM_ALLOC on an open /dev/teeN.</summary>
public sealed class TeeRstmemProvider(IKernel kernel, SafeFd tee, UseCase useCase)
    : HeapProvider(kernel, useCase.Name, useCase, KernelGeneration.V4, restricted: true)
{
    public override Errno Allocate(long requestedSize, out SafeFd buffer, out long size)
    {
        buffer = SafeFd.Invalid;
        size = 0;
        var data = new tee_ioctl_rstmem_alloc_data { size = (ulong)requestedSize, use_case = UseCase!.Id };
        Errno errno = Kernel.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out int fd);
        if (errno != Errno.None)
        {
            return errno;
        }
        buffer = SafeFd.DangerousAdopt(fd);
        errno = SizeOf(buffer, out size);
        if (errno != Errno.None)
        {
            buffer.Dispose();
        }
        return errno;
    }
}
