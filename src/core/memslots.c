/* SPDX-License-Identifier: MIT */
/*
 * Memslots: KVM_SET_USER_MEMORY_REGION(2) checks and the active/inactive
 * memslot sets (spec §3.5, §4.10, §4.11).
 *
 * Each address space has two sets, arrays of slot pointers sorted by
 * base_gfn.  A change is applied to the inactive set, the sets are swapped
 * (release store of the active pointer), a grace period lets every reader
 * of the old set finish, and the change is replayed on the now-inactive set.
 * Readers (faults, the mmu notifier) therefore never lock and always see one
 * consistent set.  Writers hold kvm->slots_lock throughout.
 */
#include <errno.h>

#include <guestmem/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "gmem.h"
#include "kvm_host.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"

#define KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS (1ULL << 63)
/* x86-64 TASK_SIZE_MAX with 4-level paging: the top of the user range. */
#define GM_TASK_SIZE_MAX ((1ULL << 47) - GM_PAGE_SIZE)

enum kvm_mr_change { KVM_MR_CREATE, KVM_MR_DELETE, KVM_MR_MOVE, KVM_MR_FLAGS_ONLY };

struct kvm_memslots *kvm_memslots(struct kvm *kvm, int as_id)
{
	return gm_rcu_dereference(kvm->memslots[as_id]); /* pairs with swap */
}

static struct kvm_memslots *kvm_inactive_memslots(struct kvm *kvm, int as_id)
{
	struct kvm_memslots *active = kvm->memslots[as_id];

	return active == &kvm->__memslots[as_id][0] ? &kvm->__memslots[as_id][1]
						    : &kvm->__memslots[as_id][0];
}

