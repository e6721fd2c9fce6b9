/* SPDX-License-Identifier: MIT */
/*
 * Every librstmem call's success and error paths against a live rstmemd on
 * the reference model (started by with-daemon.sh; RSTMEMD_SOCKET names it).
 * Errnos are the ones rstmem.h documents, exactly.
 *
 * What the daemon offers is read from it, never assumed: with-daemon.sh runs
 * it on its built-in defaults, which this file does not state. HELLO gives
 * the page size (checked against sysconf) and the generation; LIST_HEAPS the
 * heap of each use case (named as that generation names it), the system
 * heap, the CMA heap if there is one, their pool sizes, and, through a heap
 * whose sizes are unknown, the caller's byte quota (docs/protocol.md:
 * max_alloc_bytes is the largest ALLOC the daemon would try for the caller).
 */
#include "check.h"

#include <inttypes.h>
#include <limits.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include <rstmem/rstmem.h>

static const char *socket_path;
static char tmpdir[200];

static struct rstmem_conn *connect_or_die(void)
{
	struct rstmem_conn *conn = NULL;
	int ret = rstmem_connect(socket_path, &conn);
	if (ret != 0)
		fprintf(stderr, "rstmem_connect(%s): %s\n", socket_path, strerror(-ret));
	REQUIRE(ret == 0 && conn != NULL);
	return conn;
}

static const struct rstmem_heap *find_heap(const struct rstmem_heap *heaps, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(heaps[i].name, name) == 0)
			return &heaps[i];
	return NULL;
}

#define MAX_HEAPS 16

/* What this daemon offers, as it reported it (test_server_info, test_list_heaps). */
static struct {
	uint64_t page;
	uint32_t generation;
	uint32_t heap_count;	/* HELLO's */
	struct rstmem_heap heaps[MAX_HEAPS];
	size_t count;
	const struct rstmem_heap *svp, *tui, *svr, *system, *cma;
	const struct rstmem_heap *sized;	/* a restricted heap whose sizes are known, else system */
	uint64_t quota;		/* the uid's byte limit; 0: no heap reveals it */
} offer;

static uint64_t pages(uint64_t n) { return n * offer.page; }

static const struct rstmem_heap *find_use_case(const char *use_case)
{
	for (size_t i = 0; i < offer.count; i++)
		if (strcmp(offer.heaps[i].use_case, use_case) == 0)
			return &offer.heaps[i];
	return NULL;
}

/* How each generation names a use case's heap: v4 after the use case, v6
 * "restricted,<use case>", mainline "protected,<use case>". */
static const char *generation_name(const char *use_case)
{
	static char name[RSTMEM_HEAP_NAME_LEN];
	const char *prefix = offer.generation == RSTMEM_GENERATION_MAINLINE ? "protected," :
			     offer.generation == RSTMEM_GENERATION_V6	    ? "restricted," : "";
	snprintf(name, sizeof(name), "%s%s", prefix, use_case);
	return name;
}

