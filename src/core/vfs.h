/* SPDX-License-Identifier: MIT */
/* VFS behaviour shared by every guestmem file (spec §3.4). */
#ifndef GM_CORE_VFS_H
#define GM_CORE_VFS_H

#include <stdint.h>

#include "config.h"

/*
 * vfs_fallocate()'s argument and mode checks for @profile's kernel: what
 * any file answers before its type is looked at.  Returns 0 or -errno.
 */
int vfs_fallocate_args(enum gm_profile profile, int mode, int64_t offset, int64_t len);

#endif
