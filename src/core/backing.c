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
#include "lib/sys_raw.h"

static const struct gm_backing_ops *gm_backing_ops(enum gm_backing_kind kind)
{
	return kind == GM_BACKING_SECRETMEM ? &gm_backing_secretmem_ops : &gm_backing_memfd_ops;
}

int gm_backing_init(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages)
{
	if (kind != GM_BACKING_MEMFD && kind != GM_BACKING_SECRETMEM)
		return -EINVAL;
	/* A guest_memfd is at most 2^63 - 4096 bytes (spec §2.5). */
	if (nr_pages > (INT64_MAX >> GM_PAGE_SHIFT))
		return -EINVAL;
	b->kind = kind;
	b->nr_pages = nr_pages;
	b->priv = NULL;
	return gm_backing_ops(kind)->init(b);
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
