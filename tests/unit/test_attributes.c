/* SPDX-License-Identifier: MIT */
/*
 * KVM_SET_MEMORY_ATTRIBUTES (spec §3.6, §4.7), the invalidation state it
 * drives (§4.4, §4.6) and the huge-page mixed flags it maintains (§4.8).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"
#include "kvm_fixture.h"

#include <guestmem/kvm.h>

#include "core/kvm_host.h"
#include "mmu/mmu.h"
#include "lib/lockdep.h"

#define P KVM_MEMORY_ATTRIBUTE_PRIVATE
#define MB (1ULL << 20)

static int attrs(struct kvm *kvm, uint64_t addr, uint64_t size, uint64_t a, uint64_t flags)
{
	struct kvm_memory_attributes ma = { addr, size, a, flags };

	return kvm_vm_ioctl_set_mem_attributes(kvm, &ma);
}

static int add_slot(struct kvm *kvm, uint32_t id, uint64_t gpa, uint64_t size, uint64_t hva)
{
	return kvm_fixture_set_slot(kvm, id, 0, gpa, size, hva);
}

static struct kvm_invalidate_state state_of(struct kvm *kvm)
{
	struct kvm_invalidate_state st;

	kvm_mmu_invalidate_state(kvm, &st);
	return st;
}

TEST_F(test_validation_order, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(attrs(kvm, 0, 4096, P, 1), -EINVAL);	      /* flags */
	ASSERT_EQ(attrs(kvm, 0, 4096, 1, 0), -EINVAL);	      /* unsupported bit */
	ASSERT_EQ(attrs(kvm, 0, 0, P, 0), -EINVAL);	      /* size 0 */
	ASSERT_EQ(attrs(kvm, ~0xfffULL, 8192, P, 0), -EINVAL); /* wrap */
	ASSERT_EQ(attrs(kvm, 1, 4096, P, 0), -EINVAL);	      /* alignment */
	ASSERT_EQ(attrs(kvm, 0, 4097, P, 0), -EINVAL);
	/* No memslot, far outside the guest: still fine. */
	ASSERT_EQ(attrs(kvm, 1ULL << 62, 1ULL << 40, P, 0), 0);
	ASSERT_EQ(kvm_get_memory_attributes(kvm, (1ULL << 62) >> 12), P);
}

TEST_F(test_default_vm_supports_nothing, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm;

	(void)state;
	ASSERT_EQ(kvm_create_vm(0, &kvm), 0);
	ASSERT_EQ(attrs(kvm, 0, 4096, 0, 0), 0);
	ASSERT_EQ(attrs(kvm, 0, 4096, P, 0), -EINVAL);
	kvm_put_kvm(kvm);
}

TEST_F(test_replace_and_noop, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	struct kvm_invalidate_state a, b;

	ASSERT_EQ(add_slot(kvm, 0, 0, 8 * MB, 0), 0);
	a = state_of(kvm);
	ASSERT_EQ(attrs(kvm, 0, 4 * MB, P, 0), 0);
	b = state_of(kvm);
	ASSERT_EQ(b.seq, a.seq + 1); /* one balanced begin/end */
	ASSERT_EQ(b.in_progress, 0);
	ASSERT_EQ(b.range_start, 0);
	ASSERT_EQ(b.range_end, (4 * MB) >> 12);
	/* The same value again: no invalidation at all. */
	ASSERT_EQ(attrs(kvm, 0, 4 * MB, P, 0), 0);
	ASSERT_EQ(state_of(kvm).seq, b.seq);
	/* Replace, not OR: 0 clears a sub-range. */
	ASSERT_EQ(attrs(kvm, 1 * MB, 4096, 0, 0), 0);
	ASSERT_EQ(kvm_get_memory_attributes(kvm, (1 * MB) >> 12), 0);
	ASSERT_EQ(kvm_get_memory_attributes(kvm, ((1 * MB) >> 12) + 1), P);
	ASSERT_EQ(state_of(kvm).seq, b.seq + 1);
}

