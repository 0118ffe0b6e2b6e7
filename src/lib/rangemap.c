/* SPDX-License-Identifier: MIT */
/*
 * rangemap: copy-on-write sorted run array (see rangemap.h).
 *
 * A store builds the new array in one pass over the old one: runs wholly
 * before or after [start, end) are copied, runs that straddle an edge are
 * clipped, the new run (if value != 0) is placed in between, and equal
 * neighbours are merged so that runs stay maximal.  The new array is
 * published with a release store (pairs with the acquire in the readers)
 * and the old one freed after a grace period.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rangemap.h"
#include "rcu.h"

void rangemap_init(struct rangemap *map)
{
	map->array = NULL;
}

void rangemap_fini(struct rangemap *map)
{
	free(map->array);
	map->array = NULL;
}

static const struct rangemap_array *rangemap_get(const struct rangemap *map)
{
	return gm_rcu_dereference(map->array); /* pairs with rangemap_publish() */
}

/* Index of the first run whose end is > key (runs are sorted). */
static uint64_t rangemap_first_after(const struct rangemap_array *a, uint64_t key)
{
	uint64_t lo = 0, hi = a->nr;

	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (a->runs[mid].end <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t rangemap_lookup(const struct rangemap *map, uint64_t key)
{
	const struct rangemap_array *a = rangemap_get(map);
	uint64_t i;

	if (!a)
		return 0;
	i = rangemap_first_after(a, key);
	if (i < a->nr && a->runs[i].start <= key)
		return a->runs[i].value;
	return 0;
}

static void rangemap_push(struct rangemap_array *n, uint64_t start, uint64_t end,
			  uint64_t value)
{
	struct rangemap_run *last = n->nr ? &n->runs[n->nr - 1] : NULL;

	if (start >= end || !value)
		return;
	if (last && last->end == start && last->value == value) {
		last->end = end;
		return;
	}
	n->runs[n->nr++] = (struct rangemap_run){ start, end, value };
}

static void rangemap_publish(struct rangemap *map, struct rangemap_array *n)
{
	struct rangemap_array *old = map->array;

	if (n && n->nr == 0) {
		free(n);
		n = NULL;
	}
	gm_rcu_assign_pointer(map->array, n);
	gm_free_rcu(old);
}

int rangemap_prepare(const struct rangemap *map, uint64_t start, uint64_t end,
		     uint64_t value, struct rangemap_array **out)
{
	const struct rangemap_array *a = map->array; /* writer: stable */
	uint64_t nr = a ? a->nr : 0, i;
	struct rangemap_array *n;

	/* At most one old run is split in two, plus the new run. */
	n = malloc(sizeof(*n) + (nr + 2) * sizeof(n->runs[0]));
	if (!n)
		return -ENOMEM;
	n->nr = 0;
	for (i = 0; i < nr && a->runs[i].start < start; i++)
		rangemap_push(n, a->runs[i].start, GM_MIN(a->runs[i].end, start),
			      a->runs[i].value);
	rangemap_push(n, start, end, value);
	for (i = a ? rangemap_first_after(a, start) : 0; i < nr; i++) {
		if (a->runs[i].end <= end)
			continue;
		rangemap_push(n, GM_MAX(a->runs[i].start, end), a->runs[i].end,
			      a->runs[i].value);
	}
	*out = n;
	return 0;
}

void rangemap_commit(struct rangemap *map, struct rangemap_array *prepared)
{
	rangemap_publish(map, prepared);
}

void rangemap_discard(struct rangemap_array *prepared)
{
	free(prepared);
}

int rangemap_store(struct rangemap *map, uint64_t start, uint64_t end, uint64_t value)
{
	struct rangemap_array *n;
	int r;

	if (start >= end)
		return 0;
	r = rangemap_prepare(map, start, end, value, &n);
	if (!r)
		rangemap_commit(map, n);
	return r;
}

bool rangemap_range_is(const struct rangemap *map, uint64_t start, uint64_t end,
		       uint64_t value)
{
	const struct rangemap_array *a = rangemap_get(map);
	uint64_t i;

	if (start >= end)
		return true;
	if (!a)
		return value == 0;
	i = rangemap_first_after(a, start);
	if (!value)
		return i >= a->nr || a->runs[i].start >= end;
	/* Runs are maximal, so one run must cover the whole range. */
	return i < a->nr && a->runs[i].start <= start && a->runs[i].end >= end &&
	       a->runs[i].value == value;
}

int rangemap_for_each(const struct rangemap *map, uint64_t start, uint64_t end,
		      rangemap_fn fn, void *ctx)
{
	const struct rangemap_array *a = rangemap_get(map);
	uint64_t i;
	int r;

	if (!a)
		return 0;
	for (i = rangemap_first_after(a, start); i < a->nr && a->runs[i].start < end; i++) {
		r = fn(ctx, GM_MAX(a->runs[i].start, start), GM_MIN(a->runs[i].end, end),
		       a->runs[i].value);
		if (r)
			return r;
	}
	return 0;
}

uint64_t rangemap_nr_runs(const struct rangemap *map)
{
	const struct rangemap_array *a = rangemap_get(map);

	return a ? a->nr : 0;
}