static void test_connect(void)
{
	struct rstmem_conn *conn = (struct rstmem_conn *)&conn;	/* must be overwritten */

	/* explicit path, and every new descriptor close-on-exec */
	static bool before[MAX_TRACKED_FD];
	fd_snapshot(before);
	CHECK_EQ(rstmem_connect(socket_path, &conn), 0);
	CHECK(conn != NULL);
	CHECK_EQ(check_new_fds_cloexec(before, "rstmem_connect"), 1);
	rstmem_disconnect(conn);

	/* NULL: RSTMEMD_SOCKET */
	conn = NULL;
	CHECK_EQ(rstmem_connect(NULL, &conn), 0);
	CHECK(conn != NULL);
	rstmem_disconnect(conn);

	/* argument errors */
	CHECK_EQ(rstmem_connect(socket_path, NULL), -EINVAL);
	conn = (struct rstmem_conn *)&conn;
	CHECK_EQ(rstmem_connect("", &conn), -EINVAL);
	CHECK(conn == NULL);

	/* path errors, each with its own errno */
	char path[256];
	snprintf(path, sizeof(path), "%s/no-such.sock", tmpdir);
	CHECK_EQ(rstmem_connect(path, &conn), -ENOENT);
	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';	/* 108 bytes: one too many */
	CHECK_EQ(rstmem_connect(path, &conn), -ENAMETOOLONG);
	path[sizeof(((struct sockaddr_un *)0)->sun_path) - 1] = '\0';	/* 107 bytes: fits, nothing there */
	CHECK_EQ(rstmem_connect(path, &conn), -ENOENT);

	/* a regular file is not a listening socket */
	snprintf(path, sizeof(path), "%s/file", tmpdir);
	int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	REQUIRE(fd >= 0);
	close(fd);
	CHECK_EQ(rstmem_connect(path, &conn), -ECONNREFUSED);
	strcat(path, "/x.sock");	/* a file as a directory */
	CHECK_EQ(rstmem_connect(path, &conn), -ENOTDIR);

	/* a stream socket is the wrong socket type */
	snprintf(path, sizeof(path), "%s/stream.sock", tmpdir);
	int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	strcpy(addr.sun_path, path);
	REQUIRE(listener >= 0 && bind(listener, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
		listen(listener, 4) == 0);
	CHECK_EQ(rstmem_connect(path, &conn), -EPROTOTYPE);
	close(listener);
	/* bound but nobody listening any more: a stale socket */
	CHECK_EQ(rstmem_connect(path, &conn), -ECONNREFUSED);

	/* the default without RSTMEMD_SOCKET (docs/protocol.md section 2) */
	char *saved_xdg = getenv("XDG_RUNTIME_DIR") ? strdup(getenv("XDG_RUNTIME_DIR")) : NULL;
	setenv("RSTMEMD_SOCKET", "", 1);	/* empty counts as unset */
	if (geteuid() == 0) {
		/* root: /run/rstmemd/rstmemd.sock, whatever is (not) there */
		struct rstmem_conn *direct = NULL;
		int expected = rstmem_connect(RSTMEM_DEFAULT_SOCKET, &direct);
		rstmem_disconnect(direct);
		CHECK_EQ(rstmem_connect(NULL, &conn), expected);
		rstmem_disconnect(conn);
		conn = NULL;
	} else {
		/* with-daemon.sh names the socket rstmemd.sock in its own directory */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", socket_path);
		*strrchr(dir, '/') = '\0';
		setenv("XDG_RUNTIME_DIR", dir, 1);
		CHECK_EQ(rstmem_connect(NULL, &conn), 0);
		rstmem_disconnect(conn);
		/* no per-user socket there: the system service's, whatever is (not) there */
		struct rstmem_conn *direct = NULL;
		int expected = rstmem_connect(RSTMEM_DEFAULT_SOCKET, &direct);
		rstmem_disconnect(direct);
		setenv("XDG_RUNTIME_DIR", "/nonexistent-runtime-dir", 1);
		CHECK_EQ(rstmem_connect(NULL, &conn), expected);
		rstmem_disconnect(conn);
		conn = NULL;
		unsetenv("XDG_RUNTIME_DIR");
		CHECK_EQ(rstmem_connect(NULL, &conn), expected);
		rstmem_disconnect(conn);
		conn = NULL;
	}
	setenv("RSTMEMD_SOCKET", socket_path, 1);
	if (saved_xdg)
		setenv("XDG_RUNTIME_DIR", saved_xdg, 1);
	free(saved_xdg);

	rstmem_disconnect(NULL);	/* a no-op */
}

static void test_server_info(struct rstmem_conn *conn)
{
	struct rstmem_server_info info;
	memset(&info, 0xff, sizeof(info));
	CHECK_EQ(rstmem_get_server_info(conn, &info), 0);
	CHECK_EQ(info.version, RSTMEM_PROTOCOL_VERSION);
	CHECK_EQ(info.backend, RSTMEM_BACKEND_MODEL);
	CHECK(info.generation == RSTMEM_GENERATION_V4 || info.generation == RSTMEM_GENERATION_V6 ||
	      info.generation == RSTMEM_GENERATION_MAINLINE);
	CHECK_EQ(info.page_size, sysconf(_SC_PAGESIZE));
	CHECK(info.heap_count > 0 && info.heap_count <= MAX_HEAPS);
	offer.page = info.page_size;
	offer.generation = info.generation;
	offer.heap_count = info.heap_count;
	CHECK_EQ(info.capabilities & (RSTMEM_CAP_USE_CASES | RSTMEM_CAP_BUFFER_NAMES | RSTMEM_CAP_RELEASE_TRACKING),
		 RSTMEM_CAP_USE_CASES | RSTMEM_CAP_BUFFER_NAMES | RSTMEM_CAP_RELEASE_TRACKING);
	CHECK(strncmp(info.server, "rstmemd ", 8) == 0);
	CHECK_EQ(rstmem_get_server_info(NULL, &info), -EINVAL);
	CHECK_EQ(rstmem_get_server_info(conn, NULL), -EINVAL);
}

static void test_list_heaps(struct rstmem_conn *conn)
{
	size_t count = 0;
	CHECK_EQ(rstmem_list_heaps(conn, NULL, 0, &count), 0);	/* size query */
	CHECK_EQ(count, offer.heap_count);	/* what HELLO announced */

	struct rstmem_heap *heaps = offer.heaps;
	memset(heaps, 0xff, sizeof(offer.heaps));
	count = 0;
	CHECK_EQ(rstmem_list_heaps(conn, heaps, MAX_HEAPS, &count), 0);
	CHECK_EQ(count, offer.heap_count);
	REQUIRE(count >= 4 && count <= MAX_HEAPS);
	offer.count = count;
	offer.svp = find_use_case("secure-video");
	offer.tui = find_use_case("trusted-ui");
	offer.svr = find_use_case("secure-video-record");
	offer.system = find_heap(heaps, count, "system");
	REQUIRE(offer.svp && offer.tui && offer.svr && offer.system);
	CHECK_STR(offer.svp->name, generation_name("secure-video"));
	CHECK_STR(offer.tui->name, generation_name("trusted-ui"));
	CHECK_STR(offer.svr->name, generation_name("secure-video-record"));
	CHECK_STR(offer.system->use_case, "");

	/* Besides the three use cases' heaps: plain heaps only, system and at most one CMA heap. */
	size_t plain = 0;
	for (size_t i = 0; i < count; i++) {
		const struct rstmem_heap *h = &heaps[i];
		CHECK_EQ(h->backend, RSTMEM_BACKEND_MODEL);
		CHECK_EQ(h->page_size, offer.page);
		if (h->use_case[0] != '\0') {
			CHECK_EQ(h->flags & (RSTMEM_HEAP_RESTRICTED | RSTMEM_HEAP_MAPPABLE), RSTMEM_HEAP_RESTRICTED);
			continue;
		}
		plain++;
		CHECK_EQ(h->flags & (RSTMEM_HEAP_RESTRICTED | RSTMEM_HEAP_MAPPABLE), RSTMEM_HEAP_MAPPABLE);
		if (h != offer.system) {
			CHECK(offer.cma == NULL);
			offer.cma = h;
		}
	}
	CHECK_EQ(count, 3 + plain);

	/* A heap whose sizes are unknown offers the whole quota (nothing is held yet). */
	for (size_t i = 0; i < count; i++) {
		const struct rstmem_heap *h = &heaps[i];
		if (h->flags & RSTMEM_HEAP_SIZES_KNOWN)
			continue;
		CHECK_EQ(h->total_bytes, 0);
		CHECK_EQ(h->free_bytes, 0);
		CHECK(h->max_alloc_bytes > 0);
		if (offer.quota == 0)
			offer.quota = h->max_alloc_bytes;
		CHECK_EQ(h->max_alloc_bytes, offer.quota);	/* the same quota, whichever heap reports it */
	}
	/* Heaps with sizes: untouched, so all free in one run; the largest allocation
	 * is the pool or the quota, whichever is smaller. */
	for (size_t i = 0; i < count; i++) {
		const struct rstmem_heap *h = &heaps[i];
		if (!(h->flags & RSTMEM_HEAP_SIZES_KNOWN))
			continue;
		CHECK(h->total_bytes > 0 && h->total_bytes % offer.page == 0);
		CHECK_EQ(h->free_bytes, h->total_bytes);
		if (offer.quota != 0)
			CHECK_EQ(h->max_alloc_bytes, h->total_bytes < offer.quota ? h->total_bytes : offer.quota);
		else
			CHECK_EQ(h->max_alloc_bytes, h->total_bytes);
		if (offer.sized == NULL && (h->flags & RSTMEM_HEAP_RESTRICTED))
			offer.sized = h;
	}
	if (offer.sized == NULL)
		offer.sized = offer.system;
	REQUIRE(offer.sized->flags & RSTMEM_HEAP_SIZES_KNOWN);
	printf("daemon: generation %u, page size %" PRIu64 ", %zu heaps, CMA heap %s, quota %" PRIu64 " bytes%s\n",
	       offer.generation, offer.page, count, offer.cma ? offer.cma->name : "(none)", offer.quota,
	       offer.quota ? "" : " (no heap reveals it)");

	/* too small an array: the first entries, the real count, -ERANGE */
	struct rstmem_heap two[3];
	memset(two, 0, sizeof(two));
	count = 0;
	CHECK_EQ(rstmem_list_heaps(conn, two, 2, &count), -ERANGE);
	CHECK_EQ(count, offer.count);
	CHECK_STR(two[0].name, heaps[0].name);
	CHECK_STR(two[1].name, heaps[1].name);
	CHECK_EQ(two[2].name[0], 0);	/* nothing written past capacity */

	CHECK_EQ(rstmem_list_heaps(NULL, heaps, MAX_HEAPS, &count), -EINVAL);
	CHECK_EQ(rstmem_list_heaps(conn, heaps, MAX_HEAPS, NULL), -EINVAL);
	CHECK_EQ(rstmem_list_heaps(conn, NULL, 3, &count), -EINVAL);
}

/* A successful allocation's invariants; closes nothing. */
static void check_buffer(int ret, const struct rstmem_buffer *buf, uint64_t size, const char *heap)
{
	CHECK(ret >= 0);
	CHECK_EQ(ret, buf->fd);
	CHECK_EQ(buf->size, size);
	CHECK_STR(buf->heap, heap);
	CHECK(buf->id != 0);
	if (ret >= 0) {
		CHECK(is_cloexec(buf->fd));
		CHECK_EQ(lseek(buf->fd, 0, SEEK_END), (off_t)size);
	}
}

static void release(struct rstmem_conn *conn, struct rstmem_buffer *buf)
{
	if (buf->fd < 0)
		return;
	CHECK_EQ(rstmem_free(conn, buf->id), 0);
	close(buf->fd);
	buf->fd = -1;
}

static void check_failed_alloc(struct rstmem_conn *conn, const char *target, uint64_t size, uint32_t flags,
			       const char *name, int expected, int line)
{
	struct rstmem_buffer buf;
	memset(&buf, 0x5a, sizeof(buf));
	int ret = rstmem_alloc(conn, target, size, flags, name, &buf);
	if (ret != expected) {
		atomic_fetch_add(&check_failures, 1);
		fprintf(stderr, "%s:%d: rstmem_alloc(\"%.20s\", %" PRIu64 ", %#x, \"%.20s\") = %s", __FILE__, line,
			target ? target : "(null)", size, flags, name ? name : "(null)", check_errname(ret));
		fprintf(stderr, ", expected %s\n", check_errname(expected));
		if (ret >= 0)
			close(ret);
	}
	CHECK_EQ(buf.fd, -1);
	CHECK_EQ(buf.size, 0);
	CHECK_EQ(buf.id, 0);
}
#define CHECK_ALLOC_FAILS(conn, target, size, flags, name, expected) \
	check_failed_alloc(conn, target, size, flags, name, expected, __LINE__)

static void test_alloc(struct rstmem_conn *conn)
{
	struct rstmem_buffer buf;
	int ret;

	/* Past the uid's byte limit, first, while it holds nothing: the quota is
	 * checked before any pool is asked, so no ENOMEM comes first. */
	if (offer.quota != 0)
		CHECK_ALLOC_FAILS(conn, "secure-video", offer.quota + offer.page, 0, NULL, -EDQUOT);
	else
		printf("no heap reveals the byte quota: EDQUOT not checked\n");

	/* by use case, default name */
	ret = rstmem_alloc(conn, "secure-video", 1 << 20, 0, NULL, &buf);
	check_buffer(ret, &buf, 1 << 20, offer.svp->name);
	release(conn, &buf);

	/* page rounding: a page and a byte is two pages */
	ret = rstmem_alloc(conn, "trusted-ui", pages(1) + 1, 0, "", &buf);
	check_buffer(ret, &buf, pages(2), offer.tui->name);
	release(conn, &buf);

	/* by heap, named (31 bytes: the longest name) */
	ret = rstmem_alloc(conn, "system", pages(1), RSTMEM_ALLOC_BY_HEAP, "0123456789012345678901234567890", &buf);
	check_buffer(ret, &buf, pages(1), "system");
	release(conn, &buf);
	ret = rstmem_alloc(conn, offer.svp->name, pages(16), RSTMEM_ALLOC_BY_HEAP, "player", &buf);
	check_buffer(ret, &buf, pages(16), offer.svp->name);
	release(conn, &buf);
	ret = rstmem_alloc(conn, "secure-video-record", 3 << 20, RSTMEM_ALLOC_BY_USE_CASE, "rec", &buf);
	check_buffer(ret, &buf, 3 << 20, offer.svr->name);
	release(conn, &buf);
	if (offer.cma != NULL) {
		ret = rstmem_alloc(conn, offer.cma->name, 1, 0, NULL, &buf);	/* heap name, no flag */
		check_buffer(ret, &buf, pages(1), offer.cma->name);
		release(conn, &buf);
	} else {
		printf("no CMA heap offered: nothing allocated from one\n");
	}

	/* client-side checks: nothing is sent */
	char target64[65], name32[33];
	memset(target64, 't', 64);
	target64[64] = '\0';
	memset(name32, 'n', 32);
	name32[32] = '\0';
	CHECK_ALLOC_FAILS(conn, target64, pages(1), 0, NULL, -ENAMETOOLONG);
	target64[63] = '\0';	/* 63 bytes: fits, and names nothing */
	CHECK_ALLOC_FAILS(conn, target64, pages(1), 0, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "secure-video", pages(1), 0, name32, -ENAMETOOLONG);
	CHECK_ALLOC_FAILS(conn, NULL, pages(1), 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(NULL, "secure-video", pages(1), 0, NULL, -EINVAL);
	CHECK_EQ(rstmem_alloc(conn, "secure-video", pages(1), 0, NULL, NULL), -EINVAL);

	/* the daemon's answers */
	CHECK_ALLOC_FAILS(conn, "no-such-heap", pages(1), 0, NULL, -ENOENT);
	if (strcmp(offer.svp->name, "secure-video") != 0)	/* v4 names the heap after the use case */
		CHECK_ALLOC_FAILS(conn, "secure-video", pages(1), RSTMEM_ALLOC_BY_HEAP, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "system", pages(1), RSTMEM_ALLOC_BY_USE_CASE, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "", pages(1), 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", 0, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", (uint64_t)INT64_MAX + 1, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", pages(1), RSTMEM_ALLOC_BY_HEAP | RSTMEM_ALLOC_BY_USE_CASE, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", pages(1), 1u << 7, NULL, -EINVAL);
	/* a page more than the whole pool: ENOMEM, unless that is past the quota too */
	uint64_t too_big = offer.sized->total_bytes + offer.page;
	CHECK_ALLOC_FAILS(conn, offer.sized->name, too_big, RSTMEM_ALLOC_BY_HEAP, NULL,
			  offer.quota != 0 && too_big > offer.quota ? -EDQUOT : -ENOMEM);

	/* errors from the daemon leave the connection usable */
	ret = rstmem_alloc(conn, "secure-video", pages(1), 0, NULL, &buf);
	check_buffer(ret, &buf, pages(1), offer.svp->name);
	release(conn, &buf);
}

/* The memory comes back when the last descriptor is closed, not at FREE. */
static uint64_t free_bytes(struct rstmem_conn *conn, const char *heap)
{
	struct rstmem_heap heaps[MAX_HEAPS];
	size_t count;
	REQUIRE(rstmem_list_heaps(conn, heaps, MAX_HEAPS, &count) == 0);
	const struct rstmem_heap *h = find_heap(heaps, count, heap);
	REQUIRE(h != NULL);
	return h->free_bytes;
}

/* Asks until the daemon has seen earlier closes, giving up after 60 s (a bound
 * on a hang, never the criterion); returns the last value. */
static uint64_t wait_free_bytes(struct rstmem_conn *conn, const char *heap, uint64_t expected)
{
	uint64_t now = 0;
	for (int i = 0; i < 6000 && (now = free_bytes(conn, heap)) != expected; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	return now;
}

static void test_free(struct rstmem_conn *conn)
{
	struct rstmem_buffer buf;
	const char *heap = offer.sized->name;
	uint64_t before = offer.sized->total_bytes;	/* the whole pool, once earlier buffers are released */
	uint64_t size = pages(16);
	CHECK_EQ(wait_free_bytes(conn, heap, before), before);
	int ret = rstmem_alloc(conn, heap, size, RSTMEM_ALLOC_BY_HEAP, NULL, &buf);
	check_buffer(ret, &buf, size, heap);
	REQUIRE(ret >= 0);
	CHECK_EQ(free_bytes(conn, heap), before - size);
	CHECK_EQ(rstmem_free(conn, buf.id), 0);
	CHECK_EQ(rstmem_free(conn, buf.id), -ENOENT);	/* already freed */
	CHECK_EQ(free_bytes(conn, heap), before - size);	/* fd still open */
	CHECK_EQ(lseek(buf.fd, 0, SEEK_END), (off_t)size);
	close(buf.fd);
	/* release is seen asynchronously (inotify) */
	CHECK_EQ(wait_free_bytes(conn, heap, before), before);

	CHECK_EQ(rstmem_free(conn, 0), -ENOENT);
	CHECK_EQ(rstmem_free(conn, UINT64_MAX), -ENOENT);
	CHECK_EQ(rstmem_free(NULL, 1), -EINVAL);

	/* another connection's buffer is not ours to free */
	struct rstmem_conn *other = connect_or_die();
	ret = rstmem_alloc(other, "secure-video", pages(1), 0, NULL, &buf);
	check_buffer(ret, &buf, pages(1), offer.svp->name);
	CHECK_EQ(rstmem_free(conn, buf.id), -ENOENT);
	CHECK_EQ(rstmem_free(other, buf.id), 0);

	/* the descriptor outlives its connection: it is the caller's */
	struct rstmem_buffer kept;
	ret = rstmem_alloc(other, "system", pages(3), 0, NULL, &kept);
	check_buffer(ret, &kept, pages(3), "system");
	rstmem_disconnect(other);
	CHECK_EQ(lseek(kept.fd, 0, SEEK_END), (off_t)pages(3));
	CHECK_EQ(rstmem_free(conn, kept.id), -ENOENT);
	close(kept.fd);
	close(buf.fd);
}

static const struct rstmem_user_heap *find_user_heap(const struct rstmem_user_heap *heaps, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(heaps[i].name, name) == 0)
			return &heaps[i];
	return NULL;
}

static void test_usage(struct rstmem_conn *conn)
{
	struct rstmem_user_usage before, after;
	struct rstmem_user_heap heaps[MAX_HEAPS], now[MAX_HEAPS];
	size_t count = 0;
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &before, NULL, 0, &count), 0);	/* size query */
	CHECK_EQ(count, offer.heap_count);
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &before, heaps, MAX_HEAPS, &count), 0);
	CHECK_EQ(before.uid, geteuid());
	CHECK_EQ(!!(before.flags & RSTMEM_USAGE_ADMIN), geteuid() == 0);	/* with-daemon.sh's policy: root only */
	CHECK(before.connections >= 1 && before.connections <= before.max_connections);
	CHECK(before.max_buffers > 0 && before.max_bytes > 0);
	const struct rstmem_user_heap *svp = find_user_heap(heaps, count, offer.svp->name);
	REQUIRE(svp != NULL);
	CHECK(svp->flags & RSTMEM_HEAP_USAGE_GRANTED);

	/* One more buffer: counted for this uid and its heap at once. */
	struct rstmem_buffer buf;
	int ret = rstmem_alloc(conn, "secure-video", pages(2), 0, NULL, &buf);
	check_buffer(ret, &buf, pages(2), offer.svp->name);
	REQUIRE(ret >= 0);
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &after, now, MAX_HEAPS, &count), 0);
	CHECK_EQ(after.buffers, before.buffers + 1);
	CHECK_EQ(after.bytes, before.bytes + pages(2));
	const struct rstmem_user_heap *svp_now = find_user_heap(now, count, offer.svp->name);
	REQUIRE(svp_now != NULL);
	CHECK_EQ(svp_now->buffers, svp->buffers + 1);
	CHECK_EQ(svp_now->bytes, svp->bytes + pages(2));
	CHECK_EQ(svp_now->allocations, svp->allocations + 1);
	CHECK_EQ(svp_now->failures, svp->failures);
	CHECK(svp_now->share_bytes == RSTMEM_NO_LIMIT || svp_now->share_bytes >= svp_now->bytes);
	CHECK_EQ(rstmem_free(conn, buf.id), 0);
	close(buf.fd);

	/* Too small an array: the first entry, the count, -ERANGE. */
	struct rstmem_user_heap one[1];
	count = 0;
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &after, one, 1, &count), -ERANGE);
	CHECK_EQ(count, offer.heap_count);
	CHECK_STR(one[0].name, now[0].name);

	/* Asking by uid: one's own always; uid 0 only as an administrator. */
	CHECK_EQ(rstmem_get_usage(conn, geteuid(), &after, now, MAX_HEAPS, &count), 0);
	CHECK_EQ(after.uid, geteuid());
	CHECK_EQ(rstmem_get_usage(conn, 0, &after, now, MAX_HEAPS, &count), geteuid() == 0 ? 0 : -EACCES);

	CHECK_EQ(rstmem_get_usage(NULL, RSTMEM_NO_UID, &after, now, MAX_HEAPS, &count), -EINVAL);
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, NULL, now, MAX_HEAPS, &count), -EINVAL);
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &after, now, MAX_HEAPS, NULL), -EINVAL);
	CHECK_EQ(rstmem_get_usage(conn, RSTMEM_NO_UID, &after, NULL, 3, &count), -EINVAL);
}

