using System.Globalization;

namespace Rstmem.Interop.Kernel;

/// <summary>The real kernel: every call is the system call itself.</summary>
public sealed class LinuxKernel : IKernel
{
    public static LinuxKernel Instance { get; } = new();

    private LinuxKernel() { }

    public string Description { get; } = $"Linux {KernelRelease()}";

    /// <summary>Linux 6.x reports a dma-buf's last close to inotify; 7.x does not (<see cref="ReleaseWatcher.Probe"/>).</summary>
    public ReleaseSignal ProbeReleaseSignal(SafeFd sample) => ReleaseWatcher.Probe(sample);

    public IReleaseObserver ObserveReleases(ReleaseSignal signal) => ReleaseWatcher.For(signal);

    public Errno Open(string path, int flags, out SafeFd fd) => Sys.TryOpen(path, flags, out fd);

    public SafeFd AdoptInstalled(int fd) => SafeFd.DangerousAdopt(fd);

    public Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result) =>
        Sys.TryIoctl(fd, request, argument, out result);

    public Errno LSeek(SafeFd fd, long offset, int whence, out long position) =>
        Sys.TryLSeek(fd, offset, whence, out position);

    public Errno Mmap(SafeFd fd, nuint length, int prot, int flags, long offset, out nint address) =>
        Sys.TryMmap(fd, length, prot, flags, offset, out address);

    public Errno Munmap(nint address, nuint length) => Sys.TryMunmap(address, length);

    public Errno ReadFdInfo(SafeFd fd, out string fdinfo)
    {
        ArgumentNullException.ThrowIfNull(fd);
        try
        {
            fdinfo = File.ReadAllText($"/proc/self/fdinfo/{fd.DangerousFd.ToString(CultureInfo.InvariantCulture)}");
            return Errno.None;
        }
        catch (FileNotFoundException)
        {
            fdinfo = "";
            return Errno.EBADF;
        }
    }

    public IReadOnlyList<string> ListDirectory(string path) =>
        Directory.Exists(path)
            ? Directory.EnumerateFileSystemEntries(path).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToList()
            : [];

    private static string KernelRelease()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        }
        catch (IOException)
        {
            return Environment.OSVersion.Version.ToString();
        }
    }
}
