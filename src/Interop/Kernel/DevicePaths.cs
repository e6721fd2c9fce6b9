namespace Rstmem.Interop.Kernel;

/// <summary>
/// Where the kernel puts the device nodes rstmemd opens. Kept apart from the
/// uapi classes: these are devtmpfs names, not constants of a uapi header.
/// </summary>
public static class DevicePaths
{
    /// <summary>/dev: TEE nodes are /dev/teeN (drivers/tee/tee_core.c tee_device_alloc: "tee%s%d").</summary>
    public const string DeviceDirectory = "/dev";

    /// <summary>Heap nodes: drivers/dma-buf/dma-heap.c dma_heap_devnode ("dma_heap/%s").</summary>
    public const string HeapDirectory = DeviceDirectory + "/dma_heap";

    /// <summary>The device node of heap <paramref name="name"/>.</summary>
    public static string HeapNode(string name) => $"{HeapDirectory}/{name}";

    /// <summary>The device node of <paramref name="name"/> directly under /dev (tee0, teepriv0).</summary>
    public static string Device(string name) => $"{DeviceDirectory}/{name}";
}
