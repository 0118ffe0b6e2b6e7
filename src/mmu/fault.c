/* SPDX-License-Identifier: MIT */
/*
 * The stage-2 fault path, step for step as x86's TDP MMU in Linux 6.8
 * (spec kvm-gmem-spec.md §4.5):
 *
 *   1 classify private/shared from the attributes (once)
 *   2 look up the memslot (address space 0: vCPUs never run in SMM here)
 *   3 snapshot mmu_invalidate_seq (acquire)
 *   4 lockless pre-check #1
 *   5 resolve the page: invalid slot -> retry; attribute re-check;
 *     private -> guest_memfd; shared -> the slot's host address
 *   7 lockless pre-check #2
 *   8 mmu_lock (read) and the authoritative mmu_invalidate_retry_gfn()
 *   9 choose the level (§4.8) and install
 *
 * A fault runs in an RCU read-side section, standing for the kernel's SRCU
 * section: the memslot, the attribute map and the guest_memfd binding stay
 * valid until the translation is installed, and a zapper's remote flush (a
 * grace period) cannot complete while a fault that might install a stale
 * translation is still running.  A shared page is the exception: asking
 * the host for it may block (I/O, userfaultfd) on a thread that itself
 * needs a grace period (munmap), so that step runs between two sections.
 * seq was snapshotted before it, so any invalidation of the hva afterwards
 * makes the install retry, and a memslot swap in between (generation
 * change) does too.
 *
 * Lock order inside the section: mmu_lock (read) only.  It is taken with a
 * trylock: a writer that held mmu_lock while waiting for a grace period
 * would otherwise deadlock with us; on contention we leave the section,
 * wait for the writer there, and retry the fault.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "core/gmem.h"
#include "core/kvm_host.h"
#include "lib/rcu.h"
#include "lib/sys_raw.h"
#include "mmu/fault.h"
#include "mmu/mmu.h"
#include "lib/lockdep.h"

/* Internal outcomes before the public ones are decided. */
enum {
	KVM_PF_CONTINUE = 100, /* page resolved, go on to install */
	KVM_PF_LOCK_BUSY,      /* mmu_lock held for write: wait outside RCU */
	KVM_PF_HOST,	       /* shared page: ask the host outside RCU */
};

/* ---- the pre-check switch --------------------------------------------- */

/* 1: on, 0: off, -1: not yet read from the environment. */
static int gm_fault_precheck = -1;

static bool precheck_from_env(void)
{
	const char *e = getenv("GUESTMEM_NO_PRECHECK");

	return !(e && e[0] && strcmp(e, "0") != 0);
}

bool kvm_mmu_fault_precheck_enabled(void)
{
	int v = READ_ONCE(gm_fault_precheck);

	if (unlikely(v < 0)) {
		/* Benign race: every thread computes the same value. */
		v = precheck_from_env();
		WRITE_ONCE(gm_fault_precheck, v);
	}
	return v;
}

bool kvm_mmu_set_fault_precheck(bool enable)
{
	bool old = kvm_mmu_fault_precheck_enabled();

	WRITE_ONCE(gm_fault_precheck, enable ? 1 : 0);
	return old;
}

/* ---- host mapping ------------------------------------------------------ */

/*
 * Whether every page of [hva, hva + len) is mapped in this process (the
 * kernel's hva_to_pfn would find a VMA), and with @resident also present
 * in memory (as a host THP would be).  mincore() fails with ENOMEM for any
 * unmapped page of the range; it does not fault anything in.
 */
static bool hva_range_check(uint64_t hva, uint64_t len, bool resident)
{
	unsigned char vec[512];
	const uint64_t chunk = sizeof(vec) * GM_PAGE_SIZE;

	for (uint64_t off = 0; off < len; off += chunk) {
		uint64_t n = GM_MIN(chunk, len - off);

		if (mincore((void *)(uintptr_t)(hva + off), n, vec) != 0)
			return false;
		for (uint64_t i = 0; resident && i < n / GM_PAGE_SIZE; i++)
			if (!(vec[i] & 1))
				return false;
	}
	return true;
}

