using Rstmem.Interop.Kernel;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;
using Rstmem.Interop;

namespace Rstmem.Model.Files;

/// <summary>
/// An open /dev/teeN or /dev/teeprivN: tee_ioctl of drivers/tee/tee_core.c,
/// dispatching on the exact request value (unknown: EINVAL), with OP-TEE's
/// identity (docs/kernel-semantics.md §4, §8).
/// </summary>
internal sealed class TeeContextFile(ModelKernel kernel, ModelTeeDevice device) : ModelFile(kernel)
{
    private static readonly int RstmemIdOffset = tee_ioctl_rstmem_alloc_data.IdOffset;

    public ModelTeeDevice Device { get; } = device;

    /// <summary>The supplicant device may be opened again once its one descriptor is gone (optee_release).</summary>
    public override void Released()
    {
        if (Device.Privileged)
        {
            Interlocked.Exchange(ref Device.OpenCount, 0);
        }
    }

    public override Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        result = -1;
        KernelGeneration generation = Kernel.Generation;
        if (request == Tee.TEE_IOC_VERSION)
        {
            return Version(argument, out result);
        }
        if (request == Tee.TEE_IOC_SHM_ALLOC)
        {
            return ShmAlloc(argument, out result);
        }
        if (request == Tee.TEE_IOC_SHM_REGISTER_FD && generation != KernelGeneration.V4)
        {
            return RegisterFd(argument, out result);
        }
        if (request == Tee.TEE_IOC_SHM_REGISTER_FD_V1 && generation == KernelGeneration.V4)
        {
            // Vendor kernels of the v4 era carry the 2022 out-of-tree 32-byte layout instead.
            return RegisterFdV1(argument, out result);
        }
        if (request == Tee.TEE_IOC_RSTMEM_ALLOC && generation == KernelGeneration.V4)
        {
            return RstmemAlloc(argument, out result);
        }
        // Sessions, the supplicant and user-memory registration are not modelled; QTEE's
        // OBJECT_INVOKE is EINVAL for OP-TEE (no object_invoke_func); anything else is unknown.
        return Errno.EINVAL;
    }

    private Errno Version(Span<byte> argument, out int result)
    {
        result = -1;
        if (argument.Length < Unsafe.SizeOf<tee_ioctl_version_data>())
        {
            return Errno.EFAULT;
        }
        // optee_ffa_get_version reports GP | REG_MEM | MEMREF_NULL; the model registers no
        // user memory, so REG_MEM is left out. v4 adds RSTMEM when the driver has pools.
        uint genCaps = Tee.TEE_GEN_CAP_GP | Tee.TEE_GEN_CAP_MEMREF_NULL;
        if (Kernel.Generation == KernelGeneration.V4 && Kernel.HasRstmemPools)
        {
            genCaps |= Tee.TEE_GEN_CAP_RSTMEM;
        }
        if (Device.Privileged)
        {
            genCaps |= Tee.TEE_GEN_CAP_PRIVILEGED;
        }
        var version = new tee_ioctl_version_data { impl_id = Tee.TEE_IMPL_ID_OPTEE, impl_caps = Tee.TEE_OPTEE_CAP_TZ, gen_caps = genCaps };
        MemoryMarshal.Write(argument, in version);
        result = 0;
        return Errno.None;
    }

    // tee_ioctl_shm_alloc: flags must be 0; no pool → EINVAL; writes back id and the rounded size.
    private Errno ShmAlloc(Span<byte> argument, out int result)
    {
        result = -1;
        if (argument.Length < Unsafe.SizeOf<tee_ioctl_shm_alloc_data>())
        {
            return Errno.EFAULT;
        }
        var data = MemoryMarshal.Read<tee_ioctl_shm_alloc_data>(argument);
        // Size 0 is refused here as EINVAL; not verified on a kernel with a shm pool.
        if (data.flags != 0 || !Device.Bound || !Kernel.Options.TeeShmPool || data.size == 0 || data.size > int.MaxValue)
        {
            return Errno.EINVAL;
        }
        Errno errno = Kernel.CreateTeeShm(Device, (long)data.size, null, out int id, out long rounded, out result);
        if (errno == Errno.None)
        {
            data.id = id;
            data.size = (ulong)rounded;
            MemoryMarshal.Write(argument, in data);
        }
        return errno;
    }

    private Errno RegisterFd(Span<byte> argument, out int result)
    {
        result = -1;
        if (argument.Length < Unsafe.SizeOf<tee_ioctl_shm_register_fd_data>())
        {
            return Errno.EFAULT;
        }
        var data = MemoryMarshal.Read<tee_ioctl_shm_register_fd_data>(argument);
        Errno errno = Register(data.fd, data.flags, out int id, out long size, out result);
        if (errno == Errno.None)
        {
            (data.id, data.size, data.flags) = (id, (ulong)size, Tee.TEE_SHM_DMA_BUF);
            MemoryMarshal.Write(argument, in data);
        }
        return errno;
    }

    private Errno RegisterFdV1(Span<byte> argument, out int result)
    {
        result = -1;
        if (argument.Length < Unsafe.SizeOf<tee_ioctl_shm_register_fd_data_v1>())
        {
            return Errno.EFAULT;
        }
        var data = MemoryMarshal.Read<tee_ioctl_shm_register_fd_data_v1>(argument);
        Errno errno = Register(data.fd, data.flags, out int id, out long size, out result);
        if (errno == Errno.None)
        {
            (data.id, data.size, data.flags) = (id, (ulong)size, Tee.TEE_SHM_DMA_BUF);
            MemoryMarshal.Write(argument, in data);
        }
        return errno;
    }

    // tee_ioctl_shm_register_fd: flags != 0 → EINVAL; every registration failure (closed fd,
    // not a dma-buf, another exporter, another TEE device) → EINVAL. The s64 fd is truncated to int.
    private Errno Register(long fd, uint flags, out int id, out long size, out int result)
    {
        id = 0;
        size = 0;
        result = -1;
        if (flags != 0 || !Device.Bound)
        {
            return Errno.EINVAL;
        }
        ModelDmaBuf? buffer = Kernel.FindDmaBuf(unchecked((int)fd));
        // Only dma-bufs this TEE device exported (tee_heap_update_from_dma_buf: other ops or another teedev → EINVAL).
        if (buffer is null || buffer.Kind is not (ExporterKind.TeeHeap or ExporterKind.V4Rstmem) || !ReferenceEquals(buffer.TeeDevice, Device))
        {
            return Errno.EINVAL;
        }
        return Kernel.CreateTeeShm(Device, buffer.Size, buffer, out id, out size, out result) == Errno.None
            ? Errno.None
            : Errno.EINVAL;
    }

    // v4 tee_ioctl_rstmem_alloc → tee_rstmem_alloc → optee_rstmem_alloc ("[PATCH v4] tee: add restricted memory allocation", drivers/tee/tee_core.c and tee_rstmem.c).
    private Errno RstmemAlloc(Span<byte> argument, out int result)
    {
        result = -1;
        if (argument.Length < Unsafe.SizeOf<tee_ioctl_rstmem_alloc_data>())
        {
            return Errno.EFAULT;
        }
        var data = MemoryMarshal.Read<tee_ioctl_rstmem_alloc_data>(argument);
        if (data.use_case == Tee.TEE_IOC_UC_RESERVED)
        {
            return Errno.EINVAL;
        }
        if (!Device.Bound || Device.Privileged || !Kernel.HasRstmemPools)
        {
            return Errno.EINVAL; // device going away, or a driver without rstmem ops or pools
        }
        // The kernel reserves the id before the driver's checks and releases it on failure;
        // with lowest-free ids that is unobservable, so the model takes it on success only.
        if (data.flags != 0)
        {
            return Errno.EINVAL;
        }
        ModelHeap? pool = UseCase.ById(data.use_case) is { } known ? Kernel.UseCaseHeap(known) : null;
        if (pool is null)
        {
            return Errno.EINVAL;
        }
        ulong rounded = Page.Align(data.size);
        if (data.size == 0 || rounded == 0 || rounded > long.MaxValue)
        {
            return Errno.ENOMEM; // gen_pool_alloc of nothing, or of more than can exist
        }
        Errno errno = Kernel.AllocateRstmem(Device, pool, (long)rounded, out int id, out result);
        if (errno == Errno.None)
        {
            MemoryMarshal.Write(argument[RstmemIdOffset..], in id); // put_user(id): only id is written back
        }
        return errno;
    }
}
