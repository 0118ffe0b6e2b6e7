/* SPDX-License-Identifier: MIT */
/*
 * The IOAPIC (the kernel's ioapic.c): per-pin IRR, mask, trigger mode and
 * remote IRR; delivery to the boot vCPU's LAPIC model.
 */
#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

/* kvm_ioapic_service(): deliver a pin to the boot vCPU. */
int kvm_ioapic_service(struct kvm_eventfds *ev, uint32_t pin)
{
	struct kvm_ioapic_pin *p = &ev->chip->ioapic[pin];
	int ret;

	lockdep_assert_held(&ev->irq_lock);
	if (p->masked || (p->level && p->remote_irr))
		return -1;
	if (!p->level)
		ev->chip->ioapic_irr &= ~(1u << pin);
	ret = kvm_apic_deliver_id(ev, 0, pin);
	if (ret && p->level)
		p->remote_irr = true;
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
	if (!c->ioapic[pin].level && old == c->ioapic_irr)
		return 0; /* an edge still pending behind the mask */
	return kvm_ioapic_service(ev, pin);
}

/* __kvm_ioapic_update_eoi()'s second half: a level pin may fire again. */
void kvm_ioapic_update_eoi(struct kvm_eventfds *ev, uint32_t pin)
{
	struct kvm_ioapic_pin *p = &ev->chip->ioapic[pin];

	lockdep_assert_held(&ev->irq_lock);
	if (!p->level)
		return;
	p->remote_irr = false;
	if (!p->masked && (ev->chip->ioapic_irr & (1u << pin)))
		kvm_ioapic_service(ev, pin);
}
