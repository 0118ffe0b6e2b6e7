/* SPDX-License-Identifier: MIT */
/*
 * The library's only way to the kernel for the calls the preload
 * interposes.
 *
 * Under `guestmem exec`, libc's open, read, write, close, mmap, munmap,
 * fstat, fcntl, ... (every name in src/uapi/syscalls.h) resolve to the
 * preload's wrappers, which look the fd up (an fstat) and may run guestmem
 * code again.  Library code must not pay that nor recurse into itself, so
 * it makes those calls here, straight through syscall(2), which nothing
 * interposes.  The test `no-preload-reentry` fails the build's test run if
 * any object of the library still references one of the wrapped names.
 *
 * Each gm_raw_X() behaves like libc's X(): the result, or -1 with errno.
 * Calls the preload does not wrap (epoll_wait, poll, ppoll, memfd_create,
 * eventfd) may still go through libc; the blocking ones should, since the
 * sanitizers deliver signals to a thread blocked in an intercepted call.
 *
 * On x86-64 the `syscall` instruction is issued here, inline, not by
 * libc's syscall(): under `guestmem exec` the preload's seccomp filter
 * (src/preload/seccomp.c) routes raw KVM ioctls, fallocate and the
 * address-space calls to guestmem by instruction pointer, and exempts
 * exactly the library's own text.  A call made through libc's syscall()
 * would come from libc's text and be routed back to the library, which
 * would wait for itself.
 */
#ifndef GM_LIB_SYS_RAW_H
#define GM_LIB_SYS_RAW_H

#include <fcntl.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <errno.h>

#include "syscall_insn.h"

struct statx;

#if defined(__x86_64__)
/*
 * 0, or where this object's system calls go instead of its own text: a
 * page the seccomp filter exempts, holding `endbr64; syscall; ret`, in an
 * image whose text the filter does not (src/preload/seccomp.c, "gate").
 * Set once, before the image's other threads make library calls; read
 * relaxed.
 */
extern unsigned long gm_raw_gate;

/* One system call from this object's text; -1 and errno like syscall(2). */
static inline long gm_raw_syscall6(long nr, long a1, long a2, long a3, long a4, long a5,
				   long a6)
{
	unsigned long gate = __atomic_load_n(&gm_raw_gate, __ATOMIC_RELAXED);
	long ret = __builtin_expect(gate != 0, 0)
			   ? gm_syscall_gate6(gate, nr, a1, a2, a3, a4, a5, a6)
			   : gm_syscall_insn6(nr, a1, a2, a3, a4, a5, a6);

	if ((unsigned long)ret > -4096UL) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}
#else
/* No filter is installed on other architectures (seccomp.c). */
#define gm_raw_syscall6(nr, a1, a2, a3, a4, a5, a6) syscall(nr, a1, a2, a3, a4, a5, a6)
#endif

#define GM_RAW_SC_(nr, a, b, c, d, e, f, ...)                                             \
	gm_raw_syscall6((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), \
			(long)(f))
/* syscall(2) with up to six arguments, issued from the caller's text. */
#define GM_RAW_SYSCALL(...) GM_RAW_SC_(__VA_ARGS__, 0, 0, 0, 0, 0, 0)
struct epoll_event;
struct pollfd;

/* ---- fds ------------------------------------------------------------- */

static inline int gm_raw_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)GM_RAW_SYSCALL(SYS_openat, dirfd, path, flags, mode);
}

static inline int gm_raw_open(const char *path, int flags, mode_t mode)
{
	return gm_raw_openat(AT_FDCWD, path, flags, mode);
}

static inline int gm_raw_close(int fd)
{
	return (int)GM_RAW_SYSCALL(SYS_close, fd);
}

static inline int gm_raw_ioctl(int fd, unsigned long cmd, unsigned long arg)
{
	return (int)GM_RAW_SYSCALL(SYS_ioctl, fd, cmd, arg);
}

static inline int gm_raw_fcntl(int fd, int cmd, unsigned long arg)
{
	return (int)GM_RAW_SYSCALL(SYS_fcntl, fd, cmd, arg);
}

static inline int gm_raw_shutdown(int fd, int how)
{
	return (int)GM_RAW_SYSCALL(SYS_shutdown, fd, how);
}

static inline int gm_raw_pipe2(int fds[2], int flags)
{
	return (int)GM_RAW_SYSCALL(SYS_pipe2, fds, flags);
}

static inline int gm_raw_socketpair(int domain, int type, int protocol, int sv[2])
{
	return (int)GM_RAW_SYSCALL(SYS_socketpair, domain, type, protocol, sv);
}

static inline int gm_raw_eventfd(unsigned int initval, int flags)
{
	return (int)GM_RAW_SYSCALL(SYS_eventfd2, initval, flags);
}

static inline int gm_raw_memfd_create(const char *name, unsigned int flags)
{
	return (int)GM_RAW_SYSCALL(SYS_memfd_create, name, flags);
}

static inline int gm_raw_epoll_create1(int flags)
{
	return (int)GM_RAW_SYSCALL(SYS_epoll_create1, flags);
}

static inline int gm_raw_epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	return (int)GM_RAW_SYSCALL(SYS_epoll_ctl, epfd, op, fd, ev);
}

