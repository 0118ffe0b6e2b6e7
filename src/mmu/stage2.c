/* SPDX-License-Identifier: MIT */
/*
 * Stage-2 tables: a 5-level radix of 512-entry tables indexed by gfn bits
 * (level 5: gfn bits 36-44, ..., level 1: bits 0-8), enough for a 52-bit
 * guest-physical space.  See mmu.h for the concurrency rules.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/rcu.h"
#include "lib/reap.h"
#include "lib/sys_raw.h"
#include "mmu.h"
#include "lib/lockdep.h"

#define S2_ENTRIES 512

struct s2_table {
	uint64_t e[S2_ENTRIES];
};

struct s2_detached {
	struct s2_detached *next;
	struct s2_table *table;
	int level;
};

/*
 * Table pages come from chunks of anonymous memory mapped for the VM
 * (S2_CHUNK_MIN growing to S2_CHUNK_MAX), not from malloc: an
 * aligned_alloc() of 4 KiB costs glibc about 8 KiB, and a VM of a million
 * tables would be torn down one free() at a time.  Here a table costs its
 * 4 KiB (the kernel's page-table page), freed tables are reused by the
 * VM, and destruction unmaps the chunks.
 */
#define S2_CHUNK_MIN (64ULL << 10)
#define S2_CHUNK_MAX (2ULL << 20)

struct s2_chunk {
	void *base;
	size_t bytes;
};

struct s2_pool {
	/*
	 * Protects the rest of the pool.  A leaf: taken under mmu_lock (read)
	 * by installs and without it by remote flushes, which free.
	 */
	pthread_mutex_t lock;
	struct s2_table *free;	 /* freed tables, linked through e[0] */
	/*
	 * Freed subtrees, taken apart only when tables are needed: freeing
	 * what a zap of a whole guest_memfd detached costs one step per
	 * subtree, not one per table (a VM's teardown would touch each).
	 */
	struct s2_detached *trees;
	char *bump;		 /* never-used tables of the newest chunk */
	size_t bump_left;	 /* bytes */
	struct s2_chunk *chunks;
	size_t nr_chunks, cap_chunks;
	size_t mapped;		 /* bytes in chunks */
};

struct kvm_mmu {
	struct s2_table root;
	struct s2_pool pool;
	/* Present leaves per level (4 KiB, 2 MiB, 1 GiB): relaxed counters. */
	uint64_t nr_leaves[S2_PG_LEVEL_1G];
	/*
	 * Subtrees detached by zaps, freed by the next remote flush (after
	 * its grace period).  Pushed under mmu_lock (write); taken by
	 * kvm_flush_remote_tlbs() with an atomic exchange.
	 */
	struct s2_detached *detached;
	/*
	 * Zaps not yet covered by a remote flush.  A zapper that clears
	 * nothing must still flush while another zapper's clear is unflushed:
	 * a vCPU may be using that translation, and the second zapper is
	 * about to free what it points at.  zap_gen is bumped (under mmu_lock
	 * for write) by every zap that clears something; a flush records the
	 * zap_gen it read before its grace period in flushed_gen.
	 */
	uint64_t zap_gen;
	uint64_t flushed_gen;
	struct gm_reap_job reap; /* destroy's release of the chunks, when large */
	/* The backend's shadow (mmu.h); written and read under mmu_lock (write). */
	struct kvm_mmu_notifier *notifier;
};

/* Push table @t (no longer reachable) on the free list.  Context: pool->lock. */
static void s2_pool_push(struct s2_pool *pool, struct s2_table *t)
{
	t->e[0] = (uint64_t)(uintptr_t)pool->free;
	pool->free = t;
}

static inline struct s2_table *s2_child(uint64_t pte);

/*
 * Take one freed subtree apart: its root goes on the free list, level-1
 * children too, deeper children become subtrees of their own (or, if no
 * record can be had for one, are taken apart at once).  Context: pool->lock.
 */
