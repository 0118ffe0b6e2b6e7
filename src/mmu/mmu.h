/* SPDX-License-Identifier: MIT */
/*
 * The software stage-2 MMU: a per-VM radix table from gfn to the host
 * address of the backing page, with 4 KiB, 2 MiB and 1 GiB leaves.
 *
 * Readers (vCPU memory accesses) walk it inside gm_rcu_read_lock() with
 * plain acquire loads: a hit takes no lock and does no atomic RMW.
 * Installers hold mmu_lock for read and use compare-and-swap.  Zappers hold
 * mmu_lock for write; table pages they detach are freed after a grace
 * period, and kvm_flush_remote_tlbs() is a grace period, so when it returns
 * no vCPU still uses a translation that was zapped before it was called.
 * vCPUs blocked outside guest mode are not in a read-side section and are
 * neither waited for nor woken.
 *
 * This header is the MMU's inside, for the MMU itself, the vCPU layer and
 * tests.  What core calls (creation, zap, flush, memslot metadata) are the
 * kvm_arch_* hooks of core/kvm_arch.h, which the MMU implements.
 */
#ifndef GM_MMU_MMU_H
#define GM_MMU_MMU_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kvm_arch.h"
#include "core/kvm_host.h"

/* Stage-2 entry bits (low 12 bits of a page-aligned host address). */
#define S2_PRESENT (1ULL << 0)
#define S2_WRITABLE (1ULL << 1)
#define S2_PRIVATE (1ULL << 2) /* came from guest_memfd */
#define S2_LEAF (1ULL << 7)    /* maps a page (at level > 1: huge) */
#define S2_ADDR_MASK (~0xfffULL)

/* Levels: 1 = 4 KiB leaf, 2 = 2 MiB, 3 = 1 GiB; 4 and 5 are tables only. */
#define S2_LEVELS 5
#define S2_PG_LEVEL_4K 1
#define S2_PG_LEVEL_2M 2
#define S2_PG_LEVEL_1G 3

static inline uint64_t s2_level_pages(int level)
{
	return 1ULL << (9 * (level - 1));
}

/*
 * The hit path: the entry mapping @gfn, or 0.  *level receives the leaf's
 * level.  Context: gm_rcu_read_lock() held; the result may be used only
 * until the read-side section ends.
 */
uint64_t kvm_mmu_lookup(struct kvm *kvm, gfn_t gfn, int *level);

/* The host address of @gpa through the leaf @e at @level that maps it. */
static inline void *s2_leaf_hva(uint64_t e, int level, gpa_t gpa)
{
	uint64_t in_leaf = ((gpa >> GM_PAGE_SHIFT) & (s2_level_pages(level) - 1)) << GM_PAGE_SHIFT;

	return (void *)(uintptr_t)((e & S2_ADDR_MASK) + in_leaf + (gpa & (GM_PAGE_SIZE - 1)));
}

/*
 * Install a leaf for @gfn (aligned down to *@level) pointing at @hva
 * (aligned to the level's size) with @flags.  If smaller leaves already
 * live in that block, only @gfn's page is mapped and *@level becomes
 * S2_PG_LEVEL_4K: on success *@level is what was really mapped.  A
 * read-only leaf of the same page is made writable in place if @flags has
 * S2_WRITABLE (a write after dirty-log write protection).  Returns 0, or
 * -EAGAIN if a conflicting entry appeared (the fault retries), -ENOMEM.  Context: mmu_lock held for read, inside gm_rcu_read_lock().
 */
int kvm_mmu_install(struct kvm *kvm, gfn_t gfn, int *level, uint64_t hva, uint64_t flags);

/*
 * Clear every translation in [start, end).  A huge leaf that straddles the
 * range is cleared whole.  Returns true if anything was cleared.
 * Context: mmu_lock held for write.
 */
bool kvm_mmu_zap_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end);

/* Number of present leaves (tests and stats).  Context: any. */
uint64_t kvm_mmu_nr_leaves(struct kvm *kvm);
/* ... of one level (S2_PG_LEVEL_*): the kernel's pages_4k/2m/1g. */
uint64_t kvm_mmu_nr_leaves_level(struct kvm *kvm, int level);

/*
 * A shadow of stage-2 kept by an execution backend (the x86 guest
 * process's address space, src/vcpu/x86_shadow.c), told about every
 * translation stage-2 withdraws, as the kernel's page-track notifiers tell
 * KVM's shadow MMU.  The MMU knows nothing of who listens.
 *
 * @zap: [start, end) lost its translations (@wrprot false) or only their
 * write permission (@wrprot true: dirty-log write protection; huge leaves
 * in the range may be gone too).  Called for every such change, whether or
 * not stage-2 had an entry there (a huge leaf straddling an earlier zap
 * was cleared whole, so a shadow may still map pages next to it).  When it
 * returns the shadow must no longer use those translations (rights).
 * Context: mmu_lock held for write; it may block, but must not take
 * mmu_lock or call back into the MMU.
 */
struct kvm_mmu_notifier {
	void (*zap)(struct kvm_mmu_notifier *n, gfn_t start, gfn_t end, bool wrprot);
};

/* One notifier per VM.  Context: no VM lock held (takes mmu_lock for write). */
void kvm_mmu_register_notifier(struct kvm *kvm, struct kvm_mmu_notifier *n);
void kvm_mmu_unregister_notifier(struct kvm *kvm, struct kvm_mmu_notifier *n);

/* Dirty-logging write protection: kvm_arch_mmu_write_protect_gfn_range()
 * of core/kvm_arch.h. */

/* ---- huge-page metadata per memslot (src/mmu/lpage.c, spec §4.8) ----- */

/* Largest level (1..3) allowed for @gfn in @slot by the metadata, capped at
 * @max_level.  Context: mmu_lock held (read) for an answer that holds until
 * it is dropped; under RCU alone the answer is a hint (the fault path's
 * first look, rechecked under the lock). */
int kvm_mmu_max_mapping_level(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
			      int max_level);
/* Block @blk (gfn >> shift of level index @lvl) of @slot has mixed
 * attributes, as the mapping level sees it.  Context: as above. */
bool kvm_lpage_mixed(struct kvm *kvm, struct kvm_memory_slot *slot, int lvl, gfn_t blk);

#endif
