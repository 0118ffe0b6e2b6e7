/* SPDX-License-Identifier: MIT */
/*
 * Storage behind a guest_memfd: dispatch to the kind chosen at creation,
 * plus the helpers the kinds share (radix tree, signal check).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "backing_impl.h"
#include "lib/compiler.h"
#include "lib/rcu.h"
#include "lib/sys_raw.h"

static const struct gm_backing_ops *gm_backing_ops(enum gm_backing_kind kind)
{
	return kind == GM_BACKING_SECRETMEM ? &gm_backing_secretmem_ops : &gm_backing_memfd_ops;
}

/* The checks and fields both initialisers share: 0 or -EINVAL. */
static int gm_backing_setup(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages,
			    bool mappable, bool held)
{
	if (kind != GM_BACKING_MEMFD && kind != GM_BACKING_SECRETMEM)
		return -EINVAL;
	/* A guest_memfd is at most 2^63 - 4096 bytes (spec §2.5). */
	if (nr_pages > (INT64_MAX >> GM_PAGE_SHIFT))
		return -EINVAL;
	b->kind = kind;
	b->nr_pages = nr_pages;
	b->mappable = mappable;
	b->held = held;
	b->priv = NULL;
	return 0;
}

int gm_backing_init(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages,
		    bool mappable)
{
	int ret = gm_backing_setup(b, kind, nr_pages, mappable, false);

	return ret ? ret : gm_backing_ops(kind)->init(b);
}

int gm_backing_init_held(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages,
			 const struct gm_backing_holder *holder, uint64_t file_id)
{
	int ret = gm_backing_setup(b, kind, nr_pages, false, true);

	if (ret)
		return ret;
	b->holder = *holder;
	ret = holder->create(holder->ctx, kind, nr_pages << GM_PAGE_SHIFT, file_id, &b->holder_id);
	if (ret)
		return ret == -EFBIG ? -ENOMEM : ret;
	ret = gm_backing_ops(kind)->init(b);
	if (ret) {
		holder->drop(holder->ctx, b->holder_id);
		b->held = false;
	}
	return ret;
}

void gm_backing_fini(struct gm_backing *b)
{
	if (b->priv)
		gm_backing_ops(b->kind)->fini(b);
	b->priv = NULL;
}

void *gm_backing_page(struct gm_backing *b, uint64_t index, bool alloc, int *err)
{
	gm_assert(index < b->nr_pages);
	*err = 0;
	return gm_backing_ops(b->kind)->page(b, index, alloc, err);
}

int gm_backing_allocate(struct gm_backing *b, uint64_t index, uint64_t n)
{
	const struct gm_backing_ops *ops = gm_backing_ops(b->kind);
	sigset_t all, caller;
	int ret;

	gm_assert(index <= b->nr_pages && n <= b->nr_pages - index);
	if (!n)
		return 0;
	/* See gm_alloc_interrupted(). */
	if (ops->one_step(index, n))
		return ops->allocate(b, index, n, NULL);
	sigfillset(&all);
	gm_check_pthread(pthread_sigmask(SIG_BLOCK, &all, &caller));
	ret = ops->allocate(b, index, n, &caller);
	gm_check_pthread(pthread_sigmask(SIG_SETMASK, &caller, NULL));
	return ret;
}

void gm_backing_punch(struct gm_backing *b, uint64_t index, uint64_t n)
{
	/* Callers may pass ranges beyond EOF (punch-hole does): clip here. */
	if (index >= b->nr_pages)
		return;
	n = GM_MIN(n, b->nr_pages - index);
	if (n)
		gm_backing_ops(b->kind)->punch(b, index, n);
}

uint64_t gm_backing_nr_allocated(struct gm_backing *b)
{
	return gm_backing_ops(b->kind)->nr_allocated(b);
}

int gm_backing_memfd(struct gm_backing *b)
{
	return gm_backing_ops(b->kind)->memfd(b);
}

int gm_backing_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset)
{
	gm_assert(index < b->nr_pages);
	return gm_backing_ops(b->kind)->file_page(b, index, fd, offset);
}

bool gm_backing_available(enum gm_backing_kind kind)
{
	if (kind != GM_BACKING_MEMFD && kind != GM_BACKING_SECRETMEM)
		return false;
	return gm_backing_ops(kind)->available();
}

/* ---- signal check ----------------------------------------------------- */

