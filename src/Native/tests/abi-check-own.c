/* SPDX-License-Identifier: MIT */
/*
 * Compile-time proof of librstmem's own mainline TEE_IOC_SHM_REGISTER_FD
 * definition (lib/tee-register-fd.h, used when the system's linux/tee.h is
 * older than Linux 6.18) against the kernel ABI notes: 24 bytes, fd@0 size@8
 * flags@16 id@20, 0xC018A408. abi-check.c covers the older layout.
 */
#include <stddef.h>

#include "tee-register-fd.h"

_Static_assert(TEE_IOC_SHM_REGISTER_FD == 0xC018A408u, "mainline number");
_Static_assert(sizeof(struct tee_ioctl_shm_register_fd_data) == 24, "mainline size");
_Static_assert(offsetof(struct tee_ioctl_shm_register_fd_data, fd) == 0, "fd at 0");
_Static_assert(offsetof(struct tee_ioctl_shm_register_fd_data, size) == 8, "size at 8");
_Static_assert(offsetof(struct tee_ioctl_shm_register_fd_data, flags) == 16, "flags at 16");
_Static_assert(offsetof(struct tee_ioctl_shm_register_fd_data, id) == 20, "id at 20");
_Static_assert(RSTMEM_TEE_IOC_SHM_REGISTER_FD_V1 == 0xC020A408u, "v1 number");
_Static_assert(offsetof(struct rstmem_tee_shm_register_fd_data_v1, flags) == 16, "v1 flags at 16");
_Static_assert(offsetof(struct rstmem_tee_shm_register_fd_data_v1, id) == 24, "v1 id at 24");

extern int rstmem_abi_check_own;
