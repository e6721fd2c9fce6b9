using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    [LibraryImport(Libc, EntryPoint = "setpriority", SetLastError = true)]
    private static partial int setpriority(int which, uint who, int prio);

    [LibraryImport(Libc, EntryPoint = "gettid")]
    private static partial int gettid();

    /// <summary>gettid(2): the calling thread's id (/proc/self/task/ID).</summary>
    public static int GetThreadId() => gettid();

    /// <summary>
    /// Sets the nice value of the calling thread alone: Linux keeps one per
    /// thread, and setpriority(PRIO_PROCESS) with a thread id sets that
    /// thread's (setpriority(2), NOTES). Raising it needs no privilege.
    /// </summary>
    public static Errno TrySetThreadNice(int nice) =>
        setpriority(Resource.PRIO_PROCESS, (uint)gettid(), nice) < 0 ? LastErrno() : Errno.None;
}
