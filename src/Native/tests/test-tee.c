/* SPDX-License-Identifier: MIT */
/*
 * rstmem_tee_register / rstmem_tee_unregister.
 *
 * 1. Argument and kernel error paths on this machine (no TEE needed): closed
 *    or negative descriptors are -EBADF, a descriptor that is not a TEE
 *    device is -ENOTTY (what the kernel's ioctl answers for a file without
 *    this ioctl), out NULL is -EINVAL; nothing leaks on any of them.
 * 2. Both ioctl layouts against a fake TEE: this program defines ioctl(),
 *    which interposes libc's for librstmem (the executable's definition comes
 *    first in symbol lookup), answers for one descriptor as scripted and
 *    passes every other call to the kernel. It checks the numbers (the
 *    mainline and older layouts of src/Interop/include/rstmem-uapi-ext.h,
 *    which the C# ABI proof also checks), the fields written, the fallback
 *    rule and close-on-exec.
 * 3. With RSTMEM_TEST_TEE_DEVICE=/dev/tee0 (and RSTMEMD_SOCKET naming a
 *    daemon on a real protected-memory backend), a real registration: run by
 *    hand in a guest with a mainline kernel and OP-TEE.
 */
#include "check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <rstmem/rstmem.h>

#include "rstmem-uapi-ext.h"

#define MAINLINE_NR	((unsigned long)TEE_IOC_SHM_REGISTER_FD)
#define OLDER_NR	((unsigned long)TEE_IOC_SHM_REGISTER_FD_V1)

/* ---- the fake TEE ---------------------------------------------------------- */

static struct {
	int fd;			/* the descriptor that is "a TEE"; -1: none */
	int expected_dmabuf;
	int mainline_errno;	/* 0: succeed */
	int older_errno;
	int eintr_first;	/* interrupt this many calls first */
	int mainline_calls, older_calls, other_calls;
	bool bad_argument;	/* fd or flags in the argument were wrong */
} fake = { .fd = -1 };

/* A new descriptor as the kernel's tee_shm one is: without close-on-exec. */
static int new_shm_fd(void)
{
	return open("/dev/null", O_RDWR);
}

int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	if (fd != fake.fd || fake.fd < 0)
		return (int)syscall(SYS_ioctl, fd, request, arg);

	if (fake.eintr_first > 0) {
		fake.eintr_first--;
		errno = EINTR;
		return -1;
	}
	unsigned char *p = arg;
	int64_t dmabuf;
	uint32_t flags;
	memcpy(&dmabuf, p + 0, 8);
	memcpy(&flags, p + 16, 4);
	if (request == MAINLINE_NR || request == OLDER_NR) {
		if (dmabuf != fake.expected_dmabuf || flags != 0)
			fake.bad_argument = true;
	}
	if (request == MAINLINE_NR) {
		fake.mainline_calls++;
		if (fake.mainline_errno) {
			errno = fake.mainline_errno;
			return -1;
		}
		/* mainline: fd@0 size@8 flags@16 id@20 */
		uint64_t size = 8192;
		uint32_t out_flags = 0x10;
		int32_t id = 7;
		memcpy(p + 8, &size, 8);
		memcpy(p + 16, &out_flags, 4);
		memcpy(p + 20, &id, 4);
		return new_shm_fd();
	}
	if (request == OLDER_NR) {
		fake.older_calls++;
		if (fake.older_errno) {
			errno = fake.older_errno;
			return -1;
		}
		/* older: fd@0 size@8 flags@16 id@24 */
		uint64_t size = 12288;
		uint32_t out_flags = 0x11;
		int32_t id = 9;
		memcpy(p + 8, &size, 8);
		memcpy(p + 16, &out_flags, 4);
		memcpy(p + 24, &id, 4);
		return new_shm_fd();
	}
	fake.other_calls++;
	errno = EINVAL;	/* tee_ioctl(): unknown numbers */
	return -1;
}

