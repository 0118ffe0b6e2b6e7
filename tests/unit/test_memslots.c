/* SPDX-License-Identifier: MIT */
/* Memslot rules (spec §3.5) and the active/inactive sets, through the core. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"

#include <guestmem/kvm.h>

#include "core/kvm_host.h"
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
	struct kvm_userspace_memory_region2 r = region(slot, flags, gpa, size, hva);
	struct kvm_gmem_ref ref = { -EBADF, NULL };

	return kvm_set_memory_region(kvm, &r, true, &ref);
}

static int setup(void **state)
{
	struct kvm *kvm;

	ASSERT_EQ(gm_config_set("linux-6.8", "KVM_SW_PROTECTED_VM=y KVM_SMM=y", NULL), 0);
	ASSERT_EQ(kvm_create_vm(0, &kvm), 0);
	*state = kvm;
	return 0;
}

static int teardown(void **state)
{
	kvm_put_kvm(*state);
	return 0;
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

TEST_F(test_create_lookup_delete, setup, teardown)
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

TEST_F(test_overlap_and_address_spaces, setup, teardown)
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

TEST_F(test_modify_rules, setup, teardown)
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

TEST_F(test_sanity_checks, setup, teardown)
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

TEST_F(test_many_slots_and_generations, setup, teardown)
{
	struct kvm *kvm = *state;
	uint64_t gen0 = kvm_memslots(kvm, 0)->generation;

	for (uint32_t id = 0; id < KVM_USER_MEM_SLOTS; id++)
		ASSERT_EQ(set(kvm, id, 0, (uint64_t)id * 2 * 4096, 4096, 0), 0);
	ASSERT_EQ(kvm_memslots(kvm, 0)->nr, KVM_USER_MEM_SLOTS);
	for (uint32_t id = 0; id < KVM_USER_MEM_SLOTS; id += 997) {
		ASSERT_EQ(slot_at(kvm, 0, (uint64_t)id * 2), id);
		ASSERT_EQ(slot_at(kvm, 0, (uint64_t)id * 2 + 1), 0xffff);
	}
	/* Generations of address space 0 advance by the number of spaces. */
	ASSERT_EQ(kvm_memslots(kvm, 0)->generation,
			 gen0 + (uint64_t)kvm->nr_as * KVM_USER_MEM_SLOTS);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
