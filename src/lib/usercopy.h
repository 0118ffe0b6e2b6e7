/* SPDX-License-Identifier: MIT */
/*
 * Copies to and from memory this process may not have mapped (an
 * application's pointer, a VMM's guest RAM): -EFAULT instead of a crash
 * (usercopy.c).
 */
#ifndef GM_LIB_USERCOPY_H
#define GM_LIB_USERCOPY_H

#include <stddef.h>

/* Copy from/to the caller's memory; 0 or -EFAULT. */
int gm_copy_from_user(void *dst, const void *src, size_t n);
int gm_copy_to_user(void *dst, const void *src, size_t n);

#endif
