/* SPDX-License-Identifier: MIT */
/* Memslot rules (spec §3.5) and the active/inactive sets, through the core. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "kvm_fixture.h"

#include <guestmem/kvm.h>

#include "core/kvm_host.h"
#include "lib/rangemap.h"
#include "lib/rcu.h"

#define MB (1ULL << 20)

static struct kvm_userspace_memory_region2 region(uint32_t slot, uint32_t flags, uint64_t gpa,
						  uint64_t size, uint64_t hva)
{
	struct kvm_userspace_memory_region2 r = { 0 };

	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = hva;
	return r;
}

static int set(struct kvm *kvm, uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
	       uint64_t hva)
{
	return kvm_fixture_set_slot(kvm, slot, flags, gpa, size, hva);
}

static uint16_t slot_at(struct kvm *kvm, int as, gfn_t gfn)
{
	struct kvm_memory_slot *s;
	uint16_t id;

	gm_rcu_read_lock();
	s = gfn_to_memslot(kvm, as, gfn);
	id = s ? s->id : 0xffff;
	gm_rcu_read_unlock();
	return id;
}

TEST_F(test_create_lookup_delete, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(set(kvm, 3, 0, 16 * MB, 2 * MB, 0x100000000ULL), 0);
	ASSERT_EQ(slot_at(kvm, 0, (16 * MB) >> 12), 3);
	ASSERT_EQ(slot_at(kvm, 0, (18 * MB >> 12) - 1), 3);
	ASSERT_EQ(slot_at(kvm, 0, 18 * MB >> 12), 0xffff);
	ASSERT_EQ(slot_at(kvm, 0, (16 * MB >> 12) - 1), 0xffff);
	/* Delete, delete again, re-create. */
	ASSERT_EQ(set(kvm, 3, 0, 0, 0, 0), 0);
	ASSERT_EQ(slot_at(kvm, 0, 16 * MB >> 12), 0xffff);
	ASSERT_EQ(set(kvm, 3, 0, 0, 0, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 3, 0, 16 * MB, 2 * MB, 0x100000000ULL), 0);
}

TEST_F(test_overlap_and_address_spaces, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(set(kvm, 1, 0, 0, 4 * MB, 0), 0);
	ASSERT_EQ(set(kvm, 2, 0, 2 * MB, 4 * MB, 0), -EEXIST);
	ASSERT_EQ(set(kvm, 2, 0, 4 * MB, 4 * MB, 0), 0);
	/* Address space 1 (SMM) never conflicts with address space 0. */
	ASSERT_EQ(set(kvm, (1u << 16) | 2, 0, 0, 4 * MB, 0), 0);
	ASSERT_EQ(slot_at(kvm, 1, 0), 2);
	ASSERT_EQ(set(kvm, (2u << 16) | 2, 0, 0, 4 * MB, 0), -EINVAL);
	/* 6.8: a default VM cannot carry guest_memfd slots (flag check). */
	ASSERT_EQ(set(kvm, 5, 4 /* GUEST_MEMFD */, 64 * MB, 4 * MB, 0), -EINVAL);
}

TEST_F(test_modify_rules, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	const uint64_t hva = 0x200000000ULL;

	ASSERT_EQ(set(kvm, 7, 0, 64 * MB, 2 * MB, hva), 0);
	ASSERT_EQ(set(kvm, 7, 0, 64 * MB, 2 * MB, hva), 0);	 /* no-op */
	ASSERT_EQ(set(kvm, 7, 0, 64 * MB, 4 * MB, hva), -EINVAL); /* resize */
	ASSERT_EQ(set(kvm, 7, 0, 64 * MB, 2 * MB, hva + 4096), -EINVAL);
	ASSERT_EQ(set(kvm, 7, 2 /* READONLY */, 64 * MB, 2 * MB, hva), -EINVAL);
	ASSERT_EQ(set(kvm, 7, 1 /* LOG_DIRTY */, 64 * MB, 2 * MB, hva), 0);
	/* Move: the old gfns are gone, the new ones resolve. */
	ASSERT_EQ(set(kvm, 7, 1, 128 * MB, 2 * MB, hva), 0);
	ASSERT_EQ(slot_at(kvm, 0, 64 * MB >> 12), 0xffff);
	ASSERT_EQ(slot_at(kvm, 0, 128 * MB >> 12), 7);
}

