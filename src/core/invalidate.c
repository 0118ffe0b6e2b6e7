/* SPDX-License-Identifier: MIT */
/*
 * The MMU invalidation protocol (spec §4.4, §4.6) and the host-mapping
 * ("mmu notifier") driver of it.
 *
 * Invariant: a fault that snapshotted seq (acquire) before resolving its
 * page and then, under mmu_lock, finds in_progress == 0 (or gfn outside the
 * range) and seq unchanged, cannot install a translation that an
 * invalidation has already zapped: any such invalidation either is still
 * running (in_progress > 0, range covering gfn, since range_add precedes the
 * zap) or has ended, and end bumps seq before it drops in_progress.
 */
#include <stdlib.h>

#include "gmem.h"
#include "gmemfd.h"
#include "kvm_host.h"
#include "lib/rcu.h"
#include "kvm_arch.h"
#include "lib/lockdep.h"

void kvm_mmu_invalidate_begin(struct kvm *kvm)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	/*
	 * The range is reset only when a first invalidation starts, never at
	 * end: concurrent invalidations accumulate one conservative hull.
	 */
	if (__atomic_add_fetch(&kvm->mmu_invalidate_in_progress, 1, __ATOMIC_RELAXED) == 1) {
		WRITE_ONCE(kvm->mmu_invalidate_range_start, INVALID_GFN);
		WRITE_ONCE(kvm->mmu_invalidate_range_end, INVALID_GFN);
	}
	__atomic_fetch_add(&kvm->stat.invalidations, 1, __ATOMIC_RELAXED);
}

void kvm_mmu_invalidate_range_add(struct kvm *kvm, gfn_t start, gfn_t end)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	gm_assert(READ_ONCE(kvm->mmu_invalidate_in_progress) > 0);
	if (READ_ONCE(kvm->mmu_invalidate_range_start) == INVALID_GFN) {
		WRITE_ONCE(kvm->mmu_invalidate_range_start, start);
		WRITE_ONCE(kvm->mmu_invalidate_range_end, end);
	} else {
		WRITE_ONCE(kvm->mmu_invalidate_range_start,
			   GM_MIN(kvm->mmu_invalidate_range_start, start));
		WRITE_ONCE(kvm->mmu_invalidate_range_end,
			   GM_MAX(kvm->mmu_invalidate_range_end, end));
	}
}

void kvm_mmu_invalidate_end(struct kvm *kvm)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	/* A begin without any range_add is a bug of the caller. */
	gm_assert(READ_ONCE(kvm->mmu_invalidate_range_start) != INVALID_GFN);
	/*
	 * seq++ must be visible before in_progress--: release on the seq
	 * store pairs with the acquire snapshot in the fault path, and the
	 * release on in_progress orders it after the seq store for the
	 * lockless pre-check.
	 */
	smp_store_release(&kvm->mmu_invalidate_seq, kvm->mmu_invalidate_seq + 1);
	gm_assert(READ_ONCE(kvm->mmu_invalidate_in_progress) > 0);
	__atomic_sub_fetch(&kvm->mmu_invalidate_in_progress, 1, __ATOMIC_RELEASE);
}

bool mmu_invalidate_retry_gfn(struct kvm *kvm, unsigned long mmu_seq, gfn_t gfn)
{
	lockdep_assert_held(&kvm->mmu_lock);
	/*
	 * Under mmu_lock every field is stable against writers; the acquire
	 * on in_progress orders the later seq read as the kernel's rmb does.
	 */
	if (unlikely(__atomic_load_n(&kvm->mmu_invalidate_in_progress, __ATOMIC_ACQUIRE))) {
		gfn_t start = READ_ONCE(kvm->mmu_invalidate_range_start);

		/* Begun but no range: the writer dropped the lock mid-way. */
		gm_assert(start != INVALID_GFN);
		if (gfn >= start && gfn < READ_ONCE(kvm->mmu_invalidate_range_end))
			return true;
	}
	return READ_ONCE(kvm->mmu_invalidate_seq) != mmu_seq;
}

