/* SPDX-License-Identifier: MIT */
/*
 * Huge-page eligibility per memslot (spec §4.8).  For each huge level
 * (index 0: 2 MiB, 1: 1 GiB) a slot has
 *  - one disallow count per block overlapping it (unaligned slot edges,
 *    gfn/hva incongruence), as the kernel's disallow_lpage; and
 *  - the set of "mixed" blocks, whose attributes are not uniform (the
 *    kernel's KVM_LPAGE_MIXED_FLAG), kept as runs of block numbers so that
 *    converting a terabyte costs the same as converting a page.
 * A block may be mapped huge only if its count is 0 and it is not mixed.
 *
 * A block is mixed iff an attribute change point lies strictly inside it;
 * asking the attribute runs directly is equivalent to the kernel's
 * 2 MiB-then-1 GiB composition.  Only blocks wholly inside the slot are
 * tracked: the others are disallowed by their count anyway.
 */
#include <errno.h>
#include <stdlib.h>

#include "lib/rcu.h"
#include "mmu.h"
#include "lib/lockdep.h"

static uint64_t lpage_nr_blocks(const struct kvm_memory_slot *slot, unsigned shift)
{
	return ((slot->base_gfn + slot->npages - 1) >> shift) - (slot->base_gfn >> shift) + 1;
}

static bool lpage_block_inside_slot(const struct kvm_memory_slot *slot, gfn_t blk,
				    unsigned shift)
{
	gfn_t start = blk << shift;

	return start >= slot->base_gfn &&
	       start + (1ULL << shift) <= slot->base_gfn + slot->npages;
}

static bool lpage_tracks_attributes(struct kvm *kvm)
{
	return kvm_arch_has_private_mem(kvm) && gm_cfg_mem_attributes(&kvm->cfg);
}

/* Set block @blk's mixed state; stores only on a change.  -ENOMEM possible. */
static int lpage_set_mixed(struct kvm_memory_slot *slot, int lvl, gfn_t blk, bool mixed)
{
	struct rangemap *m = &slot->lpage_mixed[lvl];

	if ((rangemap_lookup(m, blk) != 0) == mixed)
		return 0;
	return rangemap_store(m, blk, blk + 1, mixed);
}

/* Recompute the block containing @gfn, if it lies wholly inside the slot. */
static int lpage_recompute_block(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl,
				 gfn_t gfn)
{
	unsigned shift = kvm_lpage_shift(lvl);
	gfn_t blk = gfn >> shift, start = blk << shift;
	uint64_t a;

	if (!lpage_block_inside_slot(slot, blk, shift))
		return 0;
	a = kvm_get_memory_attributes(kvm, start);
	return lpage_set_mixed(slot, lvl, blk,
			       !kvm_range_has_memory_attributes(kvm, start, start + (1ULL << shift),
								a));
}

/*
 * As lpage_recompute_block, after the attributes changed (cannot fail): if
 * a block that became mixed cannot be recorded for want of memory, its
 * disallow count is raised for good instead, so it is never mapped huge
 * over non-uniform attributes; a block wrongly left mixed only costs huge
 * mappings.  (The kernel preallocates this tracking and cannot fail.)
 */
static void lpage_update_block(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl, gfn_t gfn)
{
	unsigned shift = kvm_lpage_shift(lvl);
	gfn_t blk = gfn >> shift;

	if (lpage_recompute_block(kvm, slot, lvl, gfn) &&
	    !kvm_range_has_memory_attributes(kvm, blk << shift, (blk + 1) << shift,
					     kvm_get_memory_attributes(kvm, blk << shift)))
		__atomic_fetch_add(&slot->lpage_info[lvl][blk - (slot->base_gfn >> shift)]
					    .disallow_lpage,
				   1, __ATOMIC_RELAXED);
}

struct lpage_init_ctx {
	struct kvm *kvm;
	struct kvm_memory_slot *slot;
	int r;
};

