/* SPDX-License-Identifier: MIT */
/*
 * vCPU state ioctls with KVM's checks (Linux 6.12, arch/x86/kvm/x86.c):
 * KVM_X86_SETUP_MCE, KVM_GET/SET_VCPU_EVENTS, KVM_GET/SET_DEBUGREGS,
 * KVM_SET_GUEST_DEBUG, KVM_GET/SET_XSAVE, KVM_GET_XSAVE2, KVM_GET/SET_FPU,
 * and the reset state behind them.
 *
 * Context: vcpu->mutex held, as for every vCPU ioctl.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu/irqchip.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "vcpu/x86/emulate.h"
#include "vcpu/x86/event.h"
#include "vcpu/x86_run.h"
#include "lib/lockdep.h"

#define DR6_ACTIVE_LOW 0xffff0ff0ULL
#define DR7_FIXED_1 0x400ULL
#define NMI_VECTOR 2
#define DB_VECTOR 1
#define BP_VECTOR 3
#define OF_VECTOR 4
#define MXCSR_DEFAULT 0x1f80U
#define FCW_DEFAULT 0x37fU
#define XSAVE_HDR_OFFSET 512
#define XFEATURE_MASK_FP 1ULL
#define XFEATURE_MASK_SSE 2ULL
#define XFEATURE_MASK_YMM 4ULL

/* ---- lifetime --------------------------------------------------------------- */

static void xsave_init(uint8_t *x)
{
	uint16_t fcw = FCW_DEFAULT;
	uint32_t mxcsr = MXCSR_DEFAULT, mask = kvm_mxcsr_feature_mask();

	memset(x, 0, KVM_XSAVE_UABI_SIZE);
	memcpy(x, &fcw, 2);
	memcpy(x + 24, &mxcsr, 4);
	memcpy(x + 28, &mask, 4);
}

int kvm_vcpu_arch_init(struct kvm_vcpu *v)
{
	struct kvm_vcpu_arch *a = &v->arch;

	a->xsave = aligned_alloc(64, KVM_XSAVE_UABI_SIZE);
	if (!a->xsave)
		return -ENOMEM;
	xsave_init(a->xsave);
	/* KVM_GET_XCRS's form: one entry, XCR0, x87 only at reset. */
	v->xcrs = (struct kvm_xcrs){ .nr_xcrs = 1, .xcrs[0] = { .xcr = 0, .value = 1 } };
	/* The LAPIC exists iff the irqchip did when the vCPU was created. */
	if (irqchip_in_kernel(v->kvm)) {
		a->lapic_regs = calloc(1, KVM_LAPIC_REGS_SIZE);
		if (!a->lapic_regs)
			return -ENOMEM;
		kvm_lapic_reset(v);
	}
	kvm_vcpu_tsc_init(v);
	kvm_vcpu_write_tsc(v, 0, false); /* kvm_synchronize_tsc at creation */
	a->mcg_cap = KVM_MAX_MCE_BANKS;
	a->dr6 = DR6_ACTIVE_LOW;
	a->dr7 = DR7_FIXED_1;
	return 0;
}

void kvm_vcpu_arch_free(struct kvm_vcpu *v)
{
	free(v->arch.xsave);
	free(v->arch.lapic_regs);
	free(v->arch.msrs);
}

/* ---- machine check ----------------------------------------------------------- */

int kvm_vcpu_x86_setup_mce(struct kvm_vcpu *v, uint64_t mcg_cap)
{
	unsigned banks = mcg_cap & 0xff;

	lockdep_assert_held(&v->mutex);
	if (!banks || banks > KVM_MAX_MCE_BANKS)
		return -EINVAL;
	/* Supported on AMD: MCG_CTL_P and MCG_SER_P, plus the two count fields. */
	if (mcg_cap & ~(KVM_MCG_CTL_P | KVM_MCG_SER_P | 0xffULL | 0xff0000ULL))
		return -EINVAL;
	v->arch.mcg_cap = mcg_cap;
	if (mcg_cap & KVM_MCG_CTL_P)
		v->arch.mcg_ctl = ~0ULL;
	for (unsigned b = 0; b < banks; b++)
		v->arch.mce_banks[b * 4] = ~0ULL; /* MCi_CTL: all ones */
	return 0;
}

