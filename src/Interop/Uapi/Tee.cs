using Rstmem.Interop.Abi;

namespace Rstmem.Interop.Uapi;

/// <summary>
/// include/uapi/linux/tee.h: the TEE character device (/dev/teeN, /dev/teeprivN).
/// Three generations meet here. Linux 6.1's released header; the v4
/// restricted-memory series ("tee: add restricted memory allocation",
/// TEE_IOC_RSTMEM_ALLOC), which never reached a release; and mainline's
/// protected-memory support (TEE_IOC_SHM_REGISTER_FD, QTEE's OBJECT_INVOKE).
/// </summary>
public static class Tee
{
    public const uint TEE_IOC_MAGIC = 0xa4;
    public const uint TEE_IOC_BASE = 0;
    public const int TEE_MAX_ARG_SIZE = 1024;

    // gen_caps. Bit 4 means RSTMEM in the v4 series but OBJREF (QTEE) in
    // mainline: a probe must never trust it alone. Mainline has no bit for
    // protected memory; the heap nodes are the capability.
    public const uint TEE_GEN_CAP_GP = 1u << 0;
    public const uint TEE_GEN_CAP_PRIVILEGED = 1u << 1;
    public const uint TEE_GEN_CAP_REG_MEM = 1u << 2;
    public const uint TEE_GEN_CAP_MEMREF_NULL = 1u << 3;
    /// <summary>v4 series only.</summary>
    public const uint TEE_GEN_CAP_RSTMEM = 1u << 4;
    /// <summary>Mainline (Linux 6.18+), same bit as v4's RSTMEM.</summary>
    public const uint TEE_GEN_CAP_OBJREF = 1u << 4;

    public const ulong TEE_MEMREF_NULL = ulong.MaxValue;

    public const uint TEE_IMPL_ID_OPTEE = 1;
    public const uint TEE_IMPL_ID_AMDTEE = 2;
    public const uint TEE_IMPL_ID_TSTEE = 3;
    public const uint TEE_IMPL_ID_QTEE = 4;

    public const uint TEE_OPTEE_CAP_TZ = 1u << 0;

    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_NONE = 0;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INPUT = 1;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_OUTPUT = 2;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INOUT = 3;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_INPUT = 5;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_OUTPUT = 6;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_INOUT = 7;
    public const uint TEE_IOCTL_PARAM_ATTR_TYPE_MASK = 0xff;
    public const uint TEE_IOCTL_PARAM_ATTR_META = 0x100;
    public const uint TEE_IOCTL_PARAM_ATTR_MASK = TEE_IOCTL_PARAM_ATTR_TYPE_MASK | TEE_IOCTL_PARAM_ATTR_META;

    public const uint TEE_IOCTL_LOGIN_PUBLIC = 0;
    public const uint TEE_IOCTL_LOGIN_USER = 1;
    public const uint TEE_IOCTL_LOGIN_GROUP = 2;
    public const uint TEE_IOCTL_LOGIN_APPLICATION = 4;
    public const uint TEE_IOCTL_LOGIN_USER_APPLICATION = 5;
    public const uint TEE_IOCTL_LOGIN_GROUP_APPLICATION = 6;
    public const uint TEE_IOCTL_LOGIN_REE_KERNEL_MIN = 0x80000000;
    public const uint TEE_IOCTL_LOGIN_REE_KERNEL_MAX = 0xBFFFFFFF;
    public const uint TEE_IOCTL_LOGIN_REE_KERNEL = 0x80000000;

    public const int TEE_IOCTL_UUID_LEN = 16;

    // v4 series: use cases of TEE_IOC_RSTMEM_ALLOC. Mainline's kernel-internal
    // enum tee_dma_heap_id numbers the same use cases 1..3.
    public const uint TEE_IOC_UC_RESERVED = 0;
    public const uint TEE_IOC_UC_SECURE_VIDEO_PLAY = 1;
    public const uint TEE_IOC_UC_TRUSTED_UI = 2;
    public const uint TEE_IOC_UC_SECURE_VIDEO_RECORD = 3;

    /// <summary>
    /// Kernel-internal flag (include/linux/tee_core.h, BIT(4)) that
    /// TEE_IOC_SHM_REGISTER_FD writes back in <c>flags</c>.
    /// </summary>
    public const uint TEE_SHM_DMA_BUF = 1u << 4;

