/* SPDX-License-Identifier: MIT */
/*
 * librstmem: the client side of docs/protocol.md.
 *
 * A connection is one SOCK_SEQPACKET socket, one mutex and one receive
 * buffer. Every call that talks to the daemon takes the mutex, sends one
 * request, reads one reply and checks it completely (magic, opcode,
 * request_id, lengths, status, descriptor count) before it uses anything in
 * it. Whatever a bad reply carried is closed. After a transport failure or a
 * protocol violation the connection is marked broken: with no reply framing
 * left to trust, later calls fail with -ENOTCONN instead of guessing.
 *
 * Packets are encoded field by field in little-endian at the offsets of the
 * structs in rstmem/protocol.h (offsetof), so the library is correct on any
 * host byte order and the header stays the single source of the layout.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rstmem-private.h"

/* Room for every descriptor one message can carry: SCM_MAX_FD
 * (include/net/scm.h) is the most a sender may attach, so the control data is
 * never truncated and each unexpected descriptor reaches us to be closed. With
 * a smaller buffer the kernel would drop the excess itself, but qemu-user
 * (7.2) receives into a buffer twice the guest's and leaks what does not fit
 * the guest's. MSG_CTRUNC is still checked. */
#define MAX_RECEIVED_FDS	253

#define HEADER_SIZE		sizeof(struct rstmem_header)
#define STATUS_SIZE		sizeof(struct rstmem_status)
#define MAX_REQUEST		(HEADER_SIZE + sizeof(struct rstmem_alloc_request))

_Static_assert(sizeof(struct rstmem_alloc_request) >= sizeof(struct rstmem_hello_request) &&
	       sizeof(struct rstmem_alloc_request) >= sizeof(struct rstmem_free_request),
	       "ALLOC is the largest request");

#define OFF(type, field)	offsetof(struct type, field)
#define FIELD_LEN(type, field)	sizeof(((struct type *)0)->field)

struct rstmem_conn {
	pthread_mutex_t lock;		/* held for each request/reply exchange */
	int fd;				/* the socket, close-on-exec */
	bool broken;			/* no reply framing to trust any more */
	uint16_t version;		/* negotiated by HELLO */
	uint32_t next_request_id;
	struct rstmem_server_info info;
	unsigned char packet[RSTMEM_MAX_PACKET];	/* the last reply */
};

/* ---- debug output -------------------------------------------------------- */

void rstmem_debug(const char *fmt, ...)
{
	const char *setting = secure_getenv("RSTMEM_DEBUG");
	if (setting == NULL || setting[0] == '\0' || strcmp(setting, "0") == 0)
		return;
	int saved_errno = errno;
	va_list ap;
	va_start(ap, fmt);
	flockfile(stderr);
	fputs("librstmem: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
	va_end(ap);
	errno = saved_errno;
}

/* ---- little-endian fields ------------------------------------------------ */

static void put_u16(unsigned char *p, uint16_t v) { v = htole16(v); memcpy(p, &v, sizeof(v)); }
static void put_u32(unsigned char *p, uint32_t v) { v = htole32(v); memcpy(p, &v, sizeof(v)); }
static void put_u64(unsigned char *p, uint64_t v) { v = htole64(v); memcpy(p, &v, sizeof(v)); }
static uint16_t get_u16(const unsigned char *p) { uint16_t v; memcpy(&v, p, sizeof(v)); return le16toh(v); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, sizeof(v)); return le32toh(v); }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, sizeof(v)); return le64toh(v); }

/* Copies a fixed-size wire string; false if it has no NUL (a protocol error). */
static bool get_string(char *dst, const unsigned char *src, size_t len)
{
	if (memchr(src, '\0', len) == NULL)
		return false;
	memcpy(dst, src, len);
	return true;
}

/* ---- one request/reply exchange (conn->lock held) ------------------------ */

static void close_all(const int *fds, size_t count)
{
	for (size_t i = 0; i < count; i++)
		close(fds[i]);	/* never retried: Linux releases the fd even on EINTR */
}

/* The connection can no longer be trusted; @err (negative) is returned. */
static int fail_connection(struct rstmem_conn *conn, int err, const char *what)
{
	conn->broken = true;
	rstmem_debug("%s: %s; connection closed for further requests", what, strerror(-err));
	return err;
}

