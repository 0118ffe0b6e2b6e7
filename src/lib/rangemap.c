/* SPDX-License-Identifier: MIT */
/*
 * rangemap: a copy-on-write B+tree of runs (see rangemap.h).
 *
 * Leaves hold up to RM_LEAF_MAX runs sorted by start; internal nodes hold up
 * to RM_INT_MAX children with the smallest start of each child.  Every node
 * but the root holds at least half its maximum, and an internal root has at
 * least two children, so the height is O(log n) and a node costs at most
 * about twice its payload.
 *
 * A store of [s, e) -> v replaces one contiguous stretch of runs: those that
 * overlap or touch [s, e] (touching ones so that equal neighbours merge and
 * runs stay maximal) by at most three runs (the left remainder, the new run,
 * the right remainder).  The tree is rebuilt bottom-up along the two root to
 * leaf paths that bound that stretch: at each level, the nodes between the
 * paths are replaced by a few fresh nodes holding the kept entries of the
 * outermost ones (and the fresh nodes of the level below), borrowing one
 * whole neighbour node when they would be less than half full.  Everything
 * strictly between the paths is dropped.  So a store allocates O(height)
 * nodes and frees O(height + k/RM_LEAF_MAX) ones, after a grace period.
 *
 * The rebuild stops at the first level where one fresh node replaces one
 * node with the same smallest key (usually the leaf): the parent's keys
 * stay valid, and the commit swings its child pointer to the fresh node
 * (the only write ever made to a published node; the maple tree's slot
 * store).  A 4 KiB conversion among a million runs thus copies one leaf,
 * not a root-to-leaf path.  A store prepared on top of such an update
 * first copies that path after all (rm_materialize()), so that it builds
 * on a tree of its own.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rangemap.h"
#include "lockdep.h"
#include "rcu.h"

#define RM_LEAF_MAX 20
#define RM_LEAF_MIN (RM_LEAF_MAX / 2)
#define RM_INT_MAX 31
#define RM_INT_MIN (RM_INT_MAX / 2)
#define RM_MAX_HEIGHT 24 /* 15^23 > 2^64 runs */
/* Entries one level can gather: two edge nodes, a neighbour, the new ones. */
#define RM_ITEMS (3 * RM_INT_MAX + 8)
/* Node lists kept inside the update itself: enough for most stores. */
#define RM_INLINE 16
#define RM_MALLOC_HEADER 8 /* glibc's per-chunk size word */

struct rm_node {
	uint16_t nr;
	uint16_t level; /* 0: leaf */
	uint32_t pad;
	union {
		struct { /* by field: a search reads only the starts */
			uint64_t start[RM_LEAF_MAX];
			uint64_t end[RM_LEAF_MAX];
			uint64_t value[RM_LEAF_MAX];
		};
		struct {
			uint64_t key[RM_INT_MAX]; /* smallest start under child[i] */
			struct rm_node *child[RM_INT_MAX];
		};
	};
};

/* One root-to-leaf position: node[l] at level l, idx[l] its entry taken. */
struct rm_path {
	int height;
	struct rm_node *node[RM_MAX_HEIGHT];
	int idx[RM_MAX_HEIGHT];
};

/* Only the levels in use: a whole struct is 288 bytes, mostly unused. */
static void rm_path_copy(struct rm_path *dst, const struct rm_path *src)
{
	dst->height = src->height;
	for (int l = 0; l < src->height; l++) {
		dst->node[l] = src->node[l];
		dst->idx[l] = src->idx[l];
	}
}

/* A growable list of nodes, inline while small (one malloc per update). */
struct rm_list {
	size_t nr, cap;
	struct rm_node **v;
	struct rm_node *inl[RM_INLINE];
};

struct rangemap_update {
	struct rcu_head head; /* frees the garbage after a grace period */
	struct rangemap_update *next; /* batch of committed updates, or spares */
	struct rangemap *map; /* whose recycled nodes it may use; NULL: none */
	struct rm_node *root;
	int64_t runs_delta;
	int64_t nodes_delta;
	/*
	 * Published in place when the change fits under one child pointer of
	 * a node that keeps its keys: commit stores @slot_child into
	 * slot_parent->child[slot_idx] (root unchanged).  NULL: a new root.
	 */
	struct rm_node *slot_parent;
	struct rm_node *slot_child;
	int slot_idx;
	/* A leaf published in place: the path to it and the store's start. */
	bool has_finger;
	uint64_t finger_key;
	struct rm_path finger;
	struct rm_list fresh;	/* nodes of the new tree (freed on abort) */
	struct rm_list garbage; /* replaced nodes of the published tree */
};

long rangemap_fail_nth_alloc;

/*
 * Nodes freed after a grace period (by liburcu's callback thread) are kept
 * in a small pool for the next stores instead of going back to malloc:
 * a store allocates and a grace period later frees a few 512-byte nodes,
 * and handing them between threads through malloc costs more than the
 * store itself.  At most RM_POOL_MAX nodes (256 KiB) wait there.
 */
