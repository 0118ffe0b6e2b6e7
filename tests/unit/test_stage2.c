/* SPDX-License-Identifier: MIT */
/*
 * Stage-2 tables: install/lookup/zap at every leaf size, and the remote
 * flush guarantee: after kvm_flush_remote_tlbs() no reader still uses a
 * translation zapped before it (checked by poisoning the old page).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"

#include "core/kvm_host.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"
#include "lib/lockdep.h"

static int setup(void **state)
{
	struct kvm *kvm;

	ASSERT_EQ(kvm_create_vm(0, &kvm), 0);
	*state = kvm;
	return 0;
}

static int teardown(void **state)
{
	kvm_put_kvm(*state);
	return 0;
}

static uint64_t lookup(struct kvm *kvm, gfn_t gfn, int *level)
{
	uint64_t pte;

	gm_rcu_read_lock();
	pte = kvm_mmu_lookup(kvm, gfn, level);
	gm_rcu_read_unlock();
	return pte;
}

static bool zap(struct kvm *kvm, gfn_t s, gfn_t e)
{
	bool r;

	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	r = kvm_mmu_zap_gfn_range(kvm, s, e);
	gm_rwlock_unlock(&kvm->mmu_lock);
	return r;
}

/* Install at @level; *@mapped (if given) gets the level really mapped. */
static int install_as(struct kvm *kvm, gfn_t gfn, int level, uint64_t hva, int *mapped)
{
	int r;

	gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
	gm_rcu_read_lock();
	r = kvm_mmu_install(kvm, gfn, &level, hva, S2_WRITABLE);
	gm_rcu_read_unlock();
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (mapped)
		*mapped = level;
	return r;
}

static int install(struct kvm *kvm, gfn_t gfn, int level, uint64_t hva)
{
	return install_as(kvm, gfn, level, hva, NULL);
}

TEST_F(test_levels, setup, teardown)
{
	struct kvm *kvm = *state;
	int level = 0;

	ASSERT_EQ(install(kvm, 0x12345, 1, 0x7000000000ULL), 0);
	ASSERT_EQ(lookup(kvm, 0x12345, &level) & S2_ADDR_MASK, 0x7000000000ULL);
	ASSERT_EQ(level, 1);
	ASSERT_EQ(lookup(kvm, 0x12346, &level), 0);
	ASSERT_EQ(install(kvm, 0x12345, 1, 0x7000001000ULL), -EAGAIN); /* occupied */
	/* 2 MiB leaf covering gfns 0x400..0x5ff. */
	ASSERT_EQ(install(kvm, 0x400, 2, 0x7000200000ULL), 0);
	ASSERT_EQ(lookup(kvm, 0x5ff, &level) & S2_ADDR_MASK, 0x7000200000ULL);
	ASSERT_EQ(level, 2);
	/* 1 GiB leaf at gfn 0x80000 (gpa 2 GiB), in the top part of the table. */
	ASSERT_EQ(install(kvm, 0x80000, 3, 0x7040000000ULL), 0);
	ASSERT_EQ(lookup(kvm, 0xbffff, &level) & S2_ADDR_MASK, 0x7040000000ULL);
	ASSERT_EQ(level, 3);
	ASSERT_EQ(kvm_mmu_nr_leaves(kvm), 3);
	/* A zap touching one page of a huge leaf clears the whole leaf. */
	ASSERT_TRUE(zap(kvm, 0x500, 0x501));
	ASSERT_EQ(lookup(kvm, 0x400, &level), 0);
	/*
	 * Nothing left there, but the clear above is not flushed yet: a
	 * second zapper must flush too before freeing what it punched.
	 */
	ASSERT_TRUE(zap(kvm, 0x500, 0x501));
	kvm_flush_remote_tlbs(kvm);
	ASSERT_FALSE(zap(kvm, 0x500, 0x501));
	/* Zap everything: tables detached and freed after a grace period. */
	ASSERT_TRUE(zap(kvm, 0, ~0ULL));
	ASSERT_EQ(kvm_mmu_nr_leaves(kvm), 0);
	ASSERT_EQ(lookup(kvm, 0x12345, &level), 0);
	kvm_flush_remote_tlbs(kvm);
}

TEST_F(test_huge_over_table_falls_back, setup, teardown)
{
	struct kvm *kvm = *state;
	int level;

	ASSERT_EQ(install(kvm, 0x601, 1, 0x7000401000ULL), 0);
	/* A 2 MiB install where 4 KiB leaves exist maps just the page. */
	ASSERT_EQ(install_as(kvm, 0x600, 2, 0x7000400000ULL, &level), 0);
	ASSERT_EQ(level, 1);
	ASSERT_EQ(lookup(kvm, 0x600, &level) & S2_ADDR_MASK, 0x7000400000ULL);
	ASSERT_EQ(level, 1);
}

