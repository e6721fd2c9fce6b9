using Rstmem.Interop.Uapi;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;

namespace Rstmem.Model.Files;

/// <summary>
/// What the model keeps behind one of its descriptors. Each is backed by a
/// real memfd (so it can cross processes), recognised by its inode and
/// forgotten when its release is seen: first through a lock on the
/// description handed out (<see cref="LockedFiles"/>), and once held a while
/// through the model's watch on the inode — the last reference anywhere is
/// gone. The defaults are those of a file whose
/// file_operations lack the hook: no llseek (ESPIPE), no mmap (ENODEV), no
/// ioctl (ENOTTY).
/// </summary>
internal abstract class ModelFile(ModelKernel kernel) : IReleaseSink
{
    /// <summary>The model the file belongs to; it hears the file's release (the file is its own release sink, so a watch costs no delegate).</summary>
    protected ModelKernel Kernel { get; } = kernel;

    /// <summary>The memfd's (device, inode): the file's key in the model's <see cref="FileTable"/>.</summary>
    public FileIdentity Identity { get; set; }

    /// <summary>The model's own description of the file while <see cref="LockedFiles"/> holds it, else null; guarded by its gate.</summary>
    internal SafeFd? Own;

    /// <summary>Whether this file is <paramref name="kernel"/>'s (a handle may have been resolved by another model).</summary>
    internal bool BelongsTo(ModelKernel kernel) => ReferenceEquals(Kernel, kernel);

    /// <summary>The next file in the same bucket of the model's <see cref="FileTable"/>.</summary>
    internal ModelFile? NextInTable;

    /// <summary>From the model's release watch (the file's inode was evicted) or its lock (the description handed out was released).</summary>
    void IReleaseSink.Released(long token, long notBefore) => Kernel.FileReleased(this);

    public virtual Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        result = -1;
        return Errno.ENOTTY;
    }

    public virtual Errno LSeek(SafeFd fd, long offset, int whence, out long position)
    {
        position = -1;
        return Errno.ESPIPE;
    }

    public virtual Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        address = 0;
        return Errno.ENODEV;
    }

    /// <summary>Lines the kernel's show_fdinfo hook would add after the generic ones; <paramref name="shown"/> is the (device, inode) of the descriptor shown.</summary>
    public virtual IEnumerable<string> FdInfoLines(FileIdentity shown) => [];

    /// <summary>The f_flags mask the real file would show (procfs adds O_CLOEXEC itself).</summary>
    public virtual int FdInfoFlagsMask => ~0;

    /// <summary>The last reference is gone (see <see cref="LockedFiles"/> and the model's release watch).</summary>
    public virtual void Released() { }

    /// <summary>do_mmap's own checks, made before any driver hook: length, alignment, access mode.</summary>
    protected static Errno GenericMmapChecks(SafeFd fd, nuint length, int prot, int flags, long offset)
    {
        if (length == 0 || offset % Environment.SystemPageSize != 0 || offset < 0)
        {
            return Errno.EINVAL;
        }
        int accessMode = Sys.GetStatusFlags(fd) & Fcntl.O_ACCMODE;
        bool readable = accessMode is Fcntl.O_RDONLY or Fcntl.O_RDWR;
        bool writable = accessMode is Fcntl.O_WRONLY or Fcntl.O_RDWR;
        if (!readable || ((flags & Mman.MAP_SHARED) != 0 && (prot & Mman.PROT_WRITE) != 0 && !writable))
        {
            return Errno.EACCES;
        }
        return Errno.None;
    }
}
