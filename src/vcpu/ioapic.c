/* SPDX-License-Identifier: MIT */
/*
 * The IOAPIC (the kernel's ioapic.c): per-pin IRR and the redirection
 * table, delivery through kvm_irq_delivery_to_apic(), the EOI's part, and
 * the MMIO window (IOREGSEL/IOWIN) machine-code guests program it through.
 * Not modelled: the RTC pin's coalescing, the EOI-storm throttle, mask
 * notifiers, directed EOI.
 */
#include <string.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

#define IOAPIC_BASE 0xfec00000ULL
#define IOAPIC_MEM_LENGTH 0x100
#define IOAPIC_REG_SELECT 0x00
#define IOAPIC_REG_WINDOW 0x10
#define IOAPIC_REG_APIC_ID 0x00
#define IOAPIC_REG_VERSION 0x01
#define IOAPIC_REG_ARB_ID 0x02
#define IOAPIC_VERSION_ID 0x11

/* ioapic_service(): deliver @pin as its entry says. */
int kvm_ioapic_service(struct kvm_eventfds *ev, uint32_t pin)
{
	uint64_t *e = &ev->chip->redirtbl[pin];
	bool level = *e & IOAPIC_RTE_LEVEL;
	struct kvm_lapic_irq irq = {
		.vector = (uint32_t)(*e & IOAPIC_RTE_VECTOR),
		.delivery_mode = IOAPIC_RTE_DELIVERY_MODE(*e),
		.dest_logical = *e & IOAPIC_RTE_DEST_LOGICAL,
		.trig_level = level,
		.dest_id = (uint32_t)(*e >> IOAPIC_RTE_DEST_SHIFT),
	};
	int ret;

	lockdep_assert_held(&ev->irq_lock);
	if ((*e & IOAPIC_RTE_MASKED) || (level && (*e & IOAPIC_RTE_REMOTE_IRR)))
		return -1;
	ret = kvm_irq_delivery_to_apic(ev, NULL, &irq);
	/* As the kernel: also when no LAPIC took it (-1). */
	if (ret && level)
		*e |= IOAPIC_RTE_REMOTE_IRR;
	return ret;
}

int kvm_ioapic_set_irq(struct kvm_eventfds *ev, uint32_t pin, int source, int level)
{
	struct kvm_irqchip_state *c = ev->chip;
	uint32_t mask = 1u << pin, old = c->ioapic_irr;

	lockdep_assert_held(&ev->irq_lock);
	if (!__kvm_irq_line_state(&c->ioapic_line[pin], source, level)) {
		c->ioapic_irr &= ~mask;
		return 1;
	}
	c->ioapic_irr |= mask;
	/* An edge pin fires on a rising line only: coalesced while it stays high. */
	if (!(c->redirtbl[pin] & IOAPIC_RTE_LEVEL) && old == c->ioapic_irr)
		return 0;
	return kvm_ioapic_service(ev, pin);
}

void kvm_ioapic_update_eoi(struct kvm_eventfds *ev, uint32_t pin, bool level)
{
	uint64_t *e = &ev->chip->redirtbl[pin];

	lockdep_assert_held(&ev->irq_lock);
	if (!level)
		return;
	*e &= ~IOAPIC_RTE_REMOTE_IRR;
	if (!(*e & IOAPIC_RTE_MASKED) && (ev->chip->ioapic_irr & (1u << pin)))
		kvm_ioapic_service(ev, pin);
}

/* ioapic_read_indirect(): the register IOREGSEL selects. */
static uint32_t ioapic_read_indirect(const struct kvm_irqchip_state *c)
{
	uint32_t index = (c->ioregsel - 0x10) >> 1;
	uint64_t e = ~0ULL;

	switch (c->ioregsel) {
	case IOAPIC_REG_VERSION:
		return ((KVM_IOAPIC_NUM_PINS - 1) << 16) | IOAPIC_VERSION_ID;
	case IOAPIC_REG_APIC_ID:
	case IOAPIC_REG_ARB_ID:
		return (uint32_t)(c->ioapic_id & 0xf) << 24;
	default:
		if (c->ioregsel >= 0x10 && index < KVM_IOAPIC_NUM_PINS)
			e = c->redirtbl[index];
		return (c->ioregsel & 1) ? (uint32_t)(e >> 32) : (uint32_t)e;
	}
}