static inline int gm_raw_epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
	return (int)GM_RAW_SYSCALL(SYS_epoll_wait, epfd, ev, max, timeout);
}

static inline int gm_raw_poll(struct pollfd *fds, unsigned long n, int timeout)
{
	return (int)GM_RAW_SYSCALL(SYS_poll, fds, n, timeout);
}

/* ---- data ------------------------------------------------------------ */

static inline ssize_t gm_raw_read(int fd, void *buf, size_t n)
{
	return GM_RAW_SYSCALL(SYS_read, fd, buf, n);
}

static inline ssize_t gm_raw_write(int fd, const void *buf, size_t n)
{
	return GM_RAW_SYSCALL(SYS_write, fd, buf, n);
}

static inline ssize_t gm_raw_readv(int fd, const struct iovec *iov, int cnt)
{
	return GM_RAW_SYSCALL(SYS_readv, fd, iov, cnt);
}

static inline ssize_t gm_raw_writev(int fd, const struct iovec *iov, int cnt)
{
	return GM_RAW_SYSCALL(SYS_writev, fd, iov, cnt);
}

static inline ssize_t gm_raw_pread(int fd, void *buf, size_t n, off_t off)
{
	return GM_RAW_SYSCALL(SYS_pread64, fd, buf, n, off);
}

static inline ssize_t gm_raw_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return GM_RAW_SYSCALL(SYS_pwrite64, fd, buf, n, off);
}

static inline off_t gm_raw_lseek(int fd, off_t off, int whence)
{
	return GM_RAW_SYSCALL(SYS_lseek, fd, off, whence);
}

/* ---- file state ------------------------------------------------------ */

static inline int gm_raw_fallocate(int fd, int mode, off_t off, off_t len)
{
	return (int)GM_RAW_SYSCALL(SYS_fallocate, fd, mode, off, len);
}

static inline int gm_raw_ftruncate(int fd, off_t len)
{
	return (int)GM_RAW_SYSCALL(SYS_ftruncate, fd, len);
}

static inline int gm_raw_fsync(int fd)
{
	return (int)GM_RAW_SYSCALL(SYS_fsync, fd);
}

static inline int gm_raw_fdatasync(int fd)
{
	return (int)GM_RAW_SYSCALL(SYS_fdatasync, fd);
}

static inline int gm_raw_fchmod(int fd, mode_t mode)
{
	return (int)GM_RAW_SYSCALL(SYS_fchmod, fd, mode);
}

static inline int gm_raw_fchown(int fd, uid_t uid, gid_t gid)
{
	return (int)GM_RAW_SYSCALL(SYS_fchown, fd, uid, gid);
}

/* ---- stat, links, access --------------------------------------------- */

static inline int gm_raw_fstat(int fd, struct stat *st)
{
	return (int)GM_RAW_SYSCALL(SYS_fstat, fd, st);
}

static inline int gm_raw_fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	return (int)GM_RAW_SYSCALL(SYS_newfstatat, dirfd, path, st, flags);
}

static inline int gm_raw_stat(const char *path, struct stat *st)
{
	return gm_raw_fstatat(AT_FDCWD, path, st, 0);
}

static inline int gm_raw_statx(int dirfd, const char *path, int flags, unsigned int mask,
			       struct statx *stx)
{
	return (int)GM_RAW_SYSCALL(SYS_statx, dirfd, path, flags, mask, stx);
}

static inline ssize_t gm_raw_readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
	return GM_RAW_SYSCALL(SYS_readlinkat, dirfd, path, buf, size);
}

static inline ssize_t gm_raw_readlink(const char *path, char *buf, size_t size)
{
	return gm_raw_readlinkat(AT_FDCWD, path, buf, size);
}

/* Flags need faccessat2 (Linux 5.8); without them the old call, as libc. */
static inline int gm_raw_faccessat(int dirfd, const char *path, int mode, int flags)
{
	if (flags)
		return (int)GM_RAW_SYSCALL(SYS_faccessat2, dirfd, path, mode, flags);
	return (int)GM_RAW_SYSCALL(SYS_faccessat, dirfd, path, mode);
}

static inline int gm_raw_access(const char *path, int mode)
{
	return gm_raw_faccessat(AT_FDCWD, path, mode, 0);
}

static inline int gm_raw_euidaccess(const char *path, int mode)
{
	return gm_raw_faccessat(AT_FDCWD, path, mode, AT_EACCESS);
}

/* ---- address space --------------------------------------------------- */

static inline void *gm_raw_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return (void *)GM_RAW_SYSCALL(SYS_mmap, addr, len, prot, flags, fd, off);
}

static inline int gm_raw_munmap(void *addr, size_t len)
{
	return (int)GM_RAW_SYSCALL(SYS_munmap, addr, len);
}

static inline void *gm_raw_mremap(void *old, size_t old_len, size_t new_len, int flags,
				  void *new_addr)
{
	return (void *)GM_RAW_SYSCALL(SYS_mremap, old, old_len, new_len, flags, new_addr);
}

static inline int gm_raw_madvise(void *addr, size_t len, int advice)
{
	return (int)GM_RAW_SYSCALL(SYS_madvise, addr, len, advice);
}

static inline int gm_raw_mprotect(void *addr, size_t len, int prot)
{
	return (int)GM_RAW_SYSCALL(SYS_mprotect, addr, len, prot);
}

#endif