static int protocol_error(struct rstmem_conn *conn, const int *fds, size_t nfds, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int protocol_error(struct rstmem_conn *conn, const int *fds, size_t nfds, const char *fmt, ...)
{
	char why[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	close_all(fds, nfds);
	conn->broken = true;
	rstmem_debug("malformed reply from rstmemd: %s%s; connection closed for further requests",
		     why, nfds ? " (its descriptors were closed)" : "");
	return -EPROTO;
}

static const char *opcode_name(uint16_t opcode)
{
	switch (opcode) {
	case RSTMEM_OP_HELLO: return "HELLO";
	case RSTMEM_OP_LIST_HEAPS: return "LIST_HEAPS";
	case RSTMEM_OP_ALLOC: return "ALLOC";
	case RSTMEM_OP_FREE: return "FREE";
	case RSTMEM_OP_USAGE: return "USAGE";
	default: return "request";
	}
}

/*
 * Sends @opcode with @payload and reads its reply into conn->packet.
 * Success: returns 0; *body and *body_len is the reply struct after the status;
 * if @want_fd, *fd is the one descriptor it carried (the caller owns it).
 * Failure: a negative errno: the daemon's status (connection kept, except
 * EBADMSG) or a transport/protocol failure (connection broken). Nothing the
 * reply carried is left open.
 */
static int exchange(struct rstmem_conn *conn, uint16_t opcode, const unsigned char *payload,
		    size_t payload_len, bool want_fd, int *fd,
		    const unsigned char **body, size_t *body_len)
{
	if (conn->broken)
		return -ENOTCONN;

	uint32_t request_id = conn->next_request_id++;
	if (conn->next_request_id == 0)
		conn->next_request_id = 1;	/* 0 is what the daemon echoes for a headerless packet */

	/* HELLO carries our highest version, every later request the negotiated one. */
	uint16_t version = opcode == RSTMEM_OP_HELLO ? RSTMEM_PROTOCOL_VERSION : conn->version;
	unsigned char request[MAX_REQUEST];
	put_u32(request + OFF(rstmem_header, magic), RSTMEM_PROTOCOL_MAGIC);
	put_u16(request + OFF(rstmem_header, version), version);
	put_u16(request + OFF(rstmem_header, opcode), opcode);
	put_u32(request + OFF(rstmem_header, request_id), request_id);
	put_u32(request + OFF(rstmem_header, payload_length), (uint32_t)payload_len);
	if (payload_len)
		memcpy(request + HEADER_SIZE, payload, payload_len);

	ssize_t sent;
	do
		sent = send(conn->fd, request, HEADER_SIZE + payload_len, MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	int send_errno = sent < 0 ? errno : 0;
	/* A connection the daemon refused at accept is closed already; its one reply
	 * (opcode RSTMEM_REPLY, request_id 0) may still wait to be read: look for it. */
	if (sent < 0 && send_errno != EPIPE && send_errno != ECONNRESET)
		return fail_connection(conn, -send_errno, "sending a request");
	if (sent >= 0 && (size_t)sent != HEADER_SIZE + payload_len)	/* SOCK_SEQPACKET sends all or nothing */
		return fail_connection(conn, -EIO, "sending a request");

	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * MAX_RECEIVED_FDS)];
	} control;
	struct iovec iov = { .iov_base = conn->packet, .iov_len = sizeof(conn->packet) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	ssize_t n;
	do
		n = recvmsg(conn->fd, &msg, MSG_CMSG_CLOEXEC | (send_errno ? MSG_DONTWAIT : 0));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == ECONNRESET) {
		/* The kernel reports a reset before the packets still queued:
		 * the daemon's refusal may follow it. */
		ssize_t again = recvmsg(conn->fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
		if (again >= 0)
			n = again;
		else
			errno = ECONNRESET;
	}
	if (n < 0)
		return fail_connection(conn, send_errno ? -send_errno : -errno,
				       send_errno ? "sending a request" : "receiving a reply");

	/* Take every descriptor first, so each failure below can close them. */
	int fds[MAX_RECEIVED_FDS];
	size_t nfds = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count && nfds < MAX_RECEIVED_FDS; i++)
			memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}

	if (n == 0) {
		close_all(fds, nfds);
		return fail_connection(conn, send_errno ? -send_errno : -ECONNRESET, "rstmemd closed the connection");
	}
	if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
		return protocol_error(conn, fds, nfds, "%s (msg_flags 0x%x)",
				      msg.msg_flags & MSG_TRUNC ? "reply longer than RSTMEM_MAX_PACKET"
								: "control data truncated (too many descriptors)",
				      (unsigned)msg.msg_flags);

	const unsigned char *p = conn->packet;
	size_t len = (size_t)n;
	if (len < HEADER_SIZE + STATUS_SIZE)
		return protocol_error(conn, fds, nfds, "%zu-byte reply is shorter than header and status", len);
	uint32_t magic = get_u32(p + OFF(rstmem_header, magic));
	uint16_t r_version = get_u16(p + OFF(rstmem_header, version));
	uint16_t r_opcode = get_u16(p + OFF(rstmem_header, opcode));
	uint32_t r_id = get_u32(p + OFF(rstmem_header, request_id));
	uint32_t payload_length = get_u32(p + OFF(rstmem_header, payload_length));
	if (magic != RSTMEM_PROTOCOL_MAGIC)
		return protocol_error(conn, fds, nfds, "bad magic 0x%08x", magic);
	/* The daemon refused this connection (over its per-user connection limit):
	 * one error reply with no request opcode and request_id 0, then the close. */
	bool refused = r_opcode == RSTMEM_REPLY && r_id == 0;
	if (refused && len >= HEADER_SIZE + STATUS_SIZE && payload_length == len - HEADER_SIZE) {
		int32_t refusal = (int32_t)get_u32(p + HEADER_SIZE + OFF(rstmem_status, error));
		uint32_t text_len = get_u32(p + HEADER_SIZE + OFF(rstmem_status, message_length));
		if (refusal > 0 && refusal < 4096 && text_len == len - HEADER_SIZE - STATUS_SIZE && nfds == 0) {
			rstmem_debug("rstmemd refused the connection: %s: %.*s", strerror(refusal),
				     (int)text_len, (const char *)(p + HEADER_SIZE + STATUS_SIZE));
			return fail_connection(conn, -refusal, "rstmemd refused the connection");
		}
	}
	if (r_opcode != (opcode | RSTMEM_REPLY))
		return protocol_error(conn, fds, nfds, "opcode 0x%04x, expected 0x%04x",
				      r_opcode, (unsigned)(opcode | RSTMEM_REPLY));
	if (r_id != request_id)
		return protocol_error(conn, fds, nfds, "request_id %u, expected %u", r_id, request_id);
	if (payload_length != len - HEADER_SIZE)
		return protocol_error(conn, fds, nfds, "payload_length %u in a %zu-byte packet",
				      payload_length, len);
	if (opcode != RSTMEM_OP_HELLO && r_version != conn->version)
		return protocol_error(conn, fds, nfds, "version %u, negotiated %u", r_version, conn->version);

	int32_t error = (int32_t)get_u32(p + HEADER_SIZE + OFF(rstmem_status, error));
	uint32_t message_length = get_u32(p + HEADER_SIZE + OFF(rstmem_status, message_length));
	const unsigned char *rest = p + HEADER_SIZE + STATUS_SIZE;
	size_t rest_len = len - HEADER_SIZE - STATUS_SIZE;

	if (error != 0) {
		if (error < 0 || error >= 4096)
			return protocol_error(conn, fds, nfds, "status %d is not an errno", error);
		if (message_length != rest_len || message_length > RSTMEM_MAX_MESSAGE)
			return protocol_error(conn, fds, nfds, "error message_length %u with %zu bytes following",
					      message_length, rest_len);
		if (nfds)
			return protocol_error(conn, fds, nfds, "error reply carried %zu descriptor(s)", nfds);
		rstmem_debug("rstmemd: %s failed: %s: %.*s", opcode_name(opcode), strerror(error),
			     (int)message_length, (const char *)rest);
		if (error == EBADMSG)	/* the daemon closes the connection after this reply */
			conn->broken = true;
		return -error;
	}
	if (message_length != 0)
		return protocol_error(conn, fds, nfds, "success reply with message_length %u", message_length);
	if (nfds != (want_fd ? 1u : 0u))
		return protocol_error(conn, fds, nfds, "%s reply carried %zu descriptor(s), expected %d",
				      opcode_name(opcode), nfds, want_fd ? 1 : 0);
	if (want_fd)
		*fd = fds[0];
	*body = rest;
	*body_len = rest_len;
	return 0;
}

