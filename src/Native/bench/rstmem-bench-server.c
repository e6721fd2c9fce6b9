/* SPDX-License-Identifier: MIT */
/*
 * rstmem-bench-server: the C baseline for the rstmemd benchmark. A
 * single-threaded epoll server on the AF_UNIX SOCK_SEQPACKET socket at argv[1]
 * that speaks just enough of protocol.h for rstmem-bench-client: HELLO, and
 * ALLOC answered with a sealed memfd of the page-rounded size (the minimum
 * work the daemon does per buffer). Other opcodes get ENOSYS; a malformed
 * packet closes its connection. It prints "ready" once listening and exits on
 * SIGTERM or SIGINT, removing the socket file.
 *
 * With --watch-releases it also learns each buffer's release the way rstmemd
 * does on the model and on Linux 6.1 (src/Interop/Kernel/ReleaseWatcher.cs):
 * an inotify watch for IN_DELETE_SELF on /proc/self/fd/N before the buffer
 * is sent, and the events read when the inotify descriptor is readable. It
 * counts the releases and prints "released N of M" on exit, so the
 * benchmark measures what that watch alone costs.
 *
 * With --lock-releases it learns each release without fsnotify: before the
 * buffer is sent it takes an open-file-description read lock on the file it
 * sends (F_OFD_SETLK; the kernel drops it when that description is released,
 * fs/locks.c locks_remove_file from __fput) and keeps a second description
 * of its own (open of /proc/self/fd/N). Every SWEEP_MS while buffers are
 * held it asks of each, with F_OFD_GETLK for a write lock, whether the sent
 * description's lock is still there: F_UNLCK means the description is gone
 * (the buffer released), and its own is closed. That is the release of a
 * dma-buf, which cannot be reopened; a memfd reopened through /proc by its
 * holder would get a description without the lock. It prints "released N of
 * M" as --watch-releases does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rstmem/protocol.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "protocol.h is little-endian; this server uses host order");

#define SERVER_NAME	"rstmem-bench-server"
#define MAX_EVENTS	64
#define MAX_FDS_IN	16	/* descriptors a client may (wrongly) send per packet */

struct conn {
	int fd;
	struct conn *prev, *next;
};

static struct conn *conns;
static uint64_t next_buffer_id = 1;
static uint32_t page_size;
static int inotify_fd = -1;	/* --watch-releases */
static uint64_t watched, released;

#define SWEEP_MS	5
static int lock_releases;	/* --lock-releases */
static int *held;		/* --lock-releases: this server's description of each buffer not yet seen released */
static size_t held_count, held_capacity;
static struct timespec last_sweep;

static void conn_close(struct conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);	/* also removes it from the epoll set */
	free(c);
}

/* Sends one reply packet, with fd attached when fd >= 0. */
static int send_packet(int sock, const void *buf, size_t len, int fd)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (fd >= 0) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(fd));
	}
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		/* EAGAIN: the client is not reading; EPIPE etc.: it is gone. */
		if (errno != EAGAIN && errno != EPIPE && errno != ECONNRESET)
			perror("rstmem-bench-server: sendmsg");
		return -1;
	}
	return (size_t)n == len ? 0 : -1;
}

/*
 * A reply carries the version of its request's header: the one negotiated by
 * HELLO (the client sends nothing else before it), as rstmemd answers.
 */
static void put_header(char *buf, const struct rstmem_header *req, uint16_t version, uint32_t payload_length)
{
	struct rstmem_header h = {
		.magic = RSTMEM_PROTOCOL_MAGIC,
		.version = version,
		.opcode = req->opcode | RSTMEM_REPLY,
		.request_id = req->request_id,
		.payload_length = payload_length,
	};
	memcpy(buf, &h, sizeof(h));
}

static int send_error(int sock, const struct rstmem_header *req, int error, const char *text)
{
	char buf[sizeof(struct rstmem_header) + sizeof(struct rstmem_status) + RSTMEM_MAX_MESSAGE];
	size_t len = strlen(text);
	if (len > RSTMEM_MAX_MESSAGE)
		len = RSTMEM_MAX_MESSAGE;
	struct rstmem_status status = { .error = error, .message_length = len };
	size_t off = sizeof(struct rstmem_header);

	memcpy(buf + off, &status, sizeof(status));
	off += sizeof(status);
	memcpy(buf + off, text, len);
	off += len;
	put_header(buf, req, req->version, off - sizeof(struct rstmem_header));
	return send_packet(sock, buf, off, -1);
}

