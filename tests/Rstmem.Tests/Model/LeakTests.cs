using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Model;
using Rstmem.Interop.Uapi;
using Rstmem.Tests.Support;

namespace Rstmem.Tests.Model;

[Collection(SerialTests.Name)]
public sealed class LeakTests
{
    [Fact]
    public void Ten_thousand_allocate_pass_close_cycles_leave_no_bytes_and_no_descriptors_behind()
    {
        using ModelKernel model = ModelKit.Model("mainline");
        using SafeFd node = model.OpenOrFail(DevicePaths.HeapNode("protected,secure-video"));
        Assert.Equal(Errno.None, Interop.Sys.TrySocketPair(Sockets.AF_UNIX, Sockets.SOCK_SEQPACKET, 0, out SafeFd sender, out SafeFd receiver));
        using (sender)
        using (receiver)
        {
            long free = model.PoolCounters("secure-video").FreeBytes;
            int descriptors = ModelKit.OpenDescriptorCount(model);
            byte[] message = new byte[8];
            for (int i = 0; i < 10_000; i++)
            {
                Assert.Equal(Errno.None, model.HeapAlloc(node, (ulong)(4096 * (1 + (i % 7))), out SafeFd buffer));
                Assert.Equal(Errno.None, Interop.Sys.TrySendMessage(sender, "b"u8, [buffer], 0, out _));
                buffer.Dispose();
                Assert.Equal(Errno.None, Interop.Sys.TryReceiveMessage(receiver, message, 1, 0, out ReceivedMessage received));
                received.CloseFds();
            }
            Assert.Equal(free, model.PoolCounters("secure-video").FreeBytes);
            Assert.Equal(0, model.LiveBuffers);
            Assert.Equal(descriptors, ModelKit.OpenDescriptorCount(model));
            Assert.Equal(0, model.ReleaseEventsLost);
        }
    }
}
