/* SPDX-License-Identifier: MIT */
/*
 * librstmem: get restricted-memory dma-bufs from rstmemd and import them into
 * your own TEE context.
 *
 *	#include <rstmem/rstmem.h>		cc ... $(pkg-config --cflags --libs rstmem)
 *
 *	struct rstmem_conn *conn;
 *	struct rstmem_buffer buf;
 *	int ret = rstmem_connect(NULL, &conn);		// RSTMEMD_SOCKET or the default
 *	if (ret < 0) ... strerror(-ret) ...
 *	ret = rstmem_alloc(conn, "secure-video", 4 << 20, 0, NULL, &buf);
 *	if (ret >= 0) {
 *		... hand buf.fd to the decoder, or rstmem_tee_register(tee_fd, buf.fd, &shm) ...
 *		rstmem_free(conn, buf.id);	// the daemon's record
 *		close(buf.fd);			// the memory (once every copy is closed)
 *	}
 *	rstmem_disconnect(conn);
 *
 * Conventions, for every function below:
 *
 *  - Return value: 0, or a descriptor (>= 0) where stated, on success; a
 *    negative errno (-ENOENT, ...) on failure. errno itself is left as the
 *    last system call set it and means nothing. Nothing exits, aborts or
 *    raises signals (sends use MSG_NOSIGNAL: a closed daemon is -EPIPE, not
 *    SIGPIPE). Nothing prints, unless the environment variable RSTMEM_DEBUG is
 *    set to a non-empty value other than "0": then failures are explained on
 *    stderr, one line each starting "librstmem: " (this is how to see the
 *    daemon's error text). Ignored in secure-execution mode (secure_getenv(3)).
 *  - Descriptors: every descriptor the library creates or receives is
 *    close-on-exec from the moment it exists (SOCK_CLOEXEC,
 *    MSG_CMSG_CLOEXEC), except the tee_shm descriptor of rstmem_tee_register,
 *    which the kernel creates without it; the library sets FD_CLOEXEC right
 *    after, which another thread's fork+exec can race. Descriptors handed to
 *    you are yours: close them. Descriptors you pass in are never closed or
 *    kept. A reply that carries descriptors it should not (or too many, or a
 *    truncated control message) is a protocol error: every descriptor it
 *    carried is closed and the call fails with -EPROTO.
 *  - Signals: system calls interrupted by a signal (EINTR) are restarted;
 *    no call returns -EINTR. Calls block until the daemon answers: there is
 *    no timeout (the daemon answers every request it can read).
 *  - Threads: a struct rstmem_conn may be used from several threads at once.
 *    Each call that talks to the daemon holds the connection's mutex for its
 *    whole request/reply exchange, so calls on one connection are serialised
 *    (use one connection per thread for parallel allocation; the daemon
 *    serves connections independently). Thread cancellation is disabled
 *    during an exchange. rstmem_disconnect must not race any other call on
 *    the same connection. Functions without a connection are thread-safe.
 *    So the library never has more than one request in flight per
 *    connection, within RSTMEM_MAX_PIPELINE (rstmem/protocol.h).
 *  - fork: a connection is not shared across fork(); the child must not use
 *    its copy except to rstmem_disconnect it (which closes only the child's
 *    socket). Buffer descriptors are ordinary dma-buf descriptors and may be
 *    inherited or passed on (SCM_RIGHTS) freely.
 *  - Broken connections: after a transport failure or a reply that breaks
 *    docs/protocol.md (-EPROTO, -ECONNRESET, -EPIPE, -EBADMSG, ...), the
 *    connection cannot resynchronise; every later call on it fails with
 *    -ENOTCONN. rstmem_disconnect it and connect again. Errors the daemon
 *    reports for a well-formed request (-ENOENT, -ENOMEM, ...) leave the
 *    connection usable.
 *
 * Errors the daemon reports (docs/protocol.md section 4) reach you as
 * -ENOENT, -ENOMEM, -EACCES, -EINVAL, -ENOSYS, -EPROTONOSUPPORT, -EBADMSG and
 * -EDQUOT; the meaning for each call is listed with it.
 *
 * The wire protocol is rstmem/protocol.h (included here for its constants:
 * RSTMEM_HEAP_NAME_LEN, RSTMEM_ALLOC_BY_*, RSTMEM_HEAP_*, RSTMEM_CAP_*, ...).
 * The library exports exactly the functions declared in this header from
 * librstmem.so.1: those of librstmem 1.0.0 at symbol version RSTMEM_1,
 * rstmem_get_usage (1.1.0) at RSTMEM_2.
 */
