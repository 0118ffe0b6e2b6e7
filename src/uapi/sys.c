// SPDX-License-Identifier: MIT
/*
 * <guestmem/sys.h>: libc-shaped entry points.  For a guestmem fd they run
 * the object's operation and turn the negative errno into -1/errno; for
 * anything else they are the raw system call (never libc's wrapper, which
 * the preload library replaces, so there is no recursion).  The uapi entry
 * points (gm_uapi_*) are defined here too; both come from syscalls.h.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <guestmem/sys.h>

#include "core/gmemfd.h"
#include "entry.h"
#include "lib/compiler.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "uapi.h"

#define GM_PAGE_ALIGN_UP(x) (((x) + 4095) & ~(uint64_t)4095)

/* Mark the library as running on this thread (the hva hooks skip). */
#define GM_ENTER() int gm_saved_in_library_ = gm_uapi_enter()
#define GM_LEAVE() gm_uapi_leave(gm_saved_in_library_)

static long gm_ret(long r)
{
	if (r < 0) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* Answer the call here: -1 with @err, when @cond. */
#define GM_FAIL_IF(cond, err, ret)                      \
	do {                                            \
		if (unlikely(cond)) {                   \
			errno = (err);                  \
			*(ret) = -1;                    \
			return true;                    \
		}                                       \
	} while (0)

/*
 * guestmem's own descriptors are not open as far as the application is
 * concerned (lib/ownfd.h): any call on one is the kernel's EBADF.
 */
#define GM_OWN_EBADF(fd, ret) GM_FAIL_IF(gm_fd_is_own(fd), EBADF, ret)

/* A relative path (or AT_EMPTY_PATH) starting at one of our descriptors. */
static bool gm_at_own(int dirfd, const char *path)
{
	return dirfd != AT_FDCWD && (!path || path[0] != '/') && gm_fd_is_own(dirfd);
}

/*
 * An *at() call: relative to one of ours, EBADF; a /proc/self/fd/N (or
 * fdinfo, /dev/fd) link to one of ours, ENOENT (no such fd).
 */
#define GM_OWN_AT(dirfd, path, ret)                                     \
	do {                                                            \
		GM_FAIL_IF(gm_at_own(dirfd, path), EBADF, ret);         \
		GM_FAIL_IF(gm_proc_fd_is_own(path), ENOENT, ret);       \
	} while (0)

bool gm_uapi_open(int dirfd, const char *path, int flags, mode_t mode, int *ret)
{
	struct gm_file *f;
	long r;

	(void)mode;
	GM_OWN_AT(dirfd, path, ret);
	if (!path || (flags & O_PATH) || path[0] != '/')
		return false;
	(void)dirfd; /* absolute: the directory does not matter */
	if (gm_path_is_modparam(path)) {
		*ret = (int)gm_ret(gm_modparam_open(path, flags));
		return true;
	}
	if (gm_path_is_dev_kvm(path)) {
		GM_ENTER();
		*ret = (int)gm_ret(gm_dev_open(flags));
		GM_LEAVE();
		return true;
	}
	f = gm_proc_fd_lookup(path);
	if (!f)
		return false;
	GM_ENTER();
	/* Reopening: a character device opens again; anonymous files cannot. */
	r = f->type == GM_FILE_SYSTEM ? gm_dev_open(flags) : -ENXIO;
	gm_file_put(f);
	*ret = (int)gm_ret(r);
	GM_LEAVE();
	return true;
}

bool gm_uapi_close(int fd, int *ret)
{
	struct gm_file *f;

	GM_OWN_EBADF(fd, ret);
	f = gm_file_lookup(fd);
	if (!f)
		return false;
	GM_ENTER();
	*ret = gm_raw_close(fd);
	/* The kernel's final fput runs ->release before close() returns. */
	gm_file_check_hangup_closing(f);
	gm_file_put(f);
	GM_LEAVE();
	return true;
}

/*
 * close_range() over a range holding some of guestmem's own descriptors:
 * the kernel's call on each stretch between them.  CLOSE_RANGE_UNSHARE
 * goes with the first call, so the rest act on the unshared table too.
 * Object fds in the range are released on the keeper's event, as after
 * any raw close (uapi/keeper.c).
 */
bool gm_uapi_close_range(unsigned int lo, unsigned int hi, int flags, int *ret)
{
	bool first = true;
	unsigned int cur = lo;

	/* What the kernel refuses (EINVAL) it answers itself. */
	if ((flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC)) || lo > hi ||
	    !gm_fd_any_own(lo, hi))
		return false;
	for (;;) {
		int n = gm_fd_next_own(cur);
		unsigned int end = (n < 0 || (unsigned int)n > hi) ? hi : (unsigned int)n - 1;

		if (n < 0 || (unsigned int)n != cur) {
			if (GM_RAW_SYSCALL(SYS_close_range, cur, end,
					   first ? flags : (int)(flags & ~(int)CLOSE_RANGE_UNSHARE))) {
				*ret = -1;
				return true;
			}
			first = false;
		}
		if (n < 0 || (unsigned int)n >= hi)
			break;
		cur = (unsigned int)n + 1;
	}
	*ret = 0;
	return true;
}

