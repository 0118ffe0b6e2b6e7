/* SPDX-License-Identifier: MIT */
/*
 * The generic VFS checks guestmem's files share with the kernel's (spec
 * §3.4.1 steps 1-5), per profile: by 6.12 vfs_fallocate() had become a
 * switch over exclusive operations; 6.17 added WRITE_ZEROES.
 */
#include <errno.h>
#include <linux/falloc.h>

#include "vfs.h"

#define GM_FALLOC_FL_WRITE_ZEROES 0x80 /* Linux 6.17+ */
#define GM_FALLOC_MODES_68                                                          \
	(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE |    \
	 FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE)
#define GM_FALLOC_MODE_MASK_618                                                     \
	(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE |   \
	 FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE | GM_FALLOC_FL_WRITE_ZEROES)

/* 6.8 vfs_fallocate: mode checks (steps 2-5). */
static int vfs_fallocate_mode_68(int mode)
{
	if (mode & ~GM_FALLOC_MODES_68)
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && (mode & FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_COLLAPSE_RANGE) && (mode & ~FALLOC_FL_COLLAPSE_RANGE))
		return -EINVAL;
	if ((mode & FALLOC_FL_INSERT_RANGE) && (mode & ~FALLOC_FL_INSERT_RANGE))
		return -EINVAL;
	if ((mode & FALLOC_FL_UNSHARE_RANGE) &&
	    (mode & ~(FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE)))
		return -EINVAL;
	return 0;
}

/*
 * 6.12 and 6.18 vfs_fallocate: the operations are exclusive (one mode bit
 * at most, besides KEEP_SIZE); a combination, or KEEP_SIZE with an
 * operation that changes the size, is EOPNOTSUPP (probes/probe3.out for
 * 6.18; fs/open.c of 6.12 has the same switch without WRITE_ZEROES).
 */
static int vfs_fallocate_mode_exclusive(int mode, int mode_mask)
{
	if (mode & ~(mode_mask | FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	switch (mode & mode_mask) {
	case 0:
	case FALLOC_FL_UNSHARE_RANGE:
	case FALLOC_FL_ZERO_RANGE:
		return 0;
	case FALLOC_FL_PUNCH_HOLE:
		return (mode & FALLOC_FL_KEEP_SIZE) ? 0 : -EOPNOTSUPP;
	case FALLOC_FL_COLLAPSE_RANGE:
	case FALLOC_FL_INSERT_RANGE:
	case GM_FALLOC_FL_WRITE_ZEROES:
		return (mode & FALLOC_FL_KEEP_SIZE) ? -EOPNOTSUPP : 0;
	default:
		return -EOPNOTSUPP;
	}
}

int vfs_fallocate_args(enum gm_profile profile, int mode, int64_t offset, int64_t len)
{
	if (offset < 0 || len <= 0)
		return -EINVAL;
	switch (profile) {
	case GM_PROFILE_LINUX_6_8:
		return vfs_fallocate_mode_68(mode);
	case GM_PROFILE_LINUX_6_12:
		return vfs_fallocate_mode_exclusive(mode, GM_FALLOC_MODE_MASK_618 &
								  ~GM_FALLOC_FL_WRITE_ZEROES);
	default:
		return vfs_fallocate_mode_exclusive(mode, GM_FALLOC_MODE_MASK_618);
	}
}
