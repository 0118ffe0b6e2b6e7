// SPDX-License-Identifier: MIT
/* A process left behind the VMM (daemon.h). */
#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"
#include "sys_raw.h"

int gm_daemon_fork(int fd)
{
	long pid = GM_RAW_SYSCALL(SYS_fork);
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* The intermediate child: gone at once, so init adopts ours. */
		if (GM_RAW_SYSCALL(SYS_fork) != 0)
			GM_RAW_SYSCALL(SYS_exit, 0);
		setsid();
		if (fd != 3 && GM_RAW_SYSCALL(SYS_dup3, fd, 3, O_CLOEXEC) < 0)
			GM_RAW_SYSCALL(SYS_exit_group, 1);
		GM_RAW_SYSCALL(SYS_close_range, 0U, 2U, 0U);
		GM_RAW_SYSCALL(SYS_close_range, 4U, ~0U, 0U);
		return 0;
	}
	while (waitpid((pid_t)pid, &st, __WALL) < 0 && errno == EINTR)
		;
	return 1;
}