/* ---- events ------------------------------------------------------------------------ */

int kvm_inject_smi(struct kvm_vcpu *v)
{
	if (!v->kvm->cfg.smm)
		return -ENOTTY;
	__atomic_store_n(&v->arch.smi_request, true, __ATOMIC_RELEASE);
	kvm_x86_kick(v);
	return 0;
}

void kvm_vcpu_process_smi(struct kvm_vcpu *v)
{
	if (__atomic_exchange_n(&v->arch.smi_request, false, __ATOMIC_ACQUIRE))
		v->arch.ev.smi.pending = true;
}

void kvm_inject_nmi(struct kvm_vcpu *v)
{
	__atomic_fetch_add(&v->arch.nmi_queued, 1, __ATOMIC_RELEASE);
	kvm_x86_kick(v);
}

void kvm_vcpu_process_nmi(struct kvm_vcpu *v)
{
	struct kvm_x86_events *ev = &v->arch.ev;
	uint32_t limit = (ev->nmi.masked || ev->nmi.injected) ? 1 : 2;
	uint32_t n = ev->nmi.pending + __atomic_exchange_n(&v->arch.nmi_queued, 0, __ATOMIC_ACQUIRE);

	ev->nmi.pending = (uint8_t)(n < limit ? n : limit);
}

int kvm_vcpu_ioctl_interrupt(struct kvm_vcpu *v, uint32_t irq)
{
	if (irq >= 256)
		return -EINVAL;
	if (!irqchip_in_kernel(v->kvm)) {
		x86_event_queue_interrupt(&v->arch.ev, (uint8_t)irq);
		return 0;
	}
	/* With the LAPIC in the kernel it only carries the user-space PIC's ExtINT. */
	if (irqchip_kernel(v->kvm))
		return -ENXIO;
	if (v->arch.has_extint)
		return -EEXIST;
	v->arch.has_extint = true;
	v->arch.extint_vector = (uint8_t)irq;
	return 0;
}

/* NMIs KVM would report: at most one while masked or one is injected. */
static uint8_t nmi_pending(const struct kvm_x86_events *ev)
{
	uint8_t limit = (ev->nmi.masked || ev->nmi.injected) ? 1 : 2;

	return ev->nmi.pending < limit ? ev->nmi.pending : limit;
}

void kvm_vcpu_get_events(struct kvm_vcpu *v, struct kvm_vcpu_events *e)
{
	const struct kvm_x86_events *ev = &v->arch.ev;

	/* Requested NMIs and SMIs read as pending (process_nmi/smi first). */
	kvm_vcpu_process_nmi(v);
	kvm_vcpu_process_smi(v);
	struct kvm *kvm = v->kvm;
	bool soft;

	soft = ev->exception.nr == BP_VECTOR || ev->exception.nr == OF_VECTOR;

	memset(e, 0, sizeof(*e));
	/* Software exceptions are not reported: the guest re-executes them. */
	if (!soft) {
		e->exception.injected = ev->exception.injected;
		e->exception.pending = ev->exception.pending;
		/* Without the payload ABI, pending reads as injected. */
		if (!kvm->arch.exception_payload_enabled)
			e->exception.injected |= ev->exception.pending;
	}
	e->exception.nr = ev->exception.nr;
	e->exception.has_error_code = ev->exception.has_error_code;
	e->exception.error_code = ev->exception.error_code;
	e->exception_has_payload = ev->exception.has_payload;
	e->exception_payload = ev->exception.payload;
	e->interrupt.injected = ev->interrupt.injected && !ev->interrupt.soft;
	e->interrupt.nr = ev->interrupt.nr;
	e->interrupt.shadow = ev->interrupt.shadow;
	e->nmi.injected = ev->nmi.injected;
	e->nmi.pending = nmi_pending(ev);
	e->nmi.masked = ev->nmi.masked;
	if (kvm->cfg.smm) {
		e->smi.smm = ev->smi.smm;
		e->smi.pending = ev->smi.pending;
		e->smi.smm_inside_nmi = ev->smi.smm_inside_nmi;
	}
	e->smi.latched_init = ev->smi.latched_init;
	e->flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
		   KVM_VCPUEVENT_VALID_SMM;
	if (kvm->arch.exception_payload_enabled)
		e->flags |= KVM_VCPUEVENT_VALID_PAYLOAD;
	if (kvm->arch.triple_fault_event) {
		e->triple_fault.pending = ev->triple_fault_pending;
		e->flags |= KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	}
}

