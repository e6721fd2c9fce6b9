using System.Diagnostics;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Model.Files;

/// <summary>
/// How the model learns that a file it has just handed out is released,
/// without a watch. Most buffers are closed within moments of their
/// allocation, and taking down an inotify watch is what costs: when the
/// watched inode is evicted, fs/notify/mark.c (fsnotify_put_mark) hands its
/// mark connector to connector_reaper_work on system_unbound_wq, which frees
/// it after synchronize_srcu(&amp;fsnotify_mark_srcu), so each released buffer
/// wakes workers, on an idle CPU with an interrupt (measured,
/// docs/kernel-semantics.md §3.4).
///
/// So a new file starts here: the description handed out carries an open
/// file description lock (F_OFD_SETLK on one byte past any data, offset
/// <see cref="LockStart"/>), which the kernel drops when that description is
/// released (fs/locks.c locks_remove_file, from __fput), and the model keeps a
/// description of its own, from which F_OFD_GETLK asks whether the lock is
/// still there. A file whose lock is gone is released and its own description
/// closed (no watch was ever set on it). One still held after
/// <see cref="PromoteAfterMilliseconds"/> is handed to the model's watch
/// (<see cref="ReleaseWatcher"/>, through the model's description, which is
/// then closed): a watch costs nothing while its file is held, and a lock
/// must be asked about. At most <see cref="MaximumLocked"/> files are here at
/// once; a file made while it is full is watched at once, so a burst of
/// allocations costs at most that many descriptors of the model's own.
///
/// What this changes against a watch on the inode: while a file is here, its
/// release is that of the description the model handed out, which is all a
/// dma-buf has (dma_buf_getfile makes one, and its inode has no open, so
/// /proc/PID/fd/N of a dma-buf cannot be reopened). A memfd can be, so a
/// holder that reopens a young buffer through /proc, or removes the model's
/// lock with F_OFD_SETLK and F_UNLCK through its own descriptor, keeps a
/// memfd the model counts as released. Neither is possible with a real
/// dma-buf; the memfd is the holder's own, so no other buffer's memory is
/// reachable through it. A description with access mode "neither"
/// (O_ACCMODE) cannot be locked (F_RDLCK needs FMODE_READ, F_WRLCK
/// FMODE_WRITE): <see cref="TryAdd"/> refuses it and the model watches it at once.
///
/// A file here joins the model's <see cref="FileTable"/> (a statx) only when
/// a sweep finds it still held, or when a look-up needs it
/// (<see cref="KeyAll"/>): most are released before, and never cost one.
/// </summary>
internal sealed class LockedFiles(ReleaseWatcher watcher, FileTable files) : IDisposable
{
    /// <summary>How long a held file stays here before the model watches it instead.</summary>
    internal const int PromoteAfterMilliseconds = 50;

    /// <summary>
    /// The most files here at once, which bounds a sweep (about 1.7 us a file
    /// on the 2-vCPU VM, 2026-12-03) and the descriptors the model keeps (one
    /// each): a file made beyond it is watched at once.
    /// </summary>
    internal const int MaximumLocked = 1024;

    /// <summary>
    /// The one byte the model locks: the last offset a file can have
    /// (OFFSET_MAX), beyond any data, so fdinfo's line for it ("... EOF" from
    /// that offset) is told apart from any range a holder locks.
    /// </summary>
    internal static readonly nint LockStart = nint.MaxValue; // OFFSET_MAX on the 64-bit architectures rstmemd runs on

    /// <summary>How long a held file stays here, in Stopwatch ticks: <see cref="PromoteAfterMilliseconds"/>, or what a test sets.</summary>
    internal long PromoteAfterTicks { get; set; } = Stopwatch.Frequency * PromoteAfterMilliseconds / 1000;

    private readonly record struct Entry(ModelFile File, SafeFd Own, long Since);

    private readonly Lock gate = new();
    /// <summary>The files swept, in order of arrival; guarded by <see cref="gate"/>.</summary>
    private readonly List<Entry> entries = [];
    /// <summary>
    /// Files added since the last sweep began, guarded by <see cref="arrivalGate"/>
    /// alone, so an allocation does not wait for a sweep: the next sweep takes them first.
    /// </summary>
    private readonly List<Entry> arrivals = [];
    private readonly Lock arrivalGate = new();
    /// <summary>Set by the model's drainer while it sleeps with no timeout: the next file added wakes it.</summary>
    private bool drainerAsleep;
    /// <summary>Files here (in <see cref="entries"/> or <see cref="arrivals"/>), counted without either lock.</summary>
    private int count;

    /// <summary>Guards the files here: held while their releases are handled, and by whoever must not see a file move.</summary>
    public Lock Gate => gate;

    public int Count => Volatile.Read(ref count);

