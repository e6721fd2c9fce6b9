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
}