#define RM_POOL_MAX 512
static pthread_mutex_t rm_pool_lock = PTHREAD_MUTEX_INITIALIZER; /* leaf lock: rm_pool */
static struct rm_node *rm_pool;	/* linked through child[0] */
static unsigned rm_pool_nr;

static struct rm_node *rm_node_get(void)
{
	struct rm_node *n;

	gm_mutex_lock(&rm_pool_lock, GM_LOCK_RANGEMAP_POOL);
	n = rm_pool;
	if (n) {
		rm_pool = n->child[0];
		rm_pool_nr--;
	}
	gm_mutex_unlock(&rm_pool_lock);
	return n ? n : malloc(sizeof(*n));
}

static void rm_node_put(struct rm_node *n)
{
	gm_mutex_lock(&rm_pool_lock, GM_LOCK_RANGEMAP_POOL);
	if (rm_pool_nr < RM_POOL_MAX) {
		n->child[0] = rm_pool;
		rm_pool = n;
		rm_pool_nr++;
		n = NULL;
	}
	gm_mutex_unlock(&rm_pool_lock);
	free(n);
}

void rangemap_init(struct rangemap *map)
{
	map->root = NULL;
	map->nr_runs = 0;
	map->nr_nodes = 0;
	map->pending = NULL;
	map->nr_pending = 0;
	map->pending_nodes = 0;
	map->free_nodes = NULL;
	map->nr_free_nodes = 0;
	map->spare = NULL;
	map->nr_spare = 0;
	map->finger = NULL;
	map->finger_key = 0;
}

static void rm_free_batch(struct rangemap_update *u);

static void rm_free_tree(struct rm_node *n)
{
	if (!n)
		return;
	if (n->level)
		for (int i = 0; i < n->nr; i++)
			rm_free_tree(n->child[i]);
	free(n);
}

void rangemap_fini(struct rangemap *map)
{
	rm_free_tree(map->root);
	rm_free_batch(map->pending); /* no readers left */
	while (map->free_nodes) {
		struct rm_node *n = map->free_nodes;

		map->free_nodes = n->child[0];
		free(n);
	}
	while (map->spare) {
		struct rangemap_update *u = map->spare;

		map->spare = u->next;
		free(u);
	}
	free(map->finger);
	rangemap_init(map);
}

static const struct rm_node *rm_root(const struct rangemap *map)
{
	return gm_rcu_dereference(map->root); /* pairs with rangemap_commit() */
}

/*
 * A child pointer as a lock-free reader loads it: a commit may replace it
 * in place (release store in rangemap_commit()).  Writers, serialised by
 * their lock, read it the same way for simplicity; on x86 it is a plain load.
 */
static struct rm_node *rm_child(const struct rm_node *n, int i)
{
	return __atomic_load_n(&n->child[i], __ATOMIC_ACQUIRE);
}

static uint64_t rm_min_key(const struct rm_node *n)
{
	return n->level ? n->key[0] : n->start[0];
}

/*
 * Index of the last entry whose start is < key (@strict) or <= key, or -1.
 * Keys are sorted, so that is the number of such keys minus one: counting
 * them has no branch to mispredict (and vectorises).
 */
static int rm_node_find(const struct rm_node *n, uint64_t key, bool strict)
{
	const uint64_t *k = n->level ? n->key : n->start;
	int cnt = 0;

	if (strict)
		key--; /* start < key  <=>  start <= key - 1 (key > 0) */
	if (strict && key == UINT64_MAX)
		return -1; /* key was 0: nothing starts below it */
	for (int i = 0; i < n->nr; i++)
		cnt += k[i] <= key;
	return cnt - 1;
}

static struct rangemap_run rm_leaf_run(const struct rm_node *n, int i)
{
	return (struct rangemap_run){ n->start[i], n->end[i], n->value[i] };
}

static void rm_leaf_set(struct rm_node *n, int i, const struct rangemap_run *r)
{
	n->start[i] = r->start;
	n->end[i] = r->end;
	n->value[i] = r->value;
}

/* Path to the last run with start < key (@strict) or <= key (leaf idx -1: none). */
static void rm_descend(const struct rm_node *root, uint64_t key, bool strict, struct rm_path *p)
{
	const struct rm_node *n = root;

	p->height = root->level + 1;
	for (;;) {
		int i = rm_node_find(n, key, strict);

		p->node[n->level] = (struct rm_node *)n;
		if (!n->level) {
			p->idx[0] = i;
			return;
		}
		if (i < 0)
			i = 0;
		p->idx[n->level] = i;
		n = rm_child(n, i);
	}
}

/*
 * Path to the last run with start <= @key into @p, given @a, the path for
 * a smaller key: when a later run of a's leaf starts after @key, the
 * answer is in that leaf and the upper levels are a's (no second descent).
 */
static void rm_descend_after(const struct rm_node *root, const struct rm_path *a, uint64_t key,
			     struct rm_path *p)
{
	int i = rm_node_find(a->node[0], key, false);

	if (i + 1 < a->node[0]->nr) {
		rm_path_copy(p, a);
		p->idx[0] = i;
		return;
	}
	rm_descend(root, key, false, p);
}

