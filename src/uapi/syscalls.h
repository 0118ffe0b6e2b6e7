/* SPDX-License-Identifier: MIT */
/*
 * The libc calls guestmem answers for its objects: one table, from which
 * every surface that names them is generated, so that they cannot drift:
 *
 *   - the uapi layer's entry points, gm_uapi_<entry>() (entry.h): the
 *     answer for a guestmem object, or "not ours" (defined in sys.c);
 *   - the preload's libc-named wrappers (src/preload/preload.c) and its
 *     export list (preload.map.in): "not ours" falls back to the next
 *     definition of the symbol (libc, or a sanitizer's interceptor);
 *   - guestmem_sys_<name>() (<guestmem/sys.h>, src/uapi/sys.c): "not ours"
 *     falls back to the raw system call (src/lib/sys_raw.h).
 *
 * Macros only: the version script is run through the preprocessor with
 * this file, so it includes nothing; users include the system headers.
 *
 * GM_SYSCALLS(X) calls X(surface, kind, R, name, params, args, entry, eargs):
 *
 *   surface  both    the libc name in the preload, and guestmem_sys_<name>
 *            libc    the preload only: another libc name for the same call
 *                    (LFS *64, _FORTIFY_SOURCE __*_2)
 *            compat  the preload only; falls back to the symbol's pre-2.33
 *                    glibc version, which binaries built against an older
 *                    glibc still call (__fxstat and friends; x86-64 ABI)
 *   kind     the objects it applies to, which picks the body (GM_BODY_*):
 *            fd         a guestmem fd
 *            fd_va      a guestmem fd; one variadic word after @cmd
 *            path       /dev/kvm, a /proc/self/fd/N link to a guestmem fd,
 *                       or (AT_EMPTY_PATH) a guestmem dirfd: a guestmem fd
 *                       must look like the kernel's file (anon inode,
 *                       guest_memfd regular file, /dev/kvm char device),
 *                       not like the socket it is
 *            path_open  the same, with open's variadic mode after @flags
 *            map        a guestmem fd's mmap; and any MAP_FIXED range,
 *                       which replaces what was mapped (as hva)
 *            hva        an address range: the mmu notifier.  The hook
 *                       zaps the range's guest translations before the
 *                       host mapping changes, and faults on it retry until
 *                       the change is done: invalidate_range_start/end
 *            hva_remap  mremap: the old range and a MREMAP_FIXED target
 *   R, name, params   the libc prototype (variadic ones end in "...")
 *   args     what the fallback is called with
 *   entry, eargs      gm_uapi_<entry>(eargs..., &ret) decides; for hva,
 *            gm_uapi_<entry>_pre(eargs) opens the invalidation
 *
 * A row's fallback is the only thing a surface chooses: GM_BODY_<kind>()
 * takes it as a macro, FALLBACK(name, args).
 */
#ifndef GM_UAPI_SYSCALLS_H
#define GM_UAPI_SYSCALLS_H

