using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using Rstmem.Interop.Kernel;
using Rstmem.Interop.Uapi;
using static Rstmem.Daemon.Protocol.RstmemHeapIoctlProtocol;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Broker;

/// <summary>
/// HEAP_IOCTL (docs/protocol.md §10): a program's own ioctl on a heap node,
/// sent by librstmem-preload.so. The request runs on the backend's
/// /dev/dma_heap/&lt;heap&gt; (the real node or the model's) with the program's
/// exact request number and argument bytes, under the caller's quotas, and
/// the reply carries what the kernel did: its errno, the argument as the
/// kernel left it, and the new dma-buf.
/// </summary>
internal sealed class HeapIoctlHandler(BackendSelection backend, BufferLedger ledger, Action refreshHeaps, ILogger logger, byte[] replyBuffer)
{
    private const uint IOC_IN = Ioc._IOC_WRITE << Ioc._IOC_DIRSHIFT;
    private const uint IOC_OUT = Ioc._IOC_READ << Ioc._IOC_DIRSHIFT;

    private static readonly int FdOffset = dma_heap_allocation_data.FdOffset;

    public OutgoingReply Handle(Connection client, rstmem_header header, ReadOnlySpan<byte> payload)
    {
        int fixedSize = Unsafe.SizeOf<rstmem_heap_ioctl_request>();
        if (payload.Length < fixedSize)
        {
            throw new ProtocolException($"HEAP_IOCTL payload is {payload.Length} bytes; expected at least {fixedSize}");
        }
        var request = MemoryMarshal.Read<rstmem_heap_ioctl_request>(payload);
        ReadOnlySpan<byte> argument = payload[fixedSize..];
        if (request.arg_size != argument.Length)
        {
            throw new ProtocolException($"HEAP_IOCTL arg_size {request.arg_size} does not match the {argument.Length} argument bytes that came");
        }
        string heapName;
        unsafe
        {
            heapName = Wire.ReadString(Wire.Field(request.heap, RSTMEM_HEAP_NAME_LEN), "HEAP_IOCTL heap");
        }
        uint expected = Ioc._IOC_DIR(request.request) == Ioc._IOC_NONE ? 0 : Ioc._IOC_SIZE(request.request);
        if (request.flags != 0 || request.reserved != 0)
        {
            return Error(client, header, Errno.EINVAL, $"flags 0x{request.flags:x}, reserved {request.reserved}: expected 0 and 0");
        }
        if (request.arg_size != expected)
        {
            return Error(client, header, Errno.EINVAL,
                $"arg_size {request.arg_size} for request 0x{request.request:x8}: expected {expected} (_IOC_SIZE, or 0 for _IOC_NONE)");
        }
        if (request.arg_size > RSTMEM_HEAP_IOCTL_MAX_ARG)
        {
            return Error(client, header, Errno.ENOMEM, $"arg_size {request.arg_size}: at most {RSTMEM_HEAP_IOCTL_MAX_ARG} bytes are carried");
        }

        if (ResolveNode(heapName) is not { } heap)
        {
            refreshHeaps(); // a node may have appeared since the last scan
            if (ResolveNode(heapName) is not { } again)
            {
                string available = string.Join(", ", backend.Heaps.All.Where(IsNode).Select(h => h.Name));
                return Error(client, header, Errno.ENOENT, $"no heap node '{heapName}'; available: {available}");
            }
            heap = again;
        }

        byte[] data = argument.ToArray();
        uint kcmd = DmaHeap.DMA_HEAP_IOCTL_ALLOC;
        // dma_heap_ioctl (drivers/dma-buf/dma-heap.c) looks at the number only:
        // nr 1 and up are EINVAL before anything is read. The daemon answers those
        // itself rather than hand the request to the VFS on a node it opened as
        // root (do_vfs_ioctl's FS_IOC_SETFLAGS and the like act on the inode); in
        // Linux 6.1 none of the VFS's own commands has nr 0.
        if (Ioc._IOC_NR(request.request) != Ioc._IOC_NR(kcmd))
        {
            return Reply(client, header, Errno.EINVAL, -1, data, null, 0);
        }
        // The kernel writes the new descriptor's number back only through an _IOR
        // argument that reaches the fd field; otherwise it would install a
        // descriptor here that nobody could name or close.
        if ((request.request & kcmd & IOC_OUT) == 0 || request.arg_size < FdOffset + sizeof(uint))
        {
            return Error(client, header, Errno.EINVAL,
                $"request 0x{request.request:x8} allocates without copying the descriptor back ({request.arg_size}-byte argument, direction {Ioc._IOC_DIR(request.request)}): not brokered");
        }

        // What the kernel will read as len: the argument when the request copies in, zeros past it.
        Span<byte> kdata = stackalloc byte[(int)Ioc._IOC_SIZE(kcmd)];
        kdata.Clear();
        if ((request.request & kcmd & IOC_IN) != 0)
        {
            argument[..Math.Min(argument.Length, kdata.Length)].CopyTo(kdata);
        }
        ulong len = MemoryMarshal.Read<dma_heap_allocation_data>(kdata).len;
        long charge = len is 0 or > long.MaxValue ? 0 : (long)len;
        // The access policy and pool share apply here as at ALLOC (src/RstmemDaemon/Policy).
        Errno errno = Policy.Admission.Admit(ledger, client, heap, out long share, out string refusal);
        string? firstBreach = null;
        if (errno == Errno.None)
        {
            errno = ledger.TryCharge(client.Uid, heap.Name, charge, share, out refusal, out firstBreach);
        }
        if (errno != Errno.None)
        {
            if (firstBreach is not null)
            {
                logger.LogWarning("uid {Uid} reached its {Limit} limit: {Refusal}; further refusals are not logged", client.Uid, firstBreach, refusal);
            }
            ledger.CountFailure(heap.Name, client.Uid);
            return Error(client, header, errno, refusal);
        }

        errno = backend.Kernel.Open(DevicePaths.HeapNode(heap.Name), Fcntl.O_RDONLY, out SafeFd node);
        if (errno == Errno.None)
        {
            using (node)
            {
                errno = backend.Kernel.Ioctl(node, request.request, data, out int result);
                if (errno == Errno.None)
                {
                    return Allocated(client, header, heap, data, result, charge);
                }
            }
        }
        ledger.Refund(client.Uid, heap.Name, charge);
        ledger.CountFailure(heap.Name, client.Uid);
        logger.LogInformation("heap ioctl 0x{Request:x8} on {Heap} for uid {Uid} pid {Pid} failed: {Errno}", request.request, heap.Name, client.Uid, client.Pid, errno.Name());
        return Reply(client, header, errno, -1, data, null, 0);
    }

