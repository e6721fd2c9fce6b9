using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Conformance;

/// <summary>Something the suites run against: a heap node, a TEE device, or a v4 TEE use case.</summary>
public abstract class Target(string name)
{
    /// <summary>The column name in reports: "system", "protected,secure-video", "tee0", "tee0:trusted-ui".</summary>
    public string Name { get; } = name;

    public abstract bool Serves(TargetKind kind);

    public override string ToString() => Name;
}

/// <summary>A source of dma-bufs, with what the kernel promises about them.</summary>
public abstract class BufferTarget(string name) : Target(name)
{
    /// <summary>Restricted/protected memory: the CPU may not map it.</summary>
    public abstract bool Restricted { get; }

    /// <summary>fdinfo exp_name of its buffers.</summary>
    public abstract string ExpName { get; }

    /// <summary>mmap(PROT_READ, MAP_SHARED) of a buffer: success for CPU-accessible memory, else the refusal.</summary>
    public abstract Errno MmapRead { get; }

    /// <summary>mmap(PROT_READ | PROT_WRITE, MAP_PRIVATE) of a whole two-page buffer: a copy-on-write mapping, which no exporter here gives.</summary>
    public abstract Errno MmapPrivateWritable { get; }

    /// <summary>DMA_BUF_IOCTL_SYNC with valid flags: begin/end_cpu_access.</summary>
    public abstract Errno SyncResult { get; }

    /// <summary>The access mode of the buffers <see cref="Allocate"/> makes (they are always close-on-exec).</summary>
    public abstract int AccessMode { get; }

    /// <summary>Allocates <paramref name="length"/> bytes; the fd is owned by the context.</summary>
    public abstract Errno Allocate(CaseContext context, ulong length, out SafeFd buffer);
}

/// <summary>/dev/dma_heap/NAME.</summary>
public sealed class HeapTarget(string name) : BufferTarget(name)
{
    public string Path { get; } = DevicePaths.HeapNode(name);

    public override bool Restricted { get; } = KernelGenerations.IsRestrictedHeap(name);

    /// <summary>
    /// system_heap.c and cma_heap.c set exp_name to the heap name; the TEE
    /// heaps (drivers/tee/tee_heap.c, and the v6 series' restricted heaps)
    /// leave it to DEFINE_DMA_BUF_EXPORT_INFO's KBUILD_MODNAME, "tee".
    /// </summary>
    public override string ExpName => Restricted ? "tee" : Name;

    /// <summary>tee_heap.c's dma_buf_ops have no mmap: dma_buf_mmap_internal → -EINVAL.</summary>
    public override Errno MmapRead => Restricted ? Errno.EINVAL : Errno.None;

    /// <summary>
    /// system_heap_mmap maps one scatterlist entry per remap_pfn_range, and
    /// mm/memory.c refuses a copy-on-write mapping that one call does not
    /// cover whole (-EINVAL; a two-page buffer is two order-0 entries);
    /// cma_heap_mmap refuses any mapping without VM_SHARED (-EINVAL); TEE
    /// heaps have no mmap (-EINVAL).
    /// </summary>
    public override Errno MmapPrivateWritable => Errno.EINVAL;

    /// <summary>No begin_cpu_access on TEE heaps: dma_buf_begin_cpu_access returns 0.</summary>
    public override Errno SyncResult => Errno.None;

    /// <summary><see cref="Allocate"/> passes fd_flags O_RDWR | O_CLOEXEC.</summary>
    public override int AccessMode => Fcntl.O_RDWR;

    public override bool Serves(TargetKind kind) => kind switch
    {
        TargetKind.Heap or TargetKind.Buffers => true,
        TargetKind.Pool => Restricted,
        _ => false,
    };

    public override Errno Allocate(CaseContext context, ulong length, out SafeFd buffer)
    {
        ArgumentNullException.ThrowIfNull(context);
        SafeFd heap = context.Open(Path);
        return context.HeapAlloc(heap, length, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, out buffer);
    }
}

