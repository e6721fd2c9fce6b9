// SPDX-License-Identifier: MIT
/*
 * The preload shim's rstmemd client: HELLO, LIST_HEAPS and HEAP_IOCTL over
 * one SOCK_SEQPACKET connection per process (docs/protocol.md). It is
 * separate from librstmem so that the shim pulls in no library a program
 * does not already have, and so that it never calls an interposed function
 * (open, close, ioctl) through the interposers.
 *
 * The connection is opened on first use, kept, and reopened after a fork
 * (the child must not read its parent's replies) or after any failure.
 * One mutex serialises exchanges; pthread_atfork keeps a fork from
 * copying it locked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "preload.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the wire protocol is little-endian; this client copies structs as they are in memory"
#endif

#define HEADER_SIZE sizeof(struct rstmem_header)
#define STATUS_SIZE sizeof(struct rstmem_status)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int conn_fd = -1;
static pid_t conn_pid;
static uint32_t next_id = 1;
static uint32_t conn_backend;
static unsigned char packet[RSTMEM_MAX_PACKET];
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork_parent(void) { pthread_mutex_unlock(&lock); }
static void after_fork_child(void) { pthread_mutex_unlock(&lock); }	/* conn_pid differs now: reconnect */
static void register_atfork(void) { pthread_atfork(before_fork, after_fork_parent, after_fork_child); }

static void disconnect(void)
{
	/* In a forked child this closes only the child's copy. */
	if (conn_fd >= 0)
		preload_real_close(conn_fd);
	conn_fd = -1;
}

/* docs/protocol.md section 2, as librstmem's resolve_socket_path. */
static int socket_address(struct sockaddr_un *addr)
{
	char joined[sizeof(addr->sun_path) + 1];
	const char *path = secure_getenv(RSTMEM_SOCKET_ENV);
	if (path == NULL || path[0] == '\0') {
		if (geteuid() == 0) {
			path = RSTMEM_DEFAULT_SOCKET;
		} else {
			const char *runtime = secure_getenv("XDG_RUNTIME_DIR");
			if (runtime == NULL || runtime[0] == '\0')
				return -ENOENT;
			int len = snprintf(joined, sizeof(joined), "%s/rstmemd.sock", runtime);
			if (len < 0 || (size_t)len >= sizeof(joined))
				return -ENAMETOOLONG;
			path = joined;
		}
	}
	size_t len = strlen(path);
	if (len >= sizeof(addr->sun_path))
		return -ENAMETOOLONG;
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

/*
 * One request and its reply. On success *body points into `packet` after
 * the status (valid until the lock is released) and *fd is the descriptor
 * the reply carried or -1. A non-zero daemon status is returned as
 * *status with 0; a broken connection as -errno.
 */
static int exchange(uint16_t opcode, const void *payload, size_t payload_len, const void *tail, size_t tail_len,
		    int *status, const unsigned char **body, size_t *body_len, int *fd)
{
	*fd = -1;
	*status = 0;
	if (HEADER_SIZE + payload_len + tail_len > sizeof(packet))
		return -EMSGSIZE;
	struct rstmem_header header = {
		.magic = RSTMEM_PROTOCOL_MAGIC,
		.version = RSTMEM_PROTOCOL_VERSION,
		.opcode = opcode,
		.request_id = next_id++,
		.payload_length = (uint32_t)(payload_len + tail_len),
	};
	if (next_id == 0)
		next_id = 1;
	memcpy(packet, &header, HEADER_SIZE);
	memcpy(packet + HEADER_SIZE, payload, payload_len);
	if (tail_len)
		memcpy(packet + HEADER_SIZE + payload_len, tail, tail_len);
	ssize_t n;
	do
		n = send(conn_fd, packet, HEADER_SIZE + payload_len + tail_len, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} control;
	struct iovec iov = { .iov_base = packet, .iov_len = sizeof(packet) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf) };
	do
		n = recvmsg(conn_fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	int fds[4];
	size_t nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count && nfds < 4; i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	int err = 0;
	struct rstmem_header reply;
	struct rstmem_status st;
	if (n == 0)
		err = -ECONNRESET;
	else if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || (size_t)n < HEADER_SIZE + STATUS_SIZE || nfds > 1)
		err = -EPROTO;
	if (err == 0) {
		memcpy(&reply, packet, HEADER_SIZE);
		memcpy(&st, packet + HEADER_SIZE, STATUS_SIZE);
		if (reply.magic != RSTMEM_PROTOCOL_MAGIC || reply.opcode != (opcode | RSTMEM_REPLY) ||
		    reply.request_id != header.request_id || reply.payload_length != (size_t)n - HEADER_SIZE ||
		    st.error < 0 || st.error >= 4096 || (st.error != 0 && nfds != 0))
			err = -EPROTO;
	}
	if (err != 0) {
		for (size_t i = 0; i < nfds; i++)
			preload_real_close(fds[i]);
		return err;
	}
	*status = st.error;
	*body = packet + HEADER_SIZE + STATUS_SIZE + (st.error ? st.message_length : 0);
	*body_len = (size_t)n - HEADER_SIZE - STATUS_SIZE - (st.error ? st.message_length : 0);
	*fd = nfds ? fds[0] : -1;
	return 0;
}

