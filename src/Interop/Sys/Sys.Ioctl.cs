using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    // The kernel takes "unsigned int cmd"; glibc's prototype widens it to unsigned long.
    [LibraryImport(Libc, EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int ioctl(SafeFd fd, nuint request, void* argp);

    /// <summary>ioctl(2) with a pointer argument; EINTR retried. <paramref name="result"/> is the return value (an fd for allocation ioctls).</summary>
    public static unsafe Errno TryIoctl(SafeFd fd, uint request, void* argp, out int result)
    {
        Errno errno;
        do
        {
            result = ioctl(fd, request, argp);
        }
        while (Interrupted(result, out errno));
        return errno;
    }

    /// <summary>ioctl(2) on a struct argument the kernel reads and may write back.</summary>
    public static unsafe Errno TryIoctl<T>(SafeFd fd, uint request, ref T arg, out int result)
        where T : unmanaged
    {
        fixed (T* p = &arg)
        {
            return TryIoctl(fd, request, p, out result);
        }
    }

    /// <summary>ioctl(2) on raw argument bytes (the kernel surface passes these through unchanged).</summary>
    public static unsafe Errno TryIoctl(SafeFd fd, uint request, Span<byte> arg, out int result)
    {
        fixed (byte* p = arg)
        {
            return TryIoctl(fd, request, p, out result);
        }
    }

    /// <summary>An ioctl that returns a new descriptor (TEE_IOC_RSTMEM_ALLOC, TEE_IOC_SHM_REGISTER_FD): the result is owned at once.</summary>
    public static Errno TryIoctlNewFd<T>(SafeFd fd, uint request, ref T arg, out SafeFd newFd)
        where T : unmanaged
    {
        Errno errno = TryIoctl(fd, request, ref arg, out int result);
        newFd = errno == Errno.None ? SafeFd.DangerousAdopt(result) : SafeFd.Invalid;
        return errno;
    }
}
