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

/* open(2): "/dev/kvm" gives a guestmem system fd; other paths pass through
 * (reopening a guestmem fd through /proc/self/fd fails with ENXIO). */
int guestmem_sys_open(const char *path, int flags, ...);
int guestmem_sys_openat(int dirfd, const char *path, int flags, ...);
int guestmem_sys_close(int fd);
int guestmem_sys_ioctl(int fd, unsigned long request, ...);
ssize_t guestmem_sys_read(int fd, void *buf, size_t count);
ssize_t guestmem_sys_write(int fd, const void *buf, size_t count);
ssize_t guestmem_sys_pread(int fd, void *buf, size_t count, off_t offset);
ssize_t guestmem_sys_pwrite(int fd, const void *buf, size_t count, off_t offset);
off_t guestmem_sys_lseek(int fd, off_t offset, int whence);
void *guestmem_sys_mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset);
int guestmem_sys_munmap(void *addr, size_t length);
int guestmem_sys_fallocate(int fd, int mode, off_t offset, off_t len);
int guestmem_sys_ftruncate(int fd, off_t length);
int guestmem_sys_fsync(int fd);
int guestmem_sys_fdatasync(int fd);
int guestmem_sys_fchmod(int fd, mode_t mode);
int guestmem_sys_fchown(int fd, uid_t owner, gid_t group);
int guestmem_sys_fstat(int fd, struct stat *st);
int guestmem_sys_fcntl(int fd, int cmd, ...);
ssize_t guestmem_sys_readlink(const char *path, char *buf, size_t size);

/* Whether @fd currently refers to a guestmem object. */
bool guestmem_sys_is_guestmem_fd(int fd);

#ifdef __cplusplus
}
#endif
#endif
