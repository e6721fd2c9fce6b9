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

    public static IEnumerable<ConformanceCase> Cases()
    {
        yield return Case("dma-heap.open.read-only", "the heap node opens O_RDONLY | O_CLOEXEC",
            $"{Core}: dma_heap_open: no access-mode check", c =>
            {
                SafeFd heap = c.Open(Heap(c).Path);
                Check.That(Sys.IsCloseOnExec(heap), "the heap descriptor's FD_CLOEXEC", "set", "clear");
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

        yield return Case("dma-heap.ioctl.read-only-direction", "_IOR: nothing is read (len 0 → EINVAL); the struct comes back zeroed (6.x) or untouched (7.x)",
            $"{Core}: dma_heap_ioctl: (ucmd & kcmd & IOC_IN) == 0 → in_size = 0; copy_to_user after the switch (6.x) or on success only (7.x)", c =>
            {
                byte[] before = Struct(4096), after = (byte[])before.Clone();
                Check.Errno(Errno.EINVAL, RawAlloc(c, Ioc._IOC(Ioc._IOC_READ, 'H', 0, StructSize), after, 4096, out _, out _), "_IOR('H', 0, 24)");
                Check.That(after.AsSpan().SequenceEqual(new byte[StructSize]) || after.AsSpan().SequenceEqual(before),
                    "the argument after the call", $"all zero or {Convert.ToHexString(before)}", Convert.ToHexString(after));
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
            (Fcntl.O_WRONLY, Fcntl.O_WRONLY, false),
        })
        {
            string mode = accessMode switch { Fcntl.O_RDWR => "rdwr", Fcntl.O_WRONLY => "wronly", _ => "rdonly" };
            yield return Case($"dma-heap.fd.{mode}{(closeOnExec ? "-cloexec" : "")}",
                $"fd_flags 0x{fdFlags:x}: the buffer fd is {mode.ToUpperInvariant()}, close-on-exec {(closeOnExec ? "set" : "clear")}",
                "dma-buf.c: dma_buf_export (f_mode from fd_flags & O_ACCMODE), dma_buf_fd (O_CLOEXEC)", c =>
                {
                    SafeFd heap = c.Open(Heap(c).Path);
                    Check.Errno(Errno.None, c.HeapAlloc(heap, 4096, fdFlags, out SafeFd buffer), $"allocating with fd_flags 0x{fdFlags:x}");
                    Check.Equal(accessMode, Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE, "F_GETFL & O_ACCMODE");
                    Check.Equal(closeOnExec, Sys.IsCloseOnExec(buffer), "FD_CLOEXEC");
                });
        }
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

    private static SafeFd Alloc(CaseContext c, ulong length)
    {
        SafeFd heap = c.Open(Heap(c).Path);
        Check.Errno(Errno.None, c.HeapAlloc(heap, length, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, out SafeFd buffer), $"allocating {length} bytes");
        return buffer;
    }

    /// <summary>The ioctl on raw bytes; a new buffer's fd (offset 8) is owned by the case.</summary>
    private static Errno RawAlloc(CaseContext c, uint request, byte[] argument, ulong charge, out SafeFd buffer, out int result)
    {
        SafeFd heap = c.Open(Heap(c).Path);
        int returned = -1;
        Errno errno = c.Allocate(charge, $"allocating {charge} bytes", () =>
        {
            Errno e = c.Kernel.Ioctl(heap, request, argument, out returned);
            return (e, e == Errno.None ? MemoryMarshal.Read<int>(argument.AsSpan(8)) : -1);
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
