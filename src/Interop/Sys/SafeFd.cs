using System.Runtime.InteropServices;

namespace Rstmem.Interop;

/// <summary>
/// An owned file descriptor. Every descriptor the daemon creates is wrapped in
/// one of these by the wrapper that created it, before any other code runs, so
/// it is closed exactly once whatever happens next.
/// </summary>
public sealed class SafeFd : SafeHandle
{
    public SafeFd() : base(invalidHandleValue: -1, ownsHandle: true) { }

    private SafeFd(int fd, bool ownsHandle) : base(invalidHandleValue: -1, ownsHandle)
    {
        SetHandle(fd < 0 ? -1 : fd);
        owns = ownsHandle;
    }

    private readonly bool owns = true;
    private object? resolved;

    /// <summary>
    /// What an in-process kernel (the reference model) found behind this
    /// descriptor, so that the next call with the same handle need not look
    /// it up again (a statx). Sound only while an owning handle is open: its
    /// descriptor keeps the file alive, and the number cannot name another
    /// file until this handle closes it. A borrowed handle's owner may close
    /// the number behind its back, so nothing is kept for it.
    /// </summary>
    internal object? Resolved
    {
        get => owns && !IsInvalid && !IsClosed ? resolved : null;
        set
        {
            if (owns)
            {
                resolved = value;
            }
        }
    }

    public override bool IsInvalid => handle < 0;

    /// <summary>An invalid handle, for <c>out</c> parameters of failed calls.</summary>
    public static SafeFd Invalid => new();

    /// <summary>Takes ownership of a raw descriptor a system call just returned (negative: invalid).</summary>
    public static SafeFd DangerousAdopt(int fd) => new(fd, ownsHandle: true);

    /// <summary>Wraps a descriptor owned elsewhere (stdin, a test harness); it is never closed through this handle.</summary>
    public static SafeFd DangerousBorrow(int fd) => new(fd, ownsHandle: false);

    /// <summary>The descriptor number, for logging and /proc paths. Throws if closed.</summary>
    public int DangerousFd
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsClosed, this);
            return (int)handle;
        }
    }

    /// <summary>
    /// Gives up ownership and returns the number, for handing the descriptor to
    /// code that closes it itself. The handle becomes invalid.
    /// </summary>
    public int DangerousReleaseOwnership()
    {
        int fd = DangerousFd;
        SetHandleAsInvalid();
        return fd;
    }

    // close(2) is never retried on EINTR: on Linux the descriptor is gone even
    // when close reports EINTR, and a retry could close a descriptor another
    // thread has just been given.
    protected override bool ReleaseHandle() => Sys.DangerousClose((int)handle) == Errno.None;
}
