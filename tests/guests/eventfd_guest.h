/* SPDX-License-Identifier: MIT */
/*
 * What tests/guests/eventfd_guest.c (the guest) and
 * tests/uapi/test_eventfd_guest.c (the VMM) agree on.  The VMM picks the
 * scenario in RDI and its parameters in RSI/RDX before the first KVM_RUN.
 */
#ifndef GM_TESTS_EVENTFD_GUEST_H
#define GM_TESTS_EVENTFD_GUEST_H

#include <stdint.h>

enum eg_scenario {
	EG_DOORBELL = 1, /* RSI = rounds, RDX = gsi of the irqfd */
	EG_MATCHING,	 /* datamatch / length / bus cases, one exit per miss */
	EG_RESAMPLE,	 /* RSI = gsi, RDX = rounds */
	EG_HLT,		 /* HLT, then report the RIP advance */
	EG_HALT_WAKE,	 /* handler, HLT, report the gsi that woke us */
	EG_MSI,		 /* two MSIs, reported one by one */
	EG_LINE,	 /* handler, "ready", then report each interrupt */
	EG_PINGPONG,	 /* RSI = gsi: halt/report forever (stress, bench) */
	EG_DOORBELL_MMIO_EXIT, /* RSI = rounds: plain MMIO doorbells (bench) */
};

/* Guest-physical layout. */
#define EG_RAM_GPA 0x100000ULL	  /* memslot 0, EG_RAM_SIZE bytes */
#define EG_RAM_SIZE 0x10000ULL
#define EG_REQ_GPA (EG_RAM_GPA)	  /* u32 request per round */
#define EG_ANS_GPA (EG_RAM_GPA + 0x1000) /* u32 answer per round */
#define EG_CNT_GPA (EG_RAM_GPA + 0x2000) /* u64 interrupt counter */
#define EG_DOORBELL_GPA 0xd0000000ULL	  /* no memslot: MMIO */
#define EG_MMIO_A 0xd0001000ULL
#define EG_MMIO_B 0xd0002000ULL
#define EG_MMIO_C 0xd0003000ULL
#define EG_MMIO_D 0xd0004000ULL
#define EG_MMIO_E 0xd0005000ULL
#define EG_PIO_W 0x600
#define EG_PIO_ANY 0x700

/* Ports the guest reports on (each OUT is a KVM_EXIT_IO). */
#define EG_PORT_RESULT 0xe0 /* outl: the scenario's result */
#define EG_PORT_READY 0xe2  /* outb: interrupts are set up */
#define EG_PORT_IRQ 0xe3    /* outl: an interrupt arrived (its number) */
#define EG_PORT_MARK 0xe4   /* outb: a step of EG_MATCHING is done */

#define EG_ANSWER(req) ((req) * 2 + 1)

#endif
