/* SPDX-License-Identifier: MIT */
/*
 * The in-kernel irqchip (spec kvm-vcpu-eventfd-spec.md §6.3, §8.1-§8.5,
 * §8.8): KVM_CREATE_IRQCHIP, the split irqchip, GSI routing, KVM_IRQ_LINE
 * and KVM_SIGNAL_MSI, and interrupt delivery to the vCPUs' guest code.
 *
 * The model, only as large as delivering interrupts needs:
 *
 *  - PIC pair (16 pins) and IOAPIC (24 pins) keep, per pin, one level per
 *    IRQ source id (0 userspace, 1 irqfd resampler; the line is their OR)
 *    and the register state that decides KVM_IRQ_LINE_STATUS's answer:
 *    PIC irr/last_irr/imr/elcr, IOAPIC irr and per-pin mask, trigger mode
 *    and remote IRR.  After KVM_CREATE_IRQCHIP they are in the kernel's
 *    reset state (PIC unmasked and edge, every IOAPIC pin masked and edge).
 *
 *  - Guests do not program the chips' registers.  Instead, when the boot
 *    vCPU (id 0) registers an interrupt handler, we do what a guest kernel
 *    does at boot: mask the PIC, unmask IOAPIC pins 0-15 edge-triggered
 *    and 16-23 level-triggered, all with fixed delivery to the boot vCPU.
 *
 *  - Each vCPU has a LAPIC model (struct kvm_lapic): pending (irr) and
 *    in-service (isr) sets of interrupt numbers.  An IOAPIC pin arrives as
 *    its pin number (= the GSI under the default routing), an MSI as
 *    GUESTMEM_IRQ_MSI_BASE + vector (to the vCPU whose id is the MSI's
 *    destination, or every vCPU for 0xff).  A number in service is not
 *    delivered again until the guest's EOI, which also runs the ack
 *    notifiers (irqfd resample) and re-delivers a level pin still asserted.
 *
 * Locks: ev->irq_lock protects everything here (docs/locking.md has the
 * order).  The vCPU side's lockless check reads only apic->pending.
 */
#ifndef GM_VCPU_IRQCHIP_H
#define GM_VCPU_IRQCHIP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <guestmem/guest.h>
#include <guestmem/kvm.h>

#include "core/kvm_host.h"
#include "vcpu/eventfd.h"

enum kvm_irqchip_mode {
	KVM_IRQCHIP_NONE,
	KVM_IRQCHIP_KERNEL, /* PIC + IOAPIC + LAPIC */
	KVM_IRQCHIP_SPLIT,  /* LAPIC only (KVM_CAP_SPLIT_IRQCHIP) */
};

#define KVM_USERSPACE_IRQ_SOURCE_ID 0
#define KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID 1
#define KVM_PIC_NUM_PINS 16
#define KVM_IOAPIC_NUM_PINS 24
#define KVM_NR_IRQCHIPS 3
#define KVM_MAX_IRQ_ROUTES 4096
#define KVM_MAX_RESERVED_IOAPIC_PINS 24

/* Interrupt numbers a LAPIC model tracks: IOAPIC pins, then 256 MSI vectors. */
#define KVM_LAPIC_NR_IRQS (GUESTMEM_IRQ_MSI_BASE + 256)
#define KVM_LAPIC_WORDS ((int)(KVM_LAPIC_NR_IRQS / 64))

/* A vCPU's interrupt state. */
struct kvm_lapic {
	struct kvm_vcpu *vcpu;
	uint32_t vcpu_id;

	/* Under ev->irq_lock. */
	uint64_t irr[KVM_LAPIC_WORDS];
	uint64_t isr[KVM_LAPIC_WORDS];
	/* irr & ~isr is non-empty: written under irq_lock, READ_ONCE anywhere. */
	bool pending;

	/* The guest program's side, touched by the guest thread only. */
	guestmem_irq_handler handler;
	bool in_handler;

	/* A halted guest sleeps on halt_cv; interrupts and kicks wake it. */
	pthread_mutex_t halt_lock;
	pthread_cond_t halt_cv;
};

/* ---- irqchip mode (cheap, any context) ---------------------------------- */

static inline int kvm_irqchip_mode(struct kvm *kvm)
{
	/* Pairs with the release stores of kvm->eventfds and irqchip_mode. */
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);

	return ev ? smp_load_acquire(&ev->irqchip_mode) : KVM_IRQCHIP_NONE;
}

/* Full or split: "irqchip_in_kernel" (also: the LAPIC is in the kernel). */
static inline bool irqchip_in_kernel(struct kvm *kvm)
{
	return kvm_irqchip_mode(kvm) != KVM_IRQCHIP_NONE;
}

