// SPDX-License-Identifier: GPL-2.0
/*
 * protected-heap-check: proves, inside the mainline test kernel, that the
 * TEE protected DMA heaps served by drivers/tee/tee_heap.c over
 * tee-testdrv's pools behave as upstream's code says, and prints what it saw.
 *
 * Built by build-kernel.sh against the uapi headers of the same kernel tree
 * (TEE_IOC_SHM_REGISTER_FD is newer than the host's linux-libc-dev) and run
 * by smoke.sh in the guest. Prints one "ok"/"FAIL" line per check and a
 * closing "N passed, N failed"; exits non-zero when any check failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/tee.h>

#define POOL_SIZE (4u << 20) /* tee-testdrv's POOL_SIZE */
/* The flags REGISTER_FD writes back: TEE_SHM_DMA_BUF of include/linux/tee_core.h,
 * which the uapi header does not name. */
#define TEE_SHM_DMA_BUF 0x10

static int passed, failed;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (ok)
		passed++;
	else
		failed++;
}

/* Returns the dma-buf fd, or -errno. */
static int heap_alloc(const char *heap, unsigned long long len)
{
	struct dma_heap_allocation_data data = {
		.len = len,
		.fd_flags = O_RDWR | O_CLOEXEC,
	};
	char path[128];
	int heap_fd, rc;

	snprintf(path, sizeof(path), "/dev/dma_heap/%s", heap);
	heap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (heap_fd < 0)
		return -errno;
	rc = ioctl(heap_fd, DMA_HEAP_IOCTL_ALLOC, &data);
	rc = rc < 0 ? -errno : (int)data.fd;
	close(heap_fd);
	return rc;
}

/* Returns the tee_shm fd or -errno; fills *out. */
static int register_fd(int tee, long long fd, unsigned int flags,
		       struct tee_ioctl_shm_register_fd_data *out)
{
	struct tee_ioctl_shm_register_fd_data data = { .fd = fd, .flags = flags };
	int rc = ioctl(tee, TEE_IOC_SHM_REGISTER_FD, &data);

	if (out)
		*out = data;
	return rc < 0 ? -errno : rc;
}

static int mmap_errno(int fd, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		return errno;
	munmap(p, len);
	return 0;
}

static void check_version(int tee)
{
	struct tee_ioctl_version_data v = { 0 };
	int rc = ioctl(tee, TEE_IOC_VERSION, &v);

	check(rc == 0 && v.impl_id == TEE_IMPL_ID_OPTEE && v.impl_caps == TEE_OPTEE_CAP_TZ &&
	      v.gen_caps == (TEE_GEN_CAP_GP | TEE_GEN_CAP_MEMREF_NULL),
	      "TEE_IOC_VERSION: rc %d impl_id %u impl_caps 0x%x gen_caps 0x%x", rc, v.impl_id,
	      v.impl_caps, v.gen_caps);
}

