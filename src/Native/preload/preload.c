// SPDX-License-Identifier: MIT
/*
 * librstmem-preload.so: lets an unmodified program use /dev/dma_heap through
 * rstmemd (README "Unmodified programs", src/Native/preload/README.md).
 *
 * open() of /dev/dma_heap/<name>, for a heap rstmemd serves, returns a
 * stand-in descriptor (a memfd named "dma_heap:<name>") that this file
 * tracks; ioctl() on it goes to rstmemd as HEAP_IOCTL, which runs the
 * program's exact request on the daemon's heap node and hands back the
 * kernel's errno, bytes and new dma-buf. opendir("/dev/dma_heap") lists the
 * heaps rstmemd serves. Every other path, directory and descriptor goes
 * straight to libc: the pass-through path is one comparison (a path prefix
 * or a table slot) and allocates nothing.
 *
 * The table has one 64-bit slot per descriptor number below
 * PRELOAD_MAX_FD: its kind, the heap's index and the inode of the file the
 * slot was made for. A slot is trusted only while the descriptor still
 * refers to that inode (fstat), so a descriptor closed behind the shim's
 * back (a raw syscall, close_range in a library) and reused is never taken
 * for a heap.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/dma-buf.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

#define EXPORT __attribute__((visibility("default")))

#define HEAP_DIR "/dev/dma_heap"
#define HEAP_PREFIX HEAP_DIR "/"

#define PRELOAD_MAX_FD 65536

enum slot_kind {
	SLOT_NONE = 0,
	SLOT_HEAP = 1,		/* a stand-in for an open heap node */
	SLOT_MODEL_BUFFER = 2,	/* a dma-buf from the daemon's reference model (a memfd) */
};

/* kind in bits 56..63, heap index in 48..55, inode in 0..47. */
static uint64_t slots[PRELOAD_MAX_FD];

/* Heap names by index, appended once and never changed (slots name them by index). */
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static char heap_names[256][RSTMEM_HEAP_NAME_LEN];
static unsigned heap_name_count;

/* ---- the real functions ---------------------------------------------------- */

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_close_range)(unsigned, unsigned, int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_fcntl)(int, int, ...);
static DIR *(*real_opendir)(const char *);
static struct dirent *(*real_readdir)(DIR *);
static struct dirent64 *(*real_readdir64)(DIR *);
static int (*real_closedir)(DIR *);
static void (*real_rewinddir)(DIR *);

static void *next_symbol(const char *name)
{
	void *symbol = dlsym(RTLD_NEXT, name);
	if (symbol == NULL)
		abort();	/* libc without it: nothing sensible to forward to */
	return symbol;
}

