using System.Runtime.InteropServices;

namespace Rstmem.Tests.Support;

/// <summary>
/// Runs code on a thread of its own whose credentials are another user's, so a socket it
/// connects carries that uid, gid and supplementary groups (SO_PEERCRED, SO_PEERGROUPS record the
/// connecting thread's credentials: net/unix/af_unix.c, init_peercred). The raw system calls
/// change only the calling thread (glibc's wrappers would change every thread); the saved uid
/// stays 0, so the thread returns to root afterwards. Needs root, and x86_64's system call numbers.
/// </summary>
internal static partial class AsUser
{
    // arch/x86/entry/syscalls/syscall_64.tbl
    private const long SYS_setgroups = 116;
    private const long SYS_setresuid = 117;
    private const long SYS_setresgid = 119;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long syscall(long number, nint a, nint b, nint c);

    public static bool Possible => RuntimeInformation.ProcessArchitecture == Architecture.X64 && Interop.Sys.GetEffectiveUserId() == 0;

    public static T Run<T>(uint uid, uint gid, uint[] groups, Func<T> action)
    {
        if (!Possible)
        {
            Assert.Skip("switching a thread's credentials needs root on x86_64");
        }
        T result = default!;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            unsafe
            {
                fixed (uint* list = groups)
                {
                    Check(syscall(SYS_setgroups, groups.Length, (nint)list, 0), "setgroups");
                }
            }
            Check(syscall(SYS_setresgid, -1, (nint)gid, -1), "setresgid");
            Check(syscall(SYS_setresuid, -1, (nint)uid, -1), "setresuid");
            try
            {
                result = action();
            }
            catch (Exception e)
            {
                failure = e;
            }
            finally
            {
                Check(syscall(SYS_setresuid, -1, 0, -1), "setresuid back");
                Check(syscall(SYS_setresgid, -1, 0, -1), "setresgid back");
                Check(syscall(SYS_setgroups, 0, 0, 0), "setgroups back");
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
        }
        return result;
    }

    private static void Check(long result, string what)
    {
        if (result < 0)
        {
            throw new InvalidOperationException($"{what}: errno {Marshal.GetLastPInvokeError()}");
        }
    }
}
