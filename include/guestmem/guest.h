/* SPDX-License-Identifier: MIT */
/*
 * <guestmem/guest.h> - the API of guest programs.
 *
 * A guest is ordinary C code that runs on its vCPU's own thread while the
 * VMM is inside KVM_RUN, and is suspended whenever an exit is handed to the
 * VMM.  Under `guestmem exec` it is loaded from the shared object named by
 * GUESTMEM_GUEST=path.so, entry point guestmem_guest_main(); through the C
 * API (guestmem_vcpu_set_guest()) any function of the same type can be used.
 *
 * Every memory accessor takes a guest-physical address (the guest runs with
 * an identity map, as the KVM selftests do).  An access is split at 4 KiB
 * page boundaries; each piece goes through guestmem's stage-2 MMU exactly
 * like a guest load or store through KVM's: a hit costs a table walk and
 * the access itself, a miss runs the fault path, which may retry, install a
 * translation, or end KVM_RUN with an exit (KVM_EXIT_MEMORY_FAULT, or
 * KVM_EXIT_MMIO for a gpa no memslot covers).  After such an exit the
 * accessor simply waits for the next KVM_RUN and then completes, so guest
 * code never sees an exit.
 *
 * Interruption: a signal that interrupts KVM_RUN takes effect when the
 * guest next calls any function of this header.  A guest that computes for
 * a long time without calling one cannot be interrupted meanwhile.
 *
 * Context: every function must be called from the guest's own thread, with
 * the @g it was given.
 */
#ifndef GUESTMEM_GUEST_H
#define GUESTMEM_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque handle of the running guest (one per vCPU). */
struct guestmem_guest;

/* The entry point of a guest; returning ends the vCPU (KVM_EXIT_SHUTDOWN). */
typedef void (*guestmem_guest_fn)(struct guestmem_guest *g);

/*
 * What a guest shared object must export under `guestmem exec`.  Declared
 * with default visibility so that a definition in a module built with
 * -fvisibility=hidden is still found by dlsym().
 */
__attribute__((visibility("default"))) void guestmem_guest_main(struct guestmem_guest *g);

/**
 * guestmem_guest_regs() - the vCPU's general-purpose registers.
 *
 * What the VMM set with KVM_SET_REGS (or KVM_RUN's sync regs), updated by
 * the accessors as KVM would update them (RAX after IN and hypercalls, RIP
 * after completed exits).  Valid until the next call of this API.
 */
const struct kvm_regs *guestmem_guest_regs(struct guestmem_guest *g);

/** guestmem_guest_vcpu_id() - the id given to KVM_CREATE_VCPU. */
uint32_t guestmem_guest_vcpu_id(struct guestmem_guest *g);

/** guestmem_guest_opaque() - the pointer given to guestmem_vcpu_set_guest(). */
void *guestmem_guest_opaque(struct guestmem_guest *g);

/* Loads and stores of 1, 2, 4 and 8 bytes (little endian, any alignment). */
uint8_t guestmem_guest_read8(struct guestmem_guest *g, uint64_t gpa);
uint16_t guestmem_guest_read16(struct guestmem_guest *g, uint64_t gpa);
uint32_t guestmem_guest_read32(struct guestmem_guest *g, uint64_t gpa);
uint64_t guestmem_guest_read64(struct guestmem_guest *g, uint64_t gpa);
void guestmem_guest_write8(struct guestmem_guest *g, uint64_t gpa, uint8_t value);
void guestmem_guest_write16(struct guestmem_guest *g, uint64_t gpa, uint16_t value);
void guestmem_guest_write32(struct guestmem_guest *g, uint64_t gpa, uint32_t value);
void guestmem_guest_write64(struct guestmem_guest *g, uint64_t gpa, uint64_t value);

/* Bulk accesses: ascending addresses, page by page (MMIO: 8 bytes a piece). */
void guestmem_guest_read(struct guestmem_guest *g, uint64_t gpa, void *buf, size_t len);
void guestmem_guest_write(struct guestmem_guest *g, uint64_t gpa, const void *buf, size_t len);
void guestmem_guest_memset(struct guestmem_guest *g, uint64_t gpa, int byte, size_t len);

