/* SPDX-License-Identifier: MIT */
/*
 * Kernel ABI definitions that are not in Debian 12's linux-libc-dev (6.1)
 * headers, transcribed for the ABI proof. Each block cites where it comes
 * from; each is guarded so newer headers that carry the definition win.
 *
 *  - v4 restricted memory: "[PATCH v4 1/6] tee: add restricted memory
 *    allocation" (Jens Wiklander, Dec 2024), include/uapi/linux/tee.h hunk.
 *    Never merged; carried by vendor kernels.
 *  - mainline protected memory: TEE_IOC_SHM_REGISTER_FD ("tee: add
 *    TEE_IOC_SHM_REGISTER_FD", Etienne Carriere / Olivier Masse, merged for
 *    Linux 6.18), TSTEE/QTEE impl ids, TEE_GEN_CAP_OBJREF and
 *    TEE_IOC_OBJECT_INVOKE (QTEE, 6.18).
 *  - the older out-of-tree TEE_IOC_SHM_REGISTER_FD layout (NXP, 2022), as
 *    vendor kernels and strace's tee.c carry it: 32 bytes, padded fields.
 *  - TEE_SHM_DMA_BUF: kernel-internal include/linux/tee_core.h flag that
 *    TEE_IOC_SHM_REGISTER_FD writes back (0x10).
 */
#ifndef RSTMEM_UAPI_EXT_H
#define RSTMEM_UAPI_EXT_H

#include <linux/ioctl.h>
#include <linux/tee.h>
#include <linux/types.h>

/* ---- v4 series: TEE_IOC_RSTMEM_ALLOC ---------------------------------- */
#ifndef TEE_IOC_RSTMEM_ALLOC
#define TEE_GEN_CAP_RSTMEM		(1 << 4) /* Supports restricted memory */

#define TEE_IOC_UC_RESERVED		0
#define TEE_IOC_UC_SECURE_VIDEO_PLAY	1
#define TEE_IOC_UC_TRUSTED_UI		2
#define TEE_IOC_UC_SECURE_VIDEO_RECORD	3

struct tee_ioctl_rstmem_alloc_data {
	__u64 size;
	__u32 flags;
	__u32 use_case;
	__s32 id;
};

#define TEE_IOC_RSTMEM_ALLOC	_IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 10, \
				      struct tee_ioctl_rstmem_alloc_data)
#endif

/* ---- mainline (6.18+) ------------------------------------------------- */
#ifndef TEE_IMPL_ID_TSTEE
#define TEE_IMPL_ID_TSTEE	3
#endif
#ifndef TEE_IMPL_ID_QTEE
#define TEE_IMPL_ID_QTEE	4
#endif
#ifndef TEE_GEN_CAP_OBJREF
#define TEE_GEN_CAP_OBJREF	(1 << 4) /* Supports generic object reference */
#endif

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

#ifndef TEE_IOC_OBJECT_INVOKE
#define TEE_IOC_OBJECT_INVOKE	_IOR(TEE_IOC_MAGIC, TEE_IOC_BASE + 10, \
				     struct tee_ioctl_buf_data)
#endif

/* ---- the older out-of-tree register-fd layout -------------------------- */
struct tee_ioctl_shm_register_fd_data_v1 {
	__s64 fd;
	__u64 size;
	__u32 flags;
	__u8 _pad1[4];
	__s32 id;
	__u8 _pad2[4];
} __attribute__((aligned(8)));

#define TEE_IOC_SHM_REGISTER_FD_V1 _IOWR(TEE_IOC_MAGIC, TEE_IOC_BASE + 8, \
					 struct tee_ioctl_shm_register_fd_data_v1)

/* ---- kernel-internal, observable through REGISTER_FD's written-back flags */
#ifndef TEE_SHM_DMA_BUF
#define TEE_SHM_DMA_BUF		(1 << 4)
#endif

#endif /* RSTMEM_UAPI_EXT_H */
