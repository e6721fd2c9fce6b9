using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Backends;

/// <summary>Startup cannot go on: the message says why, for the log and stderr.</summary>
public sealed class StartupException : Exception
{
    public StartupException(string message) : base(message) { }

    public StartupException() { }

    public StartupException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>The kernel rstmemd serves from and what it offers.</summary>
public sealed class BackendSelection(IKernel kernel, BackendKind kind, KernelGeneration? generation, IReadOnlyList<string> notes, HeapCatalog heaps) : IDisposable
{
    public IKernel Kernel { get; } = kernel;

    public BackendKind Kind { get; } = kind;

    public KernelGeneration? Generation { get; } = generation;

    /// <summary>What the probe looked at and decided, one line each.</summary>
    public IReadOnlyList<string> Notes { get; } = notes;

    public HeapCatalog Heaps { get; } = heaps;

    /// <summary>How this kernel reveals a buffer's last close: probed once by <see cref="BackendProbe.Select"/>.</summary>
    public ReleaseSignal ReleaseSignal { get; internal set; } = ReleaseSignal.ReferenceCount;

    /// <summary>The one line that says what is being served.</summary>
    public string Announcement =>
        (Kind == BackendKind.Model
            ? $"serving the {Kernel.Description}, {Heaps.Count} heap(s)"
            : $"serving {Heaps.Count} heap(s) from {Kernel.Description} via {KindName}" + (Generation is { } g ? $", generation {g.Name()}" : ", no restricted-memory generation")) +
        $": {string.Join(", ", Heaps.All.Select(h => h.UseCase is null ? h.Name : $"{h.Name} ({h.UseCase})"))}" +
        (Reason is null ? "" : $" ({Reason})") +
        (ReleaseSignal == ReleaseSignal.CloseEvents ? "; releases seen by close events" : "; releases seen by polling reference counts (fdinfo count)");

    /// <summary>Why this backend was chosen, when that is not obvious (the model fallback).</summary>
    public string? Reason { get; internal set; }

    public string KindName => Kind switch
    {
        BackendKind.Model => "the reference kernel model",
        BackendKind.Tee => "TEE_IOC_RSTMEM_ALLOC (v4)",
        _ => "DMA heaps",
    };

    public void Dispose()
    {
        Heaps.Dispose();
        (Kernel as IDisposable)?.Dispose();
    }
}

/// <summary>
/// Finds what the kernel offers, without allocating anything it cannot free:
/// v4 TEE devices (TEE_IOC_VERSION, then a size-0 TEE_IOC_RSTMEM_ALLOC, which
/// a v4 kernel answers with ENOMEM before allocating and any other kernel with
/// EINVAL), mainline protected,* heaps, v6 restricted,* heaps and configured
/// extra heaps; otherwise the reference model.
/// </summary>
public static class BackendProbe
{
    public static BackendSelection Select(string backend, IKernel real, Func<ModelKernel> model, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases)
    {
        ArgumentNullException.ThrowIfNull(model);
        var notes = new List<string>();
        BackendSelection selection = Choose(backend, real, model, extraHeaps, aliases, notes);
        selection.ReleaseSignal = ProbeReleaseSignal(selection, notes);
        return selection;
    }

    /// <summary>
    /// How the chosen kernel reveals a buffer's last close, asked once with
    /// one page from the first heap (allocated and closed here). Without a
    /// probe buffer, reference counting: it works on every kernel, only slower.
    /// </summary>
    private static ReleaseSignal ProbeReleaseSignal(BackendSelection selection, List<string> notes)
    {
        HeapProvider? sample = selection.Heaps.All.Count > 0 ? selection.Heaps.All[0] : null;
        SafeFd probe = SafeFd.Invalid;
        Errno errno = sample is null ? Errno.ENODEV : sample.Allocate(sample.PageSize, [], out probe, out _);
        if (errno != Errno.None)
        {
            notes.Add($"release detection: no probe buffer ({errno.Name()}); polling buffer reference counts (fdinfo count)");
            return ReleaseSignal.ReferenceCount;
        }
        ReleaseSignal signal = selection.Kernel.ProbeReleaseSignal(probe);
        notes.Add(signal == ReleaseSignal.CloseEvents
            ? $"release detection: close events (the last close of a probe buffer from {sample!.Name} was reported)"
            : $"release detection: this kernel reports no close of a dma-buf (probe buffer from {sample!.Name}); polling buffer reference counts (fdinfo count)");
        return signal;
    }

