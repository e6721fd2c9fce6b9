using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "epoll_wait", SetLastError = true)]
    private static unsafe partial int epoll_wait(SafeFd epoll, void* events, int maxEvents, int timeout);

    /// <summary>
    /// epoll_wait(2) into <paramref name="events"/> (reused by the caller: no
    /// allocation). On x86_64 the kernel writes packed 12-byte entries into the
    /// same memory; they are spread out in place, last first, so no entry is
    /// overwritten before it is read. EINTR is returned, not retried, so the
    /// caller can recompute its timeout.
    /// </summary>
    public static unsafe Errno TryEpollWait(SafeFd epoll, Span<EpollEvent> events, int timeoutMilliseconds, out int ready)
    {
        if (events.IsEmpty)
        {
            throw new ArgumentException("epoll_wait needs room for at least one event", nameof(events));
        }
        fixed (EpollEvent* start = events)
        {
            ready = epoll_wait(epoll, start, events.Length, timeoutMilliseconds);
            Errno errno = ready < 0 ? LastErrno() : Errno.None;
            if (ready < 0)
            {
                ready = 0;
            }
            if (EpollEventPacked)
            {
                var packed = (PackedEpollEvent*)start;
                for (int i = ready - 1; i >= 0; i--)
                {
                    PackedEpollEvent e = packed[i]; // read whole before the wider entry is written over it
                    start[i] = new EpollEvent { Events = e.Events, Data = e.Data };
                }
            }
            return errno;
        }
    }
}
