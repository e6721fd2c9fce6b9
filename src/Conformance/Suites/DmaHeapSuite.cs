using System.Runtime.InteropServices;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Conformance.Suites;

/// <summary>
/// dma-heap core: drivers/dma-buf/dma-heap.c (dma_heap_open, dma_heap_ioctl,
/// dma_heap_ioctl_allocate, dma_heap_buffer_alloc) and the kernel's own
/// tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c, on every heap target.
/// </summary>
internal static class DmaHeapSuite
{
    private const string Core = "drivers/dma-buf/dma-heap.c";
    private const uint Rw = Ioc._IOC_READ | Ioc._IOC_WRITE;
    private const int StructSize = 24;
    private static readonly int FdOffset = dma_heap_allocation_data.FdOffset;

    public static IEnumerable<ConformanceCase> Cases()
    {
        yield return Case("dma-heap.open.read-only", "the heap node opens O_RDONLY | O_CLOEXEC",
            $"{Core}: dma_heap_open: no access-mode check", c =>
            {
                SafeFd heap = c.Open(Heap(c).Path);
                Check.That(Sys.IsCloseOnExec(heap), "the heap descriptor's FD_CLOEXEC", "set", "clear");
            });

        yield return Case("dma-heap.open.not-seekable", "lseek on the heap node: ESPIPE",
            $"{Core}: dma_heap_open: nonseekable_open; dma_heap_fops has no llseek (fs/read_write.c: vfs_llseek → -ESPIPE)", c =>
            {
                Check.Errno(Errno.ESPIPE, c.Kernel.LSeek(c.Open(Heap(c).Path), 0, Fcntl.SEEK_END, out _), "lseek(heap, 0, SEEK_END)");
            });

        yield return Case("dma-heap.open.not-mappable", "mmap of the heap node itself: ENODEV",
            $"{Core}: dma_heap_fops has no mmap (mm/mmap.c: do_mmap → -ENODEV)", c =>
            {
                Check.Errno(Errno.ENODEV, c.Map(c.Open(Heap(c).Path), (nuint)Page.Size, Mman.PROT_READ, Mman.MAP_SHARED, out _), "mmap(heap, PROT_READ, MAP_SHARED)");
            });

        yield return Case("dma-heap.alloc.basic", "1 MiB: the fd is written into the struct, the ioctl returns 0, lseek(SEEK_END) is the size",
            $"{Core}: dma_heap_ioctl_allocate: heap_allocation->fd = fd; return 0", c =>
            {
                byte[] argument = Struct(1 << 20);
                Errno errno = RawAlloc(c, DmaHeap.DMA_HEAP_IOCTL_ALLOC, argument, 1 << 20, out SafeFd buffer, out int result);
                Check.Errno(Errno.None, errno, "DMA_HEAP_IOCTL_ALLOC of 1 MiB");
                Check.Equal(0, result, "the ioctl's return value");
                Check.That(buffer.DangerousFd > 0, "the fd written back", "> 0", buffer.DangerousFd.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Check.Equal(1L << 20, c.SizeOf(buffer), "lseek(SEEK_END)");
            });

        yield return Case("dma-heap.alloc.writes-only-fd", "success writes the fd and nothing else: len stays 5000 (not the page-rounded 8192), fd_flags and heap_flags as passed",
            $"{Core}: dma_heap_ioctl_allocate: heap_allocation->fd = fd (PAGE_ALIGN works on dma_heap_buffer_alloc's copy of len); dma_heap_ioctl copies the struct back", c =>
            {
                byte[] before = Struct(5000), after = (byte[])before.Clone();
                Check.Errno(Errno.None, RawAlloc(c, DmaHeap.DMA_HEAP_IOCTL_ALLOC, after, Page.Align(5000), out SafeFd buffer, out _), "DMA_HEAP_IOCTL_ALLOC of 5000 bytes");
                Check.Equal((uint)buffer.DangerousFd, MemoryMarshal.Read<uint>(after.AsSpan(FdOffset)), "the fd field");
                after.AsSpan(FdOffset, sizeof(uint)).Clear();
                Check.Bytes(before, after, "the struct after the call, fd field cleared");
            });

        yield return Case("dma-heap.alloc.sizes", "sizes from 4 KiB to 16 MiB, each rounded up to whole pages (a restricted pool may be smaller than the largest)",
            $"{Core}: dma_heap_buffer_alloc: len = PAGE_ALIGN(len)", c =>
            {
                ulong page = Page.Size;
                foreach (ulong length in new ulong[] { page, 1, page - 1, page + 1, 5000, 64 << 10, 1 << 20, (1 << 20) + 1, 4 << 20, 16 << 20 })
                {
                    c.Cancellation.ThrowIfCancellationRequested();
                    SafeFd heap = c.Open(Heap(c).Path);
                    Errno errno = c.HeapAlloc(heap, length, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, out SafeFd buffer);
                    if (errno == Errno.ENOMEM && Heap(c).Restricted && length > 1 << 20)
                    {
                        // A fixed pool smaller than this request; 1 MiB was allocated above.
                        continue;
                    }
                    Check.Errno(Errno.None, errno, $"allocating {length} bytes");
                    Check.Equal((long)Page.Align(length), c.SizeOf(buffer), $"lseek(SEEK_END) of a {length}-byte buffer");
                    c.Close(buffer);
                }
            });

        yield return Case("dma-heap.alloc.distinct", "two allocations are two buffers: two fds, two inodes",
            $"{Core}: dma_heap_buffer_alloc: heap->ops->allocate exports a new dma-buf each call", c =>
            {
                SafeFd first = Alloc(c, 4096);
                SafeFd second = Alloc(c, 4096);
                Check.That(first.DangerousFd != second.DangerousFd, "the two fds", "different", "equal");
                IReadOnlyDictionary<string, string> a = c.FdInfo(first), b = c.FdInfo(second);
                if (a.TryGetValue("ino", out string? inoA) && b.TryGetValue("ino", out string? inoB))
                {
                    Check.That(inoA != inoB, "fdinfo ino of the two buffers", "different", $"both {inoA}");
                }
            });

        yield return Case("dma-heap.alloc.zeroed", "a freed buffer's contents never reach the next allocation (kselftest test_alloc_zeroed)",
            "tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c: test_alloc_zeroed", c =>
            {
                RequireMappable(c);
                const int Size = 4 << 20;
                for (int round = 0; round < 2; round++)
                {
                    SafeFd buffer = Alloc(c, Size);
                    nint address = MapOrFail(c, buffer, Size, Mman.PROT_READ | Mman.PROT_WRITE);
                    unsafe
                    {
                        var bytes = new Span<byte>((void*)address, Size);
                        int dirty = bytes.IndexOfAnyExcept((byte)0);
                        Check.Equal(-1, dirty, $"first non-zero byte of a fresh buffer (round {round + 1})");
                        bytes.Fill(0xff);
                    }
                    c.Unmap(address);
                    c.Close(buffer);
                }
            });

        foreach ((string id, string title, string mirrors, Func<byte[]> argument) in Rejections())
        {
            yield return Case(id, title, mirrors, c =>
            {
                byte[] before = argument();
                byte[] after = (byte[])before.Clone();
                ulong length = MemoryMarshal.Read<ulong>(before);
                Errno errno = RawAlloc(c, DmaHeap.DMA_HEAP_IOCTL_ALLOC, after, Page.Align(length), out _, out _);
                Check.Errno(Errno.EINVAL, errno, "DMA_HEAP_IOCTL_ALLOC");
                Check.Bytes(before, after, "the struct copied back on failure");
            });
        }

        yield return Case("dma-heap.compat.older-16-byte-struct", "the 16-byte struct of older headers (no heap_flags) still allocates",
            $"{Core}: dma_heap_ioctl: in_size < ksize → the tail is zeroed", c =>
            {
                byte[] argument = Struct(4096)[..16];
                Check.Errno(Errno.None, RawAlloc(c, Ioc._IOC(Rw, 'H', 0, 16), argument, 4096, out SafeFd buffer, out _), "DMA_HEAP_IOCTL_ALLOC with _IOC_SIZE 16");
                Check.Equal(4096L, c.SizeOf(buffer), "lseek(SEEK_END)");
            });

        yield return Case("dma-heap.compat.newer-48-byte-struct", "a larger struct from newer headers allocates; its extra bytes come back untouched",
            $"{Core}: dma_heap_ioctl: in_size > ksize → ksize = in_size, copied in and out", c =>
            {
                byte[] argument = [.. Struct(4096), .. Enumerable.Repeat((byte)0xAB, 24)];
                Check.Errno(Errno.None, RawAlloc(c, Ioc._IOC(Rw, 'H', 0, 48), argument, 4096, out _, out _), "DMA_HEAP_IOCTL_ALLOC with _IOC_SIZE 48");
                Check.Bytes(Enumerable.Repeat((byte)0xAB, 24).ToArray(), argument.AsSpan(24), "bytes 24..47 after the call");
            });

        yield return Case("dma-heap.ioctl.other-magic", "only the nr is checked: magic 'X' nr 0 allocates too",
            $"{Core}: dma_heap_ioctl: nr = _IOC_NR(ucmd); kcmd = dma_heap_ioctl_cmds[nr]", c =>
            {
                Check.Errno(Errno.None, RawAlloc(c, Ioc._IOC(Rw, 'X', 0, StructSize), Struct(4096), 4096, out _, out _), "_IOWR('X', 0, 24)");
            });

        yield return Case("dma-heap.ioctl.nr-out-of-range", "nr 1 is no command: EINVAL",
            $"{Core}: dma_heap_ioctl: nr >= ARRAY_SIZE(dma_heap_ioctl_cmds) → -EINVAL", c =>
            {
                byte[] before = Struct(4096), after = (byte[])before.Clone();
                Check.Errno(Errno.EINVAL, RawAlloc(c, Ioc._IOC(Rw, 'H', 1, StructSize), after, 4096, out _, out _), "_IOWR('H', 1, 24)");
                Check.Bytes(before, after, "the argument after the call");
            });

        yield return Case("dma-heap.ioctl.read-only-direction",
            "_IOR: nothing is read (len 0 → EINVAL); the struct comes back zeroed (old kernels) or untouched (new); the model: zeroed for v4 and v6, untouched for mainline",
            $"{Core}: dma_heap_ioctl: (ucmd & kcmd & IOC_IN) == 0 → in_size = 0; copy_to_user after the switch, or on success only since \"dma-buf: dma-heap: don't publish fd before copy_to_user() succeeds\" (7.x, 6.1.192)", c =>
            {
                byte[] before = Struct(4096), after = (byte[])before.Clone();
                Check.Errno(Errno.EINVAL, RawAlloc(c, Ioc._IOC(Ioc._IOC_READ, 'H', 0, StructSize), after, 4096, out _, out _), "_IOR('H', 0, 24)");
                if (c.Environment.DeclaredGeneration is { } declared)
                {
                    // The model declares its generation; a real kernel's version is not known here.
                    Check.Bytes(declared == KernelGeneration.Mainline ? before : new byte[StructSize], after, $"the argument after the call (generation {declared.Name()})");
                    return;
                }
                Check.That(after.AsSpan().SequenceEqual(new byte[StructSize]) || after.AsSpan().SequenceEqual(before),
                    "the argument after the call", $"all zero or {Convert.ToHexString(before)}", Convert.ToHexString(after));
            });

        yield return Case("dma-heap.ioctl.fault", "a struct that ends where readable memory ends, 8 bytes short of _IOC_SIZE: EFAULT, nothing allocated or written",
            $"{Core}: dma_heap_ioctl: copy_from_user(kdata, ubuf, in_size) fails → -EFAULT", c =>
            {
                Span<byte> argument = c.BytesBeforeUnmappedMemory(16);
                Struct(4096).AsSpan(0, 16).CopyTo(argument);
                byte[] before = argument.ToArray();
                Check.Errno(Errno.EFAULT, c.Kernel.Ioctl(c.Open(Heap(c).Path), DmaHeap.DMA_HEAP_IOCTL_ALLOC, argument, out _), "DMA_HEAP_IOCTL_ALLOC on 16 readable bytes");
                Check.Bytes(before, argument, "the 16 bytes after the call");
            });

        yield return Case("dma-heap.ioctl.size-zero", "_IOC_SIZE 0 reads nothing: len 0 → EINVAL, nothing written",
            $"{Core}: dma_heap_ioctl: ksize = max(in, out, drv_size); in_size = 0", c =>
            {
                byte[] before = Struct(4096), after = (byte[])before.Clone();
                Check.Errno(Errno.EINVAL, RawAlloc(c, Ioc._IOC(Rw, 'H', 0, 0), after, 4096, out _, out _), "_IOWR('H', 0, 0)");
                Check.Bytes(before, after, "the argument after the call");
            });

        foreach ((uint fdFlags, int accessMode, bool closeOnExec) in new (uint, int, bool)[]
        {
            (Fcntl.O_RDWR | Fcntl.O_CLOEXEC, Fcntl.O_RDWR, true),
            (Fcntl.O_CLOEXEC, Fcntl.O_RDONLY, true),
            (0, Fcntl.O_RDONLY, false),
            (Fcntl.O_WRONLY, Fcntl.O_WRONLY, false),
        })
        {
            string mode = accessMode switch { Fcntl.O_RDWR => "rdwr", Fcntl.O_WRONLY => "wronly", _ => "rdonly" };
            yield return Case($"dma-heap.fd.{mode}{(closeOnExec ? "-cloexec" : "")}",
                $"fd_flags 0x{fdFlags:x}: the buffer fd is {mode.ToUpperInvariant()}, close-on-exec {(closeOnExec ? "set" : "clear")}",
                "dma-buf.c: dma_buf_export (f_mode from fd_flags & O_ACCMODE), dma_buf_fd (O_CLOEXEC)", c =>
                {
                    SafeFd buffer = AllocWithFlags(c, fdFlags);
                    Check.Equal(accessMode, Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE, "F_GETFL & O_ACCMODE");
                    Check.Equal(closeOnExec, Sys.IsCloseOnExec(buffer), "FD_CLOEXEC");
                });
        }

        yield return Case("dma-heap.fd.accmode-cloexec", "fd_flags O_ACCMODE | O_CLOEXEC is accepted and gives a file that is neither readable nor writable: F_GETFL shows 3, mmap EACCES",
            "dma-buf.c: dma_buf_getfile: alloc_file_pseudo(flags & (O_ACCMODE | O_NONBLOCK)): OPEN_FMODE(3) has neither FMODE_READ nor FMODE_WRITE; mm/mmap.c: do_mmap: !FMODE_READ → -EACCES", c =>
            {
                SafeFd buffer = AllocWithFlags(c, Fcntl.O_ACCMODE | Fcntl.O_CLOEXEC);
                Check.Equal(Fcntl.O_ACCMODE, Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE, "F_GETFL & O_ACCMODE");
                Check.Equal(true, Sys.IsCloseOnExec(buffer), "FD_CLOEXEC");
                Check.Errno(Errno.EACCES, c.Map(buffer, (nuint)Page.Size, Mman.PROT_READ, Mman.MAP_SHARED, out _), "mmap(PROT_READ, MAP_SHARED)");
            });
    }

    private static IEnumerable<(string, string, string, Func<byte[]>)> Rejections()
    {
        const string Allocate = $"{Core}: dma_heap_ioctl_allocate";
        yield return ("dma-heap.alloc.fd-not-zero", "fd must be 0 on entry: EINVAL, struct copied back unchanged",
            $"{Allocate}: heap_allocation->fd → -EINVAL", () => Struct(4096, fd: 5));
        yield return ("dma-heap.alloc.fd-flags-nonblock", "fd_flags O_NONBLOCK is not allowed: EINVAL",
            $"{Allocate}: fd_flags & ~DMA_HEAP_VALID_FD_FLAGS → -EINVAL", () => Struct(4096, fdFlags: Fcntl.O_RDWR | Fcntl.O_NONBLOCK));
        yield return ("dma-heap.alloc.fd-flags-high-bit", "fd_flags bit 31: EINVAL",
            $"{Allocate}: fd_flags & ~DMA_HEAP_VALID_FD_FLAGS → -EINVAL", () => Struct(4096, fdFlags: 0x80000000));
        yield return ("dma-heap.alloc.heap-flags-bit0", "heap_flags bit 0 (no heap flags are defined): EINVAL",
            $"{Allocate}: heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS → -EINVAL", () => Struct(4096, heapFlags: 1));
        yield return ("dma-heap.alloc.heap-flags-bit63", "heap_flags bit 63: EINVAL",
            $"{Allocate}: heap_flags & ~DMA_HEAP_VALID_HEAP_FLAGS → -EINVAL", () => Struct(4096, heapFlags: 1UL << 63));
        yield return ("dma-heap.alloc.len-zero", "len 0: EINVAL",
            $"{Core}: dma_heap_buffer_alloc: PAGE_ALIGN(0) == 0 → -EINVAL", () => Struct(0));
        yield return ("dma-heap.alloc.len-wraps", "len 2^64-1 wraps to 0 when page-aligned: EINVAL",
            $"{Core}: dma_heap_buffer_alloc: PAGE_ALIGN(len) == 0 → -EINVAL", () => Struct(ulong.MaxValue));
        yield return ("dma-heap.alloc.len-wraps-last-page", "len 2^64-page+1 also wraps to 0: EINVAL",
            $"{Core}: dma_heap_buffer_alloc: PAGE_ALIGN(len) == 0 → -EINVAL", () => Struct(ulong.MaxValue - Page.Size + 2));
    }

    private static ConformanceCase Case(string id, string title, string mirrors, Action<CaseContext> run) =>
        new(id, title, mirrors, TargetKind.Heap, run);

    private static HeapTarget Heap(CaseContext c) => c.TargetAs<HeapTarget>();

    private static void Skip(string reason) => CaseContext.Skip(reason);

    private static void RequireMappable(CaseContext c)
    {
        if (c.TargetAs<BufferTarget>().Restricted)
        {
            Skip($"{c.Target.Name} is restricted memory: the CPU cannot map it");
        }
    }

    /// <summary>A dma_heap_allocation_data as bytes (len, fd, fd_flags, heap_flags).</summary>
    private static byte[] Struct(ulong length, uint fd = 0, uint fdFlags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC, ulong heapFlags = 0)
    {
        var data = new dma_heap_allocation_data { len = length, fd = fd, fd_flags = fdFlags, heap_flags = heapFlags };
        return MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref data, 1)).ToArray();
    }

    private static SafeFd AllocWithFlags(CaseContext c, uint fdFlags)
    {
        Check.Errno(Errno.None, c.HeapAlloc(c.Open(Heap(c).Path), 4096, fdFlags, out SafeFd buffer), $"allocating with fd_flags 0x{fdFlags:x}");
        return buffer;
    }

    private static SafeFd Alloc(CaseContext c, ulong length)
    {
        SafeFd heap = c.Open(Heap(c).Path);
        Check.Errno(Errno.None, c.HeapAlloc(heap, length, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, out SafeFd buffer), $"allocating {length} bytes");
        return buffer;
    }

    /// <summary>The ioctl on raw bytes; a new buffer's fd (the fd field) is owned by the case.</summary>
    private static Errno RawAlloc(CaseContext c, uint request, byte[] argument, ulong charge, out SafeFd buffer, out int result)
    {
        SafeFd heap = c.Open(Heap(c).Path);
        int returned = -1;
        Errno errno = c.Allocate(charge, $"allocating {charge} bytes", () =>
        {
            Errno e = c.Kernel.Ioctl(heap, request, argument, out returned);
            return (e, e == Errno.None ? MemoryMarshal.Read<int>(argument.AsSpan(FdOffset)) : -1);
        }, out buffer);
        result = returned;
        return errno;
    }

    internal static nint MapOrFail(CaseContext c, SafeFd buffer, int size, int prot)
    {
        Errno errno = c.Map(buffer, (nuint)size, prot, Mman.MAP_SHARED, out nint address);
        Check.Errno(Errno.None, errno, $"mmap of {size} bytes");
        return address;
    }
}
