using System.Globalization;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Conformance.Suites;

/// <summary>
/// The TEE device: drivers/tee/tee_core.c and tee_shm.c (mainline), the v4
/// series' TEE_IOC_RSTMEM_ALLOC, and mainline's TEE_IOC_SHM_REGISTER_FD.
/// </summary>
internal static class TeeSuite
{
    private const string Core = "drivers/tee/tee_core.c";
    private const string Shm = "drivers/tee/tee_shm.c";
    private const int Untouched = -7;

    public static IEnumerable<ConformanceCase> Cases()
    {
        yield return Case("tee.open.read-only", "the TEE node opens O_RDONLY | O_CLOEXEC",
            $"{Core}: tee_open: no access-mode check", c =>
            {
                Check.That(Sys.IsCloseOnExec(Device(c)), "the TEE descriptor's FD_CLOEXEC", "set", "clear");
            });

        yield return Case("tee.open.not-seekable", "lseek on the TEE node: ESPIPE",
            $"{Core}: tee_fops has no llseek (fs/open.c: do_dentry_open clears FMODE_LSEEK; vfs_llseek → -ESPIPE)", c =>
            {
                Check.Errno(Errno.ESPIPE, c.Kernel.LSeek(Device(c), 0, Fcntl.SEEK_SET, out _), "lseek(tee, 0, SEEK_SET)");
            });

        yield return Case("tee.version.basic", "TEE_IOC_VERSION returns 0 and fills impl_id and gen_caps",
            $"{Core}: tee_ioctl_version: teedev->desc->ops->get_version", c =>
            {
                var version = new tee_ioctl_version_data { impl_id = 0xdead, gen_caps = 0xdead, impl_caps = 0xdead };
                Check.Errno(Errno.None, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_VERSION, ref version, out int result), "TEE_IOC_VERSION");
                Check.Equal(0, result, "the ioctl's return value");
                Check.That(version.impl_id != 0xdead && version.gen_caps != 0xdead, "impl_id and gen_caps", "written by the driver", "unchanged");
            });