#ifndef RSTMEM_RSTMEM_H
#define RSTMEM_RSTMEM_H

#include <stddef.h>
#include <stdint.h>

#include <rstmem/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A connection to rstmemd. Opaque; from rstmem_connect, ended by rstmem_disconnect. */
struct rstmem_conn;

/** What the daemon said about itself at connect (its HELLO reply), in host byte order. */
struct rstmem_server_info {
	uint32_t version;	/* negotiated protocol version (RSTMEM_PROTOCOL_VERSION) */
	uint32_t capabilities;	/* RSTMEM_CAP_* */
	uint32_t backend;	/* enum rstmem_backend */
	uint32_t generation;	/* enum rstmem_generation */
	uint32_t page_size;	/* allocation granularity in bytes */
	uint32_t heap_count;	/* heaps offered at connect time */
	char server[RSTMEM_SERVER_NAME_LEN];	/* e.g. "rstmemd 1.1.0", NUL-terminated */
};

/** One heap or use-case provider, as rstmem_list_heaps reports it, in host byte order. */
struct rstmem_heap {
	char name[RSTMEM_HEAP_NAME_LEN];	/* heap name, NUL-terminated: "protected,secure-video" */
	char use_case[RSTMEM_USE_CASE_LEN];	/* use case it serves, NUL-terminated, or "" */
	uint32_t backend;	/* enum rstmem_backend */
	uint32_t generation;	/* enum rstmem_generation */
	uint32_t page_size;	/* allocation granularity in bytes */
	uint32_t flags;		/* RSTMEM_HEAP_RESTRICTED, _MAPPABLE, _SIZES_KNOWN */
	uint64_t total_bytes;	/* pool size; 0 when unknown */
	uint64_t free_bytes;	/* free bytes; 0 when unknown */
	uint64_t max_alloc_bytes;	/* largest single allocation the daemon would try for you */
};

/** A buffer from rstmem_alloc. */
struct rstmem_buffer {
	uint64_t id;		/* the daemon's id: for rstmem_free and its logs */
	uint64_t size;		/* actual size: the request rounded up to the page size */
	int fd;			/* the dma-buf, close-on-exec; yours to close. -1 after a failure */
	char heap[RSTMEM_HEAP_NAME_LEN];	/* heap it came from, NUL-terminated */
};

/** A uid's usage of the daemon and its limits, as rstmem_get_usage reports them, in host byte order. */
struct rstmem_user_usage {
	uint32_t uid;		/* whose usage this is */
	uint32_t flags;		/* RSTMEM_USAGE_ADMIN: the caller may ask about every uid */
	uint32_t next_uid;	/* for administrators: the next uid above this one the daemon has
				 * records of, to walk them all from uid 0; else RSTMEM_NO_UID */
	uint32_t connections;	/* the uid's connections now */
	uint64_t buffers;	/* buffers it holds (charged until their last close anywhere) */
	uint64_t bytes;
	uint32_t max_connections;	/* Limits:MaxConnectionsPerUser */
	uint32_t max_buffers;	/* Limits:MaxBuffersPerUser */
	uint64_t max_bytes;	/* Limits:MaxBytesPerUser */
};

/** The uid's part of one heap (rstmem_get_usage), in host byte order. */
struct rstmem_user_heap {
	char name[RSTMEM_HEAP_NAME_LEN];	/* heap name, NUL-terminated */
	uint64_t buffers;	/* the uid's buffers from this heap */
	uint64_t bytes;
	uint64_t share_bytes;	/* the most the uid may hold here (its pool share);
				 * RSTMEM_NO_LIMIT: no share applies */
	uint64_t allocations;	/* the uid's successful allocations here since the daemon started */
	uint64_t failures;	/* and failed ones */
	uint32_t flags;		/* RSTMEM_HEAP_USAGE_GRANTED: the access policy lets the
				 * caller allocate here (reported only about oneself) */
};

/** A dma-buf registered with a TEE context by rstmem_tee_register. */
struct rstmem_tee_shm {
	int fd;			/* tee_shm descriptor, close-on-exec; yours. -1 after a failure */
	int32_t id;		/* shared-memory id to put in a TEE memref (TEEC_MEMREF / tee_ioctl_param) */
	uint64_t size;		/* registered size (page-rounded by the kernel) */
	uint32_t flags;		/* flags the kernel wrote back (TEE_SHM_DMA_BUF, 0x10, on mainline) */
};

