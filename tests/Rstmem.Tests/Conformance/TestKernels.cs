using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using Rstmem.Model;

namespace Rstmem.Tests.Conformance;

/// <summary>The model with two planted bugs: lseek(SEEK_CUR) succeeds, and a failed len-0 allocation scribbles on the struct.</summary>
internal sealed class BuggyKernel(ModelKernel model) : IKernel, IDisposable
{
    public string Description => "buggy " + model.Description;

    public ReleaseSignal ProbeReleaseSignal(SafeFd sample) => model.ProbeReleaseSignal(sample);

    public IReleaseObserver ObserveReleases(ReleaseSignal signal) => model.ObserveReleases(signal);

    public Errno Open(string path, int flags, out SafeFd fd) => model.Open(path, flags, out fd);

    public SafeFd AdoptInstalled(int fd) => model.AdoptInstalled(fd);

    public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        Errno errno = model.Ioctl(fd, request, argument, out result);
        if (request == DmaHeap.DMA_HEAP_IOCTL_ALLOC && errno == Errno.EINVAL && argument.Length >= 24 && BitConverter.ToUInt64(argument) == 0)
        {
            argument[8] = 0xff;
        }
        return errno;
    }

    public Errno LSeek(SafeFd fd, long offset, int whence, out long position)
    {
        if (whence == Fcntl.SEEK_CUR)
        {
            position = 0;
            return Errno.None;
        }
        return model.LSeek(fd, offset, whence, out position);
    }

    public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address) => model.Mmap(fd, length, prot, flags, offset, out address);

    public Errno Munmap(nint address, nuint length) => model.Munmap(address, length);

    public Errno ReadFdInfo(SafeFd fd, out string fdinfo) => model.ReadFdInfo(fd, out fdinfo);

    public IReadOnlyList<string> ListDirectory(string path) => model.ListDirectory(path);

    public void Dispose() => model.Dispose();
}

/// <summary>A kernel with no heap nodes and no TEE device, whatever the machine running the tests has.</summary>
internal sealed class NoDevicesKernel : IKernel
{
    public const string Name = "a kernel without devices (test)";

    public string Description => Name;

    public ReleaseSignal ProbeReleaseSignal(SafeFd sample) => LinuxKernel.Instance.ProbeReleaseSignal(sample);

    public IReleaseObserver ObserveReleases(ReleaseSignal signal) => LinuxKernel.Instance.ObserveReleases(signal);

    public Errno Open(string path, int flags, out SafeFd fd)
    {
        fd = SafeFd.Invalid;
        return Errno.ENOENT;
    }

    public SafeFd AdoptInstalled(int fd) => SafeFd.DangerousAdopt(fd);

    public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        result = -1;
        return Errno.EBADF;
    }

    public Errno LSeek(SafeFd fd, long offset, int whence, out long position)
    {
        position = -1;
        return Errno.EBADF;
    }

    public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address)
    {
        address = 0;
        return Errno.EBADF;
    }

    public Errno Munmap(nint address, nuint length) => Errno.EINVAL;

    public Errno ReadFdInfo(SafeFd fd, out string fdinfo)
    {
        fdinfo = "";
        return Errno.EBADF;
    }

    public IReadOnlyList<string> ListDirectory(string path) => [];
}
