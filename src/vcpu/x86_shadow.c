/* SPDX-License-Identifier: MIT */
/*
 * The x86 backend's shadow of stage-2 in the guest process (x86_shadow.h
 * has the model and the race rules).
 *
 * Reverse map: one entry per mapped 4 KiB guest page, hashed both by gfn
 * (zaps) and by guest VA (remaps, INVLPG).  A zap of a range with more
 * entries than SHADOW_BULK drops the whole shadow with munmaps of the
 * guest's range: cheaper than many round trips, and the next faults map
 * again what is still valid.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/backing.h"
#include "core/gmemfd.h"
#include "lib/keepfd.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"
#include "vcpu/x86_shadow.h"

#define SHADOW_BULK 256	     /* affected entries beyond which a zap drops all */
#define SHADOW_MAX_BACKINGS 512 /* files handed to the guest process (gproc: 1024) */

struct shadow_ent {
	uint64_t gva;
	gfn_t gfn;
	int prot;
	uint32_t backing; /* the guest process's id of the file mapped */
	uint8_t level;	  /* the guest's leaf level (INVLPG of a large page) */
	struct shadow_ent *gfn_next, **gfn_pprev;
	struct shadow_ent *gva_next, **gva_pprev;
};

struct shadow_backing {
	uint64_t file_id; /* kvm_gfn_backing.file_id: never reused */
	uint32_t id;
	/*
	 * The guest process holds the only copy (a guest_memfd's storage
	 * created there, gm_backing_init_held()): never evicted; it goes
	 * when the storage is freed (holder_drop()).
	 */
	bool held;
};

struct kvm_x86_shadow {
	struct kvm_mmu_notifier notifier; /* first: container_of by cast */
	struct kvm *kvm;
	struct gp_vm *gp;
	/*
	 * sh->lock protects everything below.  Order: after mmu_lock (zaps
	 * hold it for write, x86_shadow_map for read); gp_vm_* calls are
	 * made under it.  sh->cv: a vCPU's inflight went false.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct shadow_ent **by_gfn, **by_gva;
	size_t nbuckets, nr;
	struct x86_shadow_mode mode;
	bool mode_valid;
	struct x86_shadow_vcpu *vcpus;
	struct shadow_backing backings[SHADOW_MAX_BACKINGS];
	unsigned nr_backings;
	unsigned evict_hand; /* the next victim when no file is free to drop */
	/* A 1 GiB guest page was shadowed since the last drop of everything:
	 * its pieces may lie anywhere in the GiB (INVLPG). */
	bool gb_mapped;
};


static size_t hash64(uint64_t x, size_t n)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)(x & (n - 1));
}

static void ent_link(struct kvm_x86_shadow *sh, struct shadow_ent *e)
{
	struct shadow_ent **b = &sh->by_gfn[hash64(e->gfn, sh->nbuckets)];

	e->gfn_next = *b;
	if (*b)
		(*b)->gfn_pprev = &e->gfn_next;
	*b = e;
	e->gfn_pprev = b;
	b = &sh->by_gva[hash64(e->gva >> 12, sh->nbuckets)];
	e->gva_next = *b;
	if (*b)
		(*b)->gva_pprev = &e->gva_next;
	*b = e;
	e->gva_pprev = b;
}

static void ent_unlink(struct shadow_ent *e)
{
	*e->gfn_pprev = e->gfn_next;
	if (e->gfn_next)
		e->gfn_next->gfn_pprev = e->gfn_pprev;
	*e->gva_pprev = e->gva_next;
	if (e->gva_next)
		e->gva_next->gva_pprev = e->gva_pprev;
}

/* Double the tables.  -ENOMEM leaves them as they were. */
static int shadow_grow(struct kvm_x86_shadow *sh)
{
	size_t n = sh->nbuckets * 2, old = sh->nbuckets;
	struct shadow_ent **g = calloc(n, sizeof(*g)), **v = calloc(n, sizeof(*v));
	struct shadow_ent **og = sh->by_gfn, **ov = sh->by_gva;

	if (!g || !v) {
		free(g);
		free(v);
		return -ENOMEM;
	}
	sh->by_gfn = g;
	sh->by_gva = v;
	sh->nbuckets = n;
	for (size_t i = 0; i < old; i++) {
		struct shadow_ent *e = og[i], *next;

		for (; e; e = next) {
			next = e->gfn_next;
			ent_link(sh, e);
		}
	}
	free(og);
	free(ov);
	return 0;
}

