/* SPDX-License-Identifier: MIT */
/*
 * rstmem-bench-client: ALLOC load generator for rstmemd and for the C
 * baseline rstmem-bench-server.
 *
 *   rstmem-bench-client --socket PATH --clients N --size BYTES --seconds T
 *                       [--target NAME] [--min-round-trips M]
 *
 * N threads each connect, say HELLO, then send ALLOC requests one at a time
 * until T seconds have passed (and, with --min-round-trips, until each has
 * counted at least M round trips after its warm-up, however long that takes:
 * for tests, which must not depend on how fast the machine is), checking
 * every reply and closing the
 * descriptor it carries. A round trip is timed from just before the send to
 * just after the reply (and its descriptor) is in hand; the first WARMUP
 * round trips of each thread are not counted. The result is one line of JSON
 * on stdout; the exit status is 1 if any request failed or none completed.
 *
 * Latencies are kept exactly (one uint32_t of nanoseconds per round trip) and
 * sorted at the end, so the percentiles are exact (nearest rank).
 * throughput_per_s is the sum of the threads' own rates (each thread's counted
 * round trips over its own counted time); seconds is the wall-clock span from
 * the first thread's end of warm-up to the last thread's end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "rstmem/protocol.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "protocol.h is little-endian; this client uses host order");

#define WARMUP		200
#define RECV_TIMEOUT_S	10	/* a server that stops answering is an error, not a hang */
#define MAX_FDS_IN	4	/* room to notice a reply with more than one descriptor */

struct worker {
	pthread_t thread;
	int index;
	uint32_t *lat;		/* ns per counted round trip */
	size_t count, cap;
	uint64_t warm_ns, end_ns;	/* start and end of the counted part */
	bool failed;
};

static const char *socket_path;
static const char *target = "secure-video";
static uint64_t alloc_size;
static double seconds;
/* Counted round trips each client makes at least, however long they take (0: none). */
static unsigned long min_round_trips;

static pthread_barrier_t ready_barrier, go_barrier;
static uint64_t deadline_ns;	/* written before go_barrier, read after it */
static pthread_mutex_t stderr_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);	/* cannot fail for CLOCK_MONOTONIC */
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fail(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&stderr_lock);
	fprintf(stderr, "rstmem-bench-client: client %d: ", w->index);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&stderr_lock);
	va_end(ap);
	w->failed = true;
}

static int connect_socket(struct worker *w)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, socket_path);	/* length checked in main */
	int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		fail(w, "socket: %s", strerror(errno));
		return -1;
	}
	struct timeval tv = { .tv_sec = RECV_TIMEOUT_S };
	if (setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
		fail(w, "SO_RCVTIMEO: %s", strerror(errno));
		close(sock);
		return -1;
	}
	int ret;
	do {
		ret = connect(sock, (struct sockaddr *)&addr, sizeof(addr));
	} while (ret < 0 && errno == EINTR);
	if (ret < 0) {
		fail(w, "connect %s: %s", socket_path, strerror(errno));
		close(sock);
		return -1;
	}
	return sock;
}

