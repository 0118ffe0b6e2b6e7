// SPDX-License-Identifier: MIT
/*
 * libguestmem-preload.so: the drop-in /dev/kvm for unmodified programs.
 *
 * LD_PRELOAD puts these definitions in front of libc's.  Each wrapper asks
 * the uapi layer whether the fd or path is a guestmem object (one relaxed
 * load when the process has none, one fstat otherwise); if not, it calls
 * the next definition (libc, or a sanitizer's interceptor in front of it),
 * so cancellation points, sanitizers and everything else keep working.
 *
 * The address-space wrappers (munmap, mremap, madvise, mprotect, mmap with
 * MAP_FIXED) first tell guestmem, so that guest translations of the range
 * are zapped before the host mapping changes: the mmu notifier.
 *
 * Only the wrapped libc names are exported (preload.map); the library
 * inside is linked whole and hidden.
 */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS /* define both the plain and the 64 names */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

/* ---- open ------------------------------------------------------------ */

EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = GM_OPEN_MODE(flags, flags);
	int ret;

	if (gm_uapi_open(AT_FDCWD, path, flags, mode, &ret))
		return ret;
	return NEXT(open)(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = GM_OPEN_MODE(flags, flags);
	int ret;

	if (gm_uapi_open(AT_FDCWD, path, flags, mode, &ret))
		return ret;
	return NEXT(open64)(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = GM_OPEN_MODE(flags, flags);
	int ret;

	if (gm_uapi_open(dirfd, path, flags, mode, &ret))
		return ret;
	return NEXT(openat)(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = GM_OPEN_MODE(flags, flags);
	int ret;

	if (gm_uapi_open(dirfd, path, flags, mode, &ret))
		return ret;
	return NEXT(openat64)(dirfd, path, flags, mode);
}

/* _FORTIFY_SOURCE variants (no mode argument). */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

EXPORT int __open_2(const char *path, int flags)
{
	int ret;

	if (gm_uapi_open(AT_FDCWD, path, flags, 0, &ret))
		return ret;
	return NEXT(__open_2)(path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	int ret;

	if (gm_uapi_open(AT_FDCWD, path, flags, 0, &ret))
		return ret;
	return NEXT(__open64_2)(path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	int ret;

	if (gm_uapi_open(dirfd, path, flags, 0, &ret))
		return ret;
	return NEXT(__openat_2)(dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	int ret;

	if (gm_uapi_open(dirfd, path, flags, 0, &ret))
		return ret;
	return NEXT(__openat64_2)(dirfd, path, flags);
}

/*
 * fopen() opens through libc's internal open, which no wrapper sees: paths
 * guestmem answers (/dev/kvm, KVM's module parameters) are opened here and
 * handed to fdopen().
 */
static int gm_fopen_flags(const char *mode)
{
	int flags;

	switch (mode[0]) {
	case 'r':
		flags = O_RDONLY;
		break;
	case 'w':
		flags = O_WRONLY | O_CREAT | O_TRUNC;
		break;
	case 'a':
		flags = O_WRONLY | O_CREAT | O_APPEND;
		break;
	default:
		return -1;
	}
	for (const char *m = mode + 1; *m && *m != ','; m++) {
		if (*m == '+')
			flags = (flags & ~O_ACCMODE) | O_RDWR;
		else if (*m == 'e')
			flags |= O_CLOEXEC;
		else if (*m == 'x')
			flags |= O_EXCL;
	}
	return flags;
}

static bool gm_fopen(const char *path, const char *mode, FILE **out)
{
	int flags, fd;

	if (!path || !mode || path[0] != '/')
		return false;
	flags = gm_fopen_flags(mode);
	if (flags < 0 || !gm_uapi_open(AT_FDCWD, path, flags, 0666, &fd))
		return false;
	*out = NULL;
	if (fd >= 0) {
		*out = fdopen(fd, mode);
		if (!*out) {
			int e = errno;

			close(fd);
			errno = e;
		}
	}
	return true;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	FILE *f;

	if (gm_fopen(path, mode, &f))
		return f;
	return NEXT(fopen)(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	FILE *f;

	if (gm_fopen(path, mode, &f))
		return f;
	return NEXT(fopen64)(path, mode);
}

/* ---- fd operations ------------------------------------------------------ */

EXPORT int close(int fd)
{
	int ret;

	if (gm_uapi_close(fd, &ret))
		return ret;
	return NEXT(close)(fd);
}

EXPORT int ioctl(int fd, unsigned long request, ...)
{
	unsigned long arg;
	va_list ap;
	int ret;

	va_start(ap, request);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (gm_uapi_ioctl(fd, request, arg, &ret))
		return ret;
	return NEXT(ioctl)(fd, request, arg);
}

EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	ssize_t ret;

	if (gm_uapi_read(fd, buf, n, &ret))
		return ret;
	return NEXT(read)(fd, buf, n);
}

EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	ssize_t ret;

	if (gm_uapi_write(fd, buf, n, &ret))
		return ret;
	return NEXT(write)(fd, buf, n);
}

EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	ssize_t ret;

	if (gm_uapi_readv(fd, iov, cnt, false, &ret))
		return ret;
	return NEXT(readv)(fd, iov, cnt);
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	ssize_t ret;

	if (gm_uapi_readv(fd, iov, cnt, true, &ret))
		return ret;
	return NEXT(writev)(fd, iov, cnt);
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	ssize_t ret;

	if (gm_uapi_pread(fd, buf, n, off, false, &ret))
		return ret;
	return NEXT(pread)(fd, buf, n, off);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	ssize_t ret;

	if (gm_uapi_pread(fd, buf, n, off, false, &ret))
		return ret;
	return NEXT(pread64)(fd, buf, n, off);
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	ssize_t ret;

	if (gm_uapi_pread(fd, (void *)buf, n, off, true, &ret))
		return ret;
	return NEXT(pwrite)(fd, buf, n, off);
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	ssize_t ret;

	if (gm_uapi_pread(fd, (void *)buf, n, off, true, &ret))
		return ret;
	return NEXT(pwrite64)(fd, buf, n, off);
}

EXPORT off_t lseek(int fd, off_t off, int whence)
{
	off_t ret;

	if (gm_uapi_lseek(fd, off, whence, &ret))
		return ret;
	return NEXT(lseek)(fd, off, whence);
}

EXPORT off64_t lseek64(int fd, off64_t off, int whence)
{
	off_t ret;

	if (gm_uapi_lseek(fd, off, whence, &ret))
		return ret;
	return NEXT(lseek64)(fd, off, whence);
}

EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	int ret;

	if (gm_uapi_fallocate(fd, mode, off, len, &ret))
		return ret;
	return NEXT(fallocate)(fd, mode, off, len);
}

EXPORT int fallocate64(int fd, int mode, off64_t off, off64_t len)
{
	int ret;

	if (gm_uapi_fallocate(fd, mode, off, len, &ret))
		return ret;
	return NEXT(fallocate64)(fd, mode, off, len);
}

EXPORT int ftruncate(int fd, off_t len)
{
	int ret;

	if (gm_uapi_ftruncate(fd, len, &ret))
		return ret;
	return NEXT(ftruncate)(fd, len);
}

EXPORT int ftruncate64(int fd, off64_t len)
{
	int ret;

	if (gm_uapi_ftruncate(fd, len, &ret))
		return ret;
	return NEXT(ftruncate64)(fd, len);
}

EXPORT int fsync(int fd)
{
	int ret;

	if (gm_uapi_fsync(fd, &ret))
		return ret;
	return NEXT(fsync)(fd);
}

EXPORT int fdatasync(int fd)
{
	int ret;

	if (gm_uapi_fsync(fd, &ret))
		return ret;
	return NEXT(fdatasync)(fd);
}

EXPORT int fchmod(int fd, mode_t mode)
{
	int ret;

	if (gm_uapi_fchmod(fd, mode, &ret))
		return ret;
	return NEXT(fchmod)(fd, mode);
}

EXPORT int fchown(int fd, uid_t uid, gid_t gid)
{
	int ret;

	if (gm_uapi_fchown(fd, uid, gid, &ret))
		return ret;
	return NEXT(fchown)(fd, uid, gid);
}

EXPORT int shutdown(int fd, int how)
{
	int ret;

	if (gm_uapi_shutdown(fd, how, &ret))
		return ret;
	return NEXT(shutdown)(fd, how);
}

/* fcntl's third argument is an int or a pointer: pass the register on. */
EXPORT int fcntl(int fd, int cmd, ...)
{
	unsigned long arg;
	va_list ap;
	int ret;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (gm_uapi_fcntl(fd, cmd, arg, &ret))
		return ret;
	return NEXT(fcntl)(fd, cmd, arg);
}

EXPORT int fcntl64(int fd, int cmd, ...)
{
	unsigned long arg;
	va_list ap;
	int ret;

	va_start(ap, cmd);
	arg = va_arg(ap, unsigned long);
	va_end(ap);
	if (gm_uapi_fcntl(fd, cmd, arg, &ret))
		return ret;
	return NEXT(fcntl64)(fd, cmd, arg);
}
