/* SPDX-License-Identifier: MIT */
/*
 * The PIC pair (the kernel's i8259.c): per-pin edge/level detection and
 * the IRR/IMR state that decides KVM_IRQ_LINE_STATUS's answer.
 */
#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"

/* pic_set_irq1(): 1 new request, 0 already requested, -1 masked. */
static int pic_set_irq1(struct kvm_kpic_state *s, int irq, int level)
{
	uint8_t mask = (uint8_t)(1u << irq);
	int ret = 1;

	if (s->elcr & mask) {
		if (level) {
			ret = !(s->irr & mask);
			s->irr |= mask;
			s->last_irr |= mask;
		} else {
			s->irr &= (uint8_t)~mask;
			s->last_irr &= (uint8_t)~mask;
		}
	} else if (level) {
		if (!(s->last_irr & mask)) {
			ret = !(s->irr & mask);
			s->irr |= mask;
		}
		s->last_irr |= mask;
	} else {
		s->last_irr &= (uint8_t)~mask;
	}
	return (s->imr & mask) ? -1 : ret;
}

/* The slave's output is master pin 2; the PIC's own output reaches no vCPU. */
static void pic_update_irq(struct kvm_irqchip_state *c)
{
	struct kvm_kpic_state *slave = &c->pics[1];

	if (slave->irr & ~slave->imr & ~slave->isr) {
		pic_set_irq1(&c->pics[0], 2, 1);
		pic_set_irq1(&c->pics[0], 2, 0);
	}
}

int kvm_pic_set_irq(struct kvm_irqchip_state *c, uint32_t pin, int source, int level)
{
	int line = __kvm_irq_line_state(&c->pic_line[pin], source, level);
	int ret = pic_set_irq1(&c->pics[pin >> 3], (int)(pin & 7), line);

	pic_update_irq(c);
	return ret;
}