/* Move @p to the next node at level @lvl; false if it is the last one. */
static bool rm_path_next(struct rm_path *p, int lvl)
{
	int u = lvl + 1;

	while (u < p->height && p->idx[u] + 1 >= p->node[u]->nr)
		u++;
	if (u >= p->height)
		return false;
	p->idx[u]++;
	for (; u > lvl; u--) {
		p->node[u - 1] = rm_child(p->node[u], p->idx[u]);
		p->idx[u - 1] = 0;
	}
	return true;
}

/* Move @p to the previous node at level @lvl; false if it is the first one. */
static bool rm_path_prev(struct rm_path *p, int lvl)
{
	int u = lvl + 1;

	while (u < p->height && p->idx[u] == 0)
		u++;
	if (u >= p->height)
		return false;
	p->idx[u]--;
	for (; u > lvl; u--) {
		p->node[u - 1] = rm_child(p->node[u], p->idx[u]);
		p->idx[u - 1] = p->node[u - 1]->nr - 1;
	}
	return true;
}

uint64_t rangemap_lookup(const struct rangemap *map, uint64_t key)
{
	const struct rm_node *n = rm_root(map);
	int i;

	if (!n)
		return 0;
	while (n->level) {
		i = rm_node_find(n, key, false);
		n = rm_child(n, i < 0 ? 0 : i);
	}
	i = rm_node_find(n, key, false);
	if (i >= 0 && n->end[i] > key)
		return n->value[i];
	return 0;
}

static struct rangemap_run rm_run(const struct rm_path *p)
{
	return rm_leaf_run(p->node[0], p->idx[0]);
}

static bool rm_next_run(struct rm_path *p)
{
	if (++p->idx[0] < p->node[0]->nr)
		return true;
	return rm_path_next(p, 0);
}

/*
 * From @p, a path to the last run starting before (or at) @key, on to the
 * first run whose end is > key; false if there is none.
 */
static bool rm_seek_from(struct rm_path *p, uint64_t key)
{
	if (p->idx[0] >= 0 && p->node[0]->end[p->idx[0]] > key)
		return true;
	/* Runs are sorted and disjoint: the next one ends after key. */
	return rm_next_run(p);
}

/* The first run whose end is > key, as a path; false if there is none. */
static bool rm_seek(const struct rm_node *root, uint64_t key, struct rm_path *p)
{
	if (!root)
		return false;
	rm_descend(root, key, false, p);
	return rm_seek_from(p, key);
}

/*
 * Whether every key in [start, end) maps to @value, given @r, the first
 * run ending after @start (runs are maximal, so one run must cover it all).
 */
static bool rm_run_is(const struct rangemap_run *r, uint64_t start, uint64_t end,
		      uint64_t value)
{
	if (!value)
		return r->start >= end;
	return r->start <= start && r->end >= end && r->value == value;
}

bool rangemap_range_is(const struct rangemap *map, uint64_t start, uint64_t end,
		       uint64_t value)
{
	struct rm_path p;
	struct rangemap_run r;

	if (start >= end)
		return true;
	if (!rm_seek(rm_root(map), start, &p))
		return value == 0;
	r = rm_run(&p);
	return rm_run_is(&r, start, end, value);
}

/* [start, end) uniform, from @p: the path to the last run starting <= start. */
static bool rm_uniform_at(struct rm_path *p, uint64_t start, uint64_t end)
{
	struct rangemap_run r;

	if (!rm_seek_from(p, start))
		return true;
	r = rm_run(p); /* the first run ending after start */
	if (r.start <= start)
		return r.end >= end; /* maximal runs: the next one differs */
	return r.start >= end; /* a gap at start */
}

bool rangemap_range_uniform(const struct rangemap *map, uint64_t start, uint64_t end)
{
	const struct rm_node *root = rm_root(map);
	struct rm_path p;

	if (start >= end || !root)
		return true;
	rm_descend(root, start, false, &p);
	return rm_uniform_at(&p, start, end);
}

bool rangemap_range_uniform_near(const struct rangemap *map, uint64_t start, uint64_t end)
{
	const struct rm_path *f = map->finger;
	const struct rm_node *n;
	struct rm_path p;
	int l = 0;

	if (start >= end)
		return true;
	if (!f || !f->height || start >= map->finger_key)
		return rangemap_range_uniform(map, start, end);
	/*
	 * The lowest node of the path whose keys begin at or before start:
	 * every start between there and finger_key lies below it.
	 */
	while (l < f->height && rm_min_key(f->node[l]) > start)
		l++;
	if (l == f->height)
		return rangemap_range_uniform(map, start, end);
	rm_path_copy(&p, f);
	for (n = f->node[l];; n = rm_child(n, p.idx[n->level])) {
		int i = rm_node_find(n, start, false);

		p.node[n->level] = (struct rm_node *)n;
		p.idx[n->level] = i < 0 ? 0 : i;
		if (!n->level) {
			p.idx[0] = i;
			break;
		}
	}
	return rm_uniform_at(&p, start, end);
}

