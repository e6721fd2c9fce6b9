using System.Runtime.InteropServices;
using Rstmem.Daemon.Backends;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Broker;

/// <summary>The backend probe, run against the model of each generation and against kernels that try to fool it.</summary>
public sealed class ProbeTests
{
    /// <summary>A model whose TEE answers TEE_IOC_VERSION with other capabilities (a mainline QTEE, an OP-TEE with OBJREF).</summary>
    private sealed class VersionOverride(ModelKernel inner, uint implId, uint genCaps) : IKernel
    {
        public string Description => inner.Description;

        public ReleaseSignal ProbeReleaseSignal(SafeFd sample) => inner.ProbeReleaseSignal(sample);

        public IReleaseObserver ObserveReleases(ReleaseSignal signal) => inner.ObserveReleases(signal);

        public Errno Open(string path, int flags, out SafeFd fd) => inner.Open(path, flags, out fd);

        public SafeFd AdoptInstalled(int fd) => inner.AdoptInstalled(fd);

        public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
        {
            Errno errno = inner.Ioctl(fd, request, argument, out result);
            if (request == Tee.TEE_IOC_VERSION && errno == Errno.None)
            {
                var version = new tee_ioctl_version_data { impl_id = implId, impl_caps = 0, gen_caps = genCaps };
                MemoryMarshal.Write(argument, in version);
            }
            return errno;
        }

        public Errno LSeek(SafeFd fd, long offset, int whence, out long position) => inner.LSeek(fd, offset, whence, out position);

        public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address) => inner.Mmap(fd, length, prot, flags, offset, out address);

        public Errno Munmap(nint address, nuint length) => inner.Munmap(address, length);

        public Errno ReadFdInfo(SafeFd fd, out string fdinfo) => inner.ReadFdInfo(fd, out fdinfo);

