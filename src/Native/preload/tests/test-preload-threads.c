// SPDX-License-Identifier: MIT
/*
 * librstmem-preload.so from several threads at once, run under LD_PRELOAD
 * against a model daemon (with-daemon.sh). Allocating threads each open
 * their own /dev/dma_heap/<heap> handle, plus one handle all of them share,
 * and allocate with DMA_HEAP_IOCTL_ALLOC; each thread uses its own sizes, so
 * a reply delivered to the wrong thread shows up as a wrong size. Churning
 * threads meanwhile open, dup, dup2, fcntl(F_DUPFD) and close ordinary
 * descriptors, which reuse the numbers the heap handles and buffers had.
 * Checks: every allocation succeeds with the page-rounded size it asked
 * for; every buffer is a fresh descriptor; ordinary descriptors never
 * answer as heaps (an ioctl on them gets the kernel's ENOTTY); no
 * descriptor is left over at the end besides the shim's connection.
 *
 * Not running under the shim fails: "reserved" exists only in the model.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/dma-heap.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define ALLOCATORS 6
#define CHURNERS 2
#define ROUNDS 200

static atomic_int failures;
static atomic_int done_allocating;
static int shared_heap = -1;

#define FAIL(...)                                  \
	do {                                       \
		fprintf(stderr, "FAIL: " __VA_ARGS__); \
		fputc('\n', stderr);               \
		atomic_fetch_add(&failures, 1);    \
	} while (0)

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n;
}

static void *allocator(void *arg)
{
	long id = (long)arg;
	const char *path = id % 2 ? "/dev/dma_heap/reserved" : "/dev/dma_heap/system";
	long page = sysconf(_SC_PAGESIZE);
	for (int round = 0; round < ROUNDS; round++) {
		int heap = round % 3 == 0 ? shared_heap : open(path, O_RDONLY | O_CLOEXEC);
		if (heap < 0) {
			FAIL("thread %ld: open %s: %s", id, path, strerror(errno));
			return NULL;
		}
		/* Thread id and round decide the size: 1..4 pages plus a few bytes. */
		size_t pages = (size_t)(id % 4) + 1 + (size_t)(round % 2);
		size_t len = pages * (size_t)page - 100;
		struct dma_heap_allocation_data data = { .len = len, .fd_flags = O_RDWR | O_CLOEXEC };
		if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) != 0) {
			FAIL("thread %ld round %d: DMA_HEAP_IOCTL_ALLOC of %zu bytes: %s", id, round, len, strerror(errno));
		} else {
			int fd = (int)data.fd;
			off_t size = lseek(fd, 0, SEEK_END);
			if (size != (off_t)(pages * (size_t)page))
				FAIL("thread %ld round %d: buffer fd %d is %lld bytes, expected %zu (a reply for another thread?)",
				     id, round, fd, (long long)size, pages * (size_t)page);
			if ((fcntl(fd, F_GETFD) & FD_CLOEXEC) == 0)
				FAIL("thread %ld: fd_flags O_CLOEXEC did not make the buffer close-on-exec", id);
			if (close(fd) != 0)
				FAIL("thread %ld: close(%d): %s", id, fd, strerror(errno));
		}
		if (heap != shared_heap && close(heap) != 0)
			FAIL("thread %ld: close(heap %d): %s", id, heap, strerror(errno));
	}
	return NULL;
}

static void *churner(void *arg)
{
	(void)arg;
	while (!atomic_load(&done_allocating)) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			FAIL("open /dev/null: %s", strerror(errno));
			return NULL;
		}
		int copy = dup(fd);
		int copy2 = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		int target = dup(fd);
		/* dup2 over a descriptor number that may have been a heap handle a moment ago. */
		int moved = dup2(copy, target);
		struct dma_heap_allocation_data data = { .len = 4096, .fd_flags = O_RDWR | O_CLOEXEC };
		int descriptors[] = { fd, copy, copy2, moved };
		for (size_t i = 0; i < sizeof(descriptors) / sizeof(descriptors[0]); i++) {
			errno = 0;
			if (ioctl(descriptors[i], DMA_HEAP_IOCTL_ALLOC, &data) == 0 || errno != ENOTTY)
				FAIL("ioctl on /dev/null fd %d answered as a heap (errno %d, expected ENOTTY)", descriptors[i], errno);
		}
		close(fd), close(copy), close(copy2), close(target);
	}
	return NULL;
}

int main(void)
{
	shared_heap = open("/dev/dma_heap/system", O_RDWR);
	if (shared_heap < 0) {
		fprintf(stderr, "FAIL: open /dev/dma_heap/system: %s (is librstmem-preload.so preloaded, rstmemd running?)\n",
			strerror(errno));
		return 1;
	}
	/* Counted once the shim holds its connection to rstmemd (the one descriptor it keeps). */
	int before = count_fds();
	pthread_t churners[CHURNERS], allocators[ALLOCATORS];
	for (long i = 0; i < CHURNERS; i++)
		pthread_create(&churners[i], NULL, churner, (void *)i);
	for (long i = 0; i < ALLOCATORS; i++)
		pthread_create(&allocators[i], NULL, allocator, (void *)i);
	for (int i = 0; i < ALLOCATORS; i++)
		pthread_join(allocators[i], NULL);
	atomic_store(&done_allocating, 1);
	for (int i = 0; i < CHURNERS; i++)
		pthread_join(churners[i], NULL);
	int after = count_fds();
	close(shared_heap);
	if (after != before)
		FAIL("%d descriptors open before, %d after", before, after);
	int failed = atomic_load(&failures);
	printf("%d threads x %d allocations through librstmem-preload.so, %d churning threads: %s (%d failure(s))\n",
	       ALLOCATORS, ROUNDS, CHURNERS, failed ? "FAIL" : "ok", failed);
	return failed ? 1 : 0;
}