/*
 * What the kernel's hva_to_pfn() decides for one shared page: fault it in
 * writable if the host mapping allows (KVM maps writable even on a read
 * fault, breaking COW early), else readable, else fail.  MADV_POPULATE_*
 * does exactly that and reports a missing VMA or permission as an error
 * instead of a signal; the raw syscall keeps the preload's madvise hook
 * out of the fault path.  Returns 1 writable, 0 read-only, -EFAULT.
 */
static bool hva_populate_supported(void)
{
	static char probe[GM_PAGE_SIZE] __attribute__((aligned(GM_PAGE_SIZE)));
	static int supported = -1; /* relaxed: every thread computes the same */
	int s = READ_ONCE(supported);

	if (s < 0) {
		/* Permission failures are EINVAL too, so ask about a good page. */
		s = !gm_raw_madvise(probe, GM_PAGE_SIZE, MADV_POPULATE_READ);
		WRITE_ONCE(supported, s);
	}
	return s;
}

static int hva_fault_in(uint64_t hva, bool write)
{
	void *p = (void *)(uintptr_t)hva;

	if (!hva_populate_supported()) /* < 5.14: only "is it mapped" is known */
		return hva_range_check(hva, GM_PAGE_SIZE, false) ? 1 : -EFAULT;
	if (!gm_raw_madvise(p, GM_PAGE_SIZE, MADV_POPULATE_WRITE))
		return 1;
	if (write || gm_raw_madvise(p, GM_PAGE_SIZE, MADV_POPULATE_READ))
		return -EFAULT;
	return 0;
}

int kvm_hva_fault_in(uint64_t hva, bool write)
{
	return hva_fault_in(hva & ~(uint64_t)(GM_PAGE_SIZE - 1), write);
}

/* ---- the fault ---------------------------------------------------------- */

/* State of one fault between the steps; lives inside the RCU section. */
struct fault_ctx {
	struct kvm *kvm;
	struct kvm_page_fault *f;
	struct kvm_fault_stat *st;
	struct kvm_memory_slot *slot;
	unsigned long mmu_seq;
	uint64_t hva;	 /* host address of the faulting page */
	bool from_gmem;	 /* the page came from guest_memfd */
	bool host_ro;	 /* the host maps the shared page read-only */
	int host_level;	 /* the "host page size" around hva (S2_PG_LEVEL_*) */
	int meta_level;	 /* the slot metadata's level, a hint for host_level */
	uint64_t slots_gen; /* memslot generation when hva was computed */
	struct kvm_memslot_cache *slot_cache; /* the vCPU's last-used slot, or NULL */
};

/*
 * The host's "page size" around c->hva, which caps a shared mapping as the
 * host page-table level caps KVM's.  We cannot see the host's page tables,
 * so a block counts as backed huge when all of it is resident (as a THP
 * is), checked with one mincore() call (~1.5 us for 2 MiB; populating the
 * block to learn its protection costs ~60 us, too much for every fault).
 * A read-only host page maps at 4 KiB only.  The memslot metadata was
 * consulted first (as a hint) so that nothing is probed for a block that
 * may not be huge anyway; fault_level() rechecks it under mmu_lock.
 * Limit: pages of one resident block whose protection differs (a VMM that
 * mprotects part of it before the fault) are not told apart; protection
 * changed later through libc is seen by the mmu-notifier hooks.
 */
static int hva_host_level(struct fault_ctx *c)
{
	int level = c->host_ro ? S2_PG_LEVEL_4K : c->meta_level;

	for (; level > S2_PG_LEVEL_4K; level--) {
		uint64_t bytes = s2_level_pages(level) * GM_PAGE_SIZE;

		if (hva_range_check(c->hva & ~(bytes - 1), bytes, true))
			break;
	}
	return level;
}

/* Steps 4 and 7: a hint that an invalidation covers us; may be wrong. */
static bool fault_precheck_stale(const struct fault_ctx *c)
{
	return c->slot && kvm_mmu_fault_precheck_enabled() &&
	       mmu_invalidate_retry_gfn_unsafe(c->kvm, c->mmu_seq, c->f->gfn);
}

/* Fill the memory-fault exit for error @err (kvm_prepare_memory_fault_exit). */
static int fault_memory_exit(struct fault_ctx *c, int err)
{
	c->f->error = err;
	c->f->memory_fault = true;
	return KVM_PF_EXIT;
}