static int handle_hello(int sock, const struct rstmem_header *req, const char *payload)
{
	struct rstmem_hello_request hello;
	memcpy(&hello, payload, sizeof(hello));
	/* As rstmemd (docs/protocol.md, HELLO): the highest version both speak. */
	uint16_t chosen = hello.max_version < RSTMEM_PROTOCOL_VERSION ? hello.max_version : RSTMEM_PROTOCOL_VERSION;
	if (hello.min_version > hello.max_version || chosen < hello.min_version || chosen < RSTMEM_PROTOCOL_MIN_VERSION) {
		char why[RSTMEM_MAX_MESSAGE];
		snprintf(why, sizeof(why), "no common version: client speaks %u..%u, server %u..%u",
			 hello.min_version, hello.max_version, RSTMEM_PROTOCOL_MIN_VERSION, RSTMEM_PROTOCOL_VERSION);
		return send_error(sock, req, EPROTONOSUPPORT, why);
	}

	char buf[sizeof(struct rstmem_header) + sizeof(struct rstmem_status) +
		 sizeof(struct rstmem_hello_reply)];
	struct rstmem_status status = { 0, 0 };
	struct rstmem_hello_reply reply = {
		.version = chosen,
		.backend = RSTMEM_BACKEND_MODEL,
		.generation = RSTMEM_GENERATION_NONE,
		.page_size = page_size,
	};
	strcpy(reply.server, SERVER_NAME);
	size_t off = sizeof(struct rstmem_header);
	memcpy(buf + off, &status, sizeof(status));
	off += sizeof(status);
	memcpy(buf + off, &reply, sizeof(reply));
	off += sizeof(reply);
	put_header(buf, req, chosen, off - sizeof(struct rstmem_header));
	return send_packet(sock, buf, off, -1);
}

/* --lock-releases: locks the description about to be sent and keeps one of this server's own; 0 or an errno. */
static int hold_until_released(int fd)
{
	if (held_count == held_capacity) {
		size_t capacity = held_capacity ? held_capacity * 2 : 1024;
		int *grown = realloc(held, capacity * sizeof(*held));
		if (!grown)
			return ENOMEM;
		held = grown;
		held_capacity = capacity;
	}
	struct flock lock = { .l_type = F_RDLCK, .l_whence = SEEK_SET };	/* the whole file */
	if (fcntl(fd, F_OFD_SETLK, &lock) < 0)
		return errno;
	char path[32];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int own = open(path, O_RDONLY | O_CLOEXEC);
	if (own < 0)
		return errno;
	held[held_count++] = own;
	watched++;
	return 0;
}

/* --lock-releases: closes this server's description of each buffer whose sent description is gone. */
static void sweep_releases(void)
{
	size_t kept = 0;
	for (size_t i = 0; i < held_count; i++) {
		struct flock probe = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		if (fcntl(held[i], F_OFD_GETLK, &probe) == 0 && probe.l_type == F_UNLCK) {
			close(held[i]);
			released++;
		} else {
			held[kept++] = held[i];
		}
	}
	held_count = kept;
	clock_gettime(CLOCK_MONOTONIC, &last_sweep);
}

/* --lock-releases: milliseconds until the next sweep is due (0: now), -1 when nothing is held. */
static int until_sweep(void)
{
	if (held_count == 0)
		return -1;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	long elapsed = (now.tv_sec - last_sweep.tv_sec) * 1000 + (now.tv_nsec - last_sweep.tv_nsec) / 1000000;
	return elapsed >= SWEEP_MS ? 0 : (int)(SWEEP_MS - elapsed);
}