/* Full irqchip: the PIC is in the kernel ("irqchip_kernel"/pic_in_kernel). */
static inline bool irqchip_kernel(struct kvm *kvm)
{
	return kvm_irqchip_mode(kvm) == KVM_IRQCHIP_KERNEL;
}

static inline bool irqchip_split(struct kvm *kvm)
{
	return kvm_irqchip_mode(kvm) == KVM_IRQCHIP_SPLIT;
}

/* ---- VM ioctls ---------------------------------------------------------- */

/* KVM_CREATE_IRQCHIP (§6.3): -EEXIST, -EINVAL once a vCPU exists, -ENOMEM. */
int kvm_vm_ioctl_create_irqchip(struct kvm *kvm);
/*
 * KVM_CREATE_PIT2 / KVM_CREATE_PIT after the copy-in (§6.3): -EEXIST for a
 * second one, no irqchip needed.  The PIT is recorded, not modelled.
 */
int kvm_vm_ioctl_create_pit(struct kvm *kvm, uint32_t flags);
/* KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) (§8.1): kvm_arch_enable_split_irqchip()
 * of core/kvm_arch.h. */

/*
 * Drive @gsi to @level as @irq_source_id through every route of @gsi.
 * Returns the kernel's status: < 0 ignored/masked/no route, 0 coalesced,
 * > 0 delivered.  Context: no irq_lock held (irqfds_lock may be).
 */
int kvm_set_irq(struct kvm *kvm, int irq_source_id, uint32_t gsi, int level);

/* kvm_set_irq(@gsi, 1) then (@gsi, 0), as one step (the irqfd's edge). */
void kvm_set_irq_pulse(struct kvm *kvm, int irq_source_id, uint32_t gsi);

/* KVM_IRQ_LINE(_STATUS) after the copy-in: -ENXIO, or 0 with ->status set. */
int kvm_vm_ioctl_irq_line(struct kvm *kvm, struct kvm_irq_level *irq_event);

/*
 * KVM_SET_GSI_ROUTING (§8.5): steps 2-4 (before the entries are copied)
 * in kvm_irq_routing_precheck(), then steps 6-8 in kvm_set_irq_routing().
 */
int kvm_irq_routing_precheck(struct kvm *kvm, uint32_t nr, uint32_t flags);
int kvm_set_irq_routing(struct kvm *kvm, const struct kvm_irq_routing_entry *ue, uint32_t nr);

/* KVM_SIGNAL_MSI (§8.8): -EINVAL, else the delivery status (may be -1). */
int kvm_send_userspace_msi(struct kvm *kvm, const struct kvm_msi *msi);

/* irqchip.c's part of VM destruction.  Context: no other user left. */
void kvm_irqchip_destroy(struct kvm_eventfds *ev);

/* ---- the vCPU side -------------------------------------------------------- */

/*
 * The LAPIC model of @vcpu, created if needed (NULL only for ENOMEM).
 * Context: no eventfd lock held.
 */
struct kvm_lapic *kvm_vcpu_lapic(struct kvm_vcpu *vcpu);

/* An interrupt is pending for @vcpu (lockless, may be stale). */
bool kvm_cpu_has_interrupt(struct kvm_vcpu *vcpu);
/*
 * Take the next pending interrupt: mark it in service and return its
 * number, or -1 if none.  Context: guest thread, no lock held.
 */
int kvm_cpu_get_interrupt(struct kvm_vcpu *vcpu);
/*
 * The guest's EOI of interrupt number @irq: end its service, run the ack
 * notifiers (irqfd resample) and re-deliver a level pin still asserted.
 * Context: guest thread, no lock held.
 */
void kvm_irqchip_eoi(struct kvm_vcpu *vcpu, uint32_t irq);
/*
 * The boot vCPU's guest is ready for interrupts (it set a handler): program
 * the chips as a guest kernel would (see the top of this file).
 * Context: guest thread, no lock held.
 */
void kvm_irqchip_guest_setup(struct kvm_vcpu *vcpu);

/*
 * The interrupt window (guest_irq.c): if the guest has a handler, is not in
 * it and an interrupt is pending, run the handler for each pending one.
 * Called at every stop point (kvm_guest_stop_point() in vcpu.h) of VMs that
 * have eventfd state.  Context: guest thread, no lock, no RCU section.
 */
void kvm_guest_irq_window(struct kvm_vcpu *vcpu);

/*
 * Wake @vcpu's guest if it sleeps in guestmem_guest_halt(), so that it
 * looks again at its interrupts and at vcpu->kick.  KVM_RUN calls it after
 * setting vcpu->kick for a signal.  Context: any, no eventfd lock held.
 */
void kvm_vcpu_wake_up(struct kvm_vcpu *vcpu);

#endif