bool gm_alloc_interrupted(const sigset_t *caller_mask)
{
	sigset_t pending;

	if (!caller_mask || sigpending(&pending))
		return false;
	for (int sig = 1; sig < NSIG; sig++) {
		if (sigismember(&pending, sig) == 1 && sigismember(caller_mask, sig) != 1)
			return true;
	}
	return false;
}

/* ---- file size ---------------------------------------------------------- */

int gm_backing_set_size(int fd, uint64_t size)
{
	const struct timespec zero = { 0, 0 };
	sigset_t xfsz, caller;
	int ret, err;

	sigemptyset(&xfsz);
	sigaddset(&xfsz, SIGXFSZ);
	gm_check_pthread(pthread_sigmask(SIG_BLOCK, &xfsz, &caller));
	ret = gm_raw_ftruncate(fd, (off_t)size);
	err = errno;
	/*
	 * The host sends it to this thread; if the caller did not block it,
	 * nothing else of it can be pending here, so the one taken is ours.
	 */
	if (ret && err == EFBIG && !sigismember(&caller, SIGXFSZ))
		(void)sigtimedwait(&xfsz, NULL, &zero);
	gm_check_pthread(pthread_sigmask(SIG_SETMASK, &caller, NULL));
	errno = err;
	return ret;
}

/* ---- gm_radix ---------------------------------------------------------- */

static void **gm_radix_node_alloc(void)
{
	return calloc(GM_RADIX_FANOUT, sizeof(void *));
}

int gm_radix_init(struct gm_radix *r, uint64_t nr_keys)
{
	uint64_t max_key = nr_keys ? nr_keys - 1 : 0;

	r->levels = 1;
	while (r->levels < 7 && (max_key >> (GM_RADIX_BITS * r->levels)))
		r->levels++;
	r->root = gm_radix_node_alloc();
	return r->root ? 0 : -ENOMEM;
}

static void gm_radix_free(void **node, unsigned level, uint64_t base,
			  void (*free_leaf)(void *, uint64_t, void *), void *ctx)
{
	unsigned shift = GM_RADIX_BITS * level;

	for (uint64_t i = 0; i < GM_RADIX_FANOUT; i++) {
		void *child = node[i];

		if (!child)
			continue;
		if (level)
			gm_radix_free(child, level - 1, base + (i << shift), free_leaf, ctx);
		else if (free_leaf)
			free_leaf(ctx, base + i, child);
	}
	free(node);
}

void gm_radix_fini(struct gm_radix *r, void (*free_leaf)(void *ctx, uint64_t key, void *leaf),
		   void *ctx)
{
	if (r->root)
		gm_radix_free(r->root, r->levels - 1, 0, free_leaf, ctx);
	r->root = NULL;
}

void *gm_radix_lookup(const struct gm_radix *r, uint64_t key)
{
	void **node = r->root;

	for (unsigned l = r->levels - 1; l > 0; l--) {
		/* Pairs with the CAS in gm_radix_slot() that installed it. */
		node = __atomic_load_n(&node[(key >> (GM_RADIX_BITS * l)) & (GM_RADIX_FANOUT - 1)],
				       __ATOMIC_ACQUIRE);
		if (!node)
			return NULL;
	}
	/* Pairs with the caller's release (CAS or store) of the leaf. */
	return __atomic_load_n(&node[key & (GM_RADIX_FANOUT - 1)], __ATOMIC_ACQUIRE);
}

void **gm_radix_slot(struct gm_radix *r, uint64_t key)
{
	void **node = r->root;

	for (unsigned l = r->levels - 1; l > 0; l--) {
		void **p = &node[(key >> (GM_RADIX_BITS * l)) & (GM_RADIX_FANOUT - 1)];
		void *child = __atomic_load_n(p, __ATOMIC_ACQUIRE);

		if (!child) {
			void **fresh = gm_radix_node_alloc();

			if (!fresh)
				return NULL;
			/* Release publishes the zeroed node; a loser frees its copy. */
			if (__atomic_compare_exchange_n(p, &child, fresh, false, __ATOMIC_ACQ_REL,
							__ATOMIC_ACQUIRE))
				child = fresh;
			else
				free(fresh);
		}
		node = child;
	}
	return &node[key & (GM_RADIX_FANOUT - 1)];
}