/* Index of the first slot whose last gfn is >= @gfn (slots are disjoint). */
static uint32_t memslots_first_ending_after(struct kvm_memslots *slots, gfn_t gfn)
{
	uint32_t lo = 0, hi = slots->nr;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (slots->end_gfn[mid] <= gfn)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct kvm_memory_slot *kvm_memslots_find(struct kvm_memslots *slots, gfn_t gfn)
{
	uint32_t i = memslots_first_ending_after(slots, gfn);
	struct kvm_memory_slot *s;

	if (i >= slots->nr)
		return NULL;
	s = slots->by_gfn[i];
	return s->base_gfn <= gfn ? s : NULL;
}

struct kvm_memory_slot *gfn_to_memslot(struct kvm *kvm, int as_id, gfn_t gfn)
{
	return kvm_memslots_find(kvm_memslots(kvm, as_id), gfn);
}

int kvm_for_each_slot_in_range(struct kvm *kvm, gfn_t start, gfn_t end, kvm_slot_fn fn,
			       void *ctx)
{
	for (int as = 0; as < kvm->nr_as; as++) {
		struct kvm_memslots *slots = kvm->memslots[as]; /* slots_lock: stable */

		for (uint32_t i = memslots_first_ending_after(slots, start); i < slots->nr; i++) {
			struct kvm_memory_slot *s = slots->by_gfn[i];
			int r;

			if (s->base_gfn >= end)
				break;
			r = fn(kvm, s, GM_MAX(start, s->base_gfn),
			       GM_MIN(end, s->base_gfn + s->npages), ctx);
			if (r)
				return r;
		}
	}
	return 0;
}

/* ---- set editing (inactive set only, slots_lock held) ---------------- */

static int memslots_reserve(struct kvm_memslots *slots, uint32_t nr)
{
	struct kvm_memory_slot **n;
	gfn_t *e;
	uint32_t cap;

	if (nr <= slots->cap)
		return 0;
	cap = slots->cap ? slots->cap * 2 : 16;
	while (cap < nr)
		cap *= 2;
	n = realloc(slots->by_gfn, cap * sizeof(*n));
	if (!n)
		return -ENOMEM;
	slots->by_gfn = n;
	e = realloc(slots->end_gfn, cap * sizeof(*e));
	if (!e)
		return -ENOMEM; /* by_gfn merely grew: still consistent */
	slots->end_gfn = e;
	slots->cap = cap;
	return 0;
}

static void memslots_remove(struct kvm_memslots *slots, struct kvm_memory_slot *old)
{
	uint32_t i = memslots_first_ending_after(slots, old->base_gfn);

	gm_assert(i < slots->nr && slots->by_gfn[i] == old);
	memmove(&slots->by_gfn[i], &slots->by_gfn[i + 1],
		(slots->nr - i - 1) * sizeof(slots->by_gfn[0]));
	memmove(&slots->end_gfn[i], &slots->end_gfn[i + 1],
		(slots->nr - i - 1) * sizeof(slots->end_gfn[0]));
	slots->nr--;
}

static void memslots_insert(struct kvm_memslots *slots, struct kvm_memory_slot *new)
{
	uint32_t i = memslots_first_ending_after(slots, new->base_gfn);

	gm_assert(slots->nr < slots->cap);
	memmove(&slots->by_gfn[i + 1], &slots->by_gfn[i],
		(slots->nr - i) * sizeof(slots->by_gfn[0]));
	memmove(&slots->end_gfn[i + 1], &slots->end_gfn[i],
		(slots->nr - i) * sizeof(slots->end_gfn[0]));
	slots->by_gfn[i] = new;
	slots->end_gfn[i] = new->base_gfn + new->npages;
	slots->nr++;
}

/* Replace @old by @new (either may be NULL) in one set. */
static void memslots_replace(struct kvm_memslots *slots, struct kvm_memory_slot *old,
			     struct kvm_memory_slot *new)
{
	if (old)
		memslots_remove(slots, old);
	if (new)
		memslots_insert(slots, new);
}


/*
 * Publish the inactive set of @as_id, wait for readers of the old one, and
 * give it the next generation of this address space.
 */
static void kvm_swap_active_memslots(struct kvm *kvm, int as_id)
{
	struct kvm_memslots *old = kvm->memslots[as_id];
	struct kvm_memslots *new = kvm_inactive_memslots(kvm, as_id);
	uint64_t gen = old->generation;

	/* Read locklessly by faults (READ_ONCE): a change makes them retry. */
	WRITE_ONCE(new->generation, gen | KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS);
	/*
	 * A host invalidation in flight must not miss a slot it did not see:
	 * wait until none runs and publish under mn_lock, so that one starting
	 * now (it counts itself under mn_lock) walks the new set.
	 */
	gm_check_pthread(pthread_mutex_lock(&kvm->mn_lock));
	while (kvm->mn_active_invalidate_count)
		gm_check_pthread(pthread_cond_wait(&kvm->mn_cond, &kvm->mn_lock));
	gm_rcu_assign_pointer(kvm->memslots[as_id], new);
	gm_check_pthread(pthread_mutex_unlock(&kvm->mn_lock));
	gm_synchronize_rcu();
	WRITE_ONCE(new->generation,
		   (gen & ~KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS) + (uint64_t)kvm->nr_as);
}

/* Apply old -> new to the inactive set, swap, replay on the other set. */
static void kvm_replace_memslot_everywhere(struct kvm *kvm, int as_id,
					   struct kvm_memory_slot *old,
					   struct kvm_memory_slot *new)
{
	memslots_replace(kvm_inactive_memslots(kvm, as_id), old, new);
	kvm_swap_active_memslots(kvm, as_id);
	memslots_replace(kvm_inactive_memslots(kvm, as_id), old, new);
	kvm->slot_by_id[as_id][(new ? new : old)->id] = new;
}

static struct kvm_memory_slot *kvm_dup_memslot(const struct kvm_memory_slot *s)
{
	struct kvm_memory_slot *n = malloc(sizeof(*n));

	if (n)
		*n = *s;
	return n;
}

static void kvm_free_memslot(struct kvm_memory_slot *slot, bool free_metadata)
{
	if (slot->flags & KVM_MEM_GUEST_MEMFD)
		kvm_gmem_unbind(slot);
	if (free_metadata)
		kvm_free_memslot_metadata(slot);
	free(slot);
}

/* ---- one change, kernel order (kvm_set_memslot) ----------------------- */

/*
 * DELETE/MOVE: make the old slot invalid for readers (faults on it retry)
 * and zap everything it mapped.  Returns the invalid copy.
 */
static struct kvm_memory_slot *kvm_invalidate_memslot(struct kvm *kvm,
						      struct kvm_memory_slot *old)
{
	struct kvm_memory_slot *invalid = kvm_dup_memslot(old);

	if (!invalid)
		return NULL;
	invalid->flags |= KVM_MEMSLOT_INVALID;
	kvm_replace_memslot_everywhere(kvm, old->as_id, old, invalid);
	kvm_arch_flush_shadow_memslot(kvm, old);
	return invalid;
}

/* x86 prepare: the slot must lie below the guest's maximum gfn. */
static int kvm_prepare_memory_region(struct kvm *kvm, struct kvm_memory_slot *new,
				     enum kvm_mr_change change)
{
	if (change == KVM_MR_CREATE || change == KVM_MR_MOVE) {
		if (new->base_gfn + new->npages - 1 > kvm->max_gfn)
			return -EINVAL;
		return kvm_alloc_memslot_metadata(kvm, new);
	}
	/* FLAGS_ONLY: the copy shares the old slot's huge-page metadata. */
	return 0;
}

static int kvm_reserve_sets(struct kvm *kvm, int as_id)
{
	uint32_t need = kvm->memslots[as_id]->nr + 1;

	if (memslots_reserve(&kvm->__memslots[as_id][0], need) ||
	    memslots_reserve(&kvm->__memslots[as_id][1], need))
		return -ENOMEM;
	return 0;
}

static int kvm_set_memslot(struct kvm *kvm, struct kvm_memory_slot *old,
			   struct kvm_memory_slot *new, enum kvm_mr_change change)
{
	struct kvm_memory_slot *invalid = NULL;
	int as_id = (old ? old : new)->as_id, r;

	r = kvm_reserve_sets(kvm, as_id);
	if (r)
		return r;
	if (change == KVM_MR_DELETE || change == KVM_MR_MOVE) {
		invalid = kvm_invalidate_memslot(kvm, old);
		if (!invalid)
			return -ENOMEM;
	}
	r = new ? kvm_prepare_memory_region(kvm, new, change) : 0;
	if (!r && new) {
		r = kvm_dirty_log_prepare(kvm, old, new);
		if (r && change != KVM_MR_FLAGS_ONLY)
			kvm_free_memslot_metadata(new);
	}
	if (r) {
		if (invalid) { /* put the old slot back */
			kvm_replace_memslot_everywhere(kvm, as_id, invalid, old);
			free(invalid);
		}
		return r;
	}
	kvm_replace_memslot_everywhere(kvm, as_id, invalid ? invalid : old, new);
	if (change == KVM_MR_DELETE)
		kvm->nr_memslot_pages -= old->npages;
	else if (change == KVM_MR_CREATE)
		kvm->nr_memslot_pages += new->npages;
	/* Commit: no reader can see old or invalid any more. */
	kvm_dirty_log_commit(kvm, old, new);
	free(invalid);
	if (old)
		kvm_free_memslot(old, change != KVM_MR_FLAGS_ONLY);
	return 0;
}

/* ---- KVM_SET_USER_MEMORY_REGION(2): checks in the kernel's order ------ */

/* Rule 4: the flags a request may carry on this VM. */
static int check_memory_region_flags(struct kvm *kvm,
				     const struct kvm_userspace_memory_region2 *mem)
{
	uint32_t valid = KVM_MEM_LOG_DIRTY_PAGES;

	if (kvm_arch_has_private_mem(kvm) || kvm->cfg.profile == GM_PROFILE_LINUX_6_18)
		valid |= gm_cfg_private_mem(&kvm->cfg) ? KVM_MEM_GUEST_MEMFD : 0;
	/* Dirty logging is not supported for guest_memfd slots. */
	if (mem->flags & KVM_MEM_GUEST_MEMFD)
		valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
	if (!(mem->flags & KVM_MEM_GUEST_MEMFD))
		valid |= KVM_MEM_READONLY;
	return (mem->flags & ~valid) ? -EINVAL : 0;
}

/* Rules 5-11: generic sanity of sizes and addresses. */
static int check_memory_region_sanity(struct kvm *kvm,
				      const struct kvm_userspace_memory_region2 *mem)
{
	uint64_t size = mem->memory_size, hva = mem->userspace_addr;
	uint32_t as_id = mem->slot >> 16, id = mem->slot & 0xffff;

	if (!GM_PAGE_ALIGNED(size))
		return -EINVAL;
	if (!GM_PAGE_ALIGNED(mem->guest_phys_addr))
		return -EINVAL;
	/* access_ok(): the mapping need not exist, but must be user range. */
	if (!GM_PAGE_ALIGNED(hva) || hva > GM_TASK_SIZE_MAX || size > GM_TASK_SIZE_MAX - hva)
		return -EINVAL;
	if ((mem->flags & KVM_MEM_GUEST_MEMFD) &&
	    (!GM_PAGE_ALIGNED(mem->guest_memfd_offset) ||
	     mem->guest_memfd_offset + size < mem->guest_memfd_offset))
		return -EINVAL;
	if (as_id >= (uint32_t)kvm->nr_as || id >= KVM_MEM_SLOTS_NUM)
		return -EINVAL;
	if (mem->guest_phys_addr + size < mem->guest_phys_addr)
		return -EINVAL;
	if ((size >> GM_PAGE_SHIFT) > KVM_MEM_MAX_NR_PAGES)
		return -EINVAL;
	return 0;
}

/* Rule 17: does [gfn, gfn + npages) hit a slot other than @id? */
static bool kvm_check_memslot_overlap(struct kvm_memslots *slots, uint16_t id, gfn_t gfn,
				      uint64_t npages)
{
	for (uint32_t i = memslots_first_ending_after(slots, gfn); i < slots->nr; i++) {
		struct kvm_memory_slot *s = slots->by_gfn[i];

		if (s->base_gfn >= gfn + npages)
			break;
		if (s->id != id)
			return true;
	}
	return false;
}

/* Rules 14-16: what an existing slot may become. */
static int kvm_classify_modify(const struct kvm_memory_slot *old,
			       const struct kvm_userspace_memory_region2 *mem,
			       enum kvm_mr_change *change)
{
	gfn_t base_gfn = mem->guest_phys_addr >> GM_PAGE_SHIFT;

	/*
	 * guest_memfd slots are immutable; the later kernel fix also refuses
	 * turning the flag off, which 6.8 let through to a use-after-free.
	 */
	if ((mem->flags | old->flags) & KVM_MEM_GUEST_MEMFD)
		return -EINVAL;
	if (mem->userspace_addr != old->userspace_addr ||
	    (mem->memory_size >> GM_PAGE_SHIFT) != old->npages ||
	    ((mem->flags ^ old->flags) & KVM_MEM_READONLY))
		return -EINVAL;
	if (base_gfn != old->base_gfn)
		*change = KVM_MR_MOVE;
	else if (mem->flags != old->flags)
		*change = KVM_MR_FLAGS_ONLY;
	else
		return 1; /* nothing to do */
	return 0;
}

static struct kvm_memory_slot *kvm_new_memslot(const struct kvm_userspace_memory_region2 *mem,
					       const struct kvm_memory_slot *old)
{
	struct kvm_memory_slot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (old)
		*s = *old; /* FLAGS_ONLY keeps metadata; MOVE replaces it */
	s->base_gfn = mem->guest_phys_addr >> GM_PAGE_SHIFT;
	s->npages = mem->memory_size >> GM_PAGE_SHIFT;
	s->userspace_addr = mem->userspace_addr;
	s->flags = mem->flags;
	s->id = mem->slot & 0xffff;
	s->as_id = mem->slot >> 16;
	return s;
}

static int kvm_delete_region(struct kvm *kvm, struct kvm_memory_slot *old)
{
	if (!old)
		return -EINVAL;
	return kvm_set_memslot(kvm, old, NULL, KVM_MR_DELETE);
}

static int kvm_bind_new_slot(struct kvm *kvm, struct kvm_memory_slot *new,
			     const struct kvm_userspace_memory_region2 *mem,
			     const struct kvm_gmem_ref *gref)
{
	if (!(mem->flags & KVM_MEM_GUEST_MEMFD))
		return 0;
	if (!gref || gref->err || !gref->gmem)
		return gref && gref->err ? gref->err : -EBADF;
	return kvm_gmem_bind(kvm, new, gref->gmem, mem->guest_memfd_offset);
}

static int __kvm_set_memory_region(struct kvm *kvm,
				   const struct kvm_userspace_memory_region2 *mem,
				   const struct kvm_gmem_ref *gref)
{
	uint32_t as_id = mem->slot >> 16, id = mem->slot & 0xffff;
	enum kvm_mr_change change = KVM_MR_CREATE;
	struct kvm_memory_slot *old, *new;
	uint64_t npages = mem->memory_size >> GM_PAGE_SHIFT;
	int r;

	r = check_memory_region_flags(kvm, mem);
	if (!r)
		r = check_memory_region_sanity(kvm, mem);
	if (r)
		return r;
	old = kvm->slot_by_id[as_id][id];
	if (!mem->memory_size)
		return kvm_delete_region(kvm, old);
	if (!old) {
		if (kvm->nr_memslot_pages + npages < kvm->nr_memslot_pages)
			return -EINVAL;
	} else {
		r = kvm_classify_modify(old, mem, &change);
		if (r)
			return r > 0 ? 0 : r;
	}
	if ((change == KVM_MR_CREATE || change == KVM_MR_MOVE) &&
	    kvm_check_memslot_overlap(kvm->memslots[as_id], (uint16_t)id,
				      mem->guest_phys_addr >> GM_PAGE_SHIFT, npages))
		return -EEXIST;
	new = kvm_new_memslot(mem, change == KVM_MR_FLAGS_ONLY ? old : NULL);
	if (!new)
		return -ENOMEM;
	r = kvm_bind_new_slot(kvm, new, mem, gref);
	/*
	 * 6.12.118 finds an overlapping binding only when it commits, after
	 * the x86 prepare step: a slot beyond the maximum gfn is EINVAL first.
	 */
	if (r == -EEXIST && new->base_gfn + new->npages - 1 > kvm->max_gfn)
		r = -EINVAL;
	if (!r) {
		r = kvm_set_memslot(kvm, old, new, change);
		if (r && (new->flags & KVM_MEM_GUEST_MEMFD))
			kvm_gmem_unbind(new);
		if (r)
			kvm_dirty_log_abort(old, new);
	}
	if (r)
		free(new);
	return r;
}

int kvm_set_memory_region(struct kvm *kvm, const struct kvm_userspace_memory_region2 *mem,
			  bool v2, const struct kvm_gmem_ref *gref)
{
	int r;

	if (!v2 && (mem->flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)))
		return -EINVAL;
	if ((mem->slot & 0xffff) >= KVM_USER_MEM_SLOTS)
		return -EINVAL;
	gm_check_pthread(pthread_mutex_lock(&kvm->slots_lock));
	r = __kvm_set_memory_region(kvm, mem, gref);
	gm_check_pthread(pthread_mutex_unlock(&kvm->slots_lock));
	return r;
}