/* The checks that come before anything is changed. */
static int events_precheck(struct kvm_vcpu *v, struct kvm_vcpu_events *e)
{
	if (e->flags & ~0x3fU) /* NMI_PENDING .. TRIPLE_FAULT */
		return -EINVAL;
	if (e->flags & KVM_VCPUEVENT_VALID_PAYLOAD) {
		if (!v->kvm->arch.exception_payload_enabled)
			return -EINVAL;
		if (e->exception.pending)
			e->exception.injected = 0;
		else
			e->exception_has_payload = 0;
	} else {
		e->exception.pending = 0;
		e->exception_has_payload = 0;
	}
	if ((e->exception.injected || e->exception.pending) &&
	    (e->exception.nr > 31 || e->exception.nr == NMI_VECTOR))
		return -EINVAL;
	/* INITs are latched while in SMM. */
	if ((e->flags & KVM_VCPUEVENT_VALID_SMM) && (e->smi.smm || e->smi.pending) &&
	    v->mp_state == KVM_MP_STATE_INIT_RECEIVED)
		return -EINVAL;
	return 0;
}

/*
 * The SMM and triple-fault parts come last and can still fail, after the
 * rest was applied: 6.12 behaves so, and so does this.
 */
static int events_set_late(struct kvm_vcpu *v, const struct kvm_vcpu_events *e)
{
	struct kvm_x86_events *ev = &v->arch.ev;
	bool lapic = irqchip_in_kernel(v->kvm);

	if (e->flags & KVM_VCPUEVENT_VALID_SMM) {
		if (!v->kvm->cfg.smm) {
			if (e->smi.smm || e->smi.pending || e->smi.smm_inside_nmi)
				return -EINVAL;
		} else {
			ev->smi.smm = e->smi.smm;
			ev->smi.pending = e->smi.pending;
			if (e->smi.smm)
				ev->smi.smm_inside_nmi = e->smi.smm_inside_nmi;
		}
		if (lapic)
			ev->smi.latched_init = e->smi.latched_init;
	}
	if (e->flags & KVM_VCPUEVENT_VALID_TRIPLE_FAULT) {
		if (!v->kvm->arch.triple_fault_event)
			return -EINVAL;
		ev->triple_fault_pending = e->triple_fault.pending;
	}
	return 0;
}

int kvm_vcpu_set_events(struct kvm_vcpu *v, struct kvm_vcpu_events *e)
{
	struct kvm_x86_events *ev = &v->arch.ev;
	int r = events_precheck(v, e);

	if (r)
		return r;
	kvm_vcpu_process_nmi(v); /* process_nmi() on the old state */
	ev->exception.injected = e->exception.injected;
	ev->exception.pending = e->exception.pending;
	ev->exception.nr = e->exception.nr;
	ev->exception.has_error_code = e->exception.has_error_code;
	ev->exception.error_code = e->exception.error_code;
	ev->exception.has_payload = e->exception_has_payload;
	ev->exception.payload = e->exception_payload;
	ev->interrupt.injected = e->interrupt.injected;
	ev->interrupt.nr = e->interrupt.nr;
	ev->interrupt.soft = e->interrupt.soft;
	/* AMD has one interrupt-shadow bit: any shadow reads back as STI|MOV_SS. */
	if (e->flags & KVM_VCPUEVENT_VALID_SHADOW)
		ev->interrupt.shadow = e->interrupt.shadow ? 3 : 0;
	ev->nmi.injected = e->nmi.injected;
	if (e->flags & KVM_VCPUEVENT_VALID_NMI_PENDING)
		ev->nmi.pending = e->nmi.pending;
	ev->nmi.masked = e->nmi.masked;
	if ((e->flags & KVM_VCPUEVENT_VALID_SIPI_VECTOR) && irqchip_in_kernel(v->kvm))
		ev->sipi_vector = e->sipi_vector;
	return events_set_late(v, e);
}