/**
 * rstmem_connect() - connect to rstmemd and negotiate the protocol version.
 * @socket_path: path of the daemon's socket, or NULL for the default:
 *	$RSTMEMD_SOCKET if set and non-empty, else (not root)
 *	"$XDG_RUNTIME_DIR/rstmemd.sock" if that exists (a per-user daemon),
 *	else RSTMEM_DEFAULT_SOCKET ("/run/rstmemd/rstmemd.sock", the system
 *	service's) (docs/protocol.md section 2).
 * @out: receives the connection; set to NULL on failure.
 *
 * Opens a close-on-exec AF_UNIX SOCK_SEQPACKET socket, connects, and sends
 * HELLO offering versions RSTMEM_PROTOCOL_MIN_VERSION..RSTMEM_PROTOCOL_VERSION.
 * The daemon's answer must pick a version in that range. The socket is owned
 * by the connection and closed by rstmem_disconnect.
 *
 * Return: 0 on success, or
 *  -EINVAL		@out is NULL, or @socket_path is "".
 *  -ENOENT		nothing at the socket path (no daemon is running).
 *  -ENAMETOOLONG	the path does not fit in sockaddr_un.sun_path (107 bytes).
 *  -ECONNREFUSED	no daemon listens there (stale socket, or not a socket).
 *  -EACCES		no permission to connect (the socket is mode 0660 with
 *			a group: be in it) or to search the path.
 *  -ENOTDIR, -ELOOP	a path component is not a directory / symlink loop.
 *  -EPROTOTYPE		the socket is not a SOCK_SEQPACKET socket.
 *  -EMFILE, -ENFILE, -ENOMEM, -ENOBUFS	out of descriptors or memory.
 *  -EPROTONOSUPPORT	the daemon speaks no protocol version this library speaks.
 *  -EPROTO		the daemon's HELLO reply breaks the protocol.
 *  -EUSERS		the daemon refused the connection: your uid has
 *			Limits:MaxConnectionsPerUser connections open already
 *			(RSTMEM_DEBUG shows the daemon's text).
 *  -ECONNRESET, -EPIPE	the daemon closed the connection during HELLO.
 *  -EBADMSG, -ENOSYS	the daemon rejected HELLO (never happens with rstmemd).
 *  Other negative errnos of socket(2), connect(2), sendmsg(2) and recvmsg(2)
 *  are passed through unchanged.
 */
int rstmem_connect(const char *socket_path, struct rstmem_conn **out);

/**
 * rstmem_disconnect() - close the connection and free it.
 * @conn: from rstmem_connect, or NULL (nothing happens).
 *
 * Buffers allocated on the connection stay valid: their descriptors are
 * yours. The daemon forgets its records of them (as rstmem_free would); their
 * memory returns to the pool when the last descriptor for each is closed.
 * Must not be called while another thread uses @conn. Cannot fail.
 */
void rstmem_disconnect(struct rstmem_conn *conn);

/**
 * rstmem_get_server_info() - what the daemon said at connect.
 * @conn: the connection.
 * @out: receives a copy of the HELLO facts (no request is sent; heap_count
 *	is the count at connect time, rstmem_list_heaps gives the current list).
 *
 * Return: 0 on success, or -EINVAL if @conn or @out is NULL.
 */
int rstmem_get_server_info(struct rstmem_conn *conn, struct rstmem_server_info *out);

/**
 * rstmem_list_heaps() - list the heaps and use cases the daemon offers now.
 * @conn: the connection.
 * @heaps: caller-provided array of @capacity entries; may be NULL if
 *	@capacity is 0.
 * @capacity: number of entries in @heaps.
 * @count: receives the number of heaps the daemon offers (always, when the
 *	daemon answered; also with -ERANGE).
 *
 * Fills heaps[0 .. min(@capacity, *@count) - 1] in the daemon's order. To
 * size the array, call with @heaps NULL and @capacity 0 first; the list may
 * grow between two calls (a heap node appears), so retry on -ERANGE. The
 * library keeps no copy: there is no global or per-connection heap state.
 *
 * Return: 0 on success (all *@count entries fit, or @capacity is 0: a count
 * query), or
 *  -ERANGE		the daemon offers more than @capacity heaps; the first
 *			@capacity are filled and *@count says how many there are.
 *  -EINVAL		@conn or @count is NULL, or @heaps is NULL with @capacity > 0.
 *  -ENOTCONN		the connection broke earlier.
 *  -EPROTO		malformed reply (connection now broken).
 *  -ECONNRESET, -EPIPE	the daemon closed the connection (now broken).
 *  -EBADMSG		the daemon found the request malformed and closed the
 *			connection (never happens with this library).
 *  -EPROTONOSUPPORT, -ENOSYS	the daemon refused the request.
 *  Other negative errnos of sendmsg(2)/recvmsg(2) (connection now broken).
 */
