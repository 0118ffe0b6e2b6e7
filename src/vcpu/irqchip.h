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
 *  - The IOAPIC has the kernel's redirection table (vector, delivery and
 *    destination mode, trigger mode, remote IRR, mask, destination),
 *    reached by machine-code guests through its MMIO window at 0xfec00000
 *    (IOREGSEL/IOWIN).  C guests do not program it: when the boot vCPU's C
 *    guest registers an interrupt handler we do what a guest kernel does
 *    at boot: mask the PIC, unmask IOAPIC pins 0-15 edge-triggered and
 *    16-23 level-triggered at GUESTMEM_IRQ_PIN_VECTOR(pin), fixed delivery
 *    to the boot vCPU.
 *
 *  - One numbering, x86 vectors, for every guest: an IOAPIC pin arrives at
 *    its redirection entry's vector, an MSI at its data's vector, an IPI
 *    at its ICR's; all go through kvm_irq_delivery_to_apic() into the
 *    target LAPICs' IRR (and TMR for level-triggered ones).  Each vCPU's
 *    LAPIC model (struct kvm_lapic) takes the highest vector whose
 *    priority class is above PPR (TPR and the highest vector in service),
 *    moving it from IRR to ISR.  The EOI ends the highest vector in
 *    service (a C guest names it); if an IOAPIC pin routed to this vCPU
 *    has that vector, the EOI reaches the IOAPIC: the pins' ack notifiers
 *    run (irqfd resample) and, for a level-triggered vector (TMR), their
 *    remote IRR clears and a line still high is delivered again.
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

/* The vectors a LAPIC tracks, as 64-bit words. */
#define KVM_LAPIC_WORDS (256 / 64)

/* A vCPU's interrupt state. */
struct kvm_lapic {
	struct kvm_vcpu *vcpu;
	uint32_t vcpu_id;

	/* Under ev->irq_lock: IRR, ISR and TMR, vector n in bit n % 64 of word n / 64. */
	uint64_t irr[KVM_LAPIC_WORDS];
	uint64_t isr[KVM_LAPIC_WORDS];
	uint64_t tmr[KVM_LAPIC_WORDS];
	uint32_t tpr; /* the register page's TPR, kept here by kvm_apic_set_tpr() */
	/*
	 * The highest IRR vector's class is above PPR (a vector could be
	 * taken now): written under irq_lock, READ_ONCE anywhere.
	 */
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

/* kvm_set_irq() with ev->irq_lock held and every vCPU's LAPIC model made. */
int __kvm_set_irq(struct kvm_eventfds *ev, int irq_source_id, uint32_t gsi, int level);

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

/*
 * The vector the LAPIC would hand out now (IRR above PPR), or -1.
 * Context: any, no lock held.
 */
int kvm_apic_has_interrupt(struct kvm_vcpu *vcpu);
/* kvm_apic_has_interrupt() >= 0. */
bool kvm_cpu_has_interrupt(struct kvm_vcpu *vcpu);
/*
 * Take the next pending interrupt: move it from IRR to ISR and return its
 * vector, or -1 if none.  Context: the vCPU's owner, no lock held.
 */
int kvm_cpu_get_interrupt(struct kvm_vcpu *vcpu);
/*
 * The EOI of @vector: end its service, and if an IOAPIC pin routed here
 * has that vector, run the pins' ack notifiers (irqfd resample) and, for
 * a level-triggered vector, clear their remote IRR (re-delivering a line
 * still high).  A vector not in service is ignored.
 * Context: the vCPU's owner, no lock held.
 */
void kvm_irqchip_eoi(struct kvm_vcpu *vcpu, uint32_t vector);
/*
 * A guest access to the IOAPIC's MMIO window (0xfec00000, 256 bytes,
 * full irqchip only): IOREGSEL at 0x00, IOWIN at 0x10.  False if @gpa is
 * not the IOAPIC's.  Context: the vCPU's owner, no lock held.
 */
bool kvm_ioapic_mmio(struct kvm_vcpu *vcpu, uint64_t gpa, unsigned len, bool write, uint8_t *data);

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
