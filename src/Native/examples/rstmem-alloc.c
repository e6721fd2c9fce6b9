/* SPDX-License-Identifier: MIT */
/*
 * rstmem-alloc: allocate one restricted buffer from rstmemd, show what the
 * descriptor reports, and import it into a TEE context when there is one.
 *
 *   rstmem-alloc [--socket PATH] [--name NAME] [--heap | --use-case]
 *                [--tee DEVICE] [--list] TARGET SIZE
 *
 * TARGET is a use case (secure-video, trusted-ui, secure-video-record) or a
 * heap name; SIZE is in bytes. Without --socket the default applies
 * (RSTMEMD_SOCKET, /run/rstmemd/rstmemd.sock, $XDG_RUNTIME_DIR/rstmemd.sock).
 * The TEE import uses --tee DEVICE, else /dev/tee0 if it exists.
 *
 * Build: cc rstmem-alloc.c $(pkg-config --cflags --libs rstmem)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rstmem/rstmem.h>

static void usage(FILE *out)
{
	fprintf(out, "usage: rstmem-alloc [--socket PATH] [--name NAME] [--heap | --use-case]\n"
		     "                    [--tee DEVICE] [--list] TARGET SIZE\n");
}

static int list_heaps(struct rstmem_conn *conn)
{
	struct rstmem_heap heaps[32];
	size_t count;
	int ret = rstmem_list_heaps(conn, heaps, 32, &count);
	if (ret < 0 && ret != -ERANGE) {
		fprintf(stderr, "rstmem-alloc: listing heaps: %s\n", strerror(-ret));
		return -1;
	}
	for (size_t i = 0; i < count && i < 32; i++)
		printf("heap %-30s use case %-20s %s, max alloc %" PRIu64 " bytes\n", heaps[i].name,
		       heaps[i].use_case[0] ? heaps[i].use_case : "-",
		       heaps[i].flags & RSTMEM_HEAP_RESTRICTED ? "restricted" : "mappable",
		       heaps[i].max_alloc_bytes);
	return 0;
}

/* Import into the caller's own TEE context, as a player does before it
 * passes the buffer to a trusted application (as a memref by shm id). */
static int tee_import(const char *device, int dmabuf_fd)
{
	int tee_fd = open(device, O_RDWR | O_CLOEXEC);
	if (tee_fd < 0) {
		fprintf(stderr, "rstmem-alloc: open %s: %s\n", device, strerror(errno));
		return -1;
	}
	struct rstmem_tee_shm shm;
	int ret = rstmem_tee_register(tee_fd, dmabuf_fd, &shm);
	if (ret < 0) {
		fprintf(stderr, "rstmem-alloc: TEE import on %s: %s\n", device, strerror(-ret));
		close(tee_fd);
		return -1;
	}
	printf("tee %s: shm id %" PRId32 ", size %" PRIu64 ", flags 0x%" PRIx32 ", fd %d\n",
	       device, shm.id, shm.size, shm.flags, shm.fd);
	rstmem_tee_unregister(&shm);
	close(tee_fd);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "heap", no_argument, NULL, 'H' },
		{ "use-case", no_argument, NULL, 'U' },
		{ "tee", required_argument, NULL, 't' },
		{ "list", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *socket_path = NULL, *name = NULL, *tee = NULL;
	uint32_t flags = 0;
	int list = 0, opt;
	while ((opt = getopt_long(argc, argv, "s:n:HUt:lh", options, NULL)) != -1) {
		switch (opt) {
		case 's': socket_path = optarg; break;
		case 'n': name = optarg; break;
		case 'H': flags = RSTMEM_ALLOC_BY_HEAP; break;
		case 'U': flags = RSTMEM_ALLOC_BY_USE_CASE; break;
		case 't': tee = optarg; break;
		case 'l': list = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 2;
	}
	const char *target = argv[optind];
	char *end;
	errno = 0;
	unsigned long long size = strtoull(argv[optind + 1], &end, 0);
	if (errno != 0 || *end != '\0' || argv[optind + 1][0] == '-') {
		fprintf(stderr, "rstmem-alloc: bad size '%s'\n", argv[optind + 1]);
		return 2;
	}

	struct rstmem_conn *conn;
	int ret = rstmem_connect(socket_path, &conn);
	if (ret < 0) {
		fprintf(stderr, "rstmem-alloc: connecting to rstmemd: %s\n", strerror(-ret));
		return 1;
	}
	struct rstmem_server_info info;
	rstmem_get_server_info(conn, &info);
	printf("server %s, protocol %" PRIu32 ", page size %" PRIu32 ", %" PRIu32 " heaps\n",
	       info.server, info.version, info.page_size, info.heap_count);
	if (list && list_heaps(conn) < 0) {
		rstmem_disconnect(conn);
		return 1;
	}

	struct rstmem_buffer buf;
	ret = rstmem_alloc(conn, target, size, flags, name, &buf);
	if (ret < 0) {
		fprintf(stderr, "rstmem-alloc: allocating %llu bytes for %s: %s\n", size, target, strerror(-ret));
		rstmem_disconnect(conn);
		return 1;
	}
	/* A dma-buf reports its size through lseek (drivers/dma-buf/dma-buf.c). */
	off_t seen = lseek(buf.fd, 0, SEEK_END);
	printf("buffer %" PRIu64 " from %s: size %" PRIu64 ", lseek(SEEK_END) %lld, fd %d\n",
	       buf.id, buf.heap, buf.size, (long long)seen, buf.fd);
	int status = seen == (off_t)buf.size ? 0 : 1;
	if (status)
		fprintf(stderr, "rstmem-alloc: lseek says %lld, the daemon said %" PRIu64 "\n",
			(long long)seen, buf.size);

	if (tee == NULL && access("/dev/tee0", F_OK) == 0)
		tee = "/dev/tee0";
	if (tee != NULL) {
		if (tee_import(tee, buf.fd) < 0)
			status = 1;
	} else {
		printf("no /dev/tee0: TEE import skipped\n");
	}

	ret = rstmem_free(conn, buf.id);
	if (ret < 0) {
		fprintf(stderr, "rstmem-alloc: free: %s\n", strerror(-ret));
		status = 1;
	}
	close(buf.fd);
	rstmem_disconnect(conn);
	return status;
}
