/* SPDX-License-Identifier: MIT */
/*
 * Huge-page eligibility per memslot (spec §4.8).  For each huge level
 * (index 0: 2 MiB, 1: 1 GiB) a slot has one disallow_lpage word per block
 * overlapping it: a count (unaligned slot edges, gfn/hva incongruence) plus
 * KVM_LPAGE_MIXED_FLAG when the block's attributes are not uniform.
 *
 * Uniformity of a block is asked of the attribute runs directly, which is
 * equivalent to the kernel's 2 MiB-then-1 GiB composition.
 */
#include <errno.h>
#include <stdlib.h>

#include "mmu.h"

static uint64_t lpage_nr_blocks(const struct kvm_memory_slot *slot, unsigned shift)
{
	return ((slot->base_gfn + slot->npages - 1) >> shift) - (slot->base_gfn >> shift) + 1;
}

static struct kvm_lpage_info *lpage_of(const struct kvm_memory_slot *slot, int lvl, gfn_t gfn)
{
	unsigned shift = kvm_lpage_shift(lvl);

	return &slot->lpage_info[lvl][(gfn >> shift) - (slot->base_gfn >> shift)];
}

static bool lpage_block_inside_slot(const struct kvm_memory_slot *slot, gfn_t start,
				    unsigned shift)
{
	return start >= slot->base_gfn &&
	       start + (1ULL << shift) <= slot->base_gfn + slot->npages;
}

static void lpage_set_mixed(struct kvm_lpage_info *li, bool mixed)
{
	uint32_t v = READ_ONCE(li->disallow_lpage);

	WRITE_ONCE(li->disallow_lpage,
		   mixed ? (v | KVM_LPAGE_MIXED_FLAG) : (v & ~KVM_LPAGE_MIXED_FLAG));
}

static bool lpage_block_mixed(struct kvm *kvm, gfn_t start, unsigned shift)
{
	uint64_t a = kvm_get_memory_attributes(kvm, start);

	return !kvm_range_has_memory_attributes(kvm, start, start + (1ULL << shift), a);
}

/* Mixed flags for every block of [start, end) that lies inside the slot. */
static void lpage_recompute(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl,
			    gfn_t start, gfn_t end)
{
	unsigned shift = kvm_lpage_shift(lvl);
	gfn_t blk = 1ULL << shift;

	for (gfn_t g = start & ~(blk - 1); g < end; g += blk)
		if (lpage_block_inside_slot(slot, g, shift))
			lpage_set_mixed(lpage_of(slot, lvl, g), lpage_block_mixed(kvm, g, shift));
}

static bool lpage_tracks_attributes(struct kvm *kvm)
{
	return kvm_arch_has_private_mem(kvm) && gm_cfg_mem_attributes(&kvm->cfg);
}

int kvm_alloc_memslot_metadata(struct kvm *kvm, struct kvm_memory_slot *slot)
{
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		unsigned shift = kvm_lpage_shift(lvl);
		uint64_t n = lpage_nr_blocks(slot, shift), mask = (1ULL << shift) - 1;
		struct kvm_lpage_info *li = calloc(n, sizeof(*li));

		if (!li) {
			kvm_free_memslot_metadata(slot);
			return -ENOMEM;
		}
		slot->lpage_info[lvl] = li;
		if (slot->base_gfn & mask)
			li[0].disallow_lpage++;
		if ((slot->base_gfn + slot->npages) & mask)
			li[n - 1].disallow_lpage++;
		/* gfn and hva must be congruent for a huge block to map at all. */
		if ((slot->base_gfn ^ (slot->userspace_addr >> GM_PAGE_SHIFT)) & mask)
			for (uint64_t i = 0; i < n; i++)
				li[i].disallow_lpage++;
		if (lpage_tracks_attributes(kvm))
			lpage_recompute(kvm, slot, lvl, slot->base_gfn,
					slot->base_gfn + slot->npages);
	}
	return 0;
}

void kvm_free_memslot_metadata(struct kvm_memory_slot *slot)
{
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		free(slot->lpage_info[lvl]);
		slot->lpage_info[lvl] = NULL;
	}
}

void kvm_arch_post_set_memory_attributes(struct kvm *kvm, struct kvm_memory_slot *slot,
					 gfn_t start, gfn_t end, uint64_t attrs)
{
	(void)attrs; /* blocks inside [start, end) are now uniformly @attrs */
	if (!lpage_tracks_attributes(kvm) || !slot->lpage_info[0])
		return;
	for (int lvl = 0; lvl < KVM_NR_LPAGE_LEVELS; lvl++) {
		unsigned shift = kvm_lpage_shift(lvl);
		gfn_t blk = 1ULL << shift;
		gfn_t first_full = (start + blk - 1) & ~(blk - 1), last_full = end & ~(blk - 1);

		if (first_full >= last_full) { /* no block fully covered */
			lpage_recompute(kvm, slot, lvl, start, end);
			continue;
		}
		lpage_recompute(kvm, slot, lvl, start, first_full);
		for (gfn_t g = first_full; g < last_full; g += blk)
			if (lpage_block_inside_slot(slot, g, shift))
				lpage_set_mixed(lpage_of(slot, lvl, g), false);
		lpage_recompute(kvm, slot, lvl, last_full, end);
	}
}

int kvm_mmu_max_mapping_level(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			      int max_level)
{
	(void)kvm;
	for (int level = max_level; level > S2_PG_LEVEL_4K; level--) {
		if (!slot->lpage_info[level - 2])
			continue;
		if (!READ_ONCE(lpage_of(slot, level - 2, gfn)->disallow_lpage))
			return level;
	}
	return S2_PG_LEVEL_4K;
}
