/* SPDX-License-Identifier: MIT */
/*
 * Shared memory with no descriptor: a memfd mapped MAP_SHARED and closed at
 * once.  The kernel keeps the file alive through the mapping, so guestmem
 * can hand the same pages to the VMM (mmap of a vCPU fd) by aliasing its
 * own mapping with mremap(old_size 0) instead of keeping a descriptor in
 * the VMM's table.
 */
#ifndef GM_LIB_SHMAP_H
#define GM_LIB_SHMAP_H

#include <stddef.h>

/*
 * Map a new memfd called @name of @bytes bytes, @map_len bytes long
 * (>= @bytes; the pages past the file's end SIGBUS when touched, as the
 * kernel's fault handler for pages it has none for), read-write and
 * shared.  Returns the mapping or NULL with errno set; no descriptor
 * stays open.
 */
void *gm_shmap_create(const char *name, size_t bytes, size_t map_len);

/*
 * Map at @dst, replacing what is there, @len bytes of the same file pages
 * that start at @src (inside a gm_shmap_create() mapping; may run past its
 * end), read-write.  Returns 0, or -1 with errno set.
 */
int gm_shmap_alias(void *dst, const void *src, size_t len);

#endif
