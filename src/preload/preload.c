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
 * are zapped before the host mapping changes: the mmu notifier.  They
 * bracket the real call like invalidate_range_start/end: the kernel zaps
 * secondary MMUs inside the system call, before the old pages can go away,
 * and keeps faults on the range retrying until the change is complete.
 *
 * Every wrapper is generated from the table in src/uapi/syscalls.h, which
 * also generates <guestmem/sys.h>'s functions and the exported names
 * (preload.map.in); the library inside is linked whole and hidden.
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
#include <sys/uio.h>
#include <unistd.h>

#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "preload.h"
#include "uapi/uapi.h"

/* Before main: the library learns that it serves an unmodified VMM. */
__attribute__((constructor)) static void gm_preload_mark_drop_in(void)
{
	__atomic_store_n(&gm_uapi_drop_in, 1, __ATOMIC_RELAXED);
}

/* Pre-2.33 glibc ABI of the compat rows (x86-64: version argument 1). */
#define OLD_GLIBC "GLIBC_2.2.5"

#define GM_NEXT_PLAIN(name, args) NEXT(name)(GM_UNPAREN args)

/*
 * The rows whose system call the seccomp filter routes (seccomp.c): with
 * the filter installed, the fallback is the raw call from this object's
 * text, which the filter exempts.  Through libc it would be routed back to
 * the listener: a second, slower pass through the mmu notifier, and a
 * notification round trip for every fallocate of the VMM's own files.
 */
#define GM_NEXT_RAW(raw, name, args) \
	(__atomic_load_n(&gm_seccomp_active, __ATOMIC_RELAXED) ? raw args : NEXT(name)(GM_UNPAREN args))
#define GM_NEXT_munmap(name, args) GM_NEXT_RAW(gm_raw_munmap, name, args)
#define GM_NEXT_mremap(name, args) GM_NEXT_RAW(gm_raw_mremap, name, args)
#define GM_NEXT_madvise(name, args) GM_NEXT_RAW(gm_raw_madvise, name, args)
#define GM_NEXT_mprotect(name, args) GM_NEXT_RAW(gm_raw_mprotect, name, args)
#define GM_NEXT_fallocate(name, args) GM_NEXT_RAW(gm_raw_fallocate, name, args)
/*
 * A descriptor received over SCM_RIGHTS may be another process's object,
 * and the first call on it may be a read: note it now (uapi/file.c).
 */
static ssize_t gm_next_recvmsg(int fd, struct msghdr *msg, int flags)
{
	ssize_t n = NEXT(recvmsg)(fd, msg, flags);

	if (n >= 0)
		gm_uapi_note_received(msg);
	return n;
}

static int gm_next_recvmmsg(int fd, struct mmsghdr *v, unsigned int vlen, int flags,
			    struct timespec *tmo)
{
	int n = NEXT(recvmmsg)(fd, v, vlen, flags, tmo);

	for (int i = 0; i < n; i++)
		gm_uapi_note_received(&v[i].msg_hdr);
	return n;
}
#define GM_NEXT_recvmsg(name, args) gm_next_recvmsg args
#define GM_NEXT_recvmmsg(name, args) gm_next_recvmmsg args
#define GM_PROBE_recvmsg ~, GM_NEXT_recvmsg
#define GM_PROBE_recvmmsg ~, GM_NEXT_recvmmsg
#define GM_PROBE_munmap ~, GM_NEXT_munmap
#define GM_PROBE_mremap ~, GM_NEXT_mremap
#define GM_PROBE_madvise ~, GM_NEXT_madvise
#define GM_PROBE_mprotect ~, GM_NEXT_mprotect
#define GM_PROBE_fallocate ~, GM_NEXT_fallocate
#define GM_PROBE_fallocate64 ~, GM_NEXT_fallocate
#define GM_SECOND_(a, b, ...) b
#define GM_SECOND(...) GM_SECOND_(__VA_ARGS__)
/* GM_NEXT_<name> where one is defined above, else GM_NEXT_PLAIN. */
#define GM_NEXT(name, args) GM_SECOND(GM_PROBE_##name, GM_NEXT_PLAIN, ~)(name, args)
#define GM_NEXT_OLD(name, args) \
	NEXT_VERSIONED(#name, __typeof__(&name), OLD_GLIBC)(GM_UNPAREN args)

/* The prototype first: it must agree with libc's where libc declares one. */
#define GM_PRELOAD_both(kind, R, name, params, args, entry, eargs) \
	R name params;                                            \
	EXPORT GM_SYSCALL_DEFINE(name, kind, R, name, params, args, entry, eargs, GM_NEXT)
#define GM_PRELOAD_libc GM_PRELOAD_both
#define GM_PRELOAD_compat(kind, R, name, params, args, entry, eargs) \
	R name params;                                              \
	EXPORT GM_SYSCALL_DEFINE(name, kind, R, name, params, args, entry, eargs, GM_NEXT_OLD)
#define GM_PRELOAD(surface, ...) GM_PRELOAD_##surface(__VA_ARGS__)

GM_SYSCALLS(GM_PRELOAD)

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

			gm_raw_close(fd);
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

/*
 * closefrom() closes through libc's internal close_range, which no wrapper
 * sees: guestmem's own descriptors (lib/ownfd.h) must survive it.
 */
EXPORT void closefrom(int lowfd)
{
	int r;

	if (lowfd < 0 || !gm_uapi_close_range((unsigned int)lowfd, ~0U, 0, &r)) {
		NEXT(closefrom)(lowfd);
		return;
	}
	/* No close_range (before Linux 5.9): one by one, as libc would. */
	for (long fd = lowfd, max = sysconf(_SC_OPEN_MAX); r && fd < max; fd++)
		if (!gm_fd_is_own((int)fd))
			gm_raw_close((int)fd);
}

