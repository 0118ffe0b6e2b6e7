// SPDX-License-Identifier: MIT
/*
 * test_ownfd: guestmem's own descriptors (src/lib/ownfd.h) are moved above
 * the floor, marked for exactly as long as they are open, and treated as
 * not open by the C API's file calls (guestmem_sys_*).
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <guestmem/sys.h>

#include "harness.h"
#include "lib/ownfd.h"

TEST(own_moves_above_the_floor_and_keeps_cloexec)
{
	int floor = gm_fd_floor(), a, b;

	ASSERT_TRUE(floor > 2);
	a = gm_fd_own(eventfd(0, EFD_CLOEXEC));
	ASSERT_TRUE(a >= floor);
	ASSERT_TRUE(gm_fd_is_own(a));
	ASSERT_EQ(fcntl(a, F_GETFD), FD_CLOEXEC);
	b = gm_fd_own(eventfd(0, 0));
	ASSERT_TRUE(b > a);
	ASSERT_EQ(fcntl(b, F_GETFD), 0);
	ASSERT_EQ(gm_fd_next_own(0), a);
	ASSERT_EQ(gm_fd_next_own((unsigned)a + 1), b);
	ASSERT_TRUE(gm_fd_any_own((unsigned)a, (unsigned)a));
	ASSERT_TRUE(!gm_fd_any_own(0, (unsigned)a - 1));
	ASSERT_EQ(gm_fd_close(a), 0);
	ASSERT_TRUE(!gm_fd_is_own(a));
	ASSERT_ERRNO(fcntl(a, F_GETFD), EBADF); /* really closed */
	ASSERT_EQ(gm_fd_next_own(0), b);
	ASSERT_EQ(gm_fd_close(b), 0);
	ASSERT_EQ(gm_fd_next_own(0), -1);
	/* Errors pass through: gm_fd_own(memfd_create(...)) style. */
	ASSERT_EQ(gm_fd_own(-1), -1);
}

TEST(dup_of_anothers_fd)
{
	int p[2], d;

	ASSERT_EQ(pipe(p), 0);
	d = gm_fd_own_dup(p[0]);
	ASSERT_TRUE(d >= gm_fd_floor());
	ASSERT_TRUE(gm_fd_is_own(d) && !gm_fd_is_own(p[0]));
	ASSERT_EQ(fcntl(d, F_GETFD), FD_CLOEXEC);
	ASSERT_ERRNO(gm_fd_own_dup(1 << 19), EBADF);
	gm_fd_close(d);
	close(p[0]);
	close(p[1]);
}

TEST(c_api_file_calls_see_no_such_fd)
{
	int fd = gm_fd_own(eventfd(0, EFD_CLOEXEC)), other;
	uint64_t v = 1;

	ASSERT_TRUE(fd >= 0);
	ASSERT_ERRNO(guestmem_sys_write(fd, &v, sizeof(v)), EBADF);
	ASSERT_ERRNO(guestmem_sys_fcntl(fd, F_GETFL), EBADF);
	ASSERT_ERRNO(guestmem_sys_close(fd), EBADF);
	ASSERT_TRUE(gm_fd_is_own(fd));
	ASSERT_EQ(write(fd, &v, sizeof(v)), (ssize_t)sizeof(v)); /* still open */
	/* A number that is not ours is the kernel's business. */
	other = eventfd(0, EFD_CLOEXEC);
	ASSERT_EQ(guestmem_sys_write(other, &v, sizeof(v)), (ssize_t)sizeof(v));
	ASSERT_EQ(guestmem_sys_close(other), 0);
	gm_fd_close(fd);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
