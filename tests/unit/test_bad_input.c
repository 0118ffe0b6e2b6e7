/* SPDX-License-Identifier: MIT */
/*
 * "Bad input never corrupts state": thousands of memslot, attribute and
 * guest_memfd calls with arguments drawn from boundary values.  After every
 * call that fails, the observable state (memslot set, attribute runs,
 * invalidation state, allocated pages) must be exactly what it was; calls
 * that succeed are allowed to change it.  Run under ASan+UBSan with leak
 * detection, this also checks that no failure path leaks or crashes.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"

#include <guestmem/kvm.h>

#include "core/gmem.h"
#include "core/kvm_host.h"
#include "lib/rcu.h"

#define ITERATIONS 20000

static const uint64_t values[] = {
	0, 1, 4095, 4096, 4097, 8192, 2ULL << 20, (2ULL << 20) + 4096, 1ULL << 30,
	1ULL << 47, (1ULL << 47) - 4096, 1ULL << 52, 1ULL << 60, 1ULL << 62,
	(1ULL << 63) - 4096, 1ULL << 63, ~0ULL, ~0xfffULL, 0x7fffffffffffffffULL,
};

static uint64_t pick(unsigned *seed)
{
	uint64_t v = values[(unsigned)rand_r(seed) % ARRAY_SIZE(values)];

	/* Mostly small, page-aligned values so that some calls succeed. */
	return (rand_r(seed) & 1) ? v : ((uint64_t)(rand_r(seed) % 64) << 12);
}

struct snapshot {
	uint32_t nr_slots;
	uint64_t slot_sig; /* a digest of every slot's fields */
	uint64_t attr_runs, attr_sig;
	struct kvm_invalidate_state inv;
	uint64_t gmem_pages;
};

static int attr_digest(void *ctx, uint64_t s, uint64_t e, uint64_t v)
{
	uint64_t *d = ctx;

	*d = *d * 1000003 ^ s ^ (e << 1) ^ (v << 2);
	return 0;
}

static int slot_digest(struct kvm_memory_slot *m, void *ctx)
{
	uint64_t *sig = ctx;

	*sig = *sig * 31 ^ m->base_gfn ^ (m->npages << 3) ^ m->userspace_addr ^
	       ((uint64_t)m->flags << 40) ^ m->id ^ m->gmem.pgoff;
	return 0;
}

static void snap(struct kvm *kvm, struct kvm_gmem *g, struct snapshot *s)
{
	struct kvm_memslots *slots;

	gm_rcu_read_lock();
	slots = kvm_memslots(kvm, 0);
	s->nr_slots = kvm_memslots_nr(slots);
	s->slot_sig = 0;
	kvm_memslots_for_each(slots, slot_digest, &s->slot_sig);
	s->attr_runs = rangemap_nr_runs(&kvm->mem_attr_array);
	s->attr_sig = 0;
	rangemap_for_each(&kvm->mem_attr_array, 0, ~0ULL, attr_digest, &s->attr_sig);
	gm_rcu_read_unlock();
	kvm_mmu_invalidate_state(kvm, &s->inv);
	s->gmem_pages = kvm_gmem_nr_allocated(g);
}

static void assert_same(const struct snapshot *a, const struct snapshot *b)
{
	ASSERT_EQ(a->nr_slots, b->nr_slots);
	ASSERT_EQ(a->slot_sig, b->slot_sig);
	ASSERT_EQ(a->attr_runs, b->attr_runs);
	ASSERT_EQ(a->attr_sig, b->attr_sig);
	ASSERT_EQ(a->inv.seq, b->inv.seq);
	ASSERT_EQ(a->inv.in_progress, 0);
	ASSERT_EQ(b->inv.in_progress, 0);
	ASSERT_EQ(a->gmem_pages, b->gmem_pages);
}

/* One random call of kind *kind; returns its result (0 or -errno). */
static int random_call(struct kvm *kvm, struct kvm_gmem *g, unsigned *seed, int *kind)
{
	switch ((*kind = rand_r(seed) % 3)) {
	case 0: {
		struct kvm_userspace_memory_region2 r = { 0 };
		struct kvm_gmem_ref ref = { .err = 0, .gmem = g };

		r.slot = (uint32_t)(rand_r(seed) % 8) | ((rand_r(seed) % 4 == 0) ? 1u << 16 : 0);
		r.flags = (uint32_t)(rand_r(seed) % 16);
		r.guest_phys_addr = pick(seed);
		r.memory_size = pick(seed);
		r.userspace_addr = pick(seed);
		r.guest_memfd_offset = pick(seed);
		return kvm_set_memory_region(kvm, &r, rand_r(seed) % 4 != 0, &ref);
	}
	case 1: {
		struct kvm_memory_attributes a = { pick(seed), pick(seed),
						   (rand_r(seed) & 1) ? KVM_MEMORY_ATTRIBUTE_PRIVATE
								      : pick(seed) & 0xf,
						   (rand_r(seed) % 8) ? 0 : pick(seed) };

		return kvm_vm_ioctl_set_mem_attributes(kvm, &a);
	}
	default: {
		static const int modes[] = { 0, FALLOC_FL_KEEP_SIZE,
					     FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
					     FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, 0x80 };

		return kvm_gmem_fallocate(g, modes[(unsigned)rand_r(seed) % ARRAY_SIZE(modes)],
					  (int64_t)pick(seed), (int64_t)pick(seed));
	}
	}
}

static void run_profile(const char *profile)
{
	struct kvm_create_guest_memfd cg = { .size = 64ULL << 20 };
	struct snapshot before, after;
	unsigned seed = 20261125;
	long failures[3] = { 0 }, successes[3] = { 0 };
	struct kvm_gmem *g;
	struct kvm *kvm;

	ASSERT_EQ(gm_config_set(profile, "KVM_SW_PROTECTED_VM=y KVM_SMM=y", NULL), 0);
	ASSERT_EQ(kvm_create_vm(KVM_X86_SW_PROTECTED_VM, &kvm), 0);
	ASSERT_EQ(kvm_gmem_create(kvm, &cg, &g), 0);
	for (int i = 0; i < ITERATIONS; i++) {
		int r, kind;

		snap(kvm, g, &before);
		r = random_call(kvm, g, &seed, &kind);
		snap(kvm, g, &after);
		if (r) {
			failures[kind]++;
			assert_same(&before, &after);
		} else {
			successes[kind]++;
			ASSERT_EQ(after.inv.in_progress, 0);
		}
	}
	/* Each kind of call must see both outcomes, or it tests nothing. */
	for (int k = 0; k < 3; k++) {
		DIAG("kind %d: %ld failed, %ld succeeded\n", k, failures[k], successes[k]);
		ASSERT_TRUE(failures[k] > 100);
		ASSERT_TRUE(successes[k] > 20);
	}
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

TEST(test_bad_input_68)
{
	run_profile("linux-6.8");
}

TEST(test_bad_input_612)
{
	run_profile("linux-6.12");
}

TEST(test_bad_input_618)
{
	run_profile("linux-6.18");
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