/* ---- XCRs ------------------------------------------------------------------- */

int kvm_vcpu_set_xcrs(struct kvm_vcpu *v, const struct kvm_xcrs *x)
{
	if (!kvm_supported_xcr0())
		return -EINVAL; /* a host without XSAVE */
	if (x->nr_xcrs > KVM_MAX_XCRS || x->flags)
		return -EINVAL;
	/* The first XCR0 entry counts; the others are ignored. */
	for (uint32_t i = 0; i < x->nr_xcrs; i++) {
		if (x->xcrs[i].xcr != 0)
			continue;
		if (!x86_xcr0_valid(x->xcrs[i].value, kvm_guest_supported_xcr0(v)))
			return -EINVAL;
		v->xcrs.xcrs[0].value = x->xcrs[i].value;
		break;
	}
	return 0;
}

/* ---- debug registers and KVM_SET_GUEST_DEBUG -------------------------------- */

void kvm_vcpu_get_debugregs(struct kvm_vcpu *v, struct kvm_debugregs *d)
{
	memset(d, 0, sizeof(*d));
	memcpy(d->db, v->arch.db, sizeof(d->db));
	d->dr6 = v->arch.dr6;
	d->dr7 = v->arch.dr7;
}

int kvm_vcpu_set_debugregs(struct kvm_vcpu *v, const struct kvm_debugregs *d)
{
	lockdep_assert_held(&v->mutex);
	if (d->flags)
		return -EINVAL;
	if (d->dr6 >> 32 || d->dr7 >> 32) /* bits 63:32 are reserved */
		return -EINVAL;
	memcpy(v->arch.db, d->db, sizeof(d->db));
	v->arch.dr6 = d->dr6;
	v->arch.dr7 = d->dr7;
	return 0;
}

/*
 * Unknown control bits are kept, not refused, as in 6.12; ENABLE clear
 * turns debugging off.  The x86 backend reads the rest (x86_run.c): TF in
 * RFLAGS (regs.c), the breakpoints at each entry.
 */
int kvm_vcpu_set_guest_debug(struct kvm_vcpu *v, const struct kvm_guest_debug *dbg)
{
	struct kvm_vcpu_arch *a = &v->arch;
	uint64_t rflags;

	lockdep_assert_held(&v->mutex);
	if (dbg->control & (KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP)) {
		if (a->ev.exception.pending || a->ev.exception.injected)
			return -EBUSY;
		/* kvm_queue_exception(): a new pending exception, no error code. */
		a->ev.exception.pending = true;
		a->ev.exception.injected = false;
		a->ev.exception.has_error_code = false;
		a->ev.exception.has_payload = false;
		a->ev.exception.nr = (dbg->control & KVM_GUESTDBG_INJECT_DB) ? DB_VECTOR : BP_VECTOR;
	}
	/* Read while the old control still hides its TF. */
	rflags = kvm_get_rflags(v);
	a->guest_debug = (dbg->control & KVM_GUESTDBG_ENABLE) ? dbg->control : 0;
	if (a->guest_debug & KVM_GUESTDBG_USE_HW_BP)
		memcpy(a->guest_debug_db, dbg->arch.debugreg, sizeof(a->guest_debug_db));
	if (a->guest_debug & KVM_GUESTDBG_SINGLESTEP)
		a->singlestep_rip = kvm_get_linear_rip(v);
	kvm_set_rflags(v, rflags); /* the step's TF in or out */
	return 0;
}

/* ---- XSAVE (uABI format) and the FPU view of it ------------------------------- */

void kvm_vcpu_get_xsave(struct kvm_vcpu *v, void *buf)
{
	kvm_x86_xsave_sync_out(v); /* the x86 backend keeps it in the guest thread */
	memcpy(buf, v->arch.xsave, KVM_XSAVE_UABI_SIZE);
}

