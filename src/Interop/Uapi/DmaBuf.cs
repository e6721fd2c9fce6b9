using Rstmem.Interop.Abi;

namespace Rstmem.Interop.Uapi;

/// <summary>include/uapi/linux/dma-buf.h: ioctls on a dma-buf descriptor.</summary>
public static class DmaBuf
{
    public const ulong DMA_BUF_SYNC_READ = 1 << 0;
    public const ulong DMA_BUF_SYNC_WRITE = 2 << 0;
    public const ulong DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
    public const ulong DMA_BUF_SYNC_START = 0 << 2;
    public const ulong DMA_BUF_SYNC_END = 1 << 2;
    public const ulong DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;

    /// <summary>Buffer names hold at most 31 characters and the NUL.</summary>
    public const int DMA_BUF_NAME_LEN = 32;

    public const uint DMA_BUF_BASE = 'b';

    public static readonly Ioctl DMA_BUF_IOCTL_SYNC = Ioc._IOW<dma_buf_sync>(DMA_BUF_BASE, 0);

    /// <summary>_IOW(DMA_BUF_BASE, 1, const char *): the pointer width decides which of A and B it equals.</summary>
    public static readonly Ioctl DMA_BUF_SET_NAME = Ioc._IOW<nint>(DMA_BUF_BASE, 1);

    /// <summary>32-bit userspace's spelling, accepted by every kernel.</summary>
    public static readonly Ioctl DMA_BUF_SET_NAME_A = Ioc._IOW<uint>(DMA_BUF_BASE, 1);

    /// <summary>64-bit userspace's spelling, accepted by every kernel.</summary>
    public static readonly Ioctl DMA_BUF_SET_NAME_B = Ioc._IOW<ulong>(DMA_BUF_BASE, 1);

    public static readonly Ioctl DMA_BUF_IOCTL_EXPORT_SYNC_FILE = Ioc._IOWR<dma_buf_export_sync_file>(DMA_BUF_BASE, 2);
    public static readonly Ioctl DMA_BUF_IOCTL_IMPORT_SYNC_FILE = Ioc._IOW<dma_buf_import_sync_file>(DMA_BUF_BASE, 3);
}

public struct dma_buf_sync
{
    public ulong flags;
}

public struct dma_buf_export_sync_file
{
    public uint flags;
    public int fd;
}

public struct dma_buf_import_sync_file
{
    public uint flags;
    public int fd;
}