bool gm_uapi_dup(int fd, int *ret)
{
	GM_OWN_EBADF(fd, ret);
	return false;
}

/*
 * dup2/dup3 with one of our descriptors as the source: EBADF.  As the
 * target: the kernel would close it and reuse the number, which would
 * leave guestmem holding the application's file; it fails with EBUSY
 * instead (what dup2 answers when it races with an open of that number),
 * a deviation the README lists.  dup3's own EINVAL checks come first.
 */
bool gm_uapi_dup2(int oldfd, int newfd, int flags, bool dup3, int *ret)
{
	if (dup3 && ((flags & ~O_CLOEXEC) || oldfd == newfd))
		return false;
	GM_OWN_EBADF(oldfd, ret);
	GM_FAIL_IF(gm_fd_is_own(newfd), EBUSY, ret);
	return false;
}

/* One lookup-call-put: @lookup gives the file (a reference) or NULL. */
#define GM_OBJ_OP(lookup, ret, expr)                    \
	do {                                            \
		struct gm_file *f = (lookup);           \
		if (!f)                                 \
			return false;                   \
		GM_ENTER();                             \
		*(ret) = gm_ret(expr);                  \
		gm_file_put(f);                         \
		GM_LEAVE();                             \
		return true;                            \
	} while (0)
/* Another process's objects too (uapi/remote.c), once this one holds any. */
#define GM_FILE_OP(fd, ret, expr)                                \
	do {                                                     \
		GM_OWN_EBADF(fd, ret);                           \
		GM_OBJ_OP(gm_file_lookup_any(fd), ret, expr);    \
	} while (0)
/* Looking for another process's object in any case (uapi.h). */
#define GM_FILE_OP_FOREIGN(fd, ret, expr)                        \
	do {                                                     \
		GM_OWN_EBADF(fd, ret);                           \
		GM_OBJ_OP(gm_file_lookup_foreign(fd), ret, expr); \
	} while (0)

bool gm_uapi_ioctl(int fd, unsigned long request, unsigned long arg, int *ret)
{
	unsigned int cmd = (unsigned int)request; /* the kernel takes 32 bits */

	/* fd flags: the socket's own answer is the right one. */
	if (cmd == FIOCLEX || cmd == FIONCLEX || cmd == FIONBIO || cmd == FIOASYNC)
		return false;
	if (_IOC_TYPE(cmd) == KVMIO)
		GM_FILE_OP_FOREIGN(fd, ret, gm_fop_ioctl(f, cmd, arg));
	GM_FILE_OP(fd, ret, gm_fop_ioctl(f, cmd, arg));
}

