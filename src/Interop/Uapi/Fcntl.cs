namespace Rstmem.Interop.Uapi;

/// <summary>
/// &lt;fcntl.h&gt; values shared by x86, arm and arm64 (asm-generic/fcntl.h).
/// O_DIRECTORY, O_NOFOLLOW, O_DIRECT and O_LARGEFILE differ on arm and are
/// deliberately absent.
/// </summary>
public static class Fcntl
{
    public const int O_RDONLY = 0;
    public const int O_WRONLY = 1;
    public const int O_RDWR = 2;
    public const int O_ACCMODE = 3;
    public const int O_CREAT = 0x40;
    public const int O_EXCL = 0x80;
    public const int O_NOCTTY = 0x100;
    public const int O_TRUNC = 0x200;
    public const int O_APPEND = 0x400;
    public const int O_NONBLOCK = 0x800;
    public const int O_CLOEXEC = 0x80000;

    public const int F_DUPFD = 0;
    public const int F_GETFD = 1;
    public const int F_SETFD = 2;
    public const int F_GETFL = 3;
    public const int F_SETFL = 4;
    public const int F_DUPFD_CLOEXEC = 1030;
    public const int F_ADD_SEALS = 1033;
    public const int F_GET_SEALS = 1034;

    public const int FD_CLOEXEC = 1;

    public const int F_SEAL_SEAL = 0x1;
    public const int F_SEAL_SHRINK = 0x2;
    public const int F_SEAL_GROW = 0x4;
    public const int F_SEAL_WRITE = 0x8;
    public const int F_SEAL_FUTURE_WRITE = 0x10;

    /// <summary>Open file description locks (fs/locks.c): owned by the description, dropped when it is released (locks_remove_file from __fput).</summary>
    public const int F_OFD_GETLK = 36;
    public const int F_OFD_SETLK = 37;
    public const short F_RDLCK = 0;
    public const short F_WRLCK = 1;
    public const short F_UNLCK = 2;

    public const int SEEK_SET = 0;
    public const int SEEK_CUR = 1;
    public const int SEEK_END = 2;
    public const int SEEK_DATA = 3;
    public const int SEEK_HOLE = 4;
}

/// <summary>
/// &lt;fcntl.h&gt;'s struct flock (asm-generic/fcntl.h): its offsets are off_t,
/// a C long (pointer-wide) without _FILE_OFFSET_BITS=64, so 64 bits on x86_64
/// and arm64, the architectures rstmemd runs on.
/// </summary>
#pragma warning disable CS8981 // the C name
public struct flock
#pragma warning restore CS8981
{
    public short l_type;
    public short l_whence;
    public nint l_start;
    public nint l_len;
    public int l_pid;
}