#define RESOLVE(name) (__atomic_load_n(&real_##name, __ATOMIC_ACQUIRE) ? real_##name : resolve_##name())
#define DEFINE_RESOLVER(name)                                                              \
	static __typeof__(real_##name) resolve_##name(void)                                  \
	{                                                                                    \
		__typeof__(real_##name) f = (__typeof__(real_##name))next_symbol(#name);       \
		__atomic_store_n(&real_##name, f, __ATOMIC_RELEASE);                          \
		return f;                                                                    \
	}
DEFINE_RESOLVER(open)
DEFINE_RESOLVER(openat)
DEFINE_RESOLVER(close)
DEFINE_RESOLVER(ioctl)
DEFINE_RESOLVER(dup)
DEFINE_RESOLVER(dup2)
DEFINE_RESOLVER(dup3)
DEFINE_RESOLVER(fcntl)
DEFINE_RESOLVER(opendir)
DEFINE_RESOLVER(readdir)
DEFINE_RESOLVER(readdir64)
DEFINE_RESOLVER(closedir)
DEFINE_RESOLVER(rewinddir)

/* close_range is newer than some libcs: absent means nobody calls it. */
static int resolve_close_range_or_null(unsigned first, unsigned last, int flags)
{
	(void)first, (void)last, (void)flags;
	errno = ENOSYS;
	return -1;
}

__attribute__((constructor)) static void preload_init(void)
{
	resolve_open(), resolve_openat(), resolve_close(), resolve_ioctl(), resolve_dup(), resolve_dup2();
	resolve_dup3(), resolve_fcntl(), resolve_opendir(), resolve_readdir(), resolve_readdir64();
	resolve_closedir(), resolve_rewinddir();
	void *cr = dlsym(RTLD_NEXT, "close_range");
	__atomic_store_n(&real_close_range, cr ? (__typeof__(real_close_range))cr : resolve_close_range_or_null, __ATOMIC_RELEASE);
}

int preload_real_close(int fd) { return RESOLVE(close)(fd); }
int preload_real_fcntl_int(int fd, int cmd, int arg) { return RESOLVE(fcntl)(fd, cmd, arg); }

/* ---- the table --------------------------------------------------------------- */

static uint64_t make_slot(enum slot_kind kind, unsigned heap, uint64_t inode)
{
	return ((uint64_t)kind << 56) | ((uint64_t)(heap & 0xff) << 48) | (inode & 0xffffffffffffull);
}

static enum slot_kind slot_kind(uint64_t slot) { return (enum slot_kind)(slot >> 56); }
static unsigned slot_heap(uint64_t slot) { return (unsigned)(slot >> 48) & 0xff; }

/* The pass-through test: one relaxed load. */
static inline uint64_t peek(int fd)
{
	if (fd < 0 || fd >= PRELOAD_MAX_FD)
		return 0;
	return __atomic_load_n(&slots[fd], __ATOMIC_ACQUIRE);
}

static void set_slot(int fd, uint64_t slot)
{
	if (fd >= 0 && fd < PRELOAD_MAX_FD)
		__atomic_store_n(&slots[fd], slot, __ATOMIC_RELEASE);
}

/* The slot, if the descriptor still refers to the file it was made for. */
static uint64_t tracked(int fd)
{
	uint64_t slot = peek(fd);
	if (slot == 0)
		return 0;
	struct stat st;
	int saved = errno;
	if (fstat(fd, &st) != 0 || (st.st_ino & 0xffffffffffffull) != (slot & 0xffffffffffffull)) {
		__atomic_compare_exchange_n(&slots[fd], &slot, 0, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
		errno = saved;
		return 0;
	}
	errno = saved;
	return slot;
}

static int track(int fd, enum slot_kind kind, unsigned heap)
{
	struct stat st;
	if (fd >= PRELOAD_MAX_FD || fstat(fd, &st) != 0)
		return -1;
	set_slot(fd, make_slot(kind, heap, (uint64_t)st.st_ino));
	return 0;
}

/* The index of a heap name, added on first sight. */
static int heap_index(const char *name)
{
	pthread_mutex_lock(&names_lock);
	int found = -1;
	for (unsigned i = 0; i < heap_name_count && found < 0; i++)
		if (strcmp(heap_names[i], name) == 0)
			found = (int)i;
	if (found < 0 && heap_name_count < 256) {
		strcpy(heap_names[heap_name_count], name);	/* name < RSTMEM_HEAP_NAME_LEN: from LIST_HEAPS */
		found = (int)heap_name_count++;
	}
	pthread_mutex_unlock(&names_lock);
	return found;
}

static const char *heap_name(unsigned index)
{
	pthread_mutex_lock(&names_lock);
	const char *name = index < heap_name_count ? heap_names[index] : "";
	pthread_mutex_unlock(&names_lock);
	return name;
}

/* ---- open -------------------------------------------------------------------- */

/* The heap's name when PATH is /dev/dma_heap/<name> (one component), else NULL. */
static const char *heap_of_path(const char *path)
{
	if (path == NULL || strncmp(path, HEAP_PREFIX, sizeof(HEAP_PREFIX) - 1) != 0)
		return NULL;
	const char *name = path + sizeof(HEAP_PREFIX) - 1;
	if (name[0] == '\0' || strchr(name, '/') != NULL || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return NULL;
	return name;
}

/*
 * Opens a stand-in for heap NAME if rstmemd serves it: the descriptor, or
 * -2 to let the real open run (no daemon, or a heap it does not serve: the
 * kernel then answers as it would without the shim), or -1 with errno.
 */
static int open_heap(const char *name, int flags)
{
	struct preload_heaps heaps;
	struct preload_server server;
	if (preload_list_heaps(&heaps, &server) != 0)
		return -2;
	bool served = false;
	for (unsigned i = 0; i < heaps.count && !served; i++)
		served = strcmp(heaps.names[i], name) == 0;
	if (!served)
		return -2;
	/* A character device: O_DIRECTORY fails, O_CREAT|O_EXCL finds it there. */
	if (flags & O_DIRECTORY) {
		errno = ENOTDIR;
		return -1;
	}
	if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
		errno = EEXIST;
		return -1;
	}
	int index = heap_index(name);
	if (index < 0) {
		errno = ENFILE;
		return -1;
	}
	char label[sizeof("dma_heap:") + RSTMEM_HEAP_NAME_LEN];
	strcpy(label, "dma_heap:");
	strcat(label, name);
	int fd = memfd_create(label, (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	if (fd >= PRELOAD_MAX_FD || track(fd, SLOT_HEAP, (unsigned)index) != 0) {
		RESOLVE(close)(fd);
		errno = EMFILE;
		return -1;
	}
	if (flags & O_NONBLOCK)
		RESOLVE(fcntl)(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

static bool needs_mode(int flags) { return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; }

static int do_open(const char *path, int flags, mode_t mode)
{
	/* O_PATH opens no file to ioctl on: the kernel's answer stands. */
	const char *name = (flags & O_PATH) ? NULL : heap_of_path(path);
	if (name != NULL) {
		int fd = open_heap(name, flags);
		if (fd != -2)
			return fd;
	}
	return RESOLVE(open)(path, flags, mode);
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	/* Absolute paths only: a relative one is resolved against dirfd by the kernel. */
	const char *name = (flags & O_PATH) ? NULL : heap_of_path(path);
	if (name != NULL) {
		int fd = open_heap(name, flags);
		if (fd != -2)
			return fd;
	}
	return RESOLVE(openat)(dirfd, path, flags, mode);
}

#define MODE_ARG(flags, mode)                        \
	mode_t mode = 0;                             \
	if (needs_mode(flags)) {                     \
		va_list ap;                          \
		va_start(ap, flags);                 \
		mode = (mode_t)va_arg(ap, unsigned); \
		va_end(ap);                          \
	}

EXPORT int open(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode)
	return do_open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	MODE_ARG(flags, mode)
	return do_open(path, flags | O_LARGEFILE, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode)
	return do_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags, mode)
	return do_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

/* The _FORTIFY_SOURCE entry points: glibc calls them for open() without a mode. */
EXPORT int __open_2(const char *path, int flags) { return do_open(path, flags, 0); }
EXPORT int __open64_2(const char *path, int flags) { return do_open(path, flags | O_LARGEFILE, 0); }
EXPORT int __openat_2(int dirfd, const char *path, int flags) { return do_openat(dirfd, path, flags, 0); }
EXPORT int __openat64_2(int dirfd, const char *path, int flags) { return do_openat(dirfd, path, flags | O_LARGEFILE, 0); }

/* ---- ioctl -------------------------------------------------------------------- */

/* dma_buf_ioctl's DMA_BUF_IOCTL_SYNC checks (drivers/dma-buf/dma-buf.c), for the model's buffers. */
static int model_buffer_sync(void *arg)
{
	struct dma_buf_sync sync;
	if (arg == NULL) {
		errno = EFAULT;
		return -1;
	}
	memcpy(&sync, arg, sizeof(sync));
	if ((sync.flags & ~(uint64_t)DMA_BUF_SYNC_VALID_FLAGS_MASK) != 0 || (sync.flags & DMA_BUF_SYNC_RW) == 0) {
		errno = EINVAL;
		return -1;
	}
	/* system_heap/cma_heap begin/end_cpu_access sync caches and return 0; tee_heap has none (0). */
	return 0;
}

static int heap_ioctl(int fd, uint64_t slot, unsigned long request, void *arg)
{
	uint32_t cmd = (uint32_t)request;	/* the kernel takes an unsigned int */
	switch (cmd) {
	case FIOCLEX:
	case FIONCLEX:
	case FIONBIO:
	case FIOASYNC:
		/* do_vfs_ioctl (fs/ioctl.c) handles these on the open file: the stand-in is that file. */
		return RESOLVE(ioctl)(fd, request, arg);
	}
	uint32_t size = _IOC_DIR(cmd) == _IOC_NONE ? 0 : _IOC_SIZE(cmd);
	if (size > 0 && arg == NULL) {
		errno = EFAULT;	/* copy_from_user of NULL */
		return -1;
	}
	char name[RSTMEM_HEAP_NAME_LEN];
	strcpy(name, heap_name(slot_heap(slot)));
	struct preload_ioctl_result result;
	struct preload_server server;
	int err = preload_heap_ioctl(name, cmd, arg, size, &result, &server);
	if (err) {
		/* The daemon went away: the node cannot be reached any more. */
		errno = err == -ENOMEM ? ENOMEM : ENODEV;
		return -1;
	}
	if (result.status) {
		errno = result.status;
		return -1;
	}
	if (result.fd >= 0 && server.backend == RSTMEM_BACKEND_MODEL)
		track(result.fd, SLOT_MODEL_BUFFER, 0);
	if (result.error) {
		errno = result.error;
		return -1;
	}
	return result.result;
}

EXPORT int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (__builtin_expect(peek(fd) == 0, 1))
		return RESOLVE(ioctl)(fd, request, arg);
	uint64_t slot = tracked(fd);
	if (slot_kind(slot) == SLOT_HEAP)
		return heap_ioctl(fd, slot, request, arg);
	if (slot_kind(slot) == SLOT_MODEL_BUFFER && (uint32_t)request == DMA_BUF_IOCTL_SYNC)
		return model_buffer_sync(arg);
	return RESOLVE(ioctl)(fd, request, arg);
}

/* ---- close and dup ------------------------------------------------------------- */

EXPORT int close(int fd)
{
	if (peek(fd) != 0)
		set_slot(fd, 0);
	return RESOLVE(close)(fd);
}

EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	int (*real)(unsigned, unsigned, int) = __atomic_load_n(&real_close_range, __ATOMIC_ACQUIRE);
	if (real == NULL) {
		preload_init();
		real = real_close_range;
	}
	int r = real(first, last, flags);
	/* After the close: a slot left for a closed descriptor fails tracked()'s inode check anyway. */
	if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
		for (unsigned fd = first; fd <= last && fd < PRELOAD_MAX_FD; fd++)
			if (peek((int)fd) != 0)
				set_slot((int)fd, 0);
	return r;
}

/* NEWFD now refers to what OLDFD does: it inherits OLDFD's slot. */
static int copied(int oldfd, int newfd)
{
	if (newfd >= 0 && newfd != oldfd) {
		uint64_t slot = peek(oldfd);
		if (slot != 0 || peek(newfd) != 0)
			set_slot(newfd, slot);
	}
	return newfd;
}

EXPORT int dup(int fd) { return copied(fd, RESOLVE(dup)(fd)); }
EXPORT int dup2(int oldfd, int newfd) { return copied(oldfd, RESOLVE(dup2)(oldfd, newfd)); }
EXPORT int dup3(int oldfd, int newfd, int flags) { return copied(oldfd, RESOLVE(dup3)(oldfd, newfd, flags)); }

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);	/* int and pointer arguments are both passed on in a register */
	va_end(ap);
	int r = RESOLVE(fcntl)(fd, cmd, arg);
	if (r >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC))
		copied(fd, r);
	return r;
}

EXPORT int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/* ---- stat and access: the listing's entries exist ------------------------------ */

/*
 * Asked only after the real call failed with ENOENT, so a machine's real
 * nodes are reported as they are: 1 when PATH is /dev/dma_heap and rstmemd
 * answers, 2 when PATH is a heap rstmemd serves, else 0.
 */
static int synthetic(const char *path)
{
	if (path == NULL || strncmp(path, HEAP_DIR, sizeof(HEAP_DIR) - 1) != 0)
		return 0;
	struct preload_heaps heaps;
	struct preload_server server;
	const char *name = heap_of_path(path);
	bool dir = strcmp(path, HEAP_DIR) == 0 || strcmp(path, HEAP_DIR "/") == 0;
	if ((!dir && name == NULL) || preload_list_heaps(&heaps, &server) != 0)
		return 0;
	if (dir)
		return 1;
	for (unsigned i = 0; i < heaps.count; i++)
		if (strcmp(heaps.names[i], name) == 0)
			return 2;
	return 0;
}

/* A directory, or a character device this process may read and write (through the shim). */
#define SYNTHETIC_MODE(kind) ((kind) == 1 ? (S_IFDIR | 0755) : (S_IFCHR | 0666))
#define FILL_STAT(st, kind)                                  	do {                                                 		memset((st), 0, sizeof(*(st)));              		(st)->st_mode = SYNTHETIC_MODE(kind);        		(st)->st_nlink = (kind) == 1 ? 2 : 1;        		(st)->st_blksize = 4096;                     	} while (0)

static int (*real_stat)(const char *, struct stat *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_fstatat64)(int, const char *, struct stat64 *, int);
static int (*real_statx)(int, const char *, int, unsigned, struct statx *);
static int (*real_access)(const char *, int);
static int (*real_faccessat)(int, const char *, int, int);
DEFINE_RESOLVER(stat)
DEFINE_RESOLVER(lstat)
DEFINE_RESOLVER(stat64)
DEFINE_RESOLVER(lstat64)
DEFINE_RESOLVER(fstatat)
DEFINE_RESOLVER(fstatat64)
DEFINE_RESOLVER(statx)
DEFINE_RESOLVER(access)
DEFINE_RESOLVER(faccessat)

/* After a real call R on PATH: fill *ST for a synthetic entry, else R as it was. */
#define STAT_FALLBACK(r, path, st)                           	do {                                                 		if ((r) != 0 && errno == ENOENT) {           			int kind_ = synthetic(path);         			if (kind_) {                         				FILL_STAT(st, kind_);        				return 0;                    			}                                    			errno = ENOENT;                      		}                                            		return (r);                                  	} while (0)

EXPORT int stat(const char *path, struct stat *st) { int r = RESOLVE(stat)(path, st); STAT_FALLBACK(r, path, st); }
EXPORT int lstat(const char *path, struct stat *st) { int r = RESOLVE(lstat)(path, st); STAT_FALLBACK(r, path, st); }
EXPORT int stat64(const char *path, struct stat64 *st) { int r = RESOLVE(stat64)(path, st); STAT_FALLBACK(r, path, st); }
EXPORT int lstat64(const char *path, struct stat64 *st) { int r = RESOLVE(lstat64)(path, st); STAT_FALLBACK(r, path, st); }
EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int r = RESOLVE(fstatat)(dirfd, path, st, flags);
	STAT_FALLBACK(r, path, st);
}
EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	int r = RESOLVE(fstatat64)(dirfd, path, st, flags);
	STAT_FALLBACK(r, path, st);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *stx)
{
	int r = RESOLVE(statx)(dirfd, path, flags, mask, stx);
	if (r != 0 && errno == ENOENT) {
		int kind = synthetic(path);
		if (kind) {
			memset(stx, 0, sizeof(*stx));
			stx->stx_mask = STATX_TYPE | STATX_MODE | STATX_NLINK;
			stx->stx_mode = SYNTHETIC_MODE(kind);
			stx->stx_nlink = kind == 1 ? 2 : 1;
			stx->stx_blksize = 4096;
			return 0;
		}
		errno = ENOENT;
	}
	return r;
}

