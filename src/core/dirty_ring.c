// SPDX-License-Identifier: MIT
/*
 * The dirty ring (KVM_CAP_DIRTY_LOG_RING, _ACQ_REL): per-vCPU rings of
 * struct kvm_dirty_gfn that the VMM maps from the vCPU fd at page
 * KVM_DIRTY_LOG_PAGE_OFFSET, as an alternative to the dirty bitmap.
 *
 * The write tracking is the one dirty logging uses (src/core/dirty_log.c,
 * src/mmu/fault.c): a logged slot is mapped read-only until a write fault,
 * which now pushes (slot, offset) to the ring of the vCPU that faulted
 * instead of setting a bitmap bit.  The VMM marks harvested entries RESET;
 * KVM_RESET_DIRTY_RINGS walks each ring from its reset index, clears those
 * entries, write-protects their pages again (coalesced into 64-page masks
 * as the kernel does) and flushes before it returns.  Once the ring holds
 * its size less the 64 reserved entries (no PML here) the vCPU exits with
 * KVM_EXIT_DIRTY_RING_FULL before it enters the guest again.
 *
 * Memory order: the vCPU writes an entry's slot and offset, then stores
 * its flags (DIRTY) with release; the VMM's acquire of the flags sees
 * them.  The VMM stores RESET (release, in its own code); the reset walk
 * loads the flags with acquire before reading the entry and stores 0 with
 * release when done.  dirty_index is the vCPU's, reset_index the reset
 * walk's (under slots_lock); each reads the other's with an atomic load.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <guestmem/kvm.h>

#include "kvm_arch.h"
#include "kvm_host.h"
#include "lib/lockdep.h"
#include "lib/shmap.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"

#define KVM_DIRTY_RING_RSVD_ENTRIES 64
#define KVM_DIRTY_RING_MAX_ENTRIES 65536

/* The ring of the vCPU this thread acts for (KVM's running vCPU). */
static __thread struct kvm_dirty_ring *kvm_running_ring;

struct kvm_dirty_ring *kvm_set_running_dirty_ring(struct kvm_dirty_ring *ring)
{
	struct kvm_dirty_ring *old = kvm_running_ring;

	kvm_running_ring = ring;
	return old;
}

long kvm_dirty_ring_max_bytes(void)
{
	return KVM_DIRTY_RING_MAX_ENTRIES * (long)sizeof(struct kvm_dirty_gfn);
}

/*
 * KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]): a power of two, room
 * for the reserved entries and at least a page (EINVAL), at most the
 * maximum (E2BIG), only once (EINVAL), only before the first vCPU.
 */
int kvm_vm_enable_dirty_log_ring(struct kvm *kvm, uint64_t size)
{
	int r = 0;

	if (!size || (size & (size - 1)))
		return -EINVAL;
	if (size < KVM_DIRTY_RING_RSVD_ENTRIES * sizeof(struct kvm_dirty_gfn) ||
	    size < GM_PAGE_SIZE)
		return -EINVAL;
	if (size > (uint64_t)kvm_dirty_ring_max_bytes())
		return -E2BIG;
	if (READ_ONCE(kvm->dirty_ring_size))
		return -EINVAL;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (kvm->created_vcpus)
		r = -EINVAL;
	else
		WRITE_ONCE(kvm->dirty_ring_size, (uint32_t)size);
	gm_mutex_unlock(&kvm->lock);
	return r;
}

int kvm_dirty_ring_alloc(struct kvm *kvm, struct kvm_dirty_ring *ring)
{
	uint32_t bytes = READ_ONCE(kvm->dirty_ring_size);
	void *p;

	memset(ring, 0, sizeof(*ring));
	ring->kvm = kvm;
	if (!bytes)
		return 0;
	/* The VMM maps an alias of it (lib/shmap.h): no descriptor kept. */
	p = gm_shmap_create("kvm-dirty-ring", bytes, bytes);
	if (!p)
		return -ENOMEM;
	ring->gfns = p;
	ring->size = bytes / (uint32_t)sizeof(struct kvm_dirty_gfn);
	ring->soft_limit = ring->size - KVM_DIRTY_RING_RSVD_ENTRIES;
	return 0;
}

void kvm_dirty_ring_free(struct kvm_dirty_ring *ring)
{
	if (ring->gfns)
		gm_raw_munmap(ring->gfns, ring->size * sizeof(struct kvm_dirty_gfn));
	ring->gfns = NULL;
}

static uint32_t kvm_dirty_ring_used(struct kvm_dirty_ring *ring)
{
	return __atomic_load_n(&ring->dirty_index, __ATOMIC_RELAXED) -
	       __atomic_load_n(&ring->reset_index, __ATOMIC_ACQUIRE);
}

bool kvm_dirty_ring_soft_full(struct kvm_dirty_ring *ring)
{
	return ring->size && kvm_dirty_ring_used(ring) >= ring->soft_limit;
}