/* clang-format off */
#define GM_SYSCALLS(X)                                                                          \
	/* open: /dev/kvm, and reopening through /proc/self/fd */                               \
	X(both, path_open, int, open, (const char *path, int flags, ...),                       \
	  (path, flags, mode), open, (AT_FDCWD, path, flags, mode))                              \
	X(libc, path_open, int, open64, (const char *path, int flags, ...),                     \
	  (path, flags, mode), open, (AT_FDCWD, path, flags, mode))                              \
	X(both, path_open, int, openat, (int dirfd, const char *path, int flags, ...),          \
	  (dirfd, path, flags, mode), open, (dirfd, path, flags, mode))                          \
	X(libc, path_open, int, openat64, (int dirfd, const char *path, int flags, ...),        \
	  (dirfd, path, flags, mode), open, (dirfd, path, flags, mode))                          \
	X(libc, path, int, __open_2, (const char *path, int flags),                             \
	  (path, flags), open, (AT_FDCWD, path, flags, 0))                                       \
	X(libc, path, int, __open64_2, (const char *path, int flags),                           \
	  (path, flags), open, (AT_FDCWD, path, flags, 0))                                       \
	X(libc, path, int, __openat_2, (int dirfd, const char *path, int flags),                \
	  (dirfd, path, flags), open, (dirfd, path, flags, 0))                                   \
	X(libc, path, int, __openat64_2, (int dirfd, const char *path, int flags),              \
	  (dirfd, path, flags), open, (dirfd, path, flags, 0))                                   \
	/* fd operations */                                                                     \
	X(both, fd, int, close, (int fd), (fd), close, (fd))                                    \
	/* the fd table: guestmem's own descriptors are not the application's */               \
	X(libc, fd, int, close_range, (unsigned int lo, unsigned int hi, int flags),             \
	  (lo, hi, flags), close_range, (lo, hi, flags))                                         \
	X(libc, fd, int, dup, (int fd), (fd), dup, (fd))                                        \
	X(libc, fd, int, dup2, (int oldfd, int newfd), (oldfd, newfd), dup2,                    \
	  (oldfd, newfd, 0, false))                                                              \
	X(libc, fd, int, dup3, (int oldfd, int newfd, int flags), (oldfd, newfd, flags), dup2,  \
	  (oldfd, newfd, flags, true))                                                           \
	X(both, fd_va, int, ioctl, (int fd, unsigned long cmd, ...),                            \
	  (fd, cmd, arg), ioctl, (fd, cmd, arg))                                                 \
	X(both, fd, ssize_t, read, (int fd, void *buf, size_t n),                               \
	  (fd, buf, n), read, (fd, buf, n))                                                      \
	X(both, fd, ssize_t, write, (int fd, const void *buf, size_t n),                        \
	  (fd, buf, n), write, (fd, buf, n))                                                     \
	X(both, fd, ssize_t, readv, (int fd, const struct iovec *iov, int cnt),                 \
	  (fd, iov, cnt), readv, (fd, iov, cnt, false))                                          \
	X(both, fd, ssize_t, writev, (int fd, const struct iovec *iov, int cnt),                \
	  (fd, iov, cnt), readv, (fd, iov, cnt, true))                                           \
	X(both, fd, ssize_t, pread, (int fd, void *buf, size_t n, off_t off),                   \
	  (fd, buf, n, off), pread, (fd, buf, n, off, false))                                   \
	X(libc, fd, ssize_t, pread64, (int fd, void *buf, size_t n, off64_t off),               \
	  (fd, buf, n, off), pread, (fd, buf, n, off, false))                                   \
	X(both, fd, ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t off),            \
	  (fd, buf, n, off), pread, (fd, (void *)buf, n, off, true))                            \
	X(libc, fd, ssize_t, pwrite64, (int fd, const void *buf, size_t n, off64_t off),        \
	  (fd, buf, n, off), pread, (fd, (void *)buf, n, off, true))                            \
	X(both, fd, off_t, lseek, (int fd, off_t off, int whence),                              \
	  (fd, off, whence), lseek, (fd, off, whence))                                           \
	X(libc, fd, off64_t, lseek64, (int fd, off64_t off, int whence),                        \
	  (fd, off, whence), lseek, (fd, off, whence))                                           \
	X(both, fd, int, fallocate, (int fd, int mode, off_t off, off_t len),                   \
	  (fd, mode, off, len), fallocate, (fd, mode, off, len))                                 \
	/* posix_fallocate: its fallback's system calls are libc's own (no wrapper sees them) */ \
	X(both, fd, int, posix_fallocate, (int fd, off_t off, off_t len),                       \
	  (fd, off, len), posix_fallocate, (fd, off, len))                                       \
	X(libc, fd, int, posix_fallocate64, (int fd, off64_t off, off64_t len),                 \
	  (fd, off, len), posix_fallocate, (fd, off, len))                                       \
	X(libc, fd, int, fallocate64, (int fd, int mode, off64_t off, off64_t len),             \
	  (fd, mode, off, len), fallocate, (fd, mode, off, len))                                 \
	X(both, fd, int, ftruncate, (int fd, off_t len), (fd, len), ftruncate, (fd, len))       \
	X(libc, fd, int, ftruncate64, (int fd, off64_t len), (fd, len), ftruncate, (fd, len))   \
	X(both, fd, int, fsync, (int fd), (fd), fsync, (fd))                                    \
	X(both, fd, int, fdatasync, (int fd), (fd), fsync, (fd))                                \
	X(both, fd, int, fchmod, (int fd, mode_t mode), (fd, mode), fchmod, (fd, mode))         \
	X(both, fd, int, fchown, (int fd, uid_t uid, gid_t gid),                                \
	  (fd, uid, gid), fchown, (fd, uid, gid))                                                \
	X(both, fd, int, shutdown, (int fd, int how), (fd, how), shutdown, (fd, how))           \
	/* socket calls: a guestmem fd is not a socket to the application */                   \
	X(libc, fd, ssize_t, send, (int fd, const void *buf, size_t n, int flags),              \
	  (fd, buf, n, flags), sock_io, (fd))                                                    \
	X(libc, fd, ssize_t, recv, (int fd, void *buf, size_t n, int flags),                    \
	  (fd, buf, n, flags), sock_io, (fd))                                                    \
	X(libc, fd, ssize_t, sendto, (int fd, const void *buf, size_t n, int flags,             \
	  __CONST_SOCKADDR_ARG to, socklen_t tolen), (fd, buf, n, flags, to, tolen), sock_io, (fd)) \
	X(libc, fd, ssize_t, recvfrom, (int fd, void *buf, size_t n, int flags,                 \
	  __SOCKADDR_ARG from, socklen_t *fromlen), (fd, buf, n, flags, from, fromlen),          \
	  sock_io, (fd))                                                                         \
	X(libc, fd, ssize_t, sendmsg, (int fd, const struct msghdr *msg, int flags),            \
	  (fd, msg, flags), sock_io, (fd))                                                       \
	X(libc, fd, ssize_t, recvmsg, (int fd, struct msghdr *msg, int flags),                  \
	  (fd, msg, flags), sock_io, (fd))                                                       \
	X(libc, fd, int, sendmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags),      \
	  (fd, v, n, flags), sock, (fd))                                                         \
	X(libc, fd, int, recvmmsg, (int fd, struct mmsghdr *v, unsigned int n, int flags,       \
	  struct timespec *tmo), (fd, v, n, flags, tmo), sock, (fd))                             \
	X(libc, fd, int, getsockopt, (int fd, int level, int name, void *val, socklen_t *len),  \
	  (fd, level, name, val, len), sock, (fd))                                               \
	X(libc, fd, int, setsockopt, (int fd, int level, int name, const void *val,             \
	  socklen_t len), (fd, level, name, val, len), sock, (fd))                               \
	X(libc, fd, int, getsockname, (int fd, __SOCKADDR_ARG a, socklen_t *len),               \
	  (fd, a, len), sock, (fd))                                                              \
	X(libc, fd, int, getpeername, (int fd, __SOCKADDR_ARG a, socklen_t *len),               \
	  (fd, a, len), sock, (fd))                                                              \
	X(libc, fd, int, bind, (int fd, __CONST_SOCKADDR_ARG a, socklen_t len),                 \
	  (fd, a, len), sock, (fd))                                                              \
	X(libc, fd, int, connect, (int fd, __CONST_SOCKADDR_ARG a, socklen_t len),              \
	  (fd, a, len), sock, (fd))                                                              \
	X(libc, fd, int, listen, (int fd, int backlog), (fd, backlog), sock, (fd))              \
	X(libc, fd, int, accept, (int fd, __SOCKADDR_ARG a, socklen_t *len),                    \
	  (fd, a, len), sock, (fd))                                                              \
	X(libc, fd, int, accept4, (int fd, __SOCKADDR_ARG a, socklen_t *len, int flags),        \
	  (fd, a, len, flags), sock, (fd))                                                       \
	/* in-kernel copies: our files have no splice or copy methods */                        \
	X(libc, fd, ssize_t, splice, (int fd_in, loff_t *off_in, int fd_out, loff_t *off_out,   \
	  size_t len, unsigned int flags), (fd_in, off_in, fd_out, off_out, len, flags),         \
	  xfer, (SYS_splice, fd_in, (uintptr_t)off_in, fd_out, (uintptr_t)off_out, len, flags)) \
	X(libc, fd, ssize_t, tee, (int fd_in, int fd_out, size_t len, unsigned int flags),      \
	  (fd_in, fd_out, len, flags), xfer, (SYS_tee, fd_in, fd_out, len, flags, 0, 0))         \
	X(libc, fd, ssize_t, sendfile, (int out_fd, int in_fd, off_t *off, size_t n),           \
	  (out_fd, in_fd, off, n), xfer, (SYS_sendfile, out_fd, in_fd, (uintptr_t)off, n, 0, 0)) \
	X(libc, fd, ssize_t, sendfile64, (int out_fd, int in_fd, off64_t *off, size_t n),       \
	  (out_fd, in_fd, off, n), xfer, (SYS_sendfile, out_fd, in_fd, (uintptr_t)off, n, 0, 0)) \
	X(libc, fd, ssize_t, copy_file_range, (int fd_in, off64_t *off_in, int fd_out,          \
	  off64_t *off_out, size_t len, unsigned int flags),                                     \
	  (fd_in, off_in, fd_out, off_out, len, flags),                                          \
	  xfer, (SYS_copy_file_range, fd_in, (uintptr_t)off_in, fd_out, (uintptr_t)off_out, len, \
		 flags))                                                                        \
	/* fcntl's third argument is an int or a pointer: pass the register on */              \
	X(both, fd_va, int, fcntl, (int fd, int cmd, ...), (fd, cmd, arg), fcntl, (fd, cmd, arg)) \
	X(libc, fd_va, int, fcntl64, (int fd, int cmd, ...), (fd, cmd, arg), fcntl, (fd, cmd, arg)) \
	/* the address space */                                                                 \
	X(both, map, void *, mmap, (void *addr, size_t len, int prot, int flags, int fd, off_t off), \
	  (addr, len, prot, flags, fd, off), mmap, (addr, len, prot, flags, fd, off))            \
	X(libc, map, void *, mmap64,                                                            \
	  (void *addr, size_t len, int prot, int flags, int fd, off64_t off),                   \
	  (addr, len, prot, flags, fd, off), mmap, (addr, len, prot, flags, fd, off))            \
	X(both, hva, int, munmap, (void *addr, size_t len), (addr, len), munmap, (addr, len))   \
	X(both, hva_remap, void *, mremap, (void *old, size_t old_len, size_t new_len, int flags, ...), \
	  (old, old_len, new_len, flags, new_addr), mremap, (old, old_len, new_len, flags, new_addr)) \
	X(both, hva_advise, int, madvise, (void *addr, size_t len, int advice),                 \
	  (addr, len, advice), madvise, (addr, len, advice))                                     \
	X(both, hva, int, mprotect, (void *addr, size_t len, int prot),                         \
	  (addr, len, prot), mprotect, (addr, len))                                              \
	/* the stat family; stat() follows /proc/self/fd/N to the object */                     \
	X(both, fd, int, fstat, (int fd, struct stat *st), (fd, st), fstat, (fd, st))           \
	X(libc, fd, int, fstat64, (int fd, struct stat64 *st),                                  \
	  (fd, st), fstat, (fd, (struct stat *)st))                                              \
	X(both, path, int, fstatat, (int dirfd, const char *path, struct stat *st, int flags),  \
	  (dirfd, path, st, flags), fstatat, (dirfd, path, st, flags))                           \
	X(libc, path, int, fstatat64, (int dirfd, const char *path, struct stat64 *st, int flags), \
	  (dirfd, path, st, flags), fstatat, (dirfd, path, (struct stat *)st, flags))            \
	X(both, path, int, stat, (const char *path, struct stat *st),                           \
	  (path, st), fstatat, (AT_FDCWD, path, st, 0))                                          \
	X(libc, path, int, stat64, (const char *path, struct stat64 *st),                       \
	  (path, st), fstatat, (AT_FDCWD, path, (struct stat *)st, 0))                           \
	X(both, path, int, statx,                                                               \
	  (int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx),       \
	  (dirfd, path, flags, mask, stx), statx, (dirfd, path, flags, mask, stx))               \
	X(compat, fd, int, __fxstat, (int ver, int fd, struct stat *st),                        \
	  (ver, fd, st), fstat, (fd, st))                                                        \
	X(compat, fd, int, __fxstat64, (int ver, int fd, struct stat64 *st),                    \
	  (ver, fd, st), fstat, (fd, (struct stat *)st))                                         \
	X(compat, path, int, __xstat, (int ver, const char *path, struct stat *st),             \
	  (ver, path, st), fstatat, (AT_FDCWD, path, st, 0))                                     \
	X(compat, path, int, __xstat64, (int ver, const char *path, struct stat64 *st),         \
	  (ver, path, st), fstatat, (AT_FDCWD, path, (struct stat *)st, 0))                      \
	X(compat, path, int, __fxstatat,                                                        \
	  (int ver, int dirfd, const char *path, struct stat *st, int flags),                   \
	  (ver, dirfd, path, st, flags), fstatat, (dirfd, path, st, flags))                      \
	X(compat, path, int, __fxstatat64,                                                      \
	  (int ver, int dirfd, const char *path, struct stat64 *st, int flags),                 \
	  (ver, dirfd, path, st, flags), fstatat, (dirfd, path, (struct stat *)st, flags))       \
	/* links and access: access("/dev/kvm") succeeds where open() would */                  \
	X(both, path, ssize_t, readlink, (const char *path, char *buf, size_t size),            \
	  (path, buf, size), readlinkat, (AT_FDCWD, path, buf, size))                            \
	X(both, path, ssize_t, readlinkat, (int dirfd, const char *path, char *buf, size_t size), \
	  (dirfd, path, buf, size), readlinkat, (dirfd, path, buf, size))                        \
	X(both, path, int, access, (const char *path, int mode),                                \
	  (path, mode), access, (AT_FDCWD, path, mode))                                          \
	X(both, path, int, faccessat, (int dirfd, const char *path, int mode, int flags),       \
	  (dirfd, path, mode, flags), access, (dirfd, path, mode))                               \
	X(both, path, int, euidaccess, (const char *path, int mode),                            \
	  (path, mode), access, (AT_FDCWD, path, mode))

