/* SPDX-License-Identifier: MIT */
/*
 * memfd backing: one memfd_create() file per guest_memfd, sized like it,
 * so that the host's tmpfs does the page management (allocate =
 * fallocate, free = punch hole).  guestmem reaches the pages through one
 * MAP_SHARED mapping of the whole file, made at init: one host mapping per
 * guest_memfd however scattered the touched pages are (a mapping per 2 MiB
 * window hit vm.max_map_count after ~65,500 windows), torn down by one
 * munmap.  Where a page lives in the file depends on who may map it:
 *
 *   pool    (the default) pages are placed densely from the start of the
 *           file, whatever their index, and a map from index to file page
 *           ("slot") finds them.  Scattered guest pages then cost the host
 *           what dense ones do: its page tables for our mapping and its
 *           page cache tree for the file grow by ~8 bytes per page, where
 *           a page alone in its 2 MiB of the file cost each of them a
 *           4 KiB table page (and tmpfs another 576-byte tree node).
 *           Punched slots go back to the file (punch hole) and to a free
 *           list that later allocations use first.
 *   linear  page i at offset i * 4096: for a 6.18 MMAP guest_memfd, whose
 *           file the VMM maps itself, and for files too large to map whole
 *           (over GM_MEMFD_WHOLE_MAX), which are reached through MAP_SHARED
 *           windows of 2 MiB, mapped on first use and kept until fini.
 *
 *   held    (gm_backing_init_held()) a pool whose file only the holder
 *           process has: no descriptor or mapping here, so the "whole
 *           mapping" is a PROT_NONE reservation whose addresses only name
 *           the slots, and fallocate (populate, punch) is the holder's.
 *
 * Either way the state is found through a gm_radix keyed by window (512
 * page indices, 2 MiB of the guest_memfd): lookups are lock-free (acquire
 * loads), so a fault finds a known page without a lock or a system call.
 *
 * Linear: each window carries a bitmap of the pages guestmem allocated and
 * has not punched since ("known").  It lets the fault path skip the
 * fallocate syscall for pages it already knows, and it is exact for
 * guestmem's own allocations: the fault path allocates concurrently with
 * punch-hole (the fault does not take the invalidate lock, see gmem.c), so
 * it follows punch_seq like a seqcount: it retries until a whole
 * "fallocate then set the bit" ran with no punch in between, and punch
 * clears bits only after the hole is punched.
 *
 * Pool: the index -> slot map is a gm_pagemap (backing.c).  Allocation
 * and punch change it under m->lock; lookups run under RCU only.  A lookup
 * that races a punch may return the address of a slot being punched (or
 * already reused for another index): the memory stays mapped until fini,
 * and the fault that asked for it retries through the MMU invalidation
 * protocol (the punch's invalidation covers it and ends only after the
 * slot went back to the free list).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backing_impl.h"
#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/rcu.h"
#include "lib/reap.h"
#include "lib/sys_raw.h"

#define WIN_PAGES GM_RADIX_FANOUT
#define WIN_SHIFT (GM_PAGE_SHIFT + GM_RADIX_BITS)
#define WIN_BYTES (1ULL << WIN_SHIFT)

struct memfd_window {
	char *addr; /* MAP_SHARED view; NULL until first lookup; set once by CAS */
	uint64_t known[WIN_PAGES / 64]; /* see the file comment; atomic RMW only */
};

/* A whole-file mapping takes at most 1/8 of the 128 TiB user address space. */
#define GM_MEMFD_WHOLE_MAX (16ULL << 40)

struct gm_memfd {
	int fd;		 /* -1 when held elsewhere */
	const struct gm_backing *b; /* its holder, when held */
	uint64_t size;	 /* bytes */
	uint64_t nr_pages;
	char *whole;	 /* the whole file mapped, or NULL: per-window mappings */
	bool pool;	 /* pool placement (see the file comment), else linear */
	/*
	 * Linear only.  Incremented (seq_cst) at the start and at the end of
	 * every punch: odd while a punch runs.  Read by allocations to detect
	 * a punch that overlapped their fallocate + bit update.
	 */
	unsigned long punch_seq;
	struct gm_radix windows; /* linear: window index -> struct memfd_window * */
	struct gm_pagemap map;	 /* pool: page index -> slot */

