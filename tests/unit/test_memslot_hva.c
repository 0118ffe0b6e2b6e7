/* SPDX-License-Identifier: MIT */
/*
 * The memslots' host-address index (src/core/memslot_hva.c): what a host
 * range overlaps, checked against a walk over every slot, through slot
 * creation, deletion, moves and allocation failures.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kvm_fixture.h"

#include <guestmem/kvm.h>

#include "core/kvm_host.h"
#include "lib/rangemap.h"
#include "lib/rcu.h"

#define PG 4096ULL
#define A 0x10000000ULL /* host base of the slots */
#define MAX_HITS 512

static int set(struct kvm *kvm, uint32_t slot, uint64_t gpa, uint64_t size, uint64_t hva)
{
	return kvm_fixture_set_slot(kvm, slot, 0, gpa, size, hva);
}

struct hit {
	struct kvm_memory_slot *slot;
	uint64_t start, end;
};

struct hits {
	struct hit h[MAX_HITS];
	int nr;
};

static int add_hit(struct kvm_memory_slot *slot, uint64_t s, uint64_t e, void *arg)
{
	struct hits *h = arg;

	if (h->nr == MAX_HITS)
		return -ENOSPC;
	h->h[h->nr++] = (struct hit){ slot, s, e };
	return 0;
}

static int cmp_hit(const void *a, const void *b)
{
	const struct hit *x = a, *y = b;

	return x->slot->id < y->slot->id ? -1 : x->slot->id > y->slot->id;
}

/* The index's answer for [s, e) in @slots, sorted by slot id. */
static void index_hits(struct kvm_memslots *slots, uint64_t s, uint64_t e, struct hits *h)
{
	h->nr = 0;
	gm_rcu_read_lock();
	ASSERT_EQ(kvm_memslots_for_each_in_hva(slots, s, e, add_hit, h), 0);
	gm_rcu_read_unlock();
	qsort(h->h, (size_t)h->nr, sizeof(h->h[0]), cmp_hit);
}

struct brute {
	uint64_t s, e;
	struct hits *h;
};

static int brute_slot(struct kvm_memory_slot *slot, void *arg)
{
	struct brute *b = arg;
	uint64_t s = GM_MAX(b->s, slot->userspace_addr), e = GM_MIN(b->e, kvm_memslot_hva_end(slot));

	return s < e ? add_hit(slot, s, e, b->h) : 0;
}

/* The same answer from a walk over every slot. */
static void brute_hits(struct kvm_memslots *slots, uint64_t s, uint64_t e, struct hits *h)
{
	struct brute b = { s, e, h };

	h->nr = 0;
	ASSERT_EQ(kvm_memslots_for_each(slots, brute_slot, &b), 0);
	qsort(h->h, (size_t)h->nr, sizeof(h->h[0]), cmp_hit);
}

static void expect_same(struct kvm_memslots *slots, uint64_t s, uint64_t e)
{
	static struct hits got, want;

	index_hits(slots, s, e, &got);
	brute_hits(slots, s, e, &want);
	if (got.nr != want.nr && want.nr)
		DIAG("query [%#llx, %#llx): slot %u at %#llx, %llu pages", (unsigned long long)s,
		     (unsigned long long)e, want.h[0].slot->id,
		     (unsigned long long)want.h[0].slot->userspace_addr,
		     (unsigned long long)want.h[0].slot->npages);
	ASSERT_EQ(got.nr, want.nr);
	for (int i = 0; i < got.nr; i++) {
		ASSERT_PTR_EQ(got.h[i].slot, want.h[i].slot);
		ASSERT_EQ(got.h[i].start, want.h[i].start);
		ASSERT_EQ(got.h[i].end, want.h[i].end);
	}
}

/* Both sets of address space 0 hold a consistent index. */
static void check_sets(struct kvm *kvm)
{
	ASSERT_EQ(kvm_memslots_hva_check(&kvm->__memslots[0][0]), 0);
	ASSERT_EQ(kvm_memslots_hva_check(&kvm->__memslots[0][1]), 0);
}

/* The ids the index reports for [s, e), as a bit mask (ids < 64). */
static uint64_t ids(struct kvm *kvm, uint64_t s, uint64_t e)
{
	static struct hits h;
	uint64_t mask = 0;

	index_hits(kvm_memslots(kvm, 0), s, e, &h);
	for (int i = 0; i < h.nr; i++) {
		ASSERT_LT(h.h[i].slot->id, 64);
		ASSERT_FALSE(mask & (1ULL << h.h[i].slot->id)); /* once each */
		mask |= 1ULL << h.h[i].slot->id;
	}
	return mask;
}

