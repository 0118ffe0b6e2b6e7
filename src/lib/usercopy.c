// SPDX-License-Identifier: MIT
/*
 * copy_from_user / copy_to_user for a user-space kernel: the "user" pointer
 * comes from the application and may be anything.  The kernel answers
 * EFAULT for memory that is not mapped (or not writable) and never crashes;
 * so do we, by letting the kernel do the copy for us with
 * process_vm_readv/writev on our own pid.
 *
 * Where those calls are unavailable (seccomp, ENOSYS) a pipe does the probe:
 * write(2) from an unreadable buffer and read(2) into an unwritable one fail
 * with EFAULT.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "lib/usercopy.h"

/* 0: unknown, 1: process_vm_* works, -1: use the pipe. */
static int gm_pvm_state;
/* gm_pipe_lock: the probe pipe (one copy at a time through it). */
static pthread_mutex_t gm_pipe_lock = PTHREAD_MUTEX_INITIALIZER;
static int gm_pipe[2] = { -1, -1 };

static bool gm_pvm_unusable(int err)
{
	return err == ENOSYS || err == EPERM || err == EACCES;
}

/* Copy through the probe pipe, at most one pipe buffer per round. */
static int gm_copy_pipe(void *dst, const void *src, size_t n)
{
	int ret = 0;

	gm_mutex_lock(&gm_pipe_lock, GM_LOCK_PIPE);
	if (gm_pipe[0] < 0) {
		if (gm_raw_pipe2(gm_pipe, O_CLOEXEC | O_NONBLOCK)) {
			ret = -errno;
			goto out;
		}
		gm_pipe[0] = gm_fd_own(gm_pipe[0]);
		gm_pipe[1] = gm_fd_own(gm_pipe[1]);
	}
	while (n && !ret) {
		size_t chunk = GM_MIN(n, (size_t)4096);
		ssize_t w = gm_raw_write(gm_pipe[1], src, chunk);

		if (w < 0) {
			ret = -errno;
			break;
		}
		ssize_t r = gm_raw_read(gm_pipe[0], dst, (size_t)w);

		if (r != w) {
			char sink[4096];

			ret = r < 0 ? -errno : -EFAULT;
			/* drain, so the next copy starts from an empty pipe */
			while (gm_raw_read(gm_pipe[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
		dst = (char *)dst + w;
		src = (const char *)src + w;
		n -= (size_t)w;
	}
out:
	gm_mutex_unlock(&gm_pipe_lock);
	return ret == -EFAULT || ret == 0 ? ret : -EFAULT;
}

static int gm_copy(void *dst, const void *src, size_t n, bool to_user)
{
	struct iovec local = { .iov_base = to_user ? (void *)src : dst, .iov_len = n };
	struct iovec remote = { .iov_base = to_user ? dst : (void *)src, .iov_len = n };
	ssize_t got;

	if (n == 0)
		return 0;
	if (READ_ONCE(gm_pvm_state) >= 0) {
		got = syscall(to_user ? SYS_process_vm_writev : SYS_process_vm_readv, getpid(),
			      &local, 1UL, &remote, 1UL, 0UL);
		if (got == (ssize_t)n) {
			WRITE_ONCE(gm_pvm_state, 1);
			return 0;
		}
		if (got >= 0 || errno == EFAULT)
			return -EFAULT;
		if (!gm_pvm_unusable(errno))
			return -EFAULT;
		WRITE_ONCE(gm_pvm_state, -1);
	}
	return gm_copy_pipe(dst, src, n);
}

int gm_copy_from_user(void *dst, const void *src, size_t n)
{
	return gm_copy(dst, src, n, false);
}

int gm_copy_to_user(void *dst, const void *src, size_t n)
{
	return gm_copy(dst, src, n, true);
}