        public IReadOnlyList<string> ListDirectory(string path) => inner.ListDirectory(path);
    }

    [Fact]
    public void A_v4_TEE_is_found_by_its_capability_and_a_size_0_allocation_that_allocates_nothing()
    {
        using ModelKernel model = ModelKit.Model("v4", o => o.UseCases["trusted-ui"].Enabled = false);
        var notes = new List<string>();
        using BackendSelection selection = BackendProbe.ProbeTee(model, notes)!;
        Assert.Equal(KernelGeneration.V4, selection.Generation);
        Assert.Equal(["secure-video", "secure-video-record"], selection.Heaps.All.Select(h => h.Name));
        Assert.Equal(0, model.LiveBuffers);
        Assert.Equal(0, model.PoolCounters("secure-video-record").Lends - model.PoolCounters("secure-video-record").Reclaims);
    }

    [Theory]
    [InlineData(4u, 0x1Du, "QTEE: bit 4 is OBJREF")]
    [InlineData(1u, 0x1Du, "mainline OP-TEE with bit 4 set: RSTMEM_ALLOC is unknown (EINVAL)")]
    [InlineData(1u, 0x0Du, "no bit 4")]
    public void A_mainline_TEE_is_not_taken_for_v4(uint implId, uint genCaps, string why)
    {
        using ModelKernel mainline = ModelKit.Model("mainline");
        var kernel = new VersionOverride(mainline, implId, genCaps);
        var notes = new List<string>();
        Assert.True(BackendProbe.ProbeTee(kernel, notes) is null, why);
        Assert.Contains(notes, n => n.StartsWith("/dev/tee0", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("mainline", KernelGeneration.Mainline, "protected,secure-video")]
    [InlineData("v6", KernelGeneration.V6, "restricted,secure-video")]
    public void Heap_generations_are_told_apart_by_their_names(string generation, KernelGeneration expected, string secureVideo)
    {
        using ModelKernel model = ModelKit.Model(generation);
        using BackendSelection selection = BackendProbe.ProbeHeaps(model, BackendKind.DmaHeap, [], new Dictionary<string, string>(), [])!;
        Assert.Equal(expected, selection.Generation);
        Assert.Equal(secureVideo, selection.Heaps.ByUseCase("secure-video")!.Name);
        Assert.Null(selection.Heaps.ByName("system")); // plain heaps only when configured
    }

    [Fact]
    public void Configured_extra_heaps_are_offered_and_vendor_names_map_to_use_cases()
    {
        using ModelKernel model = ModelKit.Model("v4", o => o.CmaHeapName = "secure_video");
        using BackendSelection selection = BackendProbe.ProbeHeaps(model, BackendKind.DmaHeap, ["system", "secure_video"], HeapAliases.BuiltIn, [])!;
        Assert.Null(selection.Generation);
        Assert.Equal("secure_video", selection.Heaps.ByUseCase("secure-video")!.Name);
        Assert.NotNull(selection.Heaps.ByName("system"));
    }

    [Fact]
    public void A_heap_that_appears_or_goes_is_picked_up_by_a_rescan()
    {
        using ModelKernel model = ModelKit.Model("v6");
        using BackendSelection selection = BackendProbe.ProbeHeaps(model, BackendKind.DmaHeap, [], new Dictionary<string, string>(), [])!;
        int before = selection.Heaps.Count;
        model.RemoveHeap("restricted,trusted-ui");
        var notes = new List<string>();
        selection.Heaps.Refresh(model, [], new Dictionary<string, string>(), notes);
        Assert.Equal(before - 1, selection.Heaps.Count);
        Assert.Contains("/dev/dma_heap/restricted,trusted-ui: gone", notes);
    }

    [Fact]
    public void Auto_falls_back_to_the_model_and_says_why()
    {
        using ModelKernel empty = KernelWithoutRestrictedMemory();
        using BackendSelection selection = BackendProbe.Select("auto", empty, () => ModelKit.Model("mainline"), [], new Dictionary<string, string>());
        Assert.Equal(BackendKind.Model, selection.Kind);
        Assert.Contains("no restricted-memory interface found", selection.Announcement, StringComparison.Ordinal);
        Assert.Throws<StartupException>(() => BackendProbe.Select("tee", empty, () => ModelKit.Model("mainline"), [], new Dictionary<string, string>()));
        Assert.Throws<StartupException>(() => BackendProbe.Select("dma-heap", empty, () => ModelKit.Model("mainline"), [], new Dictionary<string, string>()));
    }

    [Fact]
    public void Real_never_falls_back_to_the_model_and_takes_whichever_interface_the_kernel_has()
    {
        using ModelKernel empty = KernelWithoutRestrictedMemory();
        bool modelBuilt = false;
        StartupException refused = Assert.Throws<StartupException>(() => BackendProbe.Select(BackendNames.Real, empty, () => { modelBuilt = true; return ModelKit.Model("mainline"); }, [], new Dictionary<string, string>()));
        Assert.StartsWith("--backend real: this kernel offers no restricted-memory interface", refused.Message, StringComparison.Ordinal);
        Assert.False(modelBuilt, "--backend real built the model");

        // A kernel with protected heaps (here the model standing in as "the real kernel") is taken as a DMA-heap backend.
        using ModelKernel heaps = ModelKit.Model("mainline");
        using BackendSelection selection = BackendProbe.Select(BackendNames.Real, heaps, () => throw new InvalidOperationException("the model was asked for"), [], new Dictionary<string, string>());
        Assert.Equal(BackendKind.DmaHeap, selection.Kind);
        Assert.Contains(selection.Heaps.All, h => h.Name.StartsWith("protected,", StringComparison.Ordinal));
    }

    /// <summary>A "real kernel" with no TEE use case, no CMA heap and no system heap: nothing to serve.</summary>
    private static ModelKernel KernelWithoutRestrictedMemory()
    {
        ModelKernel empty = ModelKit.Model("mainline", o =>
        {
            o.CmaHeapSize = "0";
            foreach (UseCasePoolOptions pool in o.UseCases.Values)
            {
                pool.Enabled = false;
            }
        });
        empty.RemoveHeap("system");
        return empty;
    }
}
