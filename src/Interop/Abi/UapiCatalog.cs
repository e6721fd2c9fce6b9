using System.Runtime.CompilerServices;
using Rstmem.Interop.Uapi;

namespace Rstmem.Interop.Abi;

/// <summary>
/// The kernel and libc ABI of <c>Rstmem.Interop.Uapi</c>, listed explicitly so
/// that NativeAOT builds it with no reflection: every struct field by field,
/// every ioctl and every integral constant of the uapi's static classes, and
/// every <see cref="Errno"/>. Each entry names its member once, through the
/// compiler (an accessor or an expression), so a typo does not compile.
/// The list must be complete: the ABI tests compare it with the same catalog
/// found by reflection (<see cref="AbiReflection"/>), so a struct, field,
/// ioctl or constant added to the uapi and not here fails them.
/// </summary>
internal static unsafe class UapiCatalog
{
    public static AbiCatalog Create()
    {
        var known = new Dictionary<Type, AbiStruct>();
        AbiType Resolve(Type type) =>
            AbiScalar.ForPrimitive(type)
            ?? (AbiType?)known.GetValueOrDefault(type)
            ?? throw new InvalidOperationException($"{type.Name} is used as a field before it is declared in UapiCatalog");
        void Add<T>(Func<AbiStructBuilder<T>, AbiStructBuilder<T>> declare) where T : unmanaged =>
            known.Add(typeof(T), declare(new AbiStructBuilder<T>(Resolve)).Build());

        // include/uapi/linux/dma-buf.h
        Add<dma_buf_sync>(s => s.Field(static (ref v) => ref v.flags));
        Add<dma_buf_export_sync_file>(s => s.Field(static (ref v) => ref v.flags).Field(static (ref v) => ref v.fd));
        Add<dma_buf_import_sync_file>(s => s.Field(static (ref v) => ref v.flags).Field(static (ref v) => ref v.fd));

        // include/uapi/linux/dma-heap.h
        Add<dma_heap_allocation_data>(s => s
            .Field(static (ref v) => ref v.len)
            .Field(static (ref v) => ref v.fd)
            .Field(static (ref v) => ref v.fd_flags)
            .Field(static (ref v) => ref v.heap_flags));

        // <sys/inotify.h>, <poll.h>
        Add<inotify_event>(s => s
            .Field(static (ref v) => ref v.wd)
            .Field(static (ref v) => ref v.mask)
            .Field(static (ref v) => ref v.cookie)
            .Field(static (ref v) => ref v.len)
            .FlexibleArray<byte>("name"));
        Add<pollfd>(s => s
            .Field(static (ref v) => ref v.fd)
            .Field(static (ref v) => ref v.events)
            .Field(static (ref v) => ref v.revents));

        // <fcntl.h>
        Add<flock>(s => s
            .Field(static (ref v) => ref v.l_type)
            .Field(static (ref v) => ref v.l_whence)
            .Field(static (ref v) => ref v.l_start)
            .Field(static (ref v) => ref v.l_len)
            .Field(static (ref v) => ref v.l_pid));

        // <sys/socket.h>, <sys/uio.h>, <sys/un.h>
        Add<iovec>(s => s
            .Pointer(static v => &v->iov_base)
            .Field(static (ref v) => ref v.iov_len));
        Add<msghdr>(s => s
            .Pointer(static v => &v->msg_name)
            .Field(static (ref v) => ref v.msg_namelen)
            .Pointer(static v => &v->msg_iov)
            .Field(static (ref v) => ref v.msg_iovlen)
            .Pointer(static v => &v->msg_control)
            .Field(static (ref v) => ref v.msg_controllen)
            .Field(static (ref v) => ref v.msg_flags));
        Add<cmsghdr>(s => s
            .Field(static (ref v) => ref v.cmsg_len)
            .Field(static (ref v) => ref v.cmsg_level)
            .Field(static (ref v) => ref v.cmsg_type));
        Add<ucred>(s => s
            .Field(static (ref v) => ref v.pid)
            .Field(static (ref v) => ref v.uid)
            .Field(static (ref v) => ref v.gid));
        Add<sockaddr_un>(s => s
            .Field(static (ref v) => ref v.sun_family)
            .Array(static (ref v) => ref v.sun_path[0], sockaddr_un.PathCapacity));

        // include/uapi/linux/stat.h
        Add<statx_timestamp>(s => s
            .Field(static (ref v) => ref v.tv_sec)
            .Field(static (ref v) => ref v.tv_nsec)
            .Field(static (ref v) => ref v.__reserved));
        Add<statx>(s => s
            .Field(static (ref v) => ref v.stx_mask)
            .Field(static (ref v) => ref v.stx_blksize)
            .Field(static (ref v) => ref v.stx_attributes)
            .Field(static (ref v) => ref v.stx_nlink)
            .Field(static (ref v) => ref v.stx_uid)
            .Field(static (ref v) => ref v.stx_gid)
            .Field(static (ref v) => ref v.stx_mode)
            .Array(static (ref v) => ref v.__spare0[0], 1)
            .Field(static (ref v) => ref v.stx_ino)
            .Field(static (ref v) => ref v.stx_size)
            .Field(static (ref v) => ref v.stx_blocks)
            .Field(static (ref v) => ref v.stx_attributes_mask)
            .Field(static (ref v) => ref v.stx_atime)
            .Field(static (ref v) => ref v.stx_btime)
            .Field(static (ref v) => ref v.stx_ctime)
            .Field(static (ref v) => ref v.stx_mtime)
            .Field(static (ref v) => ref v.stx_rdev_major)
            .Field(static (ref v) => ref v.stx_rdev_minor)
            .Field(static (ref v) => ref v.stx_dev_major)
            .Field(static (ref v) => ref v.stx_dev_minor)
            .Field(static (ref v) => ref v.stx_mnt_id)
            .Field(static (ref v) => ref v.stx_dio_mem_align)
            .Field(static (ref v) => ref v.stx_dio_offset_align)
            .Array(static (ref v) => ref v.__spare3[0], 12));

        // include/uapi/linux/tee.h and src/Interop/include/rstmem-uapi-ext.h
        Add<tee_ioctl_version_data>(s => s
            .Field(static (ref v) => ref v.impl_id)
            .Field(static (ref v) => ref v.impl_caps)
            .Field(static (ref v) => ref v.gen_caps));
        Add<tee_ioctl_shm_alloc_data>(s => s
            .Field(static (ref v) => ref v.size)
            .Field(static (ref v) => ref v.flags)
            .Field(static (ref v) => ref v.id));
        Add<tee_ioctl_buf_data>(s => s
            .Field(static (ref v) => ref v.buf_ptr)
            .Field(static (ref v) => ref v.buf_len));
        Add<tee_ioctl_param>(s => s
            .Field(static (ref v) => ref v.attr)
            .Field(static (ref v) => ref v.a)
            .Field(static (ref v) => ref v.b)
            .Field(static (ref v) => ref v.c));
        Add<tee_ioctl_open_session_arg>(s => s
            .Array(static (ref v) => ref v.uuid[0], Tee.TEE_IOCTL_UUID_LEN)
            .Array(static (ref v) => ref v.clnt_uuid[0], Tee.TEE_IOCTL_UUID_LEN)
            .Field(static (ref v) => ref v.clnt_login)
            .Field(static (ref v) => ref v.cancel_id)
            .Field(static (ref v) => ref v.session)
            .Field(static (ref v) => ref v.ret)
            .Field(static (ref v) => ref v.ret_origin)
            .Field(static (ref v) => ref v.num_params)
            .FlexibleArray<tee_ioctl_param>("params"));
        Add<tee_ioctl_invoke_arg>(s => s
            .Field(static (ref v) => ref v.func)
            .Field(static (ref v) => ref v.session)
            .Field(static (ref v) => ref v.cancel_id)
            .Field(static (ref v) => ref v.ret)
            .Field(static (ref v) => ref v.ret_origin)
            .Field(static (ref v) => ref v.num_params)
            .FlexibleArray<tee_ioctl_param>("params"));
        Add<tee_ioctl_cancel_arg>(s => s
            .Field(static (ref v) => ref v.cancel_id)
            .Field(static (ref v) => ref v.session));
        Add<tee_ioctl_close_session_arg>(s => s.Field(static (ref v) => ref v.session));
        Add<tee_iocl_supp_recv_arg>(s => s
            .Field(static (ref v) => ref v.func)
            .Field(static (ref v) => ref v.num_params)
            .FlexibleArray<tee_ioctl_param>("params"));
        Add<tee_iocl_supp_send_arg>(s => s
            .Field(static (ref v) => ref v.ret)
            .Field(static (ref v) => ref v.num_params)
            .FlexibleArray<tee_ioctl_param>("params"));
        Add<tee_ioctl_shm_register_data>(s => s
            .Field(static (ref v) => ref v.addr)
            .Field(static (ref v) => ref v.length)
            .Field(static (ref v) => ref v.flags)
            .Field(static (ref v) => ref v.id));
        Add<tee_ioctl_shm_register_fd_data>(s => s
            .Field(static (ref v) => ref v.fd)
            .Field(static (ref v) => ref v.size)
            .Field(static (ref v) => ref v.flags)
            .Field(static (ref v) => ref v.id));
        Add<tee_ioctl_shm_register_fd_data_v1>(s => s
            .Field(static (ref v) => ref v.fd)
            .Field(static (ref v) => ref v.size)
            .Field(static (ref v) => ref v.flags)
            .Array(static (ref v) => ref v._pad1[0], 4)
            .Field(static (ref v) => ref v.id)
            .Array(static (ref v) => ref v._pad2[0], 4));
        Add<tee_ioctl_rstmem_alloc_data>(s => s
            .Field(static (ref v) => ref v.size)
            .Field(static (ref v) => ref v.flags)
            .Field(static (ref v) => ref v.use_case)
            .Field(static (ref v) => ref v.id));

        var ioctls = new List<KeyValuePair<string, Ioctl>>();
        void Request(Ioctl ioctl, [CallerArgumentExpression(nameof(ioctl))] string expression = "") =>
            ioctls.Add(new(expression[(expression.LastIndexOf('.') + 1)..], ioctl));
        Request(DmaBuf.DMA_BUF_IOCTL_SYNC);
        Request(DmaBuf.DMA_BUF_SET_NAME);
        Request(DmaBuf.DMA_BUF_SET_NAME_A);
        Request(DmaBuf.DMA_BUF_SET_NAME_B);
        Request(DmaBuf.DMA_BUF_IOCTL_EXPORT_SYNC_FILE);
        Request(DmaBuf.DMA_BUF_IOCTL_IMPORT_SYNC_FILE);
        Request(DmaHeap.DMA_HEAP_IOCTL_ALLOC);
        Request(Tee.TEE_IOC_VERSION);
        Request(Tee.TEE_IOC_SHM_ALLOC);
        Request(Tee.TEE_IOC_OPEN_SESSION);
        Request(Tee.TEE_IOC_INVOKE);
        Request(Tee.TEE_IOC_CANCEL);
        Request(Tee.TEE_IOC_CLOSE_SESSION);
        Request(Tee.TEE_IOC_SUPPL_RECV);
        Request(Tee.TEE_IOC_SUPPL_SEND);
        Request(Tee.TEE_IOC_SHM_REGISTER_FD);
        Request(Tee.TEE_IOC_SHM_REGISTER_FD_V1);
        Request(Tee.TEE_IOC_SHM_REGISTER);
        Request(Tee.TEE_IOC_RSTMEM_ALLOC);
        Request(Tee.TEE_IOC_OBJECT_INVOKE);

        var constants = new AbiConstants()
            .Add(DmaBuf.DMA_BUF_SYNC_READ).Add(DmaBuf.DMA_BUF_SYNC_WRITE).Add(DmaBuf.DMA_BUF_SYNC_RW)
            .Add(DmaBuf.DMA_BUF_SYNC_START).Add(DmaBuf.DMA_BUF_SYNC_END).Add(DmaBuf.DMA_BUF_SYNC_VALID_FLAGS_MASK)
            .Add(DmaBuf.DMA_BUF_NAME_LEN).Add(DmaBuf.DMA_BUF_BASE)
            .Add(DmaHeap.DMA_HEAP_IOC_MAGIC).Add(DmaHeap.DMA_HEAP_VALID_FD_FLAGS).Add(DmaHeap.DMA_HEAP_VALID_HEAP_FLAGS)
            .Add(Epoll.EPOLLIN).Add(Epoll.EPOLLOUT).Add(Epoll.EPOLLERR).Add(Epoll.EPOLLHUP).Add(Epoll.EPOLLRDHUP)
            .Add(Epoll.EPOLL_CLOEXEC).Add(Epoll.EPOLL_CTL_ADD).Add(Epoll.EPOLL_CTL_DEL).Add(Epoll.EPOLL_CTL_MOD)
            .Add(Fcntl.O_RDONLY).Add(Fcntl.O_WRONLY).Add(Fcntl.O_RDWR).Add(Fcntl.O_ACCMODE).Add(Fcntl.O_CREAT)
            .Add(Fcntl.O_EXCL).Add(Fcntl.O_NOCTTY).Add(Fcntl.O_TRUNC).Add(Fcntl.O_APPEND).Add(Fcntl.O_NONBLOCK)
            .Add(Fcntl.O_CLOEXEC)
            .Add(Fcntl.F_DUPFD).Add(Fcntl.F_GETFD).Add(Fcntl.F_SETFD).Add(Fcntl.F_GETFL).Add(Fcntl.F_SETFL)
            .Add(Fcntl.F_DUPFD_CLOEXEC).Add(Fcntl.F_ADD_SEALS).Add(Fcntl.F_GET_SEALS).Add(Fcntl.FD_CLOEXEC)
            .Add(Fcntl.F_SEAL_SEAL).Add(Fcntl.F_SEAL_SHRINK).Add(Fcntl.F_SEAL_GROW).Add(Fcntl.F_SEAL_WRITE)
            .Add(Fcntl.F_SEAL_FUTURE_WRITE)
            .Add(Fcntl.F_OFD_GETLK).Add(Fcntl.F_OFD_SETLK).Add(Fcntl.F_RDLCK).Add(Fcntl.F_WRLCK).Add(Fcntl.F_UNLCK)
            .Add(Fcntl.SEEK_SET).Add(Fcntl.SEEK_CUR).Add(Fcntl.SEEK_END).Add(Fcntl.SEEK_DATA).Add(Fcntl.SEEK_HOLE)
            .Add(Inotify.IN_ACCESS).Add(Inotify.IN_MODIFY).Add(Inotify.IN_ATTRIB).Add(Inotify.IN_CLOSE_WRITE)
            .Add(Inotify.IN_CLOSE_NOWRITE).Add(Inotify.IN_CLOSE).Add(Inotify.IN_OPEN).Add(Inotify.IN_MOVED_FROM)
            .Add(Inotify.IN_MOVED_TO).Add(Inotify.IN_CREATE).Add(Inotify.IN_DELETE).Add(Inotify.IN_DELETE_SELF)
            .Add(Inotify.IN_MOVE_SELF).Add(Inotify.IN_UNMOUNT).Add(Inotify.IN_Q_OVERFLOW).Add(Inotify.IN_IGNORED)
            .Add(Inotify.IN_ONLYDIR).Add(Inotify.IN_DONT_FOLLOW).Add(Inotify.IN_EXCL_UNLINK).Add(Inotify.IN_MASK_ADD)
            .Add(Inotify.IN_ISDIR).Add(Inotify.IN_ONESHOT).Add(Inotify.IN_CLOEXEC).Add(Inotify.IN_NONBLOCK)
            .Add(Inotify.NAME_MAX)
            .Add(Ioc._IOC_NRBITS).Add(Ioc._IOC_TYPEBITS).Add(Ioc._IOC_SIZEBITS).Add(Ioc._IOC_DIRBITS)
            .Add(Ioc._IOC_NRSHIFT).Add(Ioc._IOC_TYPESHIFT).Add(Ioc._IOC_SIZESHIFT).Add(Ioc._IOC_DIRSHIFT)
            .Add(Ioc._IOC_NONE).Add(Ioc._IOC_WRITE).Add(Ioc._IOC_READ)
            .Add(Memfd.MFD_CLOEXEC).Add(Memfd.MFD_ALLOW_SEALING)
            .Add(Mman.PROT_NONE).Add(Mman.PROT_READ).Add(Mman.PROT_WRITE).Add(Mman.MAP_SHARED).Add(Mman.MAP_PRIVATE)
            .Add(Poll.POLLIN).Add(Poll.POLLPRI).Add(Poll.POLLOUT).Add(Poll.POLLERR).Add(Poll.POLLHUP)
            .Add(Poll.POLLNVAL).Add(Poll.POLLRDHUP)
            .Add(Resource.PRIO_PROCESS)
            .Add(Signals.SIGHUP).Add(Signals.SIGTERM)
            .Add(Sockets.AF_UNIX).Add(Sockets.SOCK_STREAM).Add(Sockets.SOCK_DGRAM).Add(Sockets.SOCK_SEQPACKET)
            .Add(Sockets.SOCK_NONBLOCK).Add(Sockets.SOCK_CLOEXEC)
            .Add(Sockets.SOL_SOCKET).Add(Sockets.SO_TYPE).Add(Sockets.SO_ACCEPTCONN).Add(Sockets.SO_PEERCRED)
            .Add(Sockets.SO_PEERGROUPS).Add(Sockets.SO_PEERSEC).Add(Sockets.SCM_RIGHTS)
            .Add(Sockets.MSG_PEEK).Add(Sockets.MSG_CTRUNC).Add(Sockets.MSG_TRUNC).Add(Sockets.MSG_DONTWAIT)
            .Add(Sockets.MSG_EOR).Add(Sockets.MSG_NOSIGNAL).Add(Sockets.MSG_CMSG_CLOEXEC)
            .Add(Sockets.SHUT_RD).Add(Sockets.SHUT_WR).Add(Sockets.SHUT_RDWR)
            .Add(Stat.AT_FDCWD).Add(Stat.AT_EMPTY_PATH).Add(Stat.STATX_TYPE).Add(Stat.STATX_MODE).Add(Stat.STATX_INO)
            .Add(Stat.STATX_SIZE).Add(Stat.STATX_BASIC_STATS)
            .Add(Stat.S_IFMT).Add(Stat.S_IFSOCK).Add(Stat.S_IFREG).Add(Stat.S_IFCHR).Add(Stat.S_IFDIR)
            .Add(Tee.TEE_IOC_MAGIC).Add(Tee.TEE_IOC_BASE).Add(Tee.TEE_MAX_ARG_SIZE)
            .Add(Tee.TEE_GEN_CAP_GP).Add(Tee.TEE_GEN_CAP_PRIVILEGED).Add(Tee.TEE_GEN_CAP_REG_MEM)
            .Add(Tee.TEE_GEN_CAP_MEMREF_NULL).Add(Tee.TEE_GEN_CAP_RSTMEM).Add(Tee.TEE_GEN_CAP_OBJREF)
            .Add(Tee.TEE_MEMREF_NULL)
            .Add(Tee.TEE_IMPL_ID_OPTEE).Add(Tee.TEE_IMPL_ID_AMDTEE).Add(Tee.TEE_IMPL_ID_TSTEE).Add(Tee.TEE_IMPL_ID_QTEE)
            .Add(Tee.TEE_OPTEE_CAP_TZ)
            .Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_NONE).Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INPUT)
            .Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_OUTPUT).Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_VALUE_INOUT)
            .Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_INPUT).Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_OUTPUT)
            .Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_MEMREF_INOUT).Add(Tee.TEE_IOCTL_PARAM_ATTR_TYPE_MASK)
            .Add(Tee.TEE_IOCTL_PARAM_ATTR_META).Add(Tee.TEE_IOCTL_PARAM_ATTR_MASK)
            .Add(Tee.TEE_IOCTL_LOGIN_PUBLIC).Add(Tee.TEE_IOCTL_LOGIN_USER).Add(Tee.TEE_IOCTL_LOGIN_GROUP)
            .Add(Tee.TEE_IOCTL_LOGIN_APPLICATION).Add(Tee.TEE_IOCTL_LOGIN_USER_APPLICATION)
            .Add(Tee.TEE_IOCTL_LOGIN_GROUP_APPLICATION).Add(Tee.TEE_IOCTL_LOGIN_REE_KERNEL_MIN)
            .Add(Tee.TEE_IOCTL_LOGIN_REE_KERNEL_MAX).Add(Tee.TEE_IOCTL_LOGIN_REE_KERNEL)
            .Add(Tee.TEE_IOCTL_UUID_LEN)
            .Add(Tee.TEE_IOC_UC_RESERVED).Add(Tee.TEE_IOC_UC_SECURE_VIDEO_PLAY).Add(Tee.TEE_IOC_UC_TRUSTED_UI)
            .Add(Tee.TEE_IOC_UC_SECURE_VIDEO_RECORD)
            .Add(Tee.TEE_SHM_DMA_BUF);

        return new AbiCatalog(known.Values.ToList(), ioctls, [.. constants.All, .. AbiConstants.Errnos()], []);
    }
}
