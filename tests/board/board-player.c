/* SPDX-License-Identifier: MIT */
/*
 * board-player: what a media player on the board sees of a brokered buffer.
 * Built on the board with nothing but pkg-config (tests/board/install-test.sh):
 *
 *   board-player SOCKET USE_CASE SIZE
 *
 * Allocates one buffer by use case through librstmem, prints the heap, the
 * size, the exporter from fdinfo (drivers/dma-buf/dma-buf.c dma_buf_show_fdinfo:
 * "exp_name:\t<name>") and whether mmap(2) was refused (drivers/tee/tee_heap.c's
 * dma_buf_ops have no .mmap, so drivers/dma-buf/dma-buf.c dma_buf_mmap_internal
 * answers EINVAL), then prints "holding" and keeps the buffer until its
 * standard input ends. It exits without freeing or closing anything: the
 * daemon must see the last close at the process's exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <rstmem/rstmem.h>

/* The value of "KEY:" in /proc/self/fdinfo/FD, or "" when there is none. */
static void fdinfo_field(int fd, const char *key, char *value, size_t len)
{
	char path[64], line[256];
	size_t key_len = strlen(key);
	value[0] = '\0';
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	FILE *file = fopen(path, "re");
	if (file == NULL)
		return;
	while (fgets(line, sizeof(line), file) != NULL) {
		if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
			char *start = line + key_len + 1;
			start += strspn(start, " \t");
			start[strcspn(start, "\n")] = '\0';
			snprintf(value, len, "%s", start);
			break;
		}
	}
	fclose(file);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: board-player SOCKET USE_CASE SIZE\n");
		return 2;
	}
	char *end;
	errno = 0;
	unsigned long long size = strtoull(argv[3], &end, 0);
	if (errno != 0 || *end != '\0' || argv[3][0] == '-' || size == 0) {
		fprintf(stderr, "board-player: bad size '%s': expected a positive number of bytes\n", argv[3]);
		return 2;
	}
	struct rstmem_conn *conn;
	int ret = rstmem_connect(argv[1], &conn);
	if (ret < 0) {
		fprintf(stderr, "board-player: connecting to %s: %s\n", argv[1], strerror(-ret));
		return 1;
	}
	struct rstmem_buffer buf;
	ret = rstmem_alloc(conn, argv[2], size, RSTMEM_ALLOC_BY_USE_CASE, NULL, &buf);
	if (ret < 0) {
		fprintf(stderr, "board-player: allocating %llu bytes for %s: %s\n", size, argv[2], strerror(-ret));
		return 1;
	}
	char exp_name[64];
	fdinfo_field(buf.fd, "exp_name", exp_name, sizeof(exp_name));
	printf("heap %s\nsize %" PRIu64 "\nexp_name %s\n", buf.heap, buf.size, exp_name[0] ? exp_name : "-");
	void *map = mmap(NULL, buf.size, PROT_READ, MAP_SHARED, buf.fd, 0);
	if (map == MAP_FAILED) {
		printf("mmap refused: %s\n", strerrorname_np(errno));
	} else {
		printf("mmap allowed\n");
		munmap(map, buf.size);
	}
	printf("holding\n");
	fflush(stdout);
	char sink[64];
	while (read(STDIN_FILENO, sink, sizeof(sink)) > 0)
		;
	return 0;
}
