/* SPDX-License-Identifier: MIT */
/*
 * sysmap.h - let one test source run in two ways.
 *
 * Without GM_DIRECT the program is an ordinary VMM-style program: it calls
 * libc and is meant to run under `guestmem exec --`, where the preload
 * routes those calls to guestmem.  With -DGM_DIRECT the same source calls
 * the guestmem_sys_* functions of <guestmem/sys.h> (linked from the static
 * libguestmem) and needs no preload.
 *
 * The maps are function-like macros, so struct members or variables with
 * these names (st.st_size, a field called `read`) are left alone.  Include
 * this header after every system header the program uses: the system
 * prototypes must be seen before the names are redirected.
 */
#ifndef GM_TESTS_SYSMAP_H
#define GM_TESTS_SYSMAP_H

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#ifdef GM_DIRECT
#include <guestmem/sys.h>

#define open(...) guestmem_sys_open(__VA_ARGS__)
#define openat(...) guestmem_sys_openat(__VA_ARGS__)
#define close(fd) guestmem_sys_close(fd)
#define ioctl(...) guestmem_sys_ioctl(__VA_ARGS__)
#define read(fd, buf, n) guestmem_sys_read(fd, buf, n)
#define write(fd, buf, n) guestmem_sys_write(fd, buf, n)
#define pread(fd, buf, n, off) guestmem_sys_pread(fd, buf, n, off)
#define pwrite(fd, buf, n, off) guestmem_sys_pwrite(fd, buf, n, off)
#define lseek(fd, off, whence) guestmem_sys_lseek(fd, off, whence)
#define mmap(a, len, prot, fl, fd, off) guestmem_sys_mmap(a, len, prot, fl, fd, off)
#define munmap(a, len) guestmem_sys_munmap(a, len)
#define mremap(...) guestmem_sys_mremap(__VA_ARGS__)
#define madvise(a, len, advice) guestmem_sys_madvise(a, len, advice)
#define mprotect(a, len, prot) guestmem_sys_mprotect(a, len, prot)
#define fallocate(fd, mode, off, len) guestmem_sys_fallocate(fd, mode, off, len)
#define posix_fallocate(fd, off, len) guestmem_sys_posix_fallocate(fd, off, len)
#define ftruncate(fd, len) guestmem_sys_ftruncate(fd, len)
#define fsync(fd) guestmem_sys_fsync(fd)
#define fdatasync(fd) guestmem_sys_fdatasync(fd)
#define fchmod(fd, mode) guestmem_sys_fchmod(fd, mode)
#define fchown(fd, uid, gid) guestmem_sys_fchown(fd, uid, gid)
#define fstat(fd, st) guestmem_sys_fstat(fd, st)
#define fcntl(...) guestmem_sys_fcntl(__VA_ARGS__)
#define readlink(path, buf, n) guestmem_sys_readlink(path, buf, n)

#define GM_MODE_NAME "direct"
#elif defined(GM_RAW)
/*
 * -DGM_RAW: the "exec" program with the calls the seccomp filter routes
 * (src/preload/seccomp.c, GUESTMEM_SECCOMP=files) issued through
 * syscall(2), where the preload's libc wrappers never see them.  open,
 * close, fstat, fcntl, readlink and mmap stay libc calls: the filter does
 * not route them (open("/dev/kvm") would reach the host kernel).
 */
#include <stdint.h>
#include <sys/syscall.h>

static inline int gm_raw_ioctl3(int fd, unsigned long cmd, uintptr_t arg)
{
	return (int)syscall(SYS_ioctl, fd, cmd, arg);
}
#define GM_RAW_IOCTL_(fd, cmd, arg, ...) gm_raw_ioctl3(fd, cmd, (uintptr_t)(arg))
#define ioctl(...) GM_RAW_IOCTL_(__VA_ARGS__, 0, 0)
static inline ssize_t gm_raw_read(int fd, void *buf, size_t n)
{
	return syscall(SYS_read, fd, buf, n);
}
static inline ssize_t gm_raw_write(int fd, const void *buf, size_t n)
{
	return syscall(SYS_write, fd, buf, n);
}
static inline ssize_t gm_raw_pread(int fd, void *buf, size_t n, off_t off)
{
	return syscall(SYS_pread64, fd, buf, n, off);
}
static inline ssize_t gm_raw_pwrite(int fd, const void *buf, size_t n, off_t off)
{
	return syscall(SYS_pwrite64, fd, buf, n, off);
}
static inline off_t gm_raw_lseek(int fd, off_t off, int whence)
{
	return syscall(SYS_lseek, fd, off, whence);
}
static inline int gm_raw_munmap(void *a, size_t len)
{
	return (int)syscall(SYS_munmap, a, len);
}
static inline void *gm_raw_mremap(void *old, size_t old_len, size_t new_len, int flags,
				  uintptr_t new_addr)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags, new_addr);
}
#define GM_RAW_MREMAP_(o, ol, nl, fl, na, ...) gm_raw_mremap(o, ol, nl, fl, (uintptr_t)(na))
static inline int gm_raw_madvise(void *a, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, a, len, advice);
}
static inline int gm_raw_mprotect(void *a, size_t len, int prot)
{
	return (int)syscall(SYS_mprotect, a, len, prot);
}
static inline int gm_raw_fallocate(int fd, int mode, off_t off, off_t len)
{
	return (int)syscall(SYS_fallocate, fd, mode, off, len);
}
static inline int gm_raw_ftruncate(int fd, off_t len)
{
	return (int)syscall(SYS_ftruncate, fd, len);
}
static inline int gm_raw_fsync(int fd)
{
	return (int)syscall(SYS_fsync, fd);
}
static inline int gm_raw_fdatasync(int fd)
{
	return (int)syscall(SYS_fdatasync, fd);
}
static inline int gm_raw_fchmod(int fd, mode_t mode)
{
	return (int)syscall(SYS_fchmod, fd, mode);
}
static inline int gm_raw_fchown(int fd, uid_t uid, gid_t gid)
{
	return (int)syscall(SYS_fchown, fd, uid, gid);
}
#define read(fd, buf, n) gm_raw_read(fd, buf, n)
#define write(fd, buf, n) gm_raw_write(fd, buf, n)
#define pread(fd, buf, n, off) gm_raw_pread(fd, buf, n, off)
#define pwrite(fd, buf, n, off) gm_raw_pwrite(fd, buf, n, off)
#define lseek(fd, off, whence) gm_raw_lseek(fd, off, whence)
#define munmap(a, len) gm_raw_munmap(a, len)
#define mremap(...) GM_RAW_MREMAP_(__VA_ARGS__, 0, 0)
#define madvise(a, len, advice) gm_raw_madvise(a, len, advice)
#define mprotect(a, len, prot) gm_raw_mprotect(a, len, prot)
#define fallocate(fd, mode, off, len) gm_raw_fallocate(fd, mode, off, len)
#define ftruncate(fd, len) gm_raw_ftruncate(fd, len)
#define fsync(fd) gm_raw_fsync(fd)
#define fdatasync(fd) gm_raw_fdatasync(fd)
#define fchmod(fd, mode) gm_raw_fchmod(fd, mode)
#define fchown(fd, uid, gid) gm_raw_fchown(fd, uid, gid)

#define GM_MODE_NAME "raw"
#else
#define GM_MODE_NAME "exec"
#endif

#endif
