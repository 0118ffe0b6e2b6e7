/* SPDX-License-Identifier: MIT */
/*
 * Interrupts in <guestmem/guest.h>: the handler, HLT and EOI.
 *
 * The interrupt window is every stop point (the start of each accessor,
 * see vcpu.h): kvm_guest_irq_window() takes the pending interrupts one at a
 * time and runs the guest's handler for each, with in_handler set so that
 * the accessors the handler calls do not nest another one.  A guest without
 * a handler has interrupts disabled: they stay pending.
 *
 * HLT with an in-kernel irqchip sleeps on the vCPU's LAPIC model until an
 * interrupt can be taken or KVM_RUN kicks the guest for a signal; the kick
 * parks the guest at a stop point with mp_state HALTED, and the next
 * KVM_RUN resumes the sleep.  Without an irqchip HLT is an exit.
 *
 * Everything here runs on the guest thread, which owns the handler fields
 * of its struct kvm_lapic, and never holds a lock across a park (a park
 * may end the thread at VM destruction).
 */
#include "vcpu/irqchip.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

#define INSN_LEN_HLT 1 /* f4 */
#define X86_EFLAGS_IF (1ULL << 9)

/* The window is open: a handler, not inside it, something pending. */
static bool irq_window_open(const struct kvm_lapic *apic)
{
	return apic && apic->handler && !apic->in_handler && READ_ONCE(apic->pending);
}

static struct kvm_lapic *guest_lapic(struct kvm_vcpu *v)
{
	struct kvm_eventfds *ev = smp_load_acquire(&v->kvm->eventfds);

	/* Pairs with the release in irqchip.c's irq_sync_vcpus(). */
	return ev ? smp_load_acquire(&ev->lapic[v->vcpu_idx]) : NULL;
}

/*
 * Deliver every pending interrupt, one handler call each.  Like interrupt
 * entry and IRET, the interrupted context's registers are saved before
 * and restored after (the handler's own port I/O and hypercalls change
 * RAX, RDX, RIP...), and the handler runs with RFLAGS.IF clear.
 */
static void irq_run_handlers(struct kvm_vcpu *v, struct kvm_lapic *apic)
{
	struct kvm_regs saved = v->regs;

	apic->in_handler = true;
	while (apic->handler) {
		int irq = kvm_cpu_get_interrupt(v);

		if (irq < 0)
			break;
		v->regs = saved;
		v->regs.rflags &= ~X86_EFLAGS_IF;
		apic->handler(&v->guest, (uint32_t)irq);
		/* Between two interrupts, as between two instructions. */
		if (unlikely(READ_ONCE(v->kick)))
			kvm_guest_park(v, false, 0);
	}
	v->regs = saved;
	apic->in_handler = false;
}

void kvm_guest_irq_window(struct kvm_vcpu *v)
{
	struct kvm_lapic *apic = guest_lapic(v);

	if (irq_window_open(apic))
		irq_run_handlers(v, apic);
}

GM_API void guestmem_guest_set_irq_handler(struct guestmem_guest *g, guestmem_irq_handler fn)
{
	struct kvm_vcpu *v = guest_to_vcpu(g);
	struct kvm_lapic *apic;

	kvm_guest_stop_point(v);
	apic = kvm_vcpu_lapic(v);
	if (!apic)
		return; /* ENOMEM: interrupts stay disabled */
	apic->handler = fn;
	/* STI / CLI: KVM_RUN reports it in kvm_run->if_flag. */
	if (fn)
		v->regs.rflags |= X86_EFLAGS_IF;
	else
		v->regs.rflags &= ~X86_EFLAGS_IF;
	if (fn) {
		kvm_lapic_guest_enable(v);
		kvm_irqchip_guest_setup(v);
	}
}

GM_API void guestmem_guest_eoi(struct guestmem_guest *g, uint32_t vector)
{
	struct kvm_vcpu *v = guest_to_vcpu(g);

	kvm_guest_stop_point(v);
	kvm_irqchip_eoi(v, vector); /* an in-kernel LAPIC register write: no exit */
}

/* No in-kernel LAPIC: KVM_EXIT_HLT, RIP already past the instruction. */
static void halt_exit(struct kvm_vcpu *v)
{
	v->regs.rip += INSN_LEN_HLT;
	v->run->exit_reason = KVM_EXIT_HLT;
	v->pending = VCPU_PENDING_NONE;
	kvm_guest_park(v, true, 0);
}

/* Sleep until the window opens or KVM_RUN kicks us (kvm_vcpu_wake_up()). */
static void halt_wait(struct kvm_vcpu *v, struct kvm_lapic *apic)
{
	gm_mutex_lock(&apic->halt_lock, GM_LOCK_HALT);
	while (!irq_window_open(apic) && !READ_ONCE(v->kick))
		gm_check_pthread(pthread_cond_wait(&apic->halt_cv, &apic->halt_lock));
	gm_mutex_unlock(&apic->halt_lock);
}

GM_API void guestmem_guest_halt(struct guestmem_guest *g)
{
	struct kvm_vcpu *v = guest_to_vcpu(g);
	struct kvm_lapic *apic;

	if (unlikely(READ_ONCE(v->kick)))
		kvm_guest_park(v, false, 0);
	if (!irqchip_in_kernel(v->kvm)) {
		halt_exit(v);
		return;
	}
	apic = kvm_vcpu_lapic(v);
	v->regs.rip += INSN_LEN_HLT;
	v->mp_state = KVM_MP_STATE_HALTED;
	while (apic && !irq_window_open(apic)) {
		halt_wait(v, apic);
		if (READ_ONCE(v->kick)) {
			/* KVM_RUN returns EINTR; the next one resumes the halt. */
			kvm_guest_park(v, false, 0);
			if (v->mp_state != KVM_MP_STATE_HALTED)
				return; /* the VMM made us runnable meanwhile */
		}
	}
	v->mp_state = KVM_MP_STATE_RUNNABLE;
	if (apic)
		irq_run_handlers(v, apic);
}
