using Rstmem.Interop.Abi;

namespace Rstmem.Interop.Uapi;

/// <summary>
/// &lt;sys/inotify.h&gt;. A watch on /proc/self/fd/N reports IN_CLOSE_* or
/// IN_IGNORED when the last reference to that file anywhere is closed: the
/// release detector for buffers handed to other processes.
/// </summary>
public static class Inotify
{
    public const uint IN_ACCESS = 0x1;
    public const uint IN_MODIFY = 0x2;
    public const uint IN_ATTRIB = 0x4;
    public const uint IN_CLOSE_WRITE = 0x8;
    public const uint IN_CLOSE_NOWRITE = 0x10;
    public const uint IN_CLOSE = IN_CLOSE_WRITE | IN_CLOSE_NOWRITE;
    public const uint IN_OPEN = 0x20;
    public const uint IN_MOVED_FROM = 0x40;
    public const uint IN_MOVED_TO = 0x80;
    public const uint IN_CREATE = 0x100;
    public const uint IN_DELETE = 0x200;
    public const uint IN_DELETE_SELF = 0x400;
    public const uint IN_MOVE_SELF = 0x800;
    public const uint IN_UNMOUNT = 0x2000;
    public const uint IN_Q_OVERFLOW = 0x4000;
    public const uint IN_IGNORED = 0x8000;
    public const uint IN_ONLYDIR = 0x01000000;
    public const uint IN_DONT_FOLLOW = 0x02000000;
    public const uint IN_EXCL_UNLINK = 0x04000000;
    public const uint IN_MASK_ADD = 0x20000000;
    public const uint IN_ISDIR = 0x40000000;
    public const uint IN_ONESHOT = 0x80000000;

    public const int IN_CLOEXEC = Fcntl.O_CLOEXEC;
    public const int IN_NONBLOCK = Fcntl.O_NONBLOCK;

    /// <summary>&lt;limits.h&gt;: the longest name, so the largest event is an <see cref="inotify_event"/> and NAME_MAX + 1 bytes of name (inotify(7)).</summary>
    public const int NAME_MAX = 255;
}

/// <summary>One event as read(2) returns it; <c>len</c> bytes of NUL-padded name follow.</summary>
[FlexibleArray("name", typeof(byte))]
#pragma warning disable CS8981 // The C name.
public struct inotify_event
#pragma warning restore CS8981
{
    public int wd;
    public uint mask;
    public uint cookie;
    public uint len;
}
