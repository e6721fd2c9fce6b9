using System.Runtime.InteropServices;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "kill", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    /// <summary>kill(2): <paramref name="signal"/> is the Linux number (<see cref="Uapi.Signals"/>).</summary>
    public static Errno TryKill(int pid, int signal) => kill(pid, signal) < 0 ? LastErrno() : Errno.None;
}
