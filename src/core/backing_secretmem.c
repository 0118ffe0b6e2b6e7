/* SPDX-License-Identifier: MIT */
/*
 * secretmem backing: pages come from a memfd_secret(2) file, so they are
 * removed from the kernel's direct map.  secretmem has no fallocate (no
 * allocate, no punch hole), its first touch of a page is slow (~4x
 * anonymous memory), and its mappings are locked memory (they count
 * against RLIMIT_MEMLOCK at mmap time).  So each guest_memfd keeps a pool:
 *
 *   - the pool file is sized once to the guest_memfd (secretmem refuses a
 *     second ftruncate) and mapped in growing chunks, from 2 MiB up to
 *     64 MiB at a time, one after the other into an address range
 *     reserved at init, so a pool page's number ("slot") gives its
 *     address; memory is only used by pages that were touched;
 *   - a page index maps to its slot through a gm_pagemap (lock-free
 *     lookup; changes under the pool lock): scattered pages cost no
 *     4 KiB tree node each;
 *   - punch-hole zeroes the pages it drops and pushes them on a free list,
 *     which is used before the pool grows again.
 *
 * Pool memory stays mapped until fini, so a stale pointer held by a fault
 * that raced a punch still points at valid memory (the fault retries: the
 * MMU invalidation protocol, see gmem.c).
 *
 * Held (gm_backing_init_held()): the file is the holder's only.  The
 * reserved range stays PROT_NONE and only names slots; fresh pages are
 * allocated by the holder, which zeroes them (a touch: secretmem has no
 * fallocate) a run ahead of their first use (sm_held_touch_ahead()), and
 * a punched one is zeroed there (one request per run of slots) before it
 * goes on the free list.
 *
 * Limits: memory for a fresh page is obtained by touching it; if the host
 * cannot provide it, the process gets the kernel's out-of-memory treatment
 * rather than ENOMEM.  -ENOMEM is reported when the pool cannot grow (mmap
 * fails, e.g. over RLIMIT_MEMLOCK).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backing_impl.h"
#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/rcu.h"
#include "lib/reap.h"
#include "lib/sys_raw.h"

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447 /* x86-64 */
#endif

#define SM_CHUNK_MIN 512ULL   /* pages: 2 MiB */
#define SM_CHUNK_MAX 16384ULL /* pages: 64 MiB */
#define SM_SIGNAL_CHECK 512   /* pages allocated between signal checks */

struct gm_secretmem {
	int fd;		   /* -1 when held elsewhere */
	const struct gm_backing *b; /* its holder, when held */
	uint64_t nr_pages; /* of the guest_memfd */
	char *base;	   /* reserved address range; slot s is at base + s * 4096 */
	uint64_t reserved; /* pages of it (the pool's limit) */

	/*
	 * Protects the pool (pool_pages, the bump region, the free list,
	 * `broken`) and every change of the page map.  A leaf lock; it may be
	 * taken inside an RCU read-side section (the fault path) and nothing
	 * waits for a grace period under it.
	 */
	pthread_mutex_t lock;
	uint64_t pool_pages;	/* pages of the file mapped so far */
	char *bump;		/* next never-used page of the newest chunk */
	uint64_t bump_left;	/* pages left after it */
	struct gm_slot_stack free; /* zeroed pages ready for reuse */
	bool broken;		/* a failed grow may have left a hole: no more */
	char *touched_end;	/* held: bump pages below it are allocated already */
	uint64_t touch_next;	/* held: the ahead policy's state (gm_ahead_run()) */
	uint64_t in_flight;	/* pages taken by first uses, not yet in the map */

	uint64_t nr_allocated;	/* indices with a page; atomic */
	struct gm_pagemap map;	/* page index -> slot */
	struct gm_reap_job reap; /* fini's release, when large */
};

static int sm_open(void)
{
	int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);

	return fd < 0 ? -errno : gm_fd_own(fd);
}

/* ---- pool (all with sm->lock held) -------------------------------------- */

/*
 * Map the next chunk of the file over its place in the reserved range:
 * 0, or -ENOMEM (all mapped, or mmap refused: over RLIMIT_MEMLOCK).
 */
