/* SPDX-License-Identifier: MIT */
/*
 * bench-heap: the baseline of the Linux 7.2 guest benchmark
 * (tests/kernel/bench-guest.sh): a direct DMA_HEAP_IOCTL_ALLOC on
 * /dev/dma_heap/HEAP and the close of the buffer it returns, repeated for
 * SECONDS and timed one by one, as src/Native/bench/rstmem-bench-client.c
 * times an ALLOC through rstmemd (the same warm-up, nearest-rank
 * percentiles and JSON keys), so the two compare in the same guest.
 *
 *   bench-heap HEAP SIZE SECONDS
 *
 * One line of JSON on stdout; exit status 1 on any failed allocation
 * (the errno is printed) or a usage error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <linux/dma-heap.h>

#define WARMUP 200 /* as rstmem-bench-client */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double percentile_us(const uint32_t *sorted, size_t n, unsigned int percent)
{
	size_t rank = (n * percent + 99) / 100; /* ceil(n * percent / 100), n > 0 */

	return sorted[(rank ? rank : 1) - 1] / 1000.0;
}

int main(int argc, char **argv)
{
	char path[128], *end;

	if (argc != 4) {
		fprintf(stderr, "usage: %s HEAP SIZE SECONDS\n", argv[0]);
		return 1;
	}
	errno = 0;
	unsigned long long size = strtoull(argv[2], &end, 10);
	if (errno || *end || size == 0) {
		fprintf(stderr, "bench-heap: SIZE '%s': expected a byte count above 0\n", argv[2]);
		return 1;
	}
	double seconds = strtod(argv[3], &end);
	if (*end || !(seconds > 0)) {
		fprintf(stderr, "bench-heap: SECONDS '%s': expected a number above 0\n", argv[3]);
		return 1;
	}
	if ((size_t)snprintf(path, sizeof(path), "/dev/dma_heap/%s", argv[1]) >= sizeof(path)) {
		fprintf(stderr, "bench-heap: HEAP '%s': name too long\n", argv[1]);
		return 1;
	}
	int heap = open(path, O_RDONLY | O_CLOEXEC);
	if (heap < 0) {
		fprintf(stderr, "bench-heap: open %s: %s\n", path, strerror(errno));
		return 1;
	}

	size_t cap = 1 << 16, count = 0, done = 0;
	uint32_t *lat = malloc(cap * sizeof(*lat));
	if (!lat) {
		perror("bench-heap: malloc");
		return 1;
	}
	uint64_t warm = 0, stop = 0, last = 0;
	for (;;) {
		struct dma_heap_allocation_data data = {
			.len = size,
			.fd_flags = O_RDWR | O_CLOEXEC,
		};
		uint64_t t0 = now_ns();
		if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) < 0) {
			fprintf(stderr, "bench-heap: DMA_HEAP_IOCTL_ALLOC %llu bytes on %s: %s\n",
				size, path, strerror(errno));
			return 1;
		}
		close((int)data.fd);
		uint64_t t1 = now_ns();
		last = t1;
		if (++done == WARMUP) {
			warm = t1;
			stop = t1 + (uint64_t)(seconds * 1e9);
			continue;
		}
		if (done < WARMUP)
			continue;
		if (count == cap) {
			uint32_t *grown = realloc(lat, 2 * cap * sizeof(*lat));
			if (!grown) {
				perror("bench-heap: realloc");
				return 1;
			}
			lat = grown;
			cap *= 2;
		}
		uint64_t ns = t1 - t0;
		lat[count++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
		if (t1 >= stop)
			break;
	}
	close(heap);
	qsort(lat, count, sizeof(*lat), cmp_u32);
	double measured = (last - warm) / 1e9;
	printf("{\"heap\":\"%s\",\"size\":%llu,\"seconds\":%.3f,\"round_trips\":%zu,"
	       "\"throughput_per_s\":%.1f,\"p50_us\":%.3f,\"p99_us\":%.3f}\n",
	       argv[1], size, measured, count, count / measured,
	       percentile_us(lat, count, 50), percentile_us(lat, count, 99));
	free(lat);
	return fflush(stdout) == EOF;
}
