/* SPDX-License-Identifier: MIT */
/*
 * Entry points shared by <guestmem/sys.h> (src/uapi/sys.c) and the preload
 * library (src/preload/preload.c).
 *
 * Each gm_uapi_X() returns true if it handled the call because the fd (or
 * path) is a guestmem object, with the libc-style result in *ret and errno
 * set on failure.  It returns false for anything else, having done nothing
 * except the mmu-notifier hooks: the caller then performs the real call
 * (sys.c with a raw system call, the preload through the next libc).
 *
 * The pre-hooks (munmap, mremap, madvise, mprotect, and mmap's MAP_FIXED)
 * never handle the call themselves: they open an mmu-notifier invalidation
 * of the range and return a token, which the caller passes to
 * gm_uapi_mm_post() after the real call (errno is preserved).
 */
#ifndef GM_UAPI_ENTRY_H
#define GM_UAPI_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

struct statx;

bool gm_uapi_open(int dirfd, const char *path, int flags, mode_t mode, int *ret);
bool gm_uapi_close(int fd, int *ret);
bool gm_uapi_ioctl(int fd, unsigned long request, unsigned long arg, int *ret);
bool gm_uapi_read(int fd, void *buf, size_t n, ssize_t *ret);
bool gm_uapi_write(int fd, const void *buf, size_t n, ssize_t *ret);
bool gm_uapi_readv(int fd, const struct iovec *iov, int cnt, bool write, ssize_t *ret);
bool gm_uapi_pread(int fd, void *buf, size_t n, off_t off, bool write, ssize_t *ret);
bool gm_uapi_lseek(int fd, off_t off, int whence, off_t *ret);
bool gm_uapi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **ret,
		  void **token);
bool gm_uapi_fallocate(int fd, int mode, off_t off, off_t len, int *ret);
bool gm_uapi_ftruncate(int fd, off_t len, int *ret);
bool gm_uapi_fsync(int fd, int *ret);
bool gm_uapi_fchmod(int fd, mode_t mode, int *ret);
bool gm_uapi_fchown(int fd, uid_t uid, gid_t gid, int *ret);
bool gm_uapi_fstat(int fd, struct stat *st, int *ret);
bool gm_uapi_fstatat(int dirfd, const char *path, struct stat *st, int flags, int *ret);
bool gm_uapi_statx(int dirfd, const char *path, int flags, unsigned int mask,
		   struct statx *stx, int *ret);
bool gm_uapi_fcntl(int fd, int cmd, unsigned long arg, int *ret);
bool gm_uapi_readlinkat(int dirfd, const char *path, char *buf, size_t size, ssize_t *ret);
bool gm_uapi_shutdown(int fd, int how, int *ret);
bool gm_uapi_access(int dirfd, const char *path, int mode, int *ret);

void *gm_uapi_munmap_pre(void *addr, size_t len);
void *gm_uapi_mremap_pre(void *old, size_t old_len, size_t new_len, int flags, void *new_addr);
void *gm_uapi_madvise_pre(void *addr, size_t len, int advice);
void *gm_uapi_mprotect_pre(void *addr, size_t len);
void gm_uapi_mm_post(void *token);

#endif