bool gm_uapi_read(int fd, void *buf, size_t n, ssize_t *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_read(f, buf, n));
}

bool gm_uapi_write(int fd, const void *buf, size_t n, ssize_t *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_write(f, buf, n));
}

bool gm_uapi_readv(int fd, const struct iovec *iov, int cnt, bool write, ssize_t *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_readv(f, iov, cnt, write));
}

bool gm_uapi_pread(int fd, void *buf, size_t n, off_t off, bool write, ssize_t *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_pread(f, buf, n, off, write));
}

bool gm_uapi_lseek(int fd, off_t off, int whence, off_t *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_lseek(f, off, whence));
}

bool gm_uapi_fallocate(int fd, int mode, off_t off, off_t len, int *ret)
{
	GM_FILE_OP_FOREIGN(fd, ret, gm_fop_fallocate(f, mode, off, len));
}

/*
 * posix_fallocate(3) on an object, answered as glibc answers with the
 * kernel's file (its fallback's fcntl, fstat, ftruncate, pread and pwrite
 * are libc-internal system calls no wrapper sees): fallocate(mode 0)
 * first; on EOPNOTSUPP (a guest_memfd needs KEEP_SIZE) the portable
 * emulation: argument checks, no O_APPEND, a regular file, a zero length
 * only extends the size, else a byte read (and if zero written) per block
 * of the file system's size, which a guest_memfd refuses (ESPIPE: no
 * positional I/O).  *@ret is an errno value, 0 on success.
 */
#define GM_POSIX_FALLOC_BLOCK 4096 /* anon-inode block size; glibc caps it there too */

bool gm_uapi_posix_fallocate(int fd, off_t off, off_t len, int *ret)
{
	struct stat st;
	ssize_t n;
	int r;

	if (!gm_uapi_fallocate(fd, 0, off, len, &r))
		return false;
	*ret = r ? errno : 0;
	if (!r || errno != EOPNOTSUPP)
		return true;
	if (off < 0 || len < 0) {
		*ret = EINVAL;
		return true;
	}
	if ((off_t)((uint64_t)off + (uint64_t)len) < 0) {
		*ret = EFBIG;
		return true;
	}
	if (!gm_uapi_fcntl(fd, F_GETFL, 0, &r))
		r = (int)GM_RAW_SYSCALL(SYS_fcntl, fd, F_GETFL);
	if (r < 0 || (r & O_APPEND)) {
		*ret = EBADF;
		return true;
	}
	if (!gm_uapi_fstat(fd, &st, &r) || r) {
		*ret = EBADF;
		return true;
	}
	*ret = S_ISFIFO(st.st_mode) ? ESPIPE : !S_ISREG(st.st_mode) ? ENODEV : 0;
	if (*ret)
		return true;
	if (len == 0) {
		if (st.st_size < off && gm_uapi_ftruncate(fd, off, &r) && r)
			*ret = errno;
		return true;
	}
	for (off += (len - 1) % GM_POSIX_FALLOC_BLOCK; len > 0; off += GM_POSIX_FALLOC_BLOCK) {
		char c = 0;

		len -= GM_POSIX_FALLOC_BLOCK;
		if (off < st.st_size) {
			if (gm_uapi_pread(fd, &c, 1, off, false, &n) && n < 0) {
				*ret = errno;
				return true;
			}
			if (n == 1 && c)
				continue;
		}
		if (!gm_uapi_pread(fd, &c, 1, off, true, &n) || n != 1) {
			*ret = errno;
			return true;
		}
	}
	return true;
}

bool gm_uapi_ftruncate(int fd, off_t len, int *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_ftruncate(f, len));
}

bool gm_uapi_fsync(int fd, int *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_fsync(f));
}

bool gm_uapi_fchmod(int fd, mode_t mode, int *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_fchmod(f, mode));
}