static int ensure_connected(void)
{
	pthread_once(&atfork_once, register_atfork);
	if (conn_fd >= 0 && conn_pid == getpid())
		return 0;
	disconnect();
	struct sockaddr_un addr;
	int err = socket_address(&addr);
	if (err)
		return err;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		err = -errno;
		preload_real_close(fd);
		return err;
	}
	conn_fd = fd;
	conn_pid = getpid();
	struct rstmem_hello_request hello = { .min_version = RSTMEM_PROTOCOL_MIN_VERSION, .max_version = RSTMEM_PROTOCOL_VERSION };
	int status, rfd;
	const unsigned char *body;
	size_t body_len;
	err = exchange(RSTMEM_OP_HELLO, &hello, sizeof(hello), NULL, 0, &status, &body, &body_len, &rfd);
	if (err == 0 && (status != 0 || rfd >= 0 || body_len != sizeof(struct rstmem_hello_reply)))
		err = status ? -status : -EPROTO;
	if (rfd >= 0)
		preload_real_close(rfd);
	if (err) {
		disconnect();
		return err;
	}
	struct rstmem_hello_reply facts;
	memcpy(&facts, body, sizeof(facts));
	conn_backend = facts.backend;
	return 0;
}

static int list_locked(struct preload_heaps *heaps)
{
	int status, fd;
	const unsigned char *body;
	size_t len;
	int err = exchange(RSTMEM_OP_LIST_HEAPS, NULL, 0, NULL, 0, &status, &body, &len, &fd);
	if (err)
		return err;
	if (fd >= 0) {
		preload_real_close(fd);
		return -EPROTO;
	}
	if (status)
		return -status;
	struct rstmem_heap_list list;
	if (len < sizeof(list))
		return -EPROTO;
	memcpy(&list, body, sizeof(list));
	if (list.entry_size < sizeof(struct rstmem_heap_info) || (len - sizeof(list)) / list.entry_size < list.count)
		return -EPROTO;
	heaps->count = 0;
	for (uint32_t i = 0; i < list.count; i++) {
		struct rstmem_heap_info info;
		memcpy(&info, body + sizeof(list) + (size_t)i * list.entry_size, sizeof(info));
		/* v4 use cases are TEE_IOC_RSTMEM_ALLOC, not heap nodes (docs/protocol.md §10). */
		if (info.generation == RSTMEM_GENERATION_V4 || heaps->count == PRELOAD_MAX_HEAPS)
			continue;
		if (memchr(info.name, '\0', sizeof(info.name)) == NULL)
			return -EPROTO;
		memcpy(heaps->names[heaps->count++], info.name, sizeof(info.name));
	}
	return 0;
}

int preload_list_heaps(struct preload_heaps *heaps, struct preload_server *server)
{
	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	pthread_mutex_lock(&lock);
	int err = ensure_connected();
	if (err == 0) {
		err = list_locked(heaps);
		server->backend = conn_backend;
		if (err)
			disconnect();
	}
	pthread_mutex_unlock(&lock);
	pthread_setcancelstate(cancel, NULL);
	return err;
}

int preload_heap_ioctl(const char *heap, uint32_t request, void *arg, uint32_t arg_size,
		       struct preload_ioctl_result *out, struct preload_server *server)
{
	struct rstmem_heap_ioctl_request req = { .request = request, .arg_size = arg_size };
	size_t name_len = strlen(heap);
	if (name_len >= sizeof(req.heap))
		return -ENAMETOOLONG;
	memcpy(req.heap, heap, name_len + 1);
	if (arg_size > RSTMEM_HEAP_IOCTL_MAX_ARG)
		return -ENOMEM;
	out->fd = -1;
	out->status = 0;

	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	pthread_mutex_lock(&lock);
	int err = ensure_connected();
	int status = 0, fd = -1;
	const unsigned char *body = NULL;
	size_t len = 0;
	if (err == 0)
		err = exchange(RSTMEM_OP_HEAP_IOCTL, &req, sizeof(req), arg, arg_size, &status, &body, &len, &fd);
	struct rstmem_heap_ioctl_reply reply;
	if (err == 0 && status == 0) {
		memcpy(&reply, body, len < sizeof(reply) ? len : sizeof(reply));
		if (len != sizeof(reply) + arg_size || reply.arg_size != arg_size || reply.error < 0 || reply.error >= 4096 ||
		    (fd >= 0) != (reply.fd_offset != RSTMEM_HEAP_IOCTL_NO_FD) ||
		    (fd >= 0 && (reply.fd_offset > arg_size || arg_size - reply.fd_offset < sizeof(uint32_t))))
			err = -EPROTO;
	}
	if (err == 0 && status == 0) {
		/* Copy the kernel's bytes back; put this process's number in place of the daemon's. */
		memcpy(arg, body + sizeof(reply), arg_size);
		if (fd >= 0) {
			uint32_t number = (uint32_t)fd;
			memcpy((unsigned char *)arg + reply.fd_offset, &number, sizeof(number));
			/* Received close-on-exec (MSG_CMSG_CLOEXEC); the kernel's fd_flags decide. */
			if (!reply.fd_cloexec)
				preload_real_fcntl_int(fd, F_SETFD, 0);
		}
		out->error = reply.error;
		out->result = reply.result;
		out->fd = fd;
		fd = -1;
	}
	out->status = status;
	if (fd >= 0)
		preload_real_close(fd);
	if (err || status == EBADMSG)	/* the daemon drops the connection after EBADMSG */
		disconnect();
	server->backend = conn_backend;
	pthread_mutex_unlock(&lock);
	pthread_setcancelstate(cancel, NULL);
	return err;
}