static int send_request(struct worker *w, int sock, uint16_t version, uint16_t opcode,
			uint32_t request_id, const void *payload, uint32_t payload_length)
{
	char buf[sizeof(struct rstmem_header) + sizeof(struct rstmem_alloc_request)];
	struct rstmem_header h = {
		.magic = RSTMEM_PROTOCOL_MAGIC,
		.version = version,
		.opcode = opcode,
		.request_id = request_id,
		.payload_length = payload_length,
	};
	size_t len = sizeof(h) + payload_length;
	memcpy(buf, &h, sizeof(h));
	memcpy(buf + sizeof(h), payload, payload_length);
	ssize_t n;
	do {
		n = send(sock, buf, len, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0) {
		fail(w, "send: %s", strerror(errno));
		return -1;
	}
	if ((size_t)n != len) {
		fail(w, "short send: %zd of %zu bytes", n, len);
		return -1;
	}
	return 0;
}

/*
 * Receives one reply into buf and checks its header and status against the
 * request. Every descriptor that came is stored in fds (up to MAX_FDS_IN) and
 * counted in *nfds; the caller closes them. Returns the payload length after
 * the status, or -1.
 */
static ssize_t recv_reply(struct worker *w, int sock, uint16_t opcode, uint32_t request_id,
			  char *buf, int *fds, int *nfds, uint64_t *t_done)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS_IN * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = buf, .iov_len = RSTMEM_MAX_PACKET };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	ssize_t n;

	*nfds = 0;
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (t_done)
		*t_done = now_ns();
	if (n < 0) {
		fail(w, "recvmsg: %s", errno == EAGAIN ? "no reply in time" : strerror(errno));
		return -1;
	}
	for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count && *nfds < MAX_FDS_IN; i++)
			memcpy(&fds[(*nfds)++], CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
	}
	if (n == 0) {
		fail(w, "server closed the connection");
		return -1;
	}
	if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
		fail(w, "reply truncated (msg_flags 0x%x)", msg.msg_flags);
		return -1;
	}

	struct rstmem_header h;
	struct rstmem_status status;
	if ((size_t)n < sizeof(h) + sizeof(status)) {
		fail(w, "reply of %zd bytes is too short", n);
		return -1;
	}
	memcpy(&h, buf, sizeof(h));
	memcpy(&status, buf + sizeof(h), sizeof(status));
	if (h.magic != RSTMEM_PROTOCOL_MAGIC) {
		fail(w, "bad magic 0x%08" PRIx32, h.magic);
		return -1;
	}
	if (h.opcode != (opcode | RSTMEM_REPLY)) {
		fail(w, "reply opcode 0x%04x, expected 0x%04x", h.opcode, opcode | RSTMEM_REPLY);
		return -1;
	}
	if (h.request_id != request_id) {
		fail(w, "reply request_id %" PRIu32 ", expected %" PRIu32, h.request_id, request_id);
		return -1;
	}
	if (h.payload_length != n - sizeof(h)) {
		fail(w, "payload_length %" PRIu32 " but %zu bytes came",
		     h.payload_length, n - sizeof(h));
		return -1;
	}
	if (status.error != 0) {
		size_t len = n - sizeof(h) - sizeof(status);
		if (len > status.message_length)
			len = status.message_length;
		fail(w, "server error %" PRId32 " (%s): %.*s", status.error,
		     strerror(status.error), (int)len, buf + sizeof(h) + sizeof(status));
		return -1;
	}
	return n - sizeof(h) - sizeof(status);
}

