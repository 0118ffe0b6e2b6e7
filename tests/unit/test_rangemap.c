/* SPDX-License-Identifier: MIT */
/* rangemap: runs stay sorted, disjoint and maximal; checked against a model. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"

#include "lib/rangemap.h"
#include "lib/rcu.h"

#define MODEL_KEYS 512

/* Sanitizers slow every store down 5-50x: fewer steps there. */
#if defined(GM_TSAN)
#define STEPS_DIV 10
#elif defined(__SANITIZE_ADDRESS__)
#define STEPS_DIV 4
#else
#define STEPS_DIV 1
#endif

static void check_against_model(const struct rangemap *m, const uint64_t *model)
{
	for (uint64_t k = 0; k < MODEL_KEYS; k++)
		ASSERT_EQ(rangemap_lookup(m, k), model[k]);
	ASSERT_EQ(rangemap_check_invariants(m), 0);
	/* Maximal runs: the number of runs equals the number of value changes. */
	uint64_t runs = 0;
	for (uint64_t k = 0; k < MODEL_KEYS; k++)
		if (model[k] && (k == 0 || model[k - 1] != model[k]))
			runs++;
	ASSERT_EQ(rangemap_nr_runs(m), runs);
}

TEST(test_store_split_merge)
{
	struct rangemap m;
	rangemap_init(&m);
	ASSERT_EQ(rangemap_store(&m, 10, 20, 8), 0);
	ASSERT_EQ(rangemap_lookup(&m, 9), 0);
	ASSERT_EQ(rangemap_lookup(&m, 10), 8);
	ASSERT_EQ(rangemap_lookup(&m, 19), 8);
	ASSERT_EQ(rangemap_lookup(&m, 20), 0);
	/* Split in the middle, then heal: back to one run. */
	ASSERT_EQ(rangemap_store(&m, 14, 15, 0), 0);
	ASSERT_EQ(rangemap_nr_runs(&m), 2);
	ASSERT_EQ(rangemap_store(&m, 14, 15, 8), 0);
	ASSERT_EQ(rangemap_nr_runs(&m), 1);
	ASSERT_TRUE(rangemap_range_is(&m, 10, 20, 8));
	ASSERT_FALSE(rangemap_range_is(&m, 9, 20, 8));
	ASSERT_TRUE(rangemap_range_is(&m, 0, 10, 0));
	ASSERT_FALSE(rangemap_range_is(&m, 0, 11, 0));
	/* Huge range: cost independent of the number of keys. */
	ASSERT_EQ(rangemap_store(&m, 0, UINT64_MAX, 8), 0);
	ASSERT_EQ(rangemap_nr_runs(&m), 1);
	ASSERT_TRUE(rangemap_range_is(&m, 1ULL << 40, 1ULL << 62, 8));
	ASSERT_EQ(rangemap_store(&m, 0, UINT64_MAX, 0), 0);
	ASSERT_EQ(rangemap_nr_runs(&m), 0);
	rangemap_fini(&m);
}

static int collect(void *ctx, uint64_t s, uint64_t e, uint64_t v)
{
	uint64_t *acc = ctx;
	acc[0] += e - s;
	acc[1] += v;
	return s == 100 ? 7 : 0;
}

TEST(test_for_each_clips)
{
	struct rangemap m;
	uint64_t acc[2] = { 0, 0 };
	rangemap_init(&m);
	rangemap_store(&m, 0, 50, 1);
	rangemap_store(&m, 60, 70, 2);
	ASSERT_EQ(rangemap_for_each(&m, 40, 65, collect, acc), 0);
	ASSERT_EQ(acc[0], 10 + 5);
	ASSERT_EQ(acc[1], 3);
	rangemap_store(&m, 100, 110, 3);
	ASSERT_EQ(rangemap_for_each(&m, 0, 200, collect, acc), 7); /* early stop */
	rangemap_fini(&m);
}