#define POISON 0xdeadbeefULL

struct flush_ctx {
	struct kvm *kvm;
	int stop;
	uint64_t bad, hits;
};

static void *reader(void *arg)
{
	struct flush_ctx *c = arg;

	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		int level;
		uint64_t pte;

		gm_rcu_read_lock();
		pte = kvm_mmu_lookup(c->kvm, 42, &level);
		if (pte) {
			uint64_t *page = (uint64_t *)(uintptr_t)(pte & S2_ADDR_MASK);
			uint64_t v = __atomic_load_n(page, __ATOMIC_RELAXED);

			c->hits++;
			if (v == POISON)
				c->bad++;
		}
		gm_rcu_read_unlock();
	}
	return NULL;
}

TEST_F(test_flush_guarantee, setup, teardown)
{
	struct kvm *kvm = *state;
	struct flush_ctx c = { kvm, 0, 0, 0 };
	static uint64_t pages[2][512] __attribute__((aligned(4096)));
	pthread_t t;

	pthread_create(&t, NULL, reader, &c);
	for (int i = 0; i < 2000; i++) {
		uint64_t *p = pages[i & 1];

		__atomic_store_n(&p[0], (uint64_t)i, __ATOMIC_RELAXED);
		ASSERT_EQ(install(kvm, 42, 1, (uint64_t)(uintptr_t)p), 0);
		ASSERT_TRUE(zap(kvm, 42, 43));
		kvm_flush_remote_tlbs(kvm);
		/* No reader may still use the translation: poison the page. */
		__atomic_store_n(&p[0], POISON, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	ASSERT_EQ(c.bad, 0);
}

/*
 * 4 KiB leaves installed and zapped at random over 4 GiB against a bitmap:
 * the per-level count (kept per level-1 table in its parent entry, so a
 * zap that detaches tables does not scan them) stays exact, and tables
 * reused after a flush come back empty (no stale translation).
 */
TEST_F(test_leaf_counts_model, setup, teardown)
{
	enum { NR = 1 << 20, OPS = 30000 };
	struct kvm *kvm = *state;
	static uint64_t bits[NR / 64];
	uint64_t seed = 42, count = 0;

	memset(bits, 0, sizeof(bits));
	for (int op = 0; op < OPS; op++) {
		uint64_t r, gfn, n;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		r = seed >> 20;
		gfn = r % NR;
		if (r % 100 < 85) {
			ASSERT_EQ(install(kvm, gfn, 1, 0x7000000000ULL + (gfn << 12)), 0);
			if (!(bits[gfn / 64] & (1ULL << (gfn % 64))))
				count++;
			bits[gfn / 64] |= 1ULL << (gfn % 64);
		} else {
			/* Small zaps, whole tables, whole 1 GiB subtrees. */
			n = r % 3 == 0 ? r / 7 % 16 + 1 : r % 3 == 1 ? 512 * (r / 7 % 4 + 1) : 1 << 18;
			if (r % 3)
				gfn &= ~(n - 1) & ~511ULL;
			n = gfn + n > NR ? NR - gfn : n;
			zap(kvm, gfn, gfn + n);
			for (uint64_t g = gfn; g < gfn + n; g++) {
				count -= !!(bits[g / 64] & (1ULL << (g % 64)));
				bits[g / 64] &= ~(1ULL << (g % 64));
			}
			if (r % 5 == 0)
				kvm_flush_remote_tlbs(kvm); /* detached tables go back for reuse */
		}
		ASSERT_EQ(kvm_mmu_nr_leaves_level(kvm, S2_PG_LEVEL_4K), count);
		if (op % 16 == 0) {
			int level;

			for (int k = 0; k < 64; k++) {
				uint64_t g = (gfn + (uint64_t)k * 7919) % NR;
				uint64_t pte = lookup(kvm, g, &level);

				ASSERT_EQ(pte != 0, !!(bits[g / 64] & (1ULL << (g % 64))));
				if (pte)
					ASSERT_EQ(pte & S2_ADDR_MASK, 0x7000000000ULL + (g << 12));
			}
		}
	}
	zap(kvm, 0, NR);
	kvm_flush_remote_tlbs(kvm);
	ASSERT_EQ(kvm_mmu_nr_leaves(kvm), 0);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