	/*
	 * Pool only.  Protects every change of the page map (lookups take
	 * no lock) and the slot allocator (bump, free list).  Taken inside
	 * RCU read-side sections by faults, and nothing waits for a grace
	 * period under it; the only lock taken under it is the guest
	 * process's control lock, by a held pool's fallocate (a leaf).
	 */
	pthread_mutex_t lock;
	uint64_t bump;	       /* slots [bump, nr_pages) were never used */
	struct gm_slot_stack free; /* punched slots, reused first */
	/*
	 * Slots [res_lo, res_hi) are allocated in the file (zero pages, here
	 * or in the holder's) and assigned to no page yet; res_next is the
	 * ahead policy's state (gm_ahead_run()).  See pool_reserve_refill().
	 */
	uint64_t res_lo, res_hi;
	uint64_t res_next;
	uint64_t nr_allocated; /* pages present; atomic (read without the lock) */

	struct gm_reap_job reap; /* fini's release of the file, when it is large */
};

static int memfd_errno(int e)
{
	if (e == ENOSPC || e == ENOMEM || e == EFBIG)
		return -ENOMEM;
	return -e;
}

/* fallocate(2) on the file, here or in its holder: 0, or -1 with errno. */
static int memfd_file_fallocate(struct gm_memfd *m, int mode, uint64_t page, uint64_t n)
{
	int r;

	if (m->fd >= 0)
		return gm_raw_fallocate(m->fd, mode, (off_t)(page << GM_PAGE_SHIFT),
					(off_t)(n << GM_PAGE_SHIFT));
	r = m->b->holder.fallocate(m->b->holder.ctx, m->b->holder_id, mode, page << GM_PAGE_SHIFT,
				   n << GM_PAGE_SHIFT);
	if (!r)
		return 0;
	errno = -r;
	return -1;
}

/* ---- bitmap of known pages --------------------------------------------- */

/* Apply @set or clear to bits [first, end) of @win (both < WIN_PAGES + 1). */
static void known_update(struct memfd_window *win, unsigned first, unsigned end, bool set)
{
	while (first < end) {
		unsigned w = first / 64, lo = first % 64;
		unsigned hi = GM_MIN(end - w * 64, 64u);
		uint64_t mask = (hi == 64 ? ~0ULL : (1ULL << hi) - 1) & ~((1ULL << lo) - 1);

		if (set)
			__atomic_fetch_or(&win->known[w], mask, __ATOMIC_SEQ_CST);
		else
			__atomic_fetch_and(&win->known[w], ~mask, __ATOMIC_SEQ_CST);
		first = w * 64 + hi;
	}
}

static bool known_test(struct memfd_window *win, unsigned bit)
{
	return __atomic_load_n(&win->known[bit / 64], __ATOMIC_ACQUIRE) & (1ULL << (bit % 64));
}

/* ---- windows ------------------------------------------------------------ */

static struct memfd_window *memfd_window(struct gm_memfd *m, uint64_t widx, bool create)
{
	struct memfd_window *win = gm_radix_lookup(&m->windows, widx), *fresh;
	void **slot;

