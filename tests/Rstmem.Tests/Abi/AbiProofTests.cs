using System.Text.Json;
using Rstmem.Interop.Abi;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Abi;

/// <summary>
/// The C# uapi against the real C headers: the machine's linux-libc-dev and
/// glibc headers for x86_64, Debian's cross headers for arm64 and armhf (run
/// under qemu-user), plus src/Interop/include for the never-released definitions.
/// i386 is not compiled here (Debian's gcc-multilib conflicts with the cross
/// compilers); its one difference is pinned by a literal in IoctlEncodingTests.
/// </summary>
public sealed class AbiProofTests
{
    private static readonly AbiCatalog Catalog = AbiCatalog.Current;

    [Theory]
    [InlineData("x86_64")]
    [InlineData("aarch64")]
    [InlineData("arm")]
    public void Every_declaration_matches_the_C_headers_of(string arch)
    {
        Toolchain toolchain = Toolchain.ByName(arch);
        AbiDescription fromC = CProbe.Run(Catalog, toolchain);
        AbiDescription fromCSharp = Catalog.Describe(toolchain.Target);

        List<string> differences = CProbe.Differences(fromC, fromCSharp);

        Assert.True(differences.Count == 0, $"{differences.Count} ABI differences on {arch}:\n" + string.Join('\n', differences));
        Assert.Equal(Catalog.Ioctls.Count, fromC.Ioctls.Count);
        Assert.Equal(Catalog.Structs.Count, fromC.Structs.Count);
        Assert.Equal(Catalog.Constants.Count, fromC.Constants.Count);
    }

    [Fact]
    public void The_C_layout_rules_for_the_host_are_what_the_runtime_does()
    {
        AbiDescription rules = Catalog.Describe(AbiTarget.Host);
        AbiDescription runtime = Catalog.DescribeRuntime();

        List<string> differences = CProbe.Differences(rules, runtime);

        Assert.True(differences.Count == 0, string.Join('\n', differences));
    }

    [Fact]
    public void Rstmemd_abi_json_agrees_with_C_compiled_against_the_system_headers()
    {
        ProcessResult abi = ProcessRunner.Rstmemd("abi", "--json");
        Assert.True(abi.ExitCode == 0, abi.ToString());

        using (JsonDocument document = JsonDocument.Parse(abi.Stdout))
        {
            Assert.Equal(["arch", "ioctls", "structs"], document.RootElement.EnumerateObject().Select(p => p.Name));
        }
        AbiDescription printed = CProbe.Parse(abi.Stdout);
        AbiDescription fromC = CProbe.Run(Catalog, Toolchain.Native);

        List<string> differences = CProbe.Differences(fromC, printed, compareConstants: false);

        Assert.True(differences.Count == 0, string.Join('\n', differences));
        Assert.Equal(0x800CA400u, printed.Ioctls["TEE_IOC_VERSION"]);
        Assert.Equal(
            [new("len", 0), new("fd", 8), new("fd_flags", 12), new("heap_flags", 16)],
            printed.Structs["dma_heap_allocation_data"].Offsets);
        Assert.Equal(24, printed.Structs["dma_heap_allocation_data"].Size);
    }

