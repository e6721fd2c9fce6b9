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

/// <summary>The backend names of the configuration and the command line (<c>Backend</c>, <c>--backend</c>).</summary>
public static class BackendNames
{
    /// <summary>The kernel's interface if it has one, else the reference model (a development machine).</summary>
    public const string Auto = "auto";

    /// <summary>The kernel's interface (tee, else dma-heap); never the model: a board's service refuses to start without one.</summary>
    public const string Real = "real";

    public const string Model = "model";
    public const string Tee = "tee";
    public const string DmaHeap = "dma-heap";

    public static IReadOnlyList<string> All { get; } = [Auto, Real, Model, Tee, DmaHeap];

    /// <summary>"auto, real, model, tee or dma-heap", for error messages.</summary>
    public static string Expected { get; } = string.Join(", ", All.Take(All.Count - 1)) + " or " + All[^1];
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

    /// <summary>
    /// Allocates a buffer of at least <paramref name="requestedSize"/> bytes
    /// and names it <paramref name="name"/> (NUL-terminated UTF-8, at most
    /// DMA_BUF_NAME_LEN bytes with the NUL). On success <paramref name="buffer"/>
    /// is a dma-buf the caller owns and <paramref name="size"/> its size as the
    /// kernel reports it (lseek SEEK_END). The name is best effort:
    /// DMA_BUF_SET_NAME (drivers/dma-buf/dma-buf.c dma_buf_set_name) fails
    /// only on a kernel without it or out of memory, and the buffer is as
    /// good without one.
    /// </summary>
    public Errno Allocate(long requestedSize, ReadOnlySpan<byte> name, out SafeFd buffer, out long size)
    {
        size = 0;
        Errno errno = AllocateBuffer(requestedSize, out buffer);
        if (errno != Errno.None)
        {
            return errno;
        }
        errno = Kernel.LSeek(buffer, 0, Fcntl.SEEK_END, out size);
        if (errno != Errno.None)
        {
            buffer.Dispose();
            buffer = SafeFd.Invalid;
            return errno;
        }
        if (!name.IsEmpty)
        {
            Span<byte> argument = stackalloc byte[DmaBuf.DMA_BUF_NAME_LEN];
            int length = Math.Min(name.Length, argument.Length);
            name[..length].CopyTo(argument);
            argument[length - 1] = 0;
            Kernel.Ioctl(buffer, DmaBuf.DMA_BUF_SET_NAME_B, argument[..length], out _);
        }
        return Errno.None;
    }

    /// <summary>The kernel's allocation call itself; on success <paramref name="buffer"/> is the new dma-buf.</summary>
    protected abstract Errno AllocateBuffer(long requestedSize, out SafeFd buffer);

    /// <summary>The pool's counters, when the kernel knows them.</summary>
    public PoolCounters? Counters => (Kernel as IPoolStatistics)?.TryGetCounters(PoolName);

    /// <summary>The pool's size, when the kernel knows it: <see cref="PoolCounters.TotalBytes"/> without the rest.</summary>
    public long? TotalBytes => Kernel is IPoolStatistics statistics && statistics.TryGetTotalBytes(PoolName, out long total) ? total : null;

    /// <summary>What the kernel's statistics call this heap's pool: the use case in v4, else the heap.</summary>
    private string PoolName => UseCase is not null && Generation == KernelGeneration.V4 ? UseCase.Name : Name;

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
        Errno errno = kernel.Open(DevicePaths.HeapNode(name), Fcntl.O_RDONLY, out SafeFd node);
        provider = errno == Errno.None ? new DmaHeapProvider(kernel, name, useCase, generation, restricted, node) : null;
        return errno;
    }

    protected override Errno AllocateBuffer(long requestedSize, out SafeFd buffer)
    {
        var data = new dma_heap_allocation_data { len = (ulong)requestedSize, fd_flags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC };
        Errno errno = Kernel.Ioctl(node, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _);
        buffer = errno == Errno.None ? Kernel.AdoptInstalled((int)data.fd) : SafeFd.Invalid;
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
    protected override Errno AllocateBuffer(long requestedSize, out SafeFd buffer)
    {
        var data = new tee_ioctl_rstmem_alloc_data { size = (ulong)requestedSize, use_case = UseCase!.Id };
        Errno errno = Kernel.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out int fd);
        buffer = errno == Errno.None ? Kernel.AdoptInstalled(fd) : SafeFd.Invalid;
        return errno;
    }
}