/* Each attribute run's edges are the only places a block can be mixed. */
static int lpage_init_run(void *arg, uint64_t start, uint64_t end, uint64_t value)
{
	struct lpage_init_ctx *c = arg;

	(void)value;
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS && !c->r; lvl++) {
		gfn_t mask = (1ULL << kvm_lpage_shift(lvl)) - 1;

		if (start & mask)
			c->r = lpage_recompute_block(c->kvm, c->slot, lvl, start);
		if (!c->r && (end & mask))
			c->r = lpage_recompute_block(c->kvm, c->slot, lvl, end);
	}
	return c->r;
}

static int lpage_alloc_counts(struct kvm_memory_slot *slot, int lvl)
{
	unsigned shift = kvm_lpage_shift(lvl);
	uint64_t n = lpage_nr_blocks(slot, shift), mask = (1ULL << shift) - 1;
	struct kvm_lpage_info *li = calloc(n, sizeof(*li));

	if (!li)
		return -ENOMEM;
	slot->lpage_info[lvl] = li;
	if (slot->base_gfn & mask)
		li[0].disallow_lpage++;
	if ((slot->base_gfn + slot->npages) & mask)
		li[n - 1].disallow_lpage++;
	/* gfn and hva must be congruent for a huge block to map at all. */
	if ((slot->base_gfn ^ (slot->userspace_addr >> GM_PAGE_SHIFT)) & mask)
		for (uint64_t i = 0; i < n; i++)
			li[i].disallow_lpage++;
	return 0;
}

int kvm_arch_alloc_memslot_metadata(struct kvm *kvm, struct kvm_memory_slot *slot)
{
	struct lpage_init_ctx c = { kvm, slot, 0 };

	lockdep_assert_held(&kvm->slots_lock);
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		rangemap_init(&slot->lpage_mixed[lvl]);
		if (lpage_alloc_counts(slot, lvl)) {
			kvm_arch_free_memslot_metadata(slot);
			return -ENOMEM;
		}
	}
	/* The slot is not visible yet: its mixed sets need no lock. */
	if (lpage_tracks_attributes(kvm))
		rangemap_for_each(&kvm->mem_attr_array, slot->base_gfn,
				  slot->base_gfn + slot->npages, lpage_init_run, &c);
	if (c.r)
		kvm_arch_free_memslot_metadata(slot);
	return c.r;
}

void kvm_arch_free_memslot_metadata(struct kvm_memory_slot *slot)
{
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		free(slot->lpage_info[lvl]);
		slot->lpage_info[lvl] = NULL;
		/* Called once no reader can reach the slot. */
		rangemap_fini(&slot->lpage_mixed[lvl]);
	}
}

/*
 * After [start, end) became uniformly @attrs: blocks wholly covered are no
 * longer mixed; the (at most two) partially covered blocks are recomputed.
 * An allocation failure leaves a block mixed (costs only huge mappings) or,
 * for a block that became mixed, forbids it by its count (lpage_update_block).
 */
void kvm_arch_post_set_memory_attributes(struct kvm *kvm, struct kvm_memory_slot *slot,
					 gfn_t start, gfn_t end, uint64_t attrs)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	(void)attrs;
	if (!lpage_tracks_attributes(kvm) || !slot->lpage_info[0])
		return;
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		unsigned shift = kvm_lpage_shift(lvl);
		gfn_t first = (start + (1ULL << shift) - 1) >> shift, last = end >> shift;
		struct rangemap *m = &slot->lpage_mixed[lvl];

		if (first < last && !rangemap_range_is(m, first, last, 0))
			rangemap_store(m, first, last, 0);
		lpage_update_block(kvm, slot, lvl, start);
		if (end & ((1ULL << shift) - 1))
			lpage_update_block(kvm, slot, lvl, end);
	}
}

int kvm_mmu_max_mapping_level(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			      int max_level)
{
	(void)kvm;
	for (int level = max_level; level > S2_PG_LEVEL_4K; level--) {
		int lvl = level - 2;
		unsigned shift = kvm_lpage_shift(lvl);
		gfn_t blk = gfn >> shift;

		if (!slot->lpage_info[lvl])
			continue;
		if (READ_ONCE(slot->lpage_info[lvl][blk - (slot->base_gfn >> shift)].disallow_lpage))
			continue;
		if (rangemap_lookup(&slot->lpage_mixed[lvl], blk))
			continue;
		return level;
	}
	return S2_PG_LEVEL_4K;
}