/* The mutex around an exchange, with cancellation off so a cancelled
 * thread cannot leave it locked. */
static void conn_lock(struct rstmem_conn *conn, int *cancel_state)
{
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, cancel_state);
	pthread_mutex_lock(&conn->lock);
}

static void conn_unlock(struct rstmem_conn *conn, int cancel_state)
{
	pthread_mutex_unlock(&conn->lock);
	pthread_setcancelstate(cancel_state, NULL);
}

/* ---- connect / disconnect ------------------------------------------------ */

/* docs/protocol.md section 2. */
static int resolve_socket_path(const char *socket_path, struct sockaddr_un *addr)
{
	char joined[sizeof(addr->sun_path) + 1];
	const char *path = socket_path;
	if (path == NULL) {
		const char *env = secure_getenv(RSTMEM_SOCKET_ENV);
		if (env != NULL && env[0] != '\0') {
			path = env;
		} else {
			/* A per-user daemon's socket if there is one, else the system service's. */
			const char *runtime = geteuid() == 0 ? NULL : secure_getenv("XDG_RUNTIME_DIR");
			path = RSTMEM_DEFAULT_SOCKET;
			if (runtime != NULL && runtime[0] != '\0') {
				int len = snprintf(joined, sizeof(joined), "%s/rstmemd.sock", runtime);
				if (len > 0 && (size_t)len < sizeof(joined) && access(joined, F_OK) == 0)
					path = joined;
			}
		}
	}
	size_t len = strlen(path);
	if (len == 0)
		return -EINVAL;
	if (len >= sizeof(addr->sun_path)) {
		rstmem_debug("socket path of %zu bytes does not fit sun_path (%zu)", len, sizeof(addr->sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	memcpy(addr->sun_path, path, len + 1);
	return 0;
}

static int hello(struct rstmem_conn *conn)
{
	unsigned char request[sizeof(struct rstmem_hello_request)] = { 0 };
	put_u16(request + OFF(rstmem_hello_request, min_version), RSTMEM_PROTOCOL_MIN_VERSION);
	put_u16(request + OFF(rstmem_hello_request, max_version), RSTMEM_PROTOCOL_VERSION);
	put_u32(request + OFF(rstmem_hello_request, flags), 0);

	const unsigned char *body;
	size_t body_len;
	int ret = exchange(conn, RSTMEM_OP_HELLO, request, sizeof(request), false, NULL, &body, &body_len);
	if (ret < 0)
		return ret;
	if (body_len != sizeof(struct rstmem_hello_reply))
		return protocol_error(conn, NULL, 0, "HELLO reply of %zu bytes, expected %zu",
				      body_len, sizeof(struct rstmem_hello_reply));
	uint16_t version = get_u16(body + OFF(rstmem_hello_reply, version));
	if (version < RSTMEM_PROTOCOL_MIN_VERSION || version > RSTMEM_PROTOCOL_VERSION)
		return protocol_error(conn, NULL, 0, "daemon chose version %u; this library speaks %u..%u",
				      version, RSTMEM_PROTOCOL_MIN_VERSION, RSTMEM_PROTOCOL_VERSION);
	struct rstmem_server_info *info = &conn->info;
	if (!get_string(info->server, body + OFF(rstmem_hello_reply, server), sizeof(info->server)))
		return protocol_error(conn, NULL, 0, "server name without NUL");
	conn->version = version;
	info->version = version;
	info->capabilities = get_u32(body + OFF(rstmem_hello_reply, capabilities));
	info->backend = get_u32(body + OFF(rstmem_hello_reply, backend));
	info->generation = get_u32(body + OFF(rstmem_hello_reply, generation));
	info->page_size = get_u32(body + OFF(rstmem_hello_reply, page_size));
	info->heap_count = get_u32(body + OFF(rstmem_hello_reply, heap_count));
	return 0;
}

RSTMEM_EXPORT int rstmem_connect(const char *socket_path, struct rstmem_conn **out)
{
	if (out == NULL)
		return -EINVAL;
	*out = NULL;

	struct sockaddr_un addr;
	int ret = resolve_socket_path(socket_path, &addr);
	if (ret < 0)
		return ret;

	struct rstmem_conn *conn = calloc(1, sizeof(*conn));
	if (conn == NULL)
		return -ENOMEM;
	ret = pthread_mutex_init(&conn->lock, NULL);
	if (ret != 0) {
		free(conn);
		return -ret;
	}
	conn->next_request_id = 1;
	conn->version = RSTMEM_PROTOCOL_VERSION;

	conn->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (conn->fd < 0) {
		ret = -errno;
		goto fail;
	}
	while (connect(conn->fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
		/* A Unix connect interrupted while waiting for backlog room
		 * leaves the socket unconnected (net/unix/af_unix.c), so retry. */
		if (errno == EINTR)
			continue;
		if (errno == EISCONN)
			break;
		ret = -errno;
		rstmem_debug("connect %s: %s", addr.sun_path, strerror(errno));
		goto fail;
	}

	int cancel_state;
	conn_lock(conn, &cancel_state);
	ret = hello(conn);
	conn_unlock(conn, cancel_state);
	if (ret < 0)
		goto fail;

	*out = conn;
	return 0;

fail:
	rstmem_disconnect(conn);
	return ret;
}

RSTMEM_EXPORT void rstmem_disconnect(struct rstmem_conn *conn)
{
	if (conn == NULL)
		return;
	if (conn->fd >= 0)
		close(conn->fd);
	pthread_mutex_destroy(&conn->lock);
	free(conn);
}

RSTMEM_EXPORT int rstmem_get_server_info(struct rstmem_conn *conn, struct rstmem_server_info *out)
{
	if (conn == NULL || out == NULL)
		return -EINVAL;
	*out = conn->info;	/* written once at connect, before the caller had conn */
	return 0;
}

/* ---- requests ------------------------------------------------------------ */

/* A reply's table of @n entries of @entry_size bytes in @entries_len bytes:
 * entries may grow in a later version (step by entry_size), never shrink. */
static int check_entries(struct rstmem_conn *conn, const char *what, uint32_t n, uint32_t entry_size,
			 size_t min_size, size_t entries_len)
{
	if (entry_size < min_size)
		return protocol_error(conn, NULL, 0, "%s entry_size %u < %zu", what, entry_size, min_size);
	if (entries_len / entry_size != n || entries_len % entry_size != 0)
		return protocol_error(conn, NULL, 0, "%u %s entries of %u bytes in %zu bytes",
				      n, what, entry_size, entries_len);
	return 0;
}

static int list_heaps_locked(struct rstmem_conn *conn, struct rstmem_heap *heaps, size_t capacity,
			     size_t *count)
{
	const unsigned char *body;
	size_t body_len;
	int ret = exchange(conn, RSTMEM_OP_LIST_HEAPS, NULL, 0, false, NULL, &body, &body_len);
	if (ret < 0)
		return ret;
	if (body_len < sizeof(struct rstmem_heap_list))
		return protocol_error(conn, NULL, 0, "LIST_HEAPS reply of %zu bytes", body_len);
	uint32_t n = get_u32(body + OFF(rstmem_heap_list, count));
	uint32_t entry_size = get_u32(body + OFF(rstmem_heap_list, entry_size));
	size_t entries_len = body_len - sizeof(struct rstmem_heap_list);
	ret = check_entries(conn, "heap", n, entry_size, sizeof(struct rstmem_heap_info), entries_len);
	if (ret < 0)
		return ret;

	const unsigned char *entry = body + sizeof(struct rstmem_heap_list);
	for (uint32_t i = 0; i < n; i++, entry += entry_size) {
		struct rstmem_heap heap;
		if (!get_string(heap.name, entry + OFF(rstmem_heap_info, name), sizeof(heap.name)) ||
		    !get_string(heap.use_case, entry + OFF(rstmem_heap_info, use_case), sizeof(heap.use_case)))
			return protocol_error(conn, NULL, 0, "heap entry %u has a name without NUL", i);
		heap.backend = get_u32(entry + OFF(rstmem_heap_info, backend));
		heap.generation = get_u32(entry + OFF(rstmem_heap_info, generation));
		heap.page_size = get_u32(entry + OFF(rstmem_heap_info, page_size));
		heap.flags = get_u32(entry + OFF(rstmem_heap_info, flags));
		heap.total_bytes = get_u64(entry + OFF(rstmem_heap_info, total_bytes));
		heap.free_bytes = get_u64(entry + OFF(rstmem_heap_info, free_bytes));
		heap.max_alloc_bytes = get_u64(entry + OFF(rstmem_heap_info, max_alloc_bytes));
		if (i < capacity)
			heaps[i] = heap;
	}
	*count = n;
	if (n > capacity && capacity > 0)
		return -ERANGE;
	return 0;
}

RSTMEM_EXPORT int rstmem_list_heaps(struct rstmem_conn *conn, struct rstmem_heap *heaps, size_t capacity,
				    size_t *count)
{
	if (conn == NULL || count == NULL || (heaps == NULL && capacity > 0))
		return -EINVAL;
	int cancel_state;
	conn_lock(conn, &cancel_state);
	int ret = list_heaps_locked(conn, heaps, capacity, count);
	conn_unlock(conn, cancel_state);
	return ret;
}

static int alloc_locked(struct rstmem_conn *conn, const unsigned char *request, uint64_t size,
			struct rstmem_buffer *out)
{
	const unsigned char *body;
	size_t body_len;
	int fd = -1;
	int ret = exchange(conn, RSTMEM_OP_ALLOC, request, sizeof(struct rstmem_alloc_request), true, &fd,
			   &body, &body_len);
	if (ret < 0)
		return ret;
	if (body_len != sizeof(struct rstmem_alloc_reply))
		return protocol_error(conn, &fd, 1, "ALLOC reply of %zu bytes, expected %zu",
				      body_len, sizeof(struct rstmem_alloc_reply));
	uint64_t actual = get_u64(body + OFF(rstmem_alloc_reply, size));
	if (actual < size)
		return protocol_error(conn, &fd, 1, "buffer of %llu bytes for %llu asked",
				      (unsigned long long)actual, (unsigned long long)size);
	if (!get_string(out->heap, body + OFF(rstmem_alloc_reply, heap), sizeof(out->heap)))
		return protocol_error(conn, &fd, 1, "heap name without NUL");
	out->id = get_u64(body + OFF(rstmem_alloc_reply, buffer_id));
	out->size = actual;
	out->fd = fd;
	return fd;
}

RSTMEM_EXPORT int rstmem_alloc(struct rstmem_conn *conn, const char *use_case_or_heap, uint64_t size,
			       uint32_t flags, const char *name, struct rstmem_buffer *out)
{
	if (out != NULL) {
		memset(out, 0, sizeof(*out));
		out->fd = -1;
	}
	if (conn == NULL || use_case_or_heap == NULL || out == NULL)
		return -EINVAL;
	if (name == NULL)
		name = "";
	/* Strings must fit with their NUL; the rest (empty target, size,
	 * flags) is the daemon's to judge, so there is one policy. */
	size_t target_len = strlen(use_case_or_heap);
	size_t name_len = strlen(name);
	if (target_len >= FIELD_LEN(rstmem_alloc_request, target)) {
		rstmem_debug("ALLOC target of %zu bytes: at most %zu", target_len,
			     FIELD_LEN(rstmem_alloc_request, target) - 1);
		return -ENAMETOOLONG;
	}
	if (name_len >= FIELD_LEN(rstmem_alloc_request, name)) {
		rstmem_debug("buffer name of %zu bytes: at most %zu", name_len,
			     FIELD_LEN(rstmem_alloc_request, name) - 1);
		return -ENAMETOOLONG;
	}

	unsigned char request[sizeof(struct rstmem_alloc_request)] = { 0 };	/* NUL padding, reserved 0 */
	memcpy(request + OFF(rstmem_alloc_request, target), use_case_or_heap, target_len);
	put_u64(request + OFF(rstmem_alloc_request, size), size);
	put_u32(request + OFF(rstmem_alloc_request, flags), flags);
	memcpy(request + OFF(rstmem_alloc_request, name), name, name_len);

	int cancel_state;
	conn_lock(conn, &cancel_state);
	int ret = alloc_locked(conn, request, size, out);
	conn_unlock(conn, cancel_state);
	return ret;
}

static int get_usage_locked(struct rstmem_conn *conn, uint32_t uid, struct rstmem_user_usage *out,
			    struct rstmem_user_heap *heaps, size_t capacity, size_t *count)
{
	unsigned char request[sizeof(struct rstmem_usage_request)];
	put_u32(request + OFF(rstmem_usage_request, uid), uid == RSTMEM_NO_UID ? 0 : uid);
	put_u32(request + OFF(rstmem_usage_request, flags), uid == RSTMEM_NO_UID ? 0 : RSTMEM_USAGE_OF_UID);

	const unsigned char *body;
	size_t body_len;
	int ret = exchange(conn, RSTMEM_OP_USAGE, request, sizeof(request), false, NULL, &body, &body_len);
	if (ret < 0)
		return ret;
	if (body_len < sizeof(struct rstmem_usage_reply))
		return protocol_error(conn, NULL, 0, "USAGE reply of %zu bytes", body_len);
	uint32_t n = get_u32(body + OFF(rstmem_usage_reply, count));
	uint32_t entry_size = get_u32(body + OFF(rstmem_usage_reply, entry_size));
	size_t entries_len = body_len - sizeof(struct rstmem_usage_reply);
	ret = check_entries(conn, "usage", n, entry_size, sizeof(struct rstmem_heap_usage), entries_len);
	if (ret < 0)
		return ret;

	const unsigned char *entry = body + sizeof(struct rstmem_usage_reply);
	for (uint32_t i = 0; i < n; i++, entry += entry_size) {
		struct rstmem_user_heap heap;
		if (!get_string(heap.name, entry + OFF(rstmem_heap_usage, name), sizeof(heap.name)))
			return protocol_error(conn, NULL, 0, "usage entry %u has a name without NUL", i);
		heap.buffers = get_u64(entry + OFF(rstmem_heap_usage, buffers));
		heap.bytes = get_u64(entry + OFF(rstmem_heap_usage, bytes));
		heap.share_bytes = get_u64(entry + OFF(rstmem_heap_usage, share_bytes));
		heap.allocations = get_u64(entry + OFF(rstmem_heap_usage, allocations));
		heap.failures = get_u64(entry + OFF(rstmem_heap_usage, failures));
		heap.flags = get_u32(entry + OFF(rstmem_heap_usage, flags));
		if (i < capacity)
			heaps[i] = heap;
	}
	out->uid = get_u32(body + OFF(rstmem_usage_reply, uid));
	out->flags = get_u32(body + OFF(rstmem_usage_reply, flags));
	out->next_uid = get_u32(body + OFF(rstmem_usage_reply, next_uid));
	out->connections = get_u32(body + OFF(rstmem_usage_reply, connections));
	out->buffers = get_u64(body + OFF(rstmem_usage_reply, buffers));
	out->bytes = get_u64(body + OFF(rstmem_usage_reply, bytes));
	out->max_connections = get_u32(body + OFF(rstmem_usage_reply, max_connections));
	out->max_buffers = get_u32(body + OFF(rstmem_usage_reply, max_buffers));
	out->max_bytes = get_u64(body + OFF(rstmem_usage_reply, max_bytes));
	*count = n;
	if (n > capacity && capacity > 0)
		return -ERANGE;
	return 0;
}

RSTMEM_EXPORT int rstmem_get_usage(struct rstmem_conn *conn, uint32_t uid, struct rstmem_user_usage *out,
				   struct rstmem_user_heap *heaps, size_t capacity, size_t *count)
{
	if (conn == NULL || out == NULL || count == NULL || (heaps == NULL && capacity > 0))
		return -EINVAL;
	if (conn->version < 2) {	/* negotiated at connect; USAGE is version 2 */
		rstmem_debug("USAGE needs protocol version 2; the daemon speaks %u", (unsigned)conn->version);
		return -ENOSYS;
	}
	int cancel_state;
	conn_lock(conn, &cancel_state);
	int ret = get_usage_locked(conn, uid, out, heaps, capacity, count);
	conn_unlock(conn, cancel_state);
	return ret;
}

RSTMEM_EXPORT int rstmem_free(struct rstmem_conn *conn, uint64_t id)
{
	if (conn == NULL)
		return -EINVAL;
	unsigned char request[sizeof(struct rstmem_free_request)];
	put_u64(request + OFF(rstmem_free_request, buffer_id), id);

	const unsigned char *body;
	size_t body_len;
	int cancel_state;
	conn_lock(conn, &cancel_state);
	int ret = exchange(conn, RSTMEM_OP_FREE, request, sizeof(request), false, NULL, &body, &body_len);
	if (ret == 0 && body_len != sizeof(struct rstmem_free_reply))
		ret = protocol_error(conn, NULL, 0, "FREE reply of %zu bytes, expected %zu",
				     body_len, sizeof(struct rstmem_free_reply));
	conn_unlock(conn, cancel_state);
	return ret;
}
