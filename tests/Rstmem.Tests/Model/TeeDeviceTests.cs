using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>drivers/tee/tee_core.c and the v4 series on the model (docs/kernel-semantics.md §4, §6, §8).</summary>
public sealed class TeeDeviceTests
{
    private static Errno RstmemAlloc(ModelKernel model, SafeFd tee, ref tee_ioctl_rstmem_alloc_data data, out SafeFd buffer)
    {
        Errno errno = model.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out int fd);
        buffer = SafeFd.DangerousAdopt(errno == Errno.None ? fd : -1);
        return errno;
    }

    private static Errno ShmAlloc(ModelKernel model, SafeFd tee, ref tee_ioctl_shm_alloc_data data, out SafeFd shm)
    {
        Errno errno = model.Ioctl(tee, Tee.TEE_IOC_SHM_ALLOC, ref data, out int fd);
        shm = SafeFd.DangerousAdopt(errno == Errno.None ? fd : -1);
        return errno;
    }

    [Theory]
    [InlineData("v4", "/dev/tee0", 0x19u)]
    [InlineData("v4", "/dev/teepriv0", 0x1Bu)]
    [InlineData("v6", "/dev/tee0", 0x9u)]
    [InlineData("mainline", "/dev/tee0", 0x9u)]
    [InlineData("mainline", "/dev/teepriv0", 0xBu)]
    public void Version_is_OP_TEE_and_bit_4_is_set_only_by_v4(string generation, string path, uint genCaps)
    {
        // tee_ioctl_version + optee get_version; PRIVILEGED added for teepriv; v4 sets TEE_GEN_CAP_RSTMEM.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd tee = model.OpenOrFail(path);
        var version = new tee_ioctl_version_data();
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_VERSION, ref version, out int result));
        Assert.Equal(0, result);
        Assert.Equal(Tee.TEE_IMPL_ID_OPTEE, version.impl_id);
        Assert.Equal(Tee.TEE_OPTEE_CAP_TZ, version.impl_caps);
        Assert.Equal(genCaps, version.gen_caps);
    }

    public static TheoryData<string, string> UnknownRequests => new()
    {
        // tee_ioctl: switch on the exact value, default → -EINVAL.
        { "mainline", nameof(Tee.TEE_IOC_RSTMEM_ALLOC) },
        { "mainline", nameof(Tee.TEE_IOC_SHM_REGISTER_FD_V1) },
        { "mainline", nameof(Tee.TEE_IOC_OBJECT_INVOKE) },
        { "v6", nameof(Tee.TEE_IOC_RSTMEM_ALLOC) },
        { "v4", nameof(Tee.TEE_IOC_SHM_REGISTER_FD) },
        { "v4", nameof(Tee.TEE_IOC_OBJECT_INVOKE) },
        { "v4", nameof(DmaHeap.DMA_HEAP_IOCTL_ALLOC) },
        { "v4", nameof(DmaBuf.DMA_BUF_IOCTL_SYNC) },
    };

    [Theory]
    [MemberData(nameof(UnknownRequests))]
    public void Requests_the_generation_does_not_know_give_EINVAL(string generation, string request)
    {
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        uint value = Interop.Abi.AbiCatalog.Current.Ioctls.Single(i => i.Key == request).Value;
        Assert.Equal(Errno.EINVAL, model.Ioctl(tee, value, new byte[64], out _));
    }

    [Fact]
    public void The_supplicant_device_opens_once()
    {
        // optee_open: a second open of /dev/teeprivN while one is open → EBUSY.
        using ModelKernel model = ModelKit.Model("mainline");
        SafeFd first = model.OpenOrFail("/dev/teepriv0");
        Assert.Equal(Errno.EBUSY, model.Open("/dev/teepriv0", Fcntl.O_RDWR, out _));
        using (SafeFd second = model.OpenOrFail("/dev/tee0"))
        {
            Assert.False(second.IsInvalid);
        }
        first.Dispose();
        using SafeFd again = model.OpenOrFail("/dev/teepriv0");
    }

    [Fact]
    public void Shm_alloc_rounds_the_size_and_returns_a_mappable_non_cloexec_fd()
    {
        // tee_ioctl_shm_alloc: flags != 0 → EINVAL; writes back id and size; tee_shm_get_fd: O_RDWR, no O_CLOEXEC.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var bad = new tee_ioctl_shm_alloc_data { size = 4096, flags = 1 };
        Assert.Equal(Errno.EINVAL, ShmAlloc(model, tee, ref bad, out _));

        var data = new tee_ioctl_shm_alloc_data { size = 5000 };
        Assert.Equal(Errno.None, ShmAlloc(model, tee, ref data, out SafeFd shm));
        using (shm)
        {
            Assert.Equal((8192UL, 0u, 1), (data.size, data.flags, data.id));
            Assert.False(Interop.Sys.IsCloseOnExec(shm));
            Assert.Equal(Fcntl.O_RDWR, Interop.Sys.GetStatusFlags(shm) & Fcntl.O_ACCMODE);
            Assert.Equal(Errno.None, model.Mmap(shm, 8192, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, 0, out nint address));
            Assert.Equal(Errno.None, model.Munmap(address, 8192));
            Assert.Equal(Errno.ESPIPE, model.LSeek(shm, 0, Fcntl.SEEK_END, out _));
        }
    }

    [Fact]
    public void Shm_alloc_without_a_shm_pool_gives_EINVAL()
    {
        // shm_alloc_helper: teedev->pool == NULL → -EINVAL (the bare protected-memory test backend).
        using ModelKernel model = ModelKit.Model("mainline", o => o.TeeShmPool = false);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_shm_alloc_data { size = 4096 };
        Assert.Equal(Errno.EINVAL, ShmAlloc(model, tee, ref data, out _));
    }

    public static TheoryData<string, ulong, uint, uint, Errno> RstmemRejections => new()
    {
        // v4 tee_ioctl_rstmem_alloc / optee_rstmem_alloc, in check order.
        { "use case RESERVED", 4096, 0, Tee.TEE_IOC_UC_RESERVED, Errno.EINVAL },
        { "flags != 0", 4096, 1, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.EINVAL },
        { "unknown use case 4", 4096, 0, 4, Errno.EINVAL },
        { "size 0", 0, 0, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.ENOMEM },
        { "larger than the pool", 65 << 20, 0, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.ENOMEM },
        { "size wraps when page-aligned", ulong.MaxValue, 0, Tee.TEE_IOC_UC_TRUSTED_UI, Errno.ENOMEM },
    };

    [Theory]
    [MemberData(nameof(RstmemRejections))]
    public void Rstmem_alloc_rejects_in_the_kernel_order(string why, ulong size, uint flags, uint useCase, Errno expected)
    {
        using ModelKernel model = ModelKit.Model("v4");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_rstmem_alloc_data { size = size, flags = flags, use_case = useCase, id = -7 };
        Assert.True(expected == RstmemAlloc(model, tee, ref data, out _), why);
        Assert.Equal(-7, data.id);
    }

    [Fact]
    public void Rstmem_alloc_writes_back_only_the_id_and_returns_a_read_only_cloexec_dma_buf()
    {
        using ModelKernel model = ModelKit.Model("v4");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_rstmem_alloc_data { size = 5000, use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY };
        Assert.Equal(Errno.None, RstmemAlloc(model, tee, ref data, out SafeFd buffer));
        using (buffer)
        {
            Assert.Equal((5000UL, 0u, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, 1), (data.size, data.flags, data.use_case, data.id));
            Assert.True(Interop.Sys.IsCloseOnExec(buffer));
            Assert.Equal(Fcntl.O_RDONLY, Interop.Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE);
            Assert.Equal(8192, model.SizeOf(buffer));
        }
    }

    [Fact]
    public void Rstmem_alloc_of_a_disabled_use_case_or_on_the_supplicant_device_gives_EINVAL()
    {
        using ModelKernel model = ModelKit.Model("v4", o => o.UseCases["trusted-ui"].Enabled = false);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = Tee.TEE_IOC_UC_TRUSTED_UI };
        Assert.Equal(Errno.EINVAL, RstmemAlloc(model, tee, ref data, out _));
        using SafeFd priv = model.OpenOrFail("/dev/teepriv0");
        data.use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY;
        Assert.Equal(Errno.EINVAL, RstmemAlloc(model, priv, ref data, out _));
    }

    [Fact]
    public void Rstmem_without_any_pool_is_not_advertised_and_gives_EINVAL()
    {
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
        var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY };
        Assert.Equal(Errno.EINVAL, RstmemAlloc(model, tee, ref data, out _));
    }

    [Fact]
    public void Ids_are_one_lowest_free_space_per_device_shared_by_shm_and_rstmem()
    {
        // teedev->idr: idr_alloc(.., 1, 0) for SHM_ALLOC and RSTMEM_ALLOC alike; freed at the last reference.
        using ModelKernel model = ModelKit.Model("v4");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var shmData = new tee_ioctl_shm_alloc_data { size = 4096 };
        Assert.Equal(Errno.None, ShmAlloc(model, tee, ref shmData, out SafeFd shm));
        var first = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY };
        Assert.Equal(Errno.None, RstmemAlloc(model, tee, ref first, out SafeFd a));
        var second = first;
        Assert.Equal(Errno.None, RstmemAlloc(model, tee, ref second, out SafeFd b));
        Assert.Equal((1, 2, 3), (shmData.id, first.id, second.id));

        a.Dispose();
        var third = first;
        Assert.Equal(Errno.None, RstmemAlloc(model, tee, ref third, out SafeFd c));
        Assert.Equal(2, third.id);

        // The supplicant device has its own id space.
        using SafeFd priv = model.OpenOrFail("/dev/teepriv0");
        var privShm = new tee_ioctl_shm_alloc_data { size = 4096 };
        Assert.Equal(Errno.None, ShmAlloc(model, priv, ref privShm, out SafeFd other));
        Assert.Equal(1, privShm.id);
        foreach (SafeFd fd in new[] { shm, b, c, other })
        {
            fd.Dispose();
        }
    }

    private static Errno RegisterFd(ModelKernel model, SafeFd tee, long fd, out tee_ioctl_shm_register_fd_data data, out SafeFd shm, uint flags = 0)
    {
        data = new tee_ioctl_shm_register_fd_data { fd = fd, flags = flags };
        Errno errno = model.Ioctl(tee, Tee.TEE_IOC_SHM_REGISTER_FD, ref data, out int result);
        shm = SafeFd.DangerousAdopt(errno == Errno.None ? result : -1);
        return errno;
    }

    [Theory]
    [InlineData("mainline", "protected,secure-video")]
    [InlineData("v6", "restricted,trusted-ui")]
    public void Register_fd_imports_a_protected_buffer(string generation, string heap)
    {
        // tee_ioctl_shm_register_fd: writes back id, flags = TEE_SHM_DMA_BUF (0x10), page-aligned size;
        // returns an O_RDWR fd without O_CLOEXEC that refuses mmap (tee_shm_fop_mmap).
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        using SafeFd buffer = model.HeapAllocOrFail(heap, 5000);

        Assert.Equal(Errno.None, RegisterFd(model, tee, buffer.DangerousFd, out var data, out SafeFd shm));
        using (shm)
        {
            Assert.Equal((1, 8192UL, 0x10u), (data.id, data.size, data.flags));
            Assert.Equal(buffer.DangerousFd, data.fd);
            Assert.False(Interop.Sys.IsCloseOnExec(shm));
            Assert.Equal(Errno.EINVAL, model.Mmap(shm, 4096, Mman.PROT_READ, Mman.MAP_SHARED, 0, out _));
            Assert.Equal("2", model.FdInfo(buffer)["count"]);

            Assert.Equal(Errno.None, RegisterFd(model, tee, buffer.DangerousFd, out var again, out SafeFd shm2));
            Assert.Equal(2, again.id);
            shm2.Dispose();
        }
    }

    [Fact]
    public void Register_fd_refuses_everything_but_its_own_protected_buffers_with_EINVAL()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        using SafeFd priv = model.OpenOrFail("/dev/teepriv0");
        using SafeFd system = model.HeapAllocOrFail("system", 4096);
        using SafeFd isProtected = model.HeapAllocOrFail("protected,secure-video", 4096);
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("not-a-dma-buf", 0, out SafeFd memfd));
        using (memfd)
        {
            Assert.Equal(Errno.EINVAL, RegisterFd(model, tee, isProtected.DangerousFd, out _, out _, flags: 1));
            Assert.Equal(Errno.EINVAL, RegisterFd(model, tee, system.DangerousFd, out _, out _));
            Assert.Equal(Errno.EINVAL, RegisterFd(model, tee, memfd.DangerousFd, out _, out _));
            Assert.Equal(Errno.EINVAL, RegisterFd(model, tee, 987_654, out _, out _));
            Assert.Equal(Errno.EINVAL, RegisterFd(model, tee, -1, out _, out _));
            Assert.Equal(Errno.EINVAL, RegisterFd(model, priv, isProtected.DangerousFd, out _, out _));
        }
    }

    [Fact]
    public void A_registration_outlives_the_dma_buf_and_holds_its_memory()
    {
        // tee_shm_register_fd holds a dma_buf_get reference until the tee_shm is released.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        long free = model.PoolCounters("secure-video").FreeBytes;
        SafeFd buffer = model.HeapAllocOrFail("protected,secure-video", 65536);
        Assert.Equal(Errno.None, RegisterFd(model, tee, buffer.DangerousFd, out _, out SafeFd shm));

        buffer.Dispose();
        Assert.Equal(free - 65536, model.PoolCounters("secure-video").FreeBytes);

        shm.Dispose();
        ModelKit.AssertFree(model, "secure-video", free);
    }

    [Fact]
    public void The_older_32_byte_register_fd_is_the_v4_era_layout()
    {
        using ModelKernel model = ModelKit.Model("v4");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        using SafeFd buffer = DmaBufTests.Allocate(model, "rstmem:secure-video", 5000);
        var data = new tee_ioctl_shm_register_fd_data_v1 { fd = buffer.DangerousFd };
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_SHM_REGISTER_FD_V1, ref data, out int fd));
        using SafeFd shm = SafeFd.DangerousAdopt(fd);
        Assert.Equal((2, 8192UL, 0x10u), (data.id, data.size, data.flags));
    }
}
