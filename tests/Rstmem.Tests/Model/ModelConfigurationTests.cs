using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>
/// What the model is configured to be (ModelOptions): which heaps and TEE
/// devices each generation shows, which driver it claims to be, and what a
/// missing shared-memory pool or use-case pool does. No kernel rule fixes
/// these, so the conformance suite cannot check them; docs/kernel-semantics.md
/// cites these tests where it says "model-only".
/// </summary>
public sealed class ModelConfigurationTests
{
    private static Errno RstmemAlloc(ModelKernel model, SafeFd tee, uint useCase)
    {
        var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase };
        Errno errno = model.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out int fd);
        if (errno == Errno.None)
        {
            SafeFd.DangerousAdopt(fd).Dispose();
        }
        return errno;
    }

    [Theory]
    [InlineData("v4", new[] { "reserved", "system" })]
    [InlineData("v6", new[] { "reserved", "restricted,secure-video", "restricted,secure-video-record", "restricted,trusted-ui", "system" })]
    [InlineData("mainline", new[] { "protected,secure-video", "protected,secure-video-record", "protected,trusted-ui", "reserved", "system" })]
    public void Each_generation_lists_its_heaps_and_both_TEE_devices(string generation, string[] expected)
    {
        using ModelKernel model = ModelKit.Model(generation);
        Assert.Equal(expected, model.ListDirectory(DevicePaths.HeapDirectory));
        Assert.Equal(["dma_heap", "tee0", "teepriv0"], model.ListDirectory(DevicePaths.DeviceDirectory));
    }

    [Theory]
    [InlineData("v4", "/dev/tee0", 0x19u)]
    [InlineData("v4", "/dev/teepriv0", 0x1Bu)]
    [InlineData("v6", "/dev/tee0", 0x9u)]
    [InlineData("mainline", "/dev/tee0", 0x9u)]
    [InlineData("mainline", "/dev/teepriv0", 0xBu)]
    public void The_TEE_is_OP_TEE_over_FF_A_without_REG_MEM(string generation, string path, uint genCaps)
    {
        // optee_ffa_get_version: GP | REG_MEM | MEMREF_NULL; the model registers no user
        // memory, so it leaves REG_MEM out (README: known differences). v4 adds RSTMEM.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd tee = model.OpenOrFail(path);
        var version = new tee_ioctl_version_data();
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_VERSION, ref version, out int result));
        Assert.Equal(0, result);
        Assert.Equal(Tee.TEE_IMPL_ID_OPTEE, version.impl_id);
        Assert.Equal(Tee.TEE_OPTEE_CAP_TZ, version.impl_caps);
        Assert.Equal(genCaps, version.gen_caps);
    }

    [Fact]
    public void Shm_alloc_without_a_shm_pool_gives_EINVAL()
    {
        // shm_alloc_helper: teedev->pool == NULL → -EINVAL (a bare protected-memory backend).
        using ModelKernel model = ModelKit.Model("mainline", o => o.TeeShmPool = false);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_shm_alloc_data { size = 4096 };
        Assert.Equal(Errno.EINVAL, model.Ioctl(tee, Tee.TEE_IOC_SHM_ALLOC, ref data, out _));
    }

    [Fact]
    public void A_disabled_use_case_has_no_pool_and_RSTMEM_ALLOC_of_it_gives_EINVAL()
    {
        // optee_rstmem_alloc: no pool for the use case and the secure world offers none → -EINVAL.
        using ModelKernel model = ModelKit.Model("v4", o => o.UseCases["trusted-ui"].Enabled = false);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        Assert.Equal(Errno.EINVAL, RstmemAlloc(model, tee, Tee.TEE_IOC_UC_TRUSTED_UI));
        Assert.Equal(Errno.None, RstmemAlloc(model, tee, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY));
        Assert.Equal([UseCase.SecureVideoPlay, UseCase.SecureVideoRecord], TeeProbe.V4UseCases(model, tee));
    }

    [Fact]
    public void Without_any_pool_v4_does_not_claim_RSTMEM_and_RSTMEM_ALLOC_gives_EINVAL()
    {
        // v4 optee_get_version sets TEE_GEN_CAP_RSTMEM only when the driver has rstmem pools.
        using ModelKernel model = ModelKit.Model("v4", o =>
        {
            foreach (UseCasePoolOptions pool in o.UseCases.Values)
            {
                pool.Enabled = false;
            }
        });
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var version = new tee_ioctl_version_data();
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_VERSION, ref version, out _));
        Assert.Equal(0u, version.gen_caps & Tee.TEE_GEN_CAP_RSTMEM);
        Assert.Equal(Errno.EINVAL, RstmemAlloc(model, tee, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY));
    }
}
