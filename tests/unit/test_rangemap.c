/* SPDX-License-Identifier: MIT */
/* rangemap: runs stay sorted, disjoint and maximal; checked against a model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "lib/rangemap.h"

#define MODEL_KEYS 512

static void check_against_model(const struct rangemap *m, const uint64_t *model)
{
	for (uint64_t k = 0; k < MODEL_KEYS; k++)
		assert_int_equal(rangemap_lookup(m, k), model[k]);
	/* Maximal runs: the number of runs equals the number of value changes. */
	uint64_t runs = 0;
	for (uint64_t k = 0; k < MODEL_KEYS; k++)
		if (model[k] && (k == 0 || model[k - 1] != model[k]))
			runs++;
	assert_int_equal(rangemap_nr_runs(m), runs);
}

static void test_store_split_merge(void **state)
{
	struct rangemap m;
	(void)state;
	rangemap_init(&m);
	assert_int_equal(rangemap_store(&m, 10, 20, 8), 0);
	assert_int_equal(rangemap_lookup(&m, 9), 0);
	assert_int_equal(rangemap_lookup(&m, 10), 8);
	assert_int_equal(rangemap_lookup(&m, 19), 8);
	assert_int_equal(rangemap_lookup(&m, 20), 0);
	/* Split in the middle, then heal: back to one run. */
	assert_int_equal(rangemap_store(&m, 14, 15, 0), 0);
	assert_int_equal(rangemap_nr_runs(&m), 2);
	assert_int_equal(rangemap_store(&m, 14, 15, 8), 0);
	assert_int_equal(rangemap_nr_runs(&m), 1);
	assert_true(rangemap_range_is(&m, 10, 20, 8));
	assert_false(rangemap_range_is(&m, 9, 20, 8));
	assert_true(rangemap_range_is(&m, 0, 10, 0));
	assert_false(rangemap_range_is(&m, 0, 11, 0));
	/* Huge range: cost independent of the number of keys. */
	assert_int_equal(rangemap_store(&m, 0, UINT64_MAX, 8), 0);
	assert_int_equal(rangemap_nr_runs(&m), 1);
	assert_true(rangemap_range_is(&m, 1ULL << 40, 1ULL << 62, 8));
	assert_int_equal(rangemap_store(&m, 0, UINT64_MAX, 0), 0);
	assert_int_equal(rangemap_nr_runs(&m), 0);
	rangemap_fini(&m);
}

static int collect(void *ctx, uint64_t s, uint64_t e, uint64_t v)
{
	uint64_t *acc = ctx;
	acc[0] += e - s;
	acc[1] += v;
	return s == 100 ? 7 : 0;
}

static void test_for_each_clips(void **state)
{
	struct rangemap m;
	uint64_t acc[2] = { 0, 0 };
	(void)state;
	rangemap_init(&m);
	rangemap_store(&m, 0, 50, 1);
	rangemap_store(&m, 60, 70, 2);
	assert_int_equal(rangemap_for_each(&m, 40, 65, collect, acc), 0);
	assert_int_equal(acc[0], 10 + 5);
	assert_int_equal(acc[1], 3);
	rangemap_store(&m, 100, 110, 3);
	assert_int_equal(rangemap_for_each(&m, 0, 200, collect, acc), 7); /* early stop */
	rangemap_fini(&m);
}

static void test_random_against_model(void **state)
{
	static uint64_t model[MODEL_KEYS];
	struct rangemap m;
	unsigned seed = 12345;
	(void)state;
	rangemap_init(&m);
	for (int i = 0; i < 4000; i++) {
		uint64_t s = (uint64_t)rand_r(&seed) % MODEL_KEYS;
		uint64_t e = s + 1 + (uint64_t)rand_r(&seed) % 64;
		uint64_t v = (uint64_t)rand_r(&seed) % 3; /* 0 erases */
		if (e > MODEL_KEYS)
			e = MODEL_KEYS;
		assert_int_equal(rangemap_store(&m, s, e, v), 0);
		for (uint64_t k = s; k < e; k++)
			model[k] = v;
		if (i % 50 == 0)
			check_against_model(&m, model);
		assert_int_equal(rangemap_range_is(&m, s, e, v), 1);
	}
	check_against_model(&m, model);
	rangemap_fini(&m);
}

static void test_prepare_is_invisible_until_commit(void **state)
{
	struct rangemap m;
	struct rangemap_array *next;
	(void)state;
	rangemap_init(&m);
	rangemap_store(&m, 0, 10, 8);
	assert_int_equal(rangemap_prepare(&m, 5, 15, 0, &next), 0);
	assert_int_equal(rangemap_lookup(&m, 7), 8);
	rangemap_commit(&m, next);
	assert_int_equal(rangemap_lookup(&m, 7), 0);
	assert_int_equal(rangemap_lookup(&m, 4), 8);
	rangemap_fini(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_store_split_merge),
		cmocka_unit_test(test_for_each_clips),
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_prepare_is_invisible_until_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