EXPORT int access(const char *path, int mode)
{
	int r = RESOLVE(access)(path, mode);
	if (r != 0 && errno == ENOENT) {
		if (synthetic(path))
			return 0;
		errno = ENOENT;
	}
	return r;
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	int r = RESOLVE(faccessat)(dirfd, path, mode, flags);
	if (r != 0 && errno == ENOENT) {
		if (synthetic(path))
			return 0;
		errno = ENOENT;
	}
	return r;
}

/* ---- /dev/dma_heap as a directory ---------------------------------------------- */

/*
 * A listing of the heaps rstmemd serves. glibc's DIR begins with its
 * descriptor, so the real dirfd() works on this one too: it holds an
 * O_PATH descriptor of /dev (the node itself may not exist).
 */
struct heap_dir {
	int fd;
	uint32_t magic;
	unsigned position;
	unsigned count;	/* entries, "." and ".." included */
	struct dirent entries[PRELOAD_MAX_HEAPS + 2];
	struct dirent64 entries64[PRELOAD_MAX_HEAPS + 2];
};

#define HEAP_DIR_MAGIC 0x72736864u	/* "dhsr" */

/* Live listings, so readdir tells them from libc's DIRs without touching those. */
static pthread_mutex_t dirs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct heap_dir *dirs[16];
static unsigned live_dirs;	/* read without the lock for the pass-through test */