/*
 * One dirtied page for the VMM.  The reserved entries absorb what comes
 * between soft-full and the exit; a full ring (which KVM only warns about)
 * drops the entry rather than overwrite one the VMM has not collected.
 */
static void kvm_dirty_ring_push(struct kvm_dirty_ring *ring, uint32_t slot, uint64_t offset)
{
	uint32_t idx;
	struct kvm_dirty_gfn *e;

	if (kvm_dirty_ring_used(ring) >= ring->size)
		return;
	idx = __atomic_fetch_add(&ring->dirty_index, 1, __ATOMIC_RELAXED);
	e = &ring->gfns[idx & (ring->size - 1)];
	__atomic_store_n(&e->slot, slot, __ATOMIC_RELAXED);
	__atomic_store_n(&e->offset, offset, __ATOMIC_RELAXED);
	/* Publishes slot and offset; pairs with the VMM's acquire of flags. */
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

bool kvm_dirty_ring_log(struct kvm_memory_slot *slot, uint64_t rel_gfn)
{
	struct kvm_dirty_ring *ring = kvm_running_ring;

	if (!ring || !ring->size)
		return false;
	kvm_dirty_ring_push(ring, ((uint32_t)slot->as_id << 16) | slot->id, rel_gfn);
	return true;
}

/* Write-protect @mask's pages of slot (as_id << 16 | id) from @offset. */
static void kvm_reset_dirty_gfn(struct kvm *kvm, uint32_t slot, uint64_t offset, uint64_t mask)
{
	uint32_t as_id = slot >> 16, id = slot & 0xffff;
	struct kvm_memory_slot *s;

	if (!mask || as_id >= (uint32_t)kvm->nr_as || id >= KVM_USER_MEM_SLOTS)
		return;
	s = kvm->slot_by_id[as_id][id];
	/* The VMM's entries are not trusted: the range must be in the slot. */
	if (!s || offset >= s->npages || offset + 63 - (uint64_t)__builtin_clzll(mask) >= s->npages)
		return;
	/* The flush is the caller's, once for the whole reset. */
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	(void)kvm_mmu_wrprot_masked(kvm, s->base_gfn + offset, mask);
	gm_rwlock_unlock(&kvm->mmu_lock);
}

/*
 * Collect the RESET entries from the reset index on, stopping at the first
 * other one; consecutive pages of one slot within 64 of each other share
 * one write-protection.  Returns how many entries were reset.
 */
static int kvm_dirty_ring_reset(struct kvm *kvm, struct kvm_dirty_ring *ring)
{
	uint32_t cur_slot = 0, next_slot;
	uint64_t cur_off = 0, next_off, mask = 0;
	int count = 0;

	lockdep_assert_held(&kvm->slots_lock);
	while (ring->size) {
		uint32_t ri = __atomic_load_n(&ring->reset_index, __ATOMIC_RELAXED);
		struct kvm_dirty_gfn *e = &ring->gfns[ri & (ring->size - 1)];
		int64_t delta;

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_RESET))
			break;
		next_slot = __atomic_load_n(&e->slot, __ATOMIC_RELAXED);
		next_off = __atomic_load_n(&e->offset, __ATOMIC_RELAXED);
		__atomic_store_n(&e->flags, 0, __ATOMIC_RELEASE);
		/* Release: the entry is free before the vCPU may reuse it. */
		__atomic_store_n(&ring->reset_index, ri + 1, __ATOMIC_RELEASE);
		count++;
		delta = (int64_t)(next_off - cur_off);
		if (mask && next_slot == cur_slot) {
			if (delta >= 0 && delta < 64) {
				mask |= 1ULL << delta;
				continue;
			}
			/* Below the base but the mask still fits once moved down. */
			if (delta < 0 && delta > -64 && !(mask >> (64 + delta))) {
				mask = (mask << -delta) | 1;
				cur_off = next_off;
				continue;
			}
		}
		kvm_reset_dirty_gfn(kvm, cur_slot, cur_off, mask);
		cur_slot = next_slot;
		cur_off = next_off;
		mask = 1;
	}
	kvm_reset_dirty_gfn(kvm, cur_slot, cur_off, mask);
	return count;
}

int kvm_vm_reset_dirty_rings(struct kvm *kvm, struct kvm_dirty_ring *(*ring_of)(struct kvm *,
										   uint32_t),
			     uint32_t nr_vcpus)
{
	int cleared = 0;

	if (!READ_ONCE(kvm->dirty_ring_size))
		return -EINVAL;
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	for (uint32_t i = 0; i < nr_vcpus; i++)
		cleared += kvm_dirty_ring_reset(kvm, ring_of(kvm, i));
	gm_mutex_unlock(&kvm->slots_lock);
	/* Flushed whenever something was reset, as the kernel does. */
	if (cleared)
		kvm_flush_remote_tlbs(kvm);
	return cleared;
}