int rangemap_for_each(const struct rangemap *map, uint64_t start, uint64_t end,
		      rangemap_fn fn, void *ctx)
{
	struct rm_path p;
	bool more = rm_seek(rm_root(map), start, &p);

	for (; more && p.node[0]->start[p.idx[0]] < end; more = rm_next_run(&p)) {
		struct rangemap_run r = rm_run(&p);
		int ret = fn(ctx, GM_MAX(r.start, start), GM_MIN(r.end, end), r.value);

		if (ret)
			return ret;
	}
	return 0;
}

uint64_t rangemap_nr_runs(const struct rangemap *map)
{
	return READ_ONCE(((struct rangemap *)map)->nr_runs);
}

uint64_t rangemap_memory_bytes(const struct rangemap *map)
{
	return READ_ONCE(((struct rangemap *)map)->nr_nodes) *
	       (sizeof(struct rm_node) + RM_MALLOC_HEADER);
}

/* ---- writer side ---------------------------------------------------- */

static void rm_list_init(struct rm_list *l)
{
	l->nr = 0;
	l->cap = RM_INLINE;
	l->v = l->inl;
}

static void rm_list_fini(struct rm_list *l)
{
	if (l->v != l->inl)
		free(l->v);
}

/* Room for @n more entries in @l (so that adding them cannot fail). */
static int rm_list_reserve(struct rm_list *l, size_t n)
{
	while (l->cap - l->nr < n) {
		size_t cap = 2 * l->cap;
		struct rm_node **v;

		if (rangemap_fail_nth_alloc > 0 && --rangemap_fail_nth_alloc == 0)
			return -ENOMEM;
		v = l->v == l->inl ? malloc(cap * sizeof(*v)) : realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		if (l->v == l->inl)
			memcpy(v, l->inl, sizeof(l->inl));
		l->v = v;
		l->cap = cap;
	}
	return 0;
}

static int rm_list_add(struct rm_list *l, struct rm_node *n)
{
	int r = rm_list_reserve(l, 1);

	if (!r)
		l->v[l->nr++] = n;
	return r;
}

static struct rm_node *rm_alloc(struct rangemap_update *u, int level)
{
	struct rm_node *n;

	if (rangemap_fail_nth_alloc > 0 && --rangemap_fail_nth_alloc == 0)
		return NULL;
	if (u->map && u->map->free_nodes) { /* recycled, still in cache */
		n = u->map->free_nodes;
		u->map->free_nodes = n->child[0];
		u->map->nr_free_nodes--;
	} else {
		n = rm_node_get();
	}
	if (!n)
		return NULL;
	if (rm_list_add(&u->fresh, n)) {
		rm_node_put(n);
		return NULL;
	}
	n->level = (uint16_t)level;
	n->nr = 0;
	n->pad = 0;
	u->nodes_delta++;
	return n;
}

static int rm_add_garbage(struct rangemap_update *u, struct rm_node *n)
{
	int r = rm_list_add(&u->garbage, n);

	if (r)
		return r;
	u->nodes_delta--;
	if (!n->level)
		u->runs_delta -= n->nr;
	return 0;
}

/* Entries gathered for one level: runs (leaf level) or (key, child). */
struct rm_items {
	int nr;
	struct rangemap_run run[RM_ITEMS];
	struct rm_node *child[RM_ITEMS];
};

static void rm_items_push_run(struct rm_items *it, const struct rangemap_run *r)
{
	it->run[it->nr++] = *r;
}

static void rm_items_push_child(struct rm_items *it, uint64_t key, struct rm_node *c)
{
	it->run[it->nr].start = key;
	it->child[it->nr++] = c;
}

/* Entries [from, to) of @n. */
static void rm_items_push_node(struct rm_items *it, const struct rm_node *n, int from, int to)
{
	for (int i = from; i < to; i++) {
		if (n->level)
			rm_items_push_child(it, n->key[i], n->child[i]);
		else
			it->run[it->nr++] = rm_leaf_run(n, i);
	}
}

/* Prepend all entries of @n (the left neighbour). */
static void rm_items_prepend_node(struct rm_items *it, const struct rm_node *n)
{
	memmove(&it->run[n->nr], &it->run[0], it->nr * sizeof(it->run[0]));
	memmove(&it->child[n->nr], &it->child[0], it->nr * sizeof(it->child[0]));
	it->nr += n->nr;
	for (int i = 0; i < n->nr; i++) {
		if (n->level) {
			it->run[i].start = n->key[i];
			it->child[i] = n->child[i];
		} else {
			it->run[i] = rm_leaf_run(n, i);
		}
	}
}

/* Pack @it evenly into fresh nodes of @level; they are appended to @out. */
static int rm_pack(struct rangemap_update *u, const struct rm_items *it, int level,
		   struct rm_items *out)
{
	int max = level ? RM_INT_MAX : RM_LEAF_MAX;
	int n = (it->nr + max - 1) / max, pos = 0;

