// SPDX-License-Identifier: MIT
#include "keepfd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ownfd.h"
#include "sys_raw.h"
#include "worker.h"

struct gm_keep_req {
	pid_t tid; /* whose table @fd is in */
	int fd;
	int flags;
};

static int gm_keep_open(pid_t tid, int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/fd/%d", (int)tid, fd);
	return (int)GM_RAW_SYSCALL(SYS_open, path, flags | O_CLOEXEC | O_NOCTTY, 0);
}

/* On the keeper: open the caller's @fd here. */
static long gm_keep_here(void *arg)
{
	const struct gm_keep_req *q = arg;
	int kfd = gm_keep_open(q->tid, q->fd, q->flags);

	return kfd < 0 ? -errno : kfd;
}

static long gm_drop_here(void *arg)
{
	GM_RAW_SYSCALL(SYS_close, (int)(long)arg);
	return 0;
}

/* A kfd: the number in the keeper's table, and the access mode below it. */
#define GM_KFD(n, accmode) ((n) << 2 | (accmode))
#define GM_KFD_NUM(kfd) ((kfd) >> 2)
#define GM_KFD_ACCMODE(kfd) ((kfd) & O_ACCMODE)

int gm_fd_keep(int fd)
{
	struct gm_keep_req q = { .tid = (pid_t)GM_RAW_SYSCALL(SYS_gettid), .fd = fd };
	int fl = (int)GM_RAW_SYSCALL(SYS_fcntl, fd, F_GETFL);
	long r;

	if (fl < 0)
		return -errno;
	q.flags = fl & O_ACCMODE;
	r = gm_worker_call(&gm_own_table, gm_keep_here, &q);
	return r < 0 ? (int)r : GM_KFD((int)r, q.flags);
}

int gm_fd_kept_number(int kfd)
{
	return GM_KFD_NUM(kfd);
}

int gm_fd_fetch(int kfd)
{
	pid_t tid = gm_worker_tid(&gm_own_table);
	int fd;

	if (tid <= 0) {
		errno = ESRCH; /* no keeper (a fork child's are gone) */
		return -1;
	}
	fd = gm_keep_open(tid, GM_KFD_NUM(kfd), GM_KFD_ACCMODE(kfd));
	return fd < 0 ? -1 : gm_fd_own(fd);
}

void gm_fd_drop(int kfd)
{
	if (kfd >= 0)
		gm_worker_call(&gm_own_table, gm_drop_here, (void *)(long)GM_KFD_NUM(kfd));
}