/* Step 5d (and 6.18 gmem-only slots): the page from guest_memfd. */
static int faultin_pfn_gmem(struct fault_ctx *c)
{
	void *page = NULL;
	int max_order = 0, r;

	if (!kvm_slot_can_be_private(c->slot))
		return fault_memory_exit(c, -EFAULT);
	r = kvm_gmem_get_pfn(c->kvm, c->slot, c->f->gfn, &page, &max_order);
	if (r)
		return fault_memory_exit(c, r);
	c->hva = (uint64_t)(uintptr_t)page;
	c->from_gmem = true;
	return KVM_PF_CONTINUE;
}

/* Step 5: resolve the backing page (__kvm_faultin_pfn). */
static int faultin_pfn(struct fault_ctx *c)
{
	struct kvm_memory_slot *slot = c->slot;
	struct kvm_page_fault *f = c->f;

	if (slot && (slot->flags & KVM_MEMSLOT_INVALID))
		return KVM_PF_RETRY; /* being deleted or moved */
	/* The attributes changed since step 1: let user space sort it out. */
	if (f->is_private != kvm_mem_is_private(c->kvm, f->gfn))
		return fault_memory_exit(c, -EFAULT);
	if (f->is_private || (slot && (slot->flags & KVM_MEMSLOT_GMEM_ONLY)))
		return faultin_pfn_gmem(c);
	if (!slot || (f->write && (slot->flags & KVM_MEM_READONLY)))
		return KVM_PF_EMULATE;
	c->hva = kvm_gfn_to_hva_memslot(slot, f->gfn);
	c->meta_level = kvm_mmu_max_mapping_level(c->kvm, slot, f->gfn, S2_PG_LEVEL_1G);
	c->slots_gen = READ_ONCE(kvm_memslots(c->kvm, 0)->generation);
	return KVM_PF_HOST;
}

/*
 * Step 5e, the host side: fault the shared page in, as hva_to_pfn() does,
 * outside the RCU section: it may block (I/O, userfaultfd), and whoever
 * resolves it may need a grace period (munmap's invalidation).  The seq
 * snapshot was taken before, so an invalidation of this hva from now on
 * makes the install retry.
 * No VMA behind the page, or not the access it needs: -EFAULT without
 * memory_fault info, as 6.8's shared path.
 */
static int faultin_pfn_host(struct fault_ctx *c)
{
	int r = hva_fault_in(c->hva, c->f->write);

	if (r < 0)
		return kvm_pf_error(c->f, r);
	c->host_ro = r == 0;
	c->host_level = hva_host_level(c);
	return KVM_PF_CONTINUE;
}

/*
 * Step 9, level: private pages are 4 KiB (6.8: max_order 0).  A shared
 * fault takes the largest level the memslot metadata allows (alignment,
 * gfn/hva congruence, uniform attributes), capped by the host level found
 * before the lock (hva_host_level()).
 * Context: mmu_lock held for read.
 */
static int fault_level(struct fault_ctx *c)
{
	int level;

	lockdep_assert_held(&c->kvm->mmu_lock);
	/* Dirty logging tracks 4 KiB pages (kvm_mmu_hugepage_adjust). */
	if (c->from_gmem || kvm_slot_dirty_track_enabled(c->slot))
		return S2_PG_LEVEL_4K;
	level = kvm_mmu_max_mapping_level(c->kvm, c->slot, c->f->gfn, c->host_level);
	for (; level > S2_PG_LEVEL_4K; level--) {
		uint64_t pages = s2_level_pages(level);
		uint64_t off = (c->f->gfn & (pages - 1)) << GM_PAGE_SHIFT;

		/* The metadata checked gfn/hva congruence; be safe anyway. */
		if (((c->hva - off) & (pages * GM_PAGE_SIZE - 1)) == 0)
			break;
	}
	return level;
}

