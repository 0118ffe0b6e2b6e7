/* SPDX-License-Identifier: MIT */
/*
 * Huge-page eligibility per memslot (spec §4.8).  For each huge level
 * (index 0: 2 MiB, 1: 1 GiB) a slot has
 *  - one disallow count per block overlapping it (unaligned slot edges,
 *    gfn/hva incongruence), as the kernel's disallow_lpage; and
 *  - one "mixed" flag per block, set if its attributes are not uniform
 *    (the kernel's KVM_LPAGE_MIXED_FLAG).  Only the (at most two) blocks
 *    at the edges of an attribute change are recomputed, so converting a
 *    terabyte costs the same as converting a page and needs no memory;
 *    the flags of blocks a change covers whole may stay set, and a set
 *    flag is confirmed against the attributes when read (kvm_lpage_mixed()).
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

static uint32_t *lpage_mixed_flag(struct kvm_memory_slot *slot, int lvl, gfn_t blk)
{
	return &slot->lpage_info[lvl][blk - (slot->base_gfn >> kvm_lpage_shift(lvl))].mixed;
}

/*
 * Whether the attributes of block @blk (at @lvl) are not all the same: one
 * descent of the attribute tree under RCU, or for the attribute writer
 * (@writer: slots_lock held) a search from the leaf it just stored into.
 */
static bool lpage_attrs_mixed(struct kvm *kvm, int lvl, gfn_t blk, bool writer)
{
	unsigned shift = kvm_lpage_shift(lvl);
	gfn_t start = blk << shift, end = start + (1ULL << shift);

	if (writer)
		return !rangemap_range_uniform_near(&kvm->mem_attr_array, start, end);
	return !rangemap_range_uniform(&kvm->mem_attr_array, start, end);
}

/*
 * Recompute the flag of the block containing @gfn, if it lies wholly inside
 * the slot, and return it (false outside the slot).  @known_mixed: the
 * caller knows it is mixed (a smaller block inside it is), no need to ask.
 * Context: the attribute writer's slots_lock, and mmu_lock for write or a
 * slot not yet visible.
 */
static bool lpage_recompute_block(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl,
				  gfn_t gfn, bool known_mixed)
{
	unsigned shift = kvm_lpage_shift(lvl);
	gfn_t blk = gfn >> shift;
	bool mixed;

	if (!lpage_block_inside_slot(slot, blk, shift))
		return false;
	mixed = known_mixed || lpage_attrs_mixed(kvm, lvl, blk, true);
	__atomic_store_n(lpage_mixed_flag(slot, lvl, blk), mixed, __ATOMIC_RELAXED);
	return mixed;
}

/*
 * Block @blk is mixed.  A clear flag is exact.  A set one may be stale
 * (a later change covered the whole block); then the attributes decide,
 * but only once no invalidation is in progress: before the end of an
 * attribute change its attributes are already published while the kernel
 * still calls the block mixed, so until then it stays mixed, which costs
 * at most a huge mapping.  Context: RCU or mmu_lock.
 */
bool kvm_lpage_mixed(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl, gfn_t blk)
{
	if (!__atomic_load_n(lpage_mixed_flag(slot, lvl, blk), __ATOMIC_RELAXED))
		return false;
	/* Acquire: pairs with the release of in_progress in kvm_mmu_invalidate_end(). */
	if (__atomic_load_n(&kvm->mmu_invalidate_in_progress, __ATOMIC_ACQUIRE))
		return true;
	return lpage_attrs_mixed(kvm, lvl, blk, false);
}

struct lpage_init_ctx {
	struct kvm *kvm;
	struct kvm_memory_slot *slot;
};

/* Each attribute run's edges are the only places a block can be mixed. */
static int lpage_init_run(void *arg, uint64_t start, uint64_t end, uint64_t value)
{
	struct lpage_init_ctx *c = arg;

	(void)value;
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		gfn_t mask = (1ULL << kvm_lpage_shift(lvl)) - 1;

		if (start & mask)
			lpage_recompute_block(c->kvm, c->slot, lvl, start, false);
		if (end & mask)
			lpage_recompute_block(c->kvm, c->slot, lvl, end, false);
	}
	return 0;
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
	struct lpage_init_ctx c = { kvm, slot };

	lockdep_assert_held(&kvm->slots_lock);
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		if (lpage_alloc_counts(slot, lvl)) {
			kvm_arch_free_memslot_metadata(slot);
			return -ENOMEM;
		}
	}
	/* The slot is not visible yet: its mixed flags need no lock. */
	if (lpage_tracks_attributes(kvm))
		rangemap_for_each(&kvm->mem_attr_array, slot->base_gfn,
				  slot->base_gfn + slot->npages, lpage_init_run, &c);
	return 0;
}

void kvm_arch_free_memslot_metadata(struct kvm_memory_slot *slot)
{
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		free(slot->lpage_info[lvl]);
		slot->lpage_info[lvl] = NULL;
	}
}

/*
 * After [start, end) became uniformly @attrs: the (at most two) partially
 * covered blocks are recomputed; blocks wholly covered are uniform, and a
 * stale flag of theirs is caught by kvm_lpage_mixed().  O(1), no memory:
 * at most one descent of the attribute tree per edge, since a block that
 * holds a mixed smaller one is mixed itself.
 */
void kvm_arch_post_set_memory_attributes(struct kvm *kvm, struct kvm_memory_slot *slot,
					 gfn_t start, gfn_t end, uint64_t attrs)
{
	bool start_mixed = false, end_mixed = false;

	lockdep_assert_held_write(&kvm->mmu_lock);
	(void)attrs;
	if (!lpage_tracks_attributes(kvm) || !slot->lpage_info[0])
		return;
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		unsigned shift = kvm_lpage_shift(lvl);

		start_mixed = lpage_recompute_block(kvm, slot, lvl, start, start_mixed);
		/* The end's block, unless it is the start's (recomputed above). */
		if ((end & ((1ULL << shift) - 1)) && (end >> shift) != (start >> shift))
			end_mixed = lpage_recompute_block(kvm, slot, lvl, end, end_mixed);
	}
}

int kvm_mmu_max_mapping_level(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			      int max_level)
{
	for (int level = max_level; level > S2_PG_LEVEL_4K; level--) {
		int lvl = level - 2;
		unsigned shift = kvm_lpage_shift(lvl);
		gfn_t blk = gfn >> shift;

		if (!slot->lpage_info[lvl])
			continue;
		if (READ_ONCE(slot->lpage_info[lvl][blk - (slot->base_gfn >> shift)].disallow_lpage))
			continue;
		if (kvm_lpage_mixed(kvm, slot, lvl, blk))
			continue;
		return level;
	}
	return S2_PG_LEVEL_4K;
}
