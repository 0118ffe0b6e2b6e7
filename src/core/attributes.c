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
#include "kvm_arch.h"
#include "lib/lockdep.h"

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

/* x86 post hook for every hit, in end's mmu_lock section (spec §4.7 step 5). */
static int attr_post(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start, gfn_t end,
		     void *ctx)
{
	kvm_arch_post_set_memory_attributes(kvm, slot, start, end, *(uint64_t *)ctx);
	return 0;
}

int kvm_vm_set_mem_attributes(struct kvm *kvm, gfn_t start, gfn_t end, uint64_t attributes)
{
	struct kvm_invalidation inv = { .source = KVM_INVAL_GFN, .start = start, .end = end,
					.post = attr_post, .post_ctx = &attributes };
	struct rangemap_update *next;
	int r = 0;

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	/*
	 * A guest converting page by page stores often: recycle the nodes its
	 * earlier calls replaced while they are still in cache (a grace period
	 * every few dozen calls, under slots_lock as a memslot swap waits one).
	 */
	rangemap_reclaim(&kvm->mem_attr_array);
	/* Already so (the kernel's kvm_range_has_memory_attributes() check): 1, no-op. */
	r = rangemap_prepare_change(&kvm->mem_attr_array, start, end, attributes, &next);
	if (r) {
		r = r < 0 ? r : 0;
		goto out_unlock;
	}

	kvm_invalidation_begin(kvm, &inv); /* pre walk: begin, zap, flush */
	rangemap_commit(&kvm->mem_attr_array, next);
	__atomic_fetch_add(&kvm->stat.attr_updates, 1, __ATOMIC_RELAXED);
	kvm_invalidation_end(kvm, &inv); /* post walk: end, post hook */
out_unlock:
	gm_mutex_unlock(&kvm->slots_lock);
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