    private static BackendSelection Choose(string backend, IKernel real, Func<ModelKernel> model, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases, List<string> notes)
    {
        switch (backend)
        {
            case BackendNames.Model:
                return ForModel(model(), notes, "--backend model");
            case BackendNames.Tee:
                return WithExtras(ProbeTee(real, notes), real, extraHeaps, aliases, notes) ?? throw new StartupException(
                    "--backend tee: no TEE device speaks TEE_IOC_RSTMEM_ALLOC (the v4 series): " + string.Join("; ", notes));
            case BackendNames.DmaHeap:
                return ProbeHeaps(real, BackendKind.DmaHeap, extraHeaps, aliases, notes) ?? throw new StartupException(
                    $"--backend dma-heap: no protected,*, restricted,* or configured heap under {DevicePaths.HeapDirectory}: " + string.Join("; ", notes));
            case BackendNames.Auto:
                return ProbeReal(real, extraHeaps, aliases, notes)
                    ?? ForModel(model(), notes, "no restricted-memory interface found on this kernel");
            case BackendNames.Real:
                // Serving the model's ordinary memory as "protected" on a board whose TEE driver
                // did not load would hide the fault from every player: refuse instead.
                return ProbeReal(real, extraHeaps, aliases, notes) ?? throw new StartupException(
                    "--backend real: this kernel offers no restricted-memory interface (no TEE device speaking TEE_IOC_RSTMEM_ALLOC, " +
                    $"no protected,*, restricted,* or configured heap under {DevicePaths.HeapDirectory}): " + string.Join("; ", notes));
            default:
                throw new StartupException($"Backend: '{backend}' is not a backend; expected {BackendNames.Expected}");
        }
    }

    private static BackendSelection? ProbeReal(IKernel real, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases, List<string> notes) =>
        WithExtras(ProbeTee(real, notes), real, extraHeaps, aliases, notes)
        ?? ProbeHeaps(real, BackendKind.DmaHeap, extraHeaps, aliases, notes);

    private static BackendSelection ForModel(ModelKernel model, List<string> notes, string why)
    {
        notes.Add(why);
        BackendSelection? selection = model.Generation == KernelGeneration.V4
            ? WithExtras(ProbeTee(model, notes, BackendKind.Model), model, model.ListDirectory(DevicePaths.HeapDirectory), new Dictionary<string, string>(), notes)
            : ProbeHeaps(model, BackendKind.Model, model.ListDirectory(DevicePaths.HeapDirectory), new Dictionary<string, string>(), notes);
        if (selection is null)
        {
            throw new StartupException("the reference model offers no heap: " + string.Join("; ", notes));
        }
        selection.Reason = why;
        return selection;
    }

    /// <summary>A v4 selection also offers the heap nodes configured (the model: all of its plain heaps).</summary>
    private static BackendSelection? WithExtras(BackendSelection? selection, IKernel kernel, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases, List<string> notes)
    {
        selection?.Heaps.Refresh(kernel, extraHeaps, aliases, notes);
        return selection;
    }

    /// <summary>A v4 TEE: gen_caps bit 4, not QTEE (where bit 4 is OBJREF), and RSTMEM_ALLOC of size 0 answering ENOMEM.</summary>
    public static BackendSelection? ProbeTee(IKernel kernel, List<string> notes, BackendKind kind = BackendKind.Tee)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(notes);
        foreach (string name in kernel.ListDirectory(DevicePaths.DeviceDirectory).Where(TeeProbe.IsTeeNode))
        {
            string path = DevicePaths.Device(name);
            Errno errno = kernel.Open(path, Fcntl.O_RDWR, out SafeFd tee);
            if (errno != Errno.None)
            {
                notes.Add($"{path}: open: {errno.Describe()}");
                continue;
            }
            var version = new tee_ioctl_version_data();
            errno = kernel.Ioctl(tee, Tee.TEE_IOC_VERSION, ref version, out _);
            if (errno != Errno.None || !TeeProbe.ClaimsV4Rstmem(version))
            {
                notes.Add(errno != Errno.None
                    ? $"{path}: TEE_IOC_VERSION: {errno.Describe()}"
                    : $"{path}: impl_id {version.impl_id}, gen_caps 0x{version.gen_caps:x}: no v4 restricted memory" +
                      (version.impl_id == Tee.TEE_IMPL_ID_QTEE ? " (bit 4 is QTEE's OBJREF)" : ""));
                tee.Dispose();
                continue;
            }
            IReadOnlyList<UseCase> useCases = TeeProbe.V4UseCases(kernel, tee, version);
            if (useCases.Count == 0)
            {
                notes.Add($"{path}: gen_caps bit 4 is set but TEE_IOC_RSTMEM_ALLOC answers like an unknown request: not v4");
                tee.Dispose();
                continue;
            }
            notes.Add($"{path}: v4 restricted memory for {string.Join(", ", useCases)}");
            var catalog = new HeapCatalog();
            foreach (UseCase useCase in useCases)
            {
                catalog.Add(new TeeRstmemProvider(kernel, tee, useCase));
            }
            catalog.Own(tee);
            return new BackendSelection(kernel, kind, KernelGeneration.V4, notes, catalog);
        }
        return null;
    }

    /// <summary>Heap nodes: mainline protected,*, else v6 restricted,*, plus the configured extras present.</summary>
    public static BackendSelection? ProbeHeaps(IKernel kernel, BackendKind kind, IReadOnlyCollection<string> extraHeaps, IReadOnlyDictionary<string, string> aliases, List<string> notes)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(notes);
        var catalog = new HeapCatalog();
        KernelGeneration? generation = catalog.Refresh(kernel, extraHeaps, aliases, notes);
        if (catalog.Count == 0)
        {
            notes.Add($"{DevicePaths.HeapDirectory}: no protected,*, restricted,* or configured heap");
            catalog.Dispose();
            return null;
        }
        return new BackendSelection(kernel, kind, generation, notes, catalog);
    }
}