	for (int k = 0; k < n; k++) {
		int cnt = it->nr / n + (k < it->nr % n);
		struct rm_node *node = rm_alloc(u, level);

		if (!node)
			return -ENOMEM;
		for (int i = 0; i < cnt; i++, pos++) {
			if (level) {
				node->key[i] = it->run[pos].start;
				node->child[i] = it->child[pos];
			} else {
				rm_leaf_set(node, i, &it->run[pos]);
				u->runs_delta++;
			}
		}
		node->nr = (uint16_t)cnt;
		rm_items_push_child(out, rm_min_key(node), node);
	}
	return 0;
}

/* Every node at level @lvl from a->node[lvl] to b->node[lvl] is replaced. */
static int rm_collect_level(struct rangemap_update *u, const struct rm_path *a,
			    const struct rm_path *b, int lvl)
{
	struct rm_path t;
	int r;

	if (a->node[lvl] == b->node[lvl]) /* one node: no walk */
		return rm_add_garbage(u, a->node[lvl]);
	rm_path_copy(&t, a);
	for (;;) {
		r = rm_add_garbage(u, t.node[lvl]);
		if (r || t.node[lvl] == b->node[lvl])
			return r;
		if (!rm_path_next(&t, lvl))
			return 0; /* cannot happen: b is after a */
	}
}

static void rm_update_free(struct rangemap_update *u)
{
	rm_list_fini(&u->fresh);
	rm_list_fini(&u->garbage);
	free(u);
}

void rangemap_abort(struct rangemap_update *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->fresh.nr; i++)
		rm_node_put(u->fresh.v[i]);
	rm_update_free(u);
}

/* The runs that replace the touched stretch: at most three. */
static int rm_pieces(const struct rangemap_run *left, const struct rangemap_run *right,
		     uint64_t s, uint64_t e, uint64_t v, struct rangemap_run *out)
{
	uint64_t ns = s, ne = e;
	int n = 0;
	struct rangemap_run tail = { 0, 0, 0 };

	if (left) {
		if (left->value == v)
			ns = left->start;
		else if (left->start < s)
			out[n++] = (struct rangemap_run){ left->start, s, left->value };
	}
	if (right && right->end > e) {
		if (right->value == v)
			ne = right->end;
		else
			tail = (struct rangemap_run){ e, right->end, right->value };
	}
	if (v)
		out[n++] = (struct rangemap_run){ ns, ne, v };
	if (tail.value)
		out[n++] = tail;
	return n;
}

/*
 * Build the new tree.  @a: path to the last run starting before s (moved
 * as the rebuild goes); @b: path to the last run starting at or before e.
 */
static int rm_build(struct rangemap_update *u, const struct rm_node *root, uint64_t s,
		    uint64_t e, uint64_t v, struct rm_path *a)
{
	struct rm_items items, next; /* 6.5 KiB of stack */
	struct rm_path b;
	const struct rangemap_run *left = NULL, *right = NULL;
	struct rangemap_run pieces[3], lrun, rrun;
	int np, first, height = root->level + 1, r;

	rm_descend_after(root, a, e, &b);
	if (a->idx[0] >= 0 && a->node[0]->end[a->idx[0]] >= s) {
		lrun = rm_leaf_run(a->node[0], a->idx[0]);
		left = &lrun;
	}
	if (b.idx[0] >= 0 && b.node[0]->end[b.idx[0]] >= s) {
		rrun = rm_leaf_run(b.node[0], b.idx[0]);
		right = &rrun;
	}
	np = rm_pieces(left, right, s, e, v, pieces);
	/* First touched run: left if it touches, else the one after it. */
	first = a->idx[0] + (left ? 0 : 1);

	next.nr = 0;
	for (int lvl = 0; lvl < height; lvl++) {
		items.nr = 0;
		if (lvl == 0) {
			rm_items_push_node(&items, a->node[0], 0, first);
			for (int i = 0; i < np; i++)
				rm_items_push_run(&items, &pieces[i]);
			rm_items_push_node(&items, b.node[0], b.idx[0] + 1, b.node[0]->nr);
		} else {
			rm_items_push_node(&items, a->node[lvl], 0, a->idx[lvl]);
			for (int i = 0; i < next.nr; i++)
				rm_items_push_child(&items, next.run[i].start, next.child[i]);
			rm_items_push_node(&items, b.node[lvl], b.idx[lvl] + 1, b.node[lvl]->nr);
		}
		/* Below half full (not the root): take in a whole neighbour. */
		if (lvl < height - 1 && items.nr < (lvl ? RM_INT_MIN : RM_LEAF_MIN)) {
			if (rm_path_prev(a, lvl))
				rm_items_prepend_node(&items, a->node[lvl]);
			else if (rm_path_next(&b, lvl))
				rm_items_push_node(&items, b.node[lvl], 0, b.node[lvl]->nr);
		}
		r = rm_collect_level(u, a, &b, lvl);
		if (r)
			return r;
		next.nr = 0;
		r = rm_pack(u, &items, lvl, &next);
		if (r)
			return r;
		/*
		 * One node replaced by one with the same smallest key: the
		 * parent keeps its keys, so only its pointer to it changes,
		 * in place at commit (as the maple tree's slot store); the
		 * levels above are not copied.
		 */
		if (lvl + 1 < height && next.nr == 1 && a->node[lvl] == b.node[lvl] &&
		    next.run[0].start == rm_min_key(a->node[lvl])) {
			u->slot_parent = a->node[lvl + 1];
			u->slot_idx = a->idx[lvl + 1];
			u->slot_child = next.child[0];
			u->root = (struct rm_node *)root;
			if (lvl == 0) { /* the fresh leaf's path, for a search near s */
				rm_path_copy(&u->finger, a);
				u->finger.node[0] = next.child[0];
				u->finger.idx[0] = 0;
				u->finger_key = s;
				u->has_finger = true;
			}
			return 0;
		}
	}
	if (next.nr > 1) {
		struct rm_node *n = rm_alloc(u, height);

		if (!n)
			return -ENOMEM;
		for (int i = 0; i < next.nr; i++) {
			n->key[i] = next.run[i].start;
			n->child[i] = next.child[i];
		}
		n->nr = (uint16_t)next.nr;
		u->root = n;
		return 0;
	}
	u->root = next.nr ? next.child[0] : NULL;
	/* An internal root with one child: the child is the root (fresh ones only). */
	while (u->root && u->root->level && u->root->nr == 1) {
		struct rm_node *only = u->root->child[0];
		size_t i = 0;

		while (i < u->fresh.nr && u->fresh.v[i] != u->root)
			i++;
		if (i == u->fresh.nr)
			break; /* published nodes are never freed here */
		u->fresh.v[i] = u->fresh.v[--u->fresh.nr];
		rm_node_put(u->root);
		u->nodes_delta--;
		u->root = only;
	}
	return 0;
}

