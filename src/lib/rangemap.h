/* SPDX-License-Identifier: MIT */
/*
 * rangemap: a sparse map from 64-bit keys to nonzero 64-bit values, stored
 * as sorted, disjoint, maximal runs [start, end) -> value.  Used for memory
 * attributes (gfn -> attributes) and guest_memfd bindings (index -> slot).
 *
 * The runs live in one immutable array published through RCU: readers
 * (lookups on the fault path) take no lock; a writer builds a new array,
 * publishes it, and frees the old one after a grace period.  So the cost of
 * one update grows with the number of runs, never with the number of keys
 * it covers, and an update either happens completely or not at all.
 *
 * Writers must be serialised by the caller (the owning object's lock).
 */
#ifndef GM_LIB_RANGEMAP_H
#define GM_LIB_RANGEMAP_H

#include <stdbool.h>
#include <stdint.h>

struct rangemap_run {
	uint64_t start;
	uint64_t end; /* exclusive */
	uint64_t value; /* never 0: 0 means "absent" */
};

struct rangemap_array {
	uint64_t nr;
	struct rangemap_run runs[];
};

struct rangemap {
	struct rangemap_array *array; /* RCU-published; NULL when empty */
};

void rangemap_init(struct rangemap *map);
/* Context: no readers left (the owner is being destroyed). */
void rangemap_fini(struct rangemap *map);

/*
 * Value at @key, 0 if absent.
 * Context: inside gm_rcu_read_lock(), or with the writer's lock held.
 */
uint64_t rangemap_lookup(const struct rangemap *map, uint64_t key);

/*
 * Replace the value of every key in [start, end) by @value (0 erases).
 * Returns 0 or -ENOMEM (map unchanged).  Context: writer's lock held.
 */
int rangemap_store(struct rangemap *map, uint64_t start, uint64_t end, uint64_t value);

/*
 * The same in two steps, for callers that must allocate before a point of
 * no return: prepare builds the new array (-ENOMEM, nothing changed),
 * commit publishes it.  The writer's lock must be held across both.
 */
int rangemap_prepare(const struct rangemap *map, uint64_t start, uint64_t end,
		     uint64_t value, struct rangemap_array **out);
void rangemap_commit(struct rangemap *map, struct rangemap_array *prepared);
/* Drop a prepared array that will not be committed. */
void rangemap_discard(struct rangemap_array *prepared);

/* True if every key in [start, end) maps to exactly @value (0: none mapped). */
bool rangemap_range_is(const struct rangemap *map, uint64_t start, uint64_t end,
		       uint64_t value);

/*
 * Call @fn for each run intersecting [start, end), clipped to it, in
 * ascending order; stops early and returns fn's value if it is nonzero.
 */
typedef int (*rangemap_fn)(void *ctx, uint64_t start, uint64_t end, uint64_t value);
int rangemap_for_each(const struct rangemap *map, uint64_t start, uint64_t end,
		      rangemap_fn fn, void *ctx);

/* Number of runs (for tests and introspection). */
uint64_t rangemap_nr_runs(const struct rangemap *map);

#endif