static void s2_pool_split(struct s2_pool *pool, struct s2_table *t, int level)
{
	for (unsigned i = 0; level > 1 && i < S2_ENTRIES; i++) {
		uint64_t pte = t->e[i];
		struct s2_detached *d;

		if (!(pte & S2_PRESENT) || (pte & S2_LEAF))
			continue;
		if (level - 1 == 1) {
			s2_pool_push(pool, s2_child(pte));
		} else if ((d = malloc(sizeof(*d)))) {
			*d = (struct s2_detached){ pool->trees, s2_child(pte), level - 1 };
			pool->trees = d;
		} else {
			s2_pool_split(pool, s2_child(pte), level - 1);
		}
	}
	s2_pool_push(pool, t);
}

/* Map the next chunk.  Returns 0 or -ENOMEM.  Context: pool->lock. */
static int s2_pool_grow(struct s2_pool *pool)
{
	size_t bytes = GM_MIN(GM_MAX(pool->mapped, S2_CHUNK_MIN), S2_CHUNK_MAX);
	void *base;

	if (pool->nr_chunks == pool->cap_chunks) {
		size_t cap = pool->cap_chunks ? 2 * pool->cap_chunks : 16;
		struct s2_chunk *c = realloc(pool->chunks, cap * sizeof(*c));

		if (!c)
			return -ENOMEM;
		pool->chunks = c;
		pool->cap_chunks = cap;
	}
	/* Populated: one call instead of a host page fault per table. */
	base = gm_raw_mmap(NULL, bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (base == MAP_FAILED)
		return -ENOMEM;
	pool->chunks[pool->nr_chunks++] = (struct s2_chunk){ base, bytes };
	pool->mapped += bytes;
	pool->bump = base;
	pool->bump_left = bytes;
	return 0;
}

/*
 * A zeroed table.  Tables are page-aligned (chunks are, and tables are
 * page-sized) so that the low 12 bits of an entry are flags.
 */
static struct s2_table *s2_alloc_table(struct kvm_mmu *mmu)
{
	struct s2_pool *pool = &mmu->pool;
	struct s2_table *t = NULL;

	gm_mutex_lock(&pool->lock, GM_LOCK_S2_POOL);
	if (!pool->free && pool->trees) {
		struct s2_detached *d = pool->trees;

		pool->trees = d->next;
		s2_pool_split(pool, d->table, d->level);
		free(d);
	}
	if (pool->free) {
		t = pool->free;
		pool->free = (struct s2_table *)(uintptr_t)t->e[0];
	} else if (pool->bump_left || !s2_pool_grow(pool)) {
		t = (struct s2_table *)(void *)pool->bump; /* fresh: zero already */
		pool->bump += sizeof(*t);
		pool->bump_left -= sizeof(*t);
		gm_mutex_unlock(&pool->lock);
		return t;
	}
	gm_mutex_unlock(&pool->lock);
	if (t)
		memset(t, 0, sizeof(*t));
	return t;
}

/* Give a table no reader can reach any more back to the pool. */
static void s2_pool_put(struct kvm_mmu *mmu, struct s2_table *t)
{
	gm_mutex_lock(&mmu->pool.lock, GM_LOCK_S2_POOL);
	s2_pool_push(&mmu->pool, t);
	gm_mutex_unlock(&mmu->pool.lock);
}

static inline unsigned s2_index(gfn_t gfn, int level)
{
	return (unsigned)(gfn >> (9 * (level - 1))) & (S2_ENTRIES - 1);
}

/*
 * An entry that points at a level-1 table carries the number of 4 KiB
 * leaves in that table in bits 52-61 (table addresses are user-space
 * ones, below 2^47), so that a zap detaching a million tables counts their
 * leaves without reading 2 GiB of entries.  Changed with atomic adds by
 * installs (mmu_lock read) and zaps (write).
 */
#define S2_NR_SHIFT 52
#define S2_NR_MASK (0x3ffULL << S2_NR_SHIFT)

static inline uint64_t s2_nr(uint64_t pte)
{
	return (pte & S2_NR_MASK) >> S2_NR_SHIFT;
}

static inline struct s2_table *s2_child(uint64_t pte)
{
	return (struct s2_table *)(uintptr_t)(pte & S2_ADDR_MASK & ~S2_NR_MASK);
}

int kvm_arch_mmu_create(struct kvm *kvm)
{
	kvm->mmu = calloc(1, sizeof(*kvm->mmu));
	if (!kvm->mmu)
		return -ENOMEM;
	gm_check_pthread(pthread_mutex_init(&kvm->mmu->pool.lock, NULL));
	return 0;
}

/*
 * Detached subtrees whose grace period is over go to the pool whole
 * (@tables), or, when the VM is going, only their records are freed.
 */
static void s2_free_detached(struct kvm_mmu *mmu, struct s2_detached *d, bool tables)
{
	while (d) {
		struct s2_detached *next = d->next;

		if (tables) {
			gm_mutex_lock(&mmu->pool.lock, GM_LOCK_S2_POOL);
			d->next = mmu->pool.trees;
			mmu->pool.trees = d;
			gm_mutex_unlock(&mmu->pool.lock);
		} else {
			free(d);
		}
		d = next;
	}
}

/* Every table lives in a chunk: unmapping them frees the whole tree. */
static void s2_release(struct gm_reap_job *job)
{
	struct kvm_mmu *mmu = caa_container_of(job, struct kvm_mmu, reap);

	for (size_t i = 0; i < mmu->pool.nr_chunks; i++)
		gm_raw_munmap(mmu->pool.chunks[i].base, mmu->pool.chunks[i].bytes);
	free(mmu->pool.chunks);
	free(mmu);
}

void kvm_arch_mmu_destroy(struct kvm *kvm)
{
	struct kvm_mmu *mmu = kvm->mmu;

	if (!mmu)
		return;
	s2_free_detached(mmu, mmu->detached, false);
	s2_free_detached(mmu, mmu->pool.trees, false);
	pthread_mutex_destroy(&mmu->pool.lock);
	kvm->mmu = NULL;
	mmu->reap.fn = s2_release;
	/* A million tables take the host a second to free: not the VMM's wait. */
	if (mmu->pool.mapped >= GM_REAP_MIN_BYTES)
		gm_reap(&mmu->reap);
	else
		s2_release(&mmu->reap);
}

uint64_t kvm_mmu_lookup(struct kvm *kvm, gfn_t gfn, int *level)
{
	struct s2_table *t = &kvm->mmu->root;

	for (int lvl = S2_LEVELS; lvl >= 1; lvl--) {
		/* Pairs with the release CAS in s2_install_entry(). */
		uint64_t pte = __atomic_load_n(&t->e[s2_index(gfn, lvl)], __ATOMIC_ACQUIRE);

		if (!(pte & S2_PRESENT))
			return 0;
		if (pte & S2_LEAF) {
			*level = lvl;
			return pte;
		}
		t = s2_child(pte);
	}
	return 0;
}

/* Publish @val in an empty entry; false if someone else filled it first. */
static bool s2_install_entry(uint64_t *slot, uint64_t val)
{
	uint64_t expected = 0;

	return __atomic_compare_exchange_n(slot, &expected, val, false, __ATOMIC_RELEASE,
					   __ATOMIC_ACQUIRE);
}

/* The table one level below entry @slot, creating it if empty. */
static struct s2_table *s2_get_child(struct kvm_mmu *mmu, uint64_t *slot, int *err)
{
	uint64_t pte = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	struct s2_table *n;

	if (pte & S2_PRESENT)
		return (pte & S2_LEAF) ? NULL : s2_child(pte);
	n = s2_alloc_table(mmu);
	if (!n) {
		*err = -ENOMEM;
		return NULL;
	}
	if (s2_install_entry(slot, (uint64_t)(uintptr_t)n | S2_PRESENT))
		return n;
	s2_pool_put(mmu, n); /* never published */
	pte = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	return (pte & S2_PRESENT) && !(pte & S2_LEAF) ? s2_child(pte) : NULL;
}

/*
 * The entry was not empty.  A write fault on a read-only leaf of the same
 * page (dirty logging write-protects leaves; the kernel's fast page fault)
 * makes it writable in place; a leaf that already is was fixed by another
 * vCPU meanwhile.  Anything else raced with a zap or an install: retry.
 */
static int s2_make_writable(uint64_t *slot, uint64_t hva, uint64_t flags)
{
	uint64_t pte = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	uint64_t want = (hva & S2_ADDR_MASK) | flags | S2_PRESENT | S2_LEAF;

	if (!(pte & S2_LEAF) || (pte & S2_ADDR_MASK) != (want & S2_ADDR_MASK) ||
	    (pte & S2_PRIVATE) != (want & S2_PRIVATE))
		return -EAGAIN;
	if (!(want & S2_WRITABLE) || (pte & S2_WRITABLE))
		return 0; /* spurious: what the fault wanted is there */
	/* Release: pairs with the acquire loads of kvm_mmu_lookup(). */
	return __atomic_compare_exchange_n(slot, &pte, want, false, __ATOMIC_RELEASE,
					   __ATOMIC_RELAXED) ? 0 : -EAGAIN;
}

int kvm_mmu_install(struct kvm *kvm, gfn_t gfn, int *levelp, uint64_t hva, uint64_t flags)
{
	struct s2_table *t = &kvm->mmu->root;
	int level = *levelp, err = -EAGAIN;
	uint64_t *slot, *parent = NULL;

	lockdep_assert_held(&kvm->mmu_lock);
	for (int lvl = S2_LEVELS; lvl > level; lvl--) {
		parent = &t->e[s2_index(gfn, lvl)];
		t = s2_get_child(kvm->mmu, parent, &err);
		if (!t)
			return err; /* a leaf above (raced) or no memory */
	}
	slot = &t->e[s2_index(gfn, level)];
	if (level > 1) {
		uint64_t pte = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

		/* Smaller mappings already live here: map just this page. */
		if ((pte & S2_PRESENT) && !(pte & S2_LEAF)) {
			uint64_t off = (gfn & (s2_level_pages(level) - 1)) << GM_PAGE_SHIFT;

			*levelp = S2_PG_LEVEL_4K;
			return kvm_mmu_install(kvm, gfn, levelp, (hva & S2_ADDR_MASK) + off, flags);
		}
	}
	if (!s2_install_entry(slot, (hva & S2_ADDR_MASK) | flags | S2_PRESENT | S2_LEAF))
		return s2_make_writable(slot, hva, flags);
	if (level == S2_PG_LEVEL_4K)
		__atomic_fetch_add(parent, 1ULL << S2_NR_SHIFT, __ATOMIC_RELAXED);
	__atomic_fetch_add(&kvm->mmu->nr_leaves[level - 1], 1, __ATOMIC_RELAXED);
	return 0;
}

/*
 * Queue a detached subtree; readers may still walk it until the grace
 * period of the flush that every zapper issues when a zap reported work.
 */
static void s2_defer_free(struct kvm_mmu *mmu, struct s2_table *t, int level)
{
	struct s2_detached *d = malloc(sizeof(*d));

	if (!d) {
		/* Cannot queue it: leak rather than free under a reader. */
		return;
	}
	d->table = t;
	d->level = level;
	d->next = __atomic_load_n(&mmu->detached, __ATOMIC_RELAXED);
	while (!__atomic_compare_exchange_n(&mmu->detached, &d->next, d, false, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED))
		;
}

/*
 * Take the leaves under table entry @pte (pointing at a table of @level)
 * off the counters: a level-1 table's count is in the entry itself.
 */
static void s2_uncount_leaves(struct kvm_mmu *mmu, uint64_t pte, int level)
{
	struct s2_table *t = s2_child(pte);
	uint64_t n = 0;

	if (level == S2_PG_LEVEL_4K) {
		n = s2_nr(pte);
	} else {
		for (unsigned i = 0; i < S2_ENTRIES; i++) {
			uint64_t e = t->e[i];

			if (!(e & S2_PRESENT))
				continue;
			if (e & S2_LEAF)
				n++;
			else
				s2_uncount_leaves(mmu, e, level - 1);
		}
	}
	if (n && level <= S2_PG_LEVEL_1G)
		__atomic_fetch_sub(&mmu->nr_leaves[level - 1], n, __ATOMIC_RELAXED);
}

/*
 * Zap [start, end) within table @t at @level whose first gfn is @base;
 * @tslot is the entry that points at @t (NULL for the root).
 */
static bool s2_zap(struct kvm_mmu *mmu, struct s2_table *t, uint64_t *tslot, int level,
		   gfn_t base, gfn_t start, gfn_t end)
{
	uint64_t span = s2_level_pages(level);
	bool zapped = false;
	unsigned first = start > base ? (unsigned)((start - base) / span) : 0;

	for (unsigned i = first; i < S2_ENTRIES; i++) {
		gfn_t s = base + i * span, e = s + span;
		uint64_t pte = t->e[i];

		if (s >= end)
			break;
		if (!(pte & S2_PRESENT))
			continue;
		if ((pte & S2_LEAF) || (start <= s && end >= e)) {
			__atomic_store_n(&t->e[i], 0, __ATOMIC_RELAXED);
			if (pte & S2_LEAF) {
				__atomic_fetch_sub(&mmu->nr_leaves[level - 1], 1, __ATOMIC_RELAXED);
				if (level == S2_PG_LEVEL_4K)
					__atomic_fetch_sub(tslot, 1ULL << S2_NR_SHIFT,
							   __ATOMIC_RELAXED);
			} else {
				s2_uncount_leaves(mmu, pte, level - 1);
				s2_defer_free(mmu, s2_child(pte), level - 1);
			}
			zapped = true;
		} else {
			zapped |= s2_zap(mmu, s2_child(pte), &t->e[i], level - 1, s, start, end);
		}
	}
	return zapped;
}

bool kvm_mmu_zap_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end)
{
	struct kvm_mmu *mmu = kvm->mmu;

	lockdep_assert_held_write(&kvm->mmu_lock);
	if (start < end && s2_zap(mmu, &mmu->root, NULL, S2_LEVELS, 0, start, end))
		__atomic_add_fetch(&mmu->zap_gen, 1, __ATOMIC_RELEASE);
	if (start < end && mmu->notifier)
		mmu->notifier->zap(mmu->notifier, start, end, false);
	/* Flush if anything, ours or an earlier zapper's, is unflushed. */
	return __atomic_load_n(&mmu->flushed_gen, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&mmu->zap_gen, __ATOMIC_ACQUIRE);
}