/*
 * rangemap_range_is(), from @a, the path to the last run starting before
 * @s (the descent a store needs anyway).
 */
static bool rm_range_is_from(const struct rm_path *a, uint64_t s, uint64_t e, uint64_t v)
{
	struct rm_path p;
	struct rangemap_run r;

	/* rm_seek_from(), copying @a only if the next run is in another leaf. */
	if (a->idx[0] >= 0 && a->node[0]->end[a->idx[0]] > s) {
		r = rm_leaf_run(a->node[0], a->idx[0]); /* covers s */
	} else if (a->idx[0] + 1 < a->node[0]->nr) {
		r = rm_leaf_run(a->node[0], a->idx[0] + 1); /* starts at or after s */
	} else {
		rm_path_copy(&p, a);
		if (!rm_path_next(&p, 0))
			return v == 0;
		r = rm_leaf_run(p.node[0], 0);
	}
	return rm_run_is(&r, s, e, v);
}

static int rm_prepare(struct rangemap *map, const struct rm_node *root, uint64_t start,
		      uint64_t end, uint64_t value, struct rangemap_update **out,
		      bool skip_unchanged)
{
	struct rangemap_update *u;
	struct rm_path a;
	struct rm_path *pa = NULL; /* set whenever there is a tree to change */
	int r = 0;

	if (root && start < end) {
		rm_descend(root, start, true, &a);
		pa = &a;
	}
	if (skip_unchanged &&
	    (start >= end || (pa ? rm_range_is_from(pa, start, end, value) : !value))) {
		*out = NULL;
		return 1;
	}
	if (rangemap_fail_nth_alloc > 0 && --rangemap_fail_nth_alloc == 0)
		return -ENOMEM;
	if (map && map->spare) {
		u = map->spare;
		map->spare = u->next;
		map->nr_spare--;
	} else {
		u = malloc(sizeof(*u));
		if (!u)
			return -ENOMEM;
	}
	u->map = map;
	u->root = (struct rm_node *)root;
	u->runs_delta = u->nodes_delta = 0;
	u->slot_parent = u->slot_child = NULL;
	u->slot_idx = 0;
	u->has_finger = false;
	rm_list_init(&u->fresh);
	rm_list_init(&u->garbage);
	if (start >= end) {
		/* Nothing to change. */
	} else if (!root) {
		if (value) {
			struct rm_node *n = rm_alloc(u, 0);

			if (!n) {
				r = -ENOMEM;
			} else {
				rm_leaf_set(n, 0, &(struct rangemap_run){ start, end, value });
				n->nr = 1;
				u->runs_delta = 1;
				u->root = n;
			}
		}
	} else {
		r = rm_build(u, root, start, end, value, pa);
	}
	if (r) {
		rangemap_abort(u);
		return r;
	}
	*out = u;
	return 0;
}

int rangemap_prepare(const struct rangemap *map, uint64_t start, uint64_t end,
		     uint64_t value, struct rangemap_update **out)
{
	/* The writer's lock makes the map's recycled nodes ours to take. */
	return rm_prepare((struct rangemap *)map, map->root /* writer: stable */, start, end,
			  value, out, false);
}

