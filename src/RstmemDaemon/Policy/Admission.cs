using Rstmem.Daemon.Backends;
using Rstmem.Daemon.Broker;
using Rstmem.Daemon.Protocol;
using Rstmem.Interop;
using static Rstmem.Daemon.Protocol.RstmemProtocol;

namespace Rstmem.Daemon.Policy;

/// <summary>
/// The policy's part of each request, called from the dispatcher at one site per request kind:
/// ALLOC's access check and share, STATS's private view, USAGE.
/// </summary>
internal static class Admission
{
    /// <summary>EACCES naming the rule, or None with the caller's share limit on this heap (for <see cref="BufferLedger.TryCharge"/>).</summary>
    public static Errno Admit(BufferLedger ledger, Connection client, HeapProvider heap, out long shareLimit, out string refusal)
    {
        AccessPolicy policy = ledger.Policy.Current;
        shareLimit = long.MaxValue;
        if (!policy.MayAllocate(client.Peer, heap.Name, heap.UseCase?.Name, heap.Restricted, out refusal))
        {
            return Errno.EACCES;
        }
        shareLimit = ShareLimit(policy, client.Uid, heap);
        return Errno.None;
    }

    /// <summary>
    /// The share is of the pool as it is after the releases that have happened
    /// (a dynamic pool with nothing lent has no size; the kernel answers for
    /// that), and the pool's size is asked for only when a share applies.
    /// </summary>
    private static long ShareLimit(AccessPolicy policy, uint uid, HeapProvider heap)
    {
        int percent = policy.SharePercentOf(uid, heap.Name, heap.UseCase?.Name, heap.Restricted);
        return percent >= 100 ? long.MaxValue : AccessPolicy.ShareLimit(percent, heap.TotalBytes ?? 0);
    }

    /// <summary>
    /// The most one ALLOC by this caller could get from the heap: 0 when the policy refuses it,
    /// else what its limits and share leave (LIST_HEAPS's max_alloc_bytes, before the pool's own bound).
    /// </summary>
    public static long Headroom(BufferLedger ledger, Connection client, HeapProvider heap, long quotaLeft)
    {
        AccessPolicy policy = ledger.Policy.Current;
        if (!policy.MayAllocate(client.Peer, heap.Name, heap.UseCase?.Name, heap.Restricted, out _))
        {
            return 0;
        }
        long share = ShareLimit(policy, client.Uid, heap);
        long held = ledger.Shares.Find(client.Uid, heap.Name)?.Bytes ?? 0;
        return share == long.MaxValue ? quotaLeft : Math.Max(0, Math.Min(quotaLeft, share - held));
    }

    /// <summary>What STATS shows this caller: every user's totals to an administrator, its own to anyone else.</summary>
    public static StatsView Stats(BufferLedger ledger, Connection client, int clients)
    {
        if (ledger.Policy.Current.IsAdmin(client.Peer))
        {
            return new StatsView(ledger.Allocations, ledger.Failures, ledger.LiveBuffers, ledger.LiveBytes, (uint)clients, heap =>
            {
                HeapUsage all = ledger.Heap(heap);
                return (all.Allocations, all.Failures, all.LiveBuffers, all.LiveBytes);
            });
        }
        uint uid = client.Uid;
        UserUsage user = ledger.User(uid);
        ulong allocations = 0, failures = 0;
        (ulong, ulong, ulong, ulong) Own(string heap)
        {
            UserHeapUsage? mine = ledger.Shares.Find(uid, heap);
            return mine is null ? default : (mine.Allocations, mine.Failures, (ulong)Math.Max(0, mine.Buffers), (ulong)Math.Max(0, mine.Bytes));
        }
        foreach (UserHeapUsage mine in ledger.Shares.OfUid(uid))
        {
            allocations += mine.Allocations;
            failures += mine.Failures;
        }
        return new StatsView(allocations, failures, (ulong)Math.Max(0, user.Buffers), (ulong)Math.Max(0, user.Bytes), (uint)Math.Max(0, user.Connections), Own);
    }

