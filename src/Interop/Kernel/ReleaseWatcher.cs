using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Kernel;

/// <summary>
/// Learns when the last reference to a file anywhere is closed, in this
/// process or any other it was passed to. An inotify watch on
/// /proc/self/fd/N follows the link to the file's inode; when the inode is
/// evicted the kernel reports IN_IGNORED, and IN_CLOSE_* whenever an open file
/// description of it is released (see shared/reference/abi.md).
///
/// For a file with a single open description — a dma-buf always has exactly
/// one — the first IN_CLOSE_* is the last close; newer kernels may send only
/// IN_IGNORED. For a memfd a second description can exist (reopened through
/// /proc), so only IN_IGNORED is trusted. <see cref="Drain"/> handles what has
/// arrived without blocking; callers drain before they look at anything that
/// depends on releases, so a close that happened before is always seen.
/// </summary>
public sealed class ReleaseWatcher : IDisposable
{
    private readonly SafeFd inotify;
    private readonly bool closeMeansRelease;
    private readonly Dictionary<int, Action> pending = [];
    private readonly Lock gate = new();
    private readonly byte[] buffer = new byte[16 * 1024];

    /// <param name="closeMeansRelease">True for dma-bufs (one description per buffer); false for memfds.</param>
    public ReleaseWatcher(bool closeMeansRelease)
    {
        this.closeMeansRelease = closeMeansRelease;
        Sys.TryInotifyInit(Inotify.IN_NONBLOCK, out inotify).ThrowIfError("inotify_init1");
    }

    /// <summary>The inotify descriptor, readable when events are waiting (for a poll loop).</summary>
    public SafeFd Descriptor => inotify;

    /// <summary>Files watched and not yet released.</summary>
    public int Watched
    {
        get
        {
            lock (gate)
            {
                return pending.Count;
            }
        }
    }

    /// <summary>Times the kernel's event queue overflowed (IN_Q_OVERFLOW): releases may have been missed.</summary>
    public long Overflows { get; private set; }

    /// <summary>
    /// Watches the file behind <paramref name="fd"/>; <paramref name="onRelease"/>
    /// runs once, from <see cref="Drain"/>, after its last reference is gone.
    /// Call this while <paramref name="fd"/> is still open.
    /// </summary>
    public Errno TryWatch(SafeFd fd, Action onRelease)
    {
        ArgumentNullException.ThrowIfNull(fd);
        ArgumentNullException.ThrowIfNull(onRelease);
        string path = "/proc/self/fd/" + fd.DangerousFd.ToString(CultureInfo.InvariantCulture);
        lock (gate)
        {
            // A memfd watch asks only for IN_DELETE_SELF: it stays silent until the inode goes
            // (then IN_DELETE_SELF and IN_IGNORED), instead of an event for every close.
            uint mask = closeMeansRelease ? Inotify.IN_CLOSE_WRITE | Inotify.IN_CLOSE_NOWRITE : Inotify.IN_DELETE_SELF;
            Errno errno = Sys.TryInotifyAddWatch(inotify, path, mask, out int watch);
            if (errno == Errno.None)
            {
                if (pending.ContainsKey(watch))
                {
                    // The same inode watched twice: the kernel reuses the watch descriptor.
                    throw new InvalidOperationException($"{path} is already watched (watch {watch})");
                }
                pending.Add(watch, onRelease);
            }
            return errno;
        }
    }

    /// <summary>
    /// Reads every event waiting, runs the release callbacks and returns how
    /// many files were released. The lock is held through the callbacks, so a
    /// caller that drains after a close has returned — in this process or
    /// another — finds that release fully handled, even when another thread
    /// (a background drainer) read the event first. Callbacks must therefore
    /// not call back into this watcher.
    /// </summary>
    public int Drain()
    {
        lock (gate)
        {
            int released = 0;
            while (true)
            {
                Errno errno = Sys.TryRead(inotify, buffer, out int length);
                if (errno == Errno.EAGAIN || (errno == Errno.None && length == 0))
                {
                    return released;
                }
                errno.ThrowIfError("read(inotify)");
                for (int offset = 0; offset < length;)
                {
                    inotify_event e = MemoryMarshal.Read<inotify_event>(buffer.AsSpan(offset));
                    offset += Unsafe.SizeOf<inotify_event>() + (int)e.len;
                    if ((e.mask & Inotify.IN_Q_OVERFLOW) != 0)
                    {
                        Overflows++;
                        continue;
                    }
                    bool evicted = (e.mask & (Inotify.IN_IGNORED | Inotify.IN_DELETE_SELF)) != 0;
                    bool closed = (e.mask & Inotify.IN_CLOSE) != 0;
                    if ((evicted || (closed && closeMeansRelease)) && pending.Remove(e.wd, out Action? callback))
                    {
                        if ((e.mask & Inotify.IN_IGNORED) == 0)
                        {
                            // Drop the watch now; its IN_IGNORED will find nothing pending.
                            Sys.TryInotifyRmWatch(inotify, e.wd);
                        }
                        callback();
                        released++;
                    }
                }
            }
        }
    }

    public void Dispose() => inotify.Dispose();
}
