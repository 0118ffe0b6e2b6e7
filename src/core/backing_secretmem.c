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
 *     64 MiB at a time; memory is only used by pages that were touched.
 *     Pages in use never exceed the guest_memfd's, so the pool runs dry
 *     only while racing first uses hold pages they will give back;
 *   - a page index maps to a pool page through a gm_radix (lock-free
 *     lookup; a leaf is installed by CAS, and a loser gives its page back);
 *   - punch-hole zeroes the pages it drops and pushes them on a free list,
 *     which is used before the pool grows again.
 *
 * Pool memory stays mapped until fini, so a stale pointer held by a fault
 * that raced a punch still points at valid memory (the fault retries: the
 * MMU invalidation protocol, see gmem.c).
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
#include "lib/sys_raw.h"

#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447 /* x86-64 */
#endif

#define SM_CHUNK_MIN 512ULL   /* pages: 2 MiB */
#define SM_CHUNK_MAX 16384ULL /* pages: 64 MiB */
#define SM_SIGNAL_CHECK 512   /* pages allocated between signal checks */

struct sm_chunk {
	char *base;
	uint64_t npages;
};

struct gm_secretmem {
	int fd;
	uint64_t nr_pages; /* of the guest_memfd */

	/*
	 * Protects the pool: chunks, pool_pages, the bump region and the free
	 * list.  A leaf lock; it may be taken inside an RCU read-side section
	 * (the fault path) and nothing waits for a grace period under it.
	 */
	pthread_mutex_t lock;
	struct sm_chunk *chunks;
	size_t nr_chunks, cap_chunks;
	uint64_t pool_pages;	/* pages of the file mapped so far */
	char *bump;		/* next never-used page of the newest chunk */
	uint64_t bump_left;	/* pages left after it */
	char **free_pages;	/* zeroed pages ready for reuse */
	size_t nr_free, cap_free;

	uint64_t nr_allocated;	/* indices with a page; atomic */
	struct gm_radix map;	/* page index -> pool page */
};