int rangemap_prepare_change(const struct rangemap *map, uint64_t start, uint64_t end,
			    uint64_t value, struct rangemap_update **out)
{
	return rm_prepare((struct rangemap *)map, map->root, start, end, value, out, true);
}

/*
 * Turn an update published in place into one with its own root, by copying
 * the path from the root down to the slot's parent: a store prepared on top
 * of it must see its result as a tree.  Its result is unchanged; on
 * -ENOMEM so is the update.
 */
static int rm_materialize(struct rangemap_update *u)
{
	struct rm_node *path[RM_MAX_HEIGHT], *copy[RM_MAX_HEIGHT];
	int idx[RM_MAX_HEIGHT], top, low, r;
	const struct rm_node *n = u->root;
	uint64_t key;

	if (!u->slot_parent)
		return 0;
	low = u->slot_parent->level;
	top = n->level;
	key = rm_min_key(u->slot_child);
	/* The keys are exact smallest starts: this finds the slot's path. */
	for (;;) {
		int i = rm_node_find(n, key, false);

		path[n->level] = (struct rm_node *)n;
		idx[n->level] = i;
		if (n->level == low)
			break;
		n = rm_child(n, i);
	}
	gm_assert(path[low] == u->slot_parent && idx[low] == u->slot_idx);
	r = rm_list_reserve(&u->garbage, (size_t)(top - low + 1));
	if (!r)
		r = rm_list_reserve(&u->fresh, (size_t)(top - low + 1));
	for (int l = low; !r && l <= top; l++) {
		copy[l] = rm_alloc(u, l);
		if (!copy[l]) {
			while (--l >= low) { /* the last ones added to fresh */
				u->fresh.nr--;
				u->nodes_delta--;
				rm_node_put(copy[l]);
			}
			r = -ENOMEM;
		}
	}
	if (r)
		return r;
	for (int l = low; l <= top; l++) {
		*copy[l] = *path[l];
		copy[l]->child[idx[l]] = l == low ? u->slot_child : copy[l - 1];
		(void)rm_add_garbage(u, path[l]); /* reserved: cannot fail */
	}
	u->root = copy[top];
	u->slot_parent = u->slot_child = NULL;
	u->has_finger = false; /* its upper nodes are replaced now */
	return 0;
}

int rangemap_prepare_next(const struct rangemap_update *base, uint64_t start, uint64_t end,
			  uint64_t value, struct rangemap_update **out)
{
	/* Materialising changes how base publishes its result, not the result. */
	int r = rm_materialize((struct rangemap_update *)base);

	if (r)
		return r;
	/* Nodes of base's tree it replaces are published by then: garbage. */
	return rm_prepare(base->map, base->root, start, end, value, out, false);
}

/*
 * The garbage of a batch goes back to the pool under one acquisition of
 * its lock, not one per node: the writer takes nodes from the pool
 * meanwhile, and contending per node made both threads sleep in futex
 * calls (a large map's store replaces a handful of nodes, a batch of them
 * dozens).
 */
static void rm_free_batch(struct rangemap_update *u)
{
	struct rm_node *chain = NULL, *n;

	for (; u; ) {
		struct rangemap_update *next = u->next;

		for (size_t i = 0; i < u->garbage.nr; i++) {
			n = u->garbage.v[i];
			n->child[0] = chain; /* unreachable since the grace period */
			chain = n;
		}
		rm_update_free(u);
		u = next;
	}
	if (!chain)
		return;
	gm_mutex_lock(&rm_pool_lock, GM_LOCK_RANGEMAP_POOL);
	while (chain && rm_pool_nr < RM_POOL_MAX) {
		n = chain;
		chain = n->child[0];
		n->child[0] = rm_pool;
		rm_pool = n;
		rm_pool_nr++;
	}
	gm_mutex_unlock(&rm_pool_lock);
	while (chain) {
		n = chain;
		chain = n->child[0];
		free(n);
	}
}

static void rm_free_garbage(struct rcu_head *head)
{
	gm_tsan_acquire_gp();
	rm_free_batch(caa_container_of(head, struct rangemap_update, head));
}

/*
 * Replaced nodes wait in a batch of RM_BATCH updates for one deferral:
 * a grace period that starts later than needed is still one.
 */
#define RM_BATCH 64
#define RM_MIN_PENDING 64 /* nodes (32 KiB) a small map may keep waiting */
/*
 * rangemap_reclaim(): one grace period for this many updates (about 1 us
 * each on the development VM); what it frees is kept for the next stores,
 * up to these many nodes and update records per map.
 */
#define RM_RECLAIM_MIN (RM_BATCH / 2)
#define RM_FREE_MAX 256
#define RM_SPARE_MAX RM_RECLAIM_MIN

/* @u is done with: keep it for the next prepare of @map, or free it. */
static void rm_update_recycle(struct rangemap *map, struct rangemap_update *u)
{
	if (!map || map->nr_spare >= RM_SPARE_MAX) {
		rm_update_free(u);
		return;
	}
	rm_list_fini(&u->fresh);
	rm_list_fini(&u->garbage);
	u->next = map->spare;
	map->spare = u;
	map->nr_spare++;
}

