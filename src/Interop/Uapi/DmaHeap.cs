using Rstmem.Interop.Abi;

namespace Rstmem.Interop.Uapi;

/// <summary>include/uapi/linux/dma-heap.h: /dev/dma_heap/NAME.</summary>
public static class DmaHeap
{
    public const uint DMA_HEAP_IOC_MAGIC = 'H';

    /// <summary>The only fd_flags dma_heap_ioctl_allocate accepts.</summary>
    public const int DMA_HEAP_VALID_FD_FLAGS = Fcntl.O_CLOEXEC | Fcntl.O_ACCMODE;

    /// <summary>No heap flags are defined: any bit set gives EINVAL.</summary>
    public const ulong DMA_HEAP_VALID_HEAP_FLAGS = 0;

    public static readonly Ioctl DMA_HEAP_IOCTL_ALLOC = Ioc._IOWR<dma_heap_allocation_data>(DMA_HEAP_IOC_MAGIC, 0x0);
}

public struct dma_heap_allocation_data
{
    public ulong len;
    public uint fd;
    public uint fd_flags;
    public ulong heap_flags;

    /// <summary>offsetof(fd), from this declaration (which the ABI proof checks against C); no reflection, no catalog.</summary>
    public static unsafe int FdOffset
    {
        get
        {
            dma_heap_allocation_data data = default;
            return (int)((byte*)&data.fd - (byte*)&data);
        }
    }
}
