/* SPDX-License-Identifier: MIT */
/*
 * librstmem under load, against a live rstmemd on the model:
 *  - 10,000 alloc/free/close cycles on one connection, every buffer checked
 *    (size from lseek, close-on-exec), and exactly as many descriptors open
 *    in this process afterwards as before;
 *  - 8 threads allocating concurrently on one shared connection (the
 *    per-connection lock and request_id matching), then 8 threads on 8
 *    connections; every id distinct, no descriptor left behind.
 * Sizes are in the daemon's pages (HELLO's page_size) and heap names are the
 * ones its LIST_HEAPS reports for each use case: nothing here assumes the
 * daemon's configuration or a 4 KiB page.
 */
#include "check.h"

#include <inttypes.h>
#include <pthread.h>

#include <rstmem/rstmem.h>

#define CYCLES		10000
#define THREADS		8
#define PER_THREAD	400

static const char *socket_path;

/* Sizes and targets the cycles rotate through: use cases and heaps, page
 * multiples and not. Filled in by learn_shapes(). */
#define SHAPES 5
static struct {
	char target[RSTMEM_HEAP_NAME_LEN];
	uint64_t size, expected;
	char heap[RSTMEM_HEAP_NAME_LEN];
} shapes[SHAPES];

static void shape(unsigned i, const char *target, uint64_t size, uint64_t expected, const char *heap)
{
	snprintf(shapes[i].target, sizeof(shapes[i].target), "%s", target);
	shapes[i].size = size;
	shapes[i].expected = expected;
	snprintf(shapes[i].heap, sizeof(shapes[i].heap), "%s", heap);
}

/* The page size and heap names, from the daemon. */
static void learn_shapes(void)
{
	struct rstmem_conn *conn;
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	struct rstmem_server_info info;
	REQUIRE(rstmem_get_server_info(conn, &info) == 0);
	CHECK_EQ(info.page_size, sysconf(_SC_PAGESIZE));
	const uint64_t page = info.page_size;
	struct rstmem_heap heaps[16];
	size_t count;
	REQUIRE(rstmem_list_heaps(conn, heaps, 16, &count) == 0);
	const char *svp = NULL, *tui = NULL, *plain = "system";
	for (size_t i = 0; i < count; i++) {
		if (strcmp(heaps[i].use_case, "secure-video") == 0)
			svp = heaps[i].name;
		else if (strcmp(heaps[i].use_case, "trusted-ui") == 0)
			tui = heaps[i].name;
		else if (heaps[i].use_case[0] == '\0' && strcmp(heaps[i].name, "system") != 0)
			plain = heaps[i].name;	/* the CMA heap, if there is one */
	}
	REQUIRE(svp != NULL && tui != NULL);
	shape(0, "secure-video", 16 * page, 16 * page, svp);
	shape(1, "system", page + 1, 2 * page, "system");
	shape(2, "trusted-ui", page, page, tui);
	shape(3, svp, 1, page, svp);
	shape(4, plain, 3 * page, 3 * page, plain);
	rstmem_disconnect(conn);
	printf("page size %" PRIu64 "; heaps %s, %s, %s\n", page, svp, tui, plain);
}

/* One cycle; returns the buffer id (0 on failure, already reported). */
static uint64_t cycle(struct rstmem_conn *conn, unsigned i)
{
	const unsigned s = i % SHAPES;
	struct rstmem_buffer buf;
	int ret = rstmem_alloc(conn, shapes[s].target, shapes[s].size, 0, NULL, &buf);
	if (ret < 0) {
		CHECK_EQ(ret, 0);
		fprintf(stderr, "  cycle %u: rstmem_alloc(%s, %" PRIu64 ") failed\n", i, shapes[s].target, shapes[s].size);
		return 0;
	}
	bool good = buf.fd == ret && buf.size == shapes[s].expected && strcmp(buf.heap, shapes[s].heap) == 0 &&
		    lseek(buf.fd, 0, SEEK_END) == (off_t)shapes[s].expected && is_cloexec(buf.fd) && buf.id != 0;
	if (!good) {
		CHECK(good);
		fprintf(stderr, "  cycle %u: fd %d (ret %d), size %" PRIu64 ", heap %s, lseek %lld\n", i, buf.fd, ret,
			buf.size, buf.heap, (long long)lseek(buf.fd, 0, SEEK_END));
	}
	int freed = rstmem_free(conn, buf.id);
	if (freed != 0)
		CHECK_EQ(freed, 0);
	CHECK_EQ(close(buf.fd), 0);
	return buf.id;
}

