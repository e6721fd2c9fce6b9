using System.Runtime.InteropServices;
using Rstmem.Interop.Abi;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop;

public static partial class Sys
{
    /// <summary>
    /// One <c>struct epoll_event</c> as this program reads it: the event bits
    /// and the caller's 64-bit token (<c>epoll_data_t</c>). This is also the C
    /// layout everywhere but x86_64, where the struct is packed: there
    /// <see cref="TryEpollWait"/> converts.
    /// </summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct EpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    /// <summary>x86_64's <c>struct epoll_event</c>: packed (glibc sysdeps/unix/sysv/linux/x86_64 <c>__EPOLL_PACKED</c>, the kernel's include/uapi/linux/eventpoll.h <c>EPOLL_PACKED</c>).</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    private struct PackedEpollEvent
    {
        public uint Events;
        public ulong Data;
    }

    /// <summary>True where the C struct is packed (x86_64): decided once, so the JIT and NativeAOT fold the branch.</summary>
    private static readonly bool EpollEventPacked = RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>
    /// The size of <c>struct epoll_event</c> and the offset of its <c>data</c> on
    /// <paramref name="target"/>, as this program lays it out (a test compares them
    /// with C on each architecture): packed on x86_64, 8-byte aligned <c>data</c>
    /// on arm64 and ARM EABI, 4-byte aligned 64-bit integers on i386.
    /// </summary>
    public static unsafe (int Size, int DataOffset) EpollEventLayout(AbiTarget target)
    {
        ArgumentNullException.ThrowIfNull(target);
        if (target == AbiTarget.X64 || target.Int64Alignment == 4)
        {
            PackedEpollEvent packed = default;
            return (sizeof(PackedEpollEvent), (int)((byte*)&packed.Data - (byte*)&packed));
        }
        EpollEvent natural = default;
        return (sizeof(EpollEvent), (int)((byte*)&natural.Data - (byte*)&natural));
    }

    [LibraryImport(Libc, EntryPoint = "epoll_ctl", SetLastError = true)]
    private static unsafe partial int epoll_ctl(SafeFd epoll, int op, SafeFd fd, void* @event);

    /// <summary>
    /// epoll_ctl(2): <paramref name="operation"/> is EPOLL_CTL_ADD, MOD or DEL;
    /// <paramref name="data"/> comes back with each of <paramref name="fd"/>'s events.
    /// </summary>
    public static unsafe Errno TryEpollControl(SafeFd epoll, int operation, SafeFd fd, uint events, ulong data)
    {
        int result;
        if (EpollEventPacked)
        {
            var e = new PackedEpollEvent { Events = events, Data = data };
            result = epoll_ctl(epoll, operation, fd, &e);
        }
        else
        {
            var e = new EpollEvent { Events = events, Data = data };
            result = epoll_ctl(epoll, operation, fd, &e);
        }
        return result < 0 ? LastErrno() : Errno.None;
    }
}