TEST(test_random_against_model)
{
	static uint64_t model[MODEL_KEYS];
	struct rangemap m;
	unsigned seed = 12345;
	rangemap_init(&m);
	for (int i = 0; i < 4000; i++) {
		uint64_t s = (uint64_t)rand_r(&seed) % MODEL_KEYS;
		uint64_t e = s + 1 + (uint64_t)rand_r(&seed) % 64;
		uint64_t v = (uint64_t)rand_r(&seed) % 3; /* 0 erases */
		if (e > MODEL_KEYS)
			e = MODEL_KEYS;
		ASSERT_EQ(rangemap_store(&m, s, e, v), 0);
		for (uint64_t k = s; k < e; k++)
			model[k] = v;
		if (i % 50 == 0)
			check_against_model(&m, model);
		ASSERT_EQ(rangemap_range_is(&m, s, e, v), 1);
	}
	check_against_model(&m, model);
	rangemap_fini(&m);
}

TEST(test_prepare_is_invisible_until_commit)
{
	struct rangemap m;
	struct rangemap_update *next;
	rangemap_init(&m);
	rangemap_store(&m, 0, 10, 8);
	ASSERT_EQ(rangemap_prepare(&m, 5, 15, 0, &next), 0);
	ASSERT_EQ(rangemap_lookup(&m, 7), 8);
	rangemap_commit(&m, next);
	ASSERT_EQ(rangemap_lookup(&m, 7), 0);
	ASSERT_EQ(rangemap_lookup(&m, 4), 8);
	rangemap_fini(&m);
}


/*
 * A brute-force model over many more keys, with operations shaped to build
 * deep trees (single keys, as a guest converting page by page) and to tear
 * them down (wide erases), so that splits, neighbour borrowing, drops of
 * whole subtrees and root collapses all happen.  Every step is checked for
 * the tree's invariants; the contents every few steps.
 */
#define BIG_KEYS 20000

static uint64_t big_model[BIG_KEYS];

static void big_check(const struct rangemap *m)
{
	uint64_t runs = 0;

	for (uint64_t k = 0; k < BIG_KEYS; k++) {
		ASSERT_EQ(rangemap_lookup(m, k), big_model[k]);
		if (big_model[k] && (k == 0 || big_model[k - 1] != big_model[k]))
			runs++;
	}
	ASSERT_EQ(rangemap_nr_runs(m), runs);
}

static void big_random_op(unsigned *seed, uint64_t *s, uint64_t *e, uint64_t *v)
{
	int kind = rand_r(seed) % 16;

	*s = (uint64_t)rand_r(seed) % BIG_KEYS;
	*v = (uint64_t)rand_r(seed) % 3;
	if (kind < 12)
		*e = *s + 1; /* page by page */
	else if (kind < 15)
		*e = *s + 1 + (uint64_t)rand_r(seed) % 200;
	else
		*e = *s + 1 + (uint64_t)rand_r(seed) % BIG_KEYS; /* wide */
	if (*e > BIG_KEYS)
		*e = BIG_KEYS;
}

