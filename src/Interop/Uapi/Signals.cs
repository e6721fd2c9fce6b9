namespace Rstmem.Interop.Uapi;

/// <summary>
/// Signal numbers (&lt;signal.h&gt;; include/uapi/asm-generic/signal.h, the
/// same on x86 and arm), for <see cref="Sys.TryKill"/> and
/// <see cref="Sys.TryRestoreDefaultAction"/>.
/// </summary>
public static class Signals
{
    public const int SIGHUP = 1;
    public const int SIGTERM = 15;

    /// <summary>
    /// The default disposition: <c>((__sighandler_t)0)</c> in
    /// include/uapi/asm-generic/signal-defs.h. A pointer, so the ABI
    /// catalog's integer probe cannot print it on 32-bit ARM; what it does is
    /// shown by ServeProcessTests (a daemon started with SIGHUP ignored
    /// still reloads).
    /// </summary>
    public const nint SIG_DFL = 0;
}