static struct heap_dir *ours(DIR *d)
{
	if (__atomic_load_n(&live_dirs, __ATOMIC_ACQUIRE) == 0 || d == NULL)
		return NULL;
	struct heap_dir *found = NULL;
	pthread_mutex_lock(&dirs_lock);
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (dirs[i] == (struct heap_dir *)d)
			found = dirs[i];
	pthread_mutex_unlock(&dirs_lock);
	return found;
}

static void add_entry(struct heap_dir *dir, const char *name, unsigned char type)
{
	unsigned i = dir->count++;
	struct dirent *e = &dir->entries[i];
	struct dirent64 *e64 = &dir->entries64[i];
	memset(e, 0, sizeof(*e));
	memset(e64, 0, sizeof(*e64));
	e->d_ino = e64->d_ino = i + 1;
	e->d_off = e64->d_off = i + 1;
	e->d_reclen = sizeof(*e);
	e64->d_reclen = sizeof(*e64);
	e->d_type = e64->d_type = type;
	strncpy(e->d_name, name, sizeof(e->d_name) - 1);
	strncpy(e64->d_name, name, sizeof(e64->d_name) - 1);
}

EXPORT DIR *opendir(const char *path)
{
	if (strcmp(path, HEAP_DIR) != 0 && strcmp(path, HEAP_DIR "/") != 0)
		return RESOLVE(opendir)(path);
	struct preload_heaps heaps;
	struct preload_server server;
	if (preload_list_heaps(&heaps, &server) != 0)
		return RESOLVE(opendir)(path);	/* no daemon: the real directory, if any */
	struct heap_dir *dir = calloc(1, sizeof(*dir));
	if (dir == NULL)
		return NULL;
	dir->magic = HEAP_DIR_MAGIC;
	dir->fd = RESOLVE(open)("/dev", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dir->fd < 0) {
		int saved = errno;
		free(dir);
		errno = saved;
		return NULL;
	}
	add_entry(dir, ".", DT_DIR);
	add_entry(dir, "..", DT_DIR);
	for (unsigned i = 0; i < heaps.count; i++)
		add_entry(dir, heaps.names[i], DT_CHR);
	pthread_mutex_lock(&dirs_lock);
	bool placed = false;
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && !placed; i++)
		if (dirs[i] == NULL) {
			dirs[i] = dir;
			placed = true;
		}
	if (placed)
		__atomic_add_fetch(&live_dirs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&dirs_lock);
	if (!placed) {
		RESOLVE(close)(dir->fd);
		free(dir);
		errno = EMFILE;
		return NULL;
	}
	return (DIR *)dir;
}

EXPORT struct dirent *readdir(DIR *d)
{
	struct heap_dir *dir = ours(d);
	if (dir == NULL)
		return RESOLVE(readdir)(d);
	return dir->position < dir->count ? &dir->entries[dir->position++] : NULL;
}

EXPORT struct dirent64 *readdir64(DIR *d)
{
	struct heap_dir *dir = ours(d);
	if (dir == NULL)
		return RESOLVE(readdir64)(d);
	return dir->position < dir->count ? &dir->entries64[dir->position++] : NULL;
}

EXPORT void rewinddir(DIR *d)
{
	struct heap_dir *dir = ours(d);
	if (dir == NULL) {
		RESOLVE(rewinddir)(d);
		return;
	}
	dir->position = 0;
}

EXPORT int closedir(DIR *d)
{
	struct heap_dir *dir = ours(d);
	if (dir == NULL)
		return RESOLVE(closedir)(d);
	pthread_mutex_lock(&dirs_lock);
	for (unsigned i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (dirs[i] == dir)
			dirs[i] = NULL;
	__atomic_sub_fetch(&live_dirs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&dirs_lock);
	RESOLVE(close)(dir->fd);
	free(dir);
	return 0;
}
