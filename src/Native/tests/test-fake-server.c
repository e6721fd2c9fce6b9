/* SPDX-License-Identifier: MIT */
/*
 * librstmem against a fake rstmemd that breaks docs/protocol.md on purpose.
 *
 * For each scenario a forked child accepts one connection on a private
 * socket and answers as the scenario says; the parent runs the client side.
 * Every malformed reply must give the documented error (never a crash or a
 * hang), every descriptor it carried must be closed by the failing call
 * itself (this process's descriptor count is compared around the call), and
 * a broken connection must refuse further calls with -ENOTCONN. Also: no
 * SIGPIPE when the daemon has gone (MSG_NOSIGNAL), and replies still arrive
 * when each is withheld until a signal has interrupted the wait for it 20
 * times (EINTR restarts).
 */
#include "check.h"

#include <endian.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <rstmem/rstmem.h>

/* The fake server builds replies from the host's struct layout. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the fake server writes host order");

static char socket_path[108];
static int listener = -1;

/* The fake server's page size: its own, whatever the machine's. */
#define FAKE_PAGE 4096u

/* ---- the fake server (runs in the child) -------------------------------- */

struct request {
	struct rstmem_header header;
	unsigned char payload[RSTMEM_MAX_PACKET];
	ssize_t length;
};

/* Next request, or false when the client has gone. */
static bool next_request(int client, struct request *r)
{
	do
		r->length = recv(client, &r->header, sizeof(r->header) + sizeof(r->payload), 0);
	while (r->length < 0 && errno == EINTR);
	return r->length >= (ssize_t)sizeof(struct rstmem_header);
}

/* Sends @len bytes with @nfds descriptors of /dev/null attached. */
static void send_packet(int client, const void *data, size_t len, int nfds)
{
	int fds[253];	/* SCM_MAX_FD */
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(fds))];
	} control;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	for (int i = 0; i < nfds; i++)
		fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (nfds > 0) {
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
	}
	if (sendmsg(client, &msg, MSG_NOSIGNAL) < 0)
		_exit(90);
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

/* A reply packet being built: header, status, body. */
struct reply {
	unsigned char bytes[RSTMEM_MAX_PACKET + 1024];
	size_t length;
};

static struct rstmem_header *reply_header(struct reply *p) { return (struct rstmem_header *)p->bytes; }
static struct rstmem_status *reply_status(struct reply *p)
{
	return (struct rstmem_status *)(p->bytes + sizeof(struct rstmem_header));
}
static unsigned char *reply_body(struct reply *p)
{
	return p->bytes + sizeof(struct rstmem_header) + sizeof(struct rstmem_status);
}

/* A correct reply to @r (status 0) with @body_len body bytes, length fixed up. */
static void start_reply(struct reply *p, const struct request *r, size_t body_len)
{
	memset(p, 0, sizeof(*p));
	*reply_header(p) = (struct rstmem_header){
		.magic = RSTMEM_PROTOCOL_MAGIC,
		.version = 1,
		.opcode = r->header.opcode | RSTMEM_REPLY,
		.request_id = r->header.request_id,
	};
	p->length = sizeof(struct rstmem_header) + sizeof(struct rstmem_status) + body_len;
	reply_header(p)->payload_length = (uint32_t)(p->length - sizeof(struct rstmem_header));
}

static void error_reply(struct reply *p, const struct request *r, int error, const char *text)
{
	start_reply(p, r, strlen(text));
	reply_status(p)->error = error;
	reply_status(p)->message_length = (uint32_t)strlen(text);
	memcpy(reply_body(p), text, strlen(text));
}

static void hello_reply(struct reply *p, const struct request *r)
{
	start_reply(p, r, sizeof(struct rstmem_hello_reply));
	struct rstmem_hello_reply *h = (void *)reply_body(p);
	h->version = 1;
	h->capabilities = RSTMEM_CAP_USE_CASES;
	h->backend = RSTMEM_BACKEND_MODEL;
	h->page_size = FAKE_PAGE;
	h->heap_count = 2;
	strcpy(h->server, "fake rstmemd");
}

static void alloc_reply(struct reply *p, const struct request *r, uint64_t size)
{
	start_reply(p, r, sizeof(struct rstmem_alloc_reply));
	struct rstmem_alloc_reply *a = (void *)reply_body(p);
	a->buffer_id = 42;
	a->size = size;
	strcpy(a->heap, "fake-heap");
}