	if (win || !create)
		return win;
	slot = gm_radix_slot(&m->windows, widx);
	fresh = slot ? calloc(1, sizeof(*fresh)) : NULL;
	if (!fresh)
		return NULL;
	/* Release publishes the zeroed window; pairs with gm_radix_lookup(). */
	if (__atomic_compare_exchange_n(slot, (void **)&win, fresh, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return fresh;
	free(fresh);
	return win;
}

static char *memfd_window_addr(struct gm_memfd *m, struct memfd_window *win, uint64_t widx)
{
	char *addr = __atomic_load_n(&win->addr, __ATOMIC_ACQUIRE), *expected = NULL;
	uint64_t off = widx << WIN_SHIFT, len;

	if (m->whole)
		return m->whole + off; /* set at init, before any lookup */
	if (addr)
		return addr;
	len = GM_MIN(WIN_BYTES, m->size - off);
	addr = gm_raw_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, (off_t)off);
	if (addr == MAP_FAILED)
		return NULL;
	if (__atomic_compare_exchange_n(&win->addr, &expected, addr, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return addr;
	gm_raw_munmap(addr, len);
	return expected;
}

/*
 * Allocate pages [index, index + n) of one window and mark them known.
 * Context: may run concurrently with punch (see the file comment).
 */
static int memfd_fallocate_known(struct gm_memfd *m, struct memfd_window *win, uint64_t index,
				 uint64_t n)
{
	unsigned first = (unsigned)(index % WIN_PAGES);

	for (;;) {
		unsigned long seq = __atomic_load_n(&m->punch_seq, __ATOMIC_SEQ_CST);

		if (seq & 1) {
			sched_yield(); /* a punch is running; it does not block */
			continue;
		}
		if (gm_raw_fallocate(m->fd, FALLOC_FL_KEEP_SIZE, (off_t)(index << GM_PAGE_SHIFT),
				     (off_t)(n << GM_PAGE_SHIFT)))
			return memfd_errno(errno);
		known_update(win, first, first + (unsigned)n, true);
		if (__atomic_load_n(&m->punch_seq, __ATOMIC_SEQ_CST) == seq)
			return 0;
	}
}

/* Punch file pages [page, page + n): pool slots, or linear page indices. */
static void memfd_punch_hole(struct gm_memfd *m, uint64_t page, uint64_t n)
{
	int ret;

	do {
		ret = memfd_file_fallocate(m, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, page, n);
	} while (ret && errno == EINTR);
	/*
	 * tmpfs punch fails only on a sealed file, and this one is never
	 * sealed (a holder's answer is its own: a gone one's is success).
	 */
	if (ret && m->fd >= 0)
		fprintf(stderr, "guestmem: memfd punch hole failed: errno %d\n", errno);
}

/* ---- pool slots (all with m->lock held) ---------------------------------- */

/*
 * A held pool's allocations are the holder's: a round trip to the guest
 * process each (~60 us here, 20x a tmpfs fallocate); here, a system call
 * each.  So an allocation smaller than a window that finds the reserve
 * empty allocates a run of never-used slots ahead, in one call
 * (gm_ahead_run(): 16 slots, doubling up to a window), and later small
 * allocations take slots from it with no call at all: a guest_memfd
 * allocated once costs 64 KiB ahead, one allocated page by page at most
 * 2 MiB ahead, its pages then costing ~1/512 of a round trip each.  What
 * is ahead is allocated memory, as after the kernel's fallocate, and goes
 * with the file.  A refill that fails (ENOSPC, ENOMEM) leaves the exact
 * allocation to answer.  Once the never-used slots are gone, allocations
 * reuse punched slots one call each, as before.  Context: m->lock.
 */
static void pool_reserve_refill(struct gm_memfd *m, uint64_t want)
{
	uint64_t next = m->res_next, n;

	if (m->res_lo != m->res_hi || want >= GM_AHEAD_MAX)
		return;
	n = gm_ahead_run(&next, m->nr_pages - m->bump);
	if (n <= want || memfd_file_fallocate(m, FALLOC_FL_KEEP_SIZE, m->bump, n))
		return;
	m->res_next = next;
	m->res_lo = m->bump;
	m->res_hi = m->bump += n;
}

/*
 * Up to @want contiguous free slots at *@slot; returns how many (0: none).
 * *@ready: they are allocated already (from the reserve).
 */
static uint64_t pool_take(struct gm_memfd *m, uint64_t want, uint64_t *slot, bool *ready)
{
	pool_reserve_refill(m, want);
	*ready = m->res_lo != m->res_hi;
	if (*ready) {
		want = GM_MIN(want, m->res_hi - m->res_lo);
		*slot = m->res_lo;
		m->res_lo += want;
		return want;
	}
	/* Single pages reuse punched slots; runs stay contiguous from the bump. */
	if ((want == 1 || m->bump + want > m->nr_pages) && m->free.nr) {
		*slot = gm_slot_stack_pop(&m->free);
		return 1;
	}
	want = GM_MIN(want, m->nr_pages - m->bump);
	*slot = m->bump;
	m->bump += want;
	return want;
}

/*
 * Give back a slot whose file page is a hole.  If the free list cannot
 * grow, the slot is lost to this file (its memory is not: the page was
 * punched); the pool can run dry only if that happened (-ENOMEM then).
 */
static void pool_give(struct gm_memfd *m, uint64_t slot)
{
	if (slot + 1 == m->bump && m->res_lo == m->res_hi) {
		m->bump--;
		return;
	}
	(void)gm_slot_stack_push(&m->free, slot);
}

/*
 * Allocate slots [slot, slot + n) of the file.  For a fault (@map), which
 * is about to touch the page, populating it writable through our mapping
 * allocates and maps it in one system call, where fallocate and then the
 * access cost a call and a host page fault (~11 us on a paravirtualized
 * host).  An fallocate of the guest_memfd only allocates, as the kernel's
 * does: mapping pages nobody may touch would double its cost.  Hosts
 * before 5.14 have no MADV_POPULATE_WRITE: fallocate.  Returns 0, -ENOMEM
 * or -errno.
 */
static int pool_populate(struct gm_memfd *m, uint64_t slot, uint64_t n, bool map)
{
	static int populate = 1; /* relaxed: every thread learns the same */

	if (map && m->fd >= 0 && READ_ONCE(populate)) {
		if (!gm_raw_madvise(m->whole + (slot << GM_PAGE_SHIFT), n << GM_PAGE_SHIFT,
				    MADV_POPULATE_WRITE))
			return 0;
		if (errno != EINVAL)
			return errno == EFAULT ? -ENOMEM : memfd_errno(errno);
		WRITE_ONCE(populate, 0);
	}
	if (memfd_file_fallocate(m, FALLOC_FL_KEEP_SIZE, slot, n))
		return memfd_errno(errno);
	return 0;
}

/*
 * Allocate the absent pages of [index, index + n), all in one window:
 * runs of absent pages get contiguous slots (one fallocate each).  On
 * ENOMEM a run is retried page by page, so the pages before the one that
 * failed stay allocated (no rollback).  Context: m->lock.
 */
static int pool_alloc_window(struct gm_memfd *m, uint64_t index, uint64_t n, bool map)
{
	uint64_t end = index + n;
	bool single = false;

	while (index < end) {
		uint64_t run = 0, slot, got, done = 0;
		bool ready;
		int ret;

		if (gm_pagemap_lookup(&m->map, index)) {
			index++;
			continue;
		}
		do
			run++;
		while (!single && index + run < end && !gm_pagemap_lookup(&m->map, index + run));
		got = pool_take(m, run, &slot, &ready);
		if (!got)
			return -ENOMEM;
		/* A fault maps what it takes here: populating maps ready pages too. */
		ret = ready && !(map && m->fd >= 0) ? 0 : pool_populate(m, slot, got, map);
		for (; !ret && done < got; done++) {
			ret = gm_pagemap_insert(&m->map, index + done, slot + done);
			if (!ret)
				__atomic_fetch_add(&m->nr_allocated, 1, __ATOMIC_RELAXED);
		}
		if (ret && done)
			done--; /* the last one failed */
		index += done;
		/*
		 * What was not mapped goes back, a hole again (a failed populate
		 * may have allocated part of it; descending: see pool_give).
		 */
		if (done < got)
			memfd_punch_hole(m, slot + done, got - done);
		while (got > done)
			pool_give(m, slot + --got);
		if (ret == -ENOMEM && run > 1 && !single) {
			single = true;
			continue;
		}
		if (ret)
			return ret;
	}
	return 0;
}

struct pool_punch {
	struct gm_memfd *m;
	struct gm_slot_stack batch; /* to punch, then give back */
};

static void pool_punch_collect(void *ctx, uint64_t slot)
{
	struct pool_punch *p = ctx;

	__atomic_fetch_sub(&p->m->nr_allocated, 1, __ATOMIC_RELAXED);
	if (gm_slot_stack_push(&p->batch, slot)) {
		/* No room to batch it: punch it alone. */
		memfd_punch_hole(p->m, slot, 1);
		pool_give(p->m, slot);
	}
}

static void pool_punch_run(void *ctx, uint64_t first, uint64_t n)
{
	memfd_punch_hole(ctx, first, n);
}

static void pool_punch(struct gm_memfd *m, uint64_t index, uint64_t n)
{
	struct pool_punch p = { .m = m };

	gm_mutex_lock(&m->lock, GM_LOCK_BACKING);
	gm_pagemap_remove(&m->map, index, index + n, pool_punch_collect, &p);
	/* Holes first, then the slots are reusable: one punch per run of slots. */
	gm_slot_stack_runs(&p.batch, pool_punch_run, m);
	while (p.batch.nr) /* descending: the bump can shrink */
		pool_give(m, gm_slot_stack_pop(&p.batch));
	gm_mutex_unlock(&m->lock);
	free(p.batch.slots);
}

/* ---- operations ------------------------------------------------------- */

/* The held kind: a pool with nothing of the file in this process. */
static int memfd_init_held(struct gm_backing *b, struct gm_memfd *m)
{
	void *w = MAP_FAILED;

	m->fd = -1;
	m->b = b;
	if (m->size <= GM_MEMFD_WHOLE_MAX && b->nr_pages <= GM_PAGEMAP_MAX_SLOTS)
		w = gm_raw_mmap(NULL, m->size, PROT_NONE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (w == MAP_FAILED || gm_pagemap_init(&m->map, b->nr_pages)) {
		if (w != MAP_FAILED)
			gm_raw_munmap(w, m->size);
		gm_radix_fini(&m->windows, NULL, NULL);
		free(m);
		return -EOPNOTSUPP;
	}
	m->whole = w;
	m->pool = true;
	gm_check_pthread(pthread_mutex_init(&m->lock, NULL));
	b->priv = m;
	return 0;
}

static int memfd_init(struct gm_backing *b)
{
	struct gm_memfd *m = calloc(1, sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	m->size = b->nr_pages << GM_PAGE_SHIFT;
	m->nr_pages = b->nr_pages;
	ret = gm_radix_init(&m->windows, (b->nr_pages + WIN_PAGES - 1) / WIN_PAGES);
	if (ret)
		goto err_free;
	if (b->held)
		return memfd_init_held(b, m);
	m->fd = gm_fd_own(memfd_create("guestmem-gmem", MFD_CLOEXEC));
	if (m->fd < 0) {
		ret = -errno;
		goto err_radix;
	}
	if (gm_backing_set_size(m->fd, m->size)) {
		ret = memfd_errno(errno);
		goto err_close;
	}
	/* Costs no memory until touched; on failure, windows as before. */
	if (m->size <= GM_MEMFD_WHOLE_MAX) {
		void *w = gm_raw_mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
			       m->fd, 0);

		m->whole = w == MAP_FAILED ? NULL : w;
	}
	m->pool = m->whole && !b->mappable && b->nr_pages <= GM_PAGEMAP_MAX_SLOTS &&
		  !gm_pagemap_init(&m->map, b->nr_pages);
	gm_check_pthread(pthread_mutex_init(&m->lock, NULL));
	b->priv = m;
	return 0;

err_close:
	gm_fd_close(m->fd);
err_radix:
	gm_radix_fini(&m->windows, NULL, NULL);
err_free:
	free(m);
	return ret;
}

static void memfd_free_window(void *ctx, uint64_t widx, void *leaf)
{
	struct gm_memfd *m = ctx;
	struct memfd_window *win = leaf;

	if (win->addr && !m->whole)
		gm_raw_munmap(win->addr, GM_MIN(WIN_BYTES, m->size - (widx << WIN_SHIFT)));
	free(win);
}

/*
 * The file and its mapping go back to the host (the pages with them).
 * The mapped part is dropped in steps first: each step holds the process's
 * mmap lock (for read) briefly, where one munmap would hold it while it
 * unmaps a million pages, and every mmap or munmap of the VMM's would wait.
 */
static void memfd_release(struct gm_reap_job *job)
{
	struct gm_memfd *m = caa_container_of(job, struct gm_memfd, reap);
	const uint64_t step = 64ULL << 20;
	uint64_t used = m->pool ? m->bump << GM_PAGE_SHIFT : 0; /* linear: sparse, as is */

	for (uint64_t off = 0; m->whole && off < used; off += step)
		gm_raw_madvise(m->whole + off, GM_MIN(step, used - off), MADV_DONTNEED);
	if (m->whole)
		gm_raw_munmap(m->whole, m->size);
	if (m->fd >= 0)
		gm_fd_close(m->fd);
	free(m);
}

static uint64_t memfd_nr_allocated(struct gm_backing *b);

static void memfd_fini(struct gm_backing *b)
{
	struct gm_memfd *m = b->priv;
	uint64_t bytes = memfd_nr_allocated(b) << GM_PAGE_SHIFT;

	gm_radix_fini(&m->windows, memfd_free_window, m);
	if (m->pool)
		gm_pagemap_fini(&m->map);
	pthread_mutex_destroy(&m->lock);
	free(m->free.slots);
	m->reap.fn = memfd_release;
	/* Held: the holder frees the file (and its pages); the reservation is ours. */
	if (b->held) {
		b->holder.drop(b->holder.ctx, b->holder_id);
		memfd_release(&m->reap);
		return;
	}
	/*
	 * Freeing a million pages takes the host a second: not the VMM's wait.
	 * The descriptor is closed now all the same: a VMM that closes what it
	 * did not open and reuses the number must never see it closed later
	 * (the mapping keeps the file, and its pages, until the reaper ran).
	 */
	if (bytes >= GM_REAP_MIN_BYTES && m->whole) {
		gm_fd_close(m->fd);
		m->fd = -1;
		gm_reap(&m->reap);
	} else {
		memfd_release(&m->reap);
	}
}

/* Whether page @bit of @win is in the file although guestmem did not allocate it. */
static bool memfd_resident(struct gm_memfd *m, struct memfd_window *win, uint64_t widx,
			   unsigned bit)
{
	char *addr = memfd_window_addr(m, win, widx);
	unsigned char vec = 0;

	/* Pages written through a 6.18 user mapping are up to date: mincore sees them. */
	return addr && !mincore(addr + ((uint64_t)bit << GM_PAGE_SHIFT), GM_PAGE_SIZE, &vec) &&
	       (vec & 1);
}

/* Pool placement: the page's address, allocating it if @alloc. */
static void *pool_page(struct gm_memfd *m, uint64_t index, bool alloc, int *err)
{
	uint64_t slot1 = gm_pagemap_lookup(&m->map, index);

	if (!slot1 && alloc) {
		gm_mutex_lock(&m->lock, GM_LOCK_BACKING);
		*err = pool_alloc_window(m, index, 1, true);
		/* Under the lock: a punch may remove it as soon as we drop it. */
		if (!*err)
			slot1 = gm_pagemap_lookup(&m->map, index);
		gm_mutex_unlock(&m->lock);
	}
	return slot1 ? m->whole + ((slot1 - 1) << GM_PAGE_SHIFT) : NULL;
}

static void *memfd_page(struct gm_backing *b, uint64_t index, bool alloc, int *err)
{
	struct gm_memfd *m = b->priv;
	uint64_t widx = index / WIN_PAGES;
	unsigned bit = (unsigned)(index % WIN_PAGES);
	struct memfd_window *win;
	char *addr;

	if (m->pool)
		return pool_page(m, index, alloc, err);
	/* Even to look: a page may exist that guestmem did not allocate. */
	win = memfd_window(m, widx, true);

	if (!win) {
		*err = alloc ? -ENOMEM : 0;
		return NULL;
	}
	if (!known_test(win, bit)) {
		if (!alloc) {
			if (!memfd_resident(m, win, widx, bit))
				return NULL;
		} else if ((*err = memfd_fallocate_known(m, win, index, 1))) {
			return NULL;
		}
	}
	addr = memfd_window_addr(m, win, widx);
	if (!addr) {
		*err = -ENOMEM;
		return NULL;
	}
	return addr + ((uint64_t)bit << GM_PAGE_SHIFT);
}

/*
 * One window's part of an allocation.  tmpfs undoes its own partial work
 * when fallocate fails, so on ENOMEM the chunk is retried page by page:
 * the pages before the one that failed stay allocated (no rollback).
 */
static int memfd_allocate_chunk(struct gm_memfd *m, uint64_t index, uint64_t n)
{
	struct memfd_window *win;
	int ret;

	if (m->pool) {
		gm_mutex_lock(&m->lock, GM_LOCK_BACKING);
		ret = pool_alloc_window(m, index, n, false);
		gm_mutex_unlock(&m->lock);
		return ret;
	}
	win = memfd_window(m, index / WIN_PAGES, true);

	if (!win)
		return -ENOMEM;
	ret = memfd_fallocate_known(m, win, index, n);
	if (ret != -ENOMEM || n == 1)
		return ret;
	for (uint64_t i = 0; i < n; i++) {
		ret = memfd_fallocate_known(m, win, index + i, 1);
		if (ret)
			return ret;
	}
	return 0;
}

static int memfd_allocate(struct gm_backing *b, uint64_t index, uint64_t n,
			  const sigset_t *caller_mask)
{
	struct gm_memfd *m = b->priv;
	uint64_t end = index + n;

	while (index < end) {
		uint64_t chunk = GM_MIN(end, (index / WIN_PAGES + 1) * WIN_PAGES) - index;
		int ret;

		if (gm_alloc_interrupted(caller_mask))
			return -EINTR;
		ret = memfd_allocate_chunk(m, index, chunk);
		if (ret)
			return ret;
		index += chunk;
	}
	return 0;
}

/* memfd_allocate() checks for signals once per window. */
static bool memfd_one_step(uint64_t index, uint64_t n)
{
	return index / WIN_PAGES == (index + n - 1) / WIN_PAGES;
}

struct memfd_punch_range {
	uint64_t first, end; /* page indices */
};

static int memfd_forget_window(void *ctx, uint64_t widx, void **slot)
{
	struct memfd_punch_range *r = ctx;
	struct memfd_window *win = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	uint64_t base = widx * WIN_PAGES;
	uint64_t first = GM_MAX(r->first, base), end = GM_MIN(r->end, base + WIN_PAGES);

	known_update(win, (unsigned)(first - base), (unsigned)(end - base), false);
	return 0;
}

static void memfd_punch(struct gm_backing *b, uint64_t index, uint64_t n)
{
	struct gm_memfd *m = b->priv;
	struct memfd_punch_range r = { index, index + n };

	if (m->pool) {
		pool_punch(m, index, n);
		return;
	}
	__atomic_fetch_add(&m->punch_seq, 1, __ATOMIC_SEQ_CST); /* odd: punch running */
	memfd_punch_hole(m, index, n);
	gm_radix_for_each(&m->windows, index / WIN_PAGES, (index + n - 1) / WIN_PAGES + 1,
			  memfd_forget_window, &r);
	__atomic_fetch_add(&m->punch_seq, 1, __ATOMIC_SEQ_CST); /* even: done */
}

static uint64_t memfd_nr_allocated(struct gm_backing *b)
{
	struct gm_memfd *m = b->priv;
	struct stat st;

	if (m->pool)
		return __atomic_load_n(&m->nr_allocated, __ATOMIC_RELAXED);
	/*
	 * The host's count (512-byte blocks), which also covers pages created
	 * through a 6.18 user mapping.  With tmpfs huge pages enabled
	 * (shmem_enabled=always/force) it counts whole huge folios.
	 */
	if (gm_raw_fstat(m->fd, &st))
		return 0;
	return (uint64_t)st.st_blocks / (GM_PAGE_SIZE / 512);
}

static int memfd_fd(struct gm_backing *b)
{
	struct gm_memfd *m = b->priv;

	/* A pool's file offsets are not page indices: not for the VMM. */
	return m->pool ? -1 : m->fd;
}

/*
 * Where page @index lives in the file: at index * 4096, or in a pool at its
 * slot (the whole-file mapping starts at offset 0).
 */
static int memfd_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset)
{
	struct gm_memfd *m = b->priv;
	int err = 0;
	char *page = memfd_page(b, index, false, &err);

	if (!page)
		return err ? err : -ENOENT;
	*fd = m->fd;
	*offset = m->pool ? (uint64_t)(page - m->whole) : index << GM_PAGE_SHIFT;
	return 0;
}

static bool memfd_available(void)
{
	int fd = memfd_create("guestmem-probe", MFD_CLOEXEC);

	if (fd < 0)
		return false;
	gm_raw_close(fd);
	return true;
}

const struct gm_backing_ops gm_backing_memfd_ops = {
	.init = memfd_init,
	.fini = memfd_fini,
	.page = memfd_page,
	.allocate = memfd_allocate,
	.one_step = memfd_one_step,
	.punch = memfd_punch,
	.nr_allocated = memfd_nr_allocated,
	.memfd = memfd_fd,
	.file_page = memfd_file_page,
	.available = memfd_available,
};
