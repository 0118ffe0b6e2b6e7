/* SPDX-License-Identifier: MIT */
/*
 * event.h - exceptions and interrupts delivered through the guest's IDT,
 * and the choice of what to deliver next.
 *
 * Two layers, both pure (no system calls, no allocation, no locks; the
 * caller owns the vCPU):
 *
 *  1. x86_event_deliver(): what the CPU does to vector one event -- read
 *     the IDT gate, check it, load CS, switch stacks (TSS RSP0/IST in long
 *     mode, SS0:ESP0 of a 32-bit TSS in protected mode), push the frame,
 *     update RFLAGS -- on a struct x86_regs.  A fault raised while
 *     vectoring (a bad gate, a #PF on the stack) follows the SDM's
 *     double-fault table: benign faults and interrupts are handled
 *     serially (the new fault replaces the event), contributory on
 *     contributory or anything but benign on #PF becomes #DF(0), and any
 *     fault while vectoring #DF is a triple fault (X86_EVENT_TRIPLE_FAULT:
 *     the backend reports KVM_EXIT_SHUTDOWN).
 *
 *  2. x86_event_inject(): KVM's choice at guest entry over the state of
 *     KVM_GET/SET_VCPU_EVENTS (struct kvm_x86_events of vcpu/x86.h, kept
 *     where the ioctls keep it, so nothing is converted): re-inject an
 *     "injected" exception, NMI or interrupt, else deliver a pending
 *     exception (payload into CR2/DR6 first), then an NMI if not blocked
 *     (NMI masking, the STI/MOV SS shadow), then an external interrupt if
 *     RFLAGS.IF and no shadow (from KVM_INTERRUPT without an in-kernel
 *     irqchip, or asked from the in-kernel LAPIC/PIC through struct
 *     x86_irq_source).  Events are vectored synchronously, so each round
 *     ends with nothing "injected" left; rounds repeat while something can
 *     be delivered (an interrupt right after an exception delivered
 *     through a trap gate, as the CPU recognises it before the handler's
 *     first instruction).
 *
 * Frames, per the SDM (lowest address first, at the new RSP):
 *  long mode (every gate is 64-bit, RSP aligned down to 16 first):
 *	[error code] RIP CS RFLAGS RSP SS, 8 bytes each (selectors zero-extended)
 *  protected mode, 32-bit gate, same privilege: [error code] EIP CS EFLAGS
 *	(4 bytes each); to an inner ring: ... EFLAGS ESP SS, SS:ESP loaded
 *	from the 32-bit TSS; 16-bit gates push 2-byte slots.
 * The pushed RFLAGS is the interrupted one, with RF set for a hardware
 * exception of the fault class (not #DB: KVM's rule); afterwards TF, NT,
 * RF and VM are clear, and IF too through an interrupt gate.
 *
 * Error codes raised by vectoring carry EXT (bit 0) unless the event is a
 * software interrupt (INT n, INT3, INTO); an IDT entry's is vector*8+2.
 * INT n, INT3 and INTO check the gate's DPL against CPL (#GP(vector*8+2));
 * INT1 (ICEBP), hardware exceptions, NMI and external interrupts do not.
 * A fault raised while vectoring a software interrupt is reported at the
 * instruction (RIP rewound by the instruction length).  A #PF found while
 * vectoring loads CR2 even when it becomes #DF.  test_x86_event checks RF,
 * the INT n DPL fault and the return RIPs against the host CPU too.
 *
 * Not modelled (X86_EVENT_UNHANDLED, registers untouched; the backend
 * reports an internal error, KVM_INTERNAL_ERROR_DELIVERY_EV): real mode,
 * virtual-8086 mode, task gates, a 16-bit TSS, an IDT/GDT/TSS/stack on
 * MMIO.  Descriptor accessed bits are not written; a selector push of a
 * 4-byte slot writes the selector zero-extended.
 */
#ifndef GM_VCPU_X86_EVENT_H
#define GM_VCPU_X86_EVENT_H

#include "vcpu/x86.h"		/* struct kvm_x86_events */
#include "vcpu/x86/emulate.h"	/* struct x86_regs, struct x86_exception, X86_MEM_* */

#include <stdbool.h>
#include <stdint.h>

/* More exception vectors (emulate.h has the ones the emulator raises). */
enum { X86_NMI = 2, X86_OF = 4, X86_BR = 5, X86_DF = 8, X86_MC = 18 };

/* Kinds of event, numbered as VMX's interruption types. */
enum x86_event_type {
	X86_EVENT_EXT_INTR = 0,		 /* external interrupt (PIC, LAPIC, KVM_INTERRUPT) */
	X86_EVENT_NMI = 2,		 /* vector 2 */
	X86_EVENT_HW_EXCEPTION = 3,	 /* a fault/trap/abort the CPU raised */
	X86_EVENT_SOFT_INT = 4,		 /* INT n: gate DPL checked */
	X86_EVENT_PRIV_SOFT_EXCEPTION = 5, /* INT1 (F1): no DPL check, EXT set */
	X86_EVENT_SOFT_EXCEPTION = 6,	 /* INT3, INTO: gate DPL checked */
};

