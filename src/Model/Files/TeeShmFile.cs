using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
namespace Rstmem.Model.Files;

/// <summary>
/// A tee_shm descriptor (tee_shm_get_fd: anon inode "tee_shm", O_RDWR, not
/// close-on-exec). From SHM_ALLOC it is mappable; from SHM_REGISTER_FD it
/// holds a reference on the dma-buf and refuses mmap (tee_shm_fop_mmap:
/// TEE_SHM_DMA_BUF → EINVAL). Its id returns to the device at the last close.
/// </summary>
internal sealed class TeeShmFile(ModelKernel kernel, IdAllocator ids, int id, long size, ModelDmaBuf? registered) : ModelFile(kernel)
{
    public int Id { get; } = id;

    public long Size { get; } = size;

    public ModelDmaBuf? Registered { get; } = registered;

    public override Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        address = 0;
        if (Registered is not null)
        {
            return Errno.EINVAL;
        }
        Errno errno = GenericMmapChecks(fd, length, prot, flags, offset);
        if (errno != Errno.None)
        {
            return errno;
        }
        if (offset + (long)length > Size)
        {
            return Errno.EINVAL;
        }
        return Sys.TryMmap(fd, length, prot, flags, offset, out address);
    }

    public override void Released()
    {
        ids.Release(Id);
        Registered?.DropReference();
    }
}