        yield return Case("tee.version.fault", "TEE_IOC_VERSION into 4 writable bytes of its 12-byte struct: EFAULT",
            $"{Core}: tee_ioctl_version: copy_to_user → -EFAULT", c =>
            {
                Span<byte> argument = c.BytesBeforeUnmappedMemory(4);
                Check.Errno(Errno.EFAULT, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_VERSION, argument, out _), "TEE_IOC_VERSION into 4 writable bytes");
            });

        yield return Case("tee.version.bit4", "gen_caps bit 4 means RSTMEM on v4 and OBJREF (QTEE) on mainline: set exactly as the generation says",
            "include/uapi/linux/tee.h: TEE_GEN_CAP_RSTMEM (v4 series) and TEE_GEN_CAP_OBJREF (mainline) are both 1 << 4", c =>
            {
                tee_ioctl_version_data version = Version(c);
                string observed = $"gen_caps 0x{version.gen_caps:x}, impl_id {version.impl_id}";
                if (c.Generation == KernelGeneration.V4)
                {
                    Check.That(TeeProbe.ClaimsV4Rstmem(version), "a v4 TEE's bit 4", "set (TEE_GEN_CAP_RSTMEM), not QTEE", observed);
                }
                else
                {
                    Check.That(!TeeProbe.ClaimsV4Rstmem(version), "bit 4 outside v4", "clear, or QTEE's OBJREF", observed);
                }
            });

        yield return Case("tee.version.privileged", "TEE_GEN_CAP_PRIVILEGED is clear on /dev/teeN and set on /dev/teeprivN (when it can be opened)",
            $"{Core}: tee_ioctl_version: TEE_DESC_PRIVILEGED → gen_caps |= TEE_GEN_CAP_PRIVILEGED", c =>
            {
                tee_ioctl_version_data version = Version(c);
                Check.Equal(0u, version.gen_caps & Tee.TEE_GEN_CAP_PRIVILEGED, $"PRIVILEGED in {c.Target.Name}'s gen_caps 0x{version.gen_caps:x}");
                if (TryOpenSupplicant(c, out SafeFd? supplicant, out _))
                {
                    var privileged = new tee_ioctl_version_data();
                    Check.Errno(Errno.None, c.Kernel.Ioctl(supplicant!, Tee.TEE_IOC_VERSION, ref privileged, out _), "TEE_IOC_VERSION on the supplicant device");
                    Check.Equal(Tee.TEE_GEN_CAP_PRIVILEGED, privileged.gen_caps & Tee.TEE_GEN_CAP_PRIVILEGED, $"PRIVILEGED in the supplicant device's gen_caps 0x{privileged.gen_caps:x}");
                }
            });

        yield return Case("tee.supplicant.single-open", "the supplicant device (/dev/teeprivN) opens once: a second open gives EBUSY until the first closes",
            "drivers/tee/optee/core.c: optee_open: supp.ctx already set → -EBUSY; optee_release_supp clears it", c =>
            {
                if (!TryOpenSupplicant(c, out SafeFd? first, out string why))
                {
                    CaseContext.Skip(why);
                }
                string path = SupplicantPath(c)!;
                Check.Errno(Errno.EBUSY, c.Kernel.Open(path, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, out SafeFd second), $"a second open of {path}");
                second.Dispose();
                c.Close(first!);
                Check.Errno(Errno.None, c.Kernel.Open(path, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, out SafeFd again), $"opening {path} after the first descriptor closed");
                c.Own(again);
            });

        yield return Case("tee.generation.consistent", "the heaps and the TEE describe one generation (and the model's, when testing the model)",
            "protected,* heaps (mainline tee_heap.c), restricted,* heaps (v6), TEE_IOC_RSTMEM_ALLOC (v4) are exclusive", c =>
            {
                IReadOnlyList<UseCase> v4 = TeeProbe.V4UseCases(c.Kernel, Device(c));
                bool heaps = c.Environment.AllHeaps.Any(KernelGenerations.IsRestrictedHeap);
                Check.That(!(heaps && v4.Count > 0), "restricted heaps and v4 RSTMEM_ALLOC together", "not both",
                    $"heaps {string.Join(", ", c.Environment.AllHeaps)} and v4 use cases {string.Join(", ", v4)}");
                KernelGeneration?[] heapGenerations = c.Environment.AllHeaps.Where(KernelGenerations.IsRestrictedHeap)
                    .Select(h => KernelGenerations.FromHeapNames([h])).Distinct().ToArray();
                Check.That(heapGenerations.Length <= 1, "protected,* and restricted,* heaps together", "one prefix",
                    $"heaps {string.Join(", ", c.Environment.AllHeaps)}");
                if (c.Environment.DeclaredGeneration is { } declared)
                {
                    Check.Equal(declared.Name(), c.Generation?.Name() ?? "none", "the detected generation");
                }
            });

        yield return Case("tee.ioctl.unknown-nr", "an unknown TEE request: EINVAL",
            $"{Core}: tee_ioctl: switch (cmd) default → -EINVAL", c =>
            {
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(Device(c), Ioc._IOC(Ioc._IOC_READ, Tee.TEE_IOC_MAGIC, 0x7f, 16), new byte[16], out _), "_IOR(0xa4, 0x7f, 16)");
            });

        yield return Case("tee.ioctl.dma-heap-request", "DMA_HEAP_IOCTL_ALLOC on the TEE device: EINVAL",
            $"{Core}: tee_ioctl: switch (cmd) default → -EINVAL", c =>
            {
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(Device(c), DmaHeap.DMA_HEAP_IOCTL_ALLOC, new byte[24], out _), "DMA_HEAP_IOCTL_ALLOC");
            });

        yield return Case("tee.ioctl.object-invoke", "TEE_IOC_OBJECT_INVOKE on a driver without object_invoke_func (all but QTEE): EINVAL",
            $"{Core}: tee_ioctl_object_invoke: !ops->object_invoke_func → -EINVAL (unknown request before it existed: -EINVAL too)", c =>
            {
                if (Version(c).impl_id == Tee.TEE_IMPL_ID_QTEE)
                {
                    CaseContext.Skip("QTEE implements TEE_IOC_OBJECT_INVOKE");
                }
                var data = new tee_ioctl_buf_data();
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_OBJECT_INVOKE, ref data, out _), "TEE_IOC_OBJECT_INVOKE");
            });

        yield return Case("tee.shm-alloc.basic", "TEE_IOC_SHM_ALLOC: page-rounded size, an id, an O_RDWR fd without close-on-exec",
            $"{Core}: tee_ioctl_shm_alloc; {Shm}: tee_shm_get_fd (O_RDWR)", c =>
            {
                var data = new tee_ioctl_shm_alloc_data { size = 5000 };
                SafeFd shm = ShmAllocOrSkip(c, ref data);
                Check.Equal(Page.Align(5000), data.size, "the size written back");
                Check.Equal(0u, data.flags, "the flags after the call");
                Check.That(data.id > 0, "the id", "> 0", data.id.ToString(CultureInfo.InvariantCulture));
                Check.Equal(false, Sys.IsCloseOnExec(shm), "FD_CLOEXEC of the shm fd");
                Check.Equal(Fcntl.O_RDWR, Sys.GetStatusFlags(shm) & Fcntl.O_ACCMODE, "the shm fd's access mode");
            });

        yield return Case("tee.shm-alloc.flags", "TEE_IOC_SHM_ALLOC with flags != 0: EINVAL",
            $"{Core}: tee_ioctl_shm_alloc: data.flags → -EINVAL", c =>
            {
                var probe = new tee_ioctl_shm_alloc_data { size = 4096 };
                ShmAllocOrSkip(c, ref probe);
                var data = new tee_ioctl_shm_alloc_data { size = 4096, flags = 1 };
                Check.Errno(Errno.EINVAL, ShmAlloc(c, ref data, out _), "TEE_IOC_SHM_ALLOC flags 1");
            });

        yield return Case("tee.shm-alloc.ids-distinct", "every live shm has its own positive id",
            $"{Shm}: idr_alloc(&teedev->idr, .., 1, 0)", c =>
            {
                var ids = new HashSet<int>();
                for (int i = 0; i < 4; i++)
                {
                    var data = new tee_ioctl_shm_alloc_data { size = 4096 };
                    ShmAllocOrSkip(c, ref data);
                    Check.That(data.id > 0 && ids.Add(data.id), $"id of shm {i + 1}", "positive and unused", $"{data.id} (have {string.Join(", ", ids)})");
                }
            });

        yield return Case("tee.shm-alloc.lowest-free-id", "ids are the lowest free from 1, not cyclic: a closed shm's id is the next one given",
            $"{Shm}: idr_alloc(&teedev->idr, .., 1, 0); tee_shm_release: idr_remove", c =>
            {
                var ids = new int[3];
                var fds = new SafeFd[3];
                for (int i = 0; i < 3; i++)
                {
                    var data = new tee_ioctl_shm_alloc_data { size = 4096 };
                    fds[i] = ShmAllocOrSkip(c, ref data);
                    ids[i] = data.id;
                }
                c.Close(fds[1]);
                var next = new tee_ioctl_shm_alloc_data { size = 4096 };
                ShmAllocOrSkip(c, ref next);
                Check.Equal(ids[1], next.id, $"the id after closing id {ids[1]} (live: {ids[0]}, {ids[2]})");
            });

        yield return Case("tee.shm-alloc.mmap", "the shm fd maps read/write within its size; a mapping past its size: EINVAL",
            $"{Shm}: tee_shm_fop_mmap: vm_pgoff + vma_pages > shm->size >> PAGE_SHIFT → -EINVAL, else remap_pfn_range", c =>
            {
                var data = new tee_ioctl_shm_alloc_data { size = 8192 };
                SafeFd shm = ShmAllocOrSkip(c, ref data);
                Check.Errno(Errno.None, c.Map(shm, 8192, Mman.PROT_READ | Mman.PROT_WRITE, Mman.MAP_SHARED, out _), "mmap of the 8192-byte shm");
                Check.Errno(Errno.EINVAL, c.Map(shm, (nuint)(3 * Page.Size), Mman.PROT_READ, Mman.MAP_SHARED, out _), $"mmap of {3 * Page.Size} bytes");
            });

        yield return Case("tee.shm-alloc.not-seekable", "lseek on the shm fd: ESPIPE",
            $"{Shm}: tee_shm_fops has no llseek (fs/file_table.c: alloc_file sets FMODE_LSEEK only with ->llseek)", c =>
            {
                var data = new tee_ioctl_shm_alloc_data { size = 4096 };
                SafeFd shm = ShmAllocOrSkip(c, ref data);
                Check.Errno(Errno.ESPIPE, c.Kernel.LSeek(shm, 0, Fcntl.SEEK_END, out _), "lseek(shm, 0, SEEK_END)");
            });

        // ---- v4: TEE_IOC_RSTMEM_ALLOC ----------------------------------------

        yield return Case("tee.rstmem.absent", "outside v4 the TEE_IOC_RSTMEM_ALLOC number is unknown: EINVAL",
            $"{Core}: tee_ioctl: switch (cmd) default → -EINVAL", c =>
            {
                if (c.Generation == KernelGeneration.V4)
                {
                    CaseContext.Skip("v4 implements TEE_IOC_RSTMEM_ALLOC (the tee.rstmem.* cases)");
                }
                var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY };
                Check.Errno(Errno.EINVAL, c.TeeRstmemAlloc(Device(c), ref data, out _), "TEE_IOC_RSTMEM_ALLOC");
            });

        yield return Case("tee.rstmem.use-cases", "each use case allocates: id written back, size left as passed, buffer page-rounded",
            "v4 series: tee_ioctl_rstmem_alloc → tee_shm_alloc_rstmem; data.id = shm->id", c =>
            {
                foreach (UseCase useCase in RequireV4(c))
                {
                    var data = new tee_ioctl_rstmem_alloc_data { size = 5000, use_case = useCase.Id, id = Untouched };
                    Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref data, out SafeFd buffer), $"RSTMEM_ALLOC of 5000 bytes for {useCase}");
                    Check.That(data.id > 0, $"the id for {useCase}", "> 0", data.id.ToString(CultureInfo.InvariantCulture));
                    Check.Equal(5000UL, data.size, "the size field after the call");
                    Check.Equal((long)Page.Align(5000), c.SizeOf(buffer), "lseek(SEEK_END)");
                }
            });

        foreach ((string what, ulong size, uint flags, uint useCase, Errno expected, string mirrors) in new (string, ulong, uint, uint, Errno, string)[]
        {
            ("reserved-use-case", 4096, 0, Tee.TEE_IOC_UC_RESERVED, Errno.EINVAL, "use_case == TEE_IOC_UC_RESERVED → -EINVAL"),
            ("unknown-use-case", 4096, 0, 4, Errno.EINVAL, "no pool for the use case → -EINVAL"),
            ("flags", 4096, 1, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.EINVAL, "data.flags → -EINVAL"),
            ("size-zero", 0, 0, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.ENOMEM, "size 0 reaches the pool: -ENOMEM"),
            ("size-wraps", ulong.MaxValue, 0, Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY, Errno.ENOMEM, "a size no pool can hold (2^64-1) reaches the pool: -ENOMEM"),
        })
        {
            yield return Case($"tee.rstmem.{what}", $"RSTMEM_ALLOC size {size}, flags {flags}, use case {useCase}: {expected.Name()}, id untouched",
                $"v4 series: tee_ioctl_rstmem_alloc: {mirrors}", c =>
                {
                    IReadOnlyList<UseCase> present = RequireV4(c);
                    uint target = useCase == Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY && present.Count > 0 ? present[0].Id : useCase;
                    var data = new tee_ioctl_rstmem_alloc_data { size = size, flags = flags, use_case = target, id = Untouched };
                    Check.Errno(expected, c.TeeRstmemAlloc(Device(c), ref data, out _), "TEE_IOC_RSTMEM_ALLOC");
                    Check.Equal(Untouched, data.id, "the id field after the failure");
                });
        }

        yield return Case("tee.rstmem.fd-mode", "a restricted buffer's fd is read-only and close-on-exec",
            "v4 series: tee_shm_alloc_rstmem exports with O_RDONLY | O_CLOEXEC", c =>
            {
                UseCase useCase = RequireV4(c)[0];
                var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref data, out SafeFd buffer), "RSTMEM_ALLOC");
                Check.Equal(Fcntl.O_RDONLY, Sys.GetStatusFlags(buffer) & Fcntl.O_ACCMODE, "the access mode");
                Check.Equal(true, Sys.IsCloseOnExec(buffer), "FD_CLOEXEC");
            });

        yield return Case("tee.rstmem.ids-shared-with-shm", "restricted buffers and shared memory draw ids from one space",
            $"{Shm}: one teedev->idr for tee_shm_alloc and the v4 restricted allocations", c =>
            {
                UseCase useCase = RequireV4(c)[0];
                var shm = new tee_ioctl_shm_alloc_data { size = 4096 };
                ShmAllocOrSkip(c, ref shm);
                var ids = new HashSet<int> { shm.id };
                for (int i = 0; i < 3; i++)
                {
                    var data = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                    Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref data, out _), "RSTMEM_ALLOC");
                    Check.That(ids.Add(data.id), $"restricted buffer {i + 1}'s id", "not used by any live shm", $"{data.id} (have {string.Join(", ", ids)})");
                }
            });

        yield return Case("tee.rstmem.id-freed-at-last-close", "a restricted buffer's id stays taken while any descriptor of it is open, and is the next one given after the last closes",
            "v4 series: the dma-buf release → tee_shm_put → idr_remove at the last reference", c =>
            {
                UseCase useCase = RequireV4(c)[0];
                var first = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref first, out SafeFd buffer), "RSTMEM_ALLOC");
                Check.Errno(Errno.None, Sys.TryDuplicate(buffer, out SafeFd copy), "dup");
                c.Own(copy);
                c.Close(buffer);
                var second = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref second, out SafeFd other), "RSTMEM_ALLOC with a dup of the first open");
                Check.That(second.id != first.id, "the second buffer's id", $"not {first.id} (its dup is open)", second.id.ToString(CultureInfo.InvariantCulture));
                c.Close(other);
                c.Close(copy);
                var third = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref third, out _), "RSTMEM_ALLOC after every descriptor closed");
                Check.Equal(first.id, third.id, "the id after the first buffer's last descriptor closed");
            });

        // ---- v6/mainline: TEE_IOC_SHM_REGISTER_FD ------------------------------

        yield return Case("tee.register-fd.basic", "registering a protected dma-buf: a new fd, an id, flags 0x10 (TEE_SHM_DMA_BUF), page-rounded size",
            $"{Core}: tee_ioctl_shm_register_fd; {Shm}: tee_shm_register_fd", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 5000);
                var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
                Check.Errno(Errno.None, RegisterFd(c, ref data, out SafeFd shm), "TEE_IOC_SHM_REGISTER_FD");
                Check.That(data.id > 0, "the id", "> 0", data.id.ToString(CultureInfo.InvariantCulture));
                Check.Equal(Tee.TEE_SHM_DMA_BUF, data.flags, "the flags written back");
                Check.Equal(Page.Align(5000), data.size, "the size written back");
                Check.Equal((long)buffer.DangerousFd, data.fd, "the fd field after the call");
                Check.Equal(false, Sys.IsCloseOnExec(shm), "FD_CLOEXEC of the returned fd");
            });

        yield return Case("tee.register-fd.mmap-refused", "the registration's fd cannot be mapped: EINVAL",
            $"{Shm}: tee_shm_fop_mmap: TEE_SHM_DMA_BUF → -EINVAL", c =>
            {
                SafeFd shm = Register(c, ProtectedBuffer(c, 4096));
                Check.Errno(Errno.EINVAL, c.Map(shm, 4096, Mman.PROT_READ, Mman.MAP_SHARED, out _), "mmap of the tee_shm fd");
            });

        yield return Case("tee.register-fd.flags", "flags != 0: EINVAL",
            $"{Core}: tee_ioctl_shm_register_fd: data.flags → -EINVAL", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 4096);
                var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd, flags = 1 };
                Check.Errno(Errno.EINVAL, RegisterFd(c, ref data, out _), "TEE_IOC_SHM_REGISTER_FD flags 1");
            });

        yield return Case("tee.register-fd.foreign-dma-buf", "a dma-buf from another exporter (the system heap): EINVAL",
            $"{Shm}: tee_shm_register_fd: tee_heap_update_from_dma_buf → -EINVAL for a foreign dma-buf", c =>
            {
                RequireRegisterFd(c);
                if (!c.Environment.AllHeaps.Contains("system"))
                {
                    CaseContext.Skip("no /dev/dma_heap/system to take a foreign dma-buf from");
                }
                Check.Errno(Errno.None, c.HeapAlloc(c.Open(DevicePaths.HeapNode("system")), 4096, Fcntl.O_RDWR | Fcntl.O_CLOEXEC, out SafeFd foreign), "allocating from system");
                var data = new tee_ioctl_shm_register_fd_data { fd = foreign.DangerousFd };
                Check.Errno(Errno.EINVAL, RegisterFd(c, ref data, out _), "registering a system-heap buffer");
            });

        yield return Case("tee.register-fd.not-a-dma-buf", "a descriptor that is not a dma-buf (a memfd): EINVAL",
            $"{Shm}: tee_shm_register_fd: dma_buf_get → -EINVAL", c =>
            {
                RequireRegisterFd(c);
                Check.Errno(Errno.None, Sys.TryMemfdCreate("conformance", Memfd.MFD_CLOEXEC, out SafeFd memfd), "memfd_create");
                c.Own(memfd);
                var data = new tee_ioctl_shm_register_fd_data { fd = memfd.DangerousFd };
                Check.Errno(Errno.EINVAL, RegisterFd(c, ref data, out _), "registering a memfd");
            });

        yield return Case("tee.register-fd.closed-fd", "a closed descriptor number: EINVAL",
            $"{Shm}: tee_shm_register_fd: dma_buf_get(-EBADF) reported as -EINVAL", c =>
            {
                RequireRegisterFd(c);
                SafeFd buffer = ProtectedBuffer(c, 4096);
                long number = buffer.DangerousFd;
                c.Close(buffer);
                var data = new tee_ioctl_shm_register_fd_data { fd = number };
                Check.Errno(Errno.EINVAL, RegisterFd(c, ref data, out _), $"registering closed fd {number}");
            });

        yield return Case("tee.register-fd.fd-truncated", "the s64 fd field is truncated to int: fd + 2^32 registers the same buffer",
            $"{Core}: tee_ioctl_shm_register_fd passes data.fd to tee_shm_register_fd(ctx, int fd)", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 4096);
                long wide = (1L << 32) + buffer.DangerousFd;
                var data = new tee_ioctl_shm_register_fd_data { fd = wide };
                Check.Errno(Errno.None, RegisterFd(c, ref data, out _), $"TEE_IOC_SHM_REGISTER_FD of fd {wide}");
                Check.Equal(wide, data.fd, "the fd field after the call");
                Check.Equal(Page.Align(4096), data.size, "the size written back");
            });

        yield return Case("tee.register-fd.count", "a registration holds one reference to the dma-buf: its fdinfo count is 2 while registered, 1 after",
            $"{Shm}: tee_shm_register_fd: dma_buf_get; tee_shm_release: dma_buf_put", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 4096);
                SafeFd shm = Register(c, buffer);
                Check.Equal("2", c.FdInfo(buffer).GetValueOrDefault("count"), "fdinfo count while registered");
                c.Close(shm);
                Check.Equal("1", c.FdInfo(buffer).GetValueOrDefault("count"), "fdinfo count after the registration closed");
            });

        yield return Case("tee.register-fd.other-device", "registering a buffer of /dev/teeN's heap on the supplicant device: EINVAL",
            "drivers/tee/tee_heap.c: tee_heap_update_from_dma_buf: buf->heap->teedev != teedev → -EINVAL", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 4096);
                if (!TryOpenSupplicant(c, out SafeFd? supplicant, out string why))
                {
                    CaseContext.Skip(why);
                }
                var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(supplicant!, Tee.TEE_IOC_SHM_REGISTER_FD, ref data, out _), "TEE_IOC_SHM_REGISTER_FD on the supplicant device");
            });

        yield return Case("tee.register-fd.fresh-id", "registering one buffer twice gives two registrations with two ids",
            $"{Shm}: tee_shm_register_fd: a new tee_shm and id each call", c =>
            {
                SafeFd buffer = ProtectedBuffer(c, 4096);
                var first = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
                var second = first;
                Check.Errno(Errno.None, RegisterFd(c, ref first, out _), "the first registration");
                Check.Errno(Errno.None, RegisterFd(c, ref second, out _), "the second registration");
                Check.That(first.id != second.id, "the two ids", "different", $"both {first.id}");
            });

        yield return Case("tee.register-fd.survives-close", "the registration holds the memory after the dma-buf is closed, until its own fd closes",
            $"{Shm}: tee_shm_register_fd takes a dma_buf reference; tee_shm_release drops it", c =>
            {
                RequireRegisterFd(c);
                const ulong Chunk = 1 << 20;
                foreach (HeapTarget heap in c.Environment.AllHeaps.Where(KernelGenerations.IsRestrictedHeap).Select(h => new HeapTarget(h)))
                {
                    int capacity = FillCount(c, heap, Chunk);
                    if (capacity < 0)
                    {
                        continue;
                    }
                    Check.Errno(Errno.None, heap.Allocate(c, Chunk, out SafeFd buffer), $"allocating 1 MiB from {heap.Name}");
                    SafeFd shm = Register(c, buffer);
                    c.Close(buffer);
                    Check.Equal(capacity - 1, FillCount(c, heap, Chunk), $"1 MiB buffers {heap.Name} holds with the registration open");
                    c.Close(shm);
                    Check.Equal(capacity, FillCount(c, heap, Chunk), $"1 MiB buffers {heap.Name} holds after the registration closed");
                    return;
                }
                CaseContext.Skip($"no protected heap can be filled within --max-bytes {ByteSize.Format(c.Budget.MaxBytes)}");
            });

        yield return Case("tee.register-fd.v1-layout", "the older 32-byte REGISTER_FD: the v4 layout on v4, an unknown request (EINVAL) on v6/mainline",
            $"{Core}: tee_ioctl: switch on the exact cmd (its _IOC_SIZE included)", c =>
            {
                if (c.Generation == KernelGeneration.V4)
                {
                    UseCase useCase = RequireV4(c)[0];
                    var alloc = new tee_ioctl_rstmem_alloc_data { size = 5000, use_case = useCase.Id };
                    Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref alloc, out SafeFd buffer), "RSTMEM_ALLOC");
                    var data = new tee_ioctl_shm_register_fd_data_v1 { fd = buffer.DangerousFd };
                    Check.Errno(Errno.None, c.Allocate(0, "registering", () =>
                    {
                        Errno errno = c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_SHM_REGISTER_FD_V1, ref data, out int fd);
                        return (errno, fd);
                    }, out _), "TEE_IOC_SHM_REGISTER_FD (32-byte layout)");
                    Check.Equal(Tee.TEE_SHM_DMA_BUF, data.flags, "the flags written back");
                    Check.Equal(Page.Align(5000), data.size, "the size written back");
                    return;
                }
                RequireRegisterFd(c);
                SafeFd protectedBuffer = ProtectedBuffer(c, 4096);
                var old = new tee_ioctl_shm_register_fd_data_v1 { fd = protectedBuffer.DangerousFd };
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_SHM_REGISTER_FD_V1, ref old, out _), "TEE_IOC_SHM_REGISTER_FD (32-byte layout)");
            });

        yield return Case("tee.register-fd.24-byte-on-v4", "v4 kernels predate mainline's 24-byte REGISTER_FD: EINVAL",
            $"{Core}: tee_ioctl: switch on the exact cmd; TEE_IOC_SHM_REGISTER_FD (0xc018a408) arrived with the protected-memory series", c =>
            {
                UseCase useCase = RequireV4(c)[0];
                var alloc = new tee_ioctl_rstmem_alloc_data { size = 4096, use_case = useCase.Id };
                Check.Errno(Errno.None, c.TeeRstmemAlloc(Device(c), ref alloc, out SafeFd buffer), "RSTMEM_ALLOC");
                var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
                Check.Errno(Errno.EINVAL, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_SHM_REGISTER_FD, ref data, out _), "TEE_IOC_SHM_REGISTER_FD (24-byte layout)");
            });
    }

    private static ConformanceCase Case(string id, string title, string mirrors, Action<CaseContext> run) =>
        new(id, title, mirrors, TargetKind.Tee, run);

    /// <summary>The privileged node beside the target (/dev/teeprivN for /dev/teeN), when present.</summary>
    private static string? SupplicantPath(CaseContext c)
    {
        TeeTarget tee = c.TargetAs<TeeTarget>();
        string directory = System.IO.Path.GetDirectoryName(tee.Path)!;
        string name = "teepriv" + tee.Name["tee".Length..];
        return c.Kernel.ListDirectory(directory).Contains(name) ? $"{directory}/{name}" : null;
    }

    /// <summary>
    /// Opens the supplicant device for the case; false with the reason when it
    /// is absent or held (by tee-supplicant: optee_open allows one open).
    /// </summary>
    private static bool TryOpenSupplicant(CaseContext c, out SafeFd? supplicant, out string why)
    {
        supplicant = null;
        string? path = SupplicantPath(c);
        if (path is null)
        {
            why = $"no privileged TEE device beside {c.TargetAs<TeeTarget>().Path}";
            return false;
        }
        Errno errno = c.Kernel.Open(path, Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, out SafeFd fd);
        if (errno == Errno.EBUSY)
        {
            why = $"{path} is held (by tee-supplicant: optee_open allows one open)";
            return false;
        }
        if (errno is Errno.EACCES or Errno.EPERM)
        {
            why = $"open({path}): {errno.Name()}: run as root";
            return false;
        }
        Check.Errno(Errno.None, errno, $"open({path}, O_RDONLY)");
        supplicant = c.Own(fd);
        why = "";
        return true;
    }

    private static SafeFd Device(CaseContext c) => c.Open(c.TargetAs<TeeTarget>().Path);

    private static tee_ioctl_version_data Version(CaseContext c)
    {
        var version = new tee_ioctl_version_data();
        Check.Errno(Errno.None, c.Kernel.Ioctl(Device(c), Tee.TEE_IOC_VERSION, ref version, out _), "TEE_IOC_VERSION");
        return version;
    }

    private static IReadOnlyList<UseCase> RequireV4(CaseContext c)
    {
        IReadOnlyList<UseCase> useCases = TeeProbe.V4UseCases(c.Kernel, Device(c));
        if (useCases.Count == 0)
        {
            CaseContext.Skip($"generation {c.Generation?.Name() ?? "none"}: TEE_IOC_RSTMEM_ALLOC is the v4 series' interface");
        }
        return useCases;
    }

    private static void RequireRegisterFd(CaseContext c)
    {
        if (c.Generation is not (KernelGeneration.Mainline or KernelGeneration.V6))
        {
            CaseContext.Skip($"generation {c.Generation?.Name() ?? "none"}: TEE_IOC_SHM_REGISTER_FD of protected heap buffers needs protected,* or restricted,* heaps");
        }
    }

    private static Errno ShmAlloc(CaseContext c, ref tee_ioctl_shm_alloc_data data, out SafeFd shm)
    {
        tee_ioctl_shm_alloc_data argument = data;
        SafeFd tee = Device(c);
        Errno result = c.Allocate(Page.Align(data.size), $"allocating {data.size} bytes of shared memory", () =>
        {
            Errno errno = c.Kernel.Ioctl(tee, Tee.TEE_IOC_SHM_ALLOC, ref argument, out int fd);
            return (errno, fd);
        }, out shm);
        data = argument;
        return result;
    }

    /// <summary>SHM_ALLOC, skipping the case when the driver has no shared-memory pool (EINVAL for a valid request).</summary>
    private static SafeFd ShmAllocOrSkip(CaseContext c, ref tee_ioctl_shm_alloc_data data)
    {
        Errno errno = ShmAlloc(c, ref data, out SafeFd shm);
        if (errno == Errno.EINVAL && data.flags == 0)
        {
            CaseContext.Skip("TEE_IOC_SHM_ALLOC of a valid request gives EINVAL: this TEE driver has no shared-memory pool (tee_shm_alloc: !teedev->pool)");
        }
        Check.Errno(Errno.None, errno, $"TEE_IOC_SHM_ALLOC of {data.size} bytes");
        return shm;
    }

    /// <summary>A buffer from the first protected/restricted heap present.</summary>
    private static SafeFd ProtectedBuffer(CaseContext c, ulong length)
    {
        RequireRegisterFd(c);
        string? heap = c.Environment.AllHeaps.FirstOrDefault(KernelGenerations.IsRestrictedHeap);
        if (heap is null)
        {
            CaseContext.Skip("no protected,* or restricted,* heap to take a buffer from");
        }
        Check.Errno(Errno.None, new HeapTarget(heap!).Allocate(c, length, out SafeFd buffer), $"allocating {length} bytes from {heap}");
        return buffer;
    }

    private static Errno RegisterFd(CaseContext c, ref tee_ioctl_shm_register_fd_data data, out SafeFd shm)
    {
        tee_ioctl_shm_register_fd_data argument = data;
        SafeFd tee = Device(c);
        Errno result = c.Allocate(0, "registering", () =>
        {
            Errno errno = c.Kernel.Ioctl(tee, Tee.TEE_IOC_SHM_REGISTER_FD, ref argument, out int fd);
            return (errno, fd);
        }, out shm);
        data = argument;
        return result;
    }

    /// <summary>Registers <paramref name="buffer"/>; the registration carries the buffer's budget charge.</summary>
    private static SafeFd Register(CaseContext c, SafeFd buffer)
    {
        var data = new tee_ioctl_shm_register_fd_data { fd = buffer.DangerousFd };
        Check.Errno(Errno.None, RegisterFd(c, ref data, out SafeFd shm), "TEE_IOC_SHM_REGISTER_FD");
        c.ShareCharge(buffer, shm);
        return shm;
    }

    /// <summary>How many <paramref name="chunk"/> buffers the heap gives before ENOMEM (all freed again); -1 when that needs more than the budget.</summary>
    private static int FillCount(CaseContext c, HeapTarget heap, ulong chunk)
    {
        try
        {
            List<SafeFd> held = PoolSuite.Fill(c, heap, chunk);
            held.ForEach(c.Close);
            return held.Count;
        }
        catch (CaseSkippedException)
        {
            return -1;
        }
    }
}
