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

#include "kvm_host.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"

static inline void assert_mmu_lock_write(struct kvm *kvm)
{
#ifndef NDEBUG
	/* A write-held rwlock cannot be read-locked again. */
	if (pthread_rwlock_tryrdlock(&kvm->mmu_lock) == 0) {
		pthread_rwlock_unlock(&kvm->mmu_lock);
		gm_assert(!"mmu_lock must be held for write");
	}
#else
	(void)kvm;
#endif
}

void kvm_mmu_invalidate_begin(struct kvm *kvm)
{
	assert_mmu_lock_write(kvm);
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
	assert_mmu_lock_write(kvm);
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
	gm_check_pthread(pthread_rwlock_rdlock(&kvm->mmu_lock));
	st->seq = READ_ONCE(kvm->mmu_invalidate_seq);
	st->in_progress = READ_ONCE(kvm->mmu_invalidate_in_progress);
	st->range_start = READ_ONCE(kvm->mmu_invalidate_range_start);
	st->range_end = READ_ONCE(kvm->mmu_invalidate_range_end);
	gm_check_pthread(pthread_rwlock_unlock(&kvm->mmu_lock));
}

bool kvm_mmu_unmap_gfn_range(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			     gfn_t end)
{
	(void)slot; /* 6.8 x86 zaps private and shared alike (spec §4.4) */
	kvm_mmu_invalidate_range_add(kvm, start, end);
	__atomic_fetch_add(&kvm->stat.zapped_ranges, 1, __ATOMIC_RELAXED);
	return kvm_mmu_zap_gfn_range(kvm, start, end);
}

/* ---- host-mapping invalidation (the mmu notifier) --------------------- */

struct mn_walk {
	uint64_t hva_start, hva_end;
	gfn_t (*ranges)[2];
	size_t nr, cap;
	bool oom;
};

/* Record the gfns of @slot whose host pages lie in [hva_start, hva_end). */
static void mn_collect_slot(struct kvm_memory_slot *slot, struct mn_walk *w)
{
	uint64_t s = slot->userspace_addr, e = s + slot->npages * GM_PAGE_SIZE;
	uint64_t hs = GM_MAX(w->hva_start, s), he = GM_MIN(w->hva_end, e);

	/*
	 * An INVALID slot (being deleted or moved) still has translations
	 * until its flush: it must be zapped like any other.
	 */
	if (hs >= he)
		return;
	if (w->nr == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 8;
		void *n = realloc(w->ranges, cap * sizeof(*w->ranges));

		if (!n) {
			w->oom = true;
			return;
		}
		w->ranges = n;
		w->cap = cap;
	}
	w->ranges[w->nr][0] = slot->base_gfn + ((hs - s) >> GM_PAGE_SHIFT);
	w->ranges[w->nr][1] = slot->base_gfn + ((he - s + GM_PAGE_SIZE - 1) >> GM_PAGE_SHIFT);
	w->nr++;
}

static int mn_collect_cb(struct kvm_memory_slot *slot, void *w)
{
	mn_collect_slot(slot, w);
	return 0;
}

/*
 * Returns whether an invalidation was begun (and must be ended).  The
 * memslots are read under RCU, but mmu_lock is taken outside the read-side
 * section: a writer may wait for a grace period while holding mmu_lock.
 * A slot created meanwhile cannot be missed: memslot swaps wait for
 * mn_active_invalidate_count to drop to zero.
 */
static bool kvm_mn_invalidate_start(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end)
{
	struct mn_walk w = { hva_start, hva_end, NULL, 0, 0, false };
	bool flush = false;

	gm_check_pthread(pthread_mutex_lock(&kvm->mn_lock));
	kvm->mn_active_invalidate_count++;
	gm_check_pthread(pthread_mutex_unlock(&kvm->mn_lock));

	gm_rcu_read_lock();
	for (int as = 0; as < kvm->nr_as; as++)
		kvm_memslots_for_each(kvm_memslots(kvm, as), mn_collect_cb, &w);
	gm_rcu_read_unlock();
	if (!w.nr && !w.oom)
		goto out;
	gm_check_pthread(pthread_rwlock_wrlock(&kvm->mmu_lock));
	kvm_mmu_invalidate_begin(kvm);
	if (w.oom) /* could not list the hits: invalidate the whole guest */
		flush = kvm_mmu_unmap_gfn_range(kvm, NULL, 0, kvm->max_gfn + 1);
	for (size_t i = 0; !w.oom && i < w.nr; i++)
		flush |= kvm_mmu_unmap_gfn_range(kvm, NULL, w.ranges[i][0], w.ranges[i][1]);
	gm_check_pthread(pthread_rwlock_unlock(&kvm->mmu_lock));
	if (flush)
		kvm_flush_remote_tlbs(kvm);
out:
	free(w.ranges);
	return w.nr || w.oom;
}

static void kvm_mn_invalidate_end(struct kvm *kvm, bool begun)
{
	if (begun) {
		gm_check_pthread(pthread_rwlock_wrlock(&kvm->mmu_lock));
		kvm_mmu_invalidate_end(kvm);
		gm_check_pthread(pthread_rwlock_unlock(&kvm->mmu_lock));
	}
	gm_check_pthread(pthread_mutex_lock(&kvm->mn_lock));
	if (--kvm->mn_active_invalidate_count == 0)
		gm_check_pthread(pthread_cond_broadcast(&kvm->mn_cond));
	gm_check_pthread(pthread_mutex_unlock(&kvm->mn_lock));
}

void kvm_mmu_notifier_invalidate_range(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end)
{
	kvm_mn_invalidate_end(kvm, kvm_mn_invalidate_start(kvm, hva_start, hva_end));
}

struct kvm_mn_token {
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

struct kvm_mn_token *kvm_mmu_notifier_start_all(uint64_t hva_start, uint64_t hva_end)
{
	struct kvm_mn_token *t;
	struct mn_range_ctx c;

	if (hva_start >= hva_end || kvm_nr_live_vms() == 0)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	c = (struct mn_range_ctx){ t, hva_start, hva_end };
	kvm_for_each_vm(mn_start_range, &c);
	return t;
}

void kvm_mmu_notifier_end_all(struct kvm_mn_token *t)
{
	if (!t)
		return;
	for (long i = 0; i < t->nr; i++) {
		kvm_mn_invalidate_end(t->vms[i].kvm, t->vms[i].begun);
		kvm_put_kvm(t->vms[i].kvm);
	}
	free(t->vms);
	free(t);
}
