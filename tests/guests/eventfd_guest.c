// SPDX-License-Identifier: MIT
/*
 * Guest program for the eventfd tests (GUESTMEM_GUEST=eventfd_guest.so).
 * The scenario is in RDI (tests/guests/eventfd_guest.h); results go to the
 * VMM through port I/O exits.  The interrupt counter lives in guest RAM so
 * that the VMM can read it too.
 */
#include <stdbool.h>
#include <stdint.h>

#include <guestmem/guest.h>

#include "eventfd_guest.h"

static volatile uint32_t last_irq = ~0u;

static uint64_t irq_count(struct guestmem_guest *g)
{
	return guestmem_guest_read64(g, EG_CNT_GPA);
}

/* Count, remember, acknowledge. */
static void count_handler(struct guestmem_guest *g, uint32_t vector)
{
	guestmem_guest_write64(g, EG_CNT_GPA, irq_count(g) + 1);
	last_irq = vector;
	guestmem_guest_eoi(g, vector);
}

/* Report first (the VMM may lower a level line meanwhile), then EOI. */
static void report_handler(struct guestmem_guest *g, uint32_t vector)
{
	guestmem_guest_outl(g, EG_PORT_IRQ, vector);
	count_handler(g, vector);
}

static void wait_irqs(struct guestmem_guest *g, uint64_t n)
{
	while (irq_count(g) < n)
		guestmem_guest_halt(g);
}

/* Ring, wait for the device's interrupt, check its answer. */
static void doorbell(struct guestmem_guest *g, uint64_t rounds)
{
	uint32_t errors = 0;

	guestmem_guest_set_irq_handler(g, count_handler);
	for (uint32_t i = 0; i < rounds; i++) {
		guestmem_guest_write32(g, EG_REQ_GPA + 4 * (i % 1024), i * 7);
		guestmem_guest_write32(g, EG_DOORBELL_GPA, i); /* the queue index */
		wait_irqs(g, i + 1);
		if (guestmem_guest_read32(g, EG_ANS_GPA + 4 * (i % 1024)) != EG_ANSWER(i * 7))
			errors++;
	}
	guestmem_guest_outl(g, EG_PORT_RESULT, errors);
	guestmem_guest_outl(g, EG_PORT_RESULT, (uint32_t)irq_count(g));
}

static void mark(struct guestmem_guest *g, uint8_t step)
{
	guestmem_guest_outb(g, EG_PORT_MARK, step);
}

/* Each guest access either completes silently or is one exit (see the VMM). */
static void matching(struct guestmem_guest *g)
{
	uint64_t rip;
	uint32_t bad = 0;

	guestmem_guest_write32(g, EG_MMIO_A, 0x42);	/* DM 0x42 len 4: no exit */
	guestmem_guest_write32(g, EG_MMIO_A, 0x43);	/* exit */
	guestmem_guest_write16(g, EG_MMIO_A, 0x42);	/* exit: other length */
	guestmem_guest_write64(g, EG_MMIO_B, 0x1122334455667788ULL); /* DM len 8 */
	guestmem_guest_write8(g, EG_MMIO_C, 1);	/* len 0: any width */
	guestmem_guest_write16(g, EG_MMIO_C, 2);
	guestmem_guest_write32(g, EG_MMIO_C, 3);
	guestmem_guest_write64(g, EG_MMIO_C, 4);
	guestmem_guest_write32(g, EG_MMIO_C + 4, 5);	/* exit: other address */
	guestmem_guest_write32(g, EG_MMIO_E, 0x42);	/* exit: DM 0x100000042 */
	mark(g, 1);
	bad |= guestmem_guest_read32(g, EG_MMIO_A) != 0x99; /* reads always exit */
	rip = guestmem_guest_regs(g)->rip;
	guestmem_guest_outw(g, EG_PIO_W, 0xbeef);	/* PIO len 2: no exit */
	bad |= (guestmem_guest_regs(g)->rip - rip != 2) << 1; /* 66 ef */
	guestmem_guest_outb(g, EG_PIO_W, 1);		/* exit: other length */
	guestmem_guest_outl(g, EG_PIO_ANY, 9);		/* PIO len 0: no exit */
	bad |= (guestmem_guest_inw(g, EG_PIO_W) != 0x1234) << 2; /* IN: exit */
	guestmem_guest_write32(g, EG_MMIO_D, 7);	/* CCW bus only: exit */
	guestmem_guest_write32(g, EG_MMIO_A, 0x42);	/* deassigned by now: exit */
	guestmem_guest_outl(g, EG_PORT_RESULT, bad);
}

