/* SPDX-License-Identifier: MIT */
/*
 * The drop-in's record of memslot host ranges (src/uapi/hva.c), which
 * decides whether an munmap, mprotect or madvise of the VMM runs the mmu
 * notifier: ranges merge, queries see overlaps only, and a full record
 * turns into one hull that still covers every range it held.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"

#include "uapi/uapi.h"

#define PAGE 4096ull
#define BASE 0x100000000ull

TEST(test_hva_merge_and_overlap)
{
	uint64_t b = BASE;

	ASSERT_FALSE(gm_uapi_hva_noted(b, b + PAGE));
	gm_uapi_hva_note(b, b + 2 * PAGE);
	gm_uapi_hva_note(b + 4 * PAGE, b + 6 * PAGE);
	ASSERT_TRUE(gm_uapi_hva_noted(b + PAGE, b + PAGE + 1));
	/* Touching is not overlapping: [2, 4) lies between the two. */
	ASSERT_FALSE(gm_uapi_hva_noted(b + 2 * PAGE, b + 4 * PAGE));
	ASSERT_TRUE(gm_uapi_hva_noted(b + 3 * PAGE, b + 5 * PAGE));
	ASSERT_FALSE(gm_uapi_hva_noted(b + 6 * PAGE, b + 7 * PAGE));
	/* Bridging the gap makes one range: still exact at both ends. */
	gm_uapi_hva_note(b + 2 * PAGE, b + 4 * PAGE);
	ASSERT_TRUE(gm_uapi_hva_noted(b + 3 * PAGE, b + 3 * PAGE + 1));
	ASSERT_FALSE(gm_uapi_hva_noted(b - PAGE, b));
	ASSERT_FALSE(gm_uapi_hva_noted(b + 6 * PAGE, b + 8 * PAGE));
	/* Empty ranges are neither noted nor hit. */
	gm_uapi_hva_note(b + 9 * PAGE, b + 9 * PAGE);
	ASSERT_FALSE(gm_uapi_hva_noted(b + 9 * PAGE, b + 10 * PAGE));
	ASSERT_FALSE(gm_uapi_hva_noted(b + PAGE, b + PAGE));
	/* The listener's question agrees when the lock is free. */
	ASSERT_TRUE(gm_uapi_hva_maybe_noted(b, b + 1));
	ASSERT_FALSE(gm_uapi_hva_maybe_noted(b + 7 * PAGE, b + 8 * PAGE));
}

/*
 * More disjoint ranges than the record holds (1024): it never allocates,
 * so it becomes one hull.  A needless invalidation is harmless; a missed
 * one is not: every range noted must still be hit.
 */
TEST(test_hva_full_record_becomes_hull)
{
	const uint64_t b = 2 * BASE, n = 1500;

	gm_uapi_hva_note(BASE, BASE + PAGE);
	for (uint64_t i = 0; i < n; i++)
		gm_uapi_hva_note(b + 2 * i * PAGE, b + (2 * i + 1) * PAGE);
	for (uint64_t i = 0; i < n; i++)
		ASSERT_TRUE(gm_uapi_hva_noted(b + 2 * i * PAGE, b + (2 * i + 1) * PAGE));
	/* Noted before the record filled: inside the hull. */
	ASSERT_TRUE(gm_uapi_hva_noted(BASE, BASE + PAGE));
	/* Above everything noted: never hit. */
	ASSERT_FALSE(gm_uapi_hva_noted(b + 2 * n * PAGE, b + (2 * n + 1) * PAGE));
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