static int sm_open(void)
{
	int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

/* ---- pool (all with sm->lock held) -------------------------------------- */

/* Map the next chunk of the file: 0, -ENOMEM, or -EAGAIN when all is mapped. */
static int sm_pool_grow(struct gm_secretmem *sm)
{
	uint64_t chunk;
	char *base;

	if (sm->pool_pages == sm->nr_pages)
		return -EAGAIN;
	chunk = GM_MIN(GM_MIN(GM_MAX(sm->pool_pages, SM_CHUNK_MIN), SM_CHUNK_MAX),
		       sm->nr_pages - sm->pool_pages);
	if (sm->nr_chunks == sm->cap_chunks) {
		size_t cap = sm->cap_chunks ? 2 * sm->cap_chunks : 16;
		struct sm_chunk *c = realloc(sm->chunks, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		sm->chunks = c;
		sm->cap_chunks = cap;
	}
	base = gm_raw_mmap(NULL, chunk << GM_PAGE_SHIFT, PROT_READ | PROT_WRITE, MAP_SHARED,
			   sm->fd, (off_t)(sm->pool_pages << GM_PAGE_SHIFT));
	if (base == MAP_FAILED)
		return -ENOMEM; /* EAGAIN from mmap: over RLIMIT_MEMLOCK */
	sm->chunks[sm->nr_chunks++] = (struct sm_chunk){ base, chunk };
	sm->pool_pages += chunk;
	sm->bump = base;
	sm->bump_left = chunk;
	return 0;
}

/*
 * A zeroed page for exclusive use; *fresh says it was never touched.
 * NULL with *err = -ENOMEM, or -EAGAIN when the pool is dry for now.
 */
static char *sm_pool_get(struct gm_secretmem *sm, bool *fresh, int *err)
{
	char *page = NULL;

	gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
	if (sm->nr_free) {
		page = sm->free_pages[--sm->nr_free];
		*fresh = false;
	} else if (sm->bump_left || !(*err = sm_pool_grow(sm))) {
		page = sm->bump;
		sm->bump += GM_PAGE_SIZE;
		sm->bump_left--;
		*fresh = true;
	}
	gm_mutex_unlock(&sm->lock);
	return page;
}

/* Return a zeroed page.  The free list holds at most pool_pages entries. */
static void sm_pool_put(struct gm_secretmem *sm, char *page)
{
	gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
	if (sm->nr_free == sm->cap_free) {
		size_t cap = sm->cap_free ? 2 * sm->cap_free : 64;
		char **f = realloc(sm->free_pages, cap * sizeof(*f));

		if (!f) {
			/* Keep going: the page is leaked to the pool, not lost. */
			gm_mutex_unlock(&sm->lock);
			return;
		}
		sm->free_pages = f;
		sm->cap_free = cap;
	}
	sm->free_pages[sm->nr_free++] = page;
	gm_mutex_unlock(&sm->lock);
}

/* ---- operations ------------------------------------------------------- */

static int secretmem_init(struct gm_backing *b)
{
	struct gm_secretmem *sm = calloc(1, sizeof(*sm));
	int ret;

	if (!sm)
		return -ENOMEM;
	sm->nr_pages = b->nr_pages;
	ret = gm_radix_init(&sm->map, b->nr_pages);
	if (ret)
		goto err_free;
	sm->fd = sm_open();
	if (sm->fd < 0) {
		ret = sm->fd; /* -ENOSYS: the host has no (enabled) secretmem */
		goto err_radix;
	}
	/* Sparse: only touched pages use memory. */
	if (gm_backing_set_size(sm->fd, b->nr_pages << GM_PAGE_SHIFT)) {
		ret = -ENOMEM;
		goto err_close;
	}
	gm_check_pthread(pthread_mutex_init(&sm->lock, NULL));
	b->priv = sm;
	return 0;

err_close:
	gm_raw_close(sm->fd);
err_radix:
	gm_radix_fini(&sm->map, NULL, NULL);
err_free:
	free(sm);
	return ret;
}

static void secretmem_fini(struct gm_backing *b)
{
	struct gm_secretmem *sm = b->priv;

	gm_radix_fini(&sm->map, NULL, NULL);
	for (size_t i = 0; i < sm->nr_chunks; i++)
		gm_raw_munmap(sm->chunks[i].base, sm->chunks[i].npages << GM_PAGE_SHIFT);
	free(sm->chunks);
	free(sm->free_pages);
	pthread_mutex_destroy(&sm->lock);
	gm_raw_close(sm->fd);
	free(sm);
}

static void *secretmem_page(struct gm_backing *b, uint64_t index, bool alloc, int *err)
{
	struct gm_secretmem *sm = b->priv;
	void *page = gm_radix_lookup(&sm->map, index), *expected = NULL;
	void **slot;
	bool fresh;

	if (page || !alloc)
		return page;
	slot = gm_radix_slot(&sm->map, index);
	if (!slot) {
		*err = -ENOMEM;
		return NULL;
	}
	while (!(page = sm_pool_get(sm, &fresh, err))) {
		if (*err != -EAGAIN)
			return NULL;
		/* Dry: a racing first use holds the spare page; it may be ours. */
		*err = 0;
		page = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
		if (page)
			return page;
		sched_yield();
	}
	/* Fault the page in now, outside the pool lock (secretmem is zero-filled). */
	if (fresh)
		*(volatile char *)page = 0;
	/* Release: the zeroed contents before the pointer; pairs with lookups. */
	if (__atomic_compare_exchange_n(slot, &expected, page, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE)) {
		__atomic_fetch_add(&sm->nr_allocated, 1, __ATOMIC_RELAXED);
		return page;
	}
	sm_pool_put(sm, page); /* another thread won; ours is still zero */
	return expected;
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

static int secretmem_drop(void *ctx, uint64_t index, void **slot)
{
	struct gm_secretmem *sm = ctx;
	char *page = __atomic_exchange_n(slot, NULL, __ATOMIC_ACQ_REL);

	(void)index;
	if (page) {
		memset(page, 0, GM_PAGE_SIZE);
		sm_pool_put(sm, page);
		__atomic_fetch_sub(&sm->nr_allocated, 1, __ATOMIC_RELAXED);
	}
	return 0;
}

static void secretmem_punch(struct gm_backing *b, uint64_t index, uint64_t n)
{
	struct gm_secretmem *sm = b->priv;

	gm_radix_for_each(&sm->map, index, index + n, secretmem_drop, sm);
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

/*
 * A page's offset in the pool file: chunks map consecutive ranges of the
 * file in order, so the chunk holding the page gives it.
 */
static int secretmem_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset)
{
	struct gm_secretmem *sm = b->priv;
	char *page = gm_radix_lookup(&sm->map, index);
	uint64_t file_off = 0;
	int ret = -ENOENT;

	if (!page)
		return -ENOENT;
	gm_mutex_lock(&sm->lock, GM_LOCK_BACKING);
	for (size_t i = 0; i < sm->nr_chunks; i++) {
		struct sm_chunk *c = &sm->chunks[i];

		if (page >= c->base && page < c->base + (c->npages << GM_PAGE_SHIFT)) {
			*offset = file_off + (uint64_t)(page - c->base);
			*fd = sm->fd;
			ret = 0;
			break;
		}
		file_off += c->npages << GM_PAGE_SHIFT;
	}
	gm_mutex_unlock(&sm->lock);
	return ret;
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
	gm_raw_close(fd);
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