static int handle_alloc(int sock, const struct rstmem_header *req, const char *payload)
{
	struct rstmem_alloc_request alloc;
	memcpy(&alloc, payload, sizeof(alloc));
	if (alloc.size == 0 || alloc.size > (uint64_t)INT64_MAX - page_size)
		return send_error(sock, req, EINVAL, "bad size");
	uint64_t size = (alloc.size + page_size - 1) / page_size * page_size;
	alloc.name[RSTMEM_BUFFER_NAME_LEN - 1] = '\0';

	int fd = memfd_create(alloc.name[0] ? alloc.name : "rstmem-bench",
			      MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		int err = errno;
		return send_error(sock, req, err, "memfd_create failed");
	}
	if (ftruncate(fd, (off_t)size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		int err = errno;
		close(fd);
		return send_error(sock, req, err, "ftruncate or F_ADD_SEALS failed");
	}
	if (lock_releases) {
		int err = hold_until_released(fd);
		if (err) {
			close(fd);
			return send_error(sock, req, err, "locking or reopening the buffer failed");
		}
	}
	if (inotify_fd >= 0) {
		char path[32];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (inotify_add_watch(inotify_fd, path, IN_DELETE_SELF) < 0) {
			int err = errno;
			close(fd);
			return send_error(sock, req, err, "inotify_add_watch failed");
		}
		watched++;
	}

	char buf[sizeof(struct rstmem_header) + sizeof(struct rstmem_status) +
		 sizeof(struct rstmem_alloc_reply)];
	struct rstmem_status status = { 0, 0 };
	struct rstmem_alloc_reply reply = {
		.buffer_id = next_buffer_id++,
		.size = size,
		.heap = "memfd",
	};
	size_t off = sizeof(struct rstmem_header);
	memcpy(buf + off, &status, sizeof(status));
	off += sizeof(status);
	memcpy(buf + off, &reply, sizeof(reply));
	off += sizeof(reply);
	put_header(buf, req, req->version, off - sizeof(struct rstmem_header));
	int ret = send_packet(sock, buf, off, fd);
	close(fd);
	return ret;
}

/* Handles one packet; -1 drops the client (EOF, malformed packet, send failure). */
static int handle_packet(int sock)
{
	char buf[RSTMEM_MAX_PACKET];
	union {
		char buf[CMSG_SPACE(MAX_FDS_IN * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	ssize_t n;

	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	} while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EAGAIN)
		return 1;	/* nothing more for now */
	if (n < 0) {
		if (errno != ECONNRESET)
			perror("rstmem-bench-server: recvmsg");
		return -1;
	}

	/* No request carries descriptors: close whatever came. */
	for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(cmsg) + i * sizeof(int), sizeof(fd));
			close(fd);
		}
	}

	if (n == 0)
		return -1;	/* end of file */
	struct rstmem_header req;
	if ((size_t)n < sizeof(req) || (msg.msg_flags & MSG_TRUNC))
		return -1;
	memcpy(&req, buf, sizeof(req));
	if (req.magic != RSTMEM_PROTOCOL_MAGIC || req.payload_length != n - sizeof(req) ||
	    (req.opcode & RSTMEM_REPLY))
		return -1;

	const char *payload = buf + sizeof(req);
	switch (req.opcode) {
	case RSTMEM_OP_HELLO:
		if (req.payload_length != sizeof(struct rstmem_hello_request))
			return -1;
		return handle_hello(sock, &req, payload);
	case RSTMEM_OP_ALLOC:
		if (req.payload_length != sizeof(struct rstmem_alloc_request))
			return -1;
		return handle_alloc(sock, &req, payload);
	default:
		return send_error(sock, &req, ENOSYS, "not implemented by " SERVER_NAME);
	}
}

/* Adds fd to the epoll set for EPOLLIN, with ptr as its data; -1 (said on stderr) on failure. */
static int add_readable(int epfd, int fd, void *ptr)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = ptr };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("rstmem-bench-server: epoll_ctl");
		return -1;
	}
	return 0;
}

static void accept_clients(int epfd, int lsock)
{
	for (;;) {
		int fd = accept4(lsock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				perror("rstmem-bench-server: accept4");
			return;
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (!c) {
			perror("rstmem-bench-server: calloc");
			close(fd);
			continue;
		}
		c->fd = fd;
		if (add_readable(epfd, fd, c) < 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
	}
}

/* --watch-releases: reads the events there are; IN_IGNORED ends a watch (its inode is gone). */
static void read_releases(void)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	for (;;) {
		ssize_t n = read(inotify_fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;	/* EAGAIN: nothing more */
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *e = (const struct inotify_event *)p;
			if (e->mask & IN_IGNORED)
				released++;
			p += sizeof(*e) + e->len;
		}
	}
}

static int listen_on(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "rstmem-bench-server: socket path too long: %s\n", path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	if (unlink(path) < 0 && errno != ENOENT) {
		fprintf(stderr, "rstmem-bench-server: unlink %s: %s\n", path, strerror(errno));
		return -1;
	}
	int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sock < 0) {
		perror("rstmem-bench-server: socket");
		return -1;
	}
	if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "rstmem-bench-server: bind %s: %s\n", path, strerror(errno));
		close(sock);
		return -1;
	}
	if (listen(sock, SOMAXCONN) < 0) {
		perror("rstmem-bench-server: listen");
		close(sock);
		unlink(path);
		return -1;
	}
	return sock;
}

