/* SPDX-License-Identifier: MIT */
/*
 * Reading a /proc file whole with raw system calls: library code must not
 * call libc's open/read, which the preload answers under `guestmem exec`.
 */
#ifndef GM_LIB_PROCFILE_H
#define GM_LIB_PROCFILE_H

#include <stddef.h>

/*
 * The first @max bytes of @path (all of it: SIZE_MAX), NUL-terminated, in a
 * buffer the caller frees; NULL if it cannot be opened or read, or on ENOMEM.
 */
char *gm_read_proc_file(const char *path, size_t max);

#endif