TEST_F(test_no_slot_no_invalidation, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	unsigned long seq;

	ASSERT_EQ(add_slot(kvm, 0, 0, 2 * MB, 0), 0);
	seq = state_of(kvm).seq;
	ASSERT_EQ(attrs(kvm, 64 * MB, 2 * MB, P, 0), 0); /* no slot there */
	ASSERT_EQ(state_of(kvm).seq, seq);
	ASSERT_EQ(kvm_get_memory_attributes(kvm, (64 * MB) >> 12), P);
}

TEST_F(test_attributes_survive_memslot_changes, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	ASSERT_EQ(attrs(kvm, 0, 2 * MB, P, 0), 0);
	ASSERT_EQ(add_slot(kvm, 0, 0, 2 * MB, 0), 0);
	ASSERT_EQ(add_slot(kvm, 0, 0, 0, 0), 0);
	ASSERT_EQ(kvm_get_memory_attributes(kvm, 5), P);
}

TEST_F(test_hull_accumulates, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, 100, 200);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, 50, 60);
	ASSERT_EQ(kvm->mmu_invalidate_range_start, 50);
	ASSERT_EQ(kvm->mmu_invalidate_range_end, 200);
	ASSERT_TRUE(mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, 150));
	ASSERT_TRUE(mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, 55));
	ASSERT_FALSE(mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, 300));
	kvm_mmu_invalidate_end(kvm);
	ASSERT_EQ(kvm->mmu_invalidate_in_progress, 1);
	/* Still inside the hull while the second invalidation runs. */
	ASSERT_TRUE(mmu_invalidate_retry_gfn(kvm, kvm->mmu_invalidate_seq, 150));
	kvm_mmu_invalidate_end(kvm);
	gm_rwlock_unlock(&kvm->mmu_lock);
	/* Range kept after end; a snapshot from before the ends retries. */
	ASSERT_EQ(kvm->mmu_invalidate_range_start, 50);
	ASSERT_TRUE(mmu_invalidate_retry_gfn_unsafe(kvm, kvm->mmu_invalidate_seq - 2, 999));
	ASSERT_FALSE(mmu_invalidate_retry_gfn_unsafe(kvm, kvm->mmu_invalidate_seq, 150));
}

static uint32_t lpage(struct kvm *kvm, int lvl, gfn_t gfn)
{
	struct kvm_memory_slot *s = kvm->slot_by_id[0][0];
	unsigned shift = kvm_lpage_shift(lvl);

	return s->lpage_info[lvl][(gfn >> shift) - (s->base_gfn >> shift)].disallow_lpage;
}

static bool mixed(struct kvm *kvm, int lvl, gfn_t gfn)
{
	struct kvm_memory_slot *s = kvm->slot_by_id[0][0];

	return kvm_lpage_mixed(kvm, s, lvl, gfn >> kvm_lpage_shift(lvl));
}

TEST_F(test_mixed_flags, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	struct kvm_memory_slot *slot;

	/* 1 GiB-aligned slot of 2 GiB at an hva congruent to its gpa. */
	ASSERT_EQ(add_slot(kvm, 0, 1ULL << 30, 2ULL << 30, 1ULL << 40), 0);
	slot = kvm->slot_by_id[0][0];
	ASSERT_EQ(lpage(kvm, 0, 0x40000), 0);
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40000, 3), 3);
	/* One private page makes its 2 MiB and 1 GiB blocks mixed. */
	ASSERT_EQ(attrs(kvm, (1ULL << 30) + 4096, 4096, P, 0), 0);
	ASSERT_TRUE(mixed(kvm, 0, 0x40000));
	ASSERT_TRUE(mixed(kvm, 1, 0x40000));
	ASSERT_FALSE(mixed(kvm, 0, 0x40200));
	ASSERT_EQ(lpage(kvm, 0, 0x40000), 0); /* the count is separate */
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40000, 3), 1);
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40200, 3), 2);
	/* Converting the whole first 2 MiB makes it uniform again (private). */
	ASSERT_EQ(attrs(kvm, 1ULL << 30, 2 * MB, P, 0), 0);
	ASSERT_FALSE(mixed(kvm, 0, 0x40000));
	ASSERT_TRUE(mixed(kvm, 1, 0x40000));
	ASSERT_EQ(attrs(kvm, 1ULL << 30, 1ULL << 30, P, 0), 0);
	ASSERT_FALSE(mixed(kvm, 1, 0x40000));
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40000, 3), 3);
	/* A slot created over mixed attributes starts with the right blocks. */
	ASSERT_EQ(attrs(kvm, (1ULL << 30) + 8192, 4096, 0, 0), 0); /* hole */
	ASSERT_EQ(attrs(kvm, (2ULL << 30) + 6 * MB, 4096, P, 0), 0); /* island */
	ASSERT_EQ(add_slot(kvm, 0, 0, 0, 0), 0);
	ASSERT_EQ(add_slot(kvm, 0, 1ULL << 30, 2ULL << 30, 1ULL << 40), 0);
	slot = kvm->slot_by_id[0][0];
	ASSERT_TRUE(mixed(kvm, 0, 0x40002));
	ASSERT_TRUE(mixed(kvm, 1, 0x40002));
	ASSERT_FALSE(mixed(kvm, 0, 0x40200));
	ASSERT_TRUE(mixed(kvm, 0, 0x80600));
	ASSERT_TRUE(mixed(kvm, 1, 0x80000));
	ASSERT_FALSE(mixed(kvm, 0, 0x80800));
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40002, 3), 1);
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40200, 3), 2);
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x80800, 3), 2);
}