bool gm_uapi_fchown(int fd, uid_t uid, gid_t gid, int *ret)
{
	GM_FILE_OP(fd, ret, gm_fop_fchown(f, uid, gid));
}

bool gm_uapi_shutdown(int fd, int how, int *ret)
{
	(void)how;
	/* Not a socket to the application; and a shutdown would fake a close. */
	GM_FILE_OP(fd, ret, -ENOTSOCK);
}

bool gm_uapi_sock_io(int fd, ssize_t *ret)
{
	/* sockfd_lookup(): the file is there but is not a socket. */
	GM_FILE_OP(fd, ret, -ENOTSOCK);
}

bool gm_uapi_sock(int fd, int *ret)
{
	GM_FILE_OP(fd, ret, -ENOTSOCK);
}

/* ---- splice, tee, sendfile, copy_file_range ---------------------------- */

/* The file behind @fd if it is ours (a reference), else NULL. */
static struct gm_file *gm_xfer_file(long fd)
{
	return fd < 0 || fd > INT32_MAX ? NULL : gm_file_lookup((int)fd);
}

/* OPEN_FMODE() of a guestmem file: FMODE_READ / FMODE_WRITE. */
static bool gm_xfer_can(const struct gm_file *f, bool write)
{
	return ((f->f_flags + 1) & O_ACCMODE) & (write ? 2 : 1);
}

/*
 * What the kernel knows about the other fd of a two-fd call: EBADF if it
 * is not open, whether it is a pipe, a directory or a regular file, its
 * file mode.  @f is set when it is ours too.
 */
struct gm_xfer_other {
	struct gm_file *f;
	bool bad, pipe, dir, reg, rd, wr, append;
};

static void gm_xfer_other_get(long fd, struct gm_xfer_other *o)
{
	struct stat st;
	int fl;

	memset(o, 0, sizeof(*o));
	o->f = gm_xfer_file(fd);
	if (o->f) {
		o->reg = o->f->ops->fops & GM_FOPS_REG;
		o->rd = gm_xfer_can(o->f, false);
		o->wr = gm_xfer_can(o->f, true);
		return;
	}
	fl = (int)(fd < 0 || fd > INT32_MAX ? -1 : gm_raw_fcntl((int)fd, F_GETFL, 0));
	if (fd < 0 || fd > INT32_MAX || fl < 0 || gm_raw_fstat((int)fd, &st)) {
		o->bad = true;
		return;
	}
	o->pipe = S_ISFIFO(st.st_mode);
	o->dir = S_ISDIR(st.st_mode);
	o->reg = S_ISREG(st.st_mode);
	o->rd = (fl & O_ACCMODE) != O_WRONLY && !(fl & O_PATH);
	o->wr = (fl & O_ACCMODE) != O_RDONLY && !(fl & O_PATH);
	o->append = fl & O_APPEND;
}

/*
 * splice, tee, sendfile and copy_file_range where one fd is ours: the
 * VFS's checks in 6.12's order (fs/splice.c, fs/read_write.c).  Our files
 * have no splice_read, splice_write, copy_file_range or remap methods, and
 * are never pipes, so past the checks every transfer is EINVAL.
 */
