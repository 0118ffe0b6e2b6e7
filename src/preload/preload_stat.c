// SPDX-License-Identifier: MIT
/*
 * The stat family and readlink: a guestmem fd must look like the kernel's
 * file (anon inode, guest_memfd regular file, /dev/kvm character device),
 * not like the socket it is, also through /proc/self/fd links.
 *
 * glibc 2.33 turned the old __fxstat-style entry points into compatibility
 * symbols; binaries built against older glibc still call them, so they are
 * wrapped too and reach the old version of the next definition.
 */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS /* define both the plain and the 64 names */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"

/* Pre-2.33 glibc ABI (x86-64: one struct stat, version argument 1). */
int __fxstat(int ver, int fd, struct stat *st);
int __fxstat64(int ver, int fd, struct stat64 *st);
int __xstat(int ver, const char *path, struct stat *st);
int __xstat64(int ver, const char *path, struct stat64 *st);
int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);

#define OLD_GLIBC "GLIBC_2.2.5"

EXPORT int fstat(int fd, struct stat *st)
{
	int ret;

	if (gm_uapi_fstat(fd, st, &ret))
		return ret;
	return NEXT(fstat)(fd, st);
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	int ret;

	if (gm_uapi_fstat(fd, (struct stat *)st, &ret))
		return ret;
	return NEXT(fstat64)(fd, st);
}

EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int ret;

	if (gm_uapi_fstatat(dirfd, path, st, flags, &ret))
		return ret;
	return NEXT(fstatat)(dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	int ret;

	if (gm_uapi_fstatat(dirfd, path, (struct stat *)st, flags, &ret))
		return ret;
	return NEXT(fstatat64)(dirfd, path, st, flags);
}

/* stat() follows /proc/self/fd/N to the object, like the kernel. */
EXPORT int stat(const char *path, struct stat *st)
{
	int ret;

	if (gm_uapi_fstatat(AT_FDCWD, path, st, 0, &ret))
		return ret;
	return NEXT(stat)(path, st);
}

EXPORT int stat64(const char *path, struct stat64 *st)
{
	int ret;

	if (gm_uapi_fstatat(AT_FDCWD, path, (struct stat *)st, 0, &ret))
		return ret;
	return NEXT(stat64)(path, st);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	int ret;

	if (gm_uapi_statx(dirfd, path, flags, mask, stx, &ret))
		return ret;
	return NEXT(statx)(dirfd, path, flags, mask, stx);
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	int ret;

	if (gm_uapi_fstat(fd, st, &ret))
		return ret;
	return NEXT_VERSIONED("__fxstat", int (*)(int, int, struct stat *), OLD_GLIBC)(ver, fd, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	int ret;

	if (gm_uapi_fstat(fd, (struct stat *)st, &ret))
		return ret;
	return NEXT_VERSIONED("__fxstat64", int (*)(int, int, struct stat64 *), OLD_GLIBC)(ver, fd,
											   st);
}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	int ret;

	if (gm_uapi_fstatat(AT_FDCWD, path, st, 0, &ret))
		return ret;
	return NEXT_VERSIONED("__xstat", int (*)(int, const char *, struct stat *), OLD_GLIBC)(
		ver, path, st);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	int ret;

	if (gm_uapi_fstatat(AT_FDCWD, path, (struct stat *)st, 0, &ret))
		return ret;
	return NEXT_VERSIONED("__xstat64", int (*)(int, const char *, struct stat64 *), OLD_GLIBC)(
		ver, path, st);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	int ret;

	if (gm_uapi_fstatat(dirfd, path, st, flags, &ret))
		return ret;
	return NEXT_VERSIONED("__fxstatat", int (*)(int, int, const char *, struct stat *, int),
			      OLD_GLIBC)(ver, dirfd, path, st, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	int ret;

	if (gm_uapi_fstatat(dirfd, path, (struct stat *)st, flags, &ret))
		return ret;
	return NEXT_VERSIONED("__fxstatat64",
			      int (*)(int, int, const char *, struct stat64 *, int),
			      OLD_GLIBC)(ver, dirfd, path, st, flags);
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t size)
{
	ssize_t ret;

	if (gm_uapi_readlinkat(AT_FDCWD, path, buf, size, &ret))
		return ret;
	return NEXT(readlink)(path, buf, size);
}

EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
	ssize_t ret;

	if (gm_uapi_readlinkat(dirfd, path, buf, size, &ret))
		return ret;
	return NEXT(readlinkat)(dirfd, path, buf, size);
}

/* access("/dev/kvm") succeeds where open() would, host node or not. */
EXPORT int access(const char *path, int mode)
{
	int ret;

	if (gm_uapi_access(AT_FDCWD, path, mode, &ret))
		return ret;
	return NEXT(access)(path, mode);
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	int ret;

	if (gm_uapi_access(dirfd, path, mode, &ret))
		return ret;
	return NEXT(faccessat)(dirfd, path, mode, flags);
}

EXPORT int euidaccess(const char *path, int mode)
{
	int ret;

	if (gm_uapi_access(AT_FDCWD, path, mode, &ret))
		return ret;
	return NEXT(euidaccess)(path, mode);
}
