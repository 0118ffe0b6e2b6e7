// SPDX-License-Identifier: MIT
/* guestmem's own descriptors: numbers out of the VMM's way, and their marks. */
#include "ownfd.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sys_raw.h"

_Atomic uint64_t gm_fd_marks[GM_FD_TRACKED / 64];

/*
 * ThreadSanitizer follows descriptors through libc's calls only: a number
 * closed by a raw system call and handed out again looks like a race
 * between the two threads that got it.  Its builds close through libc
 * (no preload there to refuse one of ours).
 */
#if defined(__SANITIZE_THREAD__)
#define GM_FD_CLOSE_VISIBLE 1
static int fd_close_raw(int fd)
{
	return close(fd);
}
#else
#define GM_FD_CLOSE_VISIBLE 0
static int fd_close_raw(int fd)
{
	return gm_raw_close(fd);
}
#endif

/* Decided once per process: the seccomp filter compares numbers with it. */
static int fd_floor;

int gm_fd_floor(void)
{
	int floor = __atomic_load_n(&fd_floor, __ATOMIC_RELAXED);
	struct rlimit rl;

	if (floor)
		return floor;
	floor = 512;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (long)rl.rlim_cur / 2 < floor)
		floor = rl.rlim_cur >= 2 ? (int)(rl.rlim_cur / 2) : 1;
	__atomic_store_n(&fd_floor, floor, __ATOMIC_RELAXED);
	return floor;
}

static void mark(int fd, bool on)
{
	uint64_t bit = 1ULL << (fd % 64);

	if ((unsigned)fd >= GM_FD_TRACKED)
		return;
	if (on)
		atomic_fetch_or_explicit(&gm_fd_marks[fd / 64], bit, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(&gm_fd_marks[fd / 64], ~bit, memory_order_relaxed);
}

int gm_fd_own(int fd)
{
	int floor = gm_fd_floor(), flags, nfd;

	if (fd < 0)
		return fd;
	if (fd < floor) {
		flags = gm_raw_fcntl(fd, F_GETFD, 0);
		nfd = gm_raw_fcntl(fd, (flags > 0 && (flags & FD_CLOEXEC)) ? F_DUPFD_CLOEXEC : F_DUPFD,
				   (unsigned long)floor);
		if (nfd >= 0) {
			fd_close_raw(fd);
			fd = nfd;
		}
	}
	mark(fd, true);
	return fd;
}

void gm_fd_mark_own(int fd)
{
	if (fd >= 0)
		mark(fd, true);
}

int gm_fd_own_dup(int fd)
{
	int nfd = gm_raw_fcntl(fd, F_DUPFD_CLOEXEC, (unsigned long)gm_fd_floor());

	if (nfd < 0 && errno != EBADF)
		nfd = gm_raw_fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (nfd >= 0)
		mark(nfd, true);
	return nfd;
}

/*
 * Close first, unmark after: unmarked while still open, a VMM's close of
 * that number (a close-everything loop) could close ours and then ours
 * whatever the VMM opened next there.  The other way round, a VMM that
 * gets the number in between sees EBADF from it once.
 */
int gm_fd_close(int fd)
{
	int r;

	if (fd < 0)
		return 0;
	if (GM_FD_CLOSE_VISIBLE)
		mark(fd, false);
	r = fd_close_raw(fd);
	mark(fd, false);
	return r;
}

void gm_fd_forget(int fd)
{
	if (fd >= 0)
		mark(fd, false);
}

int gm_fd_next_own(unsigned from)
{
	for (unsigned w = from / 64; w < GM_FD_TRACKED / 64; w++) {
		uint64_t m = atomic_load_explicit(&gm_fd_marks[w], memory_order_relaxed);

		if (w == from / 64)
			m &= ~0ULL << (from % 64);
		if (m)
			return (int)(w * 64 + (unsigned)__builtin_ctzll(m));
	}
	return -1;
}

bool gm_fd_any_own(unsigned lo, unsigned hi)
{
	int n = gm_fd_next_own(lo);

	return n >= 0 && (unsigned)n <= hi;
}