    [Fact]
    public void The_catalog_holds_everything_the_daemon_relies_on()
    {
        string[] ioctls =
        [
            "TEE_IOC_VERSION", "TEE_IOC_SHM_ALLOC", "TEE_IOC_OPEN_SESSION", "TEE_IOC_INVOKE", "TEE_IOC_CANCEL",
            "TEE_IOC_CLOSE_SESSION", "TEE_IOC_SUPPL_RECV", "TEE_IOC_SUPPL_SEND", "TEE_IOC_SHM_REGISTER",
            "TEE_IOC_SHM_REGISTER_FD", "TEE_IOC_SHM_REGISTER_FD_V1", "TEE_IOC_RSTMEM_ALLOC", "TEE_IOC_OBJECT_INVOKE",
            "DMA_HEAP_IOCTL_ALLOC", "DMA_BUF_IOCTL_SYNC", "DMA_BUF_SET_NAME", "DMA_BUF_SET_NAME_A", "DMA_BUF_SET_NAME_B",
        ];
        string[] structs =
        [
            "tee_ioctl_version_data", "tee_ioctl_shm_alloc_data", "tee_ioctl_shm_register_data",
            "tee_ioctl_shm_register_fd_data", "tee_ioctl_shm_register_fd_data_v1", "tee_ioctl_rstmem_alloc_data",
            "tee_ioctl_buf_data", "tee_ioctl_param", "tee_ioctl_open_session_arg", "tee_ioctl_invoke_arg",
            "dma_heap_allocation_data", "dma_buf_sync", "msghdr", "cmsghdr", "ucred", "inotify_event",
        ];
        string[] constants =
        [
            "TEE_GEN_CAP_GP", "TEE_GEN_CAP_PRIVILEGED", "TEE_GEN_CAP_REG_MEM", "TEE_GEN_CAP_MEMREF_NULL",
            "TEE_GEN_CAP_RSTMEM", "TEE_GEN_CAP_OBJREF", "TEE_IMPL_ID_OPTEE", "TEE_IMPL_ID_AMDTEE", "TEE_IMPL_ID_TSTEE",
            "TEE_IMPL_ID_QTEE", "TEE_OPTEE_CAP_TZ", "TEE_IOC_UC_RESERVED", "TEE_IOC_UC_SECURE_VIDEO_PLAY",
            "TEE_IOC_UC_TRUSTED_UI", "TEE_IOC_UC_SECURE_VIDEO_RECORD", "DMA_HEAP_VALID_FD_FLAGS",
            "DMA_HEAP_VALID_HEAP_FLAGS", "DMA_BUF_SYNC_READ", "DMA_BUF_SYNC_WRITE", "DMA_BUF_SYNC_RW",
            "DMA_BUF_SYNC_END", "DMA_BUF_SYNC_VALID_FLAGS_MASK", "DMA_BUF_NAME_LEN", "EINVAL", "ENOMEM", "ENOTTY",
        ];

        Assert.Empty(ioctls.Except(Catalog.Ioctls.Select(i => i.Key)));
        Assert.Empty(structs.Except(Catalog.Structs.Select(s => s.Name)));
        Assert.Empty(constants.Except(Catalog.Constants.Select(c => c.Key)));
    }

    [Fact]
    public void A_wrong_declaration_is_reported()
    {
        // The comparison must see a wrong value, a missing field and a missing ioctl.
        AbiDescription truth = Catalog.Describe(AbiTarget.X64);
        var ioctls = truth.Ioctls.ToDictionary();
        ioctls["TEE_IOC_VERSION"] ^= 1;
        ioctls.Remove("DMA_BUF_IOCTL_SYNC");
        var structs = truth.Structs.ToDictionary();
        StructLayoutDescription heap = structs["dma_heap_allocation_data"];
        structs["dma_heap_allocation_data"] = heap with { Offsets = heap.Offsets.Where(o => o.Key != "fd_flags").ToList() };
        var constants = truth.Constants.ToDictionary();
        constants["EINVAL"] = 23;
        var wrong = truth with { Ioctls = ioctls, Structs = structs, Constants = constants };

        List<string> differences = CProbe.Differences(truth, wrong);

        Assert.Contains(differences, d => d.StartsWith("ioctl TEE_IOC_VERSION: C 0x800CA400, C# 0x800CA401", StringComparison.Ordinal));
        Assert.Contains(differences, d => d.StartsWith("ioctl DMA_BUF_IOCTL_SYNC: reported by C, unknown to C#", StringComparison.Ordinal));
        Assert.Contains(differences, d => d.StartsWith("struct dma_heap_allocation_data.fd_flags: reported by C", StringComparison.Ordinal));
        Assert.Contains(differences, d => d.StartsWith("constant EINVAL", StringComparison.Ordinal));
        Assert.Equal(4, differences.Count);
    }

    [Fact]
    public void The_probe_covers_every_declaration_in_the_uapi_namespace()
    {
        // Reflection finds them; this guards against a struct the catalog would skip (nested, generic).
        Type[] declared = typeof(Tee).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(Tee).Namespace && t.IsValueType && !t.IsEnum && !t.Name.Contains('<', StringComparison.Ordinal))
            .ToArray();
        Assert.All(declared, t => Assert.Contains(t, Catalog.Structs));
        string source = CProbe.Source(Catalog);
        Assert.All(Catalog.Structs, t => Assert.Contains($"sizeof(struct {t.Name})", source, StringComparison.Ordinal));
    }
}
