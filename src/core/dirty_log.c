// SPDX-License-Identifier: MIT
/*
 * Dirty logging: KVM_MEM_LOG_DIRTY_PAGES, KVM_GET_DIRTY_LOG and
 * KVM_CLEAR_DIRTY_LOG with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2.
 *
 * Write tracking is real: a dirty-logged slot is mapped at 4 KiB, read
 * faults map read-only, and only a write fault maps a page writable, which
 * sets its bit (src/mmu/fault.c).  Harvesting a bit write-protects the page
 * again under mmu_lock and flushes (a grace period) before the ioctl
 * returns, so a write that lands after the return faults and is logged
 * anew.  One difference from the kernel: KVM maps a page writable (and
 * logs it) on its first read fault when the host page is writable; here a
 * page is logged only when the guest writes it.
 *
 * The bitmap is an array of 64-bit words, bit i = page base_gfn + i, the
 * layout user space exchanges.  Bits are set with atomic OR by vCPUs and
 * taken with atomic exchange / AND-NOT under mmu_lock for write.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <guestmem/kvm.h>

#include "kvm_host.h"
#include "kvm_arch.h"
#include "lib/lockdep.h"

#define BITS_PER_WORD 64

uint64_t kvm_dirty_bitmap_bytes(const struct kvm_memory_slot *slot)
{
	return (slot->npages + BITS_PER_WORD - 1) / BITS_PER_WORD * 8;
}

void mark_page_dirty_in_slot(struct kvm_memory_slot *slot, gfn_t gfn)
{
	uint64_t rel;

	if (!slot || !kvm_slot_dirty_track_enabled(slot) || gfn < slot->base_gfn)
		return;
	rel = gfn - slot->base_gfn;
	if (rel >= slot->npages)
		return;
	/* With a dirty ring, the running vCPU's ring instead of the bitmap. */
	if (kvm_dirty_ring_log(slot, rel) || !slot->dirty_bitmap)
		return;
	/* Relaxed: the harvest runs under mmu_lock, which orders against us. */
	__atomic_fetch_or(&slot->dirty_bitmap[rel / BITS_PER_WORD], 1UL << (rel % BITS_PER_WORD),
			  __ATOMIC_RELAXED);
}

int kvm_dirty_log_prepare(struct kvm *kvm, const struct kvm_memory_slot *old,
			  struct kvm_memory_slot *new)
{
	uint64_t bytes = kvm_dirty_bitmap_bytes(new);

	lockdep_assert_held(&kvm->slots_lock);
	if (!kvm_slot_dirty_track_enabled(new)) {
		new->dirty_bitmap = NULL;
		return 0;
	}
	if (old && old->dirty_bitmap) {
		new->dirty_bitmap = old->dirty_bitmap; /* same npages: FLAGS_ONLY/MOVE */
		return 0;
	}
	/* A VM with dirty rings logs into them only (no WITH_BITMAP on x86). */
	if (READ_ONCE(kvm->dirty_ring_size)) {
		new->dirty_bitmap = NULL;
		return 0;
	}
	new->dirty_bitmap = calloc(1, bytes ? bytes : 8);
	if (!new->dirty_bitmap)
		return -ENOMEM;
	if (READ_ONCE(kvm->manual_dirty_log_protect) & KVM_DIRTY_LOG_INITIALLY_SET) {
		memset(new->dirty_bitmap, 0xff, bytes);
		if (new->npages % BITS_PER_WORD) /* no bits past the slot */
			new->dirty_bitmap[new->npages / BITS_PER_WORD] &=
				(1UL << (new->npages % BITS_PER_WORD)) - 1;
	}
	return 0;
}

void kvm_dirty_log_abort(const struct kvm_memory_slot *old, struct kvm_memory_slot *new)
{
	if (new->dirty_bitmap && (!old || new->dirty_bitmap != old->dirty_bitmap))
		free(new->dirty_bitmap);
	new->dirty_bitmap = NULL;
}

void kvm_dirty_log_commit(struct kvm *kvm, const struct kvm_memory_slot *old,
			  const struct kvm_memory_slot *new)
{
	bool flush;

	lockdep_assert_held(&kvm->slots_lock);
	/* No reader sees @old any more: its bitmap goes unless @new kept it. */
	if (old && old->dirty_bitmap && (!new || new->dirty_bitmap != old->dirty_bitmap))
		free(old->dirty_bitmap);
	/*
	 * Logging switched on for a slot that may have translations: split
	 * them to 4 KiB and make them read-only so the next writes are seen
	 * (a new or moved slot has none).  With KVM_DIRTY_LOG_INITIALLY_SET
	 * every page already reads dirty: nothing changes until
	 * KVM_CLEAR_DIRTY_LOG write-protects (and splits) what it clears.
	 * Logging switched off: the slot's translations go, so that the next
	 * faults map huge pages again (the kernel zaps the collapsible ones).
	 */
	if (!old || !new || old->base_gfn != new->base_gfn ||
	    kvm_slot_dirty_track_enabled(old) == kvm_slot_dirty_track_enabled(new))
		return;
	if (kvm_slot_dirty_track_enabled(new) &&
	    (READ_ONCE(kvm->manual_dirty_log_protect) & KVM_DIRTY_LOG_INITIALLY_SET))
		return;
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	if (kvm_slot_dirty_track_enabled(new))
		flush = kvm_arch_mmu_write_protect_gfn_range(kvm, new->base_gfn,
							new->base_gfn + new->npages);
	else
		/* Not an invalidation: what the zap drops is not stale. */
		flush = kvm_arch_unmap_gfn_range(kvm, NULL, new->base_gfn, new->base_gfn + new->npages);
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
}