/* LIST_HEAPS reply with @count entries of @entry_size bytes. */
static void heaps_reply(struct reply *p, const struct request *r, uint32_t count, uint32_t entry_size)
{
	start_reply(p, r, sizeof(struct rstmem_heap_list) + (size_t)count * entry_size);
	struct rstmem_heap_list *list = (void *)reply_body(p);
	list->count = count;
	list->entry_size = entry_size;
	for (uint32_t i = 0; i < count; i++) {
		struct rstmem_heap_info *h = (void *)(reply_body(p) + sizeof(*list) + (size_t)i * entry_size);
		snprintf(h->name, sizeof(h->name), "heap-%u", i);
		strcpy(h->use_case, i == 0 ? "secure-video" : "");
		h->backend = RSTMEM_BACKEND_MODEL;
		h->page_size = FAKE_PAGE;
		h->flags = RSTMEM_HEAP_RESTRICTED;
		h->total_bytes = 1 << 20;
		h->free_bytes = 1 << 19;
		h->max_alloc_bytes = 1 << 18;
		/* bytes past the v1 fields (entry_size > 136) are 0xee: to be ignored */
		memset((unsigned char *)h + sizeof(*h), 0xee, entry_size > sizeof(*h) ? entry_size - sizeof(*h) : 0);
	}
}

/* How the fake server misbehaves: called for every request with its
 * sequence number (0 = HELLO). Sends whatever it likes; returns false to
 * hang up at once. */
typedef bool (*serve_fn)(int client, const struct request *r, unsigned seq);

