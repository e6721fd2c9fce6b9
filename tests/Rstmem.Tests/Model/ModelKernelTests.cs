using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>
/// The model behind the kernel surface where the conformance suite cannot
/// look: the supplicant device (tee-supplicant holds it on a real board),
/// the system heap's stand-in for RAM (a real kernel would reclaim and
/// OOM-kill before ENOMEM), and descriptors the model did not make.
/// Everything the suite can see is in src/Conformance/Suites.
/// </summary>
public sealed class ModelKernelTests
{
    private static Errno ShmAlloc(ModelKernel model, SafeFd tee, out int id, out SafeFd shm)
    {
        var data = new tee_ioctl_shm_alloc_data { size = 4096 };
        Errno errno = model.Ioctl(tee, Tee.TEE_IOC_SHM_ALLOC, ref data, out int fd);
        shm = SafeFd.DangerousAdopt(errno == Errno.None ? fd : -1);
        id = data.id;
        return errno;
    }

    [Fact]
    public void A_handle_is_looked_up_once_and_a_borrowed_one_every_time()
    {
        // Lookup (fdget) asks statx for the identity, the key of the model's table; an owning handle keeps what was found.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        long start = model.DescriptorLookups;
        Assert.Equal(Errno.None, model.HeapAlloc(heap, 8192, out SafeFd buffer));
        using (buffer)
        {
            Assert.Equal(start, model.DescriptorLookups); // the node was resolved when the model opened it
            Assert.Equal(8192, model.SizeOf(buffer));
            Assert.Equal(start + 1, model.DescriptorLookups); // the adopted descriptor, once
            Assert.Equal(8192, model.SizeOf(buffer));
            Assert.Equal(Errno.None, model.Ioctl(buffer, DmaBuf.DMA_BUF_SET_NAME_B, "kept\0"u8.ToArray(), out _));
            Assert.Equal(start + 1, model.DescriptorLookups);

            using SafeFd borrowed = SafeFd.DangerousBorrow(buffer.DangerousFd);
            Assert.Equal(8192, model.SizeOf(borrowed));
            Assert.Equal(8192, model.SizeOf(borrowed));
            Assert.Equal(start + 3, model.DescriptorLookups); // its owner may close the number: never kept

            using ModelKernel other = ModelKit.Model("mainline");
            Assert.Equal(8192, other.SizeOf(buffer)); // not the other model's file: the real lseek
            Assert.Equal(1, other.DescriptorLookups);
        }
    }

    [Fact]
    public void A_descriptor_adopted_from_the_ioctl_that_installed_it_needs_no_lookup()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        long start = model.DescriptorLookups;
        var data = new dma_heap_allocation_data { len = 8192, fd_flags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC };
        Assert.Equal(Errno.None, model.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _));
        using (SafeFd buffer = model.AdoptInstalled((int)data.fd))
        {
            Assert.Equal(8192, model.SizeOf(buffer));
            Assert.Equal(start, model.DescriptorLookups);
        }

        // Only the last ioctl's: one that failed since installed nothing, and the number is looked up.
        data.fd = 0; // dma_heap_ioctl_allocate: an fd passed in is EINVAL
        Assert.Equal(Errno.None, model.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _));
        int earlier = (int)data.fd;
        var refused = new dma_heap_allocation_data { len = 8192, fd_flags = 0x40000000 };
        Assert.Equal(Errno.EINVAL, model.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref refused, out _));
        using SafeFd adopted = model.AdoptInstalled(earlier);
        Assert.Equal(8192, model.SizeOf(adopted));
        Assert.Equal(start + 1, model.DescriptorLookups);

        // Another model's adoption keeps nothing of this one's file.
        data.fd = 0;
        Assert.Equal(Errno.None, model.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _));
        using ModelKernel other = ModelKit.Model("mainline");
        using SafeFd foreign = other.AdoptInstalled((int)data.fd);
        Assert.Equal(8192, model.SizeOf(foreign));
        Assert.Equal(start + 2, model.DescriptorLookups);
    }

    [Fact]
    public void A_buffer_s_memfd_is_named_after_its_heap_and_export()
    {
        // The model's own label for its stand-in file (a dma-buf links as /dmabuf:, see
        // docs/kernel-semantics.md 3.4): heap name and export number, made without a string.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd buffer = model.HeapAllocOrFail("system", 4096);
        string? link = new FileInfo($"/proc/self/fd/{buffer.DangerousFd}").LinkTarget;
        Assert.Matches(@"^/memfd:system:[0-9]+ \(deleted\)$", link);
    }

    [Fact]
    public void The_supplicant_device_has_its_own_id_space()
    {
        // tee_device_alloc: one teedev->idr per device; /dev/teepriv0 is another device than /dev/tee0.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        using SafeFd priv = model.OpenOrFail("/dev/teepriv0");
        Assert.Equal(Errno.None, ShmAlloc(model, tee, out int first, out SafeFd a));
        Assert.Equal(Errno.None, ShmAlloc(model, tee, out int second, out SafeFd b));
        Assert.Equal(Errno.None, ShmAlloc(model, priv, out int privileged, out SafeFd c));
        Assert.Equal((1, 2, 1), (first, second, privileged));
        foreach (SafeFd fd in new[] { a, b, c })
        {
            fd.Dispose();
        }
    }

    [Fact]
    public void RSTMEM_ALLOC_on_the_supplicant_device_gives_EINVAL()
    {
        // v4: the supplicant device's driver ops have no rstmem_alloc → -EINVAL.
        using ModelKernel model = ModelKit.Model("v4");
        using SafeFd priv = model.OpenOrFail("/dev/teepriv0");
        var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY };
        Assert.Equal(Errno.EINVAL, model.Ioctl(priv, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out _));
    }

    [Theory]
    [InlineData(32UL << 20)]
    [InlineData(ulong.MaxValue - 4095)]
    public void The_system_heap_refuses_more_than_its_configured_memory_with_ENOMEM(ulong length)
    {
        // system_heap_allocate: alloc_pages fails → -ENOMEM. A real kernel reclaims, and may
        // OOM-kill, first; the model's SystemHeapSize stands in for RAM.
        using ModelKernel model = ModelKit.Model("mainline", o => o.SystemHeapSize = "16MiB");
        using SafeFd heap = model.OpenOrFail(DevicePaths.HeapNode("system"));
        Assert.Equal(Errno.ENOMEM, model.HeapAlloc(heap, length, out _));
        using SafeFd fits = model.HeapAllocOrFail("system", 16 << 20);
    }

    [Fact]
    public void Descriptors_the_model_did_not_make_get_the_real_system_calls()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        Assert.Equal(Errno.None, Interop.Sys.TryMemfdCreate("plain", 0, out SafeFd plain));
        using (plain)
        {
            Assert.Equal(Errno.ENOTTY, model.Sync(plain, DmaBuf.DMA_BUF_SYNC_READ));
            Assert.Equal(Errno.None, model.LSeek(plain, 0, Fcntl.SEEK_CUR, out _));
        }
    }
}