static uint64_t nr_runs(struct kvm *kvm)
{
	return rangemap_nr_runs(&kvm_memslots(kvm, 0)->by_hva);
}

TEST_F(test_overlapping, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	static struct hits h;

	ASSERT_EQ(set(kvm, 1, 0, 4 * PG, A), 0);		  /* [A, A+4p) */
	ASSERT_EQ(set(kvm, 2, 16 * PG, 4 * PG, A + 2 * PG), 0); /* [A+2p, A+6p) */
	ASSERT_EQ(set(kvm, 3, 32 * PG, 4 * PG, A), 0);		  /* alias of slot 1 */
	check_sets(kvm);
	ASSERT_EQ(nr_runs(kvm), 3); /* one entry per slot */
	ASSERT_EQ(ids(kvm, A, A + 1), (1ULL << 1) | (1ULL << 3));
	ASSERT_EQ(ids(kvm, A + 3 * PG, A + 3 * PG + 1), (1ULL << 1) | (1ULL << 2) | (1ULL << 3));
	ASSERT_EQ(ids(kvm, A + 5 * PG, A + 10 * PG), 1ULL << 2);
	ASSERT_EQ(ids(kvm, A + 6 * PG, A + 10 * PG), 0);
	ASSERT_EQ(ids(kvm, 0, A), 0);
	/* Each slot once, clipped to the query, across runs it spans. */
	index_hits(kvm_memslots(kvm, 0), A + PG, A + 5 * PG, &h);
	ASSERT_EQ(h.nr, 3);
	ASSERT_EQ(h.h[0].start, A + PG);
	ASSERT_EQ(h.h[0].end, A + 4 * PG);
	ASSERT_EQ(h.h[1].start, A + 2 * PG);
	ASSERT_EQ(h.h[1].end, A + 5 * PG);
	expect_same(kvm_memslots(kvm, 0), 0, ~0ULL);
}

TEST_F(test_adjacent, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(set(kvm, 1, 0, 2 * PG, A), 0);
	ASSERT_EQ(set(kvm, 2, 16 * PG, 2 * PG, A + 2 * PG), 0);
	check_sets(kvm);
	ASSERT_EQ(nr_runs(kvm), 2);
	ASSERT_EQ(ids(kvm, A + 2 * PG - 1, A + 2 * PG), 1ULL << 1);
	ASSERT_EQ(ids(kvm, A + 2 * PG, A + 2 * PG + 1), 1ULL << 2);
	ASSERT_EQ(ids(kvm, A + 2 * PG - 1, A + 2 * PG + 1), (1ULL << 1) | (1ULL << 2));
	ASSERT_EQ(ids(kvm, A + 4 * PG, A + 5 * PG), 0);
	ASSERT_EQ(ids(kvm, A - 1, A), 0);
}

TEST_F(test_deleted, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(set(kvm, 1, 0, 4 * PG, A), 0);
	ASSERT_EQ(set(kvm, 2, 16 * PG, PG, A + PG), 0); /* inside slot 1 */
	ASSERT_EQ(nr_runs(kvm), 2);
	ASSERT_EQ(ids(kvm, A + PG, A + 2 * PG), (1ULL << 1) | (1ULL << 2));
	ASSERT_EQ(set(kvm, 2, 0, 0, 0), 0); /* delete */
	check_sets(kvm);
	ASSERT_EQ(nr_runs(kvm), 1);
	ASSERT_EQ(ids(kvm, A + PG, A + 2 * PG), 1ULL << 1);
	ASSERT_EQ(set(kvm, 1, 0, 0, 0), 0);
	check_sets(kvm);
	ASSERT_EQ(nr_runs(kvm), 0);
	ASSERT_EQ(ids(kvm, 0, ~0ULL), 0);
}