/* The correct answers (also the default after the scenario's turn). */
static bool serve_correctly(int client, const struct request *r, unsigned seq)
{
	(void)seq;
	struct reply p;
	switch (r->header.opcode) {
	case RSTMEM_OP_HELLO:
		hello_reply(&p, r);
		break;
	case RSTMEM_OP_ALLOC: {
		uint64_t size;
		memcpy(&size, r->payload + offsetof(struct rstmem_alloc_request, size), sizeof(size));
		alloc_reply(&p, r, (size + FAKE_PAGE - 1) & ~(uint64_t)(FAKE_PAGE - 1));
		send_packet(client, p.bytes, p.length, 1);
		return true;
	}
	case RSTMEM_OP_FREE:
		start_reply(&p, r, sizeof(struct rstmem_free_reply));
		break;
	case RSTMEM_OP_LIST_HEAPS:
		heaps_reply(&p, r, 2, sizeof(struct rstmem_heap_info));
		break;
	default:
		error_reply(&p, r, ENOSYS, "unknown");
	}
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static void run_server(serve_fn serve)
{
	alarm(60);	/* never outlive a stuck test: a bound on a hang, not a criterion */
	int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (client < 0)
		_exit(91);
	struct request r;
	for (unsigned seq = 0; next_request(client, &r); seq++) {
		if (!serve(client, &r, seq))
			break;
	}
	close(client);
	_exit(0);
}

/* ---- scenarios ------------------------------------------------------------ */

/* Each scenario's misbehaviour is on request @seq (0 = HELLO, 1 = first call). */
#define MISBEHAVE_ON(n) do { if (seq != (n)) return serve_correctly(client, r, seq); } while (0)

static bool hello_bad_magic(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	reply_header(&p)->magic = 0x4d545353;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_version_too_high(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	((struct rstmem_hello_reply *)reply_body(&p))->version = RSTMEM_PROTOCOL_VERSION + 1;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_version_0(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	((struct rstmem_hello_reply *)reply_body(&p))->version = 0;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_refused(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	error_reply(&p, r, EPROTONOSUPPORT, "no common version");
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_wrong_request_id(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	reply_header(&p)->request_id += 1;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_wrong_opcode(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	reply_header(&p)->opcode = RSTMEM_OP_LIST_HEAPS | RSTMEM_REPLY;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_truncated(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	send_packet(client, p.bytes, 10, 0);
	return true;
}

static bool hello_short_body(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	p.length -= 16;
	reply_header(&p)->payload_length -= 16;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_length_mismatch(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	reply_header(&p)->payload_length += 1;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool hello_with_fd(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool hello_name_without_nul(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(0);
	struct reply p;
	hello_reply(&p, r);
	memset(((struct rstmem_hello_reply *)reply_body(&p))->server, 'x', RSTMEM_SERVER_NAME_LEN);
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

/* rstmemd over a uid's connection limit: one reply with opcode RSTMEM_REPLY
 * alone and request_id 0, then the close (docs/protocol.md, section 6). */
static bool connection_refused(int client, const struct request *r, unsigned seq)
{
	(void)seq;
	struct reply p;
	error_reply(&p, r, EUSERS, "MaxConnectionsPerUser: uid 1000 has 64 connections open; the limit is 64");
	reply_header(&p)->opcode = RSTMEM_REPLY;
	reply_header(&p)->request_id = 0;
	send_packet(client, p.bytes, p.length, 0);
	return false;
}

static bool hang_up(int client, const struct request *r, unsigned seq)
{
	(void)client, (void)r, (void)seq;
	return false;
}

/* Signals the client has handled, counted where the fake server (a forked
 * child) sees them too: a MAP_SHARED page set up in main(). */
static _Atomic int *interruptions;
#define INTERRUPTIONS_PER_REPLY 20

/* Every reply withheld until the client, waiting for it, has been interrupted
 * INTERRUPTIONS_PER_REPLY more times: a count, not a delay. */
static bool answer_when_interrupted(int client, const struct request *r, unsigned seq)
{
	int start = atomic_load(interruptions);
	while (atomic_load(interruptions) - start < INTERRUPTIONS_PER_REPLY)
		nanosleep(&(struct timespec){ .tv_nsec = 1000 * 1000 }, NULL);
	return serve_correctly(client, r, seq);
}

static bool alloc_without_fd(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool alloc_two_fds(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	send_packet(client, p.bytes, p.length, 2);
	return true;
}

static bool alloc_many_fds(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	send_packet(client, p.bytes, p.length, 253);	/* SCM_MAX_FD: the most one message carries */
	return true;
}

static bool alloc_wrong_request_id(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	reply_header(&p)->request_id = 0;
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_bad_magic(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	reply_header(&p)->magic = 0;
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_wrong_version(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	reply_header(&p)->version = 2;	/* not the negotiated 1 */
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_oversized(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	start_reply(&p, r, RSTMEM_MAX_PACKET);	/* 8216 bytes in all */
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_truncated_body(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	p.length -= 40;
	reply_header(&p)->payload_length -= 40;
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_smaller_than_asked(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE / 4);	/* the client asks for FAKE_PAGE */
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_heap_without_nul(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	memset(((struct rstmem_alloc_reply *)reply_body(&p))->heap, 'h', RSTMEM_HEAP_NAME_LEN);
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_error_with_fd(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	error_reply(&p, r, ENOMEM, "pool exhausted");
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_error_bad_message_length(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	error_reply(&p, r, ENOMEM, "pool exhausted");
	reply_status(&p)->message_length += 3;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool alloc_error_negative(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	error_reply(&p, r, -ENOMEM, "negative");
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool alloc_error_too_long(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	char text[RSTMEM_MAX_MESSAGE + 2];
	memset(text, 'm', sizeof(text) - 1);
	text[sizeof(text) - 1] = '\0';
	struct reply p;
	error_reply(&p, r, ENOMEM, text);	/* consistent, but longer than any daemon sends */
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool alloc_success_with_message(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	alloc_reply(&p, r, FAKE_PAGE);
	reply_status(&p)->message_length = 4;
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool alloc_enoent_then_correct(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	error_reply(&p, r, ENOENT, "no heap or use case 'x'");
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool alloc_ebadmsg(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	error_reply(&p, r, EBADMSG, "malformed");
	send_packet(client, p.bytes, p.length, 0);
	return false;	/* and hang up, as rstmemd does */
}

static bool alloc_empty_packet(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	send_packet(client, "", 0, 0);
	return true;
}

static bool hang_up_after_hello(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	(void)client;
	return false;
}

static bool free_with_fd(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	start_reply(&p, r, sizeof(struct rstmem_free_reply));
	send_packet(client, p.bytes, p.length, 1);
	return true;
}

static bool free_short(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	start_reply(&p, r, 4);
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool heaps_wider_entries(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);	/* not misbehaviour: a later version's wider entries */
	struct reply p;
	heaps_reply(&p, r, 3, sizeof(struct rstmem_heap_info) + 24);
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool heaps_narrow_entries(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	heaps_reply(&p, r, 2, 100);
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool heaps_count_mismatch(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	heaps_reply(&p, r, 2, sizeof(struct rstmem_heap_info));
	((struct rstmem_heap_list *)reply_body(&p))->count = 3;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool heaps_count_overflow(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	heaps_reply(&p, r, 2, sizeof(struct rstmem_heap_info));
	((struct rstmem_heap_list *)reply_body(&p))->count = 0x80000001u;	/* * 2 entries wraps in 32 bits */
	((struct rstmem_heap_list *)reply_body(&p))->entry_size = 0x80000000u;
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

static bool heaps_name_without_nul(int client, const struct request *r, unsigned seq)
{
	MISBEHAVE_ON(1);
	struct reply p;
	heaps_reply(&p, r, 2, sizeof(struct rstmem_heap_info));
	struct rstmem_heap_info *h = (void *)(reply_body(&p) + sizeof(struct rstmem_heap_list) +
					      sizeof(struct rstmem_heap_info));
	memset(h->use_case, 'u', sizeof(h->use_case));
	send_packet(client, p.bytes, p.length, 0);
	return true;
}

/* ---- the client side --------------------------------------------------------- */

static pid_t start_server(serve_fn serve)
{
	fflush(NULL);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0)
		run_server(serve);
	return child;
}

static void finish_server(pid_t child, const char *name)
{
	int status;
	REQUIRE(waitpid(child, &status, 0) == child);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		atomic_fetch_add(&check_failures, 1);
		fprintf(stderr, "%s: fake server ended with status 0x%x\n", name, status);
	}
}

/* The connect handshake meets @serve; connect must return @expected. */
static void connect_scenario(const char *name, serve_fn serve, int expected)
{
	int fds_before = count_fds();
	pid_t child = start_server(serve);
	struct rstmem_conn *conn = (struct rstmem_conn *)&conn;
	int ret = rstmem_connect(socket_path, &conn);
	if (ret != expected)
		fprintf(stderr, "scenario %s:\n", name);
	CHECK_EQ(ret, expected);
	if (ret == 0)
		rstmem_disconnect(conn);
	else
		CHECK(conn == NULL);
	CHECK_EQ(count_fds(), fds_before);	/* socket and any stray descriptor closed */
	finish_server(child, name);
	printf("connect / %-28s -> %s\n", name, ret == 0 ? "0" : strerrorname_np(-ret));
}

enum call { CALL_ALLOC, CALL_FREE, CALL_LIST, CALL_USAGE };

static int make_call(struct rstmem_conn *conn, enum call call, struct rstmem_heap *heaps, size_t *count)
{
	struct rstmem_buffer buf;
	int ret;
	switch (call) {
	case CALL_ALLOC:
		ret = rstmem_alloc(conn, "secure-video", FAKE_PAGE, 0, NULL, &buf);
		if (ret >= 0) {
			CHECK_EQ(buf.size, FAKE_PAGE);
			CHECK_EQ(buf.id, 42);
			CHECK_STR(buf.heap, "fake-heap");
			CHECK(is_cloexec(buf.fd));
			close(buf.fd);
			return 0;
		}
		CHECK_EQ(buf.fd, -1);
		return ret;
	case CALL_FREE:
		return rstmem_free(conn, 42);
	case CALL_LIST:
		return rstmem_list_heaps(conn, heaps, 4, count);
	case CALL_USAGE: {
		struct rstmem_user_usage usage;
		return rstmem_get_usage(conn, RSTMEM_NO_UID, &usage, NULL, 0, count);
	}
	}
	return -1;
}

/*
 * HELLO is answered correctly; the first call meets @serve and must return
 * @expected having closed whatever the reply carried; a second call must
 * then return @then (-ENOTCONN after a broken connection, 0 if it is fine).
 */
static void call_scenario(const char *name, serve_fn serve, enum call call, int expected, int then)
{
	int fds_before = count_fds();
	pid_t child = start_server(serve);
	struct rstmem_conn *conn;
	int ret = rstmem_connect(socket_path, &conn);
	CHECK_EQ(ret, 0);
	if (ret == 0) {
		int fds_connected = count_fds();
		struct rstmem_heap heaps[4];
		size_t count = 0;
		ret = make_call(conn, call, heaps, &count);
		if (ret != expected)
			fprintf(stderr, "scenario %s:\n", name);
		CHECK_EQ(ret, expected);
		CHECK_EQ(count_fds(), fds_connected);	/* stray descriptors closed by the call itself */
		if (call == CALL_LIST && ret == 0) {
			CHECK_EQ(count, 3);
			CHECK_STR(heaps[2].name, "heap-2");
			CHECK_STR(heaps[0].use_case, "secure-video");
			CHECK_EQ(heaps[1].max_alloc_bytes, 1 << 18);
		}
		int second = make_call(conn, call, heaps, &count);
		if (second != then)
			fprintf(stderr, "scenario %s, second call:\n", name);
		CHECK_EQ(second, then);
		rstmem_disconnect(conn);
	}
	CHECK_EQ(count_fds(), fds_before);
	finish_server(child, name);
	printf("%-5s   / %-28s -> %s, then %s\n", call == CALL_ALLOC ? "alloc" : call == CALL_FREE ? "free" : call == CALL_LIST ? "list" : "usage",
	       name, ret == 0 ? "0" : strerrorname_np(-ret), then == 0 ? "0" : strerrorname_np(-then));
}

/* The daemon hangs up: -ECONNRESET while waiting for a reply, -EPIPE when it
 * is gone before the send, -ENOTCONN after; the process survives with SIGPIPE
 * at its default (terminating) action. Linux (6.18) raises SIGPIPE only for
 * SOCK_STREAM, not for SOCK_SEQPACKET (unix_dgram_sendmsg), so this cannot
 * catch a missing MSG_NOSIGNAL here; the library sends with it regardless. */
static void test_no_sigpipe(void)
{
	signal(SIGPIPE, SIG_DFL);
	int fds_before = count_fds();
	pid_t child = start_server(hang_up_after_hello);
	struct rstmem_conn *conn;
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	CHECK_EQ(rstmem_free(conn, 1), -ECONNRESET);	/* the child hangs up on this one */
	finish_server(child, "hang_up_after_hello");
	rstmem_disconnect(conn);

	child = start_server(hang_up_after_hello);
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	struct rstmem_buffer buf;
	CHECK_EQ(rstmem_alloc(conn, "secure-video", FAKE_PAGE, 0, NULL, &buf), -ECONNRESET);
	finish_server(child, "hang_up_after_hello");
	rstmem_disconnect(conn);

	/* now with the peer fully gone before the send */
	child = start_server(serve_correctly);
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	CHECK_EQ(rstmem_free(conn, 1), -EPIPE);
	CHECK_EQ(rstmem_free(conn, 1), -ENOTCONN);
	rstmem_disconnect(conn);
	CHECK_EQ(count_fds(), fds_before);
	printf("no SIGPIPE: a request to a closed daemon is EPIPE, then ENOTCONN\n");
}

static void on_alarm(int sig)
{
	(void)sig;
	atomic_fetch_add(interruptions, 1);	/* lock-free: async-signal-safe */
}

/* A signal every millisecond, handled without SA_RESTART, and the daemon
 * answers each request only after 20 of them have interrupted the wait for
 * it: every call still succeeds. */
static void test_eintr(void)
{
	_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler's counter must be lock-free");
	atomic_store(interruptions, 0);
	pid_t child = start_server(answer_when_interrupted);
	struct sigaction sa = { .sa_handler = on_alarm };	/* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	REQUIRE(sigaction(SIGALRM, &sa, NULL) == 0);
	struct itimerval every_ms = { .it_interval = { 0, 1000 }, .it_value = { 0, 1000 } };
	REQUIRE(setitimer(ITIMER_REAL, &every_ms, NULL) == 0);
	struct rstmem_conn *conn;
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	struct rstmem_buffer buf;
	int fd = rstmem_alloc(conn, "secure-video", FAKE_PAGE + 1, 0, NULL, &buf);
	CHECK(fd >= 0);
	CHECK_EQ(buf.size, 2 * FAKE_PAGE);
	CHECK_EQ(rstmem_free(conn, buf.id), 0);
	struct itimerval off = { 0 };
	setitimer(ITIMER_REAL, &off, NULL);
	signal(SIGALRM, SIG_DFL);
	close(buf.fd);
	rstmem_disconnect(conn);
	finish_server(child, "answer_when_interrupted");
	CHECK(atomic_load(interruptions) >= 3 * INTERRUPTIONS_PER_REPLY);
	printf("EINTR: 3 calls succeeded, each reply withheld until %d signals had interrupted the wait (%d in all)\n",
	       INTERRUPTIONS_PER_REPLY, atomic_load(interruptions));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	interruptions = mmap(NULL, sizeof(*interruptions), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(interruptions != MAP_FAILED);
	char dir[] = "/tmp/rstmem-fake.XXXXXX";
	REQUIRE(mkdtemp(dir) != NULL);
	snprintf(socket_path, sizeof(socket_path), "%s/fake.sock", dir);
	listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, socket_path);
	REQUIRE(listener >= 0 && bind(listener, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
		listen(listener, 4) == 0);
	int fds_at_start = count_fds();

	connect_scenario("correct", serve_correctly, 0);
	connect_scenario("hello_bad_magic", hello_bad_magic, -EPROTO);
	connect_scenario("hello_version_too_high", hello_version_too_high, -EPROTO);
	connect_scenario("connection_refused", connection_refused, -EUSERS);
	connect_scenario("hello_version_0", hello_version_0, -EPROTO);
	connect_scenario("hello_refused", hello_refused, -EPROTONOSUPPORT);
	connect_scenario("hello_wrong_request_id", hello_wrong_request_id, -EPROTO);
	connect_scenario("hello_wrong_opcode", hello_wrong_opcode, -EPROTO);
	connect_scenario("hello_truncated", hello_truncated, -EPROTO);
	connect_scenario("hello_short_body", hello_short_body, -EPROTO);
	connect_scenario("hello_length_mismatch", hello_length_mismatch, -EPROTO);
	connect_scenario("hello_with_fd", hello_with_fd, -EPROTO);
	connect_scenario("hello_name_without_nul", hello_name_without_nul, -EPROTO);
	connect_scenario("hang_up", hang_up, -ECONNRESET);

	call_scenario("correct", serve_correctly, CALL_ALLOC, 0, 0);
	call_scenario("alloc_without_fd", alloc_without_fd, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_two_fds", alloc_two_fds, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_many_fds", alloc_many_fds, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_wrong_request_id", alloc_wrong_request_id, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_bad_magic", alloc_bad_magic, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_wrong_version", alloc_wrong_version, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_oversized", alloc_oversized, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_truncated_body", alloc_truncated_body, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_smaller_than_asked", alloc_smaller_than_asked, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_heap_without_nul", alloc_heap_without_nul, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_error_with_fd", alloc_error_with_fd, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_error_bad_msg_length", alloc_error_bad_message_length, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_error_negative", alloc_error_negative, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_error_too_long", alloc_error_too_long, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_success_with_message", alloc_success_with_message, CALL_ALLOC, -EPROTO, -ENOTCONN);
	call_scenario("alloc_empty_packet", alloc_empty_packet, CALL_ALLOC, -ECONNRESET, -ENOTCONN);
	call_scenario("alloc_enoent", alloc_enoent_then_correct, CALL_ALLOC, -ENOENT, 0);
	call_scenario("alloc_ebadmsg", alloc_ebadmsg, CALL_ALLOC, -EBADMSG, -ENOTCONN);
	call_scenario("free_correct", serve_correctly, CALL_FREE, 0, 0);
	call_scenario("free_with_fd", free_with_fd, CALL_FREE, -EPROTO, -ENOTCONN);
	call_scenario("free_short", free_short, CALL_FREE, -EPROTO, -ENOTCONN);
	call_scenario("heaps_wider_entries", heaps_wider_entries, CALL_LIST, 0, 0);
	call_scenario("heaps_narrow_entries", heaps_narrow_entries, CALL_LIST, -EPROTO, -ENOTCONN);
	call_scenario("heaps_count_mismatch", heaps_count_mismatch, CALL_LIST, -EPROTO, -ENOTCONN);
	call_scenario("heaps_count_overflow", heaps_count_overflow, CALL_LIST, -EPROTO, -ENOTCONN);
	call_scenario("heaps_name_without_nul", heaps_name_without_nul, CALL_LIST, -EPROTO, -ENOTCONN);
	/* This server negotiates version 1: USAGE (version 2) fails before anything
	 * is sent; had it been sent, the hang-up would make it -ECONNRESET. */
	call_scenario("usage_on_version_1", hang_up_after_hello, CALL_USAGE, -ENOSYS, -ENOSYS);

	test_no_sigpipe();
	test_eintr();

	CHECK_EQ(count_fds(), fds_at_start);
	close(listener);
	unlink(socket_path);
	rmdir(dir);
	return check_exit_status("test-fake-server");
}