TEST_F(test_sanity_checks, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	struct kvm_userspace_memory_region2 r = region(1, 4, 0, 2 * MB, 0);

	ASSERT_EQ(kvm_set_memory_region(kvm, &r, false, NULL), -EINVAL); /* v1 + gmem */
	ASSERT_EQ(set(kvm, 32764, 0, 0, 2 * MB, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 32763, 0, 0, 2 * MB, 0), 0);
	ASSERT_EQ(set(kvm, 1, 1u << 3, 0x40000000, 2 * MB, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 1u << 16, 0x40000000, 2 * MB, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, 0x40000000, 4095, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, 0x40000001, 4096, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, 0x40000000, 4096, 1), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, 0x40000000, 4096, 0xffff800000000000ULL), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, ~0xfffULL, 2 * 4096, 0), -EINVAL);  /* gpa wrap */
	ASSERT_EQ(set(kvm, 1, 0, 1ULL << 60, 4096, 0), -EINVAL);	   /* > MAXPHYADDR */
	ASSERT_EQ(set(kvm, 1, 0, 0, 1ULL << 44, 0), -EINVAL);	   /* > 2^31-1 pages */
}

TEST(test_private_vm_has_one_address_space)
{
	struct kvm *kvm;

	ASSERT_EQ(kvm_create_vm(1, &kvm), 0);
	ASSERT_EQ(set(kvm, (1u << 16) | 1, 0, 0, 2 * MB, 0), -EINVAL);
	ASSERT_EQ(set(kvm, 1, 0, 0, 2 * MB, 0), 0);
	/* Overlap (rule 17) is decided before the fd is looked at (rule 18). */
	ASSERT_EQ(set(kvm, 5, 4 /* GUEST_MEMFD */, 0, 4 * MB, 0), -EEXIST);
	ASSERT_EQ(set(kvm, 5, 4, 64 * MB, 4 * MB, 0), -EBADF);
	/* ... but after the flag rules: GUEST_MEMFD|LOG_DIRTY is EINVAL. */
	ASSERT_EQ(set(kvm, 5, 4 | 1, 0, 4 * MB, 0), -EINVAL);
	kvm_put_kvm(kvm);
	ASSERT_EQ(kvm_create_vm(2, &kvm), -EINVAL);
}

TEST_F(test_many_slots_and_generations, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	uint64_t gen0 = kvm_memslots(kvm, 0)->generation;

	for (uint32_t id = 0; id < KVM_USER_MEM_SLOTS; id++)
		ASSERT_EQ(set(kvm, id, 0, (uint64_t)id * 2 * 4096, 4096, 0), 0);
	ASSERT_EQ(kvm_memslots_nr(kvm_memslots(kvm, 0)), KVM_USER_MEM_SLOTS);
	for (uint32_t id = 0; id < KVM_USER_MEM_SLOTS; id += 997) {
		ASSERT_EQ(slot_at(kvm, 0, (uint64_t)id * 2), id);
		ASSERT_EQ(slot_at(kvm, 0, (uint64_t)id * 2 + 1), 0xffff);
	}
	/* Generations of address space 0 advance by the number of spaces. */
	ASSERT_EQ(kvm_memslots(kvm, 0)->generation,
			 gen0 + (uint64_t)kvm->nr_as * KVM_USER_MEM_SLOTS);
}

/*
 * Random creates, deletes, moves and flag changes in any gfn order against
 * a brute-force model of the slots; both sets must hold exactly the model
 * after every call, lookups (plain and through a vCPU's last-used-slot
 * cache) must agree with it, and an allocation failure inside the set
 * update must leave everything as it was.
 */
#define MODEL_IDS 64
#define MODEL_GFNS 4096

struct model_slot {
	bool used;
	uint64_t base, npages;
	uint32_t flags;
};

static struct model_slot model[MODEL_IDS];

static int model_owner(uint64_t gfn)
{
	for (int id = 0; id < MODEL_IDS; id++)
		if (model[id].used && gfn >= model[id].base &&
		    gfn < model[id].base + model[id].npages)
			return id;
	return -1;
}