static void rm_flush_batch(struct rangemap *map)
{
	if (map->pending)
		gm_call_rcu(&map->pending->head, rm_free_garbage);
	map->pending = NULL;
	map->nr_pending = 0;
	map->pending_nodes = 0;
}

void rangemap_commit(struct rangemap *map, struct rangemap_update *u)
{
	/* Nodes are complete before the release store makes them reachable. */
	if (u->slot_parent)
		__atomic_store_n(&u->slot_parent->child[u->slot_idx], u->slot_child,
				 __ATOMIC_RELEASE); /* pairs with rm_child() */
	else
		gm_rcu_assign_pointer(map->root, u->root);
	/* Every commit moves the finger or drops it: its nodes stay live. */
	if (u->has_finger && !map->finger)
		map->finger = malloc(sizeof(*map->finger)); /* none if NULL */
	if (map->finger) {
		map->finger->height = 0;
		if (u->has_finger) {
			rm_path_copy(map->finger, &u->finger);
			map->finger_key = u->finger_key;
		}
	}
	WRITE_ONCE(map->nr_runs, map->nr_runs + (uint64_t)u->runs_delta);
	WRITE_ONCE(map->nr_nodes, map->nr_nodes + (uint64_t)u->nodes_delta);
	if (!u->garbage.nr) {
		rm_update_recycle(map, u);
		return;
	}
	u->next = map->pending;
	map->pending = u;
	map->pending_nodes += u->garbage.nr;
	/* What waits never outweighs the live tree (small maps, big erases). */
	if (++map->nr_pending >= RM_BATCH ||
	    map->pending_nodes >= GM_MAX(map->nr_nodes, RM_MIN_PENDING))
		rm_flush_batch(map);
}

/* Keep the replaced nodes and update records of @map's pending updates. */
static void rm_recycle_pending(struct rangemap *map)
{
	struct rangemap_update *u = map->pending, *next;
	struct rm_node *excess = NULL;

	map->pending = NULL;
	map->nr_pending = 0;
	map->pending_nodes = 0;
	for (; u; u = next) {
		next = u->next;
		for (size_t i = 0; i < u->garbage.nr; i++) {
			struct rm_node *n = u->garbage.v[i];

			if (map->nr_free_nodes < RM_FREE_MAX) {
				n->child[0] = map->free_nodes;
				map->free_nodes = n;
				map->nr_free_nodes++;
			} else {
				n->child[0] = excess;
				excess = n;
			}
		}
		u->garbage.nr = 0;
		rm_update_recycle(map, u);
	}
	while (excess) {
		struct rm_node *n = excess;

		excess = n->child[0];
		rm_node_put(n);
	}
}

void rangemap_reclaim(struct rangemap *map)
{
	if (map->nr_pending < RM_RECLAIM_MIN)
		return;
	gm_synchronize_rcu(); /* no reader is left in the replaced nodes */
	rm_recycle_pending(map);
}

void rangemap_reclaim_unreachable(struct rangemap *map)
{
	rm_recycle_pending(map);
}

int rangemap_store(struct rangemap *map, uint64_t start, uint64_t end, uint64_t value)
{
	struct rangemap_update *u;
	int r;

	if (start >= end)
		return 0;
	r = rangemap_prepare(map, start, end, value, &u);
	if (!r)
		rangemap_commit(map, u);
	return r;
}

/* ---- tests ------------------------------------------------------------ */

struct rm_check {
	uint64_t runs, nodes, last_end, last_value;
	bool have_last;
};

static int rm_check_node(const struct rm_node *n, bool is_root, uint64_t lo, struct rm_check *c)
{
	int min = n->level ? RM_INT_MIN : RM_LEAF_MIN;

	c->nodes++;
	if (n->nr == 0 || n->nr > (n->level ? RM_INT_MAX : RM_LEAF_MAX))
		return -1;
	if (is_root ? (n->level && n->nr < 2) : n->nr < min)
		return -2;
	if (rm_min_key(n) != lo)
		return -3;
	for (int i = 0; i < n->nr; i++) {
		if (n->level) {
			if (n->child[i]->level + 1 != n->level)
				return -4;
			if (rm_check_node(n->child[i], false, n->key[i], c))
				return -5;
			continue;
		}
		const struct rangemap_run run = rm_leaf_run(n, i), *r = &run;

		if (r->start >= r->end || !r->value)
			return -6;
		if (c->have_last && (r->start < c->last_end ||
				     (r->start == c->last_end && r->value == c->last_value)))
			return -7; /* overlapping, unsorted or not maximal */
		c->have_last = true;
		c->last_end = r->end;
		c->last_value = r->value;
		c->runs++;
	}
	return 0;
}

int rangemap_check_invariants(const struct rangemap *map)
{
	struct rm_check c = { 0, 0, 0, 0, false };
	int r = 0;

	if (map->root)
		r = rm_check_node(map->root, true, rm_min_key(map->root), &c);
	if (!r && (c.runs != map->nr_runs || c.nodes != map->nr_nodes))
		r = -8;
	return r;
}
