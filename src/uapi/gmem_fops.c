// SPDX-License-Identifier: MIT
/*
 * File operations of a guest_memfd fd (spec §3.3, §3.4, §7 for 6.18 mmap).
 *
 * In the kernel the file has only open, release and fallocate (plus mmap
 * in 6.18 when created with GUEST_MEMFD_FLAG_MMAP); everything else is the
 * VFS's answer for a missing method, produced in src/uapi/fops.c.  The
 * inode is a regular file (S_IFREG|0600) on the anonymous-inode pseudo
 * file system: every guest_memfd has its own inode number and they all
 * share one st_dev.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "core/gmem.h"
#include "lib/keepfd.h"
#include "lib/sys_raw.h"
#include "uapi.h"

static int gm_gmem_fallocate(struct gm_file *f, int mode, off_t off, off_t len)
{
	return kvm_gmem_fallocate(f->obj, mode, off, len);
}

int gm_gmem_map(int fd, void *addr, size_t len, int prot, int flags, off_t off, void **out)
{
	int type = flags & MAP_TYPE, own = -1;
	void *p;

	if (type != MAP_SHARED && type != MAP_SHARED_VALIDATE)
		return -EINVAL; /* only shared mappings */
	/* The backing's own flags (e.g. MAP_SHARED_VALIDATE bits) stay ours. */
	flags = (flags & ~MAP_TYPE) | MAP_SHARED;
	if (fd < 0) {
		/* Private memory: every touch of the mapping must SIGBUS. */
		own = gm_raw_memfd_create("kvm-gmem-private", MFD_CLOEXEC);
		if (own < 0)
			return -errno;
		fd = own;
		off = 0;
	}
	p = gm_raw_mmap(addr, len, prot, flags, fd, off);
	if (own >= 0)
		gm_raw_close(own);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

/* The file a mapping's pages are in: the backing's for INIT_SHARED; none
 * (-1) for private memory, and for secretmem, which has no shared pages. */
static int gmem_pages_fd(struct kvm_gmem *gmem)
{
	return gmem->flags & GUEST_MEMFD_FLAG_INIT_SHARED ? gm_backing_memfd(&gmem->backing) : -1;
}

/* After gm_mmap_checks(), which answers ENODEV without GUEST_MEMFD_FLAG_MMAP. */
static int gm_gmem_mmap(struct gm_file *f, void *addr, size_t len, int prot, int flags,
			off_t off, void **out)
{
	return gm_gmem_map(gmem_pages_fd(f->obj), addr, len, prot, flags, off, out);
}

bool gm_gmem_has_mmap(struct gm_file *f)
{
	return ((struct kvm_gmem *)f->obj)->flags & GUEST_MEMFD_FLAG_MMAP;
}

int gm_gmem_map_source(struct gm_file *f, int *kept)
{
	int fd;

	*kept = -1;
	if (!gm_gmem_has_mmap(f))
		return -ENODEV;
	fd = gmem_pages_fd(f->obj);
	if (fd < 0)
		return 0;
	*kept = gm_fd_keep(fd);
	return *kept < 0 ? *kept : 0;
}

static void gm_gmem_fill_stat(struct gm_file *f, struct stat *st)
{
	struct kvm_gmem *gmem = f->obj;
	struct stat anon;

	gm_anon_inode_stat(&anon);
	memset(st, 0, sizeof(*st));
	st->st_dev = anon.st_dev;
	/* A new inode per guest_memfd; the socket's number is unique too. */
	st->st_ino = f->ino;
	st->st_mode = S_IFREG | 0600;
	st->st_nlink = 1;
	st->st_uid = gmem->uid;
	st->st_gid = gmem->gid;
	st->st_size = (off_t)gmem->size;
	st->st_blksize = 4096;
	st->st_blocks = 0; /* i_blocks is never updated */
	st->st_atim = f->btime;
	st->st_mtim.tv_sec = READ_ONCE(gmem->mtime.tv_sec);
	st->st_mtim.tv_nsec = READ_ONCE(gmem->mtime.tv_nsec);
	st->st_ctim.tv_sec = READ_ONCE(gmem->ctime.tv_sec);
	st->st_ctim.tv_nsec = READ_ONCE(gmem->ctime.tv_nsec);
	if (!st->st_mtim.tv_sec && !st->st_mtim.tv_nsec)
		st->st_mtim = st->st_ctim = f->btime;
}

static void gm_gmem_release(struct gm_file *f)
{
	kvm_gmem_put(f->obj);
}

const struct gm_file_ops gm_gmem_fops = {
	.fops = GM_FOPS_REG,
	.mmap = gm_gmem_mmap,
	.has_mmap = gm_gmem_has_mmap,
	.fallocate = gm_gmem_fallocate,
	.fill_stat = gm_gmem_fill_stat,
	.release = gm_gmem_release,
};
