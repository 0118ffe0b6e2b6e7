/* SPDX-License-Identifier: MIT */
/*
 * Entry points shared by <guestmem/sys.h> (src/uapi/sys.c) and the preload
 * library (src/preload/preload.c), declared from the table in syscalls.h.
 *
 * Each gm_uapi_X() returns true if it handled the call because the fd (or
 * path) is a guestmem object, with the libc-style result in *ret and errno
 * set on failure.  It returns false for anything else, having done nothing
 * except the mmu-notifier hooks: the caller then performs the real call
 * (sys.c with a raw system call, the preload through the next libc).
 *
 * The pre-hooks (munmap, mremap, madvise, mprotect, and mmap's MAP_FIXED)
 * never handle the call themselves: they open an mmu-notifier invalidation
 * of the range and return a token, which the caller passes to
 * gm_uapi_mm_post() after the real call (errno is preserved).
 */
#ifndef GM_UAPI_ENTRY_H
#define GM_UAPI_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "syscalls.h"

struct statx;

#define GM_UAPI_DECLARE_ENTRY(R, entry, params) bool gm_uapi_##entry(GM_UNPAREN params, R *ret);
GM_UAPI_ENTRIES(GM_UAPI_DECLARE_ENTRY)
#undef GM_UAPI_DECLARE_ENTRY

#define GM_UAPI_DECLARE_HOOK(entry, params) void *gm_uapi_##entry##_pre params;
GM_UAPI_MM_HOOKS(GM_UAPI_DECLARE_HOOK)
#undef GM_UAPI_DECLARE_HOOK

void gm_uapi_mm_post(void *token);
/*
 * After madvise's pre-hook: MADV_DONTNEED/MADV_FREE on memslot memory
 * guestmem converted punch its file.  True if that answered the call
 * (*ret = 0: MADV_FREE on converted memory only); false: make the real call.
 */
bool gm_uapi_madvise_discard(void *addr, size_t len, int advice, int *ret);

#endif