bool mmu_invalidate_retry_gfn_unsafe(struct kvm *kvm, unsigned long mmu_seq, gfn_t gfn)
{
	/*
	 * Forced loads of in_progress and seq so that a spinning vCPU sees
	 * the 1 -> 0 transition or the new seq; a stale range can only cause
	 * a missed retry, which the locked check catches.
	 */
	if (unlikely(__atomic_load_n(&kvm->mmu_invalidate_in_progress, __ATOMIC_ACQUIRE)) &&
	    gfn >= READ_ONCE(kvm->mmu_invalidate_range_start) &&
	    gfn < READ_ONCE(kvm->mmu_invalidate_range_end))
		return true;
	return READ_ONCE(kvm->mmu_invalidate_seq) != mmu_seq;
}

void kvm_mmu_invalidate_state(struct kvm *kvm, struct kvm_invalidate_state *st)
{
	gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
	st->seq = READ_ONCE(kvm->mmu_invalidate_seq);
	st->in_progress = READ_ONCE(kvm->mmu_invalidate_in_progress);
	st->range_start = READ_ONCE(kvm->mmu_invalidate_range_start);
	st->range_end = READ_ONCE(kvm->mmu_invalidate_range_end);
	gm_rwlock_unlock(&kvm->mmu_lock);
}

bool kvm_mmu_unmap_gfn_range(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			     gfn_t end)
{
	lockdep_assert_held_write(&kvm->mmu_lock);
	kvm_mmu_invalidate_range_add(kvm, start, end);
	__atomic_fetch_add(&kvm->stat.zapped_ranges, 1, __ATOMIC_RELAXED);
	return kvm_arch_unmap_gfn_range(kvm, slot, start, end);
}

void kvm_flush_remote_tlbs(struct kvm *kvm)
{
	__atomic_fetch_add(&kvm->stat.remote_flushes, 1, __ATOMIC_RELAXED);
	kvm_arch_flush_remote_tlbs(kvm);
}

/* ---- the one invalidation walker (spec §4.4 table) -------------------- */

struct inval_walk {
	struct kvm *kvm;
	bool begun; /* mmu_lock held for write and begin issued */
	bool flush; /* some zap asks for a remote TLB flush */
};

/* One intersecting slot: the first hit takes mmu_lock and begins. */
static void inval_hit(struct inval_walk *w, struct kvm_memory_slot *slot, gfn_t start,
		      gfn_t end)
{
	if (!w->begun) {
		gm_rwlock_wrlock(&w->kvm->mmu_lock, GM_LOCK_MMU);
		kvm_mmu_invalidate_begin(w->kvm);
		w->begun = true;
	}
	/* Even a slot without guest_memfd: private must stop shared access. */
	w->flush |= kvm_mmu_unmap_gfn_range(w->kvm, slot, start, end);
}

static int inval_gfn_hit(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start, gfn_t end,
			 void *ctx)
{
	(void)kvm;
	inval_hit(ctx, slot, start, end);
	return 0;
}

/* One binding run [start, end) of page indices -> the gfns of its slot. */
static int inval_gmem_hit(void *ctx, uint64_t start, uint64_t end, uint64_t value)
{
	struct kvm_memory_slot *slot = (struct kvm_memory_slot *)(uintptr_t)value;
	uint64_t pgoff = slot->gmem.pgoff;

	inval_hit(ctx, slot, slot->base_gfn + GM_MAX(pgoff, start) - pgoff,
		  slot->base_gfn + GM_MIN(pgoff + slot->npages, end) - pgoff);
	return 0;
}

struct hva_hits {
	gfn_t (*ranges)[2];
	size_t nr, cap;
	bool oom;
};

