using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "poll", SetLastError = true)]
    private static unsafe partial int poll(pollfd* fds, nuint nfds, int timeout);

    /// <summary>
    /// poll(2). The caller fills <see cref="pollfd.fd"/> with raw numbers and
    /// must keep those descriptors open for the duration. EINTR is returned,
    /// not retried, so the caller can recompute its timeout.
    /// </summary>
    public static unsafe Errno TryPoll(Span<pollfd> fds, int timeoutMilliseconds, out int ready)
    {
        fixed (pollfd* p = fds)
        {
            ready = poll(p, (nuint)fds.Length, timeoutMilliseconds);
        }
        Errno errno = ready < 0 ? LastErrno() : Errno.None;
        if (ready < 0)
        {
            ready = 0;
        }
        return errno;
    }
}
