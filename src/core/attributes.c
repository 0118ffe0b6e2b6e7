/* SPDX-License-Identifier: MIT */
/*
 * Memory attributes: KVM_SET_MEMORY_ATTRIBUTES (spec §3.6, §4.7).
 *
 * Per VM and per gfn, stored as runs (lib/rangemap), so one update costs
 * O(runs + slots touched), never O(pages).  The update is all-or-nothing:
 * the new run array is built before anything is invalidated.
 */
#include <errno.h>

#include <guestmem/kvm.h>

#include "kvm_host.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"

#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)

uint64_t kvm_supported_mem_attributes(const struct kvm *kvm)
{
	if (!gm_cfg_mem_attributes(&kvm->cfg) || !kvm_arch_has_private_mem(kvm))
		return 0;
	return KVM_MEMORY_ATTRIBUTE_PRIVATE;
}

uint64_t kvm_get_memory_attributes(struct kvm *kvm, gfn_t gfn)
{
	return rangemap_lookup(&kvm->mem_attr_array, gfn);
}

bool kvm_range_has_memory_attributes(struct kvm *kvm, gfn_t start, gfn_t end, uint64_t attrs)
{
	return rangemap_range_is(&kvm->mem_attr_array, start, end, attrs);
}

struct attr_walk {
	uint64_t attrs;
	bool locked;
	bool flush;
};

/* Pre walk: begin on the first hit; every hit adds its range and zaps. */
static int attr_pre(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start, gfn_t end,
		    void *ctx)
{
	struct attr_walk *w = ctx;

	if (!w->locked) {
		gm_check_pthread(pthread_rwlock_wrlock(&kvm->mmu_lock));
		kvm_mmu_invalidate_begin(kvm);
		w->locked = true;
	}
	/* Even a slot without guest_memfd: private must stop shared access. */
	w->flush |= kvm_mmu_unmap_gfn_range(kvm, slot, start, end);
	return 0;
}

/* Post walk: end on the first hit (same slots: slots_lock is held). */
static int attr_post(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start, gfn_t end,
		     void *ctx)
{
	struct attr_walk *w = ctx;

	if (!w->locked) {
		gm_check_pthread(pthread_rwlock_wrlock(&kvm->mmu_lock));
		kvm_mmu_invalidate_end(kvm);
		w->locked = true;
	}
	/* Same critical section as end: no fault sees new seq + stale flags. */
	kvm_arch_post_set_memory_attributes(kvm, slot, start, end, w->attrs);
	return 0;
}

int kvm_vm_set_mem_attributes(struct kvm *kvm, gfn_t start, gfn_t end, uint64_t attributes)
{
	struct attr_walk w = { attributes, false, false };
	struct rangemap_update *next;
	int r = 0;

	gm_check_pthread(pthread_mutex_lock(&kvm->slots_lock));
	if (kvm_range_has_memory_attributes(kvm, start, end, attributes))
		goto out_unlock;
	r = rangemap_prepare(&kvm->mem_attr_array, start, end, attributes, &next);
	if (r)
		goto out_unlock;

	kvm_for_each_slot_in_range(kvm, start, end, attr_pre, &w);
	if (w.locked)
		gm_check_pthread(pthread_rwlock_unlock(&kvm->mmu_lock));
	if (w.flush)
		kvm_flush_remote_tlbs(kvm);

	rangemap_commit(&kvm->mem_attr_array, next);
	__atomic_fetch_add(&kvm->stat.attr_updates, 1, __ATOMIC_RELAXED);

	w.locked = false;
	kvm_for_each_slot_in_range(kvm, start, end, attr_post, &w);
	if (w.locked)
		gm_check_pthread(pthread_rwlock_unlock(&kvm->mmu_lock));
out_unlock:
	gm_check_pthread(pthread_mutex_unlock(&kvm->slots_lock));
	return r;
}

int kvm_vm_ioctl_set_mem_attributes(struct kvm *kvm, const struct kvm_memory_attributes *a)
{
	if (a->flags)
		return -EINVAL;
	if (a->attributes & ~kvm_supported_mem_attributes(kvm))
		return -EINVAL;
	if (!a->size || a->address + a->size < a->address)
		return -EINVAL;
	if (!GM_PAGE_ALIGNED(a->address) || !GM_PAGE_ALIGNED(a->size))
		return -EINVAL;
	return kvm_vm_set_mem_attributes(kvm, a->address >> GM_PAGE_SHIFT,
					 (a->address + a->size) >> GM_PAGE_SHIFT, a->attributes);
}
