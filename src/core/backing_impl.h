/* SPDX-License-Identifier: MIT */
/*
 * Private to src/core/backing*.c: the interface each storage kind
 * implements, and the sparse lock-free radix tree both of them use to find
 * their per-index state.
 */
#ifndef GM_CORE_BACKING_IMPL_H
#define GM_CORE_BACKING_IMPL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backing.h"

struct gm_backing_ops {
	int (*init)(struct gm_backing *b);
	void (*fini)(struct gm_backing *b);
	void *(*page)(struct gm_backing *b, uint64_t index, bool alloc, int *err);
	/* @caller_mask is NULL when one_step() said the range is one step. */
	int (*allocate)(struct gm_backing *b, uint64_t index, uint64_t n,
			const sigset_t *caller_mask);
	/* Whether allocate() does [index, index + n) with no signal check
	 * after the first (see gm_alloc_interrupted()). */
	bool (*one_step)(uint64_t index, uint64_t n);
	void (*punch)(struct gm_backing *b, uint64_t index, uint64_t n);
	uint64_t (*nr_allocated)(struct gm_backing *b);
	int (*memfd)(struct gm_backing *b);
	int (*file_page)(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset);
	bool (*available)(void);
};

extern const struct gm_backing_ops gm_backing_memfd_ops;
extern const struct gm_backing_ops gm_backing_secretmem_ops;

/*
 * gm_radix: sparse map from a key below a bound fixed at init to a non-NULL
 * pointer, as a tree of 512-entry nodes (4 KiB each, 9 key bits per level).
 *
 * Lookups take no lock: each step is an acquire load that pairs with the
 * release half of the compare-and-swap that installed the node or leaf, so
 * a reader that finds a pointer also sees what was written before it was
 * published.  Interior nodes are installed by CAS and never removed before
 * gm_radix_fini(); leaf values are owned by the caller, who updates them
 * with __atomic operations on the slot returned by gm_radix_slot().
 */
#define GM_RADIX_BITS 9
#define GM_RADIX_FANOUT (1u << GM_RADIX_BITS)

struct gm_radix {
	void **root;	 /* top node, allocated at init */
	unsigned levels; /* >= 1; a key has levels * 9 significant bits */
};

/* Size the tree for keys in [0, nr_keys).  Returns 0 or -ENOMEM. */
int gm_radix_init(struct gm_radix *r, uint64_t nr_keys);

/*
 * Free every node; @free_leaf (if any) is called for each non-NULL leaf.
 * Context: no concurrent user of the tree.
 */
void gm_radix_fini(struct gm_radix *r, void (*free_leaf)(void *ctx, uint64_t key, void *leaf),
		   void *ctx);

/* The leaf for @key or NULL.  Context: any. */
void *gm_radix_lookup(const struct gm_radix *r, uint64_t key);

/*
 * Address of the leaf slot for @key, creating the interior nodes on the
 * way; NULL on allocation failure.  Context: any.
 */
void **gm_radix_slot(struct gm_radix *r, uint64_t key);

/*
 * Call @fn for each non-NULL leaf with key in [first, end), ascending;
 * absent subtrees are skipped whole.  Stops at and returns fn's first
 * nonzero value.  Context: any (a concurrently installed leaf may or may
 * not be visited).
 */
typedef int (*gm_radix_fn)(void *ctx, uint64_t key, void **slot);
int gm_radix_for_each(const struct gm_radix *r, uint64_t first, uint64_t end, gm_radix_fn fn,
		      void *ctx);

/*
 * gm_pagemap: page index -> slot (a page of the kind's own storage, which
 * it places densely), built for scattered use: a gm_radix keyed by 2 MiB
 * window of indices whose value is the window's one page inline (no
 * allocation), or a small array, or a dense array of 32-bit slots.
 * Bookkeeping per page: at most 24 bytes up to 64 pages a window, 32
 * beyond (see backing.c).  Lookups take no lock (RCU inside); insert and
 * remove run under the owner's lock.  Slots are below GM_PAGEMAP_MAX_SLOTS.
 */
#define GM_PAGEMAP_MAX_SLOTS ((1ULL << 32) - 1)

struct gm_pagemap {
	struct gm_radix windows;
};