static void reset_fake(int tee_fd, int dmabuf_fd, int mainline_errno, int older_errno)
{
	fake.fd = tee_fd;
	fake.expected_dmabuf = dmabuf_fd;
	fake.mainline_errno = mainline_errno;
	fake.older_errno = older_errno;
	fake.eintr_first = 0;
	fake.mainline_calls = fake.older_calls = fake.other_calls = 0;
	fake.bad_argument = false;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_errors_without_tee(void)
{
	int fds_before = count_fds();
	int dmabuf = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* a descriptor number that was open and is closed, high enough not to be reused here */
	int closed = fcntl(null, F_DUPFD_CLOEXEC, 900);
	REQUIRE(dmabuf >= 0 && null >= 0 && closed >= 900);
	close(closed);
	char file_path[] = "/tmp/rstmem-tee-file.XXXXXX";
	int file = mkostemp(file_path, O_CLOEXEC);
	REQUIRE(file >= 0);
	unlink(file_path);

	struct rstmem_tee_shm shm;
	CHECK_EQ(rstmem_tee_register(null, dmabuf, NULL), -EINVAL);
	memset(&shm, 0x5a, sizeof(shm));
	CHECK_EQ(rstmem_tee_register(-1, dmabuf, &shm), -EBADF);
	CHECK_EQ(shm.fd, -1);
	CHECK_EQ(shm.id, 0);
	CHECK_EQ(rstmem_tee_register(closed, dmabuf, &shm), -EBADF);
	CHECK_EQ(rstmem_tee_register(null, -1, &shm), -EBADF);
	CHECK_EQ(rstmem_tee_register(null, closed, &shm), -EBADF);
	/* Not TEE devices: the kernel answers ENOTTY to both layouts. qemu-user
	 * forwards no ioctl it does not know and answers ENOSYS itself (7.2's
	 * linux-user/syscall.c do_ioctl), so there the library must pass that on. */
	int expected = -ENOTTY;
	struct tee_probe { int64_t fd; uint64_t size; uint32_t flags; int32_t id; } probe = { .fd = dmabuf };
	if (syscall(SYS_ioctl, null, MAINLINE_NR, &probe) < 0 && errno == ENOSYS) {
		printf("ioctl numbers unknown to this emulator give ENOSYS (qemu-user): expecting that\n");
		expected = -ENOSYS;
	}
	memset(&shm, 0x5a, sizeof(shm));
	CHECK_EQ(rstmem_tee_register(null, dmabuf, &shm), expected);
	CHECK_EQ(shm.fd, -1);
	CHECK_EQ(rstmem_tee_register(file, dmabuf, &shm), expected);
	CHECK_EQ(rstmem_tee_register(dmabuf, dmabuf, &shm), expected);

	/* unregister */
	CHECK_EQ(rstmem_tee_unregister(NULL), -EINVAL);
	shm.fd = -1;
	CHECK_EQ(rstmem_tee_unregister(&shm), -EBADF);
	shm.fd = closed;
	CHECK_EQ(rstmem_tee_unregister(&shm), -EBADF);
	CHECK_EQ(shm.fd, -1);
	shm.fd = dup(null);
	CHECK_EQ(rstmem_tee_unregister(&shm), 0);
	CHECK_EQ(shm.fd, -1);

	close(file);
	close(null);
	close(dmabuf);
	CHECK_EQ(count_fds(), fds_before);
}

static void test_fake_tee(void)
{
	int fds_before = count_fds();
	int tee = open("/dev/null", O_RDWR | O_CLOEXEC);
	int dmabuf = memfd_create("fake-dmabuf", MFD_CLOEXEC);
	REQUIRE(tee >= 0 && dmabuf >= 0);
	struct rstmem_tee_shm shm;

	/* mainline layout works: no fallback */
	reset_fake(tee, dmabuf, 0, 0);
	int ret = rstmem_tee_register(tee, dmabuf, &shm);
	CHECK(ret >= 0);
	CHECK_EQ(ret, shm.fd);
	CHECK_EQ(shm.id, 7);
	CHECK_EQ(shm.size, 8192);
	CHECK_EQ(shm.flags, 0x10);
	CHECK(is_cloexec(shm.fd));	/* set by the library; the kernel's fd is not */
	CHECK_EQ(fake.mainline_calls, 1);
	CHECK_EQ(fake.older_calls, 0);
	CHECK_EQ(rstmem_tee_unregister(&shm), 0);

	/* a kernel with the older layout only: EINVAL (unknown number) or ENOTTY */
	static const int unknown[] = { EINVAL, ENOTTY };
	for (int i = 0; i < 2; i++) {
		reset_fake(tee, dmabuf, unknown[i], 0);
		ret = rstmem_tee_register(tee, dmabuf, &shm);
		CHECK(ret >= 0);
		CHECK_EQ(shm.id, 9);
		CHECK_EQ(shm.size, 12288);
		CHECK_EQ(shm.flags, 0x11);
		CHECK(is_cloexec(shm.fd));
		CHECK_EQ(fake.mainline_calls, 1);
		CHECK_EQ(fake.older_calls, 1);
		CHECK_EQ(rstmem_tee_unregister(&shm), 0);
	}

	/* both refuse: the mainline error, unless the older one says more */
	reset_fake(tee, dmabuf, EINVAL, EINVAL);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -EINVAL);
	CHECK_EQ(shm.fd, -1);
	reset_fake(tee, dmabuf, EINVAL, ENOTTY);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -EINVAL);
	reset_fake(tee, dmabuf, ENOTTY, EINVAL);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -ENOTTY);
	reset_fake(tee, dmabuf, EINVAL, ENOMEM);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -ENOMEM);
	CHECK_EQ(fake.older_calls, 1);

	/* other mainline errors are final: no second layout */
	reset_fake(tee, dmabuf, ENOMEM, 0);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -ENOMEM);
	CHECK_EQ(fake.older_calls, 0);
	reset_fake(tee, dmabuf, EMFILE, 0);
	CHECK_EQ(rstmem_tee_register(tee, dmabuf, &shm), -EMFILE);
	CHECK_EQ(fake.older_calls, 0);

	/* EINTR is restarted */
	reset_fake(tee, dmabuf, 0, 0);
	fake.eintr_first = 3;
	ret = rstmem_tee_register(tee, dmabuf, &shm);
	CHECK(ret >= 0);
	CHECK_EQ(shm.id, 7);
	CHECK_EQ(rstmem_tee_unregister(&shm), 0);

	CHECK(!fake.bad_argument);	/* every call carried the dma-buf and flags 0 */
	CHECK_EQ(fake.other_calls, 0);
	fake.fd = -1;
	close(dmabuf);
	close(tee);
	CHECK_EQ(count_fds(), fds_before);
	printf("fake TEE: mainline layout, fallback to the older layout, errors and EINTR as documented\n");
}