static void resample(struct guestmem_guest *g, uint32_t gsi, uint64_t rounds)
{
	(void)gsi;
	guestmem_guest_set_irq_handler(g, count_handler);
	guestmem_guest_outb(g, EG_PORT_READY, 0);
	wait_irqs(g, rounds);
	guestmem_guest_outl(g, EG_PORT_RESULT, (uint32_t)irq_count(g));
	guestmem_guest_outl(g, EG_PORT_RESULT, last_irq);
}

static void hlt(struct guestmem_guest *g)
{
	uint64_t rip = guestmem_guest_regs(g)->rip;

	guestmem_guest_halt(g);
	guestmem_guest_outl(g, EG_PORT_RESULT, (uint32_t)(guestmem_guest_regs(g)->rip - rip));
}

static void halt_wake(struct guestmem_guest *g)
{
	guestmem_guest_set_irq_handler(g, count_handler);
	guestmem_guest_outb(g, EG_PORT_READY, 0);
	guestmem_guest_halt(g);
	guestmem_guest_outl(g, EG_PORT_RESULT, irq_count(g) ? last_irq : 0xffff);
	/* Second round: the VMM ends this halt with KVM_SET_MP_STATE. */
	guestmem_guest_halt(g);
	guestmem_guest_outl(g, EG_PORT_RESULT, (uint32_t)irq_count(g));
}

static void msi(struct guestmem_guest *g)
{
	guestmem_guest_set_irq_handler(g, count_handler);
	guestmem_guest_outb(g, EG_PORT_READY, 0);
	wait_irqs(g, 1);
	guestmem_guest_outl(g, EG_PORT_RESULT, last_irq);
	wait_irqs(g, 2);
	guestmem_guest_outl(g, EG_PORT_RESULT, last_irq);
}

/* Result: the count, plus 0x100 if the handlers clobbered our registers. */
static void line(struct guestmem_guest *g)
{
	struct kvm_regs before;
	const struct kvm_regs *after;
	uint32_t clobbered;

	guestmem_guest_set_irq_handler(g, report_handler);
	guestmem_guest_outb(g, EG_PORT_READY, 0);
	before = *guestmem_guest_regs(g);
	wait_irqs(g, 2);
	after = guestmem_guest_regs(g);
	clobbered = after->rax != before.rax || after->rdx != before.rdx;
	guestmem_guest_outl(g, EG_PORT_RESULT, (uint32_t)irq_count(g) | clobbered << 8);
}

/* Report every interrupt by its count; never returns (the VMM stops). */
static void pingpong(struct guestmem_guest *g)
{
	uint64_t seen = 0;

	guestmem_guest_set_irq_handler(g, count_handler);
	guestmem_guest_outb(g, EG_PORT_READY, 0);
	for (;;) {
		wait_irqs(g, seen + 1);
		seen = irq_count(g);
		guestmem_guest_outl(g, EG_PORT_IRQ, (uint32_t)seen);
	}
}

/* The baseline of the doorbell benchmark: the same write, but it exits. */
static void doorbell_exit(struct guestmem_guest *g, uint64_t rounds)
{
	for (uint32_t i = 0; i < rounds; i++)
		guestmem_guest_write32(g, EG_DOORBELL_GPA, i);
	guestmem_guest_outl(g, EG_PORT_RESULT, 0);
}

void guestmem_guest_main(struct guestmem_guest *g)
{
	const struct kvm_regs *r = guestmem_guest_regs(g);
	uint64_t a = r->rsi, b = r->rdx;

	switch (r->rdi) {
	case EG_DOORBELL:
		doorbell(g, a);
		break;
	case EG_MATCHING:
		matching(g);
		break;
	case EG_RESAMPLE:
		resample(g, (uint32_t)a, b);
		break;
	case EG_HLT:
		hlt(g);
		break;
	case EG_HALT_WAKE:
		halt_wake(g);
		break;
	case EG_MSI:
		msi(g);
		break;
	case EG_LINE:
		line(g);
		break;
	case EG_PINGPONG:
		pingpong(g);
		break;
	case EG_DOORBELL_MMIO_EXIT:
		doorbell_exit(g, a);
		break;
	}
}
