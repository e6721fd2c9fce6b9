/* SPDX-License-Identifier: MIT */
/*
 * librstmem-preload.so internals: the descriptor table (preload.c) and the
 * small rstmemd client (client.c). Nothing here is exported.
 */
#ifndef RSTMEM_PRELOAD_H
#define RSTMEM_PRELOAD_H

#include <stddef.h>
#include <stdint.h>

#include "rstmem/protocol.h"

#define PRELOAD_HIDDEN __attribute__((visibility("hidden")))

/* The heaps one LIST_HEAPS reply named, in the daemon's order. */
#define PRELOAD_MAX_HEAPS 64

struct preload_heaps {
	unsigned count;
	char names[PRELOAD_MAX_HEAPS][RSTMEM_HEAP_NAME_LEN];
};

/* The daemon's facts from HELLO. */
struct preload_server {
	uint32_t backend;	/* enum rstmem_backend */
};

/*
 * What HEAP_IOCTL returned. status != 0: the daemon did not run the request
 * (no heap, policy, quota, no daemon): the program's ioctl fails with it.
 * Else error/result are the kernel's, arg holds the argument as the kernel
 * left it (arg_size bytes), and fd >= 0 is the new buffer, its number
 * already written into arg at fd_offset.
 */
struct preload_ioctl_result {
	int status;
	int error;
	int result;
	int fd;
};

/* Every call below is thread-safe (one connection per process behind a
 * mutex, reopened in a forked child) and returns 0 or -errno. */
PRELOAD_HIDDEN int preload_list_heaps(struct preload_heaps *heaps, struct preload_server *server);
PRELOAD_HIDDEN int preload_heap_ioctl(const char *heap, uint32_t request, void *arg, uint32_t arg_size,
				      struct preload_ioctl_result *out, struct preload_server *server);

/* The real libc functions the client uses (resolved by preload.c). */
PRELOAD_HIDDEN int preload_real_close(int fd);
PRELOAD_HIDDEN int preload_real_fcntl_int(int fd, int cmd, int arg);

#endif /* RSTMEM_PRELOAD_H */
