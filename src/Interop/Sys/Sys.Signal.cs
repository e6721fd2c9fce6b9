using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "signal", SetLastError = true)]
    private static partial nint signal(int signum, nint handler);

    /// <summary>SIG_ERR, ((__sighandler_t)-1) in include/uapi/asm-generic/signal-defs.h: what signal(2) returns on failure.</summary>
    private const nint SignalError = -1;

    /// <summary>
    /// signal(2) with SIG_DFL: <paramref name="signalNumber"/> (<see cref="Uapi.Signals"/>)
    /// gets its default disposition back, whatever the parent left (an
    /// ignored SIGHUP under nohup is inherited across exec, and .NET's
    /// PosixSignalRegistration leaves an ignored signal ignored). EINVAL for
    /// a number that is not a signal, or SIGKILL and SIGSTOP.
    /// </summary>
    public static Errno TryRestoreDefaultAction(int signalNumber) =>
        signal(signalNumber, Uapi.Signals.SIG_DFL) == SignalError ? LastErrno() : Errno.None;
}
