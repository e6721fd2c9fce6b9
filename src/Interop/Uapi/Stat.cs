namespace Rstmem.Interop.Uapi;

/// <summary>
/// statx(2) (include/uapi/linux/stat.h, which glibc's &lt;sys/stat.h&gt; uses): the same layout on every
/// architecture, unlike struct stat. The model tells its own buffers apart
/// from any other descriptor by (device, inode).
/// </summary>
public static class Stat
{
    /// <summary>The *at() calls' "relative to the working directory" (include/uapi/linux/fcntl.h).</summary>
    public const int AT_FDCWD = -100;
    public const int AT_EMPTY_PATH = 0x1000;
    public const uint STATX_TYPE = 0x1;
    public const uint STATX_MODE = 0x2;
    public const uint STATX_INO = 0x100;
    public const uint STATX_SIZE = 0x200;
    public const uint STATX_BASIC_STATS = 0x7ff;

    public const uint S_IFMT = 0xF000;
    public const uint S_IFSOCK = 0xC000;
    public const uint S_IFREG = 0x8000;
    public const uint S_IFCHR = 0x2000;
    public const uint S_IFDIR = 0x4000;
}

public unsafe struct statx_timestamp
{
    public long tv_sec;
    public uint tv_nsec;
    public int __reserved;
}

#pragma warning disable CS8981 // The C name.
public unsafe struct statx
#pragma warning restore CS8981
{
    public uint stx_mask;
    public uint stx_blksize;
    public ulong stx_attributes;
    public uint stx_nlink;
    public uint stx_uid;
    public uint stx_gid;
    public ushort stx_mode;
    public fixed ushort __spare0[1];
    public ulong stx_ino;
    public ulong stx_size;
    public ulong stx_blocks;
    public ulong stx_attributes_mask;
    public statx_timestamp stx_atime;
    public statx_timestamp stx_btime;
    public statx_timestamp stx_ctime;
    public statx_timestamp stx_mtime;
    public uint stx_rdev_major;
    public uint stx_rdev_minor;
    public uint stx_dev_major;
    public uint stx_dev_minor;
    public ulong stx_mnt_id;
    public uint stx_dio_mem_align;
    public uint stx_dio_offset_align;
    public fixed ulong __spare3[12];
}