static void test_cycles(void)
{
	struct rstmem_conn *conn;
	int fds_before = count_fds();
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	CHECK_EQ(count_fds(), fds_before + 1);	/* the socket */
	uint64_t last = 0;
	int failures_before = atomic_load(&check_failures);
	for (unsigned i = 0; i < CYCLES; i++) {
		uint64_t id = cycle(conn, i);
		if (id != 0 && id <= last)	/* the daemon hands out increasing ids */
			CHECK(id > last);
		last = id ? id : last;
		if (atomic_load(&check_failures) > failures_before + 20) {
			fprintf(stderr, "too many failures; stopping the cycles at %u\n", i);
			break;
		}
	}
	CHECK_EQ(count_fds(), fds_before + 1);	/* no growth after 10,000 cycles */
	rstmem_disconnect(conn);
	CHECK_EQ(count_fds(), fds_before);
	printf("%d alloc/free cycles on one connection: descriptors %d before, %d after\n", CYCLES, fds_before,
	       count_fds());
}

struct worker {
	pthread_t thread;
	struct rstmem_conn *conn;	/* shared, or NULL: connect its own */
	unsigned index;
	uint64_t ids[PER_THREAD];
};

static pthread_barrier_t start;

static void *work(void *arg)
{
	struct worker *w = arg;
	struct rstmem_conn *conn = w->conn;
	if (conn == NULL) {
		int ret = rstmem_connect(socket_path, &conn);
		CHECK_EQ(ret, 0);
		if (ret != 0)
			conn = NULL;
	}
	pthread_barrier_wait(&start);
	for (unsigned i = 0; conn != NULL && i < PER_THREAD; i++)
		w->ids[i] = cycle(conn, w->index + i);
	if (w->conn == NULL)
		rstmem_disconnect(conn);
	return NULL;
}

static int compare_ids(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_threads(bool shared)
{
	static struct worker workers[THREADS];
	static uint64_t all[THREADS * PER_THREAD];
	struct rstmem_conn *conn = NULL;
	int fds_before = count_fds();
	if (shared)
		REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	memset(workers, 0, sizeof(workers));
	REQUIRE(pthread_barrier_init(&start, NULL, THREADS) == 0);
	for (unsigned t = 0; t < THREADS; t++) {
		workers[t].conn = conn;
		workers[t].index = t;
		REQUIRE(pthread_create(&workers[t].thread, NULL, work, &workers[t]) == 0);
	}
	for (unsigned t = 0; t < THREADS; t++)
		pthread_join(workers[t].thread, NULL);
	pthread_barrier_destroy(&start);
	if (shared) {
		/* still usable after the crowd: nothing broke the framing */
		CHECK(cycle(conn, 0) != 0);
		rstmem_disconnect(conn);
	}
	CHECK_EQ(count_fds(), fds_before);

	size_t n = 0;
	for (unsigned t = 0; t < THREADS; t++)
		for (unsigned i = 0; i < PER_THREAD; i++)
			all[n++] = workers[t].ids[i];
	qsort(all, n, sizeof(all[0]), compare_ids);
	size_t zero = 0, duplicates = 0;
	for (size_t i = 0; i < n; i++) {
		zero += all[i] == 0;
		duplicates += i > 0 && all[i] != 0 && all[i] == all[i - 1];
	}
	CHECK_EQ(zero, 0);
	CHECK_EQ(duplicates, 0);
	printf("%d threads x %d cycles on %s: %zu distinct buffers, descriptors %d before, %d after\n", THREADS,
	       PER_THREAD, shared ? "one shared connection" : "a connection each", n - zero - duplicates, fds_before,
	       count_fds());
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	socket_path = getenv("RSTMEMD_SOCKET");
	REQUIRE(socket_path != NULL);
	learn_shapes();
	test_cycles();
	test_threads(true);
	test_threads(false);
	return check_exit_status("test-stress");
}