static void check_heap(int tee, const char *heap)
{
	struct tee_ioctl_shm_register_fd_data reg;
	struct dma_buf_sync sync = { .flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW };
	int buf, shm, shm2, shm3, e, n, fds[8];
	off_t size;

	buf = heap_alloc(heap, 5000);
	check(buf >= 0, "%s: alloc 5000 -> %s", heap, buf >= 0 ? "fd" : strerror(-buf));
	if (buf < 0)
		return;
	size = lseek(buf, 0, SEEK_END);
	check(size == 8192, "%s: dma-buf size %lld (5000 page-rounded)", heap, (long long)size);
	e = mmap_errno(buf, 8192);
	check(e == EINVAL, "%s: mmap of the protected dma-buf refused: %s", heap, e ? strerror(e) : "mapped!");
	check(ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync) == 0, "%s: DMA_BUF_IOCTL_SYNC accepted", heap);
	check(ioctl(buf, DMA_BUF_SET_NAME_B, "rstmem-check") == 0, "%s: DMA_BUF_SET_NAME_B accepted", heap);

	/*
	 * Ids come from the device's idr, lowest free id from 1 (idr_alloc in
	 * tee_shm_register_fd): every earlier registration is closed by now.
	 */
	shm = register_fd(tee, buf, 0, &reg);
	check(shm >= 0 && reg.id == 1 && reg.size == 8192 && reg.flags == TEE_SHM_DMA_BUF,
	      "%s: TEE_IOC_SHM_REGISTER_FD -> %s, id %d, size %llu, flags 0x%x", heap,
	      shm >= 0 ? "fd" : strerror(-shm), reg.id, (unsigned long long)reg.size, reg.flags);
	if (shm >= 0) {
		check(fcntl(shm, F_GETFD) == 0, "%s: tee_shm fd is not close-on-exec", heap);
		e = mmap_errno(shm, 8192);
		check(e == EINVAL, "%s: mmap of the tee_shm fd refused: %s", heap, e ? strerror(e) : "mapped!");
	}
	shm2 = register_fd(tee, buf, 0, &reg);
	check(shm2 >= 0 && reg.id == 2, "%s: registering the same dma-buf again: a new fd, id %d", heap, reg.id);

	/* The registration holds its own reference on the dma-buf. */
	close(buf);
	if (shm >= 0)
		check(fcntl(shm, F_GETFD) == 0, "%s: tee_shm fd outlives closing the dma-buf", heap);
	if (shm >= 0)
		close(shm);
	buf = heap_alloc(heap, 4096);
	shm3 = register_fd(tee, buf, 0, &reg);
	check(shm3 >= 0 && reg.id == 1, "%s: after closing id 1, the next registration gets id %d", heap, reg.id);
	close(buf);
	if (shm2 >= 0)
		close(shm2);
	if (shm3 >= 0)
		close(shm3);

	/* A static pool of POOL_SIZE bytes holds exactly four 1 MiB buffers. */
	for (n = 0; n < 8; n++) {
		fds[n] = heap_alloc(heap, 1 << 20);
		if (fds[n] < 0)
			break;
	}
	check(n == POOL_SIZE >> 20 && n < 8 && fds[n] == -ENOMEM, "%s: pool full after %d x 1 MiB, then %s",
	      heap, n, n < 8 ? strerror(-fds[n]) : "no error");
	while (n-- > 0)
		close(fds[n]);
	buf = heap_alloc(heap, POOL_SIZE);
	check(buf >= 0, "%s: all freed: the whole pool (%u KiB) allocates again", heap, POOL_SIZE >> 10);
	if (buf >= 0)
		close(buf);
}

static void check_register_errors(int tee)
{
	struct tee_ioctl_shm_register_fd_data reg;
	int buf, sys, null_fd, rc;

	buf = heap_alloc("protected,secure-video", 4096);
	rc = register_fd(tee, buf, 1, &reg);
	check(rc == -EINVAL, "REGISTER_FD with flags 1: %s", strerror(-rc));
	close(buf);

	sys = heap_alloc("system", 4096);
	rc = register_fd(tee, sys, 0, &reg);
	check(sys >= 0 && rc == -EINVAL, "REGISTER_FD of a system-heap dma-buf: %s", strerror(-rc));
	close(sys);

	null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	rc = register_fd(tee, null_fd, 0, &reg);
	check(rc == -EINVAL, "REGISTER_FD of a non-dma-buf fd: %s", strerror(-rc));
	close(null_fd);
	rc = register_fd(tee, null_fd, 0, &reg);
	check(rc == -EINVAL, "REGISTER_FD of a closed fd: %s", strerror(-rc));
}

static void check_other_tee_ioctls(int tee)
{
	/* v4's TEE_IOC_RSTMEM_ALLOC: {u64 size; u32 flags; u32 use_case; s32 id} */
	struct { unsigned long long size; unsigned int flags, use_case; int id; } rstmem = { 4096, 0, 1, 0 };
	struct tee_ioctl_shm_alloc_data shm = { .size = 4096 };
	int rc;

	rc = ioctl(tee, _IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 10, rstmem), &rstmem);
	check(rc < 0 && errno == EINVAL, "v4 TEE_IOC_RSTMEM_ALLOC (0x%lx): %s",
	      (unsigned long)_IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 10, rstmem), rc < 0 ? strerror(errno) : "accepted!");
	rc = ioctl(tee, TEE_IOC_SHM_ALLOC, &shm);
	check(rc < 0 && errno == EINVAL, "TEE_IOC_SHM_ALLOC without a shm pool: %s",
	      rc < 0 ? strerror(errno) : "accepted!");
}

int main(void)
{
	static const char *const heaps[] = {
		"protected,secure-video", "protected,trusted-ui", "protected,secure-video-record",
	};
	int tee;
	size_t i;

	tee = open("/dev/tee0", O_RDWR | O_CLOEXEC);
	check(tee >= 0, "open /dev/tee0: %s", tee >= 0 ? "ok" : strerror(errno));
	if (tee < 0)
		goto out;
	check_version(tee);
	for (i = 0; i < sizeof(heaps) / sizeof(heaps[0]); i++)
		check_heap(tee, heaps[i]);
	check_register_errors(tee);
	check_other_tee_ioctls(tee);
	close(tee);
out:
	printf("protected-heap-check: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
