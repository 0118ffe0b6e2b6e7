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
#define ftruncate(fd, len) guestmem_sys_ftruncate(fd, len)
#define fsync(fd) guestmem_sys_fsync(fd)
#define fdatasync(fd) guestmem_sys_fdatasync(fd)
#define fchmod(fd, mode) guestmem_sys_fchmod(fd, mode)
#define fchown(fd, uid, gid) guestmem_sys_fchown(fd, uid, gid)
#define fstat(fd, st) guestmem_sys_fstat(fd, st)
#define fcntl(...) guestmem_sys_fcntl(__VA_ARGS__)
#define readlink(path, buf, n) guestmem_sys_readlink(path, buf, n)

#define GM_MODE_NAME "direct"
#else
#define GM_MODE_NAME "exec"
#endif

#endif