TEST_F(test_moved, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	static struct hits h;

	ASSERT_EQ(set(kvm, 1, 0, 4 * PG, A), 0);
	ASSERT_EQ(set(kvm, 2, 16 * PG, 4 * PG, A + 2 * PG), 0);
	ASSERT_EQ(set(kvm, 1, 64 * PG, 4 * PG, A), 0); /* MOVE: same host range */
	check_sets(kvm);
	index_hits(kvm_memslots(kvm, 0), A, A + PG, &h);
	ASSERT_EQ(h.nr, 1);
	/* The new slot, not the freed old one or its INVALID copy. */
	ASSERT_EQ(h.h[0].slot->base_gfn, 64);
	ASSERT_FALSE(h.h[0].slot->flags & KVM_MEMSLOT_INVALID);
	ASSERT_PTR_EQ(h.h[0].slot, gfn_to_memslot(kvm, 0, 64));
	ASSERT_EQ(ids(kvm, A + 3 * PG, A + 4 * PG), (1ULL << 1) | (1ULL << 2));
	ASSERT_EQ(nr_runs(kvm), 2); /* the old slot and its INVALID copy are gone */
	/* FLAGS_ONLY: the copy replaces the slot in place too. */
	{
		struct kvm_userspace_memory_region2 r = { 0 };
		struct kvm_gmem_ref ref = { -EBADF, NULL };

		r.slot = 2;
		r.flags = KVM_MEM_LOG_DIRTY_PAGES;
		r.guest_phys_addr = 16 * PG;
		r.memory_size = 4 * PG;
		r.userspace_addr = A + 2 * PG;
		ASSERT_EQ(kvm_set_memory_region(kvm, &r, true, &ref), 0);
	}
	check_sets(kvm);
	index_hits(kvm_memslots(kvm, 0), A + 5 * PG, A + 6 * PG, &h);
	ASSERT_EQ(h.nr, 1);
	ASSERT_PTR_EQ(h.h[0].slot, gfn_to_memslot(kvm, 0, 16));
	ASSERT_TRUE(h.h[0].slot->flags & KVM_MEM_LOG_DIRTY_PAGES);
}

/* Random slots over a small host window (many overlaps), against the walk. */
TEST_F_TIMEOUT(test_random_vs_walk, kvm_fixture_setup, kvm_fixture_teardown, 120)
{
	struct kvm *kvm = *state;
	unsigned seed = 7;
	int lost = 0, rebuilt = 0;

	for (int step = 0; step < 3000; step++) {
		uint32_t id = (uint32_t)rand_r(&seed) % 48;
		struct kvm_memory_slot *old = kvm->slot_by_id[0][id];
		uint64_t hva = A + (uint64_t)(rand_r(&seed) % 64) * PG;
		/* Mostly small, some long: several size classes. */
		uint64_t npages = 1 + (uint64_t)(rand_r(&seed) % (step % 4 ? 8 : 300));
		bool fail = rand_r(&seed) % 8 == 0;
		bool was_lost = kvm->__memslots[0][0].hva_lost || kvm->__memslots[0][1].hva_lost;
		int r;

		/* Each id owns gfns [id * 512, id * 512 + 512): no gfn overlap. */
		rangemap_fail_nth_alloc = fail ? 1 + rand_r(&seed) % 40 : 0;
		if (old && rand_r(&seed) % 3 == 0)
			r = set(kvm, id, 0, 0, 0);
		else if (old) /* move within its gfns */
			r = set(kvm, id, ((uint64_t)id * 512 + (uint64_t)(rand_r(&seed) % 8)) * PG,
				old->npages * PG, old->userspace_addr);
		else
			r = set(kvm, id, (uint64_t)id * 512 * PG, npages * PG, hva);
		rangemap_fail_nth_alloc = 0;
		ASSERT_TRUE(r == 0 || (fail && r == -ENOMEM));
		if (kvm->__memslots[0][0].hva_lost || kvm->__memslots[0][1].hva_lost)
			lost++;
		else if (was_lost)
			rebuilt++;
		check_sets(kvm);
		for (int q = 0; q < 4; q++) {
			uint64_t s = A - PG + (uint64_t)(rand_r(&seed) % (400 * PG));
			uint64_t e = s + 1 + (uint64_t)(rand_r(&seed) % (16 * PG));

			expect_same(kvm_memslots(kvm, 0), s, e);
		}
		expect_same(kvm_memslots(kvm, 0), 0, ~0ULL);
	}
	/* The failures reached the index (and it came back). */
	ASSERT_GT(lost, 0);
	ASSERT_GT(rebuilt, 0);
}

/* The notifier zaps exactly the slots its range overlaps. */
TEST_F(test_notifier_hits, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	uint64_t before;

	for (uint32_t id = 0; id < 200; id++)
		ASSERT_EQ(set(kvm, id, (uint64_t)id * 2 * PG, PG, A + (uint64_t)id * PG), 0);
	ASSERT_EQ(set(kvm, 200, 1024 * PG, PG, A + 100 * PG), 0); /* alias of 100 */
	before = __atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED);
	kvm_mmu_notifier_invalidate_range(kvm, A + 100 * PG, A + 101 * PG);
	ASSERT_EQ(__atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED) - before, 2);
	before = __atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED);
	kvm_mmu_notifier_invalidate_range(kvm, A + 10 * PG - 1, A + 12 * PG + 1);
	ASSERT_EQ(__atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED) - before, 4);
	before = __atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED);
	kvm_mmu_notifier_invalidate_range(kvm, A + 300 * PG, A + 400 * PG);
	ASSERT_EQ(__atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED) - before, 0);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
