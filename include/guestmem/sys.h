/* SPDX-License-Identifier: MIT */
/*
 * <guestmem/sys.h> - guestmem's /dev/kvm as system calls.
 *
 * Each function behaves like the libc function of the same name: it returns
 * what the Linux kernel would return (-1 and errno on failure), and for a
 * file descriptor that is not a guestmem object it simply performs the real
 * system call.  The preload library (`guestmem exec`) routes the VMM's libc
 * calls here; programs may also call these directly.
 *
 * guestmem objects are real file descriptors (one end of a socketpair per
 * object), so dup, dup2, fcntl(F_DUPFD), fork, exec and SCM_RIGHTS work as
 * with the kernel, and the object is released when its last reference is
 * closed, however it is closed.
 */
#ifndef GUESTMEM_SYS_H
#define GUESTMEM_SYS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iovec;
struct statx;

/* open(2): "/dev/kvm" gives a guestmem system fd; other paths pass through
 * (reopening a guestmem fd through /proc/self/fd fails with ENXIO). */
int guestmem_sys_open(const char *path, int flags, ...);
int guestmem_sys_openat(int dirfd, const char *path, int flags, ...);
int guestmem_sys_close(int fd);
int guestmem_sys_ioctl(int fd, unsigned long request, ...);
ssize_t guestmem_sys_read(int fd, void *buf, size_t count);
ssize_t guestmem_sys_write(int fd, const void *buf, size_t count);
ssize_t guestmem_sys_readv(int fd, const struct iovec *iov, int iovcnt);
ssize_t guestmem_sys_writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t guestmem_sys_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t guestmem_sys_pwrite(int fd, const void *buf, size_t count, off_t offset);
off_t guestmem_sys_lseek(int fd, off_t offset, int whence);
int guestmem_sys_fallocate(int fd, int mode, off_t offset, off_t len);
/* posix_fallocate(3): an errno value, as libc's (0 on success). */
int guestmem_sys_posix_fallocate(int fd, off_t offset, off_t len);
int guestmem_sys_ftruncate(int fd, off_t length);
int guestmem_sys_fsync(int fd);
int guestmem_sys_fdatasync(int fd);
int guestmem_sys_fchmod(int fd, mode_t mode);
int guestmem_sys_fchown(int fd, uid_t owner, gid_t group);
int guestmem_sys_shutdown(int fd, int how);
int guestmem_sys_fcntl(int fd, int cmd, ...);

/* The address space.  munmap, mremap, madvise, mprotect and a MAP_FIXED
 * mmap over memory that backs a memslot first zap the guest's translations
 * of the range, as the kernel's mmu notifier does: a program that changes
 * its memslot memory without the preload must make these calls. */
void *guestmem_sys_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
int guestmem_sys_munmap(void *addr, size_t length);
void *guestmem_sys_mremap(void *old_address, size_t old_size, size_t new_size, int flags, ...);
int guestmem_sys_madvise(void *addr, size_t length, int advice);
int guestmem_sys_mprotect(void *addr, size_t length, int prot);

/* The stat family, links and access: a guestmem fd looks like the kernel's
 * file, also through /proc/self/fd/N; /dev/kvm exists even on a host
 * without it. */
int guestmem_sys_fstat(int fd, struct stat *st);
int guestmem_sys_fstatat(int dirfd, const char *path, struct stat *st, int flags);
int guestmem_sys_stat(const char *path, struct stat *st);
int guestmem_sys_statx(int dirfd, const char *path, int flags, unsigned int mask,
		       struct statx *stx);
ssize_t guestmem_sys_readlink(const char *path, char *buf, size_t size);
ssize_t guestmem_sys_readlinkat(int dirfd, const char *path, char *buf, size_t size);
int guestmem_sys_access(const char *path, int mode);
int guestmem_sys_faccessat(int dirfd, const char *path, int mode, int flags);
int guestmem_sys_euidaccess(const char *path, int mode);

/* Whether @fd currently refers to a guestmem object. */
bool guestmem_sys_is_guestmem_fd(int fd);

#ifdef __cplusplus
}
#endif
#endif