TEST(test_deep_random_against_model)
{
	struct rangemap m;
	unsigned seed = 777;
	memset(big_model, 0, sizeof(big_model));
	rangemap_init(&m);
	for (int i = 0; i < 60000 / STEPS_DIV; i++) {
		uint64_t s, e, v;

		big_random_op(&seed, &s, &e, &v);
		/* Alternate phases: fragment, then mostly erase. */
		if ((i / (10000 / STEPS_DIV)) % 2 && v && rand_r(&seed) % 4)
			v = 0;
		if (i % 3 == 0) { /* as the attribute owner: no update if already so */
			struct rangemap_update *u;
			bool same = true;
			int r;

			/* From the model: range_is shares its check with prepare_change. */
			for (uint64_t k = s; k < e; k++)
				same &= big_model[k] == v;
			ASSERT_EQ(rangemap_range_is(&m, s, e, v), same);
			r = rangemap_prepare_change(&m, s, e, v, &u);

			ASSERT_EQ(r, same ? 1 : 0);
			if (!r)
				rangemap_commit(&m, u);
		} else {
			ASSERT_EQ(rangemap_store(&m, s, e, v), 0);
		}
		for (uint64_t k = s; k < e; k++)
			big_model[k] = v;
		if (i % 16 == 0 || e - s > 200)
			ASSERT_EQ(rangemap_check_invariants(&m), 0);
		ASSERT_TRUE(rangemap_range_is(&m, s, e, v));
		/* The writer's search from the stored leaf, near and far. */
		for (int j = 0; j < 2; j++) {
			uint64_t d = (uint64_t)rand_r(&seed) % (j ? BIG_KEYS : 600);
			uint64_t k = s >= d ? s - d : 0;
			uint64_t len = 1 + (uint64_t)rand_r(&seed) % 700; /* GM_MIN() evaluates twice */
			uint64_t ke = GM_MIN(k + len, BIG_KEYS);
			bool uniform = true;

			for (uint64_t q = k; q < ke; q++)
				uniform &= big_model[q] == big_model[k];
			ASSERT_EQ(rangemap_range_uniform_near(&m, k, ke), uniform);
		}
		/* Half the time as the attribute owner does: recycled nodes. */
		if ((i / 5000) % 2)
			rangemap_reclaim(&m);
		if (i % 2000 == 0) {
			big_check(&m);
			gm_synchronize_rcu(); /* bounds what TSan builds defer */
		}
	}
	big_check(&m);
	/* Every other key: the most runs this key space can hold. */
	for (uint64_t k = 0; k < BIG_KEYS; k++)
		big_model[k] = k % 2 ? 0 : 1 + k % 3;
	for (uint64_t k = 0; k < BIG_KEYS; k++)
		ASSERT_EQ(rangemap_store(&m, k, k + 1, big_model[k]), 0);
	ASSERT_EQ(rangemap_check_invariants(&m), 0);
	big_check(&m);
	ASSERT_EQ(rangemap_store(&m, 0, BIG_KEYS, 0), 0);
	ASSERT_EQ(rangemap_nr_runs(&m), 0);
	ASSERT_EQ(rangemap_memory_bytes(&m), 0);
	rangemap_fini(&m);
	gm_synchronize_rcu(); /* frees what TSan builds deferred */
}

/* for_each and range_is across leaf boundaries, against the model. */
static int collect_runs(void *ctx, uint64_t s, uint64_t e, uint64_t v)
{
	uint64_t *cover = ctx;

	for (uint64_t k = s; k < e; k++) {
		if (cover[k] || big_model[k] != v)
			return -1;
		cover[k] = v;
	}
	return 0;
}

TEST(test_deep_for_each)
{
	static uint64_t cover[BIG_KEYS];
	struct rangemap m;
	unsigned seed = 4242;
	memset(big_model, 0, sizeof(big_model));
	rangemap_init(&m);
	for (int i = 0; i < 8000; i++) {
		uint64_t s, e, v;

		big_random_op(&seed, &s, &e, &v);
		ASSERT_EQ(rangemap_store(&m, s, e, v), 0);
		for (uint64_t k = s; k < e; k++)
			big_model[k] = v;
	}
	for (int i = 0; i < 200; i++) {
		uint64_t s = (uint64_t)rand_r(&seed) % BIG_KEYS;
		uint64_t e = s + (uint64_t)rand_r(&seed) % (BIG_KEYS - s) + 1;
		bool none = true, uniform = true;

		memset(cover, 0, sizeof(cover));
		ASSERT_EQ(rangemap_for_each(&m, s, e, collect_runs, cover), 0);
		for (uint64_t k = s; k < e; k++) {
			ASSERT_EQ(cover[k], big_model[k]);
			none &= big_model[k] == 0;
			uniform &= big_model[k] == big_model[s];
		}
		ASSERT_EQ(rangemap_range_is(&m, s, e, 0), none);
		if (big_model[s])
			ASSERT_EQ(rangemap_range_is(&m, s, e, big_model[s]), uniform);
		ASSERT_EQ(rangemap_range_uniform(&m, s, e), uniform);
		/* Short ranges too: most of them inside one run or gap. */
		e = s + 1 + (uint64_t)rand_r(&seed) % 8;
		e = GM_MIN(e, BIG_KEYS);
		uniform = true;
		for (uint64_t k = s; k < e; k++)
			uniform &= big_model[k] == big_model[s];
		ASSERT_EQ(rangemap_range_uniform(&m, s, e), uniform);
	}
	rangemap_fini(&m);
}

