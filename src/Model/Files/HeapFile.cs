using Rstmem.Interop.Kernel;
using System.Runtime.InteropServices;
using Rstmem.Interop.Uapi;
using Rstmem.Interop;

namespace Rstmem.Model.Files;

/// <summary>
/// An open /dev/dma_heap/NAME: dma_heap_ioctl and dma_heap_ioctl_allocate of
/// drivers/dma-buf/dma-heap.c, step by step (docs/kernel-semantics.md §1).
/// </summary>
internal sealed class HeapFile(ModelKernel kernel, ModelHeap heap) : ModelFile(kernel)
{
    private const uint IOC_IN = Ioc._IOC_WRITE << Ioc._IOC_DIRSHIFT;
    private const uint IOC_OUT = Ioc._IOC_READ << Ioc._IOC_DIRSHIFT;

    private static readonly int FdOffset = dma_heap_allocation_data.FdOffset;

    public ModelHeap Heap { get; } = heap;

    public override Errno Ioctl(SafeFd fd, uint request, Span<byte> argument, out int result)
    {
        result = -1;
        // Only the number is checked: any magic, size or direction with nr 0 is an allocation.
        if (Ioc._IOC_NR(request) >= 1)
        {
            return Errno.EINVAL;
        }
        uint kcmd = DmaHeap.DMA_HEAP_IOCTL_ALLOC;
        int driverSize = (int)Ioc._IOC_SIZE(kcmd);
        int outSize = (int)Ioc._IOC_SIZE(request);
        int inSize = outSize;
        if ((request & kcmd & IOC_IN) == 0)
        {
            inSize = 0;
        }
        if ((request & kcmd & IOC_OUT) == 0)
        {
            outSize = 0;
        }
        int kernelSize = Math.Max(Math.Max(inSize, outSize), driverSize);

        if (argument.Length < inSize)
        {
            return Errno.EFAULT; // copy_from_user
        }
        // A shorter user struct reads as zeros; a longer one is carried along untouched.
        Span<byte> kdata = new byte[kernelSize];
        argument[..inSize].CopyTo(kdata);

        Errno errno = Allocate(kdata, out int newFd);

        // Kernels before "dma-buf: dma-heap: don't publish fd before
        // copy_to_user() succeeds" (the base of the v4 and v6 series):
        // copy_to_user after the switch, whatever happened, the fd already
        // installed. With that fix (mainline 7.x, and backported to stable
        // 6.1.y such as Debian's 6.1.192): copy_to_user inside case
        // DMA_HEAP_IOCTL_ALLOC on success only; if it faults, put_unused_fd +
        // dma_buf_put, and the buffer is gone. The model ties the old behaviour
        // to the v4 and v6 generations (docs/kernel-semantics.md).
        bool copyBackOnFailure = Kernel.Generation != KernelGeneration.Mainline;
        if (errno != Errno.None && !copyBackOnFailure)
        {
            return errno;
        }
        if (argument.Length < outSize)
        {
            if (errno == Errno.None && !copyBackOnFailure)
            {
                SafeFd.DangerousAdopt(newFd).Dispose();
            }
            return Errno.EFAULT;
        }
        kdata[..outSize].CopyTo(argument);
        result = errno == Errno.None ? 0 : -1;
        return errno;
    }

    private Errno Allocate(Span<byte> data, out int newFd)
    {
        newFd = -1;
        var request = MemoryMarshal.Read<dma_heap_allocation_data>(data);
        if (request.fd != 0)
        {
            return Errno.EINVAL;
        }
        if ((request.fd_flags & ~(uint)DmaHeap.DMA_HEAP_VALID_FD_FLAGS) != 0)
        {
            return Errno.EINVAL;
        }
        if ((request.heap_flags & ~DmaHeap.DMA_HEAP_VALID_HEAP_FLAGS) != 0)
        {
            return Errno.EINVAL;
        }
        // PAGE_ALIGN wraps to 0 for lengths within a page of 2^64.
        ulong aligned = Page.Align(request.len);
        if (aligned == 0)
        {
            return Errno.EINVAL;
        }
        Errno errno = Kernel.AllocateFromHeap(Heap, aligned, (int)request.fd_flags, out newFd);
        if (errno == Errno.None)
        {
            uint fd = (uint)newFd;
            MemoryMarshal.Write(data[FdOffset..], in fd); // only fd is written
        }
        return errno;
    }
}