/* Record the gfns of @slot whose host pages lie in [hs, he), its overlap. */
static int hva_collect_cb(struct kvm_memory_slot *slot, uint64_t hs, uint64_t he, void *arg)
{
	struct hva_hits *h = arg;
	uint64_t s = slot->userspace_addr;

	/*
	 * An INVALID slot (being deleted or moved) still has translations
	 * until its flush: it must be zapped like any other.  Its record may
	 * name memory that is going away: probe again.
	 */
	kvm_shram_slot_hva_changed(slot);
	if (h->nr == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 8;
		void *n = realloc(h->ranges, cap * sizeof(*h->ranges));

		if (!n) {
			h->oom = true;
			return 0;
		}
		h->ranges = n;
		h->cap = cap;
	}
	h->ranges[h->nr][0] = slot->base_gfn + ((hs - s) >> GM_PAGE_SHIFT);
	h->ranges[h->nr][1] = slot->base_gfn + ((he - s + GM_PAGE_SIZE - 1) >> GM_PAGE_SHIFT);
	h->nr++;
	return 0;
}

/*
 * The memslots are read under RCU, but mmu_lock is taken outside the
 * read-side section: a writer may wait for a grace period while holding
 * mmu_lock.  So the hits are listed first, then zapped.
 */
static void inval_hva_walk(struct kvm *kvm, struct kvm_invalidation *inv, struct inval_walk *w)
{
	struct hva_hits h = { NULL, 0, 0, false };

	gm_rcu_read_lock();
	for (int as = 0; as < kvm->nr_as; as++)
		kvm_memslots_for_each_in_hva(kvm_memslots(kvm, as), inv->start, inv->end,
					     hva_collect_cb, &h);
	gm_rcu_read_unlock();
	if (h.oom) /* could not list the hits: invalidate the whole guest */
		inval_hit(w, NULL, 0, kvm->max_gfn + 1);
	for (size_t i = 0; !h.oom && i < h.nr; i++)
		inval_hit(w, NULL, h.ranges[i][0], h.ranges[i][1]);
	free(h.ranges);
}

bool kvm_invalidation_begin(struct kvm *kvm, struct kvm_invalidation *inv)
{
	struct inval_walk w = { kvm, false, false };

	switch (inv->source) {
	case KVM_INVAL_GFN:
		lockdep_assert_held(&kvm->slots_lock);
		kvm_for_each_slot_in_range(kvm, inv->start, inv->end, inval_gfn_hit, &w);
		break;
	case KVM_INVAL_GMEM:
		lockdep_assert_held_write(&inv->gmem->invalidate_lock);
		rangemap_for_each(&inv->gmem->bindings, inv->start, inv->end, inval_gmem_hit, &w);
		break;
	case KVM_INVAL_HVA:
		inval_hva_walk(kvm, inv, &w);
		break;
	}
	if (w.begun)
		gm_rwlock_unlock(&kvm->mmu_lock);
	/* A grace period: never with mmu_lock held (a fault may wait for it). */
	if (w.flush)
		kvm_flush_remote_tlbs(kvm);
	inv->begun = w.begun;
	return w.begun;
}

void kvm_invalidation_end(struct kvm *kvm, struct kvm_invalidation *inv)
{
	/* Nothing intersected at begin: nothing did since (the source's lock). */
	if (!inv->begun)
		return;
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_end(kvm);
	/* Same critical section as end: no fault sees new seq + stale metadata. */
	if (inv->post) {
		gm_assert(inv->source == KVM_INVAL_GFN);
		kvm_for_each_slot_in_range(kvm, inv->start, inv->end, inv->post, inv->post_ctx);
	}
	gm_rwlock_unlock(&kvm->mmu_lock);
	inv->begun = false;
}

/* ---- host-mapping invalidation (the mmu notifier) --------------------- */

/*
 * Returns whether an invalidation was begun (and must be ended).  A slot
 * created meanwhile cannot be missed: memslot swaps wait for
 * mn_active_invalidate_count to drop to zero.
 */
static bool kvm_mn_invalidate_start(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end)
{
	struct kvm_invalidation inv = { .source = KVM_INVAL_HVA,
					.start = hva_start, .end = hva_end };

	gm_mutex_lock(&kvm->mn_lock, GM_LOCK_MN);
	kvm->mn_active_invalidate_count++;
	gm_mutex_unlock(&kvm->mn_lock);
	return kvm_invalidation_begin(kvm, &inv);
}

static int mn_stale_cb(struct kvm_memory_slot *slot, uint64_t hs, uint64_t he, void *ctx)
{
	(void)hs;
	(void)he;
	(void)ctx;
	kvm_shram_slot_hva_changed(slot);
	return 0;
}