/// <summary>/dev/teeN.</summary>
public sealed class TeeTarget(string path) : Target(System.IO.Path.GetFileName(path))
{
    public string Path { get; } = path;

    public override bool Serves(TargetKind kind) => kind == TargetKind.Tee;
}

/// <summary>A v4 use case on /dev/teeN: TEE_IOC_RSTMEM_ALLOC buffers.</summary>
public sealed class RstmemTarget(TeeTarget tee, UseCase useCase) : BufferTarget($"{tee.Name}:{useCase.Name}")
{
    public TeeTarget Tee { get; } = tee;

    public UseCase UseCase { get; } = useCase;

    public override bool Restricted => true;

    public override string ExpName => "tee";

    /// <summary>v4 tee_rstmem mmap: the read-only fd passes do_mmap, then the exporter refuses with -EPERM.</summary>
    public override Errno MmapRead => Errno.EPERM;

    /// <summary>A private mapping needs no FMODE_WRITE; within bounds the v4 tee_rstmem mmap refuses with -EPERM.</summary>
    public override Errno MmapPrivateWritable => Errno.EPERM;

    /// <summary>v4 tee_rstmem begin_cpu_access and end_cpu_access: -EPERM.</summary>
    public override Errno SyncResult => Errno.EPERM;

    /// <summary>tee_shm_alloc_rstmem exports with flags 0: a read-only file.</summary>
    public override int AccessMode => Fcntl.O_RDONLY;

    public override bool Serves(TargetKind kind) => kind is TargetKind.Buffers or TargetKind.Pool;

    public override Errno Allocate(CaseContext context, ulong length, out SafeFd buffer)
    {
        ArgumentNullException.ThrowIfNull(context);
        SafeFd tee = context.Open(Tee.Path);
        var data = new tee_ioctl_rstmem_alloc_data { size = length, use_case = UseCase.Id };
        return context.TeeRstmemAlloc(tee, ref data, out buffer);
    }
}

/// <summary>The kernel under test, what was found on it, and the targets chosen.</summary>
public sealed class ConformanceEnvironment : IDisposable
{
    private ConformanceEnvironment(IKernel kernel, IReadOnlyList<Target> targets, IReadOnlyList<string> heaps, KernelGeneration? generation, KernelGeneration? declared, IReadOnlyList<string> found)
    {
        DeclaredGeneration = declared;
        Kernel = kernel;
        Targets = targets;
        AllHeaps = heaps;
        Generation = generation;
        Found = found;
    }

    public IKernel Kernel { get; }

    public IReadOnlyList<Target> Targets { get; }

    /// <summary>Every heap node present, selected or not (TEE cases borrow buffers from them).</summary>
    public IReadOnlyList<string> AllHeaps { get; }

    /// <summary>The restricted-memory generation the devices present: protected,* heaps, restricted,* heaps, or v4 RSTMEM_ALLOC.</summary>
    public KernelGeneration? Generation { get; }

    /// <summary>The generation the kernel is known to be (the model's); null for a real kernel.</summary>
    public KernelGeneration? DeclaredGeneration { get; }

    /// <summary>What was found, one line each, for the report header.</summary>
    public IReadOnlyList<string> Found { get; }

