/* SPDX-License-Identifier: MIT */
/*
 * Memslots: KVM_SET_USER_MEMORY_REGION(2) checks and the active/inactive
 * memslot sets (spec §3.5, §4.10, §4.11).
 *
 * Each address space has two sets, each a tree by gfn (lib/rangemap, a
 * copy-on-write B-tree), so that a slot is found, inserted or removed in
 * O(log n) in any order.  A change is applied to the inactive set, the sets
 * are swapped
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
#include "gmemfd.h"
#include "kvm_host.h"
#include "lib/rcu.h"
#include "kvm_arch.h"
#include "lib/lockdep.h"

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

struct kvm_memory_slot *kvm_memslots_find(struct kvm_memslots *slots, gfn_t gfn)
{
	return (struct kvm_memory_slot *)(uintptr_t)rangemap_lookup(&slots->by_gfn, gfn);
}

struct kvm_memory_slot *gfn_to_memslot(struct kvm *kvm, int as_id, gfn_t gfn)
{
	return kvm_memslots_find(kvm_memslots(kvm, as_id), gfn);
}

/*
 * As the kernel's kvm_vcpu_gfn_to_memslot: a vCPU mostly faults in the
 * slot it faulted in last.  The cached slot is trusted only while the
 * active set keeps the generation it was found in; every swap changes it
 * (to "in progress", then to the next one) before the old set's slots can
 * be freed, so a cached pointer is never a freed slot.
 */
struct kvm_memory_slot *kvm_cached_gfn_to_memslot(struct kvm *kvm, int as_id,
						  struct kvm_memslot_cache *cache, gfn_t gfn)
{
	struct kvm_memslots *slots = kvm_memslots(kvm, as_id);
	uint64_t gen = READ_ONCE(slots->generation);
	struct kvm_memory_slot *s;

	if (!cache)
		return kvm_memslots_find(slots, gfn);
	if (unlikely(gen != cache->gen)) {
		cache->slot = NULL;
		cache->gen = gen;
	}
	s = cache->slot;
	if (s && gfn >= s->base_gfn && gfn < s->base_gfn + s->npages)
		return s;
	s = kvm_memslots_find(slots, gfn);
	if (s)
		cache->slot = s;
	return s;
}

uint64_t kvm_memslots_nr(struct kvm_memslots *slots)
{
	return rangemap_nr_runs(&slots->by_gfn);
}

struct memslots_each {
	int (*fn)(struct kvm_memory_slot *slot, void *ctx);
	void *ctx;
};

static int memslots_each_cb(void *arg, uint64_t start, uint64_t end, uint64_t value)
{
	struct memslots_each *e = arg;

	(void)start;
	(void)end;
	return e->fn((struct kvm_memory_slot *)(uintptr_t)value, e->ctx);
}

int kvm_memslots_for_each(struct kvm_memslots *slots,
			  int (*fn)(struct kvm_memory_slot *slot, void *ctx), void *ctx)
{
	struct memslots_each e = { fn, ctx };

	return rangemap_for_each(&slots->by_gfn, 0, ~0ULL, memslots_each_cb, &e);
}

struct slot_range_walk {
	struct kvm *kvm;
	kvm_slot_fn fn;
	void *ctx;
};

static int slot_range_cb(void *arg, uint64_t start, uint64_t end, uint64_t value)
{
	struct slot_range_walk *w = arg;

	/* rangemap clips each run to the range, as the callers want. */
	return w->fn(w->kvm, (struct kvm_memory_slot *)(uintptr_t)value, start, end, w->ctx);
}

int kvm_for_each_slot_in_range(struct kvm *kvm, gfn_t start, gfn_t end, kvm_slot_fn fn,
			       void *ctx)
{
	struct slot_range_walk w = { kvm, fn, ctx };

	lockdep_assert_held(&kvm->slots_lock);
	for (int as = 0; as < kvm->nr_as; as++) {
		/* slots_lock: the active set is stable. */
		int r = rangemap_for_each(&kvm->memslots[as]->by_gfn, start, end, slot_range_cb, &w);

		if (r)
			return r;
	}
	return 0;
}

