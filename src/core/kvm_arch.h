/* SPDX-License-Identifier: MIT */
/*
 * The hooks core calls into the layers above it, as Linux's generic KVM
 * code calls its kvm_arch_* functions: declared here by core, defined by
 * the software stage-2 MMU (src/mmu) and the vCPU layer (src/vcpu).  Core
 * includes no header of those layers and calls nothing else of theirs.
 *
 * Every function returns 0 or a negative errno unless it says otherwise.
 */
#ifndef GM_CORE_KVM_ARCH_H
#define GM_CORE_KVM_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm_host.h"

/* ---- private storage held by the guest process (src/vcpu/x86_run.c) --- */

struct gm_backing_holder;
/*
 * The process that holds a guest_memfd's storage alone when
 * kvm->private_held: the VM's guest process, started if need be.
 * Fills @out (see struct gm_backing_holder, core/backing.h).
 */
int kvm_arch_private_holder(struct kvm *kvm, struct gm_backing_holder *out);

/* ---- the MMU (src/mmu) ------------------------------------------------ */

/* Per-VM stage-2 tables: at VM creation (-ENOMEM) and destruction. */
int kvm_arch_mmu_create(struct kvm *kvm);
/* Context: no readers remain (VM destruction). */
void kvm_arch_mmu_destroy(struct kvm *kvm);

/*
 * Clear every translation of [start, end) in @slot (NULL: whatever maps
 * those gfns).  Returns true if a remote TLB flush is needed.
 * Context: mmu_lock held for write, inside an invalidation.
 */
bool kvm_arch_unmap_gfn_range(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			      gfn_t end);
/*
 * The MMU's part of kvm_flush_remote_tlbs(): a grace period, after which
 * no vCPU uses a translation zapped before the call.
 * Context: no RCU read lock, no mmu_lock held.
 */
void kvm_arch_flush_remote_tlbs(struct kvm *kvm);
/* Zap everything of @slot (delete/move).  Context: slots_lock held. */
void kvm_arch_flush_shadow_memslot(struct kvm *kvm, struct kvm_memory_slot *slot);

/*
 * Dirty logging (src/core/dirty_log.c): make every 4 KiB translation in
 * [start, end) read-only, so that the next write faults and is logged;
 * huge translations there are split to 4 KiB first (eager splitting).
 * Not an invalidation: nothing a fault resolved becomes stale, only its
 * write permission is withdrawn.  Returns true if a remote TLB flush is
 * needed before the caller may rely on it.  Context: mmu_lock held for
 * write.
 */
bool kvm_arch_mmu_write_protect_gfn_range(struct kvm *kvm, gfn_t start, gfn_t end);

/* Huge-page metadata of a new slot (-ENOMEM).  Context: slots_lock held. */
int kvm_arch_alloc_memslot_metadata(struct kvm *kvm, struct kvm_memory_slot *slot);
void kvm_arch_free_memslot_metadata(struct kvm_memory_slot *slot);
/*
 * Attributes of [start, end) in @slot became @attrs: recompute the
 * huge-page mixed flags (spec §4.8).  Context: mmu_lock held for write.
 */
void kvm_arch_post_set_memory_attributes(struct kvm *kvm, struct kvm_memory_slot *slot,
					 gfn_t start, gfn_t end, uint64_t attrs);

/* ---- vCPUs, eventfds and the irqchip (src/vcpu) ----------------------- */

/* VM destruction: free every vCPU.  Context: no fd or handle left. */
void kvm_arch_destroy_vcpus(struct kvm *kvm);
/* VM destruction: stop the eventfd watcher, free irqfds, ioeventfds and
 * the irqchip.  Context: no vCPU runs any more. */
void kvm_arch_eventfds_destroy(struct kvm *kvm);
/* VM destruction: the x86 VM state (MSR filter, coalesced MMIO zones).
 * Context: no vCPU left. */
void kvm_arch_destroy_vm(struct kvm *kvm);
/* KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): -EINVAL, -EEXIST, -ENOMEM. */
int kvm_arch_enable_split_irqchip(struct kvm *kvm, uint64_t nr_reserved_ioapic_pins);
/* A full or split irqchip, i.e. in-kernel LAPICs.  Context: any. */
bool kvm_arch_irqchip_in_kernel(struct kvm *kvm);
/* The host keeps per-thread run delays, for steal time (kvm_pv.c). */
bool kvm_arch_sched_info_on(void);
/* KVM_CAP_TSC_CONTROL / KVM_CAP_VM_TSC_CONTROL: the guest TSC can be scaled (tsc.c). */
bool kvm_arch_has_tsc_control(void);
/* The base of kvm-clock (kvm_pv.c): raw monotonic time counted from boot. */
int64_t kvm_arch_kvmclock_base_ns(void);

#endif