/* Any allocation of a store may fail: the map must then be unchanged. */
TEST(test_enomem_changes_nothing)
{
	struct rangemap m;
	unsigned seed = 99;
	int failures = 0;
	memset(big_model, 0, sizeof(big_model));
	rangemap_init(&m);
	for (int i = 0; i < 6000 / STEPS_DIV; i++) {
		uint64_t s, e, v;
		int r;

		big_random_op(&seed, &s, &e, &v);
		rangemap_fail_nth_alloc = 1 + rand_r(&seed) % 12;
		r = rangemap_store(&m, s, e, v);
		rangemap_fail_nth_alloc = 0;
		ASSERT_EQ(rangemap_check_invariants(&m), 0);
		if (r) {
			ASSERT_EQ(r, -ENOMEM);
			failures++;
		} else {
			for (uint64_t k = s; k < e; k++)
				big_model[k] = v;
		}
		if (i % 500 == 0)
			big_check(&m);
	}
	big_check(&m);
	ASSERT_TRUE(failures > 100 / STEPS_DIV); /* the injection really hit */
	rangemap_fini(&m);
	gm_synchronize_rcu();
}

/*
 * Chained updates (memslot and guest_memfd binding changes): a store
 * prepared on top of one not yet committed, committed after it or aborted
 * before it, with allocations failing anywhere, in place or with a new
 * root.  The map must always equal the model of what was committed.
 */
TEST(test_chained_updates_against_model)
{
	struct rangemap m;
	unsigned seed = 1234;
	int committed = 0, failures = 0;
	memset(big_model, 0, sizeof(big_model));
	rangemap_init(&m);
	for (int i = 0; i < 20000 / STEPS_DIV; i++) {
		struct rangemap_update *u1, *u2;
		uint64_t s1, e1, v1, s2, e2, v2;
		int what = rand_r(&seed) % 4, r;

		big_random_op(&seed, &s1, &e1, &v1);
		big_random_op(&seed, &s2, &e2, &v2);
		if (rand_r(&seed) % 2) { /* often the same range: bind, then undo */
			s2 = s1;
			e2 = e1;
		}
		if (rand_r(&seed) % 8 == 0)
			rangemap_fail_nth_alloc = 1 + rand_r(&seed) % 10;
		r = rangemap_prepare(&m, s1, e1, v1, &u1);
		if (r) {
			rangemap_fail_nth_alloc = 0;
			ASSERT_EQ(r, -ENOMEM);
			failures++;
			continue;
		}
		r = rangemap_prepare_next(u1, s2, e2, v2, &u2);
		rangemap_fail_nth_alloc = 0;
		/* Nothing visible before the commit, whatever happened. */
		ASSERT_EQ(rangemap_lookup(&m, s1), big_model[s1]);
		ASSERT_EQ(rangemap_lookup(&m, s2), big_model[s2]);
		if (r) {
			ASSERT_EQ(r, -ENOMEM);
			failures++;
			u2 = NULL;
		}
		if (what == 0 || (what == 1 && !u2)) { /* both dropped */
			rangemap_abort(u2);
			rangemap_abort(u1);
		} else {
			rangemap_commit(&m, u1);
			for (uint64_t k = s1; k < e1; k++)
				big_model[k] = v1;
			committed++;
			if (what == 2 || !u2) {
				rangemap_abort(u2);
			} else {
				rangemap_commit(&m, u2);
				for (uint64_t k = s2; k < e2; k++)
					big_model[k] = v2;
				committed++;
			}
		}
		if (i % 8 == 0)
			ASSERT_EQ(rangemap_check_invariants(&m), 0);
		if (i % 4 == 0)
			rangemap_reclaim(&m);
		if (i % 1000 == 0) {
			big_check(&m);
			gm_synchronize_rcu(); /* bounds what TSan builds defer */
		}
	}
	ASSERT_EQ(rangemap_check_invariants(&m), 0);
	big_check(&m);
	ASSERT_TRUE(committed > 1000 / STEPS_DIV);
	ASSERT_TRUE(failures > 20 / STEPS_DIV); /* the injection really hit */
	rangemap_fini(&m);
	gm_synchronize_rcu();
}

/*
 * 1,000,000 runs (100,000 under TSan, whose stores are 50x slower): the
 * memory bound of 64 bytes per run, before and after random conversions.
 */
#ifdef GM_TSAN
#define MANY_RUNS 100000ULL
#else
#define MANY_RUNS 1000000ULL
#endif