static long gm_xfer(long nr, const uint64_t *a)
{
	struct gm_xfer_other o;
	struct gm_file *in, *out;
	bool in_pipe, out_pipe, in_rd, out_wr;
	long r;

	switch (nr) {
	case SYS_splice:
		if (a[5] & ~0xfULL) /* SPLICE_F_ALL */
			return -EINVAL;
		if (!a[4])
			return 0;
		break;
	case SYS_tee:
		if (a[3] & ~0xfULL)
			return -EINVAL;
		if (!a[2])
			return 0;
		break;
	}
	/* in, out: splice/tee/copy_file_range (in, ..., out), sendfile (out, in). */
	long in_fd = (long)a[nr == SYS_sendfile ? 1 : 0];
	long out_fd = (long)a[nr == SYS_sendfile ? 0 : nr == SYS_tee ? 1 : 2];
	in = gm_xfer_file(in_fd);
	if (in) {
		gm_xfer_other_get(out_fd, &o);
		out = o.f;
		if (o.bad) {
			gm_file_put(in);
			return -EBADF;
		}
		in_pipe = false;
		in_rd = gm_xfer_can(in, false);
		out_pipe = o.pipe;
		out_wr = o.wr;
	} else {
		gm_xfer_other_get(in_fd, &o);
		out = gm_xfer_file(out_fd);
		if (!out) /* raced with a close: not ours any more */
			return -EBADF;
		if (o.bad) {
			gm_file_put(out);
			return -EBADF;
		}
		in_pipe = o.pipe;
		in_rd = o.rd;
		out_pipe = false;
		out_wr = gm_xfer_can(out, true);
	}
	r = -EINVAL;
	switch (nr) {
	case SYS_splice:
		if ((in_pipe && a[1]) || (out_pipe && a[3]))
			r = -ESPIPE;
		else if (!in_rd || !out_wr)
			r = -EBADF;
		else if (in_pipe && a[3] && !(out->ops->fops & GM_FOPS_PREAD))
			r = -EINVAL;
		else if (out_pipe && a[1] && !(in->ops->fops & GM_FOPS_PREAD))
			r = -EINVAL;
		break;
	case SYS_tee:
		r = !in_rd || !out_wr ? -EBADF : -EINVAL;
		break;
	case SYS_sendfile:
		if (!in_rd)
			r = -EBADF;
		else if (in && a[2] && !(in->ops->fops & GM_FOPS_PREAD))
			r = -ESPIPE;
		else if (!out_wr)
			r = -EBADF;
		else if (!a[3])
			r = 0;
		break;
	case SYS_copy_file_range: {
		bool in_reg = in ? (in->ops->fops & GM_FOPS_REG) : o.reg;
		bool out_reg = out ? (out->ops->fops & GM_FOPS_REG) : o.reg;

		if (a[5])
			r = -EINVAL;
		else if (!in || !out ? o.dir : false)
			r = -EISDIR;
		else if (!in_reg || !out_reg)
			r = -EINVAL;
		else if (!in_rd || !out_wr || (!out ? o.append : false))
			r = -EBADF;
		else if (!in || !out)
			r = -EXDEV; /* another super block, and no copy method */
		else {
			/* Two guest_memfds (one super block): shortened to EOF, then splice. */
			struct stat st;
			int64_t pos = 0;

			if (a[1] && gm_copy_from_user(&pos, (void *)a[1], sizeof(pos)))
				r = -EFAULT;
			else {
				gm_fop_stat(in, &st);
				r = pos >= st.st_size || !a[4] ? 0 : -EINVAL;
			}
		}
		break;
	}
	}
	if (in)
		gm_file_put(in);
	if (out)
		gm_file_put(out);
	return r;
}

/* Whether fd @a is ours (a lookup, no reference kept). */
static bool gm_xfer_ours(unsigned long a)
{
	struct gm_file *f = gm_xfer_file((long)a);

	if (f)
		gm_file_put(f);
	return f != NULL;
}

bool gm_uapi_xfer(long nr, unsigned long a0, unsigned long a1, unsigned long a2,
		  unsigned long a3, unsigned long a4, unsigned long a5, ssize_t *ret)
{
	const uint64_t a[6] = { a0, a1, a2, a3, a4, a5 };
	int ifd = nr == SYS_sendfile ? 1 : 0;
	int ofd = nr == SYS_sendfile ? 0 : nr == SYS_tee ? 1 : 2;

	GM_FAIL_IF(gm_fd_is_own((int)a[ifd]) || gm_fd_is_own((int)a[ofd]), EBADF, ret);
	if (!gm_xfer_ours(a[ifd]) && !gm_xfer_ours(a[ofd]))
		return false;
	GM_ENTER();
	*ret = gm_ret(gm_xfer(nr, a));
	GM_LEAVE();
	return true;
}

