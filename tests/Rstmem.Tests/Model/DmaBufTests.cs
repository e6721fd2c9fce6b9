using System.Runtime.InteropServices;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>drivers/dma-buf/dma-buf.c file operations on model buffers (docs/kernel-semantics.md §3).</summary>
public sealed unsafe class DmaBufTests
{
    /// <summary>One buffer of each exporter kind: (generation, heap or "rstmem:&lt;use case&gt;").</summary>
    public static TheoryData<string, string> Exporters => new()
    {
        { "mainline", "system" },
        { "mainline", "reserved" },
        { "mainline", "protected,secure-video" },
        { "v6", "restricted,trusted-ui" },
        { "v4", "rstmem:secure-video" },
    };

    internal static SafeFd Allocate(ModelKernel model, string source, ulong len = 8192)
    {
        if (!source.StartsWith("rstmem:", StringComparison.Ordinal))
        {
            return model.HeapAllocOrFail(source, len);
        }
        using SafeFd tee = model.OpenOrFail("/dev/tee0");
        var data = new tee_ioctl_rstmem_alloc_data { size = len, use_case = UseCase.ByName(source["rstmem:".Length..])!.Id };
        Assert.Equal(Errno.None, model.Ioctl(tee, Tee.TEE_IOC_RSTMEM_ALLOC, ref data, out int fd));
        return SafeFd.DangerousAdopt(fd);
    }

    [Theory]
    [MemberData(nameof(Exporters))]
    public void Lseek_allows_only_offset_0_from_SEEK_SET_or_SEEK_END(string generation, string source)
    {
        // dma_buf_llseek: whence other than SEEK_SET/SEEK_END → EINVAL; offset != 0 → EINVAL.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source);
        Assert.Equal(8192, model.SizeOf(buffer));
        Assert.Equal(Errno.None, model.LSeek(buffer, 0, Fcntl.SEEK_SET, out long start));
        Assert.Equal(0, start);
        Assert.Equal(Errno.EINVAL, model.LSeek(buffer, 0, Fcntl.SEEK_CUR, out _));
        Assert.Equal(Errno.EINVAL, model.LSeek(buffer, 4096, Fcntl.SEEK_SET, out _));
        Assert.Equal(Errno.EINVAL, model.LSeek(buffer, -1, Fcntl.SEEK_END, out _));
        Assert.Equal(Errno.EINVAL, model.LSeek(buffer, 0, Fcntl.SEEK_DATA, out _));
    }

    [Theory]
    [MemberData(nameof(Exporters))]
    public void Sync_validates_flags_then_asks_the_exporter(string generation, string source)
    {
        // dma_buf_ioctl(DMA_BUF_IOCTL_SYNC): flags & ~VALID_FLAGS_MASK → EINVAL; (flags & RW) == 0 → EINVAL;
        // then begin/end_cpu_access: v4 tee_rstmem → EPERM; TEE heaps have no hook → 0; system/CMA → 0.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source);
        Errno access = source.StartsWith("rstmem:", StringComparison.Ordinal) ? Errno.EPERM : Errno.None;
        Assert.Equal(Errno.EINVAL, model.Sync(buffer, 0));
        Assert.Equal(Errno.EINVAL, model.Sync(buffer, DmaBuf.DMA_BUF_SYNC_END));
        Assert.Equal(Errno.EINVAL, model.Sync(buffer, DmaBuf.DMA_BUF_SYNC_READ | 8));
        Assert.Equal(access, model.Sync(buffer, DmaBuf.DMA_BUF_SYNC_READ));
        Assert.Equal(access, model.Sync(buffer, DmaBuf.DMA_BUF_SYNC_RW | DmaBuf.DMA_BUF_SYNC_END));
        Assert.Equal(Errno.EFAULT, model.Ioctl(buffer, DmaBuf.DMA_BUF_IOCTL_SYNC, new byte[4], out _));
    }

    [Theory]
    [MemberData(nameof(Exporters))]
    public void Set_name_takes_at_most_31_characters_and_shows_in_fdinfo(string generation, string source)
    {
        // dma_buf_set_name: strndup_user(arg, DMA_BUF_NAME_LEN): ≥ 32 chars → EINVAL; NULL → EFAULT; "" accepted.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source);
        Assert.False(model.FdInfo(buffer).ContainsKey("name"));

        Assert.Equal(Errno.None, model.SetName(buffer, new string('n', 31)));
        Assert.Equal(new string('n', 31), model.FdInfo(buffer)["name"]);
        Assert.Equal(Errno.EINVAL, model.SetName(buffer, new string('n', 32)));
        Assert.Equal(Errno.None, model.SetName(buffer, "svp:1234:7", DmaBuf.DMA_BUF_SET_NAME_A));
        Assert.Equal("svp:1234:7", model.FdInfo(buffer)["name"]);
        Assert.Equal(Errno.None, model.SetName(buffer, ""));
        Assert.Equal("", model.FdInfo(buffer)["name"]);
        Assert.Equal(Errno.EFAULT, model.Ioctl(buffer, DmaBuf.DMA_BUF_SET_NAME_B, [], out _));
    }