/*
 * A conversion covering a whole block does not touch its flag: the stale
 * flag must read as not mixed, except while an invalidation is in progress.
 */
TEST_F(test_mixed_flag_stale, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;
	struct kvm_memory_slot *slot;

	ASSERT_EQ(add_slot(kvm, 0, 1ULL << 30, 2ULL << 30, 1ULL << 40), 0);
	slot = kvm->slot_by_id[0][0];
	/* 2 MiB block 0x40200 mixed, then covered whole by a 4 MiB conversion. */
	ASSERT_EQ(attrs(kvm, (0x40201ULL << 12), 4096, P, 0), 0);
	ASSERT_TRUE(mixed(kvm, 0, 0x40200));
	ASSERT_EQ(attrs(kvm, 1ULL << 30, 4 * MB, P, 0), 0);
	ASSERT_EQ(slot->lpage_info[0][1].mixed, 1); /* stale, by design */
	ASSERT_FALSE(mixed(kvm, 0, 0x40200));
	ASSERT_TRUE(mixed(kvm, 1, 0x40200));
	ASSERT_EQ(lpage(kvm, 0, 0x40200), 0);
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40200, 3), 2);
	/* Any invalidation in progress: a set flag counts, as before its end. */
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, 0x90000, 0x90001);
	ASSERT_TRUE(mixed(kvm, 0, 0x40200));
	ASSERT_FALSE(mixed(kvm, 0, 0x40400));
	ASSERT_EQ(kvm_mmu_max_mapping_level(kvm, slot, 0x40200, 3), 1);
	kvm_mmu_invalidate_end(kvm);
	ASSERT_FALSE(mixed(kvm, 0, 0x40200));
	gm_rwlock_unlock(&kvm->mmu_lock);
}

TEST_F(test_unaligned_slot_edges, kvm_fixture_setup_private, kvm_fixture_teardown)
{
	struct kvm *kvm = *state;

	/* Starts 4 KiB into a 2 MiB block: first and last blocks disallowed. */
	ASSERT_EQ(add_slot(kvm, 0, 2 * MB + 4096, 4 * MB, 2 * MB + 4096), 0);
	ASSERT_EQ(lpage(kvm, 0, (2 * MB + 4096) >> 12), 1);
	ASSERT_EQ(lpage(kvm, 0, (4 * MB) >> 12), 0);
	ASSERT_EQ(lpage(kvm, 0, (6 * MB) >> 12), 1);
	ASSERT_EQ(add_slot(kvm, 0, 0, 0, 0), 0);
	/* gfn and hva not congruent: every block disallowed. */
	ASSERT_EQ(add_slot(kvm, 0, 2 * MB, 4 * MB, 4096), 0);
	ASSERT_EQ(lpage(kvm, 0, (2 * MB) >> 12), 1);
	ASSERT_EQ(lpage(kvm, 0, (4 * MB) >> 12), 1);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