static void test_tee_without_device(void)
{
	/* No TEE here: the argument checks (test-tee covers the rest). */
	struct rstmem_tee_shm shm;
	CHECK_EQ(rstmem_tee_register(-1, 0, &shm), -EBADF);
	CHECK_EQ(shm.fd, -1);
	CHECK_EQ(rstmem_tee_register(0, 0, NULL), -EINVAL);
}

/* Nothing on stderr unless RSTMEM_DEBUG is set; then the daemon's reason. */
static void run_quietly(const char *debug, const char *out_path)
{
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		int out = open(out_path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
		if (out < 0 || dup2(out, STDERR_FILENO) < 0)
			_exit(99);
		if (debug)
			setenv("RSTMEM_DEBUG", debug, 1);
		else
			unsetenv("RSTMEM_DEBUG");
		struct rstmem_conn *conn = NULL;
		struct rstmem_buffer buf;
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s/no-such.sock", tmpdir);
		if (rstmem_connect(path, &conn) != -ENOENT)
			_exit(98);
		if (rstmem_connect(socket_path, &conn) != 0)
			_exit(97);
		if (rstmem_alloc(conn, "no-such-heap", 1, 0, NULL, &buf) != -ENOENT ||
		    rstmem_alloc(conn, "secure-video", 0, 0, NULL, &buf) != -EINVAL ||
		    rstmem_alloc(conn, "secure-video", 1, 0, "a-name-that-is-far-too-long-to-fit", &buf) != -ENAMETOOLONG ||
		    rstmem_free(conn, 12345) != -ENOENT)
			_exit(96);
		rstmem_disconnect(conn);
		_exit(0);
	}
	int status;
	REQUIRE(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static char *slurp(const char *path)
{
	static char text[8192];
	FILE *f = fopen(path, "re");
	REQUIRE(f != NULL);
	size_t n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

static void test_debug_output(void)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);

	run_quietly(NULL, path);
	CHECK_STR(slurp(path), "");
	run_quietly("0", path);
	CHECK_STR(slurp(path), "");

	run_quietly("1", path);
	const char *text = slurp(path);
	CHECK(strncmp(text, "librstmem: ", 11) == 0);
	CHECK(strstr(text, "no heap or use case 'no-such-heap'") != NULL);	/* the daemon's own words */
	CHECK(strstr(text, "buffer name of 34 bytes") != NULL);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	socket_path = getenv("RSTMEMD_SOCKET");
	REQUIRE(socket_path != NULL && socket_path[0] == '/');
	const char *tmp = getenv("TMPDIR");	/* with-daemon.sh's, removed whatever happens */
	snprintf(tmpdir, sizeof(tmpdir), "%s/rstmem-test-api.XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	REQUIRE(mkdtemp(tmpdir) != NULL);

	int fds_at_start = count_fds();
	test_connect();
	struct rstmem_conn *conn = connect_or_die();
	test_server_info(conn);
	test_list_heaps(conn);
	test_alloc(conn);
	test_free(conn);
	test_usage(conn);
	rstmem_disconnect(conn);
	test_tee_without_device();
	test_debug_output();
	CHECK_EQ(count_fds(), fds_at_start);	/* nothing leaked on any path above */

	static const char *const created[] = { "file", "stream.sock", "stderr" };
	char path[PATH_MAX];
	for (size_t i = 0; i < sizeof(created) / sizeof(created[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, created[i]);
		unlink(path);
	}
	CHECK_EQ(rmdir(tmpdir), 0);
	return check_exit_status("test-api");
}
