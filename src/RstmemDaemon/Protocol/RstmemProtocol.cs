namespace Rstmem.Daemon.Protocol;

/// <summary>
/// The constants of src/Native/include/rstmem/protocol.h, named as there.
/// The protocol test compiles C against that header for every one of them.
/// </summary>
public static class RstmemProtocol
{
    public const uint RSTMEM_PROTOCOL_MAGIC = 0x4d545352;
    public const ushort RSTMEM_PROTOCOL_VERSION = 2;

    /// <summary>sizeof(struct rstmem_stats_reply) in protocol version 1, which ended before <c>releases</c> (docs/protocol.md, STATS).</summary>
    public static unsafe int StatsReplyVersion1Size
    {
        get
        {
            rstmem_stats_reply reply = default;
            return (int)((byte*)&reply.releases - (byte*)&reply);
        }
    }
    public const ushort RSTMEM_PROTOCOL_MIN_VERSION = 1;

    public const int RSTMEM_MAX_PACKET = 8192;
    public const int RSTMEM_MAX_MESSAGE = 256;
    public const int RSTMEM_HEAP_NAME_LEN = 64;
    public const int RSTMEM_USE_CASE_LEN = 32;
    public const int RSTMEM_BUFFER_NAME_LEN = 32;
    public const int RSTMEM_SERVER_NAME_LEN = 32;
    public const int RSTMEM_MAX_PIPELINE = 8;

    public const ushort RSTMEM_OP_HELLO = 1;
    public const ushort RSTMEM_OP_LIST_HEAPS = 2;
    public const ushort RSTMEM_OP_ALLOC = 3;
    public const ushort RSTMEM_OP_FREE = 4;
    public const ushort RSTMEM_OP_STATS = 5;
    public const ushort RSTMEM_OP_USAGE = 6;
    public const ushort RSTMEM_REPLY = 0x8000;

    public const uint RSTMEM_BACKEND_MODEL = 1;
    public const uint RSTMEM_BACKEND_TEE = 2;
    public const uint RSTMEM_BACKEND_DMA_HEAP = 3;

    public const uint RSTMEM_GENERATION_NONE = 0;
    public const uint RSTMEM_GENERATION_V4 = 1;
    public const uint RSTMEM_GENERATION_V6 = 2;
    public const uint RSTMEM_GENERATION_MAINLINE = 3;

    public const uint RSTMEM_CAP_USE_CASES = 1u << 0;
    public const uint RSTMEM_CAP_BUFFER_NAMES = 1u << 1;
    public const uint RSTMEM_CAP_RELEASE_TRACKING = 1u << 2;

    public const uint RSTMEM_HEAP_RESTRICTED = 1u << 0;
    public const uint RSTMEM_HEAP_MAPPABLE = 1u << 1;
    public const uint RSTMEM_HEAP_SIZES_KNOWN = 1u << 2;

    public const uint RSTMEM_ALLOC_BY_USE_CASE = 1u << 0;
    public const uint RSTMEM_ALLOC_BY_HEAP = 1u << 1;

    public const uint RSTMEM_USAGE_OF_UID = 1u << 0;
    public const uint RSTMEM_USAGE_ADMIN = 1u << 0;
    public const uint RSTMEM_NO_UID = 0xffffffff;
    public const uint RSTMEM_HEAP_USAGE_GRANTED = 1u << 0;
    public const ulong RSTMEM_NO_LIMIT = 0xffffffffffffffff;

    public const string RSTMEM_DEFAULT_SOCKET = "/run/rstmemd/rstmemd.sock";
    public const string RSTMEM_SOCKET_ENV = "RSTMEMD_SOCKET";
}

public struct rstmem_header
{
    public uint magic;
    public ushort version;
    public ushort opcode;
    public uint request_id;
    public uint payload_length;
}

public struct rstmem_status
{
    public int error;
    public uint message_length;
}

public struct rstmem_hello_request
{
    public ushort min_version;
    public ushort max_version;
    public uint flags;
}

public unsafe struct rstmem_hello_reply
{
    public ushort version;
    public ushort reserved;
    public uint capabilities;
    public uint backend;
    public uint generation;
    public uint page_size;
    public uint heap_count;
    public fixed byte server[RstmemProtocol.RSTMEM_SERVER_NAME_LEN];
}

public struct rstmem_heap_list
{
    public uint count;
    public uint entry_size;
}

public unsafe struct rstmem_heap_info
{
    public fixed byte name[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
    public fixed byte use_case[RstmemProtocol.RSTMEM_USE_CASE_LEN];
    public uint backend;
    public uint generation;
    public uint page_size;
    public uint flags;
    public ulong total_bytes;
    public ulong free_bytes;
    public ulong max_alloc_bytes;
}

public unsafe struct rstmem_alloc_request
{
    public fixed byte target[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
    public ulong size;
    public uint flags;
    public uint reserved;
    public fixed byte name[RstmemProtocol.RSTMEM_BUFFER_NAME_LEN];
}

public unsafe struct rstmem_alloc_reply
{
    public ulong buffer_id;
    public ulong size;
    public fixed byte heap[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
}

public struct rstmem_free_request
{
    public ulong buffer_id;
}

public struct rstmem_free_reply
{
    public uint released;
    public uint reserved;
}

public struct rstmem_stats_reply
{
    public ulong uptime_ms;
    public ulong allocations;
    public ulong failures;
    public ulong live_buffers;
    public ulong live_bytes;
    public uint clients;
    public uint count;
    public uint entry_size;
    public uint reserved;
    public ulong releases;
    public ulong release_latency_p99_us;
    public ulong release_latency_max_us;
}

public unsafe struct rstmem_heap_stats
{
    public fixed byte name[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
    public ulong allocations;
    public ulong failures;
    public ulong live_buffers;
    public ulong live_bytes;
    public ulong total_bytes;
    public ulong free_bytes;
    public ulong largest_free_bytes;
    public ulong lends;
    public ulong reclaims;
}

public struct rstmem_usage_request
{
    public uint uid;
    public uint flags;
}

public struct rstmem_usage_reply
{
    public uint uid;
    public uint flags;
    public uint next_uid;
    public uint connections;
    public ulong buffers;
    public ulong bytes;
    public uint max_connections;
    public uint max_buffers;
    public ulong max_bytes;
    public uint count;
    public uint entry_size;
}

public unsafe struct rstmem_heap_usage
{
    public fixed byte name[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
    public ulong buffers;
    public ulong bytes;
    public ulong share_bytes;
    public ulong allocations;
    public ulong failures;
    public uint flags;
    public uint reserved;
}

/// <summary>The HEAP_IOCTL constants of protocol.h (librstmem-preload.so's operation), named as there.</summary>
public static class RstmemHeapIoctlProtocol
{
    public const ushort RSTMEM_OP_HEAP_IOCTL = 16;
    public const int RSTMEM_HEAP_IOCTL_MAX_ARG = 4096;
    public const uint RSTMEM_HEAP_IOCTL_NO_FD = 0xffffffff;
}

public unsafe struct rstmem_heap_ioctl_request
{
    public fixed byte heap[RstmemProtocol.RSTMEM_HEAP_NAME_LEN];
    public uint request;
    public uint arg_size;
    public uint flags;
    public uint reserved;
}

public struct rstmem_heap_ioctl_reply
{
    public int error;
    public int result;
    public uint arg_size;
    public uint fd_offset;
    public uint fd_cloexec;
    public uint reserved;
    public ulong buffer_id;
}