/*
 * After the host change: a lookup between start and end may have probed
 * the old mapping again; its record must not outlive the change.
 */
static void kvm_mn_mark_stale(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end)
{
	gm_rcu_read_lock();
	for (int as = 0; as < kvm->nr_as; as++)
		kvm_memslots_for_each_in_hva(kvm_memslots(kvm, as), hva_start, hva_end,
					     mn_stale_cb, NULL);
	gm_rcu_read_unlock();
}

static void kvm_mn_invalidate_end(struct kvm *kvm, bool begun, uint64_t hva_start,
				  uint64_t hva_end)
{
	struct kvm_invalidation inv = { .source = KVM_INVAL_HVA, .begun = begun };

	if (begun)
		kvm_mn_mark_stale(kvm, hva_start, hva_end);
	kvm_invalidation_end(kvm, &inv);
	gm_mutex_lock(&kvm->mn_lock, GM_LOCK_MN);
	if (--kvm->mn_active_invalidate_count == 0)
		gm_check_pthread(pthread_cond_broadcast(&kvm->mn_cond));
	gm_mutex_unlock(&kvm->mn_lock);
}

void kvm_mmu_notifier_invalidate_range(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end)
{
	kvm_mn_invalidate_end(kvm, kvm_mn_invalidate_start(kvm, hva_start, hva_end), hva_start,
			      hva_end);
	kvm_shram_hva_changed(hva_start, hva_end);
}

struct kvm_mn_token {
	uint64_t start, end;
	bool unmap; /* mappings may have gone: files may have lost their last */
	long nr, cap;
	struct { struct kvm *kvm; bool begun; } *vms;
};

struct mn_range_ctx {
	struct kvm_mn_token *t;
	uint64_t start, end;
};

static void mn_start_range(struct kvm *kvm, void *ctx)
{
	struct mn_range_ctx *c = ctx;
	struct kvm_mn_token *t = c->t;

	if (t->nr == t->cap) {
		long cap = t->cap ? 2 * t->cap : 4;
		void *n = realloc(t->vms, (size_t)cap * sizeof(*t->vms));

		if (!n) {
			/* Cannot hold it open: invalidate now, at least. */
			kvm_mmu_notifier_invalidate_range(kvm, c->start, c->end);
			return;
		}
		t->vms = n;
		t->cap = cap;
	}
	kvm_get_kvm(kvm);
	t->vms[t->nr].kvm = kvm;
	t->vms[t->nr].begun = kvm_mn_invalidate_start(kvm, c->start, c->end);
	t->nr++;
}

static struct kvm_mn_token *mn_start_all(uint64_t hva_start, uint64_t hva_end, bool unmap)
{
	struct kvm_mn_token *t;
	struct mn_range_ctx c;

	/* Without VMs, files kept for shared RAM still learn of the change. */
	if (hva_start >= hva_end || (kvm_nr_live_vms() == 0 && kvm_shram_nr_files() == 0))
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->start = hva_start;
	t->end = hva_end;
	t->unmap = unmap;
	c = (struct mn_range_ctx){ t, hva_start, hva_end };
	kvm_for_each_vm(mn_start_range, &c);
	return t;
}

struct kvm_mn_token *kvm_mmu_notifier_start_all(uint64_t hva_start, uint64_t hva_end)
{
	return mn_start_all(hva_start, hva_end, true);
}

struct kvm_mn_token *kvm_mmu_notifier_start_clear_all(uint64_t hva_start, uint64_t hva_end)
{
	return mn_start_all(hva_start, hva_end, false);
}

void kvm_mmu_notifier_end_all(struct kvm_mn_token *t)
{
	if (!t)
		return;
	for (long i = 0; i < t->nr; i++) {
		kvm_mn_invalidate_end(t->vms[i].kvm, t->vms[i].begun, t->start, t->end);
		kvm_put_kvm(t->vms[i].kvm);
	}
	if (t->unmap)
		kvm_shram_hva_changed(t->start, t->end);
	free(t->vms);
	free(t);
}