static int gm_radix_walk(void **node, unsigned level, uint64_t base, uint64_t first,
			 uint64_t end, gm_radix_fn fn, void *ctx)
{
	unsigned shift = GM_RADIX_BITS * level;
	uint64_t i = first > base ? (first - base) >> shift : 0;

	for (; i < GM_RADIX_FANOUT; i++) {
		uint64_t kbase = base + (i << shift);
		void *child;
		int ret;

		if (kbase >= end)
			break;
		child = __atomic_load_n(&node[i], __ATOMIC_ACQUIRE);
		if (!child)
			continue;
		ret = level ? gm_radix_walk(child, level - 1, kbase, first, end, fn, ctx)
			    : fn(ctx, kbase, &node[i]);
		if (ret)
			return ret;
	}
	return 0;
}

int gm_radix_for_each(const struct gm_radix *r, uint64_t first, uint64_t end, gm_radix_fn fn,
		      void *ctx)
{
	if (!r->root || first >= end)
		return 0;
	return gm_radix_walk(r->root, r->levels - 1, 0, first, end, fn, ctx);
}

/* ---- gm_pagemap ----------------------------------------------------------- */

/*
 * A window's value in pm->windows (pointers are 8-byte aligned, so
 * bit 0 tells the cases apart):
 *   NULL       no page of the window is present;
 *   odd        one page, the common case of scattered use: bits 1-9 its
 *              offset in the window, bits 10-63 its slot (no allocation);
 *   even       a struct pool_win, either "small": up to POOL_SMALL entries
 *              (offset | slot << 10, POOL_DEAD once removed) appended in
 *              place and published by a release store of n, or "dense"
 *              (cap == POOL_DENSE): slot + 1 per offset, 0 when absent.
 * A small window that is full is replaced by a compacted copy (dense past
 * POOL_SMALL live pages); replaced ones are freed after a grace period, so
 * a lock-free reader never sees freed memory.  Bookkeeping per page: at
 * most 8 bytes of radix slot plus 16 bytes of entry (small) or, dense,
 * 4 bytes per offset (at least 32 bytes per page, POOL_SMALL + 1 pages).
 */
#define POOL_SMALL 64U
#define POOL_DENSE 0U
#define POOL_DEAD (1ULL << 9)
#define POOL_OFF(e) ((unsigned)((e) & (GM_RADIX_FANOUT - 1)))

struct pool_win {
	struct rcu_head head; /* for the deferred free of a replaced window */
	uint32_t n;	      /* small: entries written; release-stored after them */
	uint32_t cap;	      /* small: room in e[]; or POOL_DENSE */
	uint32_t live;	      /* pages present; under the owner's lock */
	uint32_t unused;
	uint64_t e[];	      /* small: entries; dense: uint32_t[GM_RADIX_FANOUT] */
};

static inline uint32_t *pool_dense(struct pool_win *w)
{
	return (uint32_t *)(void *)w->e;
}

static inline uintptr_t pool_one(unsigned off, uint64_t slot)
{
	return (uintptr_t)(slot << 10 | (uint64_t)off << 1 | 1);
}

static void pool_win_free_rcu(struct rcu_head *head)
{
	free(caa_container_of(head, struct pool_win, head));
}

static struct pool_win *pool_win_alloc(uint32_t cap)
{
	size_t bytes = cap == POOL_DENSE ? GM_RADIX_FANOUT * sizeof(uint32_t) : cap * sizeof(uint64_t);
	struct pool_win *w = calloc(1, sizeof(*w) + bytes);

	if (w)
		w->cap = cap;
	return w;
}

/* Slot + 1 of page @off in window value @v, or 0.  Context: RCU or m->lock. */
static uint64_t pool_win_find(uintptr_t v, unsigned off)
{
	struct pool_win *w = (struct pool_win *)v;

	if (!v)
		return 0;
	if (v & 1)
		return ((v >> 1) & (GM_RADIX_FANOUT - 1)) == off ? (v >> 10) + 1 : 0;
	if (w->cap == POOL_DENSE)
		return __atomic_load_n(&pool_dense(w)[off], __ATOMIC_ACQUIRE);
	/* Pairs with the release store of n in pool_win_insert(). */
	for (uint32_t i = 0, n = __atomic_load_n(&w->n, __ATOMIC_ACQUIRE); i < n; i++) {
		uint64_t e = __atomic_load_n(&w->e[i], __ATOMIC_RELAXED);

		if (!(e & POOL_DEAD) && POOL_OFF(e) == off)
			return (e >> 10) + 1;
	}
	return 0;
}