/* flushed_gen = max(flushed_gen, gen): flushes may finish out of order. */
static void s2_note_flushed(struct kvm_mmu *mmu, uint64_t gen)
{
	uint64_t cur = __atomic_load_n(&mmu->flushed_gen, __ATOMIC_RELAXED);

	while (cur < gen && !__atomic_compare_exchange_n(&mmu->flushed_gen, &cur, gen, false,
							 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		;
}

bool kvm_arch_unmap_gfn_range(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			      gfn_t end)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	(void)slot; /* 6.8 x86 zaps private and shared alike (spec §4.4) */
	return kvm_mmu_zap_gfn_range(kvm, start, end);
}

void kvm_arch_flush_remote_tlbs(struct kvm *kvm)
{
	struct kvm_mmu *mmu = kvm->mmu;
	/* Every zap counted so far happened before this grace period starts. */
	uint64_t gen = __atomic_load_n(&mmu->zap_gen, __ATOMIC_ACQUIRE);
	struct s2_detached *d = __atomic_exchange_n(&mmu->detached, NULL, __ATOMIC_ACQUIRE);

	gm_synchronize_rcu();
	s2_note_flushed(mmu, gen);
	/* Tables detached before the grace period: no reader is left in them. */
	s2_free_detached(mmu, d, true);
}

void kvm_arch_flush_shadow_memslot(struct kvm *kvm, struct kvm_memory_slot *slot)
{
	bool flush;

	lockdep_assert_held(&kvm->slots_lock);
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	flush = kvm_mmu_zap_gfn_range(kvm, slot->base_gfn, slot->base_gfn + slot->npages);
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
}

void kvm_mmu_register_notifier(struct kvm *kvm, struct kvm_mmu_notifier *n)
{
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	gm_assert(!kvm->mmu->notifier);
	kvm->mmu->notifier = n;
	gm_rwlock_unlock(&kvm->mmu_lock);
}

void kvm_mmu_unregister_notifier(struct kvm *kvm, struct kvm_mmu_notifier *n)
{
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	if (kvm->mmu->notifier == n)
		kvm->mmu->notifier = NULL;
	gm_rwlock_unlock(&kvm->mmu_lock);
}

uint64_t kvm_mmu_nr_leaves_level(struct kvm *kvm, int level)
{
	return __atomic_load_n(&kvm->mmu->nr_leaves[level - 1], __ATOMIC_RELAXED);
}

uint64_t kvm_mmu_nr_leaves(struct kvm *kvm)
{
	uint64_t n = 0;

	for (int level = S2_PG_LEVEL_4K; level <= S2_PG_LEVEL_1G; level++)
		n += kvm_mmu_nr_leaves_level(kvm, level);
	return n;
}

/*
 * Eager page splitting (KVM's eager_page_split): the table that replaces
 * huge leaf @pte of @level, 512 leaves one level down mapping the same
 * host pages with the same rights, counted as the kernel's pages_4k/2m
 * stats count them; NULL without memory.  Context: mmu_lock (write).
 */
static struct s2_table *s2_split_leaf(struct kvm_mmu *mmu, uint64_t pte, int level)
{
	struct s2_table *n = s2_alloc_table(mmu);
	uint64_t step = s2_level_pages(level - 1) << GM_PAGE_SHIFT;

	if (!n)
		return NULL;
	for (unsigned i = 0; i < S2_ENTRIES; i++)
		n->e[i] = ((pte & S2_ADDR_MASK) + i * step) | (pte & ~S2_ADDR_MASK);
	__atomic_fetch_sub(&mmu->nr_leaves[level - 1], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&mmu->nr_leaves[level - 2], S2_ENTRIES, __ATOMIC_RELAXED);
	return n;
}

/*
 * Write-protect [start, end) within table @t at @level whose first gfn is
 * @base: 4 KiB leaves lose S2_WRITABLE; a huge leaf that intersects the
 * range is split first, down to 4 KiB (the kernel's eager split: dirty
 * logging tracks 4 KiB pages), and only its pages in the range lose the
 * right to write.  A split that finds no memory zaps the leaf instead
 * (the next faults map it at 4 KiB).
 */
static bool s2_wrprot(struct kvm_mmu *mmu, struct s2_table *t, int level, gfn_t base,
		      gfn_t start, gfn_t end)
{
	uint64_t span = s2_level_pages(level);
	bool changed = false;
	unsigned first = start > base ? (unsigned)((start - base) / span) : 0;

	for (unsigned i = first; i < S2_ENTRIES; i++) {
		gfn_t s = base + i * span;
		uint64_t pte = t->e[i];

		if (s >= end)
			break;
		if (!(pte & S2_PRESENT))
			continue;
		if (pte & S2_LEAF && level > S2_PG_LEVEL_4K) {
			struct s2_table *n = s2_split_leaf(mmu, pte, level);

			if (!n) {
				__atomic_store_n(&t->e[i], 0, __ATOMIC_RELAXED);
				__atomic_fetch_sub(&mmu->nr_leaves[level - 1], 1, __ATOMIC_RELAXED);
				changed = true;
				continue;
			}
			pte = (uint64_t)(uintptr_t)n | S2_PRESENT;
			if (level - 1 == S2_PG_LEVEL_4K)
				pte |= (uint64_t)S2_ENTRIES << S2_NR_SHIFT;
			/* Release: a lockless walker sees the filled table. */
			__atomic_store_n(&t->e[i], pte, __ATOMIC_RELEASE);
			changed = true;
		}
		if (!(pte & S2_LEAF)) {
			changed |= s2_wrprot(mmu, s2_child(pte), level - 1, s, start, end);
		} else if (pte & S2_WRITABLE) {
			/* Readers that loaded the old entry finish before the flush. */
			__atomic_store_n(&t->e[i], pte & ~S2_WRITABLE, __ATOMIC_RELAXED);
			changed = true;
		}
	}
	return changed;
}

bool kvm_arch_mmu_write_protect_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end)
{
	struct kvm_mmu *mmu = kvm->mmu;

	lockdep_assert_held_write(&kvm->mmu_lock);
	if (start < end && s2_wrprot(mmu, &mmu->root, S2_LEVELS, 0, start, end))
		__atomic_add_fetch(&mmu->zap_gen, 1, __ATOMIC_RELEASE);
	/* The shadow drops those pages' write rights too. */
	if (start < end && mmu->notifier)
		mmu->notifier->zap(mmu->notifier, start, end, true);
	/* As for zaps: another writer's unflushed change is ours to wait for too. */
	return __atomic_load_n(&mmu->flushed_gen, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&mmu->zap_gen, __ATOMIC_ACQUIRE);
}
