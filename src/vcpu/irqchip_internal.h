/* SPDX-License-Identifier: MIT */
/*
 * The irqchip model's inside, shared by its files only (the kernel's split):
 *   irqchip.c   VM-level entry points: KVM_CREATE_IRQCHIP, the split
 *               irqchip, KVM_IRQ_LINE, KVM_SET_GSI_ROUTING, kvm_set_irq()
 *   irq_comm.c  the GSI routing table and its entries (irq_comm.c)
 *   i8259.c     the PIC pair
 *   ioapic.c    the IOAPIC
 *   lapic.c     the vCPUs' LAPIC models, interrupt acceptance and EOI
 *   msi.c       MSI delivery and KVM_SIGNAL_MSI
 * Everything here runs with ev->irq_lock held unless it says otherwise.
 *
 * Status values follow the kernel's chip code: kvm_set_irq() sums the
 * non-negative results of every route of a GSI (-1 if none is), the PIC
 * answers 1 for a new edge, 0 when the pin's IRR bit was already set and -1
 * when the pin is masked, the IOAPIC answers 1 for a de-assertion, 0 for an
 * edge already pending, and otherwise the number of vCPUs it delivered to
 * (-1 masked, level pin awaiting EOI, or no target).
 */
#ifndef GM_VCPU_IRQCHIP_INTERNAL_H
#define GM_VCPU_IRQCHIP_INTERNAL_H

#include "vcpu/irqchip.h"

struct kvm_kpic_state {
	uint8_t last_irr; /* edge detection: the line level last seen */
	uint8_t irr;
	uint8_t imr;
	uint8_t isr;
	uint8_t elcr; /* level-triggered pins; 0 after reset */
};

/* IOAPIC redirection entry fields (the 82093AA's layout, as the kernel's). */
#define IOAPIC_RTE_VECTOR 0xffULL
#define IOAPIC_RTE_DELIVERY_MODE(e) (((e) >> 8) & 7)
#define IOAPIC_RTE_DEST_LOGICAL (1ULL << 11)
#define IOAPIC_RTE_DELIVERY_STATUS (1ULL << 12)
#define IOAPIC_RTE_REMOTE_IRR (1ULL << 14)
#define IOAPIC_RTE_LEVEL (1ULL << 15)
#define IOAPIC_RTE_MASKED (1ULL << 16)
#define IOAPIC_RTE_DEST_SHIFT 56

struct kvm_irqchip_state {
	struct kvm_kpic_state pics[2];
	unsigned long pic_line[KVM_PIC_NUM_PINS]; /* a bit per IRQ source id */
	uint32_t ioapic_irr;
	uint64_t redirtbl[KVM_IOAPIC_NUM_PINS];
	uint32_t ioregsel;
	uint8_t ioapic_id;
	unsigned long ioapic_line[KVM_IOAPIC_NUM_PINS];
	bool guest_ready; /* kvm_irqchip_guest_setup() ran */
};

/* Delivery modes (ICR, MSI data and redirection entry bits 10:8). */
#define APIC_DM_FIXED 0U
#define APIC_DM_LOWEST 1U
#define APIC_DM_SMI 2U
#define APIC_DM_NMI 4U

/* An interrupt on its way to LAPICs (the kernel's struct kvm_lapic_irq). */
struct kvm_lapic_irq {
	uint32_t vector;
	uint32_t delivery_mode; /* APIC_DM_* */
	bool dest_logical;
	bool trig_level; /* level-triggered: the vector's TMR bit is set */
	uint32_t shorthand; /* 0 none, 1 self, 2 all, 3 all but self */
	uint32_t dest_id;
};

/* A route; for PIC routes pin is 0-15 (slave pins + 8), as the kernel's. */
struct kvm_kernel_irq_routing_entry {
	uint32_t gsi;
	uint32_t type;
	uint32_t irqchip;
	uint32_t pin;
	uint32_t msi_lo, msi_hi, msi_data;
};

#define KVM_ROUTES_PER_GSI 3 /* at most one per irqchip */

struct kvm_irq_routing_table {
	/* The GSI an irqchip pin acks as (last route to it wins), or -1. */
	int chip[KVM_NR_IRQCHIPS][KVM_IOAPIC_NUM_PINS];
	uint32_t nr_rt_entries; /* highest GSI + 1 */
	int16_t (*map)[KVM_ROUTES_PER_GSI]; /* per GSI: indices into e[] or -1 */
	uint32_t nr;
	struct kvm_kernel_irq_routing_entry e[];
};

/* ---- irq_comm.c: routing ------------------------------------------------ */

