/* SPDX-License-Identifier: MIT */
/*
 * rangemap: a sparse map from 64-bit keys to nonzero 64-bit values, stored
 * as sorted, disjoint, maximal runs [start, end) -> value.  Used for memory
 * attributes (gfn -> attributes), huge-page "mixed" blocks and guest_memfd
 * bindings (index -> slot).
 *
 * The runs live in a B+tree of nodes published through RCU, as the
 * kernel's maple tree: readers (lookups on the fault path) take no lock; a
 * writer copies the nodes on the paths it changes, up to the lowest node
 * whose keys stay the same, publishes them with one release store (that
 * node's pointer to the changed child, or the root), and frees the replaced
 * nodes after a grace period.  An update touching k of n runs costs
 * O(log n + k), never O(keys covered), and either happens completely or not
 * at all: a reader sees each store whole or not at all (a walk over many
 * runs may see a later store in a later part of the walk, as with the
 * maple tree; it always sees sorted, disjoint runs).
 *
 * Writers must be serialised by the caller (the owning object's lock).
 */
#ifndef GM_LIB_RANGEMAP_H
#define GM_LIB_RANGEMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rangemap_run {
	uint64_t start;
	uint64_t end; /* exclusive */
	uint64_t value; /* never 0: 0 means "absent" */
};

struct rm_node;
struct rm_path;
struct rangemap_update;

struct rangemap {
	struct rm_node *root; /* RCU-published; NULL when empty */
	uint64_t nr_runs;     /* writer-maintained; READ_ONCE for others */
	uint64_t nr_nodes;
	/* Committed updates whose replaced nodes await one deferred free. */
	struct rangemap_update *pending;
	unsigned nr_pending;
	uint64_t pending_nodes;
	/* Recycled by rangemap_reclaim() for the next stores (writer-owned). */
	struct rm_node *free_nodes;
	unsigned nr_free_nodes;
	struct rangemap_update *spare;
	unsigned nr_spare;
	/*
	 * Writer-only: the path to the leaf of the last store if it was
	 * published in place (else NULL or empty), and that store's start;
	 * see rangemap_range_uniform_near().
	 */
	struct rm_path *finger;
	uint64_t finger_key;
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
 * no return: prepare builds the new tree beside the published one (-ENOMEM,
 * nothing changed), commit publishes it and cannot fail, abort drops it.
 * The writer's lock must be held from prepare to commit/abort.
 */
int rangemap_prepare(const struct rangemap *map, uint64_t start, uint64_t end,
		     uint64_t value, struct rangemap_update **out);
/*
 * rangemap_prepare(), unless every key in [start, end) already maps to
 * @value: then 1, no update, nothing allocated (cannot fail), as
 * rangemap_range_is() would say; one descent of the tree for both.
 */
int rangemap_prepare_change(const struct rangemap *map, uint64_t start, uint64_t end,
			    uint64_t value, struct rangemap_update **out);
void rangemap_commit(struct rangemap *map, struct rangemap_update *prepared);
void rangemap_abort(struct rangemap_update *prepared);
/*
 * A store prepared on top of @base's result (not yet committed), for a
 * sequence of stores that must not fail half way: commit @base first, then
 * this one; or abort this one before @base.
 */
int rangemap_prepare_next(const struct rangemap_update *base, uint64_t start, uint64_t end,
			  uint64_t value, struct rangemap_update **out);

/*
 * Optional, for owners that store often: once enough replaced nodes wait,
 * wait for a grace period here and keep them (and the updates) for the
 * next stores, instead of handing them to liburcu's callback thread, which
 * frees them some 10 ms later, cold, through malloc.  Context: writer's
 * lock held; may block in gm_synchronize_rcu(), so not inside a read-side
 * section nor holding a lock a reader waits for inside one.
 */
void rangemap_reclaim(struct rangemap *map);
/*
 * The same without waiting, for a map no reader has been able to reach
 * since a grace period (an inactive memslot set): what its committed
 * updates replaced is kept for its next stores at once.  Context: writer's
 * lock held.
 *
 * For both: an update prepared before a commit and committed after this
 * call must have been prepared on top of that commit's update
 * (rangemap_prepare_next()), else it may share the nodes recycled here.
 */
void rangemap_reclaim_unreachable(struct rangemap *map);

/* True if every key in [start, end) maps to exactly @value (0: none mapped). */
bool rangemap_range_is(const struct rangemap *map, uint64_t start, uint64_t end,
		       uint64_t value);

/* True if every key in [start, end) maps to one value (0 included). */
bool rangemap_range_uniform(const struct rangemap *map, uint64_t start, uint64_t end);
/*
 * The same for the writer, near its last store: when @start lies a little
 * before that store's start (a huge-page block around a 4 KiB conversion),
 * the search climbs from the store's leaf only as far as it must instead
 * of descending from the root.  Context: writer's lock held.
 */
bool rangemap_range_uniform_near(const struct rangemap *map, uint64_t start, uint64_t end);

/*
 * Call @fn for each run intersecting [start, end), clipped to it, in
 * ascending order; stops early and returns fn's value if it is nonzero.
 * The callback must not store into @map.
 */
typedef int (*rangemap_fn)(void *ctx, uint64_t start, uint64_t end, uint64_t value);
int rangemap_for_each(const struct rangemap *map, uint64_t start, uint64_t end,
		      rangemap_fn fn, void *ctx);

/* Number of runs (for tests and introspection). */
uint64_t rangemap_nr_runs(const struct rangemap *map);
/* Bytes held by the tree's nodes (malloc's own header included). */
uint64_t rangemap_memory_bytes(const struct rangemap *map);

/*
 * Tests only: when positive, the n-th following node allocation fails
 * (1 = the next one).  Not thread-safe; never set outside tests.
 */
extern long rangemap_fail_nth_alloc;
/* Tests only: 0 if the tree's invariants hold, else which one failed (< 0). */
int rangemap_check_invariants(const struct rangemap *map);

#endif