/* The real thing, when asked for (RSTMEM_TEST_TEE_DEVICE). */
static void test_real_tee(const char *device)
{
	const char *socket_path = getenv("RSTMEMD_SOCKET");
	REQUIRE(socket_path != NULL);
	int fds_before = count_fds();
	struct rstmem_conn *conn;
	REQUIRE(rstmem_connect(socket_path, &conn) == 0);
	int tee = open(device, O_RDWR | O_CLOEXEC);
	REQUIRE(tee >= 0);

	struct rstmem_buffer buf;
	REQUIRE(rstmem_alloc(conn, "secure-video", 5000, 0, "rstmem-test-tee", &buf) >= 0);
	struct rstmem_tee_shm shm;
	int ret = rstmem_tee_register(tee, buf.fd, &shm);
	CHECK(ret >= 0);
	CHECK(shm.id > 0);
	CHECK_EQ(shm.size, buf.size);
	CHECK(shm.flags & 0x10);	/* TEE_SHM_DMA_BUF */
	CHECK(is_cloexec(shm.fd));
	/* the registration holds its own reference to the dma-buf */
	close(buf.fd);
	CHECK(fcntl(shm.fd, F_GETFD) >= 0);
	CHECK_EQ(rstmem_tee_unregister(&shm), 0);
	CHECK_EQ(rstmem_free(conn, buf.id), 0);

	/* a plain (system heap) buffer is not registrable */
	if (rstmem_alloc(conn, "system", 4096, RSTMEM_ALLOC_BY_HEAP, NULL, &buf) >= 0) {
		CHECK_EQ(rstmem_tee_register(tee, buf.fd, &shm), -EINVAL);
		close(buf.fd);
	}
	close(tee);
	rstmem_disconnect(conn);
	CHECK_EQ(count_fds(), fds_before);
	printf("real TEE %s: registered a protected buffer (id %" PRId32 ")\n", device, shm.id);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	test_errors_without_tee();
	test_fake_tee();
	const char *device = getenv("RSTMEM_TEST_TEE_DEVICE");
	if (device != NULL && device[0] != '\0')
		test_real_tee(device);
	else
		printf("RSTMEM_TEST_TEE_DEVICE unset: no real TEE registration on this machine\n");
	return check_exit_status("test-tee");
}