static struct shadow_ent *find_gva(struct kvm_x86_shadow *sh, uint64_t gva)
{
	struct shadow_ent *e = sh->by_gva[hash64(gva >> 12, sh->nbuckets)];

	while (e && e->gva != gva)
		e = e->gva_next;
	return e;
}

/* ---- waiting for maps in flight ------------------------------------------- */

static bool inflight_overlaps(const struct x86_shadow_vcpu *sv, gfn_t start, gfn_t end)
{
	for (unsigned i = 0; i < sv->nr_maps; i++)
		if (sv->gfns[i] < end && sv->gfns[i] + sv->npages[i] > start)
			return true;
	return false;
}

static bool inflight_has_gva(const struct x86_shadow_vcpu *sv, uint64_t lo, uint64_t hi)
{
	for (unsigned i = 0; i < sv->nr_maps; i++)
		if (sv->maps[i].gva < hi && sv->maps[i].gva + sv->maps[i].len > lo)
			return true;
	return false;
}

static void drop_all_locked(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self);

/* Another vCPU's map in flight covers the guest page at @gva. */
static bool claimed_by_other(const struct kvm_x86_shadow *sh,
			     const struct x86_shadow_vcpu *self, uint64_t gva)
{
	for (const struct x86_shadow_vcpu *sv = sh->vcpus; sv; sv = sv->next)
		if (sv != self && sv->inflight && inflight_has_gva(sv, gva, gva + 4096))
			return true;
	return false;
}

/*
 * Forget @self's maps, never applied.  The reverse map already records
 * their translations while the guest process still maps the old ones at
 * those VAs (another gfn, other rights) or nothing: a zap would miss the
 * old mapping, and mprotect() fails at the hole.  Unmap the VAs (the guest
 * faults them back) and drop their entries, unless another vCPU's map in
 * flight claimed the VA since (its mmap is coming).  Returns false if an
 * unmap failed: the old translation may remain.  Context: sh->lock held.
 */
static bool forget_locked(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self)
{
	unsigned n = self->nr_maps;
	bool ok = true;

	self->nr_maps = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct gp_map *m = &self->maps[i];

		ok &= !gp_vm_unmap(sh->gp, m->gva, m->len);
		for (uint64_t a = m->gva; a < m->gva + m->len; a += 4096) {
			struct shadow_ent *e = find_gva(sh, a);

			if (e && !claimed_by_other(sh, self, a)) {
				ent_unlink(e);
				free(e);
				sh->nr--;
			}
		}
	}
	if (self->inflight || self->kicked) {
		self->inflight = false;
		self->kicked = false;
		gm_check_pthread(pthread_cond_broadcast(&sh->cv));
	}
	return ok;
}

/*
 * Kick every vCPU whose maps in flight touch [start, end) of gfns (or the
 * guest VAs [lo, hi) when @by_gva) and wait until they are applied.
 * Context: sh->lock held (dropped while waiting).
 */
static void wait_inflight(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self, bool by_gva,
			  uint64_t lo, uint64_t hi)
{
	/* The caller's own maps are not applied yet (it is not running): forget them. */
	if (self && self->inflight && !forget_locked(sh, self))
		drop_all_locked(sh, self);
	for (;;) {
		struct x86_shadow_vcpu *sv;
		bool waiting = false;

		for (sv = sh->vcpus; sv; sv = sv->next) {
			if (!sv->inflight)
				continue;
			if (by_gva ? !inflight_has_gva(sv, lo, hi) : !inflight_overlaps(sv, lo, hi))
				continue;
			if (!sv->kicked) {
				sv->kicked = true;
				gp_vcpu_kick(sv->gp);
			}
			waiting = true;
		}
		if (!waiting)
			return;
		gm_check_pthread(pthread_cond_wait(&sh->cv, &sh->lock));
	}
}

/* ---- dropping ------------------------------------------------------------ */