/* Steps 8 and 9. */
static int fault_install(struct fault_ctx *c)
{
	struct kvm_page_fault *f = c->f;
	uint64_t flags = S2_PRESENT | S2_LEAF, pages, hva_base;
	gfn_t gfn_base;
	int r;

	if (gm_rwlock_tryrdlock(&c->kvm->mmu_lock, GM_LOCK_MMU))
		return KVM_PF_LOCK_BUSY;
	kvm_stat_inc(&c->st->lock_acq);
	/* The authoritative check: no false negative under the lock. */
	if (mmu_invalidate_retry_gfn(c->kvm, c->mmu_seq, f->gfn)) {
		gm_rwlock_unlock(&c->kvm->mmu_lock);
		return KVM_PF_RETRY;
	}
	f->level = fault_level(c);
	pages = s2_level_pages(f->level);
	gfn_base = f->gfn & ~(pages - 1);
	hva_base = c->hva - ((f->gfn - gfn_base) << GM_PAGE_SHIFT);
	if (c->from_gmem)
		flags |= S2_PRIVATE;
	/*
	 * A dirty-logged slot is mapped writable only by a write fault, which
	 * logs the page: a write through a read-only leaf faults again.
	 */
	if (!(c->slot->flags & KVM_MEM_READONLY) && !c->host_ro &&
	    (f->write || !kvm_slot_dirty_track_enabled(c->slot)))
		flags |= S2_WRITABLE;
	/*
	 * The faulting gfn, not gfn_base: if smaller leaves already live in
	 * the block, the stage-2 code maps just this page instead.
	 */
	r = kvm_mmu_install(c->kvm, f->gfn, &f->level, hva_base, flags);
	/*
	 * Logged under mmu_lock: KVM_GET_DIRTY_LOG harvests and write-protects
	 * under it for write, so it either sees this bit or runs before the
	 * leaf became writable.
	 */
	if (!r && (flags & S2_WRITABLE))
		mark_page_dirty_in_slot(c->slot, f->gfn);
	gm_rwlock_unlock(&c->kvm->mmu_lock);
	if (r == -EAGAIN)
		return KVM_PF_RETRY;
	if (r)
		return kvm_pf_error(f, r);
	if (f->level > S2_PG_LEVEL_4K)
		kvm_stat_inc(&c->st->huge_maps);
	return KVM_PF_FIXED;
}

/* Steps 1-5 (up to the host side of a shared page).  Context: RCU held. */
static int __kvm_mmu_page_fault(struct fault_ctx *c)
{
	struct kvm_page_fault *f = c->f;
	int r;

	f->is_private = kvm_mem_is_private(c->kvm, f->gfn);
	c->slot = kvm_cached_gfn_to_memslot(c->kvm, 0, c->slot_cache, f->gfn);
	/* Acquire; pairs with the release of seq in kvm_mmu_invalidate_end(). */
	c->mmu_seq = kvm_mmu_invalidate_seq_snapshot(c->kvm);
	if (fault_precheck_stale(c))
		return KVM_PF_RETRY;
	r = faultin_pfn(c);
	if (r != KVM_PF_CONTINUE)
		return r;
	if (fault_precheck_stale(c))
		return KVM_PF_RETRY;
	return fault_install(c);
}

/*
 * Steps 7-9 for a shared page, back in an RCU section after the host side:
 * the memslot must be the one the hva came from (no memslot swap since).
 */
static int __kvm_mmu_page_fault_shared(struct fault_ctx *c, int host)
{
	if (READ_ONCE(kvm_memslots(c->kvm, 0)->generation) != c->slots_gen)
		return KVM_PF_RETRY;
	c->slot = kvm_cached_gfn_to_memslot(c->kvm, 0, c->slot_cache, c->f->gfn);
	if (host != KVM_PF_CONTINUE)
		return host;
	if (fault_precheck_stale(c))
		return KVM_PF_RETRY;
	return fault_install(c);
}

int kvm_mmu_page_fault(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
		       struct kvm_page_fault *f)
{
	return kvm_vcpu_mmu_page_fault(kvm, gpa, write, st, NULL, f);
}

int kvm_vcpu_mmu_page_fault(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
			    struct kvm_memslot_cache *slot_cache, struct kvm_page_fault *f)
{
	struct fault_ctx c = { .kvm = kvm, .f = f, .st = st, .slot_cache = slot_cache };
	int r;

	memset(f, 0, sizeof(*f));
	f->gpa = gpa;
	f->gfn = gpa >> GM_PAGE_SHIFT;
	f->write = write;
	kvm_stat_inc(&st->faults);

	gm_rcu_read_lock();
	r = __kvm_mmu_page_fault(&c);
	gm_rcu_read_unlock();
	if (r == KVM_PF_HOST) {
		int host = faultin_pfn_host(&c);

		gm_rcu_read_lock();
		r = __kvm_mmu_page_fault_shared(&c, host);
		gm_rcu_read_unlock();
	}