int main(int argc, char **argv)
{
	int watch_releases = argc == 3 && strcmp(argv[1], "--watch-releases") == 0;
	lock_releases = argc == 3 && strcmp(argv[1], "--lock-releases") == 0;
	int option = watch_releases || lock_releases;
	/* A lone option is not taken for the socket's path. */
	if (argc != 2 + option || argv[argc - 1][0] == '-') {
		fprintf(stderr, "usage: %s [--watch-releases | --lock-releases] SOCKET_PATH\n", argv[0]);
		return 2;
	}
	const char *path = argv[1 + option];
	long ps = sysconf(_SC_PAGESIZE);
	if (ps <= 0) {
		perror("rstmem-bench-server: sysconf");
		return 1;
	}
	page_size = (uint32_t)ps;

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
		perror("rstmem-bench-server: sigprocmask");
		return 1;
	}
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		perror("rstmem-bench-server: signalfd");
		return 1;
	}
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0) {
		perror("rstmem-bench-server: epoll_create1");
		close(sfd);
		return 1;
	}
	int lsock = listen_on(path);
	if (lsock < 0) {
		close(epfd);
		close(sfd);
		return 1;
	}

	/* data.ptr NULL marks the signalfd, &lsock the listening socket, &inotify_fd the watch. */
	int status = 1;
	if (watch_releases) {
		inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (inotify_fd < 0) {
			perror("rstmem-bench-server: inotify_init1");
			goto out;
		}
		if (add_readable(epfd, inotify_fd, &inotify_fd) < 0)
			goto out;
	}
	if (add_readable(epfd, sfd, NULL) < 0 || add_readable(epfd, lsock, &lsock) < 0)
		goto out;
	if (printf("ready\n") < 0 || fflush(stdout) == EOF) {
		perror("rstmem-bench-server: stdout");
		goto out;
	}

	for (;;) {
		struct epoll_event events[MAX_EVENTS];
		int timeout = lock_releases ? until_sweep() : -1;
		if (timeout == 0) {
			sweep_releases();
			timeout = until_sweep();
		}
		int n = epoll_wait(epfd, events, MAX_EVENTS, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("rstmem-bench-server: epoll_wait");
			goto out;
		}
		for (int i = 0; i < n; i++) {
			void *ptr = events[i].data.ptr;
			if (!ptr) {
				status = 0;	/* SIGTERM or SIGINT */
				goto out;
			}
			if (ptr == &lsock) {
				accept_clients(epfd, lsock);
				continue;
			}
			if (ptr == &inotify_fd) {
				read_releases();
				continue;
			}
			/*
			 * Level-triggered: serve a few packets, then let the
			 * other clients have a turn.
			 */
			struct conn *c = ptr;
			int ret = 0;
			for (int k = 0; k < 8 && ret == 0; k++)
				ret = handle_packet(c->fd);
			if (ret < 0)
				conn_close(c);
		}
	}

out:
	while (conns)
		conn_close(conns);
	if (inotify_fd >= 0) {
		read_releases();
		printf("released %llu of %llu\n", (unsigned long long)released, (unsigned long long)watched);
		close(inotify_fd);
	}
	if (lock_releases) {
		sweep_releases();
		printf("released %llu of %llu\n", (unsigned long long)released, (unsigned long long)watched);
		for (size_t i = 0; i < held_count; i++)
			close(held[i]);
		free(held);
	}
	close(lsock);
	if (unlink(path) < 0 && errno != ENOENT)
		fprintf(stderr, "rstmem-bench-server: unlink %s: %s\n", path, strerror(errno));
	close(epfd);
	close(sfd);
	return status;
}