int rstmem_list_heaps(struct rstmem_conn *conn, struct rstmem_heap *heaps, size_t capacity,
		      size_t *count);

/**
 * rstmem_alloc() - allocate a restricted buffer and receive its dma-buf.
 * @conn: the connection.
 * @use_case_or_heap: a use case ("secure-video", "trusted-ui",
 *	"secure-video-record") or a heap name ("protected,secure-video",
 *	"system", ...); at most RSTMEM_HEAP_NAME_LEN - 1 (63) bytes.
 * @size: bytes wanted, > 0; the daemon rounds it up to the heap's page size.
 * @flags: 0 (a use case if one has that name, else a heap),
 *	RSTMEM_ALLOC_BY_USE_CASE or RSTMEM_ALLOC_BY_HEAP (not both).
 * @name: buffer name (DMA_BUF_SET_NAME, seen in /proc/PID/fdinfo and debugfs),
 *	at most RSTMEM_BUFFER_NAME_LEN - 1 (31) bytes; NULL or "" for the
 *	daemon's default ("svp:<pid>:<seq>" and the like).
 * @out: receives the buffer. On failure out->fd is -1, id and size are 0.
 *
 * Ownership: out->fd is a new close-on-exec descriptor that belongs to the
 * caller, who must close it; the memory returns to the pool only when every
 * descriptor for the buffer (including copies passed to other processes, and
 * mappings) is closed. rstmem_free does not close it.
 *
 * Return: the dma-buf descriptor (out->fd, >= 0) on success, or
 *  -EINVAL		@conn, @use_case_or_heap or @out is NULL; or (from the
 *			daemon) @use_case_or_heap is "", @size is 0 or above
 *			INT64_MAX, or @flags has unknown bits or both BY_ bits.
 *  -ENAMETOOLONG	@use_case_or_heap is longer than 63 bytes or @name
 *			longer than 31 bytes (checked before anything is sent).
 *  -ENOENT		no such use case or heap (as restricted by @flags).
 *  -ENOMEM		the heap cannot satisfy @size (pool exhausted or too
 *			fragmented).
 *  -EDQUOT		your uid's buffer or byte limit in the daemon is
 *			reached, or its share of this restricted pool
 *			(Access:MaxPoolSharePercent, by default half).
 *  -EACCES		the daemon's access policy (rstmemd.json(5), Access)
 *			does not grant this heap or use case to you.
 *  -ENOTCONN		the connection broke earlier.
 *  -EPROTO		malformed reply (e.g. no descriptor, or two; a size
 *			smaller than asked); any descriptors it carried are
 *			closed; the connection is now broken.
 *  -ECONNRESET, -EPIPE	the daemon closed the connection (now broken).
 *  -EBADMSG		the daemon found the request malformed and closed the
 *			connection (never happens with this library).
 *  -EPROTONOSUPPORT, -ENOSYS	the daemon refused the request.
 *  Other negative errnos of sendmsg(2)/recvmsg(2) (connection now broken).
 */
int rstmem_alloc(struct rstmem_conn *conn, const char *use_case_or_heap, uint64_t size,
		 uint32_t flags, const char *name, struct rstmem_buffer *out);

/**
 * rstmem_free() - end the daemon's record of a buffer.
 * @conn: the connection the buffer was allocated on.
 * @id: rstmem_buffer.id from rstmem_alloc.
 *
 * Does not close the descriptor or release memory: close your descriptor
 * too (before or after; order does not matter). Optional: rstmem_disconnect
 * ends all the connection's records.
 *
 * Return: 0 on success, or
 *  -EINVAL		@conn is NULL.
 *  -ENOENT		@id is unknown, already freed, or was allocated on
 *			another connection.
 *  -ENOTCONN, -EPROTO, -ECONNRESET, -EPIPE, -EBADMSG, -EPROTONOSUPPORT,
 *  -ENOSYS, other sendmsg(2)/recvmsg(2) errnos: as for rstmem_list_heaps.
 */
int rstmem_free(struct rstmem_conn *conn, uint64_t id);