/* Header checks of fpu_copy_uabi_to_guest_fpstate(), in its order. */
static int xsave_check(const uint8_t *x, uint64_t *xfeatures)
{
	uint64_t xcomp_bv;
	uint32_t mxcsr;

	memcpy(xfeatures, x + XSAVE_HDR_OFFSET, 8);
	memcpy(&xcomp_bv, x + XSAVE_HDR_OFFSET + 8, 8);
	if (*xfeatures & ~kvm_supported_xcr0())
		return -EINVAL;
	if (xcomp_bv) /* userspace uses the standard format */
		return -EINVAL;
	for (int i = 16; i < 64; i++) /* header reserved bytes */
		if (x[XSAVE_HDR_OFFSET + i])
			return -EINVAL;
	memcpy(&mxcsr, x + 24, 4);
	if ((*xfeatures & (XFEATURE_MASK_FP | XFEATURE_MASK_SSE | XFEATURE_MASK_YMM)) &&
	    (mxcsr & ~kvm_mxcsr_feature_mask()))
		return -EINVAL;
	return 0;
}

int kvm_vcpu_set_xsave(struct kvm_vcpu *v, const void *buf)
{
	const uint8_t *x = buf;
	uint8_t *st = v->arch.xsave;
	uint64_t xfeatures;
	int r = xsave_check(x, &xfeatures);

	lockdep_assert_held(&v->mutex);
	if (r)
		return r;
	/* Components absent from xfeatures are in their initial state. */
	xsave_init(st);
	if (xfeatures & XFEATURE_MASK_FP) {
		memcpy(st, x, 24);
		memcpy(st + 32, x + 32, 128);
	}
	if (xfeatures & (XFEATURE_MASK_FP | XFEATURE_MASK_SSE | XFEATURE_MASK_YMM))
		memcpy(st + 24, x + 24, 4); /* MXCSR */
	if (xfeatures & XFEATURE_MASK_SSE)
		memcpy(st + 160, x + 160, 256);
	for (int i = 2; i < 64; i++) {
		uint32_t off, size;

		if (!(xfeatures & (1ULL << i)))
			continue;
		kvm_xstate_component(i, &off, &size);
		if (off + size <= KVM_XSAVE_UABI_SIZE)
			memcpy(st + off, x + off, size);
	}
	memcpy(st + XSAVE_HDR_OFFSET, &xfeatures, 8);
	kvm_x86_xsave_sync_in(v);
	return 0;
}

void kvm_vcpu_get_fpu(struct kvm_vcpu *v, struct kvm_fpu *fpu)
{
	kvm_x86_xsave_sync_out(v);
	const uint8_t *x = v->arch.xsave;

	memset(fpu, 0, sizeof(*fpu));
	memcpy(fpu->fpr, x + 32, sizeof(fpu->fpr));
	memcpy(&fpu->fcw, x, 2);
	memcpy(&fpu->fsw, x + 2, 2);
	fpu->ftwx = x[4];
	memcpy(&fpu->last_opcode, x + 6, 2);
	memcpy(&fpu->last_ip, x + 8, 8);
	memcpy(&fpu->last_dp, x + 16, 8);
	memcpy(fpu->xmm, x + 160, sizeof(fpu->xmm));
	memcpy(&fpu->mxcsr, x + 24, 4);
}

void kvm_vcpu_set_fpu(struct kvm_vcpu *v, const struct kvm_fpu *fpu)
{
	uint8_t *x = v->arch.xsave;
	uint64_t xfeatures;

	lockdep_assert_held(&v->mutex);
	kvm_x86_xsave_sync_out(v); /* a partial update of the current state */
	memcpy(x + 32, fpu->fpr, sizeof(fpu->fpr));
	memcpy(x, &fpu->fcw, 2);
	memcpy(x + 2, &fpu->fsw, 2);
	x[4] = fpu->ftwx;
	memcpy(x + 6, &fpu->last_opcode, 2);
	memcpy(x + 8, &fpu->last_ip, 8);
	memcpy(x + 16, &fpu->last_dp, 8);
	memcpy(x + 160, fpu->xmm, sizeof(fpu->xmm));
	memcpy(x + 24, &fpu->mxcsr, 4);
	/* The legacy state is live now: XSAVE reports it. */
	memcpy(&xfeatures, x + XSAVE_HDR_OFFSET, 8);
	xfeatures |= XFEATURE_MASK_FP | XFEATURE_MASK_SSE;
	memcpy(x + XSAVE_HDR_OFFSET, &xfeatures, 8);
	kvm_x86_xsave_sync_in(v);
}
