using System.Text;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;

namespace Rstmem.Tests.Support;

/// <summary>Shortcuts for driving a kernel surface in tests.</summary>
internal static class ModelKit
{
    /// <summary>The machine's page size, which the model allocates in (src/Interop/Kernel/Page.cs).</summary>
    public static long Page => (long)Interop.Kernel.Page.Size;

    public static ModelKernel Model(string generation, Action<ModelOptions>? configure = null)
    {
        var options = new ModelOptions { Generation = generation };
        configure?.Invoke(options);
        return new ModelKernel(options);
    }

    public static SafeFd OpenOrFail(this IKernel kernel, string path, int flags = Fcntl.O_RDONLY)
    {
        Errno errno = kernel.Open(path, flags, out SafeFd fd);
        Assert.True(errno == Errno.None, $"open({path}): {errno.Describe()}");
        return fd;
    }

    /// <summary>DMA_HEAP_IOCTL_ALLOC on an open heap; the buffer (if any) is owned by the caller.</summary>
    public static Errno HeapAlloc(this IKernel kernel, SafeFd heap, ulong len, out SafeFd buffer, uint fdFlags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC)
    {
        var data = new dma_heap_allocation_data { len = len, fd_flags = fdFlags };
        Errno errno = kernel.Ioctl(heap, DmaHeap.DMA_HEAP_IOCTL_ALLOC, ref data, out _);
        buffer = SafeFd.DangerousAdopt(errno == Errno.None ? (int)data.fd : -1);
        return errno;
    }

    public static SafeFd HeapAllocOrFail(this IKernel kernel, string heapName, ulong len, uint fdFlags = Fcntl.O_RDWR | Fcntl.O_CLOEXEC)
    {
        using SafeFd heap = kernel.OpenOrFail($"/dev/dma_heap/{heapName}");
        Errno errno = kernel.HeapAlloc(heap, len, out SafeFd buffer, fdFlags);
        Assert.True(errno == Errno.None, $"allocating {len} from {heapName}: {errno.Describe()}");
        return buffer;
    }

    public static long SizeOf(this IKernel kernel, SafeFd buffer)
    {
        Assert.Equal(Errno.None, kernel.LSeek(buffer, 0, Fcntl.SEEK_END, out long size));
        return size;
    }

    public static IReadOnlyDictionary<string, string> FdInfo(this IKernel kernel, SafeFd fd)
    {
        Assert.Equal(Errno.None, kernel.ReadFdInfoFields(fd, out IReadOnlyDictionary<string, string> fields));
        return fields;
    }

    public static Errno SetName(this IKernel kernel, SafeFd buffer, string name, uint request = 0)
    {
        byte[] bytes = [.. Encoding.UTF8.GetBytes(name), 0];
        return kernel.Ioctl(buffer, request == 0 ? DmaBuf.DMA_BUF_SET_NAME_B : request, bytes, out _);
    }

    public static Errno Sync(this IKernel kernel, SafeFd buffer, ulong flags)
    {
        var sync = new dma_buf_sync { flags = flags };
        return kernel.Ioctl(buffer, DmaBuf.DMA_BUF_IOCTL_SYNC, ref sync, out _);
    }

    /// <summary>
    /// The pool's free bytes, read right away: a close that has returned was
    /// queued by the kernel, and the model drains before it answers.
    /// </summary>
    public static void AssertFree(ModelKernel model, string pool, long freeBytes) =>
        Assert.Equal(freeBytes, model.PoolCounters(pool).FreeBytes);

    /// <summary>This process's open descriptors, after finalizers of handles other tests dropped have run.</summary>
    public static int OpenDescriptorCount()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Directory.GetFileSystemEntries("/proc/self/fd").Length;
    }

    /// <summary>
    /// The descriptors open in this process, less the ones <paramref name="model"/>
    /// keeps of its young files (one each while it learns their release from a
    /// lock), counted while none can move.
    /// </summary>
    public static int OpenDescriptorCount(ModelKernel model)
    {
        lock (model.LockedGate)
        {
            return OpenDescriptorCount() - model.LockedCount;
        }
    }
}
