using System.Text;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Conformance.Suites;

/// <summary>
/// dma-buf file operations (drivers/dma-buf/dma-buf.c) on buffers from every
/// buffer target: heaps and v4 TEE use cases.
/// </summary>
internal static class DmaBufSuite
{
    private const string DmaBufC = "drivers/dma-buf/dma-buf.c";
    private const ulong Requested = 5000;

    public static IEnumerable<ConformanceCase> Cases()
    {
        long size = (long)Page.Align(Requested);

        foreach ((string what, long offset, int whence, Errno expected, long position) in new (string, long, int, Errno, long)[]
        {
            ("end", 0, Fcntl.SEEK_END, Errno.None, size),
            ("set-zero", 0, Fcntl.SEEK_SET, Errno.None, 0),
            ("cur", 0, Fcntl.SEEK_CUR, Errno.EINVAL, 0),
            ("set-nonzero", 4096, Fcntl.SEEK_SET, Errno.EINVAL, 0),
            ("end-nonzero", -1, Fcntl.SEEK_END, Errno.EINVAL, 0),
            ("data", 0, Fcntl.SEEK_DATA, Errno.EINVAL, 0),
        })
        {
            yield return Case($"dma-buf.lseek.{what}",
                expected == Errno.None ? $"lseek({offset}, {Whence(whence)}) gives {position}" : $"lseek({offset}, {Whence(whence)}): EINVAL",
                $"{DmaBufC}: dma_buf_llseek: only (0, SEEK_SET) and (0, SEEK_END)", c =>
                {
                    SafeFd buffer = c.AllocateFromTarget(Requested);
                    Errno errno = c.Kernel.LSeek(buffer, offset, whence, out long observed);
                    Check.Errno(expected, errno, $"lseek({offset}, {Whence(whence)})");
                    if (expected == Errno.None)
                    {
                        Check.Equal(position, observed, "the position");
                    }
                });
        }

        yield return Case("dma-buf.sync.start-read", "DMA_BUF_IOCTL_SYNC START|READ reaches begin_cpu_access",
            $"{DmaBufC}: dma_buf_ioctl: DMA_BUF_IOCTL_SYNC → dma_buf_begin_cpu_access", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Buffers(c).SyncResult, Sync(c, buffer, DmaBuf.DMA_BUF_SYNC_START | DmaBuf.DMA_BUF_SYNC_READ), "SYNC START|READ");
            });

        yield return Case("dma-buf.sync.end-rw", "DMA_BUF_IOCTL_SYNC END|RW reaches end_cpu_access",
            $"{DmaBufC}: dma_buf_ioctl: DMA_BUF_IOCTL_SYNC → dma_buf_end_cpu_access", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Errno start = Sync(c, buffer, DmaBuf.DMA_BUF_SYNC_START | DmaBuf.DMA_BUF_SYNC_RW);
                Check.Errno(Buffers(c).SyncResult, start, "SYNC START|RW");
                Check.Errno(Buffers(c).SyncResult, Sync(c, buffer, DmaBuf.DMA_BUF_SYNC_END | DmaBuf.DMA_BUF_SYNC_RW), "SYNC END|RW");
            });

        foreach ((string what, ulong flags, string mirrors) in new (string, ulong, string)[]
        {
            ("unknown-flag", DmaBuf.DMA_BUF_SYNC_READ | 8, "flags & ~DMA_BUF_SYNC_VALID_FLAGS_MASK → -EINVAL"),
            ("no-direction", DmaBuf.DMA_BUF_SYNC_START, "(flags & DMA_BUF_SYNC_RW) == 0 → -EINVAL"),
            ("end-no-direction", DmaBuf.DMA_BUF_SYNC_END, "(flags & DMA_BUF_SYNC_RW) == 0 → -EINVAL"),
        })
        {
            yield return Case($"dma-buf.sync.{what}", $"DMA_BUF_IOCTL_SYNC flags 0x{flags:x}: EINVAL",
                $"{DmaBufC}: dma_buf_ioctl: {mirrors}", c =>
                {
                    SafeFd buffer = c.AllocateFromTarget(Requested);
                    Check.Errno(Errno.EINVAL, Sync(c, buffer, flags), $"SYNC 0x{flags:x}");
                });
        }

        yield return Case("dma-buf.sync.fault", "DMA_BUF_IOCTL_SYNC with 4 readable bytes of its 8-byte struct: EFAULT",
            $"{DmaBufC}: dma_buf_ioctl: DMA_BUF_IOCTL_SYNC: copy_from_user → -EFAULT", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Span<byte> argument = c.BytesBeforeUnmappedMemory(4);
                BitConverter.TryWriteBytes(argument, (uint)(DmaBuf.DMA_BUF_SYNC_START | DmaBuf.DMA_BUF_SYNC_READ));
                Check.Errno(Errno.EFAULT, c.Kernel.Ioctl(buffer, DmaBuf.DMA_BUF_IOCTL_SYNC, argument, out _), "SYNC on 4 readable bytes");
            });

        yield return Case("dma-buf.set-name.b", "DMA_BUF_SET_NAME_B names the buffer; fdinfo shows it",
            $"{DmaBufC}: dma_buf_set_name; dma_buf_show_fdinfo prints name", c => NameAndRead(c, "conformance-b", DmaBuf.DMA_BUF_SET_NAME_B));

        yield return Case("dma-buf.set-name.a", "DMA_BUF_SET_NAME_A (the 32-bit encoding) names the buffer too",
            $"{DmaBufC}: dma_buf_ioctl: case DMA_BUF_SET_NAME_A / _B", c => NameAndRead(c, "conformance-a", DmaBuf.DMA_BUF_SET_NAME_A));

        yield return Case("dma-buf.set-name.31-chars", "a 31-character name is the longest accepted",
            $"{DmaBufC}: dma_buf_set_name: strndup_user(buf, DMA_BUF_NAME_LEN)", c => NameAndRead(c, new string('n', DmaBuf.DMA_BUF_NAME_LEN - 1), DmaBuf.DMA_BUF_SET_NAME_B));

        yield return Case("dma-buf.set-name.32-chars", "a 32-character name: EINVAL, the old name stays",
            $"{DmaBufC}: dma_buf_set_name: strndup_user → -EINVAL when longer than DMA_BUF_NAME_LEN - 1", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.None, SetName(c, buffer, "before", DmaBuf.DMA_BUF_SET_NAME_B), "naming the buffer 'before'");
                Check.Errno(Errno.EINVAL, SetName(c, buffer, new string('n', DmaBuf.DMA_BUF_NAME_LEN), DmaBuf.DMA_BUF_SET_NAME_B), "a 32-character name");
                Check.Equal("before", c.FdInfo(buffer).GetValueOrDefault("name"), "fdinfo name");
            });

        yield return Case("dma-buf.set-name.empty", "an empty name is accepted and replaces the old one: fdinfo prints name with nothing after the tab",
            $"{DmaBufC}: dma_buf_set_name: strndup_user of \"\" succeeds and replaces dmabuf->name; dma_buf_show_fdinfo prints it when non-NULL", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.None, SetName(c, buffer, "before", DmaBuf.DMA_BUF_SET_NAME_B), "naming the buffer 'before'");
                Check.Errno(Errno.None, SetName(c, buffer, "", DmaBuf.DMA_BUF_SET_NAME_B), "an empty name");
                Check.Equal("", c.FdInfo(buffer).GetValueOrDefault("name"), "fdinfo name");
            });

        yield return Case("dma-buf.set-name.null", "DMA_BUF_SET_NAME_B with a NULL pointer: EFAULT",
            $"{DmaBufC}: dma_buf_set_name: strndup_user(NULL) → -EFAULT", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.EFAULT, c.Kernel.Ioctl(buffer, DmaBuf.DMA_BUF_SET_NAME_B, Span<byte>.Empty, out _), "SET_NAME_B(NULL)");
            });

        yield return Case("dma-buf.fdinfo.fields", "fdinfo: size (page-rounded), count 1, exp_name of the exporter",
            $"{DmaBufC}: dma_buf_show_fdinfo", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                IReadOnlyDictionary<string, string> fields = c.FdInfo(buffer);
                Check.Equal(size.ToString(System.Globalization.CultureInfo.InvariantCulture), fields.GetValueOrDefault("size"), "fdinfo size");
                Check.Equal("1", fields.GetValueOrDefault("count"), "fdinfo count");
                Check.Equal(Buffers(c).ExpName, fields.GetValueOrDefault("exp_name"), "fdinfo exp_name");
                Check.That(!fields.ContainsKey("name"), "fdinfo of a buffer never named", "no name line", $"name: \"{fields.GetValueOrDefault("name")}\"");
            });

        yield return Case("dma-buf.fdinfo.flags", "fdinfo flags: the access mode and O_CLOEXEC, nothing else (O_LARGEFILE and the like are masked off)",
            $"{DmaBufC}: dma_buf_getfile: flags &= O_ACCMODE | O_NONBLOCK; fs/proc/fd.c: seq_show adds O_CLOEXEC", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                string? flags = c.FdInfo(buffer).GetValueOrDefault("flags");
                int expected = Buffers(c).AccessMode | Fcntl.O_CLOEXEC;
                Check.Equal(Convert.ToString(expected, 8), flags?.TrimStart('0'), "fdinfo flags (octal)");
            });

        yield return Case("dma-buf.fdinfo.count-after-dup", "a dup is one more file reference: fdinfo count 2",
            $"{DmaBufC}: dma_buf_show_fdinfo: file_count(dmabuf->file)", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.None, Sys.TryDuplicate(buffer, out SafeFd copy), "dup");
                c.Own(copy);
                Check.Equal("2", c.FdInfo(buffer).GetValueOrDefault("count"), "fdinfo count with a dup open");
            });

        yield return Case("dma-buf.mmap.read", "mmap(PROT_READ, MAP_SHARED): allowed for CPU memory, refused for restricted memory",
            $"{DmaBufC}: dma_buf_mmap_internal → exporter mmap (none on TEE heaps: -EINVAL)", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Errno errno = c.Map(buffer, (nuint)size, Mman.PROT_READ, Mman.MAP_SHARED, out nint address);
                Check.Errno(Buffers(c).MmapRead, errno, "mmap(PROT_READ, MAP_SHARED)");
                if (errno == Errno.None)
                {
                    c.Unmap(address);
                }
            });

        yield return Case("dma-buf.mmap.beyond-size", "a mapping longer than the buffer: EINVAL (restricted heaps without an mmap op: EINVAL too)",
            $"{DmaBufC}: dma_buf_mmap_internal: !ops->mmap → -EINVAL; vm_pgoff + vma_pages > size >> PAGE_SHIFT → -EINVAL", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.EINVAL, c.Map(buffer, (nuint)(size + 4096), Mman.PROT_READ, Mman.MAP_SHARED, out _), $"mmap of {size + 4096} bytes");
            });

        yield return Case("dma-buf.mmap.offset-beyond-size", "a one-page mapping at offset size (past the last page): EINVAL",
            $"{DmaBufC}: dma_buf_mmap_internal: vm_pgoff + vma_pages > size >> PAGE_SHIFT → -EINVAL (TEE heaps: no mmap, -EINVAL first)", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.EINVAL, c.Map(buffer, (nuint)Page.Size, Mman.PROT_READ, Mman.MAP_SHARED, size, out _), $"mmap of one page at offset {size}");
            });

        yield return Case("dma-buf.mmap.private-writable", "mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE) of a two-page buffer: EINVAL from the heaps, EPERM from v4",
            "heaps/system_heap.c: system_heap_mmap → remap_pfn_range of a COW mapping not covered whole → -EINVAL; heaps/cma_heap.c: cma_heap_mmap: !VM_SHARED → -EINVAL; v4 tee_rstmem mmap → -EPERM", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Buffers(c).MmapPrivateWritable, c.Map(buffer, (nuint)size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_PRIVATE, out _), "mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE)");
            });

        yield return Case("dma-buf.mmap.write-on-read-only-fd", "a read-only buffer fd refuses a shared writable mapping: EACCES",
            "mm/mmap.c: do_mmap: MAP_SHARED, PROT_WRITE without FMODE_WRITE → -EACCES (before the exporter)", c =>
            {
                SafeFd buffer;
                if (c.Target is HeapTarget heap)
                {
                    Check.Errno(Errno.None, c.HeapAlloc(c.Open(heap.Path), Requested, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, out buffer), "allocating with fd_flags O_RDONLY");
                }
                else
                {
                    buffer = c.AllocateFromTarget(Requested);
                    Check.Equal(Fcntl.O_RDONLY, Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE, "the buffer's access mode");
                }
                Check.Errno(Errno.EACCES, c.Map(buffer, (nuint)size, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, out _), "mmap(PROT_READ|PROT_WRITE, MAP_SHARED)");
            });

        yield return Case("dma-buf.ioctl.unknown-nr", "an unknown dma-buf ioctl: ENOTTY",
            $"{DmaBufC}: dma_buf_ioctl: default → -ENOTTY", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.ENOTTY, c.Kernel.Ioctl(buffer, Ioc._IOC(Ioc._IOC_WRITE, 'b', 9, 8), new byte[8], out _), "_IOW('b', 9, 8)");
            });

        yield return Case("dma-buf.ioctl.tee-request", "a TEE request on a dma-buf: ENOTTY",
            $"{DmaBufC}: dma_buf_ioctl: default → -ENOTTY", c =>
            {
                SafeFd buffer = c.AllocateFromTarget(Requested);
                Check.Errno(Errno.ENOTTY, c.Kernel.Ioctl(buffer, Tee.TEE_IOC_VERSION, new byte[12], out _), "TEE_IOC_VERSION");
            });
    }

    private static ConformanceCase Case(string id, string title, string mirrors, Action<CaseContext> run) =>
        new(id, title, mirrors, TargetKind.Buffers, run);

    private static BufferTarget Buffers(CaseContext c) => c.TargetAs<BufferTarget>();

    private static string Whence(int whence) => whence switch
    {
        Fcntl.SEEK_SET => "SEEK_SET",
        Fcntl.SEEK_CUR => "SEEK_CUR",
        Fcntl.SEEK_END => "SEEK_END",
        Fcntl.SEEK_DATA => "SEEK_DATA",
        _ => whence.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    private static Errno Sync(CaseContext c, SafeFd buffer, ulong flags)
    {
        var sync = new dma_buf_sync { flags = flags };
        return c.Kernel.Ioctl(buffer, DmaBuf.DMA_BUF_IOCTL_SYNC, ref sync, out _);
    }

    internal static Errno SetName(CaseContext c, SafeFd buffer, string name, uint request)
    {
        byte[] bytes = [.. Encoding.UTF8.GetBytes(name), 0];
        return c.Kernel.Ioctl(buffer, request, bytes, out _);
    }

    private static void NameAndRead(CaseContext c, string name, uint request)
    {
        SafeFd buffer = c.AllocateFromTarget(Requested);
        Check.Errno(Errno.None, SetName(c, buffer, name, request), $"naming the buffer \"{name}\"");
        Check.Equal(name, c.FdInfo(buffer).GetValueOrDefault("name"), "fdinfo name");
    }
}