TEST(test_million_runs_memory)
{
	struct rangemap m;
	unsigned seed = 5;
	rangemap_init(&m);
	for (uint64_t k = 0; k < 2 * MANY_RUNS; k += 2) {
		ASSERT_EQ(rangemap_store(&m, k, k + 1, 8), 0);
		if (k % 200000 == 0)
			gm_synchronize_rcu();
	}
	ASSERT_EQ(rangemap_nr_runs(&m), MANY_RUNS);
	DIAG("%llu runs: %.1f bytes/run", MANY_RUNS,
		      (double)rangemap_memory_bytes(&m) / (double)MANY_RUNS);
	ASSERT_TRUE(rangemap_memory_bytes(&m) <= 64 * MANY_RUNS);
	ASSERT_EQ(rangemap_check_invariants(&m), 0);
	/* Random conversions in the middle keep it within the bound. */
	for (uint64_t i = 0; i < MANY_RUNS / 5; i++) {
		uint64_t k = (uint64_t)rand_r(&seed) % (2 * MANY_RUNS);

		ASSERT_EQ(rangemap_store(&m, k, k + 1, k % 2 ? 0 : 8), 0);
		if (i % 100000 == 0)
			gm_synchronize_rcu();
	}
	ASSERT_TRUE(rangemap_memory_bytes(&m) <= 64 * rangemap_nr_runs(&m));
	ASSERT_EQ(rangemap_check_invariants(&m), 0);
	rangemap_fini(&m);
	gm_synchronize_rcu();
}

/*
 * Lock-free readers during updates (run under TSan too): the writer keeps a
 * sentinel run that never changes and fragments/heals the keys below it,
 * recycling replaced nodes as the attribute owner does; every walk must be
 * sorted and disjoint, and the sentinel always visible.  Freed or recycled
 * nodes under a reader would be a race.  (Not "maximal": a walk sees each
 * store whole, but may see a later store in a later leaf and an earlier
 * one's neighbour before it, as with the kernel's maple tree.)
 */
#define RACE_KEYS 3000
#define SENTINEL 5000

static struct rangemap race_map;
static int race_stop;

static int race_walk(void *ctx, uint64_t s, uint64_t e, uint64_t v)
{
	uint64_t *last = ctx; /* end of the previous run */

	if (s >= e || !v || s < last[0])
		return -1;
	last[0] = e;
	return 0;
}

static void *race_reader(void *arg)
{
	long bad = 0;
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (!__atomic_load_n(&race_stop, __ATOMIC_ACQUIRE)) {
		uint64_t last[1] = { 0 };
		uint64_t k = (uint64_t)rand_r(&seed) % RACE_KEYS;

		gm_rcu_read_lock();
		if (rangemap_lookup(&race_map, SENTINEL) != 7)
			bad++;
		if (rangemap_for_each(&race_map, 0, ~0ULL, race_walk, last))
			bad++;
		(void)rangemap_lookup(&race_map, k);
		(void)rangemap_range_is(&race_map, k, k + 10, 1);
		gm_rcu_read_unlock();
	}
	return (void *)bad;
}

TEST(test_concurrent_readers)
{
	pthread_t t[2];
	unsigned seed = 31;
	rangemap_init(&race_map);
	ASSERT_EQ(rangemap_store(&race_map, SENTINEL, SENTINEL + 1, 7), 0);
	for (long i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&t[i], NULL, race_reader, (void *)(i + 1)), 0);
	for (int i = 0; i < 30000 / STEPS_DIV; i++) {
		uint64_t s = (uint64_t)rand_r(&seed) % RACE_KEYS;
		uint64_t e = s + 1 + (uint64_t)(rand_r(&seed) % 8 ? 0 : rand_r(&seed) % 500);

		ASSERT_EQ(rangemap_store(&race_map, s, GM_MIN(e, RACE_KEYS),
						(uint64_t)rand_r(&seed) % 3), 0);
		rangemap_reclaim(&race_map);
		if (i % 300 == 0)
			gm_synchronize_rcu();
	}
	__atomic_store_n(&race_stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++) {
		void *bad;

		ASSERT_EQ(pthread_join(t[i], &bad), 0);
		ASSERT_EQ((long)bad, 0);
	}
	ASSERT_EQ(rangemap_check_invariants(&race_map), 0);
	gm_synchronize_rcu();
	rangemap_fini(&race_map);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
