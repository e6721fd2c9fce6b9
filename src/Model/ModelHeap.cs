using Rstmem.Model.Files;
using Rstmem.Model.Pools;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Model;

/// <summary>One /dev/dma_heap node of the model and the pool behind it.</summary>
internal sealed class ModelHeap(string name, ExporterKind exporter, MemoryPool pool, string expName, ModelTeeDevice? teeDevice, UseCase? useCase)
{
    public string Name { get; } = name;

    public ExporterKind Exporter { get; } = exporter;

    public MemoryPool Pool { get; } = pool;

    public string ExpName { get; } = expName;

    /// <summary>The TEE device a TEE heap is bound to (tee_heap.c: h->teedev); null for system/CMA heaps.</summary>
    public ModelTeeDevice? TeeDevice { get; } = teeDevice;

    public UseCase? UseCase { get; } = useCase;

    /// <summary>The node was removed (fault injection): open gives ENOENT; descriptors already open keep working.</summary>
    public bool Removed { get; set; }
}

/// <summary>A TEE device of the model: /dev/tee0 or the supplicant's /dev/teepriv0.</summary>
internal sealed class ModelTeeDevice(string name, bool privileged)
{
    public string Name { get; } = name;

    public bool Privileged { get; } = privileged;

    /// <summary>teedev->idr: one id space for SHM_ALLOC, SHM_REGISTER_FD and RSTMEM_ALLOC.</summary>
    public IdAllocator Ids { get; } = new();

    /// <summary>False once the backend is unbound: the node is gone and allocations give EINVAL.</summary>
    public bool Bound { get; set; } = true;

    /// <summary>Open descriptors of the supplicant device (OP-TEE allows one: a second open gives EBUSY).</summary>
    public int OpenCount;
}

/// <summary>Injected failures for one pool: the next <see cref="Remaining"/> allocations fail with <see cref="Errno"/>.</summary>
internal sealed class FaultPlan(int remaining, Errno errno)
{
    public int Remaining { get; private set; } = remaining;

    public Errno Errno { get; } = errno;

    public bool TryTake(out Errno errno)
    {
        errno = Errno;
        if (Remaining <= 0)
        {
            return false;
        }
        Remaining--;
        return true;
    }
}
