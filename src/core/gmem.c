/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd: creation checks, fallocate, bindings to memslots, the fault
 * path's page lookup and the release of the last file reference
 * (spec §3.3, §3.4.1, §3.5 rules 20-23, §4.1-§4.4).
 *
 * Locks (outermost first): kvm->slots_lock (release, and the callers of
 * bind/unbind), gmem->invalidate_lock (see gmem.h), kvm->mmu_lock (taken
 * here only to drive the invalidation protocol).  Grace periods
 * (gm_synchronize_rcu, kvm_flush_remote_tlbs) are waited for with the
 * invalidate lock held but never with mmu_lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "gmem.h"
#include "gmemfd.h"
#include "vfs.h"
#include "guestmem/kvm.h"
#include "lib/rcu.h"
#include "kvm_arch.h"
#include "lib/lockdep.h"

/* fallocate mode bits the system headers may lack. */

/* Inode numbers: distinct per guest_memfd, like the anonymous-inode fs. */
static uint64_t gm_gmem_next_ino = 1;

static struct kvm_memory_slot *binding_slot(uint64_t value)
{
	return (struct kvm_memory_slot *)(uintptr_t)value;
}

/*
 * Inode timestamps.  Each field is an atomic store and fstat reads them
 * with READ_ONCE, so concurrent fallocates are race-free; a reader may mix
 * the seconds of one update with the nanoseconds of another, like the
 * kernel's lockless timestamp reads.
 */
static void kvm_gmem_touch(struct kvm_gmem *gmem)
{
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	WRITE_ONCE(gmem->mtime.tv_sec, now.tv_sec);
	WRITE_ONCE(gmem->mtime.tv_nsec, now.tv_nsec);
	WRITE_ONCE(gmem->ctime.tv_sec, now.tv_sec);
	WRITE_ONCE(gmem->ctime.tv_nsec, now.tv_nsec);
}

/*
 * The invalidation protocol over the bindings of page indices [start, end)
 * (§4.4); begin and end only if a binding intersects it.  Context:
 * invalidate_lock held for write (bindings stable).
 */
static struct kvm_invalidation kvm_gmem_invalidation(struct kvm_gmem *gmem, uint64_t start,
						     uint64_t end)
{
	return (struct kvm_invalidation){ .source = KVM_INVAL_GMEM, .gmem = gmem,
					  .start = start, .end = end };
}

/* ---- creation and references ------------------------------------------- */

/* §3.3 checks 1-3 for @kvm's profile. */
static int kvm_gmem_check_create(struct kvm *kvm, const struct kvm_create_guest_memfd *args)
{
	/* The supported mask is what KVM_CAP_GUEST_MEMFD_FLAGS reports (0 in 6.8). */
	uint64_t valid = (uint64_t)kvm_check_extension(&kvm->cfg, kvm, KVM_CAP_GUEST_MEMFD_FLAGS);
	int64_t size = (int64_t)args->size;

	if (args->flags & ~valid)
		return -EINVAL;
	if (size <= 0 || !GM_PAGE_ALIGNED((uint64_t)size))
		return -EINVAL;
	return 0; /* reserved[] is never inspected */
}