struct x86_event {
	uint8_t type;		/* enum x86_event_type */
	uint8_t vector;
	bool has_error_code;	/* pushed only in protected/long mode, as here */
	uint32_t error_code;
	bool has_cr2;		/* a #PF: CR2 <- cr2 when it is delivered */
	uint64_t cr2;
	/* The software types: regs->rip is already past the instruction (the
	 * return address, as X86_EMU_SOFT_INT leaves it) and insn_len is its
	 * length, so a fault while vectoring restarts the instruction. */
	uint8_t insn_len;
};

/* Guest-virtual memory for vectoring.  Return X86_MEM_OK, X86_MEM_FAULT
 * with *ex filled (a #PF with cr2: a nested fault), or X86_MEM_MMIO (not
 * modelled: X86_EVENT_UNHANDLED).  @len is at most 16 and the range may
 * cross a page boundary (the callback splits it). */
#define X86_EVENT_ACC_SYSTEM (1u << 0) /* implicit supervisor: IDT, GDT, LDT, TSS */
#define X86_EVENT_ACC_USER (1u << 1)   /* a stack push for a handler at CPL3 */
struct x86_event_ops {
	int (*read)(void *ctx, uint64_t gva, void *buf, unsigned len, unsigned flags,
		    struct x86_exception *ex);
	int (*write)(void *ctx, uint64_t gva, const void *buf, unsigned len, unsigned flags,
		     struct x86_exception *ex);
};

enum x86_event_status {
	X86_EVENT_OK = 0,	 /* delivered (x86_event_inject: or nothing to deliver) */
	X86_EVENT_TRIPLE_FAULT,	 /* shutdown: KVM_EXIT_SHUTDOWN */
	X86_EVENT_UNHANDLED,	 /* a state not modelled (see top); res->why */
};

struct x86_event_result {
	struct x86_event delivered; /* the event the handler got (a nested fault, #DF) */
	bool replaced;		    /* a fault while vectoring replaced the event */
	const char *why;	    /* X86_EVENT_UNHANDLED: what is not modelled */
};

/**
 * x86_event_deliver - vector @ev through the IDT on @regs.
 * Context: any; pure apart from the @ops calls.
 * Return: X86_EVENT_OK with @regs at the handler (CS, RIP, RSP, SS, CPL,
 * RFLAGS; CR2 for a #PF, also a nested one), frame written; or
 * X86_EVENT_TRIPLE_FAULT / X86_EVENT_UNHANDLED with @regs unchanged (frame
 * bytes already written stay written, as on the CPU).  @res may be NULL.
 */
int x86_event_deliver(struct x86_regs *regs, const struct x86_event *ev,
		      const struct x86_event_ops *ops, void *ctx, struct x86_event_result *res);

/*
 * The event for X86_EMU_SOFT_INT: @opcode is the instruction's (0xcd INT n,
 * 0xcc INT3, 0xce INTO, 0xf1 INT1), @vector res.ex.vector, @insn_len its
 * length (RIP is already past it).
 */
void x86_event_soft_int(struct x86_event *ev, uint8_t opcode, uint8_t vector, uint8_t insn_len);

/* Class of @vector for the double-fault rules: 0 benign, 1 contributory, 2 #PF. */
int x86_exception_class(unsigned vector);

/* ---- what to deliver next ---------------------------------------------- */

/* kvm_x86_events.interrupt.shadow bits (KVM_X86_SHADOW_INT_*). */
#define X86_SHADOW_MOV_SS 1u
#define X86_SHADOW_STI 2u

/*
 * The interrupt controller in the kernel (LAPIC, with the PIC behind its
 * LINT0 when the PIC is in the kernel too, or the split irqchip's ExtINT
 * from KVM_INTERRUPT).  Callbacks run on the vCPU's thread.
 */
struct x86_irq_source {
	/* The vector that would be taken now (kvm_cpu_has_injectable_intr), -1 if none. */
	int (*peek)(void *ctx);
	/* Take it: in service, acknowledged (kvm_cpu_get_interrupt); -1 if it went away. */
	int (*ack)(void *ctx);
	/* KVM_INTERRUPT could store an ExtINT now (kvm_cpu_accept_dm_intr: none
	 * pending and LINT0 accepts the PIC).  NULL: always. */
	bool (*accept_dm_intr)(void *ctx);
	void *ctx;
};