    /// <summary>
    /// Chooses targets. With neither <paramref name="heaps"/> nor <paramref name="tee"/>:
    /// every heap node and the first TEE device present. Throws
    /// <see cref="ArgumentException"/> naming a requested device that is absent.
    /// </summary>
    public static ConformanceEnvironment Discover(IKernel kernel, IReadOnlyList<string> heaps, string? tee, KernelGeneration? declared = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(heaps);
        var found = new List<string> { $"kernel: {kernel.Description}" };

        List<string> present = kernel.ListDirectory(DevicePaths.HeapDirectory).ToList();
        List<string> teeNodes = kernel.ListDirectory(DevicePaths.DeviceDirectory).Where(TeeProbe.IsTeeNode).Order(StringComparer.Ordinal).ToList();
        found.Add(present.Count == 0 ? $"{DevicePaths.HeapDirectory}: no heaps" : $"{DevicePaths.HeapDirectory}: {string.Join(", ", present)}");
        found.Add(teeNodes.Count == 0 ? "/dev/tee*: no TEE device" : $"TEE devices: {string.Join(", ", teeNodes.Select(DevicePaths.Device))}");

        bool explicitTargets = heaps.Count > 0 || tee is not null;
        foreach (string heap in heaps.Where(h => !present.Contains(h)))
        {
            throw new ArgumentException($"--heap '{heap}': no such heap in {DevicePaths.HeapDirectory}; expected one of: {(present.Count == 0 ? "(none present)" : string.Join(", ", present))}");
        }
        string? teePath = null;
        if (tee is not null)
        {
            string name = tee.StartsWith(DevicePaths.DeviceDirectory + "/", StringComparison.Ordinal) ? tee[(DevicePaths.DeviceDirectory.Length + 1)..] : tee;
            if (!TeeProbe.IsTeeNode(name) || !teeNodes.Contains(name))
            {
                throw new ArgumentException($"--tee '{tee}': no such TEE device; expected one of: {(teeNodes.Count == 0 ? "(none present)" : string.Join(", ", teeNodes.Select(DevicePaths.Device)))}");
            }
            teePath = DevicePaths.Device(name);
        }
        else if (!explicitTargets && teeNodes.Count > 0)
        {
            teePath = DevicePaths.Device(teeNodes[0]);
        }

        var targets = new List<Target>();
        foreach (string heap in explicitTargets ? heaps : present)
        {
            targets.Add(new HeapTarget(heap));
        }
        TeeTarget? teeTarget = teePath is null ? null : new TeeTarget(teePath);
        KernelGeneration? generation = DetectGeneration(kernel, present, teeTarget, out IReadOnlyList<UseCase> v4UseCases, found);
        if (teeTarget is not null)
        {
            targets.Add(teeTarget);
            targets.AddRange(v4UseCases.Select(u => new RstmemTarget(teeTarget, u)));
        }
        found.Add($"generation: {(generation is { } g ? g.Name() : "none (no protected,*, restricted,* heap and no v4 TEE restricted memory)")}");
        found.Add($"targets: {(targets.Count == 0 ? "(none)" : string.Join(", ", targets.Select(t => t.Name)))}");
        return new ConformanceEnvironment(kernel, targets, present, generation, declared, found);
    }

    /// <summary>
    /// protected,* heaps mean mainline, restricted,* the v6 series; otherwise
    /// a TEE whose gen_caps has bit 4 and that answers TEE_IOC_RSTMEM_ALLOC of
    /// size 0 with ENOMEM is the v4 series (bit 4 alone is QTEE's OBJREF on mainline).
    /// </summary>
    private static KernelGeneration? DetectGeneration(IKernel kernel, IReadOnlyList<string> heaps, TeeTarget? tee, out IReadOnlyList<UseCase> v4UseCases, List<string> found)
    {
        v4UseCases = [];
        if (tee is not null && kernel.Open(tee.Path, Fcntl.O_RDONLY, out SafeFd fd) == Errno.None)
        {
            using (fd)
            {
                v4UseCases = TeeProbe.V4UseCases(kernel, fd);
                if (v4UseCases.Count > 0)
                {
                    found.Add($"{tee.Path}: v4 TEE_IOC_RSTMEM_ALLOC for {string.Join(", ", v4UseCases)}");
                }
            }
        }
        return KernelGenerations.FromHeapNames(heaps) ?? (v4UseCases.Count > 0 ? KernelGeneration.V4 : null);
    }

    public void Dispose() => (Kernel as IDisposable)?.Dispose();
}