/* ---- set editing (inactive set only, slots_lock held) ---------------- */

/*
 * The change old -> new (either may be NULL) of both sets of one address
 * space, built beside them before anything is published (so it cannot fail
 * half way): u[i] are the stores for set __memslots[as][i], u[i][1] on top
 * of u[i][0].  @base (may be NULL): a change not yet committed that this
 * one follows.
 */
struct memslots_change {
	struct rangemap_update *u[2][2];
};

static void memslots_change_abort(struct memslots_change *c)
{
	for (int i = 0; i < 2; i++) {
		rangemap_abort(c->u[i][1]);
		rangemap_abort(c->u[i][0]);
		c->u[i][0] = c->u[i][1] = NULL;
	}
}

static int memslots_prepare_one(const struct rangemap *tree, const struct rangemap_update *base,
				gfn_t start, gfn_t end, uint64_t value, struct rangemap_update **out)
{
	return base ? rangemap_prepare_next(base, start, end, value, out)
		    : rangemap_prepare(tree, start, end, value, out);
}

static int memslots_prepare_change(struct kvm *kvm, int as_id,
				   const struct memslots_change *base,
				   const struct kvm_memory_slot *old,
				   const struct kvm_memory_slot *new, struct memslots_change *c)
{
	int r = 0;

	memset(c, 0, sizeof(*c));
	for (int i = 0; i < 2 && !r; i++) {
		const struct rangemap *tree = &kvm->__memslots[as_id][i].by_gfn;
		const struct rangemap_update *b = NULL;
		int n = 0;

		if (base)
			b = base->u[i][1] ? base->u[i][1] : base->u[i][0];
		/* Same range: one store replaces the pointer. */
		if (old && !(new && new->base_gfn == old->base_gfn && new->npages == old->npages)) {
			r = memslots_prepare_one(tree, b, old->base_gfn, old->base_gfn + old->npages,
						 0, &c->u[i][n]);
			if (!r)
				b = c->u[i][n++];
		}
		if (!r && new)
			r = memslots_prepare_one(tree, b, new->base_gfn, new->base_gfn + new->npages,
						 (uint64_t)(uintptr_t)new, &c->u[i][n]);
	}
	if (r)
		memslots_change_abort(c);
	return r;
}

/*
 * Context: @slots is the inactive set, which no reader has reached since
 * the last swap's grace period: what the commits replace is reused at once
 * (not freed some 10 ms later by liburcu's thread, which left the heap of a
 * VM with many slots slow for every later malloc).
 */
static void memslots_commit(struct kvm_memslots *slots, struct rangemap_update **u)
{
	for (int k = 0; k < 2 && u[k]; k++)
		rangemap_commit(&slots->by_gfn, u[k]);
	u[0] = u[1] = NULL;
	rangemap_reclaim_unreachable(&slots->by_gfn);
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
	gm_mutex_lock(&kvm->mn_lock, GM_LOCK_MN);
	while (kvm->mn_active_invalidate_count)
		gm_check_pthread(pthread_cond_wait(&kvm->mn_cond, &kvm->mn_lock));
	gm_rcu_assign_pointer(kvm->memslots[as_id], new);
	gm_mutex_unlock(&kvm->mn_lock);
	gm_synchronize_rcu();
	WRITE_ONCE(new->generation,
		   (gen & ~KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS) + (uint64_t)kvm->nr_as);
}

/* Apply a prepared old -> new to the inactive set, swap, replay on the other. */
static void kvm_replace_memslot_everywhere(struct kvm *kvm, int as_id,
					   struct kvm_memory_slot *old,
					   struct kvm_memory_slot *new,
					   struct memslots_change *c)
{
	struct kvm_memslots *inactive = kvm_inactive_memslots(kvm, as_id);