static void free_all_entries(struct kvm_x86_shadow *sh)
{
	for (size_t i = 0; i < sh->nbuckets; i++) {
		struct shadow_ent *e = sh->by_gfn[i], *next;

		for (; e; e = next) {
			next = e->gfn_next;
			free(e);
		}
		sh->by_gfn[i] = NULL;
		sh->by_gva[i] = NULL;
	}
	sh->nr = 0;
	sh->gb_mapped = false;
}

/* Context: sh->lock held. */
static void drop_all_locked(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self)
{
	wait_inflight(sh, self, true, 0, GP_USER_TOP);
	if (sh->nr) { /* the guest's whole range: both sides of the stub's window */
		(void)gp_vm_unmap(sh->gp, 0, GP_RESV_BASE);
		(void)gp_vm_unmap(sh->gp, GP_RESV_END, GP_USER_TOP - GP_RESV_END);
	}
	free_all_entries(sh);
}

/* One contiguous guest-VA run of pages to unmap or protect. */
struct va_run {
	uint64_t gva, len;
	int prot; /* -1: unmap */
};

static int run_cmp(const void *a, const void *b)
{
	const struct va_run *x = a, *y = b;

	return x->gva < y->gva ? -1 : x->gva > y->gva;
}

/*
 * Sort, merge neighbours with the same action, and apply.  Returns false
 * if one failed: mprotect() and munmap() that split a mapping fail with
 * ENOMEM at vm.max_map_count, and mprotect() stops at the first hole (an
 * entry whose map was forgotten before the stub applied it), so pages of
 * the run may keep their old rights.
 */
static bool apply_runs(struct kvm_x86_shadow *sh, struct va_run *r, size_t n)
{
	size_t i = 0;
	bool ok = true;

	qsort(r, n, sizeof(*r), run_cmp);
	while (i < n) {
		struct va_run cur = r[i++];

		while (i < n && r[i].gva == cur.gva + cur.len && r[i].prot == cur.prot)
			cur.len += r[i++].len;
		if (cur.prot < 0)
			ok &= !gp_vm_unmap(sh->gp, cur.gva, cur.len);
		else
			ok &= !gp_vm_protect(sh->gp, cur.gva, cur.len, cur.prot);
	}
	return ok;
}

/* Collect the entries of [start, end) into @runs (at most SHADOW_BULK).
 * Returns how many, or SHADOW_BULK + 1 if there are more. */
static size_t collect(struct kvm_x86_shadow *sh, gfn_t start, gfn_t end, bool wrprot,
		      struct va_run *runs)
{
	size_t n = 0;

	if (end - start <= sh->nbuckets) {
		for (gfn_t g = start; g < end; g++) {
			struct shadow_ent *e = sh->by_gfn[hash64(g, sh->nbuckets)];

			for (; e; e = e->gfn_next) {
				if (e->gfn != g || (wrprot && !(e->prot & PROT_WRITE)))
					continue;
				if (n == SHADOW_BULK)
					return n + 1;
				runs[n++] = (struct va_run){ e->gva, 4096, 0 };
			}
		}
		return n;
	}
	for (size_t i = 0; i < sh->nbuckets; i++) {
		for (struct shadow_ent *e = sh->by_gfn[i]; e; e = e->gfn_next) {
			if (e->gfn < start || e->gfn >= end ||
			    (wrprot && !(e->prot & PROT_WRITE)))
				continue;
			if (n == SHADOW_BULK)
				return n + 1;
			runs[n++] = (struct va_run){ e->gva, 4096, 0 };
		}
	}
	return n;
}

/* The MMU's notifier (mmu.h).  Context: mmu_lock held for write. */
static void shadow_zap(struct kvm_mmu_notifier *n, gfn_t start, gfn_t end, bool wrprot)
{
	struct kvm_x86_shadow *sh = (struct kvm_x86_shadow *)n;
	struct va_run runs[SHADOW_BULK];
	size_t nr;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	wait_inflight(sh, NULL, false, start, end);
	nr = collect(sh, start, end, wrprot, runs);
	if (nr > SHADOW_BULK) {
		drop_all_locked(sh, NULL);
	} else if (nr) {
		for (size_t i = 0; i < nr; i++) {
			struct shadow_ent *e = find_gva(sh, runs[i].gva);

			if (wrprot) {
				e->prot &= ~PROT_WRITE;
				runs[i].prot = e->prot;
			} else {
				runs[i].prot = -1;
				ent_unlink(e);
				free(e);
				sh->nr--;
			}
		}
		/*
		 * A page left writable or mapped would let the guest write
		 * unlogged or reach zapped memory: drop everything instead
		 * (whole-range munmaps split nothing, so they do not fail).
		 */
		if (!apply_runs(sh, runs, nr))
			drop_all_locked(sh, NULL);
	}
	gm_mutex_unlock(&sh->lock);
}