uint64_t gm_pagemap_lookup(struct gm_pagemap *pm, uint64_t index)
{
	uint64_t r;

	gm_rcu_read_lock(); /* windows replaced meanwhile are freed after it */
	r = pool_win_find((uintptr_t)gm_radix_lookup(&pm->windows, index / GM_RADIX_FANOUT),
			  (unsigned)(index % GM_RADIX_FANOUT));
	gm_rcu_read_unlock();
	return r;
}

/* Call @fn(@ctx, off, slot) for each live page of window value @v (under the owner's lock). */
static void pool_win_each(uintptr_t v, void (*fn)(void *, unsigned, uint64_t), void *ctx)
{
	struct pool_win *w = (struct pool_win *)v;

	if (!v)
		return;
	if (v & 1) {
		fn(ctx, (unsigned)((v >> 1) & (GM_RADIX_FANOUT - 1)), v >> 10);
	} else if (w->cap == POOL_DENSE) {
		for (unsigned off = 0; off < GM_RADIX_FANOUT; off++)
			if (pool_dense(w)[off])
				fn(ctx, off, pool_dense(w)[off] - 1ULL);
	} else {
		for (uint32_t i = 0; i < w->n; i++)
			if (!(w->e[i] & POOL_DEAD))
				fn(ctx, POOL_OFF(w->e[i]), w->e[i] >> 10);
	}
}

/* Add a page to a window being built (not yet published). */
static void pool_win_put(void *ctx, unsigned off, uint64_t slot)
{
	struct pool_win *w = ctx;

	if (w->cap == POOL_DENSE)
		pool_dense(w)[off] = (uint32_t)(slot + 1);
	else
		w->e[w->n++] = slot << 10 | off;
	w->live++;
}

static void pool_win_last(void *ctx, unsigned off, uint64_t slot)
{
	*(uintptr_t *)ctx = pool_one(off, slot);
}

/*
 * The representation for @live pages of @v (plus room for @extra more):
 * builds and publishes it in *@vp and frees @v after a grace period.
 * Returns 0 or -ENOMEM (then nothing changed).  Context: the owner's lock.
 */
static int pool_win_rebuild(void **vp, uintptr_t v, uint32_t live, uint32_t extra)
{
	uint32_t want = live + extra, cap = 2;
	struct pool_win *w;
	uintptr_t nv;

	if (want == 0) {
		nv = 0;
	} else if (want == 1) {
		pool_win_each(v, pool_win_last, &nv);
	} else {
		while (cap < want)
			cap *= 2;
		w = pool_win_alloc(cap > POOL_SMALL ? POOL_DENSE : cap);
		if (!w)
			return -ENOMEM;
		pool_win_each(v, pool_win_put, w);
		nv = (uintptr_t)w;
	}
	/* Release: the new window's contents before the pointer. */
	__atomic_store_n(vp, (void *)nv, __ATOMIC_RELEASE);
	if (v && !(v & 1))
		gm_call_rcu(&((struct pool_win *)v)->head, pool_win_free_rcu);
	return 0;
}

static uint32_t pool_win_live(uintptr_t v)
{
	return !v ? 0 : (v & 1) ? 1 : ((struct pool_win *)v)->live;
}

int gm_pagemap_insert(struct gm_pagemap *pm, uint64_t index, uint64_t slot)
{
	unsigned off = (unsigned)(index % GM_RADIX_FANOUT);
	void **vp = gm_radix_slot(&pm->windows, index / GM_RADIX_FANOUT);
	uintptr_t v;
	struct pool_win *w;
	int ret;

	if (!vp)
		return -ENOMEM;
	v = (uintptr_t)__atomic_load_n(vp, __ATOMIC_RELAXED);
	if (!v) {
		__atomic_store_n(vp, (void *)pool_one(off, slot), __ATOMIC_RELEASE);
		return 0;
	}
	w = (struct pool_win *)v;
	if ((v & 1) || (w->cap != POOL_DENSE && w->n == w->cap)) {
		/* Full (or a single page): a compacted copy with room for one more. */
		ret = pool_win_rebuild(vp, v, pool_win_live(v), 1);
		if (ret)
			return ret;
		w = __atomic_load_n(vp, __ATOMIC_RELAXED);
	}
	if (w->cap == POOL_DENSE) {
		__atomic_store_n(&pool_dense(w)[off], (uint32_t)(slot + 1), __ATOMIC_RELEASE);
	} else {
		__atomic_store_n(&w->e[w->n], slot << 10 | off, __ATOMIC_RELAXED);
		__atomic_store_n(&w->n, w->n + 1, __ATOMIC_RELEASE);
	}
	w->live++;
	return 0;
}

