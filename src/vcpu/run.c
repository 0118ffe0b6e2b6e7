/* SPDX-License-Identifier: MIT */
/*
 * KVM_RUN (spec kvm-vcpu-eventfd-spec.md §5.2, §5.7, §9).
 *
 * Order: register-sync bits, dirty sync regs, cr8, completion of the
 * previous exit, immediate_exit, then the run loop, which sets exit_reason
 * to 0, resumes the guest thread and waits for it to park.
 *
 * Waiting.  KVM_RUN may first spin (GUESTMEM_VCPU_SPIN_US, off by
 * default), then sleeps.  The guest side does the same while the VMM
 * handles its exit.
 *
 * Signals.  Every signal is blocked from the start of KVM_RUN.  The signals
 * the run mask (KVM_SET_SIGNAL_MASK's, or the caller's own) lets through
 * are watched with a signalfd (sigwait.c), which sees them pending without
 * delivering them, as the kernel's run loop sees them: the loop starts
 * with a zero-timeout check, so a signal already pending ends KVM_RUN
 * before the guest runs, and the sleep polls the signalfd beside the
 * vCPU's eventfd, so a signal at any later point ends the wait.  The
 * signal stays pending; restoring the caller's mask on return delivers it
 * if that mask allows, and a signal only the run mask lets through stays
 * pending for the caller's sigwait().  Then KVM_RUN sets the vCPU's
 * kick flag, which the guest checks in every accessor, waits for the guest
 * to stop, and returns -EINTR with KVM_EXIT_INTR - unless the guest had
 * produced an exit meanwhile, which is then returned instead, so that no
 * exit is ever lost.  A guest that computes without calling an accessor
 * delays the return until it calls one.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vcpu/vcpu.h"
#include "vcpu/x86_run.h"
#include "lib/lockdep.h"
#include "lib/sys_raw.h"

#define X86_EFLAGS_IF (1ULL << 9)
#define KVM_SYNC_VALID (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)

/* Instruction lengths behind the RIP advance on completion. */
#define INSN_LEN_VMCALL 3 /* 0f 01 c1 */

static unsigned pio_insn_len(unsigned size)
{
	return size == 2 ? 2 : 1; /* in/out with DX; 66h prefix for words */
}

/* ---- step 8: dirty sync regs; step 14: valid sync regs ------------------ */

static int sync_regs(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;

	if (run->kvm_dirty_regs & KVM_SYNC_X86_REGS) {
		kvm_vcpu_set_regs(v, &run->s.regs.regs);
		run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_REGS;
	}
	if (run->kvm_dirty_regs & KVM_SYNC_X86_SREGS) {
		struct kvm_sregs sregs = run->s.regs.sregs;

		if (kvm_vcpu_set_sregs(v, &sregs))
			return -EINVAL;
		run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_SREGS;
	}
	if (run->kvm_dirty_regs & KVM_SYNC_X86_EVENTS) {
		struct kvm_vcpu_events ev = run->s.regs.events;

		if (kvm_vcpu_set_events(v, &ev))
			return -EINVAL;
		run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_EVENTS;
	}
	return 0;
}

static void store_regs(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;

	if (run->kvm_valid_regs & KVM_SYNC_X86_REGS)
		kvm_vcpu_get_regs(v, &run->s.regs.regs); /* RFLAGS as KVM_GET_REGS shows it */
	if (run->kvm_valid_regs & KVM_SYNC_X86_SREGS)
		run->s.regs.sregs = v->sregs;
	if (run->kvm_valid_regs & KVM_SYNC_X86_EVENTS)
		kvm_vcpu_get_events(v, &run->s.regs.events);
}

/* post_kvm_run_save: what every return of KVM_RUN fills. */
static void post_run_save(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;

	run->if_flag = !!(v->regs.rflags & X86_EFLAGS_IF);
	run->cr8 = v->sregs.cr8;
	run->apic_base = v->sregs.apic_base;
	/* Always 1 with the PIC in the kernel (irqchip.h); else IF. */
	run->ready_for_interrupt_injection = irqchip_kernel(v->kvm) || run->if_flag;
	if (v->x86) /* and nothing queued or to re-inject (event.h) */
		run->ready_for_interrupt_injection = kvm_x86_ready_for_interrupt_injection(v);
}

