/* SPDX-License-Identifier: MIT */
/*
 * memfd backing: one memfd_create() file per guest_memfd, sized like it,
 * so that the host's tmpfs does the sparse page management (allocate =
 * fallocate, free = punch hole) and the storage is a real file the 6.18
 * MMAP flag can hand to mmap().
 *
 * guestmem reaches the pages through one MAP_SHARED mapping of the whole
 * file, made at init when the file is at most GM_MEMFD_WHOLE_MAX: one host
 * mapping per guest_memfd however scattered the touched pages are (a
 * mapping per 2 MiB window hit vm.max_map_count after ~65,500 windows and
 * cost a VMA per touched window), whose page tables the host allocates
 * only where pages are touched, and which one munmap tears down.  Larger
 * files (or when the address space is short) are reached through
 * MAP_SHARED windows of 2 MiB, mapped on first use and kept until fini (a
 * punched page of a mapped window reads zeros again).  Either way the
 * per-window state is found through a gm_radix keyed by window
 * index: lookups are lock-free, a window is installed by CAS (a loser frees
 * or unmaps its copy) and never replaced, so a pointer read from the table
 * stays valid until fini.
 *
 * Each window carries a bitmap of the pages guestmem allocated and has not
 * punched since ("known").  It lets the fault path skip the fallocate
 * syscall for pages it already knows, and it is exact for guestmem's own
 * allocations: the fault path allocates concurrently with punch-hole (the
 * fault does not take the invalidate lock, see gmem.c), so it follows
 * punch_seq like a seqcount: it retries until a whole "fallocate then set
 * the bit" ran with no punch in between, and punch clears bits only after
 * the hole is punched.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backing_impl.h"
#include "lib/compiler.h"
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
	int fd;
	uint64_t size; /* bytes */
	char *whole;   /* the whole file mapped, or NULL: per-window mappings */
	/*
	 * Incremented (seq_cst) at the start and at the end of every punch:
	 * odd while a punch runs.  Read by allocations to detect a punch that
	 * overlapped their fallocate + bit update.
	 */
	unsigned long punch_seq;
	struct gm_radix windows; /* window index -> struct memfd_window * */
};

static int memfd_errno(int e)
{
	if (e == ENOSPC || e == ENOMEM || e == EFBIG)
		return -ENOMEM;
	return -e;
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

/* ---- operations ------------------------------------------------------- */

static int memfd_init(struct gm_backing *b)
{
	struct gm_memfd *m = calloc(1, sizeof(*m));
	int ret;

	if (!m)
		return -ENOMEM;
	m->size = b->nr_pages << GM_PAGE_SHIFT;
	ret = gm_radix_init(&m->windows, (b->nr_pages + WIN_PAGES - 1) / WIN_PAGES);
	if (ret)
		goto err_free;
	m->fd = memfd_create("guestmem-gmem", MFD_CLOEXEC);
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
	b->priv = m;
	return 0;

err_close:
	gm_raw_close(m->fd);
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

static void memfd_fini(struct gm_backing *b)
{
	struct gm_memfd *m = b->priv;

	gm_radix_fini(&m->windows, memfd_free_window, m);
	if (m->whole)
		gm_raw_munmap(m->whole, m->size);
	gm_raw_close(m->fd);
	free(m);
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

static void *memfd_page(struct gm_backing *b, uint64_t index, bool alloc, int *err)
{
	struct gm_memfd *m = b->priv;
	uint64_t widx = index / WIN_PAGES;
	unsigned bit = (unsigned)(index % WIN_PAGES);
	/* Even to look: a page may exist that guestmem did not allocate. */
	struct memfd_window *win = memfd_window(m, widx, true);
	char *addr;

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
	struct memfd_window *win = memfd_window(m, index / WIN_PAGES, true);
	int ret;

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
	int ret;

	__atomic_fetch_add(&m->punch_seq, 1, __ATOMIC_SEQ_CST); /* odd: punch running */
	do {
		ret = gm_raw_fallocate(m->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				       (off_t)(index << GM_PAGE_SHIFT), (off_t)(n << GM_PAGE_SHIFT));
	} while (ret && errno == EINTR);
	/* tmpfs punch fails only on a sealed file, and this one is never sealed. */
	if (ret)
		fprintf(stderr, "guestmem: memfd punch hole failed: errno %d\n", errno);
	gm_radix_for_each(&m->windows, index / WIN_PAGES, (index + n - 1) / WIN_PAGES + 1,
			  memfd_forget_window, &r);
	__atomic_fetch_add(&m->punch_seq, 1, __ATOMIC_SEQ_CST); /* even: done */
}

static uint64_t memfd_nr_allocated(struct gm_backing *b)
{
	struct gm_memfd *m = b->priv;
	struct stat st;

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
	return ((struct gm_memfd *)b->priv)->fd;
}

/* The file is the storage itself: page @index is at index * 4096. */
static int memfd_file_page(struct gm_backing *b, uint64_t index, int *fd, uint64_t *offset)
{
	int err = 0;

	if (!memfd_page(b, index, false, &err))
		return err ? err : -ENOENT;
	*fd = ((struct gm_memfd *)b->priv)->fd;
	*offset = index << GM_PAGE_SHIFT;
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