    [Theory]
    [InlineData("mainline", "system", "system")]
    [InlineData("mainline", "reserved", "reserved")]
    [InlineData("mainline", "protected,secure-video", "tee")]
    [InlineData("v6", "restricted,secure-video-record", "tee")]
    [InlineData("v4", "rstmem:trusted-ui", "tee")]
    public void Fdinfo_shows_size_count_and_exporter(string generation, string source, string expName)
    {
        // dma_buf_show_fdinfo: size, count (file references − procfs's own), exp_name.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source, 5000);
        IReadOnlyDictionary<string, string> info = model.FdInfo(buffer);
        Assert.Equal("8192", info["size"]);
        Assert.Equal("1", info["count"]);
        Assert.Equal(expName, info["exp_name"]);
        Assert.True(info.ContainsKey("pos") && info.ContainsKey("flags") && info.ContainsKey("ino"));

        Assert.Equal(Errno.None, Interop.Sys.TryDuplicate(buffer, out SafeFd copy));
        using (copy)
        {
            Assert.Equal("2", model.FdInfo(buffer)["count"]);
        }
    }

    [Theory]
    [MemberData(nameof(Exporters))]
    public void Unknown_dma_buf_ioctls_give_ENOTTY(string generation, string source)
    {
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source);
        Assert.Equal(Errno.ENOTTY, model.Ioctl(buffer, Ioc._IOC(Ioc._IOC_WRITE, 'b', 9, 8), new byte[8], out _));
        Assert.Equal(Errno.ENOTTY, model.Ioctl(buffer, Tee.TEE_IOC_VERSION, new byte[12], out _));
    }

    public static TheoryData<string, string, int, int, Errno> MmapCases => new()
    {
        // dma_buf_mmap_internal after do_mmap's access checks (docs/kernel-semantics.md §3.6).
        { "mainline", "system", Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, Errno.None },
        { "mainline", "reserved", Mman.PROT_READ, Mman.MAP_SHARED, Errno.None },
        { "mainline", "reserved", Mman.PROT_READ, Mman.MAP_PRIVATE, Errno.EINVAL },
        { "mainline", "protected,secure-video", Mman.PROT_READ, Mman.MAP_SHARED, Errno.EINVAL },
        { "v6", "restricted,trusted-ui", Mman.PROT_READ, Mman.MAP_SHARED, Errno.EINVAL },
        { "v4", "rstmem:secure-video", Mman.PROT_READ, Mman.MAP_SHARED, Errno.EPERM },
        { "v4", "rstmem:secure-video", Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, Errno.EACCES },
    };

    [Theory]
    [MemberData(nameof(MmapCases))]
    public void Mmap_follows_the_exporter(string generation, string source, int prot, int flags, Errno expected)
    {
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = Allocate(model, source);
        Errno errno = model.Mmap(buffer, 8192, prot, flags, 0, out nint address);
        Assert.Equal(expected, errno);
        if (errno == Errno.None)
        {
            // Heap memory arrives zeroed.
            Assert.All(new Span<byte>((void*)address, 8192).ToArray(), b => Assert.Equal(0, b));
            Assert.Equal(Errno.None, model.Munmap(address, 8192));
        }
    }

    [Fact]
    public void Mmap_beyond_the_buffer_or_of_a_read_only_buffer_for_writing_is_refused()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd buffer = model.HeapAllocOrFail("system", 8192);
        Assert.Equal(Errno.EINVAL, model.Mmap(buffer, 12288, Mman.PROT_READ, Mman.MAP_SHARED, 0, out _));
        Assert.Equal(Errno.EINVAL, model.Mmap(buffer, 4096, Mman.PROT_READ, Mman.MAP_SHARED, 8192, out _));
        using SafeFd readOnly = model.HeapAllocOrFail("system", 8192, Fcntl.O_CLOEXEC);
        Assert.Equal(Errno.EACCES, model.Mmap(readOnly, 4096, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, 0, out _));
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
