/* SPDX-License-Identifier: MIT */
/*
 * Storage behind a guest_memfd: sparse pages by index, reachable only by
 * guestmem's own MMU (never through a file descriptor the VMM can see).
 *
 *   memfd     (default) one memfd_create() file per guest_memfd, sized to
 *             the guest_memfd, mapped lazily in 2 MiB windows; punch hole
 *             returns pages to the host.
 *   secretmem memfd_secret(2) pool: pages are removed from the kernel's
 *             direct map.  First touch is slow (~4x anonymous memory), so
 *             punched pages are zeroed and kept on a free list for reuse.
 *
 * Concurrency: page lookup may run concurrently with other lookups, with
 * allocate and with punch.  allocate and punch exclude each other, and fini
 * excludes everything (the owning guest_memfd's invalidate lock: read for
 * allocate, write for punch; fini runs when no reader is left).  A lookup
 * that races a punch of the same page may return the page being punched;
 * the memory stays mapped until fini, and the fault that asked for it
 * retries through the MMU invalidation protocol (the punch's invalidation
 * covers it).
 */
#ifndef GM_CORE_BACKING_H
#define GM_CORE_BACKING_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct gm_backing {
	enum gm_backing_kind kind;
	uint64_t nr_pages;
	void *priv; /* implementation state */
};

/*
 * Returns 0, -ENOMEM, -EMFILE/-ENFILE (no descriptor for the memfd), or
 * -ENOSYS when the host has no usable memfd_secret (secretmem).
 */
int gm_backing_init(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages);
void gm_backing_fini(struct gm_backing *b);

/*
 * Host address of page @index (< nr_pages), allocating a zeroed page if
 * @alloc and it is absent.  Returns NULL with *err = -ENOMEM (or 0 when
 * absent and !alloc).  The address stays valid until gm_backing_fini().
 */
void *gm_backing_page(struct gm_backing *b, uint64_t index, bool alloc, int *err);

/*
 * Allocate (zero-filled) [index, index + n) in ascending order; no rollback.
 * Returns 0, -ENOMEM, or -EINTR when a signal the thread does not block
 * arrives (pages allocated before stay allocated).
 */
int gm_backing_allocate(struct gm_backing *b, uint64_t index, uint64_t n);
/* Free [index, index + n) (clipped to nr_pages); later use sees zeros. */
void gm_backing_punch(struct gm_backing *b, uint64_t index, uint64_t n);

uint64_t gm_backing_nr_allocated(struct gm_backing *b);

/*
 * The memfd holding the pages (offset = index * 4096), for the 6.18 MMAP
 * flag: the caller may mmap it MAP_SHARED but must not close, truncate or
 * seal it.  -1 for secretmem, which cannot be mapped by the VMM.
 */
int gm_backing_memfd(struct gm_backing *b);

/*
 * The file holding page @index and the page's offset in it, for another
 * process to mmap MAP_SHARED (src/core/gmemfd.c).  The fd is guestmem's
 * own: the caller must not close, truncate or seal it; it stays open
 * until gm_backing_fini().  Unlike gm_backing_memfd() this also answers
 * for secretmem (its pool file).  Returns 0, or -ENOENT when the page is
 * absent (nothing is allocated).
 */
int gm_backing_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset);

/* Whether this host can provide @kind (for `guestmem info`); really tries. */
bool gm_backing_available(enum gm_backing_kind kind);

#endif