static int sm_pool_grow(struct gm_secretmem *sm)
{
	uint64_t chunk;
	char *at, *p;

	if (sm->pool_pages == sm->reserved || sm->broken)
		return -ENOMEM;
	chunk = GM_MIN(GM_MIN(GM_MAX(sm->pool_pages, SM_CHUNK_MIN), SM_CHUNK_MAX),
		       sm->reserved - sm->pool_pages);
	at = sm->base + (sm->pool_pages << GM_PAGE_SHIFT);
	/* Held: nothing to map here; the slots only get their names. */
	p = sm->fd < 0 ? at
		       : gm_raw_mmap(at, chunk << GM_PAGE_SHIFT, PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_FIXED, sm->fd,
				     (off_t)(sm->pool_pages << GM_PAGE_SHIFT));
	if (p == MAP_FAILED) {
		/*
		 * Hosts before 6.12 may leave a hole where MAP_FIXED failed;
		 * reserve it again, and if anything else got there first, never
		 * map over it.
		 */
		p = gm_raw_mmap(at, chunk << GM_PAGE_SHIFT, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
		if (p != MAP_FAILED && p != at)
			gm_raw_munmap(p, chunk << GM_PAGE_SHIFT); /* an old host's hint */
		if (p != at && errno != EEXIST)
			sm->broken = true;
		return -ENOMEM;
	}
	sm->pool_pages += chunk;
	sm->bump = at;
	sm->bump_left = chunk;
	return 0;
}

static uint64_t sm_slot(struct gm_secretmem *sm, const char *page)
{
	return (uint64_t)(page - sm->base) >> GM_PAGE_SHIFT;
}

/*
 * Held: a fresh page must be allocated when it is handed out, as the
 * kernel's fallocate allocates (and a fault's page is about to be used).
 * The holder does it by zeroing, a round trip each time, so it is done
 * for a run of the chunk's next pages at once (gm_ahead_run()).  0, or
 * the holder's -errno.  Context: sm->lock (the holder's lock is a leaf
 * under it).
 */
static int sm_held_touch_ahead(struct gm_secretmem *sm)
{
	const struct gm_backing *b = sm->b;
	uint64_t next = sm->touch_next, n;
	int r;

	if (sm->fd >= 0 || sm->bump < sm->touched_end)
		return 0;
	n = gm_ahead_run(&next, sm->bump_left);
	r = b->holder.zero(b->holder.ctx, b->holder_id, sm_slot(sm, sm->bump) << GM_PAGE_SHIFT,
			   n << GM_PAGE_SHIFT);
	if (r)
		return r;
	sm->touch_next = next;
	sm->touched_end = sm->bump + (n << GM_PAGE_SHIFT);
	return 0;
}

/*
 * A zeroed page for exclusive use; *fresh says it was never touched here.
 * NULL when the pool cannot provide one (*err: why, if not -ENOMEM).
 * Context: sm->lock.
 */
static char *sm_pool_get(struct gm_secretmem *sm, bool *fresh, int *err)
{
	char *page = NULL;

	if (sm->free.nr) {
		page = sm->base + (gm_slot_stack_pop(&sm->free) << GM_PAGE_SHIFT);
		*fresh = false;
	} else if (sm->bump_left || !sm_pool_grow(sm)) {
		*err = sm_held_touch_ahead(sm);
		if (*err)
			return NULL;
		page = sm->bump;
		sm->bump += GM_PAGE_SIZE;
		sm->bump_left--;
		*fresh = true;
	}
	return page;
}

/* Return a zeroed page.  Context: sm->lock. */
static void sm_pool_put(struct gm_secretmem *sm, char *page)
{
	/* If the list cannot grow, the page is leaked to the pool, not lost. */
	(void)gm_slot_stack_push(&sm->free, sm_slot(sm, page));
}

/* ---- operations ------------------------------------------------------- */

static int secretmem_init(struct gm_backing *b)
{
	struct gm_secretmem *sm = calloc(1, sizeof(*sm));
	int ret;

	if (!sm)
		return -ENOMEM;
	sm->nr_pages = b->nr_pages;
	ret = gm_pagemap_init(&sm->map, b->nr_pages);
	if (ret)
		goto err_free;
	/*
	 * The pool's address range: never more pages than the guest_memfd or
	 * than slots can number, and less if the address space is short.
	 */
	sm->reserved = GM_MIN(b->nr_pages, GM_PAGEMAP_MAX_SLOTS);
	for (;;) {
		void *p = gm_raw_mmap(NULL, sm->reserved << GM_PAGE_SHIFT, PROT_NONE,
				      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p != MAP_FAILED) {
			sm->base = p;
			break;
		}
		if (sm->reserved <= SM_CHUNK_MIN) {
			ret = -ENOMEM;
			goto err_map;
		}
		sm->reserved /= 8;
	}
	if (b->held) {
		sm->fd = -1; /* created and sized by the holder */
		sm->b = b;
		goto done;
	}
	sm->fd = sm_open();
	if (sm->fd < 0) {
		ret = sm->fd; /* -ENOSYS: the host has no (enabled) secretmem */
		goto err_unmap;
	}
	/* Sparse: only touched pages use memory. */
	if (gm_backing_set_size(sm->fd, b->nr_pages << GM_PAGE_SHIFT)) {
		ret = -ENOMEM;
		goto err_close;
	}
done:
	gm_check_pthread(pthread_mutex_init(&sm->lock, NULL));
	b->priv = sm;
	return 0;

err_close:
	gm_fd_close(sm->fd);
err_unmap:
	gm_raw_munmap(sm->base, sm->reserved << GM_PAGE_SHIFT);
err_map:
	gm_pagemap_fini(&sm->map);
err_free:
	free(sm);
	return ret;
}

/* The pool (its chunks lie in the reserved range) and the file go back to the host. */
static void secretmem_release(struct gm_reap_job *job)
{
	struct gm_secretmem *sm = caa_container_of(job, struct gm_secretmem, reap);

	gm_raw_munmap(sm->base, sm->reserved << GM_PAGE_SHIFT);
	if (sm->fd >= 0)
		gm_fd_close(sm->fd);
	free(sm);
}

static void secretmem_fini(struct gm_backing *b)
{
	struct gm_secretmem *sm = b->priv;

	gm_pagemap_fini(&sm->map);
	free(sm->free.slots);
	pthread_mutex_destroy(&sm->lock);
	sm->reap.fn = secretmem_release;
	if (b->held) { /* the holder frees the file; the reservation is ours */
		b->holder.drop(b->holder.ctx, b->holder_id);
		secretmem_release(&sm->reap);
		return;
	}
	/*
	 * Secretmem pages go back into the direct map one by one: not the
	 * VMM's wait.  The descriptor goes now (the chunks keep the file): a
	 * VMM may reuse its number at once.
	 */
	if (sm->pool_pages << GM_PAGE_SHIFT >= GM_REAP_MIN_BYTES) {
		gm_fd_close(sm->fd);
		sm->fd = -1;
		gm_reap(&sm->reap);
	} else {
		secretmem_release(&sm->reap);
	}
}

static void *secretmem_page(struct gm_backing *b, uint64_t index, bool alloc, int *err)
{
	struct gm_secretmem *sm = b->priv;
	uint64_t slot1 = gm_pagemap_lookup(&sm->map, index);
	bool fresh = false;
	char *page;

	if (slot1 || !alloc)
		return slot1 ? sm->base + ((slot1 - 1) << GM_PAGE_SHIFT) : NULL;
	for (;;) {
		bool racing;
		int get_err = 0;

		gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
		/* Under the lock, so that a winner's insert is seen before "dry". */
		slot1 = gm_pagemap_lookup(&sm->map, index);
		page = slot1 ? NULL : sm_pool_get(sm, &fresh, &get_err);
		sm->in_flight += page != NULL;
		racing = !page && !get_err && sm->in_flight;
		gm_mutex_unlock(&sm->lock);
		if (slot1)
			return sm->base + ((slot1 - 1) << GM_PAGE_SHIFT);
		if (page)
			break;
		if (!racing) {
			*err = get_err ? get_err : -ENOMEM;
			return NULL;
		}
		/* Dry: racing first uses hold the spare pages; one may be ours. */
		sched_yield();
	}
	/*
	 * Fault a fresh page in before anyone can see it, outside the lock
	 * (it is zero).  Held: the holder did (sm_held_touch_ahead()).
	 */
	if (fresh && sm->fd >= 0)
		*(volatile char *)page = 0;
	gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
	sm->in_flight--;
	slot1 = gm_pagemap_lookup(&sm->map, index);
	if (slot1 || gm_pagemap_insert(&sm->map, index, sm_slot(sm, page))) {
		sm_pool_put(sm, page); /* another first use won, or no memory; still zero */
		page = slot1 ? sm->base + ((slot1 - 1) << GM_PAGE_SHIFT) : NULL;
		if (!page)
			*err = -ENOMEM;
	} else {
		__atomic_fetch_add(&sm->nr_allocated, 1, __ATOMIC_RELAXED);
	}
	gm_mutex_unlock(&sm->lock);
	return page;
}

static int secretmem_allocate(struct gm_backing *b, uint64_t index, uint64_t n,
			      const sigset_t *caller_mask)
{
	for (uint64_t i = 0; i < n; i++) {
		int err = 0;

		if (i % SM_SIGNAL_CHECK == 0 && gm_alloc_interrupted(caller_mask))
			return -EINTR;
		if (!secretmem_page(b, index + i, true, &err))
			return err ? err : -ENOMEM;
	}
	return 0;
}

static bool secretmem_one_step(uint64_t index, uint64_t n)
{
	(void)index;
	return n <= SM_SIGNAL_CHECK;
}

/* A punched page: zeroed, then reused before the pool grows.  Context: sm->lock. */
static void secretmem_drop(void *ctx, uint64_t slot)
{
	struct gm_secretmem *sm = ctx;
	char *page = sm->base + (slot << GM_PAGE_SHIFT);

	memset(page, 0, GM_PAGE_SIZE);
	sm_pool_put(sm, page);
	__atomic_fetch_sub(&sm->nr_allocated, 1, __ATOMIC_RELAXED);
}

/* Zero one run in the holder, then make its slots reusable (if it could). */
static void secretmem_zero_run(void *ctx, uint64_t first, uint64_t n)
{
	struct gm_secretmem *sm = ctx;
	const struct gm_backing *b = sm->b;

	if (b->holder.zero(b->holder.ctx, b->holder_id, first << GM_PAGE_SHIFT,
			   n << GM_PAGE_SHIFT))
		return; /* not zeroed: not reused */
	for (uint64_t k = first; k < first + n; k++)
		sm_pool_put(sm, sm->base + (k << GM_PAGE_SHIFT));
}

/* Held: a punched page, collected to be zeroed in the holder.  Context: sm->lock. */
struct sm_held_punch {
	struct gm_secretmem *sm;
	struct gm_slot_stack batch;
};

static void secretmem_drop_held(void *ctx, uint64_t slot)
{
	struct sm_held_punch *p = ctx;

	__atomic_fetch_sub(&p->sm->nr_allocated, 1, __ATOMIC_RELAXED);
	if (gm_slot_stack_push(&p->batch, slot))
		secretmem_zero_run(p->sm, slot, 1); /* no room to batch it */
}

static void secretmem_punch(struct gm_backing *b, uint64_t index, uint64_t n)
{
	struct gm_secretmem *sm = b->priv;

	gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
	if (sm->fd >= 0) {
		gm_pagemap_remove(&sm->map, index, index + n, secretmem_drop, sm);
	} else {
		struct sm_held_punch p = { .sm = sm };

		gm_pagemap_remove(&sm->map, index, index + n, secretmem_drop_held, &p);
		gm_slot_stack_runs(&p.batch, secretmem_zero_run, sm);
		free(p.batch.slots);
	}
	gm_mutex_unlock(&sm->lock);
}

static uint64_t secretmem_nr_allocated(struct gm_backing *b)
{
	return __atomic_load_n(&((struct gm_secretmem *)b->priv)->nr_allocated, __ATOMIC_RELAXED);
}

static int secretmem_fd(struct gm_backing *b)
{
	(void)b;
	return -1; /* not mappable by the VMM: that is the point of secretmem */
}

/* A page's offset in the pool file: slot s is mapped at base + s * 4096
 * from file offset s * 4096 (sm_pool_grow). */
static int secretmem_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset)
{
	struct gm_secretmem *sm = b->priv;
	uint64_t slot1 = gm_pagemap_lookup(&sm->map, index);

	if (!slot1)
		return -ENOENT;
	*fd = sm->fd;
	*offset = (slot1 - 1) << GM_PAGE_SHIFT;
	return 0;
}

static bool secretmem_available(void)
{
	int fd = sm_open();
	bool ok = false;
	void *p;

	if (fd < 0)
		return false;
	if (!gm_backing_set_size(fd, GM_PAGE_SIZE)) {
		p = gm_raw_mmap(NULL, GM_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			ok = true;
			gm_raw_munmap(p, GM_PAGE_SIZE);
		}
	}
	gm_fd_close(fd);
	return ok;
}

const struct gm_backing_ops gm_backing_secretmem_ops = {
	.init = secretmem_init,
	.fini = secretmem_fini,
	.page = secretmem_page,
	.allocate = secretmem_allocate,
	.one_step = secretmem_one_step,
	.punch = secretmem_punch,
	.nr_allocated = secretmem_nr_allocated,
	.memfd = secretmem_fd,
	.file_page = secretmem_file_page,
	.available = secretmem_available,
};
