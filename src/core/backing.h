/* SPDX-License-Identifier: MIT */
/*
 * Storage behind a guest_memfd: sparse pages by index, reachable only by
 * guestmem's own MMU (never through a file descriptor the VMM can see).
 *
 *   memfd     (default) one memfd_create() file per guest_memfd, sized to
 *             the guest_memfd and mapped once; pages are placed densely
 *             in it (a pool), or at their own offset when the VMM may map
 *             the file (@mappable); punch hole returns pages to the host.
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

/*
 * Another process that holds a backing's file alone: the VM's guest
 * process, which maps private pages for the guest, so that this process
 * (the VMM's) never has a descriptor to them or a mapping of them.  Each
 * method returns 0 or a negative errno.  A holder that is gone answers as
 * the kernel would for the dead VM it took with it (the backing passes
 * its answers on).
 */
struct gm_backing_holder {
	/* A new file of @kind and @size bytes there; *@id names it from now on. */
	int (*create)(void *ctx, enum gm_backing_kind kind, uint64_t size, uint64_t file_id,
		      uint32_t *id);
	/* fallocate(2) on it (allocate, punch hole: memfd). */
	int (*fallocate)(void *ctx, uint32_t id, int mode, uint64_t off, uint64_t len);
	/* Write zeroes over a page-aligned range (secretmem, which cannot punch). */
	int (*zero)(void *ctx, uint32_t id, uint64_t off, uint64_t len);
	/* The file is no longer needed (gm_backing_fini()). */
	void (*drop)(void *ctx, uint32_t id);
	void *ctx;
};

struct gm_backing {
	enum gm_backing_kind kind;
	uint64_t nr_pages;
	bool mappable; /* see gm_backing_init() */
	/* gm_backing_init_held(): the file is the holder's, never mapped here. */
	bool held;
	struct gm_backing_holder holder;
	uint32_t holder_id;
	void *priv; /* implementation state */
};

/*
 * @mappable: page i must live at offset i * 4096 of gm_backing_memfd()'s
 * file (a 6.18 MMAP guest_memfd, which the VMM maps).  Otherwise the memfd
 * kind places pages where they cost the host least (see backing_memfd.c).
 * Returns 0, -ENOMEM, -EMFILE/-ENFILE (no descriptor for the memfd), or
 * -ENOSYS when the host has no usable memfd_secret (secretmem).
 */
int gm_backing_init(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages,
		    bool mappable);
/*
 * The same, with the file created in and held by @holder only: pages are
 * never mapped or touched in this process.  gm_backing_page() then gives
 * an address that names the page but is not accessible (PROT_NONE), and
 * gm_backing_file_page() a descriptor of -1 (the holder has the file, as
 * @file_id).  memfd: allocation and punch are the holder's fallocate.
 * secretmem: the holder zeroes fresh pages, which allocates them, and
 * punched pages before reuse.  Both allocate a run ahead of small
 * allocations (gm_ahead_run()).
 * -EOPNOTSUPP for a memfd too large for the page pool: the caller may
 * then fall back to gm_backing_init().
 */
int gm_backing_init_held(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages,
			 const struct gm_backing_holder *holder, uint64_t file_id);
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
 * seal it.  -1 unless the backing was made @mappable, and for secretmem,
 * which cannot be mapped by the VMM.
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
