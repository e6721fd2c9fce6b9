/* SPDX-License-Identifier: MIT */
/*
 * rstmem-fdholder: a second process for release tests. It receives one
 * descriptor over SCM_RIGHTS on the socket whose number is argv[1], holds it,
 * and closes it when told. Protocol (one byte each way):
 *   parent -> fd (with any byte)     child -> 'R' (received; reports the fd's lseek size as text after 'R')
 *   parent -> 'C'                     child -> 'D' (closed)
 * It exits when the socket reaches end of file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int receive_fd(int sock)
{
	char byte;
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control, .msg_controllen = sizeof(control),
	};
	ssize_t n;
	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n < 0 && errno == EINTR);
	if (n <= 0 || (msg.msg_flags & MSG_CTRUNC))
		return -1;
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(fd));
	return fd;
}

static int send_text(int sock, const char *text)
{
	size_t len = strlen(text);
	return send(sock, text, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SOCKET_FD\n", argv[0]);
		return 2;
	}
	int sock = atoi(argv[1]);
	int fd = receive_fd(sock);
	if (fd < 0) {
		fprintf(stderr, "rstmem-fdholder: no descriptor received\n");
		return 1;
	}
	char reply[64];
	snprintf(reply, sizeof(reply), "R%lld\n", (long long)lseek(fd, 0, SEEK_END));
	if (send_text(sock, reply))
		return 1;
	for (;;) {
		char command;
		ssize_t n = read(sock, &command, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		if (command == 'C' && fd >= 0) {
			close(fd);
			fd = -1;
			if (send_text(sock, "D"))
				return 1;
		}
	}
}
