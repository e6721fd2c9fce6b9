using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "signal", SetLastError = true)]
    private static partial nint signal(int signum, nint handler);

    /// <summary>
    /// SIG_DFL, ((__sighandler_t)0) in include/uapi/asm-generic/signal-defs.h:
    /// the default disposition. A pointer, so it stays out of the ABI catalog
    /// (its integer probe cannot print one on 32-bit ARM); what it does is
    /// shown by ServeProcessTests (a daemon started with SIGHUP ignored still
    /// reloads).
    /// </summary>
    private const nint DefaultAction = 0;

    /// <summary>SIG_ERR, ((__sighandler_t)-1) in the same header: what signal(2) returns on failure.</summary>
    private const nint SignalError = -1;

    /// <summary>
    /// signal(2) with SIG_DFL: <paramref name="signalNumber"/> (<see cref="Uapi.Signals"/>)
    /// gets its default disposition back, whatever the parent left (an
    /// ignored SIGHUP under nohup is inherited across exec, and .NET's
    /// PosixSignalRegistration leaves an ignored signal ignored). EINVAL for
    /// a number that is not a signal, or SIGKILL and SIGSTOP.
    /// </summary>
    public static Errno TryRestoreDefaultAction(int signalNumber) =>
        signal(signalNumber, DefaultAction) == SignalError ? LastErrno() : Errno.None;
}
