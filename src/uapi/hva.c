// SPDX-License-Identifier: MIT
/*
 * The mmu notifier of a user-space KVM.  The kernel learns about changes to
 * the VMM's address space from the mm itself; we learn from the wrappers of
 * munmap, mremap, madvise, mprotect and mmap(MAP_FIXED), which bracket the
 * real system call with gm_uapi_hva_start() and gm_uapi_hva_end(), like
 * invalidate_range_start/end: translations of the range are zapped before
 * the host mapping changes, and faults on it retry until it has.
 *
 * Those wrappers run for every munmap of the process (malloc's too), and
 * some of the callers hold their own locks (liburcu grows its arenas with
 * mremap under its registry lock).  So the hook first checks, under a lock
 * of its own and without touching any core lock or RCU, whether the range
 * ever backed a memslot; only then does it walk the VMs.  The set of ranges
 * is grow-only: a deleted memslot's range stays (a needless invalidation
 * is harmless; a missed one is not).
 */
#include <pthread.h>
#include <string.h>

#include "lib/compiler.h"
#include "uapi.h"
#include "lib/lockdep.h"

#define GM_HVA_MAX_RANGES 1024

struct gm_hva_range {
	uint64_t start, end;
};

/*
 * gm_hva_lock: the sorted, disjoint, non-adjacent array below.  A fixed
 * array (16 KiB), never grown: the seccomp listener's question about a
 * range is answered without waiting for this lock only when it is free,
 * and a realloc under it makes routed calls (a heap's mprotect) that a
 * worker would then wait on while the writer waits for the worker.
 */
static pthread_rwlock_t gm_hva_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct gm_hva_range gm_hva[GM_HVA_MAX_RANGES];
static size_t gm_hva_nr;
static int gm_hva_any; /* lockless "nothing noted yet" fast path */

/* Index of the first range whose end is >= @start.  Context: lock held. */
static size_t gm_hva_first(uint64_t start)
{
	size_t lo = 0, hi = gm_hva_nr;

	lockdep_assert_held(&gm_hva_lock);
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (gm_hva[mid].end < start)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert [start, end), merging neighbours.  Context: write lock held. */
static void gm_hva_insert_locked(uint64_t start, uint64_t end)
{
	size_t i = gm_hva_first(start), j = i;

	lockdep_assert_held_write(&gm_hva_lock);
	while (j < gm_hva_nr && gm_hva[j].start <= end) {
		start = GM_MIN(start, gm_hva[j].start);
		end = GM_MAX(end, gm_hva[j].end);
		j++;
	}
	if (i == j && gm_hva_nr == GM_HVA_MAX_RANGES) {
		/* Out of room: one hull over everything stays correct. */
		start = GM_MIN(start, gm_hva[0].start);
		end = GM_MAX(end, gm_hva[gm_hva_nr - 1].end);
		gm_hva[0] = (struct gm_hva_range){ start, end };
		gm_hva_nr = 1;
		return;
	}
	/* Replace ranges [i, j) by one. */
	memmove(&gm_hva[i + 1], &gm_hva[j], (gm_hva_nr - j) * sizeof(*gm_hva));
	gm_hva_nr = gm_hva_nr - (j - i) + 1;
	gm_hva[i] = (struct gm_hva_range){ start, end };
}

void gm_uapi_hva_note(uint64_t start, uint64_t end)
{
	if (end <= start)
		return;
	gm_rwlock_wrlock(&gm_hva_lock, GM_LOCK_HVA);
	gm_hva_insert_locked(start, end);
	gm_rwlock_unlock(&gm_hva_lock);
	WRITE_ONCE(gm_hva_any, 1);
}

/*
 * @wait false: the seccomp listener's question, which must never wait for
 * the lock: its writer may be a thread whose call the listener must
 * answer first.  Taken then means maybe: a worker asks again, and may
 * wait (nothing under the write lock makes a system call).
 */
static bool gm_hva_noted(uint64_t start, uint64_t end, bool wait)
{
	bool hit;
	size_t i;

	if (!READ_ONCE(gm_hva_any) || end <= start)
		return false;
	if (!wait && gm_rwlock_tryrdlock(&gm_hva_lock, GM_LOCK_HVA))
		return true;
	if (wait)
		gm_rwlock_rdlock(&gm_hva_lock, GM_LOCK_HVA);
	i = gm_hva_first(start + 1);
	hit = i < gm_hva_nr && gm_hva[i].start < end;
	gm_rwlock_unlock(&gm_hva_lock);
	return hit;
}

bool gm_uapi_hva_noted(uint64_t start, uint64_t end)
{
	return gm_hva_noted(start, end, true);
}

bool gm_uapi_hva_maybe_noted(uint64_t start, uint64_t end)
{
	return gm_hva_noted(start, end, false);
}

static struct kvm_mn_token *hva_start(uint64_t start, uint64_t end, bool unmap)
{
	struct kvm_mn_token *t;

	/* The library's own unmaps (backing windows) never back a memslot. */
	if (gm_uapi_in_library || !gm_uapi_hva_noted(start, end))
		return NULL;
	gm_uapi_enter();
	t = unmap ? kvm_mmu_notifier_start_all(start, end)
		  : kvm_mmu_notifier_start_clear_all(start, end);
	gm_uapi_leave(0);
	return t;
}

struct kvm_mn_token *gm_uapi_hva_start(uint64_t start, uint64_t end)
{
	return hva_start(start, end, true);
}

struct kvm_mn_token *gm_uapi_hva_start_clear(uint64_t start, uint64_t end)
{
	return hva_start(start, end, false);
}

void gm_uapi_hva_end(struct kvm_mn_token *t)
{
	int saved;

	if (!t)
		return;
	saved = gm_uapi_enter();
	kvm_mmu_notifier_end_all(t);
	gm_uapi_leave(saved);
}

void gm_uapi_hva_invalidate(uint64_t start, uint64_t end)
{
	gm_uapi_hva_end(gm_uapi_hva_start(start, end));
}