	if (r == KVM_PF_LOCK_BUSY) {
		/*
		 * A writer holds mmu_lock: wait for it outside the section,
		 * counted so that a long writer can yield to us
		 * (kvm_mmu_lock_needbreak()).
		 */
		__atomic_fetch_add(&kvm->mmu_lock_waiters, 1, __ATOMIC_RELAXED);
		gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
		__atomic_fetch_sub(&kvm->mmu_lock_waiters, 1, __ATOMIC_RELAXED);
		kvm_stat_inc(&st->lock_acq);
		gm_rwlock_unlock(&kvm->mmu_lock);
		r = KVM_PF_RETRY;
	}
	if (r == KVM_PF_RETRY)
		kvm_stat_inc(&st->retries);
	else if (r == KVM_PF_FIXED)
		kvm_stat_inc(&st->fixed);
	else if (r == KVM_PF_EMULATE)
		kvm_stat_inc(&st->emulate);
	else if (r == KVM_PF_EXIT && f->memory_fault)
		kvm_stat_inc(&st->memory_fault_exits);
	return r;
}

/* ---- KVM_PRE_FAULT_MEMORY --------------------------------------------------- */

bool kvm_mmu_leaf_usable(struct kvm *kvm, gpa_t gpa, bool write, uint64_t *e, int *level)
{
	*level = S2_PG_LEVEL_4K;
	*e = kvm_mmu_lookup(kvm, gpa >> GM_PAGE_SHIFT, level);
	return *e && (!write || (*e & S2_WRITABLE));
}

int kvm_mmu_fault_in(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
		     struct kvm_memslot_cache *slot_cache, uint64_t *e, int *level,
		     struct kvm_page_fault *f)
{
	for (unsigned retries = 0;;) {
		int r;

		if (kvm_mmu_leaf_usable(kvm, gpa, write, e, level))
			return KVM_PF_FIXED;
		gm_rcu_read_unlock();
		r = kvm_vcpu_mmu_page_fault(kvm, gpa, write, st, slot_cache, f);
		if (r == KVM_PF_RETRY)
			kvm_mmu_retry_backoff(&retries);
		gm_rcu_read_lock();
		if (r == KVM_PF_EMULATE || r == KVM_PF_EXIT)
			return r;
	}
}

/*
 * Map the page at @gpa as a read fault (kvm_tdp_map_page): *level is the
 * level of the translation that covers it (an existing one: the kernel's
 * spurious fault).  Returns 0 or -errno.
 */
static int kvm_tdp_map_page(struct kvm *kvm, struct kvm_fault_stat *st, gpa_t gpa, int *level)
{
	struct kvm_page_fault f;
	uint64_t e;
	int r;

	gm_rcu_read_lock();
	r = kvm_mmu_fault_in(kvm, gpa, false, st, NULL, &e, level, &f);
	gm_rcu_read_unlock();
	if (r == KVM_PF_EMULATE)
		return -ENOENT;
	return r == KVM_PF_EXIT ? f.error : 0;
}

int kvm_vcpu_pre_fault_memory(struct kvm *kvm, struct kvm_fault_stat *st, uint64_t *gpa,
			      uint64_t *size, uint64_t flags)
{
	uint64_t full = *size;
	int r = 0;

	if (flags)
		return -EINVAL;
	if ((*gpa & (GM_PAGE_SIZE - 1)) || (*size & (GM_PAGE_SIZE - 1)) || *gpa + *size <= *gpa)
		return -EINVAL;
	/*
	 * The kernel also stops for a pending signal (-EINTR); a signal that
	 * is not blocked is delivered at once in user space, so there is no
	 * such state to see here.
	 */
	do {
		int level = S2_PG_LEVEL_4K;
		uint64_t bytes, end;

		r = kvm_tdp_map_page(kvm, st, *gpa, &level);
		if (r < 0)
			break;
		/* A huge translation may cover more than the page asked for. */
		bytes = s2_level_pages(level) << GM_PAGE_SHIFT;
		end = (*gpa & ~(bytes - 1)) + bytes;
		bytes = GM_MIN(*size, end - *gpa);
		*size -= bytes;
		*gpa += bytes;
	} while (*size);
	/* Success if at least one page was mapped. */
	return full == *size ? r : 0;
}
