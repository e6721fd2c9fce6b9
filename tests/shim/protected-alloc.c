// SPDX-License-Identifier: MIT
/*
 * protected-alloc HEAP: what a media player does with a protected heap,
 * unmodified: open /dev/dma_heap/HEAP, DMA_HEAP_IOCTL_ALLOC 5000 bytes, and
 * look at the buffer. Run by tests/shim/guest-mainline.sh as the unprivileged
 * user nobody, with and without the preload shim. Prints one line:
 *   open: ERRNO_NAME                       (exit 2)
 *   alloc: ERRNO_NAME                      (exit 3)
 *   buffer size=N exp_name=NAME mmap=RESULT (exit 0)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/dma-heap.h>

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: protected-alloc HEAP (a name under /dev/dma_heap)\n");
		return 64;
	}
	char path[256];
	snprintf(path, sizeof(path), "/dev/dma_heap/%s", argv[1]);
	int heap = open(path, O_RDONLY | O_CLOEXEC);
	if (heap < 0) {
		printf("open: %s\n", strerrorname_np(errno));
		return 2;
	}
	struct dma_heap_allocation_data data = { .len = 5000, .fd_flags = O_RDWR | O_CLOEXEC };
	if (ioctl(heap, DMA_HEAP_IOCTL_ALLOC, &data) != 0) {
		printf("alloc: %s\n", strerrorname_np(errno));
		return 3;
	}
	int fd = (int)data.fd;
	off_t size = lseek(fd, 0, SEEK_END);
	char fdinfo[64], line[256], exp_name[64] = "?";
	snprintf(fdinfo, sizeof(fdinfo), "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(fdinfo, "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "exp_name: %63s", exp_name) == 1)
			break;
	if (f != NULL)
		fclose(f);
	void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	const char *mapped = p == MAP_FAILED ? strerrorname_np(errno) : "mapped";
	if (p != MAP_FAILED)
		munmap(p, (size_t)size);
	printf("buffer size=%lld exp_name=%s mmap=%s\n", (long long)size, exp_name, mapped);
	close(fd);
	close(heap);
	return 0;
}
