/* SPDX-License-Identifier: MIT */
/*
 * Every librstmem call's success and error paths against a live rstmemd on
 * the reference model (started by with-daemon.sh; RSTMEMD_SOCKET names it).
 * The model offers: protected,secure-video (use case secure-video, 64 MiB),
 * protected,trusted-ui (trusted-ui, 16 MiB), protected,secure-video-record
 * (secure-video-record, dynamic), reserved (64 MiB) and system (1 GiB);
 * page size 4096. Errnos are the ones rstmem.h documents, exactly.
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
		unsetenv("XDG_RUNTIME_DIR");
		CHECK_EQ(rstmem_connect(NULL, &conn), -ENOENT);
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
	CHECK_EQ(info.generation, RSTMEM_GENERATION_MAINLINE);
	CHECK_EQ(info.page_size, 4096);
	CHECK_EQ(info.heap_count, 5);
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
	CHECK_EQ(count, 5);

	struct rstmem_heap heaps[8];
	memset(heaps, 0xff, sizeof(heaps));
	count = 0;
	CHECK_EQ(rstmem_list_heaps(conn, heaps, 8, &count), 0);
	CHECK_EQ(count, 5);
	const struct rstmem_heap *svp = find_heap(heaps, count, "protected,secure-video");
	const struct rstmem_heap *tui = find_heap(heaps, count, "protected,trusted-ui");
	const struct rstmem_heap *svr = find_heap(heaps, count, "protected,secure-video-record");
	const struct rstmem_heap *system = find_heap(heaps, count, "system");
	const struct rstmem_heap *reserved = find_heap(heaps, count, "reserved");
	REQUIRE(svp && tui && svr && system && reserved);
	CHECK_STR(svp->use_case, "secure-video");
	CHECK_STR(tui->use_case, "trusted-ui");
	CHECK_STR(svr->use_case, "secure-video-record");
	CHECK_STR(system->use_case, "");
	CHECK_EQ(svp->flags, RSTMEM_HEAP_RESTRICTED | RSTMEM_HEAP_SIZES_KNOWN);
	CHECK_EQ(system->flags & (RSTMEM_HEAP_RESTRICTED | RSTMEM_HEAP_MAPPABLE), RSTMEM_HEAP_MAPPABLE);
	CHECK_EQ(svp->total_bytes, 64 << 20);
	CHECK_EQ(tui->total_bytes, 16 << 20);
	CHECK(svp->free_bytes <= svp->total_bytes);
	CHECK(svp->max_alloc_bytes > 0 && svp->max_alloc_bytes <= svp->total_bytes);
	for (size_t i = 0; i < count; i++) {
		CHECK_EQ(heaps[i].backend, RSTMEM_BACKEND_MODEL);
		CHECK_EQ(heaps[i].page_size, 4096);
	}

	/* too small an array: the first entries, the real count, -ERANGE */
	struct rstmem_heap two[3];
	memset(two, 0, sizeof(two));
	count = 0;
	CHECK_EQ(rstmem_list_heaps(conn, two, 2, &count), -ERANGE);
	CHECK_EQ(count, 5);
	CHECK_STR(two[0].name, heaps[0].name);
	CHECK_STR(two[1].name, heaps[1].name);
	CHECK_EQ(two[2].name[0], 0);	/* nothing written past capacity */

	CHECK_EQ(rstmem_list_heaps(NULL, heaps, 8, &count), -EINVAL);
	CHECK_EQ(rstmem_list_heaps(conn, heaps, 8, NULL), -EINVAL);
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

	/* by use case, default name */
	ret = rstmem_alloc(conn, "secure-video", 1 << 20, 0, NULL, &buf);
	check_buffer(ret, &buf, 1 << 20, "protected,secure-video");
	release(conn, &buf);

	/* page rounding: 5000 -> 8192 */
	ret = rstmem_alloc(conn, "trusted-ui", 5000, 0, "", &buf);
	check_buffer(ret, &buf, 8192, "protected,trusted-ui");
	release(conn, &buf);

	/* by heap, named (31 bytes: the longest name) */
	ret = rstmem_alloc(conn, "system", 4096, RSTMEM_ALLOC_BY_HEAP, "0123456789012345678901234567890", &buf);
	check_buffer(ret, &buf, 4096, "system");
	release(conn, &buf);
	ret = rstmem_alloc(conn, "protected,secure-video", 65536, RSTMEM_ALLOC_BY_HEAP, "player", &buf);
	check_buffer(ret, &buf, 65536, "protected,secure-video");
	release(conn, &buf);
	ret = rstmem_alloc(conn, "secure-video-record", 3 << 20, RSTMEM_ALLOC_BY_USE_CASE, "rec", &buf);
	check_buffer(ret, &buf, 3 << 20, "protected,secure-video-record");
	release(conn, &buf);
	ret = rstmem_alloc(conn, "reserved", 1, 0, NULL, &buf);	/* heap name, no flag */
	check_buffer(ret, &buf, 4096, "reserved");
	release(conn, &buf);

	/* client-side checks: nothing is sent */
	char target64[65], name32[33];
	memset(target64, 't', 64);
	target64[64] = '\0';
	memset(name32, 'n', 32);
	name32[32] = '\0';
	CHECK_ALLOC_FAILS(conn, target64, 4096, 0, NULL, -ENAMETOOLONG);
	target64[63] = '\0';	/* 63 bytes: fits, and names nothing */
	CHECK_ALLOC_FAILS(conn, target64, 4096, 0, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "secure-video", 4096, 0, name32, -ENAMETOOLONG);
	CHECK_ALLOC_FAILS(conn, NULL, 4096, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(NULL, "secure-video", 4096, 0, NULL, -EINVAL);
	CHECK_EQ(rstmem_alloc(conn, "secure-video", 4096, 0, NULL, NULL), -EINVAL);

	/* the daemon's answers */
	CHECK_ALLOC_FAILS(conn, "no-such-heap", 4096, 0, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "secure-video", 4096, RSTMEM_ALLOC_BY_HEAP, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "system", 4096, RSTMEM_ALLOC_BY_USE_CASE, NULL, -ENOENT);
	CHECK_ALLOC_FAILS(conn, "", 4096, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", 0, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", (uint64_t)INT64_MAX + 1, 0, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", 4096, RSTMEM_ALLOC_BY_HEAP | RSTMEM_ALLOC_BY_USE_CASE, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "secure-video", 4096, 1u << 7, NULL, -EINVAL);
	CHECK_ALLOC_FAILS(conn, "trusted-ui", 32 << 20, 0, NULL, -ENOMEM);	/* 16 MiB pool */
	/* past the uid's 4 GiB byte limit (the record heap is dynamic: no ENOMEM first) */
	CHECK_ALLOC_FAILS(conn, "secure-video-record", (4ull << 30) + 4096, 0, NULL, -EDQUOT);

	/* errors from the daemon leave the connection usable */
	ret = rstmem_alloc(conn, "secure-video", 4096, 0, NULL, &buf);
	check_buffer(ret, &buf, 4096, "protected,secure-video");
	release(conn, &buf);
}

/* The memory comes back when the last descriptor is closed, not at FREE. */
static uint64_t free_bytes(struct rstmem_conn *conn, const char *heap)
{
	struct rstmem_heap heaps[8];
	size_t count;
	REQUIRE(rstmem_list_heaps(conn, heaps, 8, &count) == 0);
	const struct rstmem_heap *h = find_heap(heaps, count, heap);
	REQUIRE(h != NULL);
	return h->free_bytes;
}

/* Waits up to 5 s for the daemon to see earlier closes; returns the last value. */
static uint64_t wait_free_bytes(struct rstmem_conn *conn, const char *heap, uint64_t expected)
{
	uint64_t now = 0;
	for (int i = 0; i < 500 && (now = free_bytes(conn, heap)) != expected; i++)
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	return now;
}

static void test_free(struct rstmem_conn *conn)
{
	struct rstmem_buffer buf;
	uint64_t before = 16 << 20;	/* trusted-ui's whole pool, once earlier buffers are released */
	CHECK_EQ(wait_free_bytes(conn, "protected,trusted-ui", before), before);
	int ret = rstmem_alloc(conn, "trusted-ui", 1 << 20, 0, NULL, &buf);
	check_buffer(ret, &buf, 1 << 20, "protected,trusted-ui");
	REQUIRE(ret >= 0);
	CHECK_EQ(free_bytes(conn, "protected,trusted-ui"), before - (1 << 20));
	CHECK_EQ(rstmem_free(conn, buf.id), 0);
	CHECK_EQ(rstmem_free(conn, buf.id), -ENOENT);	/* already freed */
	CHECK_EQ(free_bytes(conn, "protected,trusted-ui"), before - (1 << 20));	/* fd still open */
	CHECK_EQ(lseek(buf.fd, 0, SEEK_END), 1 << 20);
	close(buf.fd);
	/* release is seen asynchronously (inotify) */
	CHECK_EQ(wait_free_bytes(conn, "protected,trusted-ui", before), before);

	CHECK_EQ(rstmem_free(conn, 0), -ENOENT);
	CHECK_EQ(rstmem_free(conn, UINT64_MAX), -ENOENT);
	CHECK_EQ(rstmem_free(NULL, 1), -EINVAL);

	/* another connection's buffer is not ours to free */
	struct rstmem_conn *other = connect_or_die();
	ret = rstmem_alloc(other, "secure-video", 4096, 0, NULL, &buf);
	check_buffer(ret, &buf, 4096, "protected,secure-video");
	CHECK_EQ(rstmem_free(conn, buf.id), -ENOENT);
	CHECK_EQ(rstmem_free(other, buf.id), 0);

	/* the descriptor outlives its connection: it is the caller's */
	struct rstmem_buffer kept;
	ret = rstmem_alloc(other, "system", 12288, 0, NULL, &kept);
	check_buffer(ret, &kept, 12288, "system");
	rstmem_disconnect(other);
	CHECK_EQ(lseek(kept.fd, 0, SEEK_END), 12288);
	CHECK_EQ(rstmem_free(conn, kept.id), -ENOENT);
	close(kept.fd);
	close(buf.fd);
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
		if (rstmem_alloc(conn, "no-such-heap", 4096, 0, NULL, &buf) != -ENOENT ||
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
