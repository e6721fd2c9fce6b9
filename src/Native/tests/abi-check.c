/* SPDX-License-Identifier: MIT */
/*
 * Compile-time proof that librstmem's private TEE_IOC_SHM_REGISTER_FD
 * definitions (lib/tee-register-fd.h) equal the project's cited uapi copy
 * (tests/abi/include/rstmem-uapi-ext.h, which the C# side is tested against)
 * and the ioctl numbers in the kernel ABI notes. Built for every target
 * architecture; a mismatch fails the build.
 */
#include <stddef.h>

#include "rstmem-uapi-ext.h"	/* defines the mainline struct and both numbers */
#include "tee-register-fd.h"	/* its mainline block is skipped: same guard */

#define SAME_FIELD(a, b, f) \
	_Static_assert(offsetof(struct a, f) == offsetof(struct b, f) && \
		       sizeof(((struct a *)0)->f) == sizeof(((struct b *)0)->f), #a "." #f)

/* The older 32-byte layout: ours is a copy under our own name. */
_Static_assert(sizeof(struct rstmem_tee_shm_register_fd_data_v1) ==
	       sizeof(struct tee_ioctl_shm_register_fd_data_v1), "v1 size");
SAME_FIELD(rstmem_tee_shm_register_fd_data_v1, tee_ioctl_shm_register_fd_data_v1, fd);
SAME_FIELD(rstmem_tee_shm_register_fd_data_v1, tee_ioctl_shm_register_fd_data_v1, size);
SAME_FIELD(rstmem_tee_shm_register_fd_data_v1, tee_ioctl_shm_register_fd_data_v1, flags);
SAME_FIELD(rstmem_tee_shm_register_fd_data_v1, tee_ioctl_shm_register_fd_data_v1, id);
_Static_assert(RSTMEM_TEE_IOC_SHM_REGISTER_FD_V1 == TEE_IOC_SHM_REGISTER_FD_V1, "v1 number");

/* The mainline layout here is the cited copy's; abi-check-own.c proves ours
 * against the same numbers and offsets. */
_Static_assert(TEE_IOC_SHM_REGISTER_FD == 0xC018A408u, "mainline number");
_Static_assert(sizeof(struct tee_ioctl_shm_register_fd_data) == 24, "mainline size");
_Static_assert(offsetof(struct tee_ioctl_shm_register_fd_data, flags) == 16 &&
	       offsetof(struct tee_ioctl_shm_register_fd_data, id) == 20, "mainline offsets");

/* ISO C wants a translation unit to declare something. */
extern int rstmem_abi_check;