/*
 * The entry points: X(R, entry, params) is
 *   bool gm_uapi_<entry>(params..., R *ret);
 * true when the call was ours, with the libc-style result in *ret (errno
 * set on failure); false, having done nothing, for anything else.
 */
#define GM_UAPI_ENTRIES(X)                                                                      \
	X(int, open, (int dirfd, const char *path, int flags, mode_t mode))                      \
	X(int, close, (int fd))                                                                  \
	X(int, close_range, (unsigned int lo, unsigned int hi, int flags))                       \
	X(int, dup, (int fd))                                                                    \
	X(int, dup2, (int oldfd, int newfd, int flags, bool dup3))                               \
	X(int, ioctl, (int fd, unsigned long request, unsigned long arg))                        \
	X(ssize_t, read, (int fd, void *buf, size_t n))                                          \
	X(ssize_t, write, (int fd, const void *buf, size_t n))                                   \
	X(ssize_t, readv, (int fd, const struct iovec *iov, int cnt, bool write))                \
	X(ssize_t, pread, (int fd, void *buf, size_t n, off_t off, bool write))                 \
	X(off_t, lseek, (int fd, off_t off, int whence))                                         \
	X(void *, mmap, (void *addr, size_t len, int prot, int flags, int fd, off_t off,         \
			 void **token))                                                          \
	X(int, fallocate, (int fd, int mode, off_t off, off_t len))                              \
	X(int, posix_fallocate, (int fd, off_t off, off_t len))                                  \
	X(int, ftruncate, (int fd, off_t len))                                                   \
	X(int, fsync, (int fd))                                                                  \
	X(int, fchmod, (int fd, mode_t mode))                                                    \
	X(int, fchown, (int fd, uid_t uid, gid_t gid))                                           \
	X(int, shutdown, (int fd, int how))                                                      \
	X(ssize_t, sock_io, (int fd))                                                            \
	X(int, sock, (int fd))                                                                   \
	X(ssize_t, xfer, (long nr, unsigned long a0, unsigned long a1, unsigned long a2,         \
			  unsigned long a3, unsigned long a4, unsigned long a5))                 \
	X(int, fstat, (int fd, struct stat *st))                                                 \
	X(int, fstatat, (int dirfd, const char *path, struct stat *st, int flags))               \
	X(int, statx, (int dirfd, const char *path, int flags, unsigned int mask,                \
		       struct statx *stx))                                                      \
	X(int, fcntl, (int fd, int cmd, unsigned long arg))                                      \
	X(ssize_t, readlinkat, (int dirfd, const char *path, char *buf, size_t size))            \
	X(int, access, (int dirfd, const char *path, int mode))