/*
 * stat of @f, or for NULL of the path guestmem answers: /dev/kvm (which must
 * work on a host without one, like open() does) or a module parameter.
 */
static int gm_obj_stat(struct gm_file *f, const char *path, struct stat *st)
{
	if (f) {
		gm_fop_stat(f, st);
		return 0;
	}
	if (gm_path_is_modparam(path))
		return gm_modparam_stat(path, st);
	gm_dev_stat(st);
	return 0;
}

static long gm_stat_out(struct gm_file *f, const char *path, void *user)
{
	struct stat st;
	int r = gm_obj_stat(f, path, &st);

	return r ? r : gm_copy_to_user(user, &st, sizeof(st));
}

bool gm_uapi_fstat(int fd, struct stat *st, int *ret)
{
	GM_FILE_OP_FOREIGN(fd, ret, gm_stat_out(f, NULL, st));
}

/*
 * The file an *at() path names: @dirfd itself for AT_EMPTY_PATH with "",
 * or the object behind a /proc fd link when the call follows links.
 */
static struct gm_file *gm_at_lookup(int dirfd, const char *path, int flags)
{
	if ((flags & AT_EMPTY_PATH) && (!path || !path[0]))
		return gm_file_lookup_foreign(dirfd);
	if (path && path[0] == '/' && !(flags & AT_SYMLINK_NOFOLLOW))
		return gm_proc_fd_lookup(path);
	return NULL;
}

/* An *at() stat call: @out(the file, or NULL and a path we answer, @user). */
static bool gm_at_stat(int dirfd, const char *path, int flags,
		       long (*out)(struct gm_file *f, const char *path, void *user), void *user,
		       int *ret)
{
	struct gm_file *f;

	GM_OWN_AT(dirfd, path, ret);
	f = gm_at_lookup(dirfd, path, flags);
	if (!f) {
		if (!gm_path_is_dev_kvm(path) && !gm_path_is_modparam(path))
			return false;
		*ret = (int)gm_ret(out(NULL, path, user));
		return true;
	}
	GM_ENTER();
	*ret = (int)gm_ret(out(f, NULL, user));
	gm_file_put(f);
	GM_LEAVE();
	return true;
}

bool gm_uapi_fstatat(int dirfd, const char *path, struct stat *st, int flags, int *ret)
{
	return gm_at_stat(dirfd, path, flags, gm_stat_out, st, ret);
}

bool gm_uapi_access(int dirfd, const char *path, int mode, int *ret)
{
	GM_OWN_AT(dirfd, path, ret);
	if (gm_path_is_modparam(path)) {
		*ret = (int)gm_ret(gm_modparam_access(path, mode));
		return true;
	}
	if (!gm_path_is_dev_kvm(path))
		return false;
	/* A character device without execute bits: only X_OK is refused. */
	*ret = (int)gm_ret((mode & X_OK) ? -EACCES : 0);
	return true;
}