/**
 * rstmem_get_usage() - a uid's usage of the daemon, its limits and pool shares.
 * @conn: the connection.
 * @uid: RSTMEM_NO_UID for the caller's own (the uid the daemon read from the
 *	socket, SO_PEERCRED); another uid only for root and members of the
 *	daemon's Access:AdminGroups.
 * @out: receives the uid's totals and limits.
 * @heaps: caller-provided array of @capacity entries, one per heap the
 *	daemon offers; may be NULL if @capacity is 0.
 * @capacity: number of entries in @heaps.
 * @count: receives the number of heaps (always, when the daemon answered;
 *	also with -ERANGE).
 *
 * Sends USAGE (protocol version 2). Fills heaps[0 .. min(@capacity, *@count) - 1]
 * in the daemon's order, as rstmem_list_heaps does; retry with a larger array
 * on -ERANGE. An administrator walks every uid from @uid 0 through
 * out->next_uid until it is RSTMEM_NO_UID. Added in librstmem 1.1.0
 * (symbol version RSTMEM_2).
 *
 * Return: 0 on success, or
 *  -ERANGE		the daemon offers more than @capacity heaps; the first
 *			@capacity are filled and *@count says how many there are.
 *  -EINVAL		@conn, @out or @count is NULL, or @heaps is NULL with
 *			@capacity > 0.
 *  -ENOSYS		the daemon speaks protocol version 1 only (no USAGE);
 *			checked before anything is sent.
 *  -EACCES		@uid is another user's and the caller is not an
 *			administrator.
 *  -ENOTCONN, -EPROTO, -ECONNRESET, -EPIPE, -EBADMSG, -EPROTONOSUPPORT,
 *  other sendmsg(2)/recvmsg(2) errnos: as for rstmem_list_heaps.
 */
int rstmem_get_usage(struct rstmem_conn *conn, uint32_t uid, struct rstmem_user_usage *out,
		     struct rstmem_user_heap *heaps, size_t capacity, size_t *count);

/**
 * rstmem_tee_register() - import a dma-buf into the caller's TEE context.
 * @tee_fd: the caller's open TEE context (/dev/teeN, e.g. from libteec's
 *	TEEC_InitializeContext; TEEC_Context.fd).
 * @dmabuf_fd: the dma-buf, e.g. rstmem_buffer.fd. Not closed, not kept: the
 *	registration holds its own reference, so closing @dmabuf_fd after
 *	this call does not end the registration.
 * @out: receives the registration. On failure out->fd is -1.
 *
 * Issues TEE_IOC_SHM_REGISTER_FD with the mainline layout (Linux 6.18+, 24-byte
 * struct tee_ioctl_shm_register_fd_data, flags 0); if the kernel answers
 * EINVAL or ENOTTY, retries with the older out-of-tree 32-byte layout that
 * vendor kernels carry. The kernel returns a new tee_shm descriptor;
 * out->id is what a trusted application is given in a memref. No daemon
 * connection is involved. Thread-safe.
 *
 * Ownership: out->fd belongs to the caller; close it (or call
 * rstmem_tee_unregister) to end the registration once the TEE no longer uses
 * the memory. The library sets FD_CLOEXEC on it (the kernel does not).
 *
 * Return: the tee_shm descriptor (out->fd, >= 0) on success, or
 *  -EINVAL		@out is NULL; or (kernel) @dmabuf_fd is not a dma-buf
 *			this TEE can register (not a restricted/protected
 *			dma-buf, one from another TEE device, ...), or @tee_fd
 *			is a TEE device without register-fd support.
 *  -EBADF		@tee_fd or @dmabuf_fd is not an open descriptor.
 *  -ENOTTY		@tee_fd is not a TEE device (under qemu-user, which
 *			forwards no ioctl it does not emulate: -ENOSYS).
 *  -ENOMEM		the kernel could not allocate the registration.
 *  -EMFILE, -ENFILE	no descriptor for the tee_shm.
 *  Other negative errnos of ioctl(2) and fcntl(2) are passed through; when
 *  both layouts fail, the mainline layout's error is reported unless the
 *  older layout's error is something other than EINVAL/ENOTTY.
 */
int rstmem_tee_register(int tee_fd, int dmabuf_fd, struct rstmem_tee_shm *out);

/**
 * rstmem_tee_unregister() - close a registration from rstmem_tee_register.
 * @shm: the registration; shm->fd is closed and set to -1.
 *
 * The TEE keeps the memory registered while a trusted application still
 * holds a reference; the kernel drops the registration at the last one.
 *
 * Return: 0 on success, or
 *  -EINVAL		@shm is NULL.
 *  -EBADF		shm->fd is not an open descriptor (e.g. already closed).
 *  -EIO		close(2) reported an I/O error (the descriptor is
 *			closed anyway).
 */
int rstmem_tee_unregister(struct rstmem_tee_shm *shm);

#ifdef __cplusplus
}
#endif

#endif /* RSTMEM_RSTMEM_H */
