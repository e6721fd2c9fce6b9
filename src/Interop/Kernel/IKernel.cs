namespace Rstmem.Interop.Kernel;

/// <summary>
/// The kernel as rstmemd sees it: device nodes, ioctls on raw argument bytes,
/// lseek, mmap and fdinfo. Two implementations: <see cref="LinuxKernel"/>
/// (the real system calls) and the reference model
/// (Model.ModelKernel). The daemon and the conformance tester
/// are written once against this interface and never ask which one they have.
/// Every descriptor is a real one in this process in both implementations,
/// so it can be passed to other processes with SCM_RIGHTS.
/// </summary>
public interface IKernel
{
    /// <summary>What this is, for logs: "Linux 6.1.0" or "reference kernel model (generation mainline)".</summary>
    string Description { get; }

    /// <summary>open(2) of a device node such as /dev/tee0 or /dev/dma_heap/system (O_CLOEXEC always).</summary>
    Errno Open(string path, int flags, out SafeFd fd);

    /// <summary>
    /// ioctl(2). <paramref name="argument"/> is the argument as the caller laid
    /// it out; the kernel reads from it and writes back into it exactly as the
    /// real call would (including on failure where the kernel does so).
    /// <paramref name="result"/> is the return value: a new descriptor number
    /// for ioctls that create one, which the caller then owns.
    /// </summary>
    Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result);

    /// <summary>
    /// Takes ownership of the descriptor the last <see cref="Ioctl"/> on this
    /// thread installed (the number it returned or wrote into its argument),
    /// called right after that ioctl. For the real kernel this is
    /// <see cref="SafeFd.DangerousAdopt"/>; the model also keeps what it knows
    /// of the new file in the handle, so the handle's calls need no lookup.
    /// </summary>
    SafeFd AdoptInstalled(int fd);

    /// <summary>lseek(2); for a dma-buf only (0, SEEK_END) and (0, SEEK_SET) succeed.</summary>
    Errno LSeek(SafeFd fd, long offset, int whence, out long position);

    /// <summary>mmap(2) of a descriptor.</summary>
    Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address);

    /// <summary>munmap(2) of a mapping made by <see cref="Mmap"/>.</summary>
    Errno Munmap(nint address, nuint length);

    /// <summary>The text of /proc/self/fdinfo/N for the descriptor.</summary>
    Errno ReadFdInfo(SafeFd fd, out string fdinfo);

    /// <summary>
    /// How this kernel reveals a dma-buf's last close, learned once from
    /// <paramref name="sample"/>, a fresh buffer the caller gives up (it is
    /// closed here). The daemon's backend probe asks this once at startup.
    /// </summary>
    ReleaseSignal ProbeReleaseSignal(SafeFd sample);

    /// <summary>An observer of dma-buf last closes that uses <paramref name="signal"/> (what <see cref="ProbeReleaseSignal"/> found).</summary>
    IReleaseObserver ObserveReleases(ReleaseSignal signal);

    /// <summary>The entries of a device directory (/dev, /dev/dma_heap): names only, empty when it does not exist.</summary>
    IReadOnlyList<string> ListDirectory(string path);
}