	memslots_commit(inactive, c->u[inactive - kvm->__memslots[as_id]]);
	kvm_memslots_hva_replace(inactive, old, new);
	kvm_swap_active_memslots(kvm, as_id);
	inactive = kvm_inactive_memslots(kvm, as_id);
	memslots_commit(inactive, c->u[inactive - kvm->__memslots[as_id]]);
	kvm_memslots_hva_replace(inactive, old, new);
	kvm->slot_by_id[as_id][(new ? new : old)->id] = new;
}

static void kvm_free_memslot(struct kvm_memory_slot *slot, bool free_metadata,
			     struct kvm_gmem_unbind *unbind)
{
	kvm_gmem_unbind_commit(slot, unbind);
	kvm_shram_slot_free(slot); /* each slot holds its own reference */
	if (free_metadata)
		kvm_arch_free_memslot_metadata(slot);
	free(slot);
}

/* ---- one change, kernel order (kvm_set_memslot) ----------------------- */

/* x86 prepare: the slot must lie below the guest's maximum gfn. */
static int kvm_prepare_memory_region(struct kvm *kvm, struct kvm_memory_slot *new,
				     enum kvm_mr_change change)
{
	if (change == KVM_MR_CREATE || change == KVM_MR_MOVE) {
		if (new->base_gfn + new->npages - 1 > kvm->max_gfn)
			return -EINVAL;
		return kvm_arch_alloc_memslot_metadata(kvm, new);
	}
	/* FLAGS_ONLY: the copy shares the old slot's huge-page metadata. */
	return 0;
}

/*
 * Every set change of this update is built first (O(log n) each), so that
 * nothing can fail once the first one is published: old -> invalid (DELETE
 * and MOVE), then from there -> new, or back -> old should preparing the
 * new slot fail.
 */
static int kvm_set_memslot(struct kvm *kvm, struct kvm_memory_slot *old,
			   struct kvm_memory_slot *new, enum kvm_mr_change change)
{
	struct memslots_change inv = { 0 }, fwd = { 0 }, back = { 0 };
	struct kvm_memory_slot *invalid = NULL;
	struct kvm_gmem_unbind unbind = { NULL, NULL };
	int as_id = (old ? old : new)->as_id, r;

	lockdep_assert_held(&kvm->slots_lock);
	/* guest_memfd slots are only ever deleted (never moved or changed). */
	if (change == KVM_MR_DELETE && (old->flags & KVM_MEM_GUEST_MEMFD)) {
		r = kvm_gmem_unbind_prepare(old, &unbind);
		if (r)
			return r;
	}
	if (change == KVM_MR_DELETE || change == KVM_MR_MOVE) {
		r = -ENOMEM;
		invalid = malloc(sizeof(*invalid));
		if (!invalid)
			goto out_abort;
		*invalid = *old;
		invalid->flags |= KVM_MEMSLOT_INVALID;
		r = memslots_prepare_change(kvm, as_id, NULL, old, invalid, &inv);
		if (!r)
			r = memslots_prepare_change(kvm, as_id, &inv, invalid, new, &fwd);
		if (!r && new)
			r = memslots_prepare_change(kvm, as_id, &inv, invalid, old, &back);
	} else {
		r = memslots_prepare_change(kvm, as_id, NULL, old, new, &fwd);
	}
	if (r)
		goto out_abort;