    private OutgoingReply Allocated(Connection client, rstmem_header header, HeapProvider heap, byte[] data, int result, long charge)
    {
        SafeFd buffer = backend.Kernel.AdoptInstalled((int)MemoryMarshal.Read<uint>(data.AsSpan(FdOffset)));
        Errno errno = Sys.TryFcntl(buffer, Fcntl.F_GETFD, 0, out int fdFlags);
        long actual = 0;
        if (errno == Errno.None)
        {
            errno = backend.Kernel.LSeek(buffer, 0, Fcntl.SEEK_END, out actual);
        }
        ulong id = 0;
        if (errno == Errno.None)
        {
            errno = ledger.TryRecord(buffer, client.Uid, client.Pid, heap.Name, charge, actual, client.Id, out id);
        }
        else
        {
            ledger.Refund(client.Uid, heap.Name, charge);
        }
        if (errno != Errno.None)
        {
            buffer.Dispose();
            ledger.CountFailure(heap.Name, client.Uid);
            return Error(client, header, errno, $"cannot track the new buffer from {heap.Name}: {errno.Describe()}");
        }
        logger.LogInformation("handed buffer {BufferId} of {Size} bytes from {Heap} (program's own DMA_HEAP_IOCTL_ALLOC) to uid {Uid} pid {Pid}",
            id, actual, heap.Name, client.Uid, client.Pid);
        bool cloexec = (fdFlags & Fcntl.FD_CLOEXEC) != 0;
        return Reply(client, header, Errno.None, result, data, buffer, id, cloexec);
    }

    /// <summary>A heap the catalog serves through a node (not a v4 use case).</summary>
    private HeapProvider? ResolveNode(string name) => backend.Heaps.ByName(name) is { } heap && IsNode(heap) ? heap : null;

    private static bool IsNode(HeapProvider heap) => heap is DmaHeapProvider;

    private OutgoingReply Reply(Connection client, rstmem_header header, Errno errno, int result, byte[] data, SafeFd? buffer, ulong id, bool cloexec = false)
    {
        var reply = new rstmem_heap_ioctl_reply
        {
            error = (int)errno,
            result = errno == Errno.None ? result : -1,
            arg_size = (uint)data.Length,
            fd_offset = buffer is null ? RSTMEM_HEAP_IOCTL_NO_FD : (uint)FdOffset,
            fd_cloexec = cloexec ? 1u : 0u,
            buffer_id = id,
        };
        return new OutgoingReply(Packet(client, header, Wire.Ok, Wire.Bytes(reply), data), buffer);
    }

    private OutgoingReply Error(Connection client, rstmem_header header, Errno errno, string message) =>
        new(Packet(client, header, Wire.Status(errno, message)), null);

    /// <summary>The reply, written into the dispatcher's reply buffer (see <see cref="OutgoingReply"/>); its length.</summary>
    private int Packet(Connection client, rstmem_header header, params byte[][] parts) =>
        Wire.Build(replyBuffer, (ushort)(header.opcode | RSTMEM_REPLY), header.request_id, client.Version, parts);
}