static long gm_statx_out(struct gm_file *f, const char *path, void *user)
{
	struct statx stx;
	struct stat st;
	int r = gm_obj_stat(f, path, &st);

	if (r)
		return r;
	memset(&stx, 0, sizeof(stx));
	stx.stx_mask = STATX_BASIC_STATS;
	stx.stx_blksize = (uint32_t)st.st_blksize;
	stx.stx_nlink = (uint32_t)st.st_nlink;
	stx.stx_uid = st.st_uid;
	stx.stx_gid = st.st_gid;
	stx.stx_mode = (uint16_t)st.st_mode;
	stx.stx_ino = st.st_ino;
	stx.stx_size = (uint64_t)st.st_size;
	stx.stx_blocks = (uint64_t)st.st_blocks;
	stx.stx_atime = (struct statx_timestamp){ st.st_atim.tv_sec, (uint32_t)st.st_atim.tv_nsec };
	stx.stx_mtime = (struct statx_timestamp){ st.st_mtim.tv_sec, (uint32_t)st.st_mtim.tv_nsec };
	stx.stx_ctime = (struct statx_timestamp){ st.st_ctim.tv_sec, (uint32_t)st.st_ctim.tv_nsec };
	stx.stx_rdev_major = major(st.st_rdev);
	stx.stx_rdev_minor = minor(st.st_rdev);
	stx.stx_dev_major = major(st.st_dev);
	stx.stx_dev_minor = minor(st.st_dev);
	return gm_copy_to_user(user, &stx, sizeof(stx));
}

bool gm_uapi_statx(int dirfd, const char *path, int flags, unsigned int mask,
		   struct statx *stx, int *ret)
{
	(void)mask; /* the basic stats are always all there */
	return gm_at_stat(dirfd, path, flags, gm_statx_out, stx, ret);
}

bool gm_uapi_fcntl(int fd, int cmd, unsigned long arg, int *ret)
{
	struct gm_file *f;
	bool handled;
	long r;

	GM_OWN_EBADF(fd, ret);
	/* The common fd-flag commands are the socket's own: skip the lookup. */
	if (cmd == F_GETFD || cmd == F_SETFD || cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
		return false;
	f = gm_file_lookup(fd);
	if (!f)
		return false;
	GM_ENTER();
	r = gm_fop_fcntl(f, fd, cmd, arg, &handled);
	gm_file_put(f);
	GM_LEAVE();
	if (handled)
		*ret = (int)gm_ret(r);
	return handled;
}

bool gm_uapi_readlinkat(int dirfd, const char *path, char *buf, size_t size, ssize_t *ret)
{
	GM_OWN_AT(dirfd, path, ret);
	if (!path || path[0] != '/')
		return false;
	GM_OBJ_OP(gm_proc_fd_lookup(path), ret, gm_fop_readlink(f, buf, size));
}

static void *gm_hva_start(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	return gm_uapi_hva_start(a, a + GM_PAGE_ALIGN_UP(len));
}

/* The same for a change that keeps the range mapped. */
static void *gm_hva_start_clear(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	return gm_uapi_hva_start_clear(a, a + GM_PAGE_ALIGN_UP(len));
}

void gm_uapi_mm_post(void *token)
{
	int saved = errno;

	gm_uapi_hva_end(token);
	errno = saved;
}

bool gm_uapi_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **token,
		  void **ret)
{
	struct gm_file *f;
	void *p = MAP_FAILED;
	int r;

	*token = NULL;
	/* The kernel checks the offset's alignment before it looks the fd up. */
	if (!(flags & MAP_ANONYMOUS) && !(off & 4095) && gm_fd_is_own(fd)) {
		errno = EBADF;
		*ret = MAP_FAILED;
		return true;
	}
	/* A fixed mapping replaces whatever was there. */
	*token = (flags & MAP_FIXED) ? gm_hva_start(addr, len) : NULL;
	if (flags & MAP_ANONYMOUS)
		return false;
	/* Another process's too: a 6.18 MMAP guest_memfd maps anywhere. */
	f = gm_file_lookup_any(fd);
	if (!f)
		return false;
	GM_ENTER();
	r = gm_fop_mmap(f, addr, len, prot, flags, off, &p);
	gm_file_put(f);
	GM_LEAVE();
	gm_uapi_mm_post(*token);
	*token = NULL;
	if (r) {
		errno = -r;
		p = MAP_FAILED;
	}
	*ret = p;
	return true;
}

void *gm_uapi_munmap_pre(void *addr, size_t len)
{
	return gm_hva_start(addr, len);
}

