/* SPDX-License-Identifier: MIT */
/*
 * Memslots by host address, for the mmu notifier: the kernel keeps an hva
 * interval tree per set so that an event visits the slots it overlaps, not
 * every slot (memslot_perf_test has some 8200, and one madvise per page).
 *
 * Here the same answer comes from a rangemap (lib/rangemap) of the slots by
 * size class and start: key = class << 50 | start page << 15 | id, one
 * single-key run per slot (unique: ids are per set), where class c holds
 * the slots of [2^c, 2^(c+1)) pages.  A slot of class c that meets
 * [start, end) starts in (start - 2^(c+1) pages, end), so a query walks that
 * key range of each class that has slots: O(classes log n + hits), plus, in
 * each class, the slots starting in that window that end before @start
 * (with slots that do not overlap one another, at most two per class).  An
 * update is one store, O(log n), whatever the layout: 32764 slots aliasing
 * one host range cost what one does (bench core/memslot-updates).
 *
 * Writers (slots_lock) change only the inactive set, which no reader can
 * reach until the next swap publishes it (memslots.c).  A store that runs
 * out of memory empties the index and marks it lost: readers then walk
 * every slot (slow, still exact) until the next change of that set
 * rebuilds it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_host.h"
#include "lib/rcu.h"

#define HVA_ID_BITS 15	 /* ids < KVM_MEM_SLOTS_NUM = 2^15 - 1 */
#define HVA_PAGE_BITS 35 /* start pages: hva < 2^47 (memslots.c checks) */
#define HVA_CLASS_SHIFT (HVA_ID_BITS + HVA_PAGE_BITS)
#define HVA_PAGE_LIMIT (1ULL << HVA_PAGE_BITS)

static unsigned hva_class(const struct kvm_memory_slot *slot)
{
	return 63u - (unsigned)__builtin_clzll(slot->npages); /* npages >= 1 */
}

/* Added, not or-ed: page HVA_PAGE_LIMIT is the first key of the next class. */
static uint64_t hva_key(unsigned class, uint64_t page, uint16_t id)
{
	return ((uint64_t)class << HVA_CLASS_SHIFT) + (page << HVA_ID_BITS) + id;
}

static uint64_t hva_slot_key(const struct kvm_memory_slot *slot)
{
	return hva_key(hva_class(slot), slot->userspace_addr >> GM_PAGE_SHIFT, slot->id);
}

/*
 * The one overlap test of host ranges: the part of @slot's range inside
 * [start, end) into @s, @e; false if they do not meet.
 */
static bool hva_overlap(const struct kvm_memory_slot *slot, uint64_t start, uint64_t end,
			uint64_t *s, uint64_t *e)
{
	*s = GM_MAX(start, slot->userspace_addr);
	*e = GM_MIN(end, kvm_memslot_hva_end(slot));
	return *s < *e;
}

/* ---- readers -------------------------------------------------------------- */

struct hva_walk {
	uint64_t start, end;
	kvm_hva_slot_fn fn;
	void *ctx;
};

static int hva_walk_run(void *arg, uint64_t start, uint64_t end, uint64_t value)
{
	struct hva_walk *w = arg;
	struct kvm_memory_slot *slot = (struct kvm_memory_slot *)(uintptr_t)value;
	uint64_t s, e;

	(void)start;
	(void)end;
	return hva_overlap(slot, w->start, w->end, &s, &e) ? w->fn(slot, s, e, w->ctx) : 0;
}

static int hva_walk_slot(struct kvm_memory_slot *slot, void *arg)
{
	return hva_walk_run(arg, 0, 0, (uint64_t)(uintptr_t)slot);
}

