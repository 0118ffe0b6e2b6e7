// SPDX-License-Identifier: MIT
/*
 * The VFS around guestmem files: what the kernel answers for each system
 * call on a file given its f_mode, its inode type and which methods its
 * file_operations has (spec §3.4; vCPU spec §3.2 and §4.2).  The type's own
 * methods (struct gm_file_ops) run after these generic checks.
 *
 * Every function returns a value >= 0 or a negative errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/config.h"
#include "core/vfs.h"
#include "lib/sys_raw.h"
#include "uapi.h"
#include "lib/lockdep.h"

#define GM_TASK_SIZE 0x7ffffffff000ULL /* x86-64, 4-level paging */
#define GM_SEEK_MAX 4		       /* SEEK_HOLE */
/* fcntl(F_SETFL)-able status bits: they live on the socket itself. */
#define GM_SETFL_MASK (O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME | O_ASYNC)
#ifndef MAP_UNINITIALIZED
#define MAP_UNINITIALIZED 0x4000000
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_GET_SEALS 1034
#endif

/* OPEN_FMODE(): the access mode 3 ("ioctl only") can neither read nor write. */
static bool gm_can_read(const struct gm_file *f)
{
	return ((f->f_flags + 1) & O_ACCMODE) & 1;
}

static bool gm_can_write(const struct gm_file *f)
{
	return ((f->f_flags + 1) & O_ACCMODE) & 2;
}

static bool gm_is_reg(const struct gm_file *f)
{
	return f->ops->fops & GM_FOPS_REG;
}

/* The ioctls do_vfs_ioctl() answers before the file's own ioctl method. */
static long gm_vfs_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg, bool *done)
{
	struct stat st;
	int64_t zero = 0;
	int v;

	*done = true;
	switch (cmd) {
	case FIOQSIZE:
		/* i_blocks stays 0 for a guest_memfd; other types: ENOTTY. */
		if (!gm_is_reg(f))
			return -ENOTTY;
		return gm_copy_to_user((void *)arg, &zero, sizeof(zero));
	case FIGETBSZ:
		v = 4096; /* pseudo and tmpfs super blocks: PAGE_SIZE */
		return gm_copy_to_user((void *)arg, &v, sizeof(v));
	case FIONREAD:
		if (!gm_is_reg(f))
			break;
		gm_fop_stat(f, &st);
		v = (int)st.st_size; /* i_size - f_pos, truncated like put_user(int) */
		return gm_copy_to_user((void *)arg, &v, sizeof(v));
	case FS_IOC_FIEMAP:
		return -EOPNOTSUPP; /* no ->fiemap */
	}
	*done = false;
	return 0;
}

long gm_fop_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg)
{
	bool done;
	long r = gm_vfs_ioctl(f, cmd, arg, &done);

	if (done)
		return r;
	return f->ops->ioctl ? f->ops->ioctl(f, cmd, arg) : -ENOTTY;
}

/*
 * Only stats files have a read method; the position is the file's own
 * (shared by dup()ed fds), moved under the file's position lock as
 * fdget_pos() does.
 */
ssize_t gm_fop_read(struct gm_file *f, void *buf, size_t n)
{
	ssize_t r;

	if (!gm_can_read(f))
		return -EBADF;
	if (!f->ops->read)
		return -EINVAL;
	gm_mutex_lock(&f->pos_lock, GM_LOCK_FILE_POS);
	r = f->ops->read(f, buf, n, &f->pos);
	gm_mutex_unlock(&f->pos_lock);
	return r;
}

ssize_t gm_fop_write(struct gm_file *f, const void *buf, size_t n)
{
	(void)buf;
	(void)n;
	return gm_can_write(f) ? -EINVAL : -EBADF;
}

/* readv/writev: the mode checks come before the iovec is imported. */
ssize_t gm_fop_readv(struct gm_file *f, const void *iov, int cnt, bool write)
{
	(void)iov;
	(void)cnt;
	return write ? gm_fop_write(f, NULL, 0) : gm_fop_read(f, NULL, 0);
}

/* pread/pwrite: only files opened through open(2) have FMODE_PREAD. */
ssize_t gm_fop_pread(struct gm_file *f, void *buf, size_t n, off_t off, bool write)
{
	if (off < 0)
		return -EINVAL;
	if (!(f->ops->fops & GM_FOPS_PREAD))
		return -ESPIPE;
	if (!write && gm_can_read(f) && f->ops->read)
		return f->ops->read(f, buf, n, &off);
	return write ? gm_fop_write(f, buf, 0) : gm_fop_read(f, buf, 0);
}

off_t gm_fop_lseek(struct gm_file *f, off_t off, int whence)
{
	(void)off;
	if (whence < 0 || whence > GM_SEEK_MAX)
		return -EINVAL;
	/* noop_llseek returns f_pos (only a stats file's read moves it). */
	return (f->ops->fops & GM_FOPS_NOOP_LLSEEK) ? READ_ONCE(f->pos) : -ESPIPE;
}