/* ---- step 10: complete the previous exit ----------------------------------- */

static void complete_pio_in(struct kvm_vcpu *v)
{
	const uint8_t *data = (const uint8_t *)v->run + KVM_PIO_DATA_OFFSET;
	uint32_t val = 0;

	/* A VMM that moved RIP meanwhile gets the completion dropped. */
	if (v->regs.rip != v->pending_rip)
		return;
	memcpy(&val, data, v->pending_size);
	if (v->pending_size == 4)
		v->regs.rax = val; /* 32-bit results zero-extend */
	else if (v->pending_size == 2)
		v->regs.rax = (v->regs.rax & ~0xffffULL) | val;
	else
		v->regs.rax = (v->regs.rax & ~0xffULL) | val;
	v->regs.rip += pio_insn_len(v->pending_size);
}

static void complete_userspace_io(struct kvm_vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (v->pending) {
	case VCPU_PENDING_PIO_IN:
		complete_pio_in(v);
		break;
	case VCPU_PENDING_PIO_OUT:
		if (v->regs.rip == v->pending_rip)
			v->regs.rip += pio_insn_len(v->pending_size);
		break;
	case VCPU_PENDING_MMIO_READ:
		memcpy(&v->mmio_data, run->mmio.data, v->pending_size);
		break;
	case VCPU_PENDING_HYPERCALL:
		v->regs.rax = run->hypercall.ret;
		v->regs.rip += INSN_LEN_VMCALL;
		break;
	case VCPU_PENDING_MMIO_WRITE:
	case VCPU_PENDING_NONE:
		break;
	}
	v->pending = VCPU_PENDING_NONE;
}

/* ---- the run loop ---------------------------------------------------------- */

/* Acquire: pairs with the release in guest_publish(). */
static bool guest_parked(struct kvm_vcpu *v)
{
	return smp_load_acquire(&v->state) != GUEST_IN;
}