    /// <summary>USAGE (version 2): a uid's usage, limits and per-heap shares; another uid's only for an administrator.</summary>
    public static Errno Usage(BufferLedger ledger, BackendSelection backend, Connection client, ReadOnlySpan<byte> payload, out byte[][] parts, out string refusal)
    {
        parts = [];
        refusal = "";
        var request = Wire.ReadStruct<rstmem_usage_request>(payload, "USAGE");
        if ((request.flags & ~RSTMEM_USAGE_OF_UID) != 0)
        {
            refusal = $"USAGE flags 0x{request.flags:x}: expected 0 or USAGE_OF_UID (0x{RSTMEM_USAGE_OF_UID:x})";
            return Errno.EINVAL;
        }
        AccessPolicy policy = ledger.Policy.Current;
        bool admin = policy.IsAdmin(client.Peer);
        uint uid = (request.flags & RSTMEM_USAGE_OF_UID) != 0 ? request.uid : client.Uid;
        if (uid != client.Uid && !admin)
        {
            refusal = $"uid {client.Uid} may not see the usage of uid {uid}: only root and Access:AdminGroups members may";
            return Errno.EACCES;
        }
        ledger.HandleReleases();
        UserUsage user = ledger.User(uid);
        uint next = admin ? ledger.Shares.Uids.Where(u => u > uid).Select(u => (uint?)u).FirstOrDefault() ?? RSTMEM_NO_UID : RSTMEM_NO_UID;
        var list = new List<byte[]>
        {
            Wire.Bytes(new rstmem_usage_reply
            {
                uid = uid,
                flags = admin ? RSTMEM_USAGE_ADMIN : 0,
                next_uid = next,
                connections = (uint)Math.Max(0, user.Connections),
                buffers = (ulong)Math.Max(0, user.Buffers),
                bytes = (ulong)Math.Max(0, user.Bytes),
                max_connections = (uint)ledger.Limits.MaxConnectionsPerUser,
                max_buffers = (uint)ledger.Limits.MaxBuffersPerUser,
                max_bytes = (ulong)ledger.Limits.MaxBytesPerUser,
                count = (uint)backend.Heaps.Count,
                entry_size = (uint)System.Runtime.CompilerServices.Unsafe.SizeOf<rstmem_heap_usage>(),
            }),
        };
        foreach (HeapProvider heap in backend.Heaps.All)
        {
            UserHeapUsage? mine = ledger.Shares.Find(uid, heap.Name);
            long share = ShareLimit(policy, uid, heap);
            var entry = new rstmem_heap_usage
            {
                buffers = (ulong)Math.Max(0, mine?.Buffers ?? 0),
                bytes = (ulong)Math.Max(0, mine?.Bytes ?? 0),
                share_bytes = share == long.MaxValue ? RSTMEM_NO_LIMIT : (ulong)share,
                allocations = mine?.Allocations ?? 0,
                failures = mine?.Failures ?? 0,
                flags = uid == client.Uid && policy.MayAllocate(client.Peer, heap.Name, heap.UseCase?.Name, heap.Restricted, out _) ? RSTMEM_HEAP_USAGE_GRANTED : 0,
            };
            unsafe
            {
                Wire.WriteString(Wire.Field(entry.name, RSTMEM_HEAP_NAME_LEN), heap.Name, "heap name");
            }
            list.Add(Wire.Bytes(entry));
        }
        parts = [.. list];
        return Errno.None;
    }
}

/// <summary>The numbers STATS reports to one caller: totals, and per heap (allocations, failures, live buffers, live bytes).</summary>
internal sealed record StatsView(ulong Allocations, ulong Failures, ulong LiveBuffers, ulong LiveBytes, uint Clients,
    Func<string, (ulong Allocations, ulong Failures, ulong LiveBuffers, ulong LiveBytes)> Heap);