struct x86_event_env {
	const struct x86_irq_source *irq; /* NULL: no in-kernel LAPIC (KVM_INTERRUPT queues) */
	bool pic_in_kernel;		  /* KVM_CREATE_IRQCHIP (not split) */
	bool request_interrupt_window;	  /* kvm_run */
	bool block_irq;			  /* KVM_GUESTDBG_BLOCKIRQ: no NMI/IRQ injection */
};

struct x86_inject_result {
	unsigned delivered;	/* events vectored by this call */
	struct x86_event last;	/* the last one the guest got */
	/* KVM_EXIT_IRQ_WINDOW_OPEN now: request_interrupt_window, no kernel PIC,
	 * and ready_for_interrupt_injection. */
	bool irq_window_open;
	/* Something waits on the guest: call x86_event_inject() again once IF
	 * rises or the shadow ends (irq), or after IRET / the shadow (NMI). */
	bool want_irq_window, want_nmi_window;
	const char *why;	/* X86_EVENT_UNHANDLED */
};

/**
 * x86_event_queue_exception - an exception raised by an instruction
 * (emulated, or a native trap the guest must see), with KVM's
 * kvm_multiple_exception() rules against one already pending or injected:
 * #DF(0) for contributory+contributory or #PF+non-benign, a triple fault
 * (ev->triple_fault_pending) on top of #DF, else the new one replaces it.
 * A #PF's address goes in @payload with @has_payload (delivered to CR2 at
 * injection), a #DB's DR6 bits likewise.
 * Context: vCPU owner.
 */
void x86_event_queue_exception(struct kvm_x86_events *ev, uint8_t vector, bool has_error_code,
			       uint32_t error_code, bool has_payload, uint64_t payload);

/* The same for what the emulator returned (X86_EMU_EXCEPTION): a #PF's cr2 as payload. */
void x86_event_queue_emu_exception(struct kvm_x86_events *ev, const struct x86_exception *ex);

/* KVM_INTERRUPT without an in-kernel irqchip (vector already < 256):
 * the interrupt becomes "injected", delivered at the next entry whatever IF
 * says (the VMM waited for ready_for_interrupt_injection). */
void x86_event_queue_interrupt(struct kvm_x86_events *ev, uint8_t vector);

/*
 * An instruction retired (emulated with X86_EMU_DONE and its res.effects,
 * or guest code ran natively: @effects 0): the shadow of the instruction
 * before it ends, STI (X86_FX_STI_SHADOW) starts a new one, and IRET
 * (X86_FX_IRET_NMI) unblocks NMIs.
 */
void x86_event_insn_retired(struct kvm_x86_events *ev, uint32_t effects);

/* RFLAGS.IF set and no STI/MOV SS shadow: an interrupt could be taken. */
bool x86_event_interrupt_allowed(const struct kvm_x86_events *ev, const struct x86_regs *regs);
/* Neither NMI masking nor a shadow blocks an NMI (and none is in flight). */
bool x86_event_nmi_allowed(const struct kvm_x86_events *ev);

/*
 * kvm_run->ready_for_interrupt_injection as KVM_RUN leaves it: always with
 * the PIC in the kernel; else interrupts allowed, KVM_INTERRUPT would be
 * accepted, nothing to re-inject and no exception (or triple fault) pending.
 */
bool x86_event_ready_for_injection(const struct kvm_x86_events *ev, const struct x86_regs *regs,
				   const struct x86_event_env *env);

/*
 * Whether something would wake the vCPU from HLT (kvm_vcpu_has_events'
 * event part): an exception or triple fault pending, an NMI that is not
 * blocked, or an interrupt with interrupts allowed.  Calls env->irq->peek.
 */
bool x86_event_wakes_halt(const struct kvm_x86_events *ev, const struct x86_regs *regs,
			  const struct x86_event_env *env);

/**
 * x86_event_inject - at guest entry: deliver what KVM would (see top), in
 * rounds until nothing more can be delivered, and say whether an
 * interrupt-window exit is due.  A pending triple fault
 * (ev->triple_fault_pending) is consumed and returned first.
 * Context: vCPU owner, the guest stopped; @env->irq callbacks are called.
 * Return: X86_EVENT_OK, X86_EVENT_TRIPLE_FAULT (the event in flight is
 * dropped: the backend exits with KVM_EXIT_SHUTDOWN), or
 * X86_EVENT_UNHANDLED (@out->why; @regs and the queued event as they were,
 * except that an interrupt already acknowledged from the LAPIC stays
 * queued as injected).  Events delivered before it in the same call stay
 * delivered.  Any delivery
 * ends the interrupt shadow; an NMI sets NMI masking (until IRET, see
 * x86_event_insn_retired()), also when a fault while vectoring it was
 * delivered instead.
 */
int x86_event_inject(struct kvm_x86_events *ev, struct x86_regs *regs,
		     const struct x86_event_env *env, const struct x86_event_ops *ops, void *ctx,
		     struct x86_inject_result *out);

#endif