/* Flags a plain MAP_SHARED accepts (the kernel's LEGACY_MAP_MASK). */
#define GM_LEGACY_MAP_MASK                                                          \
	(MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_DENYWRITE |     \
	 MAP_EXECUTABLE | MAP_UNINITIALIZED | MAP_GROWSDOWN | MAP_LOCKED |          \
	 MAP_NORESERVE | MAP_POPULATE | MAP_NONBLOCK | MAP_STACK | MAP_HUGETLB)

/* do_mmap()'s checks for a file mapping, in order, up to ->mmap. */
static int gm_mmap_checks(struct gm_file *f, size_t len, int prot, int flags, off_t off)
{
	if (off & 4095)
		return -EINVAL;
	if (flags & MAP_HUGETLB)
		return -EINVAL; /* not a hugetlbfs file */
	if (!len)
		return -EINVAL;
	if (len > GM_TASK_SIZE)
		return -ENOMEM;
	switch (flags & MAP_TYPE) {
	case MAP_SHARED_VALIDATE:
		if (flags & ~GM_LEGACY_MAP_MASK & ~MAP_SHARED_VALIDATE)
			return -EOPNOTSUPP;
		/* fallthrough */
	case MAP_SHARED:
		if ((prot & PROT_WRITE) && !gm_can_write(f))
			return -EACCES;
		/* fallthrough */
	case MAP_PRIVATE:
		if (!gm_can_read(f))
			return -EACCES;
		if (!f->ops->mmap || (f->ops->has_mmap && !f->ops->has_mmap(f)))
			return -ENODEV;
		if (flags & MAP_GROWSDOWN)
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
}

int gm_fop_mmap(struct gm_file *f, void *addr, size_t len, int prot, int flags, off_t off,
		void **out)
{
	int ret = gm_mmap_checks(f, len, prot, flags, off);

	if (ret)
		return ret;
	return f->ops->mmap(f, addr, len, prot, flags, off, out);
}

int gm_fop_fallocate(struct gm_file *f, int mode, off_t off, off_t len)
{
	const struct gm_config *cfg = f->kvm ? &f->kvm->cfg : gm_config_get();
	int ret;

	/* guest_memfd's method runs the VFS checks itself, per VM profile. */
	if (f->ops->fallocate)
		return f->ops->fallocate(f, mode, off, len);
	ret = vfs_fallocate_args(cfg->profile, mode, off, len);
	if (ret)
		return ret;
	if (!gm_can_write(f))
		return -EBADF;
	return -ENODEV; /* neither a regular file nor a block device */
}

/* do_sys_ftruncate: non-regular is EINVAL; guest_memfd's setattr too. */
int gm_fop_ftruncate(struct gm_file *f, off_t len)
{
	(void)f;
	(void)len;
	return -EINVAL;
}

/* No ->fsync method on any of them. */
int gm_fop_fsync(struct gm_file *f)
{
	(void)f;
	return -EINVAL;
}

/*
 * guest_memfd's setattr refuses everything.  The others live on an inode
 * owned by root with the generic setattr: the owner check decides.  We do
 * not change the shared inode even when root asks (documented limitation).
 */
static int gm_setattr(struct gm_file *f, bool changes)
{
	if (!(f->ops->fops & GM_FOPS_ANON_SETATTR))
		return -EINVAL;
	if (!changes || geteuid() == 0)
		return 0;
	return -EPERM;
}

int gm_fop_fchmod(struct gm_file *f, mode_t mode)
{
	(void)mode;
	return gm_setattr(f, true);
}

int gm_fop_fchown(struct gm_file *f, uid_t uid, gid_t gid)
{
	return gm_setattr(f, uid != (uid_t)-1 || gid != (gid_t)-1);
}

void gm_fop_stat(struct gm_file *f, struct stat *st)
{
	f->ops->fill_stat(f, st);
}

int gm_fop_fcntl(struct gm_file *f, int fd, int cmd, unsigned long arg, bool *handled)
{
	long live;

	(void)arg;
	*handled = true;
	switch (cmd) {
	case F_GETFL:
		live = gm_raw_fcntl(fd, F_GETFL, 0);
		if (live < 0)
			return -errno;
		return (f->f_flags & ~GM_SETFL_MASK) | ((int)live & GM_SETFL_MASK);
	case F_ADD_SEALS:
	case F_GET_SEALS:
		return -EINVAL; /* not shmem */
	}
	*handled = false; /* fd flags, dup, locks, owner: the socket's are right */
	return 0;
}

ssize_t gm_fop_readlink(struct gm_file *f, char *buf, size_t size)
{
	size_t len = strlen(f->name);

	if (size == 0 || size > INT32_MAX)
		return -EINVAL;
	if (len > size)
		len = size;
	if (gm_copy_to_user(buf, f->name, len))
		return -EFAULT;
	return (ssize_t)len;
}