struct pagemap_remove {
	uint64_t first, end; /* page indices */
	void (*fn)(void *ctx, uint64_t slot);
	void *ctx;
};

/* Drop the pages of one window that fall in the range.  Context: the owner's lock. */
static int pagemap_remove_window(void *ctx, uint64_t widx, void **vp)
{
	struct pagemap_remove *p = ctx;
	uintptr_t v = (uintptr_t)__atomic_load_n(vp, __ATOMIC_RELAXED);
	uint64_t base = widx * GM_RADIX_FANOUT;
	unsigned first = (unsigned)(GM_MAX(p->first, base) - base);
	unsigned end = (unsigned)(GM_MIN(p->end, base + GM_RADIX_FANOUT) - base);
	struct pool_win *w = (struct pool_win *)v;
	uint32_t dropped = 0;

	if (v & 1) {
		unsigned off = (unsigned)((v >> 1) & (GM_RADIX_FANOUT - 1));

		if (off >= first && off < end) {
			__atomic_store_n(vp, NULL, __ATOMIC_RELEASE);
			p->fn(p->ctx, v >> 10);
		}
		return 0;
	}
	if (w->cap == POOL_DENSE) {
		for (unsigned off = first; off < end; off++) {
			uint32_t d = pool_dense(w)[off];

			if (d) {
				__atomic_store_n(&pool_dense(w)[off], 0, __ATOMIC_RELEASE);
				p->fn(p->ctx, d - 1ULL);
				dropped++;
			}
		}
	} else {
		for (uint32_t i = 0; i < w->n; i++) {
			uint64_t e = w->e[i];

			if (!(e & POOL_DEAD) && POOL_OFF(e) >= first && POOL_OFF(e) < end) {
				__atomic_store_n(&w->e[i], e | POOL_DEAD, __ATOMIC_RELAXED);
				p->fn(p->ctx, e >> 10);
				dropped++;
			}
		}
	}
	w->live -= dropped;
	/* Shrink what became mostly empty; if that cannot allocate, keep it. */
	if (dropped && (w->live <= 1 || (w->cap == POOL_DENSE && w->live <= POOL_SMALL / 2) ||
			(w->cap != POOL_DENSE && w->live <= w->cap / 4)))
		(void)pool_win_rebuild(vp, v, w->live, 0);
	return 0;
}

void gm_pagemap_remove(struct gm_pagemap *pm, uint64_t first, uint64_t end,
		       void (*fn)(void *ctx, uint64_t slot), void *ctx)
{
	struct pagemap_remove r = { first, end, fn, ctx };

	if (first < end)
		gm_radix_for_each(&pm->windows, first / GM_RADIX_FANOUT,
				  (end - 1) / GM_RADIX_FANOUT + 1, pagemap_remove_window, &r);
}

int gm_pagemap_init(struct gm_pagemap *pm, uint64_t nr_pages)
{
	return gm_radix_init(&pm->windows, (nr_pages + GM_RADIX_FANOUT - 1) / GM_RADIX_FANOUT);
}

static void pagemap_free_window(void *ctx, uint64_t widx, void *leaf)
{
	(void)ctx, (void)widx;
	if (!((uintptr_t)leaf & 1))
		free(leaf);
}

void gm_pagemap_fini(struct gm_pagemap *pm)
{
	gm_radix_fini(&pm->windows, pagemap_free_window, NULL);
}

/* ---- gm_slot_stack ------------------------------------------------------ */

static int gm_slot_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

void gm_slot_stack_runs(struct gm_slot_stack *s, void (*fn)(void *ctx, uint64_t first, uint64_t n),
			void *ctx)
{
	if (s->nr)
		qsort(s->slots, s->nr, sizeof(*s->slots), gm_slot_cmp);
	for (size_t i = 0, j; i < s->nr; i = j) {
		for (j = i + 1; j < s->nr && s->slots[j] == s->slots[j - 1] + 1; j++)
			;
		fn(ctx, s->slots[i], j - i);
	}
}

int gm_slot_stack_push(struct gm_slot_stack *s, uint64_t slot)
{
	if (s->nr == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 64;
		uint32_t *v = realloc(s->slots, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->slots = v;
		s->cap = cap;
	}
	s->slots[s->nr++] = (uint32_t)slot;
	return 0;
}