/* Each IRQ source id keeps its level on @line; returns the OR of them. */
int __kvm_irq_line_state(unsigned long *line, int source, int level);
/* A whole table from @nr user entries, or -EINVAL/-ENOMEM (no lock needed). */
int kvm_irq_routing_build(const struct kvm_irq_routing_entry *ue, uint32_t nr, bool split,
			  struct kvm_irq_routing_table **out);
/* The x86 default table: GSI 0-15 to IOAPIC and PIC, 16-23 to the IOAPIC. */
int kvm_setup_default_irq_routing(struct kvm_irq_routing_table **out);
void kvm_irq_routing_free(struct kvm_irq_routing_table *rt);
/* Drive one route's chip pin or MSI; the chip's status (see above). */
int kvm_irq_route_set(struct kvm_eventfds *ev, const struct kvm_kernel_irq_routing_entry *e,
		      int source, int level);

/* ---- i8259.c: the PIC pair ---------------------------------------------- */

/* Pin 0-15 (slave pins + 8): 1 new request, 0 already requested, -1 masked. */
int kvm_pic_set_irq(struct kvm_irqchip_state *c, uint32_t pin, int source, int level);

/* ---- ioapic.c ------------------------------------------------------------ */

int kvm_ioapic_set_irq(struct kvm_eventfds *ev, uint32_t pin, int source, int level);
/*
 * Deliver @pin as its redirection entry says, unless masked or awaiting
 * EOI; a level pin sets remote IRR.  The number of vCPUs reached, or -1.
 */
int kvm_ioapic_service(struct kvm_eventfds *ev, uint32_t pin);
/*
 * The EOI of @pin's vector: for a level-triggered one (@level, the TMR
 * bit) remote IRR clears and a line still high is delivered again.
 */
void kvm_ioapic_update_eoi(struct kvm_eventfds *ev, uint32_t pin, bool level);

/* ---- lapic.c ------------------------------------------------------------- */

/*
 * kvm_irq_delivery_to_apic(): @irq to every LAPIC its shorthand or
 * destination matches (@src: the sending vCPU of an IPI, NULL for the
 * IOAPIC and MSIs).  Fixed and lowest-priority delivery (to the first
 * software-enabled match: no arbitration); other delivery modes reach no
 * one.  Destinations are read in the target's mode: physical ones are
 * APIC ids (the vCPU id), 0xff the xAPIC broadcast and 0xffffffff the
 * x2APIC one (0xff too from the IOAPIC or an MSI, under the x2APIC
 * broadcast quirk); logical ones use the x2APIC cluster format, or the
 * flat model with LDR bit = 1 << APIC id (ids 0-7) in xAPIC mode.
 * Returns the number of LAPICs that took it, 0 if the matching ones are
 * software-disabled, -1 if none matches.  irq_lock held.
 */
int kvm_irq_delivery_to_apic(struct kvm_eventfds *ev, struct kvm_vcpu *src,
			     const struct kvm_lapic_irq *irq);
/*
 * An IPI from @vcpu's ICR (kvm_apic_send_ipi()).  @dest is the destination
 * field (x2APIC: 32 bits; xAPIC: ICR2[31:24]).  No lock held.
 */
void kvm_apic_send_ipi(struct kvm_vcpu *vcpu, uint32_t icr, uint32_t dest);
/* The guest wrote EOI: end the highest vector in service.  No lock held. */
void kvm_apic_eoi_highest(struct kvm_vcpu *vcpu);
/* TPR changed (guest write, KVM_SET_LAPIC): the model's copy.  No lock held. */
void kvm_apic_set_tpr(struct kvm_vcpu *vcpu, uint32_t tpr);
/*
 * The register page's IRR, ISR and TMR (eight 32-bit words each, vector 0
 * in bit 0 of word 0).  Set replaces them (KVM_SET_LAPIC).  No lock held.
 */
void kvm_apic_get_vectors(struct kvm_vcpu *vcpu, uint32_t irr[8], uint32_t isr[8],
			  uint32_t tmr[8]);
void kvm_apic_set_vectors(struct kvm_vcpu *vcpu, const uint32_t irr[8], const uint32_t isr[8],
			  const uint32_t tmr[8]);
/*
 * Give every published vCPU its LAPIC model.  Context: no eventfd lock but
 * irqfds_lock held (takes kvm->lock, then irq_lock, never both).
 */
void kvm_irq_sync_vcpus(struct kvm_eventfds *ev);

/* ---- msi.c --------------------------------------------------------------- */

/* Deliver an MSI; the number of vCPUs reached, -1, or -EINVAL (see msi.c). */
int kvm_set_msi(struct kvm_eventfds *ev, uint32_t lo, uint32_t hi, uint32_t data, int level);

#endif
