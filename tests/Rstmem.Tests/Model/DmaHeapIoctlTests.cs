using System.Runtime.InteropServices;
using Rstmem.Interop;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

/// <summary>
/// drivers/dma-buf/dma-heap.c dma_heap_ioctl / dma_heap_ioctl_allocate /
/// dma_heap_buffer_alloc, case by case (docs/kernel-semantics.md §1.2, §1.3),
/// against the model of every generation.
/// </summary>
public sealed class DmaHeapIoctlTests
{
    private const uint Rw = Ioc._IOC_READ | Ioc._IOC_WRITE;

    /// <param name="Check">Given the argument after the call, asserts what was written back.</param>
    private sealed record Case(string Name, string Mirrors, uint Request, byte[] Argument, Errno Expected, Action<byte[], byte[]> Check);

    private static byte[] Bytes(ulong len, uint fd = 0, uint fdFlags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC, ulong heapFlags = 0, int size = 24, byte fill = 0)
    {
        byte[] bytes = new byte[size];
        Array.Fill(bytes, fill);
        var data = new dma_heap_allocation_data { len = len, fd = fd, fd_flags = fdFlags, heap_flags = heapFlags };
        MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref data, 1))[..Math.Min(24, size)].CopyTo(bytes);
        return bytes;
    }

    private static void Unchanged(byte[] before, byte[] after) => Assert.Equal(before, after);

    private static void FdWrittenOnly(byte[] before, byte[] after)
    {
        uint fd = BitConverter.ToUInt32(after, 8);
        Assert.NotEqual(0u, fd);
        SafeFd.DangerousAdopt((int)fd).Dispose();
        Assert.Equal(before[..8], after[..8]);
        Assert.Equal(before[12..], after[12..]);
    }

    private static readonly Case[] Cases =
    [
        new("valid", "dma_heap_ioctl_allocate: success writes only fd; len stays as passed (1, not 4096)",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(1), Errno.None, FdWrittenOnly),
        new("fd-not-zero", "dma_heap_ioctl_allocate: heap_allocation->fd != 0 → -EINVAL; struct copied back unchanged",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(4096, fd: 5), Errno.EINVAL, Unchanged),
        new("fd-flags-nonblock", "dma_heap_ioctl_allocate: fd_flags & ~DMA_HEAP_VALID_FD_FLAGS → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(4096, fdFlags: Fcntl.O_RDWR | Fcntl.O_NONBLOCK), Errno.EINVAL, Unchanged),
        new("fd-flags-bit31", "dma_heap_ioctl_allocate: fd_flags & ~DMA_HEAP_VALID_FD_FLAGS → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(4096, fdFlags: 0x80000000), Errno.EINVAL, Unchanged),
        new("heap-flags-bit0", "dma_heap_ioctl_allocate: heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(4096, heapFlags: 1), Errno.EINVAL, Unchanged),
        new("heap-flags-bit63", "dma_heap_ioctl_allocate: heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(4096, heapFlags: 1UL << 63), Errno.EINVAL, Unchanged),
        new("len-zero", "dma_heap_buffer_alloc: PAGE_ALIGN(0) == 0 → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(0), Errno.EINVAL, Unchanged),
        new("len-wraps", "dma_heap_buffer_alloc: PAGE_ALIGN(2^64-1) wraps to 0 → -EINVAL",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(ulong.MaxValue), Errno.EINVAL, Unchanged),
        new("len-huge", "system_heap_allocate: no pages for 2^64-4096 bytes → -ENOMEM",
            DmaHeap.DMA_HEAP_IOCTL_ALLOC, Bytes(ulong.MaxValue - 4095), Errno.ENOMEM, Unchanged),
        new("nr-1", "dma_heap_ioctl: _IOC_NR(cmd) >= ARRAY_SIZE(dma_heap_ioctl_cmds) → -EINVAL",
            Ioc._IOC(Rw, 'H', 1, 24), Bytes(4096), Errno.EINVAL, Unchanged),
        new("other-magic", "dma_heap_ioctl: only the nr is checked; magic 'X' nr 0 allocates",
            Ioc._IOC(Rw, 'X', 0, 24), Bytes(4096), Errno.None, FdWrittenOnly),
        new("older-16-byte-struct", "dma_heap_ioctl: a smaller user struct has its tail zeroed (no heap_flags)",
            Ioc._IOC(Rw, 'H', 0, 16), Bytes(4096, size: 16), Errno.None, FdWrittenOnly),
        new("newer-48-byte-struct", "dma_heap_ioctl: extra bytes of a larger struct are carried back untouched",
            Ioc._IOC(Rw, 'H', 0, 48), [.. Bytes(4096), .. Enumerable.Repeat((byte)0xAB, 24)], Errno.None, FdWrittenOnly),
        new("size-zero", "dma_heap_ioctl: _IOC_SIZE 0 reads and writes nothing; len reads as 0 → EINVAL",
            Ioc._IOC(Rw, 'H', 0, 0), Bytes(4096), Errno.EINVAL, Unchanged),
    ];

    public static TheoryData<string, string> Matrix()
    {
        var data = new TheoryData<string, string>();
        foreach (string generation in new[] { "v4", "v6", "mainline" })
        {
            foreach (Case c in Cases)
            {
                data.Add(generation, c.Name);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public void Heap_ioctl_behaves_as_the_kernel(string generation, string name)
    {
        Case c = Cases.Single(x => x.Name == name);
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        byte[] argument = (byte[])c.Argument.Clone();

        Errno errno = model.Ioctl(heap, c.Request, argument, out int result);

        Assert.True(c.Expected == errno, $"{c.Mirrors}: expected {c.Expected.Name()}, got {errno.Name()}");
        Assert.Equal(errno == Errno.None ? 0 : -1, result);
        c.Check(c.Argument, argument);
    }

    [Theory]
    [InlineData("v4", true)]
    [InlineData("v6", true)]
    [InlineData("mainline", false)]
    public void A_failed_allocation_is_copied_back_on_6x_and_not_on_7x(string generation, bool zeroed)
    {
        // _IOR: nothing is read (len 0 → EINVAL). 6.x copies the zeroed kernel buffer back after
        // the switch; 7.x copies only on success (seen on 7.2.13 under qemu).
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        byte[] before = Bytes(4096), argument = (byte[])before.Clone();

        Assert.Equal(Errno.EINVAL, model.Ioctl(heap, Ioc._IOC(Ioc._IOC_READ, 'H', 0, 24), argument, out _));
        Assert.Equal(zeroed ? new byte[24] : before, argument);
    }

    [Theory]
    [InlineData("v4")]
    [InlineData("v6")]
    [InlineData("mainline")]
    public void A_short_argument_faults(string generation)
    {
        // copy_from_user of _IOC_SIZE bytes from a smaller buffer: -EFAULT.
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        Assert.Equal(Errno.EFAULT, model.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, new byte[16], out _));
    }

    public static TheoryData<string, uint, int, bool> AccessModes => new()
    {
        // dma_buf_export: f_mode from fd_flags & O_ACCMODE; dma_buf_fd: close-on-exec from O_CLOEXEC.
        { "mainline", Fcntl.O_RDWR | Fcntl.O_CLOEXEC, Fcntl.O_RDWR, true },
        { "mainline", Fcntl.O_CLOEXEC, Fcntl.O_RDONLY, true },
        { "mainline", Fcntl.O_WRONLY, Fcntl.O_WRONLY, false },
        { "mainline", Fcntl.O_ACCMODE | Fcntl.O_CLOEXEC, Fcntl.O_ACCMODE, true },
        { "v6", 0, Fcntl.O_RDONLY, false },
        { "v4", Fcntl.O_RDWR, Fcntl.O_RDWR, false },
    };

    [Theory]
    [MemberData(nameof(AccessModes))]
    public void The_buffer_access_mode_and_close_on_exec_come_from_fd_flags(string generation, uint fdFlags, int accessMode, bool closeOnExec)
    {
        using ModelKernel model = ModelKit.Model(generation);
        using SafeFd buffer = model.HeapAllocOrFail("system", 4096, fdFlags);
        Assert.Equal(accessMode, Interop.Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE);
        Assert.Equal(closeOnExec, Interop.Sys.IsCloseOnExec(buffer));
    }

    [Theory]
    [InlineData("v4", "system")]
    [InlineData("v6", "restricted,secure-video")]
    [InlineData("mainline", "protected,trusted-ui")]
    [InlineData("mainline", "reserved")]
    public void Sizes_from_4KiB_to_16MiB_are_page_rounded(string generation, string heapName)
    {
        using ModelKernel model = ModelKit.Model(generation);
        foreach (ulong len in new ulong[] { 1, 4095, 4096, 4097, 5000, 65536, 1 << 20, (1 << 20) + 1, 16 << 20 })
        {
            using SafeFd buffer = model.HeapAllocOrFail(heapName, len);
            Assert.Equal((long)((len + 4095) / 4096 * 4096), model.SizeOf(buffer));
        }
    }

    [Fact]
    public void The_heap_node_itself_is_not_seekable_or_mappable()
    {
        // dma_heap_open: nonseekable_open → ESPIPE; dma_heap_fops has no mmap → ENODEV.
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd heap = model.OpenOrFail("/dev/dma_heap/system");
        Assert.Equal(Errno.ESPIPE, model.LSeek(heap, 0, Fcntl.SEEK_END, out _));
        Assert.Equal(Errno.ENODEV, model.Mmap(heap, 4096, Mman.PROT_READ, Mman.MAP_SHARED, 0, out _));
    }

    [Theory]
    [InlineData("v4", "protected,secure-video")]
    [InlineData("v4", "restricted,secure-video")]
    [InlineData("v6", "protected,secure-video")]
    [InlineData("mainline", "restricted,secure-video")]
    [InlineData("mainline", "nosuch")]
    public void Heaps_of_another_generation_do_not_exist(string generation, string heapName)
    {
        using ModelKernel model = ModelKit.Model(generation);
        Assert.Equal(Errno.ENOENT, model.Open($"/dev/dma_heap/{heapName}", Fcntl.O_RDONLY, out SafeFd fd));
        Assert.True(fd.IsInvalid);
        Assert.DoesNotContain(heapName, model.ListDirectory("/dev/dma_heap"));
    }

    [Theory]
    [InlineData("v4", new[] { "reserved", "system" })]
    [InlineData("v6", new[] { "reserved", "restricted,secure-video", "restricted,secure-video-record", "restricted,trusted-ui", "system" })]
    [InlineData("mainline", new[] { "protected,secure-video", "protected,secure-video-record", "protected,trusted-ui", "reserved", "system" })]
    public void Each_generation_lists_its_heaps(string generation, string[] expected)
    {
        using ModelKernel model = ModelKit.Model(generation);
        Assert.Equal(expected, model.ListDirectory("/dev/dma_heap"));
        Assert.Contains("tee0", model.ListDirectory("/dev"));
        Assert.Contains("teepriv0", model.ListDirectory("/dev"));
    }
}
