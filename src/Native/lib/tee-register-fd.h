/* SPDX-License-Identifier: MIT */
/*
 * TEE_IOC_SHM_REGISTER_FD, private to librstmem: Debian 12's linux-libc-dev
 * (6.1) predates it. Newer uapi headers win (the #ifndef guard).
 *
 *  - mainline: "tee: add TEE_IOC_SHM_REGISTER_FD" (Etienne Carriere / Olivier
 *    Masse), merged for Linux 6.18, include/uapi/linux/tee.h:
 *    24 bytes, _IOWR(0xa4, 8, ...) = 0xC018A408.
 *  - the older out-of-tree layout (NXP, 2022) that vendor kernels and
 *    strace's tee.c carry: the same fields padded to 32 bytes
 *    (fd@0 size@8 flags@16 id@24), _IOWR(0xa4, 8, ...) = 0xC020A408.
 *
 * Both are transcribed from tests/abi/include/rstmem-uapi-ext.h (the project's
 * cited copy); tests/abi-check.c compiles against both and proves them equal.
 * Observed on a mainline kernel (docs in /work/shared/reference/abi.md): flags
 * must be 0 (else EINVAL), every registration failure is EINVAL, the kernel
 * writes back id, size (page-aligned) and flags (TEE_SHM_DMA_BUF, 0x10) and
 * returns a new tee_shm fd that is not close-on-exec. tee_ioctl() dispatches
 * on the exact 32-bit number, so a kernel without a layout answers EINVAL.
 */
#ifndef RSTMEM_TEE_REGISTER_FD_H
#define RSTMEM_TEE_REGISTER_FD_H

#include <linux/ioctl.h>
#include <linux/tee.h>
#include <linux/types.h>

#ifndef TEE_IOC_SHM_REGISTER_FD
struct tee_ioctl_shm_register_fd_data {
	__s64 fd;
	__u64 size;
	__u32 flags;
	__s32 id;
} __attribute__((aligned(8)));

#define TEE_IOC_SHM_REGISTER_FD	_IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 8, \
				      struct tee_ioctl_shm_register_fd_data)
#endif

struct rstmem_tee_shm_register_fd_data_v1 {
	__s64 fd;
	__u64 size;
	__u32 flags;
	__u8 _pad1[4];
	__s32 id;
	__u8 _pad2[4];
} __attribute__((aligned(8)));

#define RSTMEM_TEE_IOC_SHM_REGISTER_FD_V1 _IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 8, \
						struct rstmem_tee_shm_register_fd_data_v1)

_Static_assert(sizeof(struct tee_ioctl_shm_register_fd_data) == 24, "mainline layout is 24 bytes");
_Static_assert(sizeof(struct rstmem_tee_shm_register_fd_data_v1) == 32, "older layout is 32 bytes");

#endif /* RSTMEM_TEE_REGISTER_FD_H */
