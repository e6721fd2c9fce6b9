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
///
/// Linux 7.x sends no fsnotify events for pseudo files, dma-bufs among them
/// (seen on 7.2.13: no IN_CLOSE_* and, the watch pinning the inode, no
/// IN_IGNORED either). <see cref="CloseEventsArrive"/> tells which kind of
/// kernel this is; on the silent kind a watcher made with
/// <see cref="ReferenceCounting"/> keeps one duplicate of each buffer and
/// reads its fdinfo <c>count</c> (file references other than procfs's own)
/// every <see cref="PollIntervalMilliseconds"/>: count 1 means only the
/// duplicate is left, so it is closed and the buffer is released.
/// </summary>
public sealed class ReleaseWatcher : IDisposable
{
    private readonly SafeFd inotify;
    private readonly bool closeMeansRelease;
    private readonly bool countReferences;
    private readonly Dictionary<int, Action> pending = [];
    private readonly List<(SafeFd Copy, Action OnRelease)> counted = [];
    private readonly Lock gate = new();
    private readonly byte[] buffer = new byte[16 * 1024];

    /// <param name="closeMeansRelease">True for dma-bufs (one description per buffer); false for memfds.</param>
    public ReleaseWatcher(bool closeMeansRelease)
        : this(closeMeansRelease, countReferences: false)
    {
    }

    private ReleaseWatcher(bool closeMeansRelease, bool countReferences)
    {
        this.closeMeansRelease = closeMeansRelease;
        this.countReferences = countReferences;
        Sys.TryInotifyInit(Inotify.IN_NONBLOCK, out inotify).ThrowIfError("inotify_init1");
    }

    /// <summary>For kernels that send no events for dma-bufs: holds a duplicate of each and polls its reference count.</summary>
    public static ReleaseWatcher ReferenceCounting() => new(closeMeansRelease: true, countReferences: true);

    /// <summary>How often <see cref="Drain"/> must be called when nothing wakes the caller (reference counting), else null.</summary>
    public int? PollIntervalMilliseconds => countReferences ? 200 : null;

    /// <summary>
    /// Whether this kernel reports the last close of <paramref name="buffer"/>
    /// (a fresh dma-buf the caller gives up: it is closed here) as an inotify
    /// event within <paramref name="waitMilliseconds"/>.
    /// </summary>
    public static bool CloseEventsArrive(SafeFd buffer, int waitMilliseconds = 200)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        using var probe = new ReleaseWatcher(closeMeansRelease: true);
        bool released = false;
        using (buffer)
        {
            probe.TryWatch(buffer, () => released = true).ThrowIfError("inotify_add_watch", "a probe buffer");
        }
        Span<pollfd> fds = [new pollfd { fd = probe.Descriptor.DangerousFd, events = Poll.POLLIN }];
        Sys.TryPoll(fds, waitMilliseconds, out _);
        probe.Drain();
        return released;
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
                return pending.Count + counted.Count;
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
            if (countReferences)
            {
                Errno duplicated = Sys.TryDuplicate(fd, out SafeFd copy);
                if (duplicated == Errno.None)
                {
                    counted.Add((copy, onRelease));
                }
                return duplicated;
            }
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
            int released = countReferences ? DrainCounted() : 0;
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

    /// <summary>Closes the duplicates that are the last reference left and runs their callbacks.</summary>
    private int DrainCounted()
    {
        int released = 0;
        for (int i = counted.Count - 1; i >= 0; i--)
        {
            (SafeFd copy, Action onRelease) = counted[i];
            string path = "/proc/self/fdinfo/" + copy.DangerousFd.ToString(CultureInfo.InvariantCulture);
            if (!FdInfo.Parse(File.ReadAllText(path)).TryGetValue("count", out string? count) || count != "1")
            {
                continue;
            }
            counted.RemoveAt(i);
            copy.Dispose();
            onRelease();
            released++;
        }
        return released;
    }

    public void Dispose()
    {
        lock (gate)
        {
            counted.ForEach(c => c.Copy.Dispose());
            counted.Clear();
        }
        inotify.Dispose();
    }
}