static int kvm_gmem_init_lock(struct kvm_gmem *gmem)
{
	pthread_rwlockattr_t attr;
	int ret;

	/* Writer preference: a punch-hole must not starve behind allocations. */
	gm_check_pthread(pthread_rwlockattr_init(&attr));
	gm_check_pthread(pthread_rwlockattr_setkind_np(
		&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP));
	ret = pthread_rwlock_init(&gmem->invalidate_lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	return -ret;
}

/*
 * The storage: held by the VM's guest process when the VM keeps private
 * memory there (kvm->private_held), where this process never maps it;
 * else here.  Only a 6.18 MMAP file is ever mapped by the VMM
 * (gmem_fops.c): its shared pages are the VMM's, so it stays here.
 */
static int kvm_gmem_backing_init(struct kvm *kvm, struct kvm_gmem *gmem,
				 const struct kvm_create_guest_memfd *args)
{
	uint64_t nr_pages = args->size >> GM_PAGE_SHIFT;
	bool mmap = args->flags & GUEST_MEMFD_FLAG_MMAP;
	struct gm_backing_holder holder;
	int ret;

	if (kvm->private_held && !mmap) {
		ret = kvm_arch_private_holder(kvm, &holder);
		if (!ret)
			ret = gm_backing_init_held(&gmem->backing, kvm->cfg.backing, nr_pages,
						   &holder, kvm_gmem_file_id(gmem->ino));
		if (ret != -EOPNOTSUPP)
			return ret;
		/* Too large for the held pool: kept here, as before. */
	}
	return gm_backing_init(&gmem->backing, kvm->cfg.backing, nr_pages, mmap);
}

int kvm_gmem_create(struct kvm *kvm, const struct kvm_create_guest_memfd *args,
		    struct kvm_gmem **out)
{
	struct kvm_gmem *gmem;
	int ret = kvm_gmem_check_create(kvm, args);

	if (ret)
		return ret;
	gmem = calloc(1, sizeof(*gmem));
	if (!gmem)
		return -ENOMEM;
	gmem->ino = __atomic_fetch_add(&gm_gmem_next_ino, 1, __ATOMIC_RELAXED);
	ret = kvm_gmem_backing_init(kvm, gmem, args);
	if (ret)
		goto err_free;
	ret = kvm_gmem_init_lock(gmem);
	if (ret)
		goto err_backing;
	rangemap_init(&gmem->bindings);
	rangemap_init(&gmem->poisoned);
	gmem->size = args->size;
	gmem->flags = args->flags;
	gmem->uid = geteuid();
	gmem->gid = getegid();
	kvm_gmem_touch(gmem);
	gmem->refs = 1;
	kvm_get_kvm(kvm); /* the file pins the VM (§4.1) */
	gmem->kvm = kvm;
	*out = gmem;
	return 0;

err_backing:
	gm_backing_fini(&gmem->backing);
err_free:
	free(gmem);
	return ret;
}

void kvm_gmem_get(struct kvm_gmem *gmem)
{
	__atomic_fetch_add(&gmem->refs, 1, __ATOMIC_RELAXED);
}

bool kvm_gmem_tryget(struct kvm_gmem *gmem)
{
	long c = __atomic_load_n(&gmem->refs, __ATOMIC_RELAXED);

	do {
		if (c == 0)
			return false; /* release is running or done */
	} while (!__atomic_compare_exchange_n(&gmem->refs, &c, c + 1, false, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	return true;
}

static int kvm_gmem_forget_slot(void *ctx, uint64_t start, uint64_t end, uint64_t value)
{
	(void)ctx, (void)start, (void)end;
	/* Pairs with the acquire in kvm_gmem_get_pfn(). */
	smp_store_release(&binding_slot(value)->gmem.file, NULL);
	return 0;
}

/*
 * The last file reference is gone (§4.1).  slots_lock keeps memslots from
 * being freed under us and makes unbind wait for (or see) this teardown.
 */
static void kvm_gmem_release(struct kvm_gmem *gmem)
{
	struct kvm *kvm = gmem->kvm;
	struct kvm_invalidation inv = kvm_gmem_invalidation(gmem, 0, ~0ULL);

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	gm_rwlock_wrlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	rangemap_for_each(&gmem->bindings, 0, ~0ULL, kvm_gmem_forget_slot, NULL);
	/* No fault can still be using this file through a slot after this. */
	gm_synchronize_rcu();
	kvm_invalidation_begin(kvm, &inv);
	kvm_invalidation_end(kvm, &inv);
	gm_rwlock_unlock(&gmem->invalidate_lock);
	gm_mutex_unlock(&kvm->slots_lock);

	rangemap_fini(&gmem->bindings);
	rangemap_fini(&gmem->poisoned);
	gm_backing_fini(&gmem->backing);
	pthread_rwlock_destroy(&gmem->invalidate_lock);
	free(gmem);
	kvm_put_kvm(kvm); /* last: may destroy the VM */
}

void kvm_gmem_put(struct kvm_gmem *gmem)
{
	/* acq_rel: every use before a put happens before the release. */
	if (__atomic_sub_fetch(&gmem->refs, 1, __ATOMIC_ACQ_REL) == 0)
		kvm_gmem_release(gmem);
}

/* ---- fallocate (§3.4.1) ------------------------------------------------ */

static int kvm_gmem_allocate(struct kvm_gmem *gmem, uint64_t offset, uint64_t len)
{
	int ret;

	gm_rwlock_rdlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	ret = gm_backing_allocate(&gmem->backing, offset >> GM_PAGE_SHIFT, len >> GM_PAGE_SHIFT);
	gm_rwlock_unlock(&gmem->invalidate_lock);
	return ret;
}

static int kvm_gmem_punch_hole(struct kvm_gmem *gmem, uint64_t offset, uint64_t len)
{
	uint64_t start = offset >> GM_PAGE_SHIFT, end = (offset + len) >> GM_PAGE_SHIFT;
	struct kvm_invalidation inv = kvm_gmem_invalidation(gmem, start, end);

	gm_rwlock_wrlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	kvm_invalidation_begin(gmem->kvm, &inv);
	gm_backing_punch(&gmem->backing, start, end - start);
	/*
	 * A punched page is gone, poisoned or not; the next use gets a fresh
	 * one.  Erasing can fail only on ENOMEM, which leaves the (harmless,
	 * conservative) poison in place.
	 */
	if (!rangemap_range_is(&gmem->poisoned, start, end, 0))
		(void)rangemap_store(&gmem->poisoned, start, end, 0);
	kvm_invalidation_end(gmem->kvm, &inv);
	gm_rwlock_unlock(&gmem->invalidate_lock);
	return 0;
}

/* Every check of a guest_memfd fallocate, in the kernel's order (gmem.h). */
int kvm_gmem_fallocate_checks(enum gm_profile profile, uint64_t size, int mode, int64_t offset,
			      int64_t len)
{
	int ret = vfs_fallocate_args(profile, mode, offset, len);

	if (ret)
		return ret;
	/* A regular file: the pseudo-fs maximum is 2^63 - 1 (no wrap). */
	if ((uint64_t)offset + (uint64_t)len > (uint64_t)INT64_MAX)
		return -EFBIG;
	if (!(mode & FALLOC_FL_KEEP_SIZE))
		return -EOPNOTSUPP;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;
	if (!GM_PAGE_ALIGNED((uint64_t)offset) || !GM_PAGE_ALIGNED((uint64_t)len))
		return -EINVAL;
	/* Punch-hole has no bound against the size: nothing beyond EOF is touched. */
	if (!(mode & FALLOC_FL_PUNCH_HOLE) && (uint64_t)offset + (uint64_t)len > size)
		return -EINVAL;
	return 0;
}

int kvm_gmem_fallocate(struct kvm_gmem *gmem, int mode, int64_t offset, int64_t len)
{
	int ret = kvm_gmem_fallocate_checks(gmem->kvm->cfg.profile, gmem->size, mode, offset, len);

	if (ret)
		return ret;
	if (mode & FALLOC_FL_PUNCH_HOLE)
		ret = kvm_gmem_punch_hole(gmem, (uint64_t)offset, (uint64_t)len);
	else
		ret = kvm_gmem_allocate(gmem, (uint64_t)offset, (uint64_t)len);
	if (!ret)
		kvm_gmem_touch(gmem);
	return ret;
}

/* ---- bindings (§3.5 rules 20-23, §4.2) --------------------------------- */

int kvm_gmem_bind(struct kvm *kvm, struct kvm_memory_slot *slot, struct kvm_gmem *gmem,
		  uint64_t offset, struct kvm_gmem_unbind *undo)
{
	uint64_t size = slot->npages << GM_PAGE_SHIFT, start, end;
	struct rangemap_update *next;
	int ret = -EINVAL;

	lockdep_assert_held(&kvm->slots_lock);
	gm_assert(slot->npages > 0);
	*undo = (struct kvm_gmem_unbind){ NULL, NULL };
	if (gmem->kvm != kvm)
		return -EINVAL;
	/*
	 * Unsigned, overflow-safe bounds: this also rejects the offsets whose
	 * signed sum wraps negative, which 6.8 and 6.18 wrongly accept
	 * (rule 21's quirk, fixed later in mainline).
	 */
	if ((int64_t)offset < 0 || !GM_PAGE_ALIGNED(offset) || size > gmem->size ||
	    offset > gmem->size - size)
		return -EINVAL;
	start = offset >> GM_PAGE_SHIFT;
	end = start + slot->npages;

	gm_rwlock_wrlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	/*
	 * Rule 22: an index already bound to another slot.  EINVAL as of 6.8
	 * and 6.18.44; 6.12.118 has the later split into prepare and commit
	 * and answers EEXIST from the commit (see __kvm_set_memory_region()).
	 */
	if (!rangemap_range_is(&gmem->bindings, start, end, 0)) {
		if (kvm->cfg.profile == GM_PROFILE_LINUX_6_12)
			ret = -EEXIST;
		goto out;
	}
	/*
	 * Both updates before the point of no return: the bound tree, and on
	 * top of it the unbound one that undoes it (the nodes it replaces are
	 * the bound tree's, not today's, which the first commit retires).
	 */
	ret = rangemap_prepare(&gmem->bindings, start, end, (uint64_t)(uintptr_t)slot, &next);
	if (ret)
		goto out;
	ret = rangemap_prepare_next(next, start, end, 0, &undo->next);
	if (ret) {
		rangemap_abort(next);
		goto out;
	}
	rangemap_commit(&gmem->bindings, next);
	undo->gmem = gmem;
	slot->gmem.pgoff = start;
	/* 6.18: an MMAP-capable file serves the slot's shared memory too. */
	if (kvm->cfg.profile == GM_PROFILE_LINUX_6_18 && (gmem->flags & GUEST_MEMFD_FLAG_MMAP))
		slot->flags |= KVM_MEMSLOT_GMEM_ONLY;
	/* Weak pointer, no file reference; pairs with kvm_gmem_get_pfn(). */
	smp_store_release(&slot->gmem.file, gmem);
out:
	gm_rwlock_unlock(&gmem->invalidate_lock);
	return ret;
}

int kvm_gmem_unbind_prepare(struct kvm_memory_slot *slot, struct kvm_gmem_unbind *u)
{
	/*
	 * With slots_lock held, release (which takes it first) has either
	 * finished, and cleared this pointer, or not started: a non-NULL file
	 * is alive here even if its last reference was just dropped (the 6.8
	 * use-after-free that later kernels fixed).
	 */
	struct kvm_gmem *gmem = READ_ONCE(slot->gmem.file);
	uint64_t start = slot->gmem.pgoff;
	int ret;

	*u = (struct kvm_gmem_unbind){ NULL, NULL };
	if (!gmem)
		return 0;
	lockdep_assert_held(&gmem->kvm->slots_lock);
	/* Bindings change only under slots_lock too: this stays current. */
	gm_rwlock_rdlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	ret = rangemap_prepare(&gmem->bindings, start, start + slot->npages, 0, &u->next);
	gm_rwlock_unlock(&gmem->invalidate_lock);
	if (!ret)
		u->gmem = gmem;
	return ret;
}

void kvm_gmem_unbind_commit(struct kvm_memory_slot *slot, struct kvm_gmem_unbind *u)
{
	struct kvm_gmem *gmem = u->gmem;

	if (!gmem)
		return;
	lockdep_assert_held(&gmem->kvm->slots_lock);
	gm_assert(READ_ONCE(slot->gmem.file) == gmem);
	gm_rwlock_wrlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	rangemap_commit(&gmem->bindings, u->next);
	smp_store_release(&slot->gmem.file, NULL);
	gm_synchronize_rcu(); /* faults that loaded the pointer are done */
	gm_rwlock_unlock(&gmem->invalidate_lock);
	*u = (struct kvm_gmem_unbind){ NULL, NULL };
}

void kvm_gmem_unbind_abort(struct kvm_gmem_unbind *u)
{
	if (u->gmem)
		rangemap_abort(u->next);
	*u = (struct kvm_gmem_unbind){ NULL, NULL };
}

/* ---- fault path and memory failure (§4.3) ------------------------------- */

int kvm_gmem_get_pfn(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn, void **hva,
		     int *max_order)
{
	/* Pairs with the release in kvm_gmem_bind(); cleared by unbind/release. */
	struct kvm_gmem *gmem = smp_load_acquire(&slot->gmem.file);
	uint64_t index;
	void *page;
	int err;

	(void)kvm;
	*max_order = 0; /* order-0 pages only */
	/* A file whose last reference is being dropped counts as gone. */
	if (!gmem || READ_ONCE(gmem->refs) == 0)
		return -EFAULT;
	index = gfn - slot->base_gfn + slot->gmem.pgoff;
	if (rangemap_lookup(&gmem->bindings, index) != (uint64_t)(uintptr_t)slot)
		return -EIO;
	if (rangemap_lookup(&gmem->poisoned, index))
		return -EHWPOISON;
	page = gm_backing_page(&gmem->backing, index, true, &err);
	if (!page)
		return err ? err : -ENOMEM;
	*hva = page;
	return 0;
}

int kvm_gmem_error_page(struct kvm_gmem *gmem, uint64_t index)
{
	struct kvm_invalidation inv = kvm_gmem_invalidation(gmem, index, index + 1);
	int err = 0;

	if (index >= gmem->backing.nr_pages)
		return -EINVAL;
	gm_rwlock_wrlock(&gmem->invalidate_lock, GM_LOCK_GMEM_INVALIDATE);
	/* A memory failure hits a page that exists; it stays in the file. */
	if (!gm_backing_page(&gmem->backing, index, true, &err)) {
		err = err ? err : -ENOMEM;
		goto out;
	}
	err = rangemap_store(&gmem->poisoned, index, index + 1, 1);
	if (err)
		goto out;
	/* Invalidate guest mappings of the page, without truncating it. */
	kvm_invalidation_begin(gmem->kvm, &inv);
	kvm_invalidation_end(gmem->kvm, &inv);
out:
	gm_rwlock_unlock(&gmem->invalidate_lock);
	return err;
}

uint64_t kvm_gmem_nr_allocated(struct kvm_gmem *gmem)
{
	return gm_backing_nr_allocated(&gmem->backing);
}
