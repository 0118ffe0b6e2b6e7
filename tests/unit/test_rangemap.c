/* SPDX-License-Identifier: MIT */
/* rangemap: runs stay sorted, disjoint and maximal; checked against a model. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "harness.h"

#include "lib/rangemap.h"

#define MODEL_KEYS 512

static void check_against_model(const struct rangemap *m, const uint64_t *model)
{
	for (uint64_t k = 0; k < MODEL_KEYS; k++)
		ASSERT_EQ(rangemap_lookup(m, k), model[k]);
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
	struct rangemap_array *next;
	rangemap_init(&m);
	rangemap_store(&m, 0, 10, 8);
	ASSERT_EQ(rangemap_prepare(&m, 5, 15, 0, &next), 0);
	ASSERT_EQ(rangemap_lookup(&m, 7), 8);
	rangemap_commit(&m, next);
	ASSERT_EQ(rangemap_lookup(&m, 7), 0);
	ASSERT_EQ(rangemap_lookup(&m, 4), 8);
	rangemap_fini(&m);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