/* ioapic_write_indirect(): remote IRR and delivery status are read-only. */
static void ioapic_write_indirect(struct kvm_eventfds *ev, uint32_t val)
{
	struct kvm_irqchip_state *c = ev->chip;
	const uint64_t ro = IOAPIC_RTE_REMOTE_IRR | IOAPIC_RTE_DELIVERY_STATUS;
	uint32_t index = (c->ioregsel - 0x10) >> 1;
	uint64_t *e, old;

	switch (c->ioregsel) {
	case IOAPIC_REG_VERSION:
	case IOAPIC_REG_ARB_ID:
		return;
	case IOAPIC_REG_APIC_ID:
		c->ioapic_id = (val >> 24) & 0xf;
		return;
	}
	if (c->ioregsel < 0x10 || index >= KVM_IOAPIC_NUM_PINS)
		return;
	e = &c->redirtbl[index];
	old = *e;
	if (c->ioregsel & 1)
		*e = (*e & 0xffffffffULL) | (uint64_t)val << 32;
	else
		*e = (*e & ~0xffffffffULL) | val;
	*e = (*e & ~ro) | (old & ro);
	/* Guests (Linux, Xen) clear remote IRR by switching the pin to edge. */
	if (!(*e & IOAPIC_RTE_LEVEL))
		*e &= ~IOAPIC_RTE_REMOTE_IRR;
	/*
	 * Unmasking a level pin whose IRR is set: the line may have dropped
	 * while masked, so an irqfd resampler on its GSI is asked instead
	 * (its device re-asserts if still high); without one it is delivered.
	 */
	if ((*e & IOAPIC_RTE_LEVEL) && (c->ioapic_irr & (1u << index)) &&
	    !(*e & (IOAPIC_RTE_MASKED | IOAPIC_RTE_REMOTE_IRR))) {
		int gsi = ev->routing->chip[KVM_IRQCHIP_IOAPIC][index];

		if (gsi >= 0 && kvm_notify_irqfd_resampler_locked(ev, (uint32_t)gsi))
			c->ioapic_irr &= ~(1u << index);
		else
			kvm_ioapic_service(ev, index);
	}
}

/* The access sizes the kernel's IOAPIC takes (others: reads 0, writes ignored). */
static bool ioapic_len_ok(unsigned len)
{
	return len == 1 || len == 2 || len == 4 || len == 8;
}

bool kvm_ioapic_mmio(struct kvm_vcpu *vcpu, uint64_t gpa, unsigned len, bool write, uint8_t *data)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	unsigned off = (unsigned)(gpa - IOAPIC_BASE);
	uint32_t val = 0;

	if (gpa < IOAPIC_BASE || gpa - IOAPIC_BASE >= IOAPIC_MEM_LENGTH || len > 8 ||
	    kvm_irqchip_mode(vcpu->kvm) != KVM_IRQCHIP_KERNEL)
		return false;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	if (write && ioapic_len_ok(len)) {
		/* The low 32 bits of an 8-byte write; narrower ones zero-extended. */
		memcpy(&val, data, len < 4 ? len : 4);
		if (off == IOAPIC_REG_SELECT)
			ev->chip->ioregsel = val & 0xff;
		else if (off == IOAPIC_REG_WINDOW)
			ioapic_write_indirect(ev, val);
	} else if (!write) {
		if (off == IOAPIC_REG_SELECT)
			val = ev->chip->ioregsel;
		else if (off == IOAPIC_REG_WINDOW)
			val = ioapic_read_indirect(ev->chip);
		memset(data, 0, len);
		if (ioapic_len_ok(len))
			memcpy(data, &val, len < 4 ? len : 4);
	}
	gm_mutex_unlock(&ev->irq_lock);
	return true;
}
