using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl(SafeFd fd, int cmd, int arg);

    /// <summary>fcntl(2) for the integer-argument commands (F_GETFD, F_GETFL, F_ADD_SEALS, ...).</summary>
    public static Errno TryFcntl(SafeFd fd, int cmd, int arg, out int result)
    {
        Errno errno;
        do
        {
            result = fcntl(fd, cmd, arg);
        }
        while (Interrupted(result, out errno));
        return errno;
    }

    [LibraryImport(Libc, EntryPoint = "fcntl", SetLastError = true)]
    private static unsafe partial int fcntl(SafeFd fd, int cmd, flock* arg);

    /// <summary>fcntl(2) for the record-lock commands (F_OFD_SETLK, F_OFD_GETLK, ...): <paramref name="lockRange"/> in, and out for F_OFD_GETLK.</summary>
    public static unsafe Errno TryFcntl(SafeFd fd, int cmd, ref flock lockRange)
    {
        int result;
        Errno errno;
        fixed (flock* p = &lockRange)
        {
            do
            {
                result = fcntl(fd, cmd, p);
            }
            while (Interrupted(result, out errno));
        }
        return errno;
    }

    /// <summary>True when FD_CLOEXEC is set on the descriptor.</summary>
    public static bool IsCloseOnExec(SafeFd fd)
    {
        TryFcntl(fd, Fcntl.F_GETFD, 0, out int flags).ThrowIfError("fcntl(F_GETFD)", fd.DangerousFd.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return (flags & Fcntl.FD_CLOEXEC) != 0;
    }

    /// <summary>The file status flags (F_GETFL): access mode in O_ACCMODE, O_NONBLOCK, ...</summary>
    public static int GetStatusFlags(SafeFd fd)
    {
        TryFcntl(fd, Fcntl.F_GETFL, 0, out int flags).ThrowIfError("fcntl(F_GETFL)", fd.DangerousFd.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return flags;
    }

    /// <summary>dup with FD_CLOEXEC set atomically (F_DUPFD_CLOEXEC).</summary>
    public static Errno TryDuplicate(SafeFd fd, out SafeFd copy)
    {
        Errno errno = TryFcntl(fd, Fcntl.F_DUPFD_CLOEXEC, 0, out int result);
        copy = SafeFd.DangerousAdopt(errno == Errno.None ? result : -1);
        return errno;
    }
}