static void drain_wake_fd(struct kvm_vcpu *v)
{
	uint64_t cnt;

	/* Non-blocking; EAGAIN when already drained. */
	if (gm_raw_read(v->wake_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		gm_assert(!"read of the vCPU eventfd failed");
}

/*
 * Wait until the guest parks: spin if configured, then sleep in poll() on
 * the wake eventfd and the signalfd of the signals the run mask lets
 * through (sigwait.c: seen, not delivered).  The first such signal kicks
 * the guest; after that only the guest's parking is waited for.
 */
static void wait_for_guest(struct kvm_vcpu *v, const sigset_t *mask)
{
	struct pollfd pfd[2] = { { .fd = v->wake_fd, .events = POLLIN },
				 { .fd = kvm_vcpu_sigfd(v, mask), .events = POLLIN } };
	bool kicked = pfd[1].fd < 0;

	if (kvm_vcpu_spin_until(guest_parked(v)))
		return;
	/* Dekker with guest_publish(): announce the sleep, then look again. */
	__atomic_store_n(&v->waiter_sleeping, true, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&v->state, __ATOMIC_SEQ_CST) == GUEST_IN) {
		int r = poll(pfd, kicked ? 1 : 2, -1);

		if (r > 0 && (pfd[0].revents & POLLIN))
			drain_wake_fd(v);
		if (r > 0 && !kicked && (pfd[1].revents & POLLIN)) {
			/* Pairs with the guest's READ_ONCE in its stop points. */
			WRITE_ONCE(v->kick, true);
			kvm_vcpu_wake_up(v); /* a guest halted in guest_irq.c */
			kicked = true;
		}
	}
	WRITE_ONCE(v->waiter_sleeping, false);
	WRITE_ONCE(v->kick, false);
}

/* Resume (or start) the guest thread.  Context: state is not GUEST_IN. */
static int resume_guest(struct kvm_vcpu *v)
{
	bool start;
	int r = 0;

	gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
	start = v->state == GUEST_NOT_STARTED;
	v->exited = false;
	v->run_ret = 0;
	/* Release: the guest's acquire sees our completion of the last exit. */
	smp_store_release(&v->state, GUEST_IN);
	if (!start)
		gm_check_pthread(pthread_cond_signal(&v->hand_cv));
	gm_mutex_unlock(&v->hand_lock);
	if (start) {
		/* Every signal is blocked now: the thread inherits that mask. */
		r = kvm_guest_thread_start(v);
		if (r) {
			gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
			WRITE_ONCE(v->state, GUEST_NOT_STARTED);
			gm_mutex_unlock(&v->hand_lock);
		}
	}
	return r;
}

/* What the guest left when it parked.  Returns false for a stop point. */
static bool guest_exit_result(struct kvm_vcpu *v, int *ret)
{
	bool exited;

	gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
	exited = v->exited;
	*ret = v->run_ret;
	gm_mutex_unlock(&v->hand_lock);
	return exited;
}

static int vcpu_run(struct kvm_vcpu *v, const sigset_t *mask)
{
	struct kvm_run *run = v->run;
	int r;

	run->exit_reason = KVM_EXIT_UNKNOWN;
	kvm_stat_inc(&v->stat.runs);
	/* The backend, chosen at the first run: no C guest, the VMM's code. */
	if (v->x86 || (v->state == GUEST_NOT_STARTED && !v->guest_fn &&
		       !(v->guest_fn = kvm_guest_default_fn()))) {
		v->has_run = true;
		return kvm_x86_vcpu_run(v, mask);
	}
	/* The guest is parked (or never ran): state is stable here. */
	if (v->state == GUEST_DONE) {
		run->exit_reason = KVM_EXIT_SHUTDOWN; /* the guest has returned */
		return 0;
	}
	/* A signal already pending: EINTR before the guest runs, as KVM. */
	if (kvm_vcpu_signal_pending(v, mask, 0))
		return kvm_vcpu_exit_intr(v);
	v->has_run = true;
	r = resume_guest(v);
	if (r)
		return r;
	wait_for_guest(v, mask);
	/* Stopped at a stop point for a signal: nothing was produced. */
	if (!guest_exit_result(v, &r))
		return kvm_vcpu_exit_intr(v);
	return r;
}

int kvm_arch_vcpu_ioctl_run(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_run *run = v->run;
	sigset_t all, old;
	const sigset_t *mask;
	int r;

	lockdep_assert_held(&v->mutex);
	if (arg)
		return -EINVAL;
	/* Block first: a signal from here on stays pending until the wait. */
	sigfillset(&all);
	gm_check_pthread(pthread_sigmask(SIG_BLOCK, &all, &old));
	mask = v->sigmask_active ? &v->sigmask : &old;
	run->flags = 0;
	if ((run->kvm_valid_regs & ~(uint64_t)KVM_SYNC_VALID) ||
	    (run->kvm_dirty_regs & ~(uint64_t)KVM_SYNC_VALID)) {
		r = -EINVAL;
		goto out;
	}
	r = sync_regs(v);
	if (r)
		goto out;
	/* No in-kernel LAPIC: cr8 is the TPR, 4 bits (with one: ignored). */
	if (!irqchip_in_kernel(v->kvm) && (run->cr8 & ~0xfULL)) {
		r = -EINVAL;
		goto out;
	}
	if (!irqchip_in_kernel(v->kvm))
		v->sregs.cr8 = run->cr8;
	if (v->x86) {
		/* The completion itself may exit again (MMIO read-modify-write). */
		if (kvm_x86_complete_userspace_io(v, &r))
			goto out;
	} else {
		complete_userspace_io(v);
	}
	/* After the completion: a pending IN or MMIO read is never lost. */
	if (READ_ONCE(run->immediate_exit)) {
		r = -EINTR;
		goto out;
	}
	r = vcpu_run(v, mask);
	if (run->exit_reason < KVM_VCPU_NR_EXIT_STATS)
		kvm_stat_inc(&v->stat.exits[run->exit_reason]);
out:
	store_regs(v);
	post_run_save(v);
	gm_check_pthread(pthread_sigmask(SIG_SETMASK, &old, NULL));
	return r;
}

int kvm_vcpu_set_guest(struct kvm_vcpu *vcpu, guestmem_guest_fn fn, void *opaque)
{
	lockdep_assert_held(&vcpu->mutex);
	/* Context: vcpu->mutex held, so no KVM_RUN changes state meanwhile. */
	if (vcpu->state != GUEST_NOT_STARTED)
		return -EBUSY;
	vcpu->guest_fn = fn;
	vcpu->guest_opaque = opaque;
	return 0;
}
