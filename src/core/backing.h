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
 * Concurrency: page lookup may run concurrently with other lookups and with
 * allocate; punch and fini exclude all of them (the owning guest_memfd's
 * invalidate lock, held for write).
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

int gm_backing_init(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages);
void gm_backing_fini(struct gm_backing *b);

/*
 * Host address of page @index, allocating a zeroed page if @alloc and it is
 * absent.  Returns NULL with *err = -ENOMEM (or 0 when absent and !alloc).
 */
void *gm_backing_page(struct gm_backing *b, uint64_t index, bool alloc, int *err);

/* Allocate (zero-filled) [index, index + n) in ascending order; no rollback. */
int gm_backing_allocate(struct gm_backing *b, uint64_t index, uint64_t n);
/* Free [index, index + n); later use sees zeros. */
void gm_backing_punch(struct gm_backing *b, uint64_t index, uint64_t n);

uint64_t gm_backing_nr_allocated(struct gm_backing *b);

/* Whether this host can provide @kind (for `guestmem info`). */
bool gm_backing_available(enum gm_backing_kind kind);

#endif