/*
 * The mmu-notifier hooks: X(entry, params) is
 *   void *gm_uapi_<entry>_pre(params...);
 * which never handles the call: it opens an invalidation of the range and
 * returns a token (NULL: nothing to end) for gm_uapi_mm_post() after the
 * real call.
 */
#define GM_UAPI_MM_HOOKS(X)                                                                     \
	X(munmap, (void *addr, size_t len))                                                      \
	X(mremap, (void *old, size_t old_len, size_t new_len, int flags, void *new_addr))        \
	X(madvise, (void *addr, size_t len, int advice))                                         \
	X(mprotect, (void *addr, size_t len))
/* clang-format on */

/* ---- the bodies, one per kind --------------------------------------- */

#define GM_UNPAREN(...) __VA_ARGS__

#define GM_BODY_fd(R, name, args, entry, eargs, FALLBACK)       \
	{                                                       \
		R ret_;                                         \
		if (gm_uapi_##entry(GM_UNPAREN eargs, &ret_))   \
			return ret_;                            \
		return FALLBACK(name, args);                    \
	}
#define GM_BODY_path GM_BODY_fd

/* Variadic open flags carry a mode only for O_CREAT and O_TMPFILE. */
#define GM_BODY_path_open(R, name, args, entry, eargs, FALLBACK) \
	{                                                        \
		mode_t mode = 0;                                 \
		if (flags & (O_CREAT | __O_TMPFILE)) {           \
			va_list ap;                              \
			va_start(ap, flags);                     \
			mode = va_arg(ap, mode_t);               \
			va_end(ap);                              \
		}                                                \
		GM_BODY_fd(R, name, args, entry, eargs, FALLBACK) \
	}

/* The word after @cmd, whatever it is (read even when none was passed). */
#define GM_BODY_fd_va(R, name, args, entry, eargs, FALLBACK)    \
	{                                                       \
		unsigned long arg;                              \
		va_list ap;                                     \
		va_start(ap, cmd);                              \
		arg = va_arg(ap, unsigned long);                \
		va_end(ap);                                     \
		GM_BODY_fd(R, name, args, entry, eargs, FALLBACK) \
	}

#define GM_BODY_map(R, name, args, entry, eargs, FALLBACK)            \
	{                                                             \
		R ret_;                                               \
		void *token_;                                         \
		if (gm_uapi_##entry(GM_UNPAREN eargs, &token_, &ret_)) \
			return ret_;                                  \
		ret_ = FALLBACK(name, args);                          \
		gm_uapi_mm_post(token_);                              \
		return ret_;                                          \
	}

#define GM_BODY_hva(R, name, args, entry, eargs, FALLBACK)            \
	{                                                             \
		void *token_ = gm_uapi_##entry##_pre(GM_UNPAREN eargs); \
		R ret_ = FALLBACK(name, args);                        \
		gm_uapi_mm_post(token_);                              \
		return ret_;                                          \
	}

/*
 * madvise: discarding memslot memory guestmem made MAP_SHARED must still
 * read back zeros (src/core/gmemfd.h, kvm_shram_discard()).
 */
#define GM_BODY_hva_advise(R, name, args, entry, eargs, FALLBACK)      \
	{                                                              \
		R ret_;                                                \
		void *token_ = gm_uapi_##entry##_pre(GM_UNPAREN eargs); \
		if (!gm_uapi_madvise_discard(GM_UNPAREN eargs, &ret_)) \
			ret_ = FALLBACK(name, args);                   \
		gm_uapi_mm_post(token_);                               \
		return ret_;                                           \
	}

/* mremap's new address is there only with MREMAP_FIXED. */
#define GM_BODY_hva_remap(R, name, args, entry, eargs, FALLBACK) \
	{                                                        \
		void *new_addr = NULL;                           \
		if (flags & MREMAP_FIXED) {                      \
			va_list ap;                              \
			va_start(ap, flags);                     \
			new_addr = va_arg(ap, void *);           \
			va_end(ap);                              \
		}                                                \
		GM_BODY_hva(R, name, args, entry, eargs, FALLBACK) \
	}

/* One row's definition on a surface: the function @fn with body @kind. */
#define GM_SYSCALL_DEFINE(fn, kind, R, name, params, args, entry, eargs, FALLBACK) \
	R fn params GM_BODY_##kind(R, name, args, entry, eargs, FALLBACK)

#endif