int kvm_memslots_for_each_in_hva(struct kvm_memslots *slots, uint64_t start, uint64_t end,
				 kvm_hva_slot_fn fn, void *ctx)
{
	struct hva_walk w = { start, end, fn, ctx };
	uint64_t first = start >> GM_PAGE_SHIFT;
	uint64_t last = GM_MIN(((end - 1) >> GM_PAGE_SHIFT) + 1, HVA_PAGE_LIMIT); /* exclusive */

	if (start >= end)
		return 0;
	/* Set before the set was published (the swap's release store). */
	if (unlikely(READ_ONCE(slots->hva_lost)))
		return kvm_memslots_for_each(slots, hva_walk_slot, &w);
	for (unsigned c = 0; c < KVM_HVA_CLASSES; c++) {
		uint64_t span = 2ULL << c; /* pages: longer than any slot of c */
		int r;

		if (!slots->hva_nr[c] || first >= HVA_PAGE_LIMIT)
			continue;
		r = rangemap_for_each(&slots->by_hva,
				      hva_key(c, first > span ? first - span : 0, 0),
				      hva_key(c, last, 0), hva_walk_run, &w);
		if (r)
			return r;
	}
	return 0;
}

/* ---- writers (slots_lock, inactive set) ----------------------------------- */

static int hva_store(struct kvm_memslots *slots, struct kvm_memory_slot *slot, bool add)
{
	uint64_t key = hva_slot_key(slot);
	int r = rangemap_store(&slots->by_hva, key, key + 1, add ? (uint64_t)(uintptr_t)slot : 0);

	if (!r) {
		if (add)
			slots->hva_nr[hva_class(slot)]++;
		else
			slots->hva_nr[hva_class(slot)]--;
	}
	return r;
}

static int hva_add_slot(struct kvm_memory_slot *slot, void *arg)
{
	return hva_store(arg, slot, true);
}

static int hva_replace(struct kvm_memslots *slots, struct kvm_memory_slot *old,
		       struct kvm_memory_slot *new)
{
	int r = 0;

	if (slots->hva_lost) { /* by_gfn already holds the change */
		r = kvm_memslots_for_each(slots, hva_add_slot, slots);
		if (!r)
			slots->hva_lost = 0;
		return r;
	}
	/* MOVE, FLAGS_ONLY and INVALID copies keep the key: one store. */
	if (old && new && hva_slot_key(old) == hva_slot_key(new)) {
		uint64_t key = hva_slot_key(new);

		return rangemap_store(&slots->by_hva, key, key + 1, (uint64_t)(uintptr_t)new);
	}
	if (old)
		r = hva_store(slots, old, false);
	if (!r && new)
		r = hva_store(slots, new, true);
	return r;
}

static void hva_clear(struct kvm_memslots *slots)
{
	rangemap_fini(&slots->by_hva); /* no reader: the nodes go at once */
	memset(slots->hva_nr, 0, sizeof(slots->hva_nr));
}

void kvm_memslots_hva_replace(struct kvm_memslots *slots, struct kvm_memory_slot *old,
			      struct kvm_memory_slot *new)
{
	if (hva_replace(slots, old, new)) {
		hva_clear(slots);
		slots->hva_lost = 1; /* published by the next swap */
	}
	rangemap_reclaim_unreachable(&slots->by_hva);
}

void kvm_memslots_hva_fini(struct kvm_memslots *slots)
{
	hva_clear(slots);
}

/* ---- tests ---------------------------------------------------------------- */

struct hva_check {
	struct kvm_memslots *slots;
	uint32_t nr[KVM_HVA_CLASSES];
	uint64_t total;
};

static int hva_check_slot(struct kvm_memory_slot *slot, void *arg)
{
	struct hva_check *c = arg;

	if (rangemap_lookup(&c->slots->by_hva, hva_slot_key(slot)) != (uint64_t)(uintptr_t)slot)
		return -2; /* missing, or an old copy of it */
	c->nr[hva_class(slot)]++;
	c->total++;
	return 0;
}

int kvm_memslots_hva_check(struct kvm_memslots *slots)
{
	struct hva_check c = { slots, { 0 }, 0 };
	int r;

	if (slots->hva_lost)
		return rangemap_nr_runs(&slots->by_hva) ? -3 : 0;
	if (rangemap_check_invariants(&slots->by_hva))
		return -1;
	r = kvm_memslots_for_each(slots, hva_check_slot, &c);
	if (r)
		return r;
	if (c.total != rangemap_nr_runs(&slots->by_hva))
		return -4; /* a slot the set does not hold */
	if (memcmp(c.nr, slots->hva_nr, sizeof(c.nr)))
		return -5;
	return 0;
}