/**
 * guestmem_guest_hypercall() - VMCALL with RAX = @nr, RBX, RCX, RDX, RSI =
 * @a0..@a3.  Return: what the guest then finds in RAX.  KVM_HC_MAP_GPA_RANGE
 * (12) exits to the VMM when it enabled KVM_CAP_EXIT_HYPERCALL, and the
 * result is the VMM's hypercall.ret; bad arguments give -KVM_EINVAL (-22)
 * without an exit; KVM_HC_VAPIC_POLL_IRQ (1) gives 0; anything else gives
 * -KVM_ENOSYS (-1000).
 */
uint64_t guestmem_guest_hypercall(struct guestmem_guest *g, uint64_t nr, uint64_t a0,
				  uint64_t a1, uint64_t a2, uint64_t a3);

/* Port I/O: each is one KVM_EXIT_IO (the data at kvm_run + 4096). */
void guestmem_guest_outb(struct guestmem_guest *g, uint16_t port, uint8_t value);
void guestmem_guest_outw(struct guestmem_guest *g, uint16_t port, uint16_t value);
void guestmem_guest_outl(struct guestmem_guest *g, uint16_t port, uint32_t value);
uint8_t guestmem_guest_inb(struct guestmem_guest *g, uint16_t port);
uint16_t guestmem_guest_inw(struct guestmem_guest *g, uint16_t port);
uint32_t guestmem_guest_inl(struct guestmem_guest *g, uint16_t port);

/* ---- interrupts (src/vcpu/guest_irq.c) -------------------------------------
 *
 * With an in-kernel irqchip (KVM_CREATE_IRQCHIP or the split irqchip) the
 * VMM raises interrupts with KVM_IRQ_LINE, KVM_SIGNAL_MSI or an irqfd, and
 * the guest receives them here, by x86 vector as machine-code guests do:
 * an IOAPIC pin at the vector of its redirection entry, which the boot
 * set-up (below) makes GUESTMEM_IRQ_PIN_VECTOR(pin); an MSI at the vector
 * in its data.  Pin-based interrupts go to the boot vCPU, MSIs to the vCPU
 * named by their destination (0xff: all).  When several are pending the
 * highest priority class (vector >> 4) comes first, and an interrupt in
 * service holds back those of its class and below until its EOI.
 */
#define GUESTMEM_IRQ_PIN_VECTOR(pin) (0x20u + (pin))

/* An interrupt handler: runs on the vCPU's thread, never nested. */
typedef void (*guestmem_irq_handler)(struct guestmem_guest *g, uint32_t vector);

/**
 * guestmem_guest_set_irq_handler() - enable interrupts (NULL disables them).
 *
 * The handler runs at the next interrupt window: the next call of any
 * function of this header (or guestmem_guest_halt()) while an interrupt is
 * pending.  It may use this API, but is not interrupted itself.  As on real
 * hardware it must acknowledge each interrupt with guestmem_guest_eoi();
 * until then that interrupt is not delivered again.  On the boot vCPU the
 * first handler also sets the interrupt controllers up as a guest kernel
 * does (IOAPIC pins 0-15 edge-triggered, 16-23 level-triggered, each at
 * GUESTMEM_IRQ_PIN_VECTOR(pin) to the boot vCPU; PIC masked).  On every
 * vCPU the first handler also software-enables the local APIC (SPIV bit
 * 8), as a guest kernel does: until then, as after reset, the APIC drops
 * fixed and lowest-priority interrupts sent to it.
 */
void guestmem_guest_set_irq_handler(struct guestmem_guest *g, guestmem_irq_handler fn);

/**
 * guestmem_guest_halt() - HLT.
 *
 * Without an in-kernel irqchip: exits to the VMM with KVM_EXIT_HLT (RIP
 * already past the instruction) and returns at the next KVM_RUN.  With one:
 * sleeps until an interrupt can be taken (a handler is set), runs the
 * handler and returns; a signal still makes KVM_RUN return EINTR meanwhile
 * (the guest stays halted; KVM_GET_MP_STATE reports KVM_MP_STATE_HALTED,
 * and KVM_SET_MP_STATE(RUNNABLE) ends the halt).
 */
void guestmem_guest_halt(struct guestmem_guest *g);

/**
 * guestmem_guest_eoi() - end of interrupt @vector (the one the handler got).
 * If an IOAPIC pin has that vector, its ack notifiers run (an irqfd with
 * KVM_IRQFD_FLAG_RESAMPLE on its GSI is de-asserted and its resamplefd
 * signalled), and a level-triggered pin may fire again.
 */
void guestmem_guest_eoi(struct guestmem_guest *g, uint32_t vector);

#ifdef __cplusplus
}
#endif
#endif
