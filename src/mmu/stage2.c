/* SPDX-License-Identifier: MIT */
/*
 * Stage-2 tables: a 5-level radix of 512-entry tables indexed by gfn bits
 * (level 5: gfn bits 36-44, ..., level 1: bits 0-8), enough for a 52-bit
 * guest-physical space.  See mmu.h for the concurrency rules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rcu.h"
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

struct kvm_mmu {
	struct s2_table root;
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
	/* The backend's shadow (mmu.h); written and read under mmu_lock (write). */
	struct kvm_mmu_notifier *notifier;
};

/* Tables are page-aligned so that the low 12 bits of an entry are flags. */
static struct s2_table *s2_alloc_table(void)
{
	struct s2_table *t = aligned_alloc(GM_PAGE_SIZE, sizeof(*t));

	if (t)
		memset(t, 0, sizeof(*t));
	return t;
}

static inline unsigned s2_index(gfn_t gfn, int level)
{
	return (unsigned)(gfn >> (9 * (level - 1))) & (S2_ENTRIES - 1);
}

static inline struct s2_table *s2_child(uint64_t pte)
{
	return (struct s2_table *)(uintptr_t)(pte & S2_ADDR_MASK);
}

int kvm_arch_mmu_create(struct kvm *kvm)
{
	kvm->mmu = calloc(1, sizeof(*kvm->mmu));
	return kvm->mmu ? 0 : -ENOMEM;
}

static void s2_free_table(struct s2_table *t, int level)
{
	for (unsigned i = 0; level > 1 && i < S2_ENTRIES; i++) {
		uint64_t pte = t->e[i];

		if ((pte & S2_PRESENT) && !(pte & S2_LEAF))
			s2_free_table(s2_child(pte), level - 1);
	}
	free(t);
}

static void s2_free_detached(struct s2_detached *d)
{
	while (d) {
		struct s2_detached *next = d->next;

		s2_free_table(d->table, d->level);
		free(d);
		d = next;
	}
}

void kvm_arch_mmu_destroy(struct kvm *kvm)
{
	if (!kvm->mmu)
		return;
	s2_free_detached(kvm->mmu->detached);
	for (unsigned i = 0; i < S2_ENTRIES; i++) {
		uint64_t pte = kvm->mmu->root.e[i];

		if ((pte & S2_PRESENT) && !(pte & S2_LEAF))
			s2_free_table(s2_child(pte), S2_LEVELS - 1);
	}
	free(kvm->mmu);
	kvm->mmu = NULL;
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
static struct s2_table *s2_get_child(uint64_t *slot, int *err)
{
	uint64_t pte = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
	struct s2_table *n;

	if (pte & S2_PRESENT)
		return (pte & S2_LEAF) ? NULL : s2_child(pte);
	n = s2_alloc_table();
	if (!n) {
		*err = -ENOMEM;
		return NULL;
	}
	if (s2_install_entry(slot, (uint64_t)(uintptr_t)n | S2_PRESENT))
		return n;
	free(n);
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
	uint64_t *slot;

	lockdep_assert_held(&kvm->mmu_lock);
	for (int lvl = S2_LEVELS; lvl > level; lvl--) {
		t = s2_get_child(&t->e[s2_index(gfn, lvl)], &err);
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

/* Take the leaves of detached table @t (at @level) off the counters. */
static void s2_uncount_leaves(struct kvm_mmu *mmu, struct s2_table *t, int level)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < S2_ENTRIES; i++) {
		uint64_t pte = t->e[i];

		if (!(pte & S2_PRESENT))
			continue;
		if (pte & S2_LEAF)
			n++;
		else if (level > 1)
			s2_uncount_leaves(mmu, s2_child(pte), level - 1);
	}
	if (n && level <= S2_PG_LEVEL_1G)
		__atomic_fetch_sub(&mmu->nr_leaves[level - 1], n, __ATOMIC_RELAXED);
}

/* Zap [start, end) within table @t at @level whose first gfn is @base. */
static bool s2_zap(struct kvm_mmu *mmu, struct s2_table *t, int level, gfn_t base, gfn_t start,
		   gfn_t end)
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
			} else {
				s2_uncount_leaves(mmu, s2_child(pte), level - 1);
				s2_defer_free(mmu, s2_child(pte), level - 1);
			}
			zapped = true;
		} else {
			zapped |= s2_zap(mmu, s2_child(pte), level - 1, s, start, end);
		}
	}
	return zapped;
}

bool kvm_mmu_zap_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end)
{
	struct kvm_mmu *mmu = kvm->mmu;

	lockdep_assert_held_write(&kvm->mmu_lock);
	if (start < end && s2_zap(mmu, &mmu->root, S2_LEVELS, 0, start, end))
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
	s2_free_detached(d);
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
 * Write-protect [start, end) within table @t at @level whose first gfn is
 * @base: 4 KiB leaves lose S2_WRITABLE, huge leaves that intersect the
 * range are zapped (a dirty-logged slot is mapped at 4 KiB only; the
 * kernel splits them instead, which the next faults do here).
 */
static bool s2_wrprot(struct kvm_mmu *mmu, struct s2_table *t, int level, gfn_t base,
		      gfn_t start, gfn_t end, bool huge_only)
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
		if (!(pte & S2_LEAF)) {
			changed |= s2_wrprot(mmu, s2_child(pte), level - 1, s, start, end, huge_only);
		} else if (level > S2_PG_LEVEL_4K) {
			__atomic_store_n(&t->e[i], 0, __ATOMIC_RELAXED);
			__atomic_fetch_sub(&mmu->nr_leaves[level - 1], 1, __ATOMIC_RELAXED);
			changed = true;
		} else if ((pte & S2_WRITABLE) && !huge_only) {
			/* Readers that loaded the old entry finish before the flush. */
			__atomic_store_n(&t->e[i], pte & ~S2_WRITABLE, __ATOMIC_RELAXED);
			changed = true;
		}
	}
	return changed;
}

static bool __kvm_mmu_write_protect(struct kvm *kvm, gfn_t start, gfn_t end, bool huge_only)
{
	struct kvm_mmu *mmu = kvm->mmu;

	lockdep_assert_held_write(&kvm->mmu_lock);
	if (start < end && s2_wrprot(mmu, &mmu->root, S2_LEVELS, 0, start, end, huge_only))
		__atomic_add_fetch(&mmu->zap_gen, 1, __ATOMIC_RELEASE);
	/* huge_only zaps leaves: the shadow drops those pages' write rights too. */
	if (start < end && mmu->notifier)
		mmu->notifier->zap(mmu->notifier, start, end, true);
	/* As for zaps: another writer's unflushed change is ours to wait for too. */
	return __atomic_load_n(&mmu->flushed_gen, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&mmu->zap_gen, __ATOMIC_ACQUIRE);
}

bool kvm_arch_mmu_write_protect_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end)
{
	return __kvm_mmu_write_protect(kvm, start, end, false);
}

bool kvm_arch_mmu_zap_huge_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end)
{
	return __kvm_mmu_write_protect(kvm, start, end, true);
}