    /// <summary>
    /// Locks <paramref name="handed"/> (the description the caller hands
    /// out, opened with <paramref name="accessMode"/>) and keeps
    /// <paramref name="own"/>, which it closes when the file is released or
    /// watched. <paramref name="wakeDrainer"/> is set when the model's drainer
    /// sleeps with nothing to sweep and must be woken. Errno.EBADF, with
    /// <paramref name="own"/> left to the caller, for access mode "neither";
    /// Errno.ENOLCK when <see cref="MaximumLocked"/> files are here already.
    /// </summary>
    public Errno TryAdd(ModelFile file, SafeFd handed, int accessMode, SafeFd own, out bool wakeDrainer)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(handed);
        ArgumentNullException.ThrowIfNull(own);
        wakeDrainer = false;
        short type = accessMode switch
        {
            Fcntl.O_RDONLY or Fcntl.O_RDWR => Fcntl.F_RDLCK,
            Fcntl.O_WRONLY => Fcntl.F_WRLCK,
            _ => -1,
        };
        if (type < 0)
        {
            return Errno.EBADF; // what F_OFD_SETLK answers for a description that can neither read nor write
        }
        if (Interlocked.Increment(ref count) > MaximumLocked)
        {
            Interlocked.Decrement(ref count);
            return Errno.ENOLCK;
        }
        var range = new flock { l_type = type, l_whence = (short)Fcntl.SEEK_SET, l_start = LockStart, l_len = 1 };
        Errno errno = Sys.TryFcntl(handed, Fcntl.F_OFD_SETLK, ref range);
        if (errno != Errno.None)
        {
            Interlocked.Decrement(ref count);
            return errno;
        }
        file.Own = own; // before the file is handed out, so whoever counts its references sees it
        lock (arrivalGate)
        {
            arrivals.Add(new Entry(file, own, Stopwatch.GetTimestamp()));
            wakeDrainer = drainerAsleep;
            drainerAsleep = false;
        }
        return Errno.None;
    }

    /// <summary>For the model's drainer: true (and marked asleep) when there is nothing to sweep, so it may sleep until woken.</summary>
    public bool SleepIfEmpty()
    {
        lock (gate)
        {
            lock (arrivalGate)
            {
                drainerAsleep = entries.Count == 0 && arrivals.Count == 0;
                return drainerAsleep;
            }
        }
    }

    /// <summary>
    /// Asks of every file here whether its handed-out description is gone:
    /// those are released through <paramref name="released"/>, under
    /// <see cref="Gate"/>, so a caller that sweeps after a close has returned
    /// finds that release handled even when another thread swept first. Files
    /// held past <see cref="PromoteAfterMilliseconds"/> are watched instead.
    /// Returns how many were released.
    /// </summary>
    public int Sweep(Action<ModelFile> released)
    {
        ArgumentNullException.ThrowIfNull(released);
        lock (gate)
        {
            lock (arrivalGate)
            {
                entries.AddRange(arrivals); // no allocation once the list has grown to its use
                arrivals.Clear();
            }
            if (entries.Count == 0)
            {
                return 0;
            }
            long now = Stopwatch.GetTimestamp();
            int kept = 0;
            int next = 0; // the first entry not yet looked at: an exception from a release leaves the rest
            int count = 0;
            try
            {
                while (next < entries.Count)
                {
                    Entry entry = entries[next++];
                    var probe = new flock { l_type = Fcntl.F_WRLCK, l_whence = (short)Fcntl.SEEK_SET, l_start = LockStart, l_len = 1 };
                    if (Sys.TryFcntl(entry.Own, Fcntl.F_OFD_GETLK, ref probe) == Errno.None && probe.l_type == Fcntl.F_UNLCK)
                    {
                        Forget(entry);
                        released(entry.File);
                        count++;
                    }
                    else if (!Key(entry))
                    {
                        entries[kept++] = entry; // not in the table yet (statx failed): asked about again, and keyed, next time
                    }
                    else if (now - entry.Since >= PromoteAfterTicks
                        && watcher.Observe(entry.Own, entry.File, 0, out _) == Errno.None)
                    {
                        // Watched through the model's description, which then closes: the watch
                        // follows the inode, held by the description handed out.
                        Forget(entry);
                    }
                    else
                    {
                        entries[kept++] = entry; // a failed watch (the watch limit) leaves it locked, to try again
                    }
                }
            }
            finally
            {
                entries.RemoveRange(kept, next - kept); // those forgotten; the ones not looked at stay
            }
            return count;
        }
    }

    /// <summary>
    /// Puts every file here that is not in the model's table yet into it:
    /// before a look-up by identity that found nothing, since the file looked
    /// for may be one no sweep has seen held.
    /// </summary>
    public void KeyAll()
    {
        lock (gate)
        {
            lock (arrivalGate)
            {
                entries.AddRange(arrivals);
                arrivals.Clear();
            }
            foreach (Entry entry in entries)
            {
                Key(entry);
            }
        }
    }

    /// <summary>Puts the file into the model's table under its identity (read from the model's description), once; false if statx failed.</summary>
    private bool Key(Entry entry)
    {
        if (entry.File.Identity != default)
        {
            return true;
        }
        if (Sys.TryGetIdentity(entry.Own, out FileIdentity identity) != Errno.None)
        {
            return false;
        }
        entry.File.Identity = identity;
        files.Add(entry.File);
        return true;
    }

    /// <summary>Whether <paramref name="fd"/> is the model's own description of <paramref name="file"/> (fdinfo's count leaves it out). Call under <see cref="Gate"/>, which a sweep holds while it closes one.</summary>
    public static bool IsOwn(ModelFile file, int fd) => file.Own is { } own && own.DangerousFd == fd;

    private void Forget(Entry entry)
    {
        entry.File.Own = null;
        entry.Own.Dispose();
        Interlocked.Decrement(ref count);
    }

    public void Dispose()
    {
        lock (gate)
        {
            lock (arrivalGate)
            {
                entries.AddRange(arrivals);
                arrivals.Clear();
            }
            foreach (Entry entry in entries)
            {
                Forget(entry);
            }
            entries.Clear();
        }
    }
}