void *gm_uapi_mremap_pre(void *old, size_t old_len, size_t new_len, int flags, void *new_addr)
{
	/* The old range moves, shrinks or stays: treat it as changed. */
	uintptr_t lo = (uintptr_t)old, hi = lo + GM_PAGE_ALIGN_UP(old_len);

	/* A fixed destination is unmapped first: one hull covers both. */
	if (flags & MREMAP_FIXED) {
		uintptr_t n = (uintptr_t)new_addr;

		lo = GM_MIN(lo, n);
		hi = GM_MAX(hi, n + GM_PAGE_ALIGN_UP(new_len));
	}
	return gm_uapi_hva_start(lo, hi);
}

void *gm_uapi_madvise_pre(void *addr, size_t len, int advice)
{
	switch (advice) {
	case MADV_DONTNEED:
	case MADV_REMOVE:
	case MADV_FREE:
	case MADV_PAGEOUT:
	case 24: /* MADV_DONTNEED_LOCKED */
		return gm_hva_start_clear(addr, len);
	}
	return NULL;
}

bool gm_uapi_madvise_discard(void *addr, size_t len, int advice, int *ret)
{
	uintptr_t a = (uintptr_t)addr;
	bool all;

	if (advice != MADV_DONTNEED && advice != MADV_FREE && advice != 24 /* _LOCKED */)
		return false;
	/* What the host refuses (EINVAL) is left to it, with nothing punched. */
	if (!len || !GM_PAGE_ALIGNED(a) || len > UINTPTR_MAX - a - GM_PAGE_SIZE ||
	    gm_uapi_in_library)
		return false;
	gm_uapi_enter();
	all = kvm_shram_discard(a, a + GM_PAGE_ALIGN_UP(len));
	gm_uapi_leave(0);
	if (!all || advice != MADV_FREE)
		return false;
	*ret = 0;
	return true;
}

void *gm_uapi_mprotect_pre(void *addr, size_t len)
{
	return gm_hva_start_clear(addr, len);
}

/* ---- <guestmem/sys.h> ------------------------------------------------- */

/*
 * One guestmem_sys_<name>() per "both" row of syscalls.h; "not ours" is
 * the raw system call.  The typeof line refuses a row <guestmem/sys.h>
 * does not declare; the definition refuses one it declares differently.
 */
#define GM_SYS_RAW(name, args) gm_raw_##name(GM_UNPAREN args)
/*
 * Not a system call: libc's own, for a file that is not ours, found past
 * this object (a direct call would bind to the preload's wrapper under
 * exec: tests/uapi/check-no-reentry.sh).
 */
static int gm_raw_posix_fallocate(int fd, off_t off, off_t len)
{
	static int (*libc_fn)(int, off_t, off_t);
	int (*fn)(int, off_t, off_t) = __atomic_load_n(&libc_fn, __ATOMIC_ACQUIRE);

	if (!fn) {
		*(void **)&fn = dlsym(RTLD_NEXT, "posix_fallocate");
		if (!fn)
			return ENOSYS;
		__atomic_store_n(&libc_fn, fn, __ATOMIC_RELEASE);
	}
	return fn(fd, off, len);
}
#define GM_SYS_both(kind, R, name, params, args, entry, eargs)                       \
	extern __typeof__(guestmem_sys_##name) guestmem_sys_##name;                  \
	GM_API GM_SYSCALL_DEFINE(guestmem_sys_##name, kind, R, name, params, args, entry, \
				 eargs, GM_SYS_RAW)
#define GM_SYS_libc(...)
#define GM_SYS_compat(...)
#define GM_SYS(surface, ...) GM_SYS_##surface(__VA_ARGS__)

GM_SYSCALLS(GM_SYS)

GM_API bool guestmem_sys_is_guestmem_fd(int fd)
{
	struct gm_file *f = gm_file_lookup(fd);

	if (f)
		gm_file_put(f);
	return f != NULL;
}