static bool model_overlaps(int self, uint64_t base, uint64_t npages)
{
	for (int id = 0; id < MODEL_IDS; id++)
		if (id != self && model[id].used && base < model[id].base + model[id].npages &&
		    model[id].base < base + npages)
			return true;
	return false;
}

struct set_check {
	uint64_t nr;
	gfn_t last_end;
	bool bad;
};

static int check_slot(struct kvm_memory_slot *s, void *ctx)
{
	struct set_check *c = ctx;
	const struct model_slot *m = &model[s->id];

	if (!m->used || s->base_gfn != m->base || s->npages != m->npages ||
	    (s->flags & ~KVM_MEMSLOT_INVALID) != m->flags || (s->flags & KVM_MEMSLOT_INVALID) ||
	    s->base_gfn < c->last_end)
		c->bad = true;
	c->last_end = s->base_gfn + s->npages;
	c->nr++;
	return 0;
}

static void check_sets(struct kvm *kvm, struct kvm_memslot_cache *cache, unsigned *seed)
{
	uint64_t used = 0;

	for (int id = 0; id < MODEL_IDS; id++)
		used += model[id].used;
	for (int i = 0; i < 2; i++) {
		struct set_check c = { 0, 0, false };

		kvm_memslots_for_each(&kvm->__memslots[0][i], check_slot, &c);
		ASSERT_FALSE(c.bad);
		ASSERT_EQ(c.nr, used);
		ASSERT_EQ(rangemap_check_invariants(&kvm->__memslots[0][i].by_gfn), 0);
	}
	gm_rcu_read_lock();
	for (int k = 0; k < 64; k++) {
		uint64_t gfn = (uint64_t)rand_r(seed) % (MODEL_GFNS + 64);
		int owner = model_owner(gfn);
		struct kvm_memory_slot *a = gfn_to_memslot(kvm, 0, gfn);
		struct kvm_memory_slot *b = kvm_cached_gfn_to_memslot(kvm, 0, cache, gfn);

		ASSERT_PTR_EQ(a, b);
		ASSERT_EQ(a ? a->id : -1, owner);
		/* Again: now from the cache when it hits. */
		ASSERT_PTR_EQ(kvm_cached_gfn_to_memslot(kvm, 0, cache, gfn), a);
	}
	gm_rcu_read_unlock();
}

TEST_F(test_random_against_model, kvm_fixture_setup, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	struct kvm_memslot_cache cache = { NULL, 0 };
	unsigned seed = 2024;
	int injected = 0;

	memset(model, 0, sizeof(model));
	for (int i = 0; i < 3000; i++) {
		int id = rand_r(&seed) % MODEL_IDS, op = rand_r(&seed) % 4, expect = 0, r;
		uint64_t base = (uint64_t)rand_r(&seed) % MODEL_GFNS;
		uint64_t npages = 1 + (uint64_t)rand_r(&seed) % 64;
		struct model_slot *m = &model[id];
		struct model_slot next = *m;
		bool fail = rand_r(&seed) % 5 == 0;

		if (op == 0 || !m->used) { /* create (or EEXIST / no-op rules) */
			if (m->used)
				continue;
			expect = model_overlaps(id, base, npages) ? -EEXIST : 0;
			next = (struct model_slot){ true, base, npages, 0 };
		} else if (op == 1) { /* delete */
			npages = 0;
			next.used = false;
		} else if (op == 2) { /* move */
			npages = m->npages;
			if (base == m->base)
				continue;
			expect = model_overlaps(id, base, npages) ? -EEXIST : 0;
			next.base = base;
		} else { /* flags only: toggle dirty logging */
			base = m->base;
			npages = m->npages;
			next.flags ^= 1;
		}
		rangemap_fail_nth_alloc = fail ? 1 + rand_r(&seed) % 8 : 0;
		r = set(kvm, (uint32_t)id, next.flags, base << 12, npages << 12, 0x10000000ULL);
		rangemap_fail_nth_alloc = 0;
		if (fail && r == -ENOMEM && expect == 0) {
			injected++; /* nothing may have changed */
		} else {
			ASSERT_EQ(r, expect);
			if (!r)
				*m = next;
		}
		check_sets(kvm, &cache, &seed);
	}
	ASSERT_TRUE(injected > 50);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
