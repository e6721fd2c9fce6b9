/* SPDX-License-Identifier: MIT */
/*
 * A few assertion macros and descriptor helpers for librstmem's C tests.
 * A failed CHECK prints file:line and the values, counts a failure and goes
 * on; REQUIRE also stops the test. main() returns check_exit_status().
 */
#ifndef RSTMEM_TEST_CHECK_H
#define RSTMEM_TEST_CHECK_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_int check_failures;
static atomic_int check_passes;

static inline const char *check_errname(long v)
{
	static __thread char buf[64];
	if (v < 0 && v > -4096)
		snprintf(buf, sizeof(buf), "%ld (-%s)", v, strerrorname_np((int)-v) ? strerrorname_np((int)-v) : "?");
	else
		snprintf(buf, sizeof(buf), "%ld", v);
	return buf;
}

#define CHECK(cond) do { \
	if (cond) { atomic_fetch_add(&check_passes, 1); } else { \
		atomic_fetch_add(&check_failures, 1); \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
	} } while (0)

/* Compares two integers (return values, errnos) and prints both on failure. */
#define CHECK_EQ(actual, expected) do { \
	long check_a_ = (long)(actual), check_e_ = (long)(expected); \
	if (check_a_ == check_e_) { atomic_fetch_add(&check_passes, 1); } else { \
		atomic_fetch_add(&check_failures, 1); \
		fprintf(stderr, "%s:%d: CHECK failed: %s == %s: got %s", __FILE__, __LINE__, #actual, #expected, \
			check_errname(check_a_)); \
		fprintf(stderr, ", expected %s\n", check_errname(check_e_)); \
	} } while (0)

#define CHECK_STR(actual, expected) do { \
	const char *check_a_ = (actual), *check_e_ = (expected); \
	if (strcmp(check_a_, check_e_) == 0) { atomic_fetch_add(&check_passes, 1); } else { \
		atomic_fetch_add(&check_failures, 1); \
		fprintf(stderr, "%s:%d: CHECK failed: %s: got \"%s\", expected \"%s\"\n", __FILE__, __LINE__, \
			#actual, check_a_, check_e_); \
	} } while (0)

#define REQUIRE(cond) do { \
	if (!(cond)) { \
		fprintf(stderr, "%s:%d: REQUIRE failed: %s (errno %s); stopping\n", __FILE__, __LINE__, #cond, \
			strerrorname_np(errno) ? strerrorname_np(errno) : "0"); \
		exit(1); \
	} } while (0)

static inline int check_exit_status(const char *test)
{
	int failed = atomic_load(&check_failures);
	printf("%s: %d checks passed, %d failed\n", test, atomic_load(&check_passes), failed);
	return failed ? 1 : 0;
}

/* Open descriptors of this process (the directory's own one included, the
 * same way every time, so counts compare). */
static inline int count_fds(void)
{
	DIR *dir = opendir("/proc/self/fd");
	REQUIRE(dir != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

#define MAX_TRACKED_FD 4096

/* Which descriptors are open now: snapshot[fd] = true. */
static inline void fd_snapshot(bool *snapshot)
{
	memset(snapshot, 0, MAX_TRACKED_FD * sizeof(bool));
	for (int fd = 0; fd < MAX_TRACKED_FD; fd++)
		snapshot[fd] = fcntl(fd, F_GETFD) >= 0;
}

/* Every descriptor opened since @before is close-on-exec; returns how many there are. */
static inline int check_new_fds_cloexec(const bool *before, const char *what)
{
	int n = 0;
	for (int fd = 0; fd < MAX_TRACKED_FD; fd++) {
		if (before[fd])
			continue;
		int flags = fcntl(fd, F_GETFD);
		if (flags < 0)
			continue;
		n++;
		if (!(flags & FD_CLOEXEC)) {
			atomic_fetch_add(&check_failures, 1);
			fprintf(stderr, "CHECK failed: %s: new descriptor %d is not close-on-exec\n", what, fd);
		}
	}
	return n;
}

static inline bool is_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);
	return flags >= 0 && (flags & FD_CLOEXEC);
}

#endif /* RSTMEM_TEST_CHECK_H */