/* For indices below @nr_pages.  0 or -ENOMEM. */
int gm_pagemap_init(struct gm_pagemap *pm, uint64_t nr_pages);
/* Context: no concurrent user. */
void gm_pagemap_fini(struct gm_pagemap *pm);
/* Slot + 1 of page @index, or 0.  Context: any. */
uint64_t gm_pagemap_lookup(struct gm_pagemap *pm, uint64_t index);
/* Map absent page @index to @slot.  0 or -ENOMEM.  Context: the owner's lock. */
int gm_pagemap_insert(struct gm_pagemap *pm, uint64_t index, uint64_t slot);
/*
 * Unmap the pages of [first, end), calling @fn(@ctx, slot) for each (a
 * lookup that ran before may still return it: the owner keeps the slot's
 * memory valid).  Never fails.  Context: the owner's lock.
 */
void gm_pagemap_remove(struct gm_pagemap *pm, uint64_t first, uint64_t end,
		       void (*fn)(void *ctx, uint64_t slot), void *ctx);

/*
 * A stack of pool slots (a pool's punched pages, reused first; a batch of
 * slots to punch), below GM_PAGEMAP_MAX_SLOTS.  Context: the owner's lock.
 */
struct gm_slot_stack {
	uint32_t *slots;
	size_t nr, cap;
};

/* Push @slot: 0, or -ENOMEM when the stack cannot grow (nothing changed). */
int gm_slot_stack_push(struct gm_slot_stack *s, uint64_t slot);

/*
 * Sort @s and call @fn once per run of consecutive slots (punch or zero
 * them in one request).  The stack keeps its slots, sorted ascending.
 */
void gm_slot_stack_runs(struct gm_slot_stack *s, void (*fn)(void *ctx, uint64_t first, uint64_t n),
			void *ctx);

static inline uint64_t gm_slot_stack_pop(struct gm_slot_stack *s)
{
	return s->slots[--s->nr];
}

/*
 * Pages allocated ahead of their use, where each allocation call costs a
 * round trip to a holder (or a system call): the size of the next run,
 * 16 pages at first, doubling at each run up to a window (512 pages,
 * 2 MiB, the most ever allocated ahead), and no more than @left.  *@next
 * (0 at first) keeps the policy's state.  Context: the pool's lock.
 */
#define GM_AHEAD_FIRST 16ULL
#define GM_AHEAD_MAX ((uint64_t)GM_RADIX_FANOUT)

static inline uint64_t gm_ahead_run(uint64_t *next, uint64_t left)
{
	uint64_t n = *next ? *next : GM_AHEAD_FIRST;

	*next = n * 2 < GM_AHEAD_MAX ? n * 2 : GM_AHEAD_MAX;
	return n < left ? n : left;
}

/*
 * Signals during an allocation.  The kernel's fallocate loop stops with
 * EINTR when a signal the thread does not block is pending, then the
 * handler runs on the way out of the syscall.  In user space such a signal
 * would run its handler at once and leave no trace, so gm_backing_allocate()
 * blocks every signal around ops->allocate() and restores @caller_mask
 * afterwards (delivering what arrived meanwhile, as a syscall return does);
 * the implementation polls this between steps.  A signal that the caller
 * itself blocks does not interrupt, as in the kernel.  (The host's tmpfs
 * fallocate reacts to fatal signals only, so it cannot do this for us.)
 *
 * An allocation done in one step skips all of that (three system calls
 * per call, a third of a scattered 4 KiB fallocate): the only check would be the one
 * before the first step, and a signal it could see arrived the instant
 * before, which the caller cannot tell from one that arrived before the
 * call and ran its handler then.  @caller_mask NULL means "never".
 */
bool gm_alloc_interrupted(const sigset_t *caller_mask);

/*
 * ftruncate(2) of a kind's own file to the guest_memfd's size, without
 * SIGXFSZ.  The kernel sets a guest_memfd's size directly, with no
 * RLIMIT_FSIZE check; the host's ftruncate checks the VMM's limit and
 * raises SIGXFSZ, whose default action kills the VMM.  The limit cannot be
 * bypassed (the call then fails, -1 with EFBIG), but the signal is not the
 * VMM's to see.  Returns like ftruncate(2).
 */
int gm_backing_set_size(int fd, uint64_t size);

#endif
