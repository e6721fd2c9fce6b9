/* SPDX-License-Identifier: MIT */
/*
 * Importing a dma-buf into the caller's own TEE context: the step a player
 * needs between rstmem_alloc and handing the buffer to a trusted application.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "rstmem-private.h"
#include "rstmem-uapi-ext.h"	/* src/Interop/include: TEE definitions no released header carries */

static int ioctl_restarting(int fd, unsigned long request, void *arg)
{
	int ret;
	do
		ret = ioctl(fd, request, arg);
	while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : ret;
}

/* An open descriptor? Checked up front so a closed one is EBADF whatever
 * the kernel (or an emulator that does not know the ioctl) would answer. */
static bool is_open(int fd)
{
	return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

RSTMEM_EXPORT int rstmem_tee_register(int tee_fd, int dmabuf_fd, struct rstmem_tee_shm *out)
{
	if (out == NULL)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!is_open(tee_fd) || !is_open(dmabuf_fd)) {
		rstmem_debug("TEE_IOC_SHM_REGISTER_FD: %s descriptor %d is not open",
			     is_open(tee_fd) ? "dma-buf" : "TEE", is_open(tee_fd) ? dmabuf_fd : tee_fd);
		return -EBADF;
	}

	struct tee_ioctl_shm_register_fd_data data = { .fd = dmabuf_fd, .flags = 0 };
	int shm_fd = ioctl_restarting(tee_fd, TEE_IOC_SHM_REGISTER_FD, &data);
	if (shm_fd >= 0) {
		out->id = data.id;
		out->size = data.size;
		out->flags = data.flags;
	} else if (shm_fd == -EINVAL || shm_fd == -ENOTTY) {
		/* Not this layout (tee_ioctl() answers EINVAL for an unknown
		 * number), or a real refusal: try the older vendor layout. */
		int mainline_error = shm_fd;
		struct tee_ioctl_shm_register_fd_data_v1 v1 = { .fd = dmabuf_fd, .flags = 0 };
		shm_fd = ioctl_restarting(tee_fd, TEE_IOC_SHM_REGISTER_FD_V1, &v1);
		if (shm_fd < 0) {
			int err = shm_fd == -EINVAL || shm_fd == -ENOTTY ? mainline_error : shm_fd;
			rstmem_debug("TEE_IOC_SHM_REGISTER_FD of dma-buf %d on TEE fd %d: %s (mainline layout), "
				     "%s (older 32-byte layout)", dmabuf_fd, tee_fd,
				     strerror(-mainline_error), strerror(-shm_fd));
			return err;
		}
		out->id = v1.id;
		out->size = v1.size;
		out->flags = v1.flags;
	} else {
		rstmem_debug("TEE_IOC_SHM_REGISTER_FD of dma-buf %d on TEE fd %d: %s",
			     dmabuf_fd, tee_fd, strerror(-shm_fd));
		return shm_fd;
	}

	/* The kernel's tee_shm fd is not close-on-exec (drivers/tee/tee_core.c
	 * uses plain O_RDWR); make it so, as every other descriptor here. */
	int flags = fcntl(shm_fd, F_GETFD);
	if (flags < 0 || fcntl(shm_fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
		int err = -errno;
		close(shm_fd);
		memset(out, 0, sizeof(*out));
		out->fd = -1;
		return err;
	}
	out->fd = shm_fd;
	return shm_fd;
}

RSTMEM_EXPORT int rstmem_tee_unregister(struct rstmem_tee_shm *shm)
{
	if (shm == NULL)
		return -EINVAL;
	int fd = shm->fd;
	shm->fd = -1;
	if (fd < 0 || close(fd) < 0) {
		/* close(2) on Linux releases the descriptor even on EINTR: not an error. */
		if (fd >= 0 && errno == EINTR)
			return 0;
		return fd < 0 ? -EBADF : -errno;
	}
	return 0;
}