static void close_fds(const int *fds, int nfds)
{
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

static int hello(struct worker *w, int sock, uint16_t *version)
{
	struct rstmem_hello_request req = { .min_version = 1, .max_version = 1 };
	char buf[RSTMEM_MAX_PACKET];
	int fds[MAX_FDS_IN], nfds;

	if (send_request(w, sock, RSTMEM_PROTOCOL_VERSION, RSTMEM_OP_HELLO, 1, &req, sizeof(req)))
		return -1;
	ssize_t len = recv_reply(w, sock, RSTMEM_OP_HELLO, 1, buf, fds, &nfds, NULL);
	close_fds(fds, nfds);
	if (len < 0)
		return -1;
	if (nfds != 0) {
		fail(w, "HELLO reply carried %d descriptors", nfds);
		return -1;
	}
	if ((size_t)len < sizeof(struct rstmem_hello_reply)) {
		fail(w, "HELLO reply of %zd bytes is too short", len);
		return -1;
	}
	struct rstmem_hello_reply reply;
	memcpy(&reply, buf + sizeof(struct rstmem_header) + sizeof(struct rstmem_status),
	       sizeof(reply));
	if (reply.version != 1) {
		fail(w, "server negotiated version %u", reply.version);
		return -1;
	}
	*version = reply.version;
	return 0;
}

static int record(struct worker *w, uint64_t ns)
{
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 65536;
		uint32_t *lat = realloc(w->lat, cap * sizeof(*lat));
		if (!lat) {
			fail(w, "out of memory for %zu latencies", cap);
			return -1;
		}
		w->lat = lat;
		w->cap = cap;
	}
	w->lat[w->count++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
	return 0;
}

static void run(struct worker *w, int sock, uint16_t version)
{
	struct rstmem_alloc_request req = { .size = alloc_size, .flags = 0 };
	char buf[RSTMEM_MAX_PACKET];
	int fds[MAX_FDS_IN], nfds;
	uint32_t request_id = 1;
	uint64_t done = 0;

	strcpy(req.target, target);	/* length checked in main */
	w->warm_ns = now_ns();
	for (;;) {
		uint64_t t0 = now_ns(), t1;
		if (send_request(w, sock, version, RSTMEM_OP_ALLOC, ++request_id, &req, sizeof(req)))
			return;
		ssize_t len = recv_reply(w, sock, RSTMEM_OP_ALLOC, request_id, buf, fds, &nfds, &t1);
		close_fds(fds, nfds);
		if (len < 0)
			return;
		if (nfds != 1) {
			fail(w, "ALLOC reply carried %d descriptors, expected 1", nfds);
			return;
		}
		if ((size_t)len < sizeof(struct rstmem_alloc_reply)) {
			fail(w, "ALLOC reply of %zd bytes is too short", len);
			return;
		}
		struct rstmem_alloc_reply reply;
		memcpy(&reply, buf + sizeof(struct rstmem_header) + sizeof(struct rstmem_status),
		       sizeof(reply));
		if (reply.size < alloc_size) {
			fail(w, "ALLOC reply size %" PRIu64 " < requested %" PRIu64,
			     reply.size, alloc_size);
			return;
		}

		if (++done == WARMUP)
			w->warm_ns = t1;
		else if (done > WARMUP && record(w, t1 - t0))
			return;
		w->end_ns = t1;
		if (t1 >= deadline_ns && done >= WARMUP + min_round_trips)
			return;
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	uint16_t version = 0;
	int sock = connect_socket(w);
	if (sock >= 0 && hello(w, sock, &version) < 0) {
		close(sock);
		sock = -1;
	}
	/* Everyone meets both barriers, so a failed client cannot hang the rest. */
	pthread_barrier_wait(&ready_barrier);
	pthread_barrier_wait(&go_barrier);
	if (sock >= 0) {
		run(w, sock, version);
		close(sock);
	}
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values, in microseconds. */
static double percentile_us(const uint32_t *sorted, size_t n, unsigned int percent)
{
	size_t rank = (n * percent + 99) / 100;	/* ceil(n * percent / 100), n > 0 */
	return sorted[(rank ? rank : 1) - 1] / 1000.0;
}

static void usage(const char *argv0)
{
	fprintf(stderr, "usage: %s --socket PATH --clients N --size BYTES --seconds T [--target NAME] [--min-round-trips M]\n",
		argv0);
}

static int parse_args(int argc, char **argv, long *clients)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "clients", required_argument, NULL, 'c' },
		{ "size", required_argument, NULL, 'z' },
		{ "seconds", required_argument, NULL, 't' },
		{ "target", required_argument, NULL, 'T' },
		{ "min-round-trips", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;
	char *end;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		errno = 0;
		switch (opt) {
		case 's':
			socket_path = optarg;
			break;
		case 'c':
			*clients = strtol(optarg, &end, 10);
			if (errno || *end || *clients < 1 || *clients > 4096) {
				fprintf(stderr, "rstmem-bench-client: bad --clients %s\n", optarg);
				return -1;
			}
			break;
		case 'z':
			alloc_size = strtoull(optarg, &end, 0);
			if (errno || *end || optarg[0] == '-' || alloc_size == 0) {
				fprintf(stderr, "rstmem-bench-client: bad --size %s\n", optarg);
				return -1;
			}
			break;
		case 't':
			seconds = strtod(optarg, &end);
			if (errno || *end || !(seconds > 0 && seconds < 1e6)) {
				fprintf(stderr, "rstmem-bench-client: bad --seconds %s\n", optarg);
				return -1;
			}
			break;
		case 'T':
			target = optarg;
			break;
		case 'm':
			min_round_trips = strtoul(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || !optarg[0] || min_round_trips > 1000000) {
				fprintf(stderr, "rstmem-bench-client: --min-round-trips %s: expected a whole number from 0 to 1000000\n", optarg);
				return -1;
			}
			break;
		default:
			usage(argv[0]);
			return -1;
		}
	}
	if (optind != argc || !socket_path || !*clients || !alloc_size || !seconds) {
		usage(argv[0]);
		return -1;
	}
	if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		fprintf(stderr, "rstmem-bench-client: socket path too long\n");
		return -1;
	}
	if (strlen(target) >= RSTMEM_HEAP_NAME_LEN) {
		fprintf(stderr, "rstmem-bench-client: --target longer than %d bytes\n",
			RSTMEM_HEAP_NAME_LEN - 1);
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long clients = 0;
	if (parse_args(argc, argv, &clients))
		return 2;

	struct worker *workers = calloc(clients, sizeof(*workers));
	if (!workers) {
		perror("rstmem-bench-client: calloc");
		return 1;
	}
	int err;
	if ((err = pthread_barrier_init(&ready_barrier, NULL, clients + 1)) ||
	    (err = pthread_barrier_init(&go_barrier, NULL, clients + 1))) {
		fprintf(stderr, "rstmem-bench-client: pthread_barrier_init: %s\n", strerror(err));
		return 1;
	}
	for (long i = 0; i < clients; i++) {
		workers[i].index = i;
		err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (err) {
			/* The barriers count on every thread: no way to go on. */
			fprintf(stderr, "rstmem-bench-client: pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	pthread_barrier_wait(&ready_barrier);
	deadline_ns = now_ns() + (uint64_t)(seconds * 1e9);
	pthread_barrier_wait(&go_barrier);

	size_t total = 0;
	uint64_t errors = 0, first_warm = UINT64_MAX, last_end = 0;
	double throughput = 0;
	for (long i = 0; i < clients; i++) {
		struct worker *w = &workers[i];
		err = pthread_join(w->thread, NULL);
		if (err) {
			fprintf(stderr, "rstmem-bench-client: pthread_join: %s\n", strerror(err));
			return 1;
		}
		errors += w->failed;
		total += w->count;
		if (w->count) {
			if (w->warm_ns < first_warm)
				first_warm = w->warm_ns;
			if (w->end_ns > last_end)
				last_end = w->end_ns;
			throughput += w->count / ((w->end_ns - w->warm_ns) / 1e9);
		}
	}
	pthread_barrier_destroy(&ready_barrier);
	pthread_barrier_destroy(&go_barrier);

	uint32_t *all = NULL;
	uint64_t sum_ns = 0;
	if (total) {
		all = malloc(total * sizeof(*all));
		if (!all) {
			perror("rstmem-bench-client: malloc");
			return 1;
		}
		size_t off = 0;
		for (long i = 0; i < clients; i++) {
			memcpy(all + off, workers[i].lat, workers[i].count * sizeof(*all));
			off += workers[i].count;
			for (size_t k = 0; k < workers[i].count; k++)
				sum_ns += workers[i].lat[k];
		}
		qsort(all, total, sizeof(*all), cmp_u32);
	}

	double measured = total ? (last_end - first_warm) / 1e9 : 0;
	printf("{\"clients\":%ld,\"size\":%" PRIu64 ",\"seconds\":%.3f,\"round_trips\":%zu,"
	       "\"throughput_per_s\":%.1f,\"p50_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f,"
	       "\"errors\":%" PRIu64 "}\n",
	       clients, alloc_size, measured, total, throughput,
	       total ? percentile_us(all, total, 50) : 0.0,
	       total ? percentile_us(all, total, 99) : 0.0,
	       total ? (double)sum_ns / total / 1000.0 : 0.0, errors);
	int status = 0;
	if (fflush(stdout) == EOF) {
		perror("rstmem-bench-client: stdout");
		status = 1;
	}

	for (long i = 0; i < clients; i++)
		free(workers[i].lat);
	free(workers);
	free(all);
	if (errors) {
		fprintf(stderr, "rstmem-bench-client: %" PRIu64 " of %ld clients failed\n",
			errors, clients);
		return 1;
	}
	if (!total) {
		fprintf(stderr, "rstmem-bench-client: no round trips completed after warm-up"
			" (%d per client); run longer\n", WARMUP);
		return 1;
	}
	return status;
}