/* Write-protect the pages of @mask (bit i = @first + i) again. */
bool kvm_mmu_wrprot_masked(struct kvm *kvm, gfn_t first, uint64_t mask)
{
	bool flush = false;

	lockdep_assert_held_write(&kvm->mmu_lock);
	while (mask) {
		unsigned lo = (unsigned)__builtin_ctzll(mask);
		uint64_t rest = mask >> lo;
		/* Length of the run of ones at lo (ctz of 0 is undefined). */
		unsigned run = ~rest ? (unsigned)__builtin_ctzll(~rest) : BITS_PER_WORD - lo;

		flush |= kvm_arch_mmu_write_protect_gfn_range(kvm, first + lo, first + lo + run);
		if (lo + run >= BITS_PER_WORD)
			break;
		mask &= ~(((1ULL << run) - 1) << lo);
	}
	return flush;
}

/* The slot a dirty-log ioctl names, with the kernel's checks. */
static int kvm_dirty_log_slot(struct kvm *kvm, uint32_t slot, struct kvm_memory_slot **out)
{
	uint32_t as_id = slot >> 16, id = slot & 0xffff;

	if (as_id >= (uint32_t)kvm->nr_as || id >= KVM_USER_MEM_SLOTS)
		return -EINVAL;
	*out = kvm->slot_by_id[as_id][id];
	return *out && (*out)->dirty_bitmap ? 0 : -ENOENT;
}

/* Context: slots_lock held. */
static int __kvm_get_dirty_log(struct kvm *kvm, uint32_t slot, void *user, kvm_copy_fn copy_out)
{
	struct kvm_memory_slot *s;
	uint64_t *buf, words;
	bool flush = false;
	int r;

	lockdep_assert_held(&kvm->slots_lock);
	r = kvm_dirty_log_slot(kvm, slot, &s);
	if (r)
		return r;
	words = kvm_dirty_bitmap_bytes(s) / 8;
	/* Manual protect: report without clearing; KVM_CLEAR_DIRTY_LOG re-arms. */
	if (READ_ONCE(kvm->manual_dirty_log_protect))
		return copy_out(user, s->dirty_bitmap, words * 8);
	buf = calloc(words ? words : 1, 8);
	if (!buf)
		return -ENOMEM;
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	for (uint64_t i = 0; i < words; i++) {
		uint64_t *w = (uint64_t *)&s->dirty_bitmap[i];

		if (!__atomic_load_n(w, __ATOMIC_RELAXED))
			continue;
		buf[i] = __atomic_exchange_n(w, 0, __ATOMIC_RELAXED);
		flush |= kvm_mmu_wrprot_masked(kvm, s->base_gfn + i * BITS_PER_WORD, buf[i]);
	}
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
	/* After the harvest, as the kernel: an EFAULT here loses the bits. */
	r = copy_out(user, buf, words * 8);
	free(buf);
	return r;
}

int kvm_vm_ioctl_get_dirty_log(struct kvm *kvm, uint32_t slot, void *bitmap,
			       kvm_copy_fn copy_out)
{
	int r;

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	/* The rings replace the bitmaps: first of all, ENXIO. */
	r = READ_ONCE(kvm->dirty_ring_size) ? -ENXIO : __kvm_get_dirty_log(kvm, slot, bitmap,
									    copy_out);
	gm_mutex_unlock(&kvm->slots_lock);
	return r;
}

/* The pages to clear from the caller's bitmap; then clear and re-arm them. */
static int __kvm_clear_dirty_log(struct kvm *kvm, struct kvm_memory_slot *s, uint64_t first,
				 uint32_t num, const void *user, kvm_copy_fn copy_in)
{
	uint64_t words = (num + BITS_PER_WORD - 1) / BITS_PER_WORD, *buf;
	bool flush = false;
	int r;

	buf = calloc(words ? words : 1, 8);
	if (!buf)
		return -ENOMEM;
	r = copy_in(buf, user, words * 8);
	if (r) {
		free(buf);
		return r;
	}
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	for (uint64_t i = 0; i < words; i++) {
		uint64_t *w = (uint64_t *)&s->dirty_bitmap[first / BITS_PER_WORD + i];
		/* Only bits that really were set: none past the slot's end. */
		uint64_t mask = buf[i] & __atomic_fetch_and(w, ~buf[i], __ATOMIC_RELAXED);

		if (mask)
			flush |= kvm_mmu_wrprot_masked(kvm, s->base_gfn + first + i * BITS_PER_WORD,
						   mask);
	}
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
	free(buf);
	return 0;
}

int kvm_vm_ioctl_clear_dirty_log(struct kvm *kvm, uint32_t slot, uint64_t first_page,
				 uint32_t num_pages, const void *bitmap, kvm_copy_fn copy_in)
{
	struct kvm_memory_slot *s;
	uint32_t as_id = slot >> 16, id = slot & 0xffff;
	int r = -EINVAL;

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	r = -ENXIO; /* no bitmaps with dirty rings */
	if (READ_ONCE(kvm->dirty_ring_size))
		goto out;
	r = -EINVAL;
	/* Kernel order: slot numbers, alignment of first_page, the slot, the range. */
	if (as_id >= (uint32_t)kvm->nr_as || id >= KVM_USER_MEM_SLOTS || (first_page & 63))
		goto out;
	r = kvm_dirty_log_slot(kvm, slot, &s);
	if (r)
		goto out;
	r = -EINVAL;
	if (first_page > s->npages || num_pages > s->npages - first_page ||
	    (num_pages < s->npages - first_page && (num_pages & 63)))
		goto out;
	r = __kvm_clear_dirty_log(kvm, s, first_page, num_pages, bitmap, copy_in);
out:
	gm_mutex_unlock(&kvm->slots_lock);
	return r;
}
