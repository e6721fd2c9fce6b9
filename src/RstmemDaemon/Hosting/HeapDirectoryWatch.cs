using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;

namespace Rstmem.Daemon.Hosting;

/// <summary>
/// inotify on /dev/dma_heap (or on /dev until that directory appears), so a
/// heap node created by a module load is offered without a restart.
/// </summary>
public sealed class HeapDirectoryWatch : IDisposable
{
    private readonly SafeFd inotify;
    private readonly byte[] buffer = new byte[4096];
    private bool watchingHeaps;

    public HeapDirectoryWatch()
    {
        Sys.TryInotifyInit(Inotify.IN_NONBLOCK, out inotify).ThrowIfError("inotify_init1");
        WatchHeapsOrDev();
    }

    public SafeFd Descriptor => inotify;

    /// <summary>Reads what arrived; true when heap nodes may have come or gone.</summary>
    public bool Drain()
    {
        bool changed = false;
        while (Sys.TryRead(inotify, buffer, out int length) == Errno.None && length > 0)
        {
            changed = true;
        }
        if (changed && !watchingHeaps)
        {
            WatchHeapsOrDev();
        }
        return changed;
    }

    private void WatchHeapsOrDev()
    {
        // IN_ATTRIB: a node appears as root 0600 and udev then gives it to the daemon's user
        // (packaging's 70-rstmemd.rules); the open that failed at IN_CREATE succeeds after it.
        const uint NodeEvents = Inotify.IN_CREATE | Inotify.IN_DELETE | Inotify.IN_MOVED_TO | Inotify.IN_MOVED_FROM | Inotify.IN_ATTRIB;
        watchingHeaps = Sys.TryInotifyAddWatch(inotify, DevicePaths.HeapDirectory, NodeEvents, out _) == Errno.None;
        if (!watchingHeaps)
        {
            Sys.TryInotifyAddWatch(inotify, DevicePaths.DeviceDirectory, Inotify.IN_CREATE, out _);
        }
    }

    public void Dispose() => inotify.Dispose();
}