/* ---- lifetime ------------------------------------------------------------ */

int x86_shadow_create(struct kvm *kvm, struct gp_vm *gp, struct kvm_x86_shadow **out)
{
	struct kvm_x86_shadow *sh = calloc(1, sizeof(*sh));

	if (!sh)
		return -ENOMEM;
	sh->nbuckets = 1024;
	sh->by_gfn = calloc(sh->nbuckets, sizeof(*sh->by_gfn));
	sh->by_gva = calloc(sh->nbuckets, sizeof(*sh->by_gva));
	if (!sh->by_gfn || !sh->by_gva) {
		free(sh->by_gfn);
		free(sh->by_gva);
		free(sh);
		return -ENOMEM;
	}
	sh->kvm = kvm;
	sh->gp = gp;
	sh->notifier.zap = shadow_zap;
	gm_check_pthread(pthread_mutex_init(&sh->lock, NULL));
	gm_check_pthread(pthread_cond_init(&sh->cv, NULL));
	kvm_mmu_register_notifier(kvm, &sh->notifier);
	*out = sh;
	return 0;
}

void x86_shadow_destroy(struct kvm_x86_shadow *sh)
{
	if (!sh)
		return;
	kvm_mmu_unregister_notifier(sh->kvm, &sh->notifier);
	free_all_entries(sh);
	free(sh->by_gfn);
	free(sh->by_gva);
	pthread_cond_destroy(&sh->cv);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

void x86_shadow_add_vcpu(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv)
{
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	sv->next = sh->vcpus;
	sh->vcpus = sv;
	gm_mutex_unlock(&sh->lock);
}

void x86_shadow_remove_vcpu(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv)
{
	struct x86_shadow_vcpu **p;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	for (p = &sh->vcpus; *p; p = &(*p)->next) {
		if (*p == sv) {
			*p = sv->next;
			break;
		}
	}
	gm_mutex_unlock(&sh->lock);
}

/* ---- vCPU side --------------------------------------------------------- */

void x86_shadow_set_mode(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv,
			 const struct x86_shadow_mode *m)
{
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	if (!sh->mode_valid || memcmp(&sh->mode, m, sizeof(*m))) {
		drop_all_locked(sh, sv);
		sh->mode = *m;
		sh->mode_valid = true;
	}
	gm_mutex_unlock(&sh->lock);
}

void x86_shadow_flush_all(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv)
{
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	drop_all_locked(sh, sv);
	gm_mutex_unlock(&sh->lock);
}

/*
 * The entry for @gva's page, or for a piece of the large guest page that
 * holds @gva: a shadowed run starts where the guest faulted, so the 4 KiB
 * page at @gva may be unmapped while others of its large page are.  The
 * pieces of a 2 MiB page (and, with x86_run.c's second call, of either
 * half of a 4 MiB one) lie in @gva's 2 MiB region.
 */
static struct shadow_ent *find_covering(struct kvm_x86_shadow *sh, uint64_t gva)
{
	uint64_t region = gva & ~((1ULL << 21) - 1);
	struct shadow_ent *e = find_gva(sh, gva & ~0xfffULL);

	if (e)
		return e;
	for (uint64_t a = region; a < region + (1ULL << 21); a += 4096) {
		e = find_gva(sh, a);
		if (e && e->level > 1) {
			uint64_t size = 1ULL << (12 + 9 * (e->level - 1));

			if ((e->gva & ~(size - 1)) == (gva & ~(size - 1)))
				return e;
		}
	}
	return NULL;
}

void x86_shadow_flush_gva(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv, uint64_t gva)
{
	struct shadow_ent *e;
	uint64_t lo = gva & ~0xfffULL, hi = lo + 4096;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	e = find_covering(sh, gva);
	if (!e && sh->gb_mapped) {
		/* Perhaps a piece of a 1 GiB page elsewhere: flushing more
		 * than INVLPG asks is always allowed. */
		drop_all_locked(sh, sv);
		gm_mutex_unlock(&sh->lock);
		return;
	}
	if (e && e->level > 1) {
		/* A large guest page: every 4 KiB piece of it may be mapped. */
		uint64_t size = 1ULL << (12 + 9 * (e->level - 1));

		lo = gva & ~(size - 1);
		hi = lo + size;
	}
	wait_inflight(sh, sv, true, lo, hi);
	for (uint64_t a = lo; a < hi; a += 4096) {
		e = find_gva(sh, a);
		if (e) {
			ent_unlink(e);
			free(e);
			sh->nr--;
		}
	}
	/* A failed unmap (a split at vm.max_map_count) must not leave the old translation. */
	if (gp_vm_unmap(sh->gp, lo, hi - lo))
		drop_all_locked(sh, sv);
	gm_mutex_unlock(&sh->lock);
}

uint64_t x86_shadow_nr_pages(struct kvm_x86_shadow *sh)
{
	uint64_t n;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	n = sh->nr;
	gm_mutex_unlock(&sh->lock);
	return n;
}

/*
 * Hand back backing slot @i: unmap every page mapped from it (after the
 * maps in flight landed), then close the process's copy of the file.
 * Context: sh->lock held.
 */
static void backing_evict(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self, unsigned i)
{
	uint32_t id = sh->backings[i].id;
	bool ok = true;

	wait_inflight(sh, self, true, 0, GP_USER_TOP);
	for (size_t b = 0; b < sh->nbuckets; b++) {
		struct shadow_ent *e = sh->by_gfn[b], *next;

		for (; e; e = next) {
			next = e->gfn_next;
			if (e->backing != id)
				continue;
			ok &= !gp_vm_unmap(sh->gp, e->gva, 4096);
			ent_unlink(e);
			free(e);
			sh->nr--;
		}
	}
	/* No page of the file may stay mapped once it is handed back. */
	if (!ok)
		drop_all_locked(sh, self);
	(void)gp_vm_remove_backing(sh->gp, id);
	sh->backings[i] = sh->backings[--sh->nr_backings];
}

/*
 * A free entry in the table: when it is full, a file no memslot or
 * guest_memfd reaches any more goes first, else one in turn; never a held
 * one (-EMFILE if all are).  Context: sh->lock held.
 */
static int backing_make_room(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self)
{
	unsigned victim = SHADOW_MAX_BACKINGS;

	if (sh->nr_backings < SHADOW_MAX_BACKINGS)
		return 0;
	for (unsigned i = 0; i < sh->nr_backings; i++) {
		if (!sh->backings[i].held &&
		    !kvm_backing_file_in_use(sh->kvm, sh->backings[i].file_id)) {
			victim = i;
			break;
		}
	}
	for (unsigned n = 0; victim == SHADOW_MAX_BACKINGS && n < SHADOW_MAX_BACKINGS; n++) {
		unsigned i = sh->evict_hand++ % SHADOW_MAX_BACKINGS;

		if (!sh->backings[i].held)
			victim = i;
	}
	if (victim == SHADOW_MAX_BACKINGS)
		return -EMFILE;
	backing_evict(sh, self, victim);
	return 0;
}

/* ---- storage held by the guest process (struct gm_backing_holder) --------- */

static int holder_create(void *ctx, enum gm_backing_kind kind, uint64_t size, uint64_t file_id,
			 uint32_t *id)
{
	struct kvm_x86_shadow *sh = ctx;
	int r;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	r = backing_make_room(sh, NULL);
	if (!r)
		r = gp_vm_create_backing(sh->gp,
					 kind == GM_BACKING_SECRETMEM ? GP_BACKING_SECRETMEM
								      : GP_BACKING_MEMFD,
					 size, id);
	if (!r)
		sh->backings[sh->nr_backings++] =
			(struct shadow_backing){ .file_id = file_id, .id = *id, .held = true };
	gm_mutex_unlock(&sh->lock);
	return r;
}

/*
 * A guest process that is gone (EIO) took the VM with it: dead, as after
 * kvm_vm_dead(), no vCPU runs again and no other VM can bind the file.
 * The kernel's guest_memfd still allocates and punches then; nothing can
 * map those pages, so both succeed with nothing behind them.
 */
static int holder_answer(int r)
{
	return r == -EIO ? 0 : r;
}

static int holder_fallocate(void *ctx, uint32_t id, int mode, uint64_t off, uint64_t len)
{
	struct kvm_x86_shadow *sh = ctx;

	return holder_answer(gp_vm_fallocate(sh->gp, id, mode, off, len));
}

static int holder_zero(void *ctx, uint32_t id, uint64_t off, uint64_t len)
{
	struct kvm_x86_shadow *sh = ctx;

	return holder_answer(gp_vm_zero(sh->gp, id, off, len));
}

/* The storage is freed: unmap what the guest still maps of it, close it. */
static void holder_drop(void *ctx, uint32_t id)
{
	struct kvm_x86_shadow *sh = ctx;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	for (unsigned i = 0; i < sh->nr_backings; i++) {
		if (sh->backings[i].held && sh->backings[i].id == id) {
			backing_evict(sh, NULL, i);
			break;
		}
	}
	gm_mutex_unlock(&sh->lock);
}

/* The guest process's copy of file @file_id, or NULL.  Context: sh->lock held. */
static const struct shadow_backing *find_backing(const struct kvm_x86_shadow *sh,
						 uint64_t file_id)
{
	for (unsigned i = 0; i < sh->nr_backings; i++)
		if (sh->backings[i].file_id == file_id)
			return &sh->backings[i];
	return NULL;
}

int x86_shadow_held_id(struct kvm_x86_shadow *sh, uint64_t file_id, uint32_t *id)
{
	const struct shadow_backing *b;
	int r = -ENOENT;

	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	b = find_backing(sh, file_id);
	if (b && b->held) {
		*id = b->id;
		r = 0;
	}
	gm_mutex_unlock(&sh->lock);
	return r;
}

void x86_shadow_holder(struct kvm_x86_shadow *sh, struct gm_backing_holder *out)
{
	*out = (struct gm_backing_holder){ holder_create, holder_fallocate, holder_zero,
					   holder_drop, sh };
}

/*
 * The guest process's id for @b's file, handing it over once.  When the
 * table is full, a file no memslot or guest_memfd reaches any more goes
 * first, else one in turn.  Context: sh->lock held, inside the RCU
 * section that found @b (its fd is borrowed).
 */
static int backing_id(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *self,
		      const struct kvm_gfn_backing *b, uint32_t *id)
{
	const struct shadow_backing *have = find_backing(sh, b->file_id);
	int r;

	if (have) {
		*id = have->id;
		return 0;
	}
	if (b->fd < 0 && b->kfd < 0) /* a held file, dropped since the lookup: its zap is coming */
		return -EAGAIN;
	r = backing_make_room(sh, self);
	if (r)
		return r;
	if (b->fd >= 0) {
		r = gp_vm_add_backing(sh->gp, b->fd, id);
	} else {
		/*
		 * Kept out of the VMM's table (lib/keepfd.h): opened for the
		 * hand-over with the file's own access mode (writable if it is:
		 * another slot may map it so, whatever this slot's flags).
		 */
		int fd = gm_fd_fetch(b->kfd);

		r = fd < 0 ? -errno : gp_vm_add_backing(sh->gp, fd, id);
		if (fd >= 0)
			gm_fd_close(fd);
	}
	if (r)
		return r;
	sh->backings[sh->nr_backings++] = (struct shadow_backing){ b->file_id, *id };
	return 0;
}

int x86_shadow_map(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv, struct kvm *kvm,
		   uint64_t gva, gfn_t gfn, unsigned npages, int level, int prot, bool fetch,
		   unsigned long mmu_seq)
{
	struct kvm_gfn_backing b;
	bool is_private = false;
	unsigned n;
	int r = 0;
	uint32_t id;

	if (sv->nr_maps == X86_SHADOW_MAX_MAPS)
		return -ENOSPC;
	/*
	 * With maps already in flight never block on mmu_lock: a zapper
	 * holding it may be waiting for exactly those maps to be applied.
	 */
	if (!sv->nr_maps)
		gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
	else if (gm_rwlock_tryrdlock(&kvm->mmu_lock, GM_LOCK_MMU))
		return -ENOSPC;
	gm_rcu_read_lock();
	/*
	 * Under mmu_lock no zap can remove a stage-2 entry now: what is
	 * present is current.  The run ends at the first page that is not
	 * (absent, read-only for a writable mapping, the other attribute,
	 * or touched by an invalidation since the snapshot).
	 */
	for (n = 0; n < npages; n++) {
		int s2_level = S2_PG_LEVEL_4K;
		uint64_t s2;

		if (mmu_invalidate_retry_gfn(kvm, mmu_seq, gfn + n))
			break;
		s2 = kvm_mmu_lookup(kvm, gfn + n, &s2_level);
		if (!s2 || ((prot & PROT_WRITE) && !(s2 & S2_WRITABLE)))
			break;
		if (!n)
			is_private = s2 & S2_PRIVATE;
		else if (is_private != !!(s2 & S2_PRIVATE))
			break;
	}
	if (!n) {
		r = -EAGAIN;
		goto out_rcu;
	}
	r = kvm_gfn_to_backing_info(kvm, 0, gfn, is_private, n, &b);
	if (r == -ENOENT) /* the slot is going away: its zap is coming */
		r = -EAGAIN;
	if (r)
		goto out_rcu;
	n = (unsigned)GM_MIN((uint64_t)n, b.run_pages);
	/*
	 * hugetlbfs maps whole huge pages only (the kernel would round a
	 * shorter map up, exposing pages the shadow does not track): a run
	 * must be exactly aligned blocks of it.
	 */
	if (b.map_align > GM_PAGE_SIZE) {
		uint64_t pages = b.map_align >> GM_PAGE_SHIFT;

		n -= (unsigned)(n % pages);
		if ((gva | b.offset) & (b.map_align - 1) || !n) {
			r = -EXDEV;
			goto out_rcu;
		}
	}
	if (!b.writable)
		prot &= ~PROT_WRITE;
	if (!b.executable) {
		r = -EPERM;
		if (fetch)
			goto out_rcu;
		prot &= ~PROT_EXEC;
		r = 0;
	}
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	r = backing_id(sh, sv, &b, &id);
	if (r)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		struct shadow_ent *e;

		if (sh->nr >= sh->nbuckets * 2 && shadow_grow(sh)) {
			n = i; /* map what is recorded */
			break;
		}
		e = find_gva(sh, gva + i * 4096ULL);
		if (!e) {
			e = calloc(1, sizeof(*e));
			if (!e) {
				n = i;
				break;
			}
			sh->nr++;
		} else {
			ent_unlink(e); /* the guest VA now maps another gfn or rights */
		}
		e->gva = gva + i * 4096ULL;
		e->gfn = gfn + i;
		e->prot = prot;
		e->backing = id;
		e->level = (uint8_t)level;
		ent_link(sh, e);
		if (level >= 3)
			sh->gb_mapped = true;
	}
	if (!n) {
		r = -ENOMEM;
		goto out;
	}
	sv->maps[sv->nr_maps] = (struct gp_map){ .gva = gva, .len = n * 4096ULL,
						 .offset = b.offset, .backing = id, .prot = prot };
	sv->gfns[sv->nr_maps] = gfn;
	sv->npages[sv->nr_maps++] = n;
	sv->inflight = true;
out:
	gm_mutex_unlock(&sh->lock);
out_rcu:
	gm_rcu_read_unlock();
	gm_rwlock_unlock(&kvm->mmu_lock);
	return r;
}

void x86_shadow_run_end(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv)
{
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	sv->nr_maps = 0;
	if (sv->inflight || sv->kicked) {
		sv->inflight = false;
		sv->kicked = false;
		gm_check_pthread(pthread_cond_broadcast(&sh->cv));
	}
	gm_mutex_unlock(&sh->lock);
}

void x86_shadow_forget(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv)
{
	gm_mutex_lock(&sh->lock, GM_LOCK_SHADOW);
	if (!forget_locked(sh, sv))
		drop_all_locked(sh, sv);
	gm_mutex_unlock(&sh->lock);
}