	if (invalid) {
		/* DELETE/MOVE: faults on the slot retry; zap what it mapped. */
		kvm_replace_memslot_everywhere(kvm, as_id, old, invalid, &inv);
		kvm_arch_flush_shadow_memslot(kvm, old);
	}
	r = new ? kvm_prepare_memory_region(kvm, new, change) : 0;
	if (!r && new) {
		r = kvm_dirty_log_prepare(kvm, old, new);
		if (r && change != KVM_MR_FLAGS_ONLY)
			kvm_arch_free_memslot_metadata(new);
	}
	if (r) {
		if (invalid) /* put the old slot back */
			kvm_replace_memslot_everywhere(kvm, as_id, invalid, old, &back);
		goto out_abort;
	}
	kvm_replace_memslot_everywhere(kvm, as_id, invalid ? invalid : old, new, &fwd);
	memslots_change_abort(&back);
	if (change == KVM_MR_DELETE)
		kvm->nr_memslot_pages -= old->npages;
	else if (change == KVM_MR_CREATE)
		kvm->nr_memslot_pages += new->npages;
	/* Commit: no reader can see old or invalid any more. */
	kvm_dirty_log_commit(kvm, old, new);
	free(invalid);
	if (old)
		kvm_free_memslot(old, change != KVM_MR_FLAGS_ONLY, &unbind);
	return 0;

out_abort: /* later changes before the ones they build on */
	memslots_change_abort(&back);
	memslots_change_abort(&fwd);
	memslots_change_abort(&inv);
	kvm_gmem_unbind_abort(&unbind);
	free(invalid);
	return r;
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

static int memslot_other_id(void *ctx, uint64_t start, uint64_t end, uint64_t value)
{
	(void)start;
	(void)end;
	return ((struct kvm_memory_slot *)(uintptr_t)value)->id != *(uint16_t *)ctx;
}

/* Rule 17: does [gfn, gfn + npages) hit a slot other than @id? */
static bool kvm_check_memslot_overlap(struct kvm_memslots *slots, uint16_t id, gfn_t gfn,
				      uint64_t npages)
{
	return rangemap_for_each(&slots->by_gfn, gfn, gfn + npages, memslot_other_id, &id) != 0;
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
					       const struct kvm_memory_slot *old,
					       enum kvm_mr_change change)
{
	struct kvm_memory_slot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (change == KVM_MR_FLAGS_ONLY) {
		*s = *old; /* FLAGS_ONLY keeps metadata; MOVE replaces it */
		s->shram = NULL;
	}
	/* Both keep the host range: same memory, same record. */
	if (change == KVM_MR_FLAGS_ONLY || change == KVM_MR_MOVE)
		kvm_shram_slot_copy(s, old);
	else
		kvm_shram_slot_init(s);
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
			     const struct kvm_gmem_ref *gref, struct kvm_gmem_unbind *undo)
{
	*undo = (struct kvm_gmem_unbind){ NULL, NULL };
	if (!(mem->flags & KVM_MEM_GUEST_MEMFD))
		return 0;
	if (!gref || gref->err || !gref->gmem)
		return gref && gref->err ? gref->err : -EBADF;
	return kvm_gmem_bind(kvm, new, gref->gmem, mem->guest_memfd_offset, undo);
}

static int __kvm_set_memory_region(struct kvm *kvm,
				   const struct kvm_userspace_memory_region2 *mem,
				   const struct kvm_gmem_ref *gref)
{
	uint32_t as_id = mem->slot >> 16, id = mem->slot & 0xffff;
	enum kvm_mr_change change = KVM_MR_CREATE;
	struct kvm_gmem_unbind undo;
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
	new = kvm_new_memslot(mem, old, change);
	if (!new)
		return -ENOMEM;
	r = kvm_bind_new_slot(kvm, new, mem, gref, &undo);
	/*
	 * 6.12.118 finds an overlapping binding only when it commits, after
	 * the x86 prepare step: a slot beyond the maximum gfn is EINVAL first.
	 */
	if (r == -EEXIST && new->base_gfn + new->npages - 1 > kvm->max_gfn)
		r = -EINVAL;
	if (!r) {
		r = kvm_set_memslot(kvm, old, new, change);
		if (r) {
			kvm_gmem_unbind_commit(new, &undo);
			kvm_dirty_log_abort(old, new);
		} else {
			kvm_gmem_unbind_abort(&undo);
		}
	}
	if (r) {
		kvm_shram_slot_free(new);
		free(new);
	} else if (change == KVM_MR_CREATE && READ_ONCE(kvm->shram_enabled)) {
		/* After the answer is decided: the conversion never changes it. */
		kvm_shram_slot_created(kvm, new);
	}
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
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	r = __kvm_set_memory_region(kvm, mem, gref);
	gm_mutex_unlock(&kvm->slots_lock);
	return r;
}