    public static readonly Ioctl TEE_IOC_VERSION = Ioc._IOR<tee_ioctl_version_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 0);
    public static readonly Ioctl TEE_IOC_SHM_ALLOC = Ioc._IOWR<tee_ioctl_shm_alloc_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 1);
    public static readonly Ioctl TEE_IOC_OPEN_SESSION = Ioc._IOR<tee_ioctl_buf_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 2);
    public static readonly Ioctl TEE_IOC_INVOKE = Ioc._IOR<tee_ioctl_buf_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 3);
    public static readonly Ioctl TEE_IOC_CANCEL = Ioc._IOR<tee_ioctl_cancel_arg>(TEE_IOC_MAGIC, TEE_IOC_BASE + 4);
    public static readonly Ioctl TEE_IOC_CLOSE_SESSION = Ioc._IOR<tee_ioctl_close_session_arg>(TEE_IOC_MAGIC, TEE_IOC_BASE + 5);
    public static readonly Ioctl TEE_IOC_SUPPL_RECV = Ioc._IOR<tee_ioctl_buf_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 6);
    public static readonly Ioctl TEE_IOC_SUPPL_SEND = Ioc._IOR<tee_ioctl_buf_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 7);
    /// <summary>Mainline (24-byte argument).</summary>
    public static readonly Ioctl TEE_IOC_SHM_REGISTER_FD = Ioc._IOWR<tee_ioctl_shm_register_fd_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 8);
    /// <summary>The older out-of-tree variant (32-byte argument, padded fields): same nr, different value.</summary>
    public static readonly Ioctl TEE_IOC_SHM_REGISTER_FD_V1 = Ioc._IOWR<tee_ioctl_shm_register_fd_data_v1>(TEE_IOC_MAGIC, TEE_IOC_BASE + 8);
    public static readonly Ioctl TEE_IOC_SHM_REGISTER = Ioc._IOWR<tee_ioctl_shm_register_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 9);
    /// <summary>v4 series only.</summary>
    public static readonly Ioctl TEE_IOC_RSTMEM_ALLOC = Ioc._IOWR<tee_ioctl_rstmem_alloc_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 10);
    /// <summary>Mainline QTEE: the same nr 10 as RSTMEM_ALLOC, a different value.</summary>
    public static readonly Ioctl TEE_IOC_OBJECT_INVOKE = Ioc._IOR<tee_ioctl_buf_data>(TEE_IOC_MAGIC, TEE_IOC_BASE + 10);
}

public struct tee_ioctl_version_data
{
    public uint impl_id;
    public uint impl_caps;
    public uint gen_caps;
}

public struct tee_ioctl_shm_alloc_data
{
    public ulong size;
    public uint flags;
    public int id;
}

public struct tee_ioctl_buf_data
{
    public ulong buf_ptr;
    public ulong buf_len;
}

public struct tee_ioctl_param
{
    public ulong attr;
    public ulong a;
    public ulong b;
    public ulong c;
}

[FlexibleArray("params", typeof(tee_ioctl_param))]
public unsafe struct tee_ioctl_open_session_arg
{
    public fixed byte uuid[Tee.TEE_IOCTL_UUID_LEN];
    public fixed byte clnt_uuid[Tee.TEE_IOCTL_UUID_LEN];
    public uint clnt_login;
    public uint cancel_id;
    public uint session;
    public uint ret;
    public uint ret_origin;
    public uint num_params;
}

[FlexibleArray("params", typeof(tee_ioctl_param))]
public struct tee_ioctl_invoke_arg
{
    public uint func;
    public uint session;
    public uint cancel_id;
    public uint ret;
    public uint ret_origin;
    public uint num_params;
}

public struct tee_ioctl_cancel_arg
{
    public uint cancel_id;
    public uint session;
}

public struct tee_ioctl_close_session_arg
{
    public uint session;
}

// "iocl" (sic): the kernel header's spelling.
[FlexibleArray("params", typeof(tee_ioctl_param))]
public struct tee_iocl_supp_recv_arg
{
    public uint func;
    public uint num_params;
}

[FlexibleArray("params", typeof(tee_ioctl_param))]
public struct tee_iocl_supp_send_arg
{
    public uint ret;
    public uint num_params;
}

public struct tee_ioctl_shm_register_data
{
    public ulong addr;
    public ulong length;
    public uint flags;
    public int id;
}

/// <summary>Mainline TEE_IOC_SHM_REGISTER_FD argument (drivers/tee/tee_core.c, tee_ioctl_shm_register_fd).</summary>
public struct tee_ioctl_shm_register_fd_data
{
    public long fd;
    public ulong size;
    public uint flags;
    public int id;
}

/// <summary>
/// The older out-of-tree TEE_IOC_SHM_REGISTER_FD argument (the 2022 NXP/Linaro
/// series, as vendor kernels and strace carry it): each 32-bit field padded to 8 bytes.
/// </summary>
public unsafe struct tee_ioctl_shm_register_fd_data_v1
{
    public long fd;
    public ulong size;
    public uint flags;
    public fixed byte _pad1[4];
    public int id;
    public fixed byte _pad2[4];
}

/// <summary>v4 series TEE_IOC_RSTMEM_ALLOC argument: 24 bytes on LP64 and ARM EABI (tail padding), 20 on i386.</summary>
public struct tee_ioctl_rstmem_alloc_data
{
    public ulong size;
    public uint flags;
    public uint use_case;
    public int id;

    /// <summary>offsetof(id), from this declaration (which the ABI proof checks against C); no reflection, no catalog.</summary>
    public static unsafe int IdOffset
    {
        get
        {
            tee_ioctl_rstmem_alloc_data data = default;
            return (int)((byte*)&data.id - (byte*)&data);
        }
    }
}
