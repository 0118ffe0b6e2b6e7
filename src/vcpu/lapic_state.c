/* SPDX-License-Identifier: MIT */
/*
 * KVM_GET_LAPIC / KVM_SET_LAPIC: the in-kernel LAPIC's 1 KiB register page
 * (struct kvm_lapic_state), as Linux 6.12's lapic.c keeps it on an AMD host.
 *
 * - Both need an in-kernel LAPIC (KVM_CREATE_IRQCHIP or the split irqchip
 *   before the vCPU was created): EINVAL otherwise, before the copy.
 * - Reset: ID = vcpu_id << 24, the six LVTs masked (no CMCI on AMD), LINT0
 *   in ExtINT mode on the boot vCPU (the LINT0_REENABLED quirk, unless
 *   KVM_CAP_DISABLE_QUIRKS2 turned it off), DFR all
 *   ones, SPIV 0xff.
 * - LVR is KVM's: version 0x14, 6 LVT entries, directed EOI when the guest
 *   has x2APIC and the IOAPIC is not in the kernel.  PPR follows TPR/ISR.
 * - x2APIC mode (APIC_BASE.EXTD): without KVM_CAP_X2APIC_API the ID reads
 *   as vcpu_id << 24 and a written ID is ignored; the LDR is derived from
 *   the ID.  The ICR stays split (AMD).
 * - The timer: the restored TMCCT starts the count; the register reads 0
 *   and KVM_GET_LAPIC reports the count left now (APIC bus 1 GHz unless
 *   KVM_CAP_X86_APIC_BUS_CYCLES_NS says otherwise, the divide
 *   configuration in TDCR), one-shot or periodic.
 *
 * The page is the LAPIC's architectural state for real guest code, except
 * IRR, ISR, TMR and PPR: the interrupt model (lapic.c) is their only copy,
 * and the page shows them as they are when read (KVM_GET_LAPIC, the
 * guest's reads); KVM_SET_LAPIC loads IRR, ISR and TMR into the model.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "vcpu/irqchip.h"
#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"

#define APIC_ID 0x20
#define APIC_LVR 0x30
#define APIC_TASKPRI 0x80
#define APIC_PROCPRI 0xa0
#define APIC_LDR 0xd0
#define APIC_DFR 0xe0
#define APIC_SPIV 0xf0
#define APIC_ISR 0x100
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_LVTT 0x320
#define APIC_LVT0 0x350
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3e0
#define APIC_LVT_MASKED 0x10000U
#define APIC_MODE_EXTINT 0x700U
#define APIC_VERSION 0x14U
#define APIC_LVR_DIRECTED_EOI (1U << 24)
#define KVM_APIC_NR_LVT 6
#define APIC_BASE_EXTD (1ULL << 10)
#define APIC_BASE_ENABLE (1ULL << 11)

static uint32_t reg_get(const uint8_t *regs, unsigned off)
{
	uint32_t v;

	memcpy(&v, regs + off, 4);
	return v;
}

static void reg_set(uint8_t *regs, unsigned off, uint32_t v)
{
	memcpy(regs + off, &v, 4);
}

#define APIC_SPIV_ENABLED 0x100U

/* SPIV, with the mirror of its enable bit the delivering threads read. */
static void lapic_set_spiv(struct kvm_vcpu *v, uint32_t val)
{
	reg_set(v->arch.lapic_regs, APIC_SPIV, val);
	WRITE_ONCE(v->arch.lapic_sw_enabled, !!(val & APIC_SPIV_ENABLED));
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static bool x2apic_mode(struct kvm_vcpu *v)
{
	return (v->sregs.apic_base & (APIC_BASE_EXTD | APIC_BASE_ENABLE)) ==
	       (APIC_BASE_EXTD | APIC_BASE_ENABLE);
}

static uint32_t lapic_version(struct kvm_vcpu *v)
{
	uint32_t lvr = APIC_VERSION | ((KVM_APIC_NR_LVT - 1) << 16);

	if (kvm_guest_cpuid_has(v, 1, 0, 2, 21) && !irqchip_kernel(v->kvm))
		lvr |= APIC_LVR_DIRECTED_EOI;
	return lvr;
}

bool kvm_apic_accept_pic_intr(struct kvm_vcpu *v)
{
	uint32_t lvt0;

	if (!v->arch.lapic_regs || !(v->sregs.apic_base & APIC_BASE_ENABLE))
		return true;
	lvt0 = reg_get(v->arch.lapic_regs, APIC_LVT0);
	return !(lvt0 & APIC_LVT_MASKED) && (lvt0 & 0x700U) == APIC_MODE_EXTINT;
}

void kvm_lapic_reset(struct kvm_vcpu *v)
{
	uint8_t *regs = v->arch.lapic_regs;

	memset(regs, 0, KVM_LAPIC_REGS_SIZE);
	reg_set(regs, APIC_ID, v->vcpu_id << 24);
	for (unsigned i = 0; i < KVM_APIC_NR_LVT; i++)
		reg_set(regs, APIC_LVTT + 0x10 * i, APIC_LVT_MASKED);
	if (v->vcpu_id == READ_ONCE(v->kvm->bsp_vcpu_id) &&
	    kvm_check_has_quirk(v->kvm, KVM_X86_QUIRK_LINT0_REENABLED))
		reg_set(regs, APIC_LVT0, APIC_MODE_EXTINT);
	reg_set(regs, APIC_DFR, 0xffffffffU);
	lapic_set_spiv(v, 0xff); /* software-disabled until the guest enables it */
}

void kvm_lapic_guest_enable(struct kvm_vcpu *v)
{
	if (v->arch.lapic_regs && !READ_ONCE(v->arch.lapic_sw_enabled))
		lapic_set_spiv(v, reg_get(v->arch.lapic_regs, APIC_SPIV) | APIC_SPIV_ENABLED);
}

/* APIC bus cycles per count: the TDCR divider. */
static unsigned divide_count(const uint8_t *regs)
{
	uint32_t t = reg_get(regs, APIC_TDCR) & 0xf;

	return 1U << ((((t & 3) | ((t & 8) >> 1)) + 1) & 7);
}

/*
 * Nanoseconds per count: the divider times the bus period
 * (KVM_CAP_X86_APIC_BUS_CYCLES_NS, fixed before the first vCPU exists, so
 * a plain read is ordered by the vCPU's creation under kvm->lock).
 */
static uint64_t count_ns(struct kvm_vcpu *v, const uint8_t *regs)
{
	return (uint64_t)divide_count(regs) * v->kvm->arch.apic_bus_cycle_ns;
}

/* The count left now, for KVM_GET_LAPIC's TMCCT (apic_get_tmcct()). */
static uint32_t lapic_tmcct(struct kvm_vcpu *v)
{
	const uint8_t *regs = v->arch.lapic_regs;
	uint32_t mode = (reg_get(regs, APIC_LVTT) >> 17) & 3;
	uint64_t div = count_ns(v, regs), first = v->arch.lapic_timer_first_ns;
	uint64_t elapsed = now_ns() - v->arch.lapic_timer_start_ns, left, period;

	if (!reg_get(regs, APIC_TMICT) || !first || mode > 1)
		return 0;
	if (elapsed < first) {
		left = first - elapsed;
	} else {
		period = (uint64_t)reg_get(regs, APIC_TMICT) * div;
		if (mode == 0 || !period) /* one-shot: expired */
			return 0;
		left = period - (elapsed - first) % period;
	}
	return (uint32_t)(left / div);
}

/* PPR from TPR and the highest vector in @isr (apic_update_ppr()). */
static uint32_t lapic_ppr(const uint8_t *regs, const uint32_t isr[8])
{
	uint32_t tpr = reg_get(regs, APIC_TASKPRI), isrv = 0;

	for (int i = 7; i >= 0 && !isrv; i--)
		if (isr[i])
			isrv = (uint32_t)i * 32 + 31 - (uint32_t)__builtin_clz(isr[i]);
	return (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0;
}

/* IRR, ISR, TMR and PPR into @page as the model has them now. */
static void lapic_fill_vectors(struct kvm_vcpu *v, uint8_t *page)
{
	uint32_t irr[8], isr[8], tmr[8];

	kvm_apic_get_vectors(v, irr, isr, tmr);
	for (unsigned i = 0; i < 8; i++) {
		reg_set(page, APIC_IRR + 0x10 * i, irr[i]);
		reg_set(page, APIC_ISR + 0x10 * i, isr[i]);
		reg_set(page, APIC_TMR + 0x10 * i, tmr[i]);
	}
	reg_set(page, APIC_PROCPRI, lapic_ppr(page, isr));
}

int kvm_vcpu_get_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s)
{
	if (!v->arch.lapic_regs)
		return -EINVAL;
	memcpy(s->regs, v->arch.lapic_regs, KVM_LAPIC_REGS_SIZE);
	lapic_fill_vectors(v, (uint8_t *)s->regs);
	reg_set((uint8_t *)s->regs, APIC_LVR, lapic_version(v));
	reg_set((uint8_t *)s->regs, APIC_TMCCT, lapic_tmcct(v));
	/* KVM_CAP_X2APIC_API's 32-bit IDs show the x2APIC ID as it is. */
	if (x2apic_mode(v))
		reg_set((uint8_t *)s->regs, APIC_ID,
			READ_ONCE(v->kvm->arch.x2apic_format) ? v->vcpu_id : v->vcpu_id << 24);
	return 0;
}

int kvm_vcpu_set_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s)
{
	uint8_t *regs = (uint8_t *)s->regs;
	uint32_t id = v->vcpu_id, irr[8], isr[8], tmr[8];

	if (!v->arch.lapic_regs)
		return -EINVAL;
	if (x2apic_mode(v)) {
		/* With 32-bit IDs a different ID is refused, not ignored. */
		if (READ_ONCE(v->kvm->arch.x2apic_format) && reg_get(regs, APIC_ID) != id)
			return -EINVAL;
		/* The x2APIC ID is read-only; the LDR follows from it. */
		reg_set(regs, APIC_ID, id);
		reg_set(regs, APIC_LDR, ((id >> 4) << 16) | (1U << (id & 0xf)));
	}
	memcpy(v->arch.lapic_regs, regs, KVM_LAPIC_REGS_SIZE);
	regs = v->arch.lapic_regs;
	reg_set(regs, APIC_LVR, lapic_version(v));
	lapic_set_spiv(v, reg_get(regs, APIC_SPIV));
	/* IRR, ISR and TMR go to the model; the page keeps no copy (nor of PPR). */
	for (unsigned i = 0; i < 8; i++) {
		irr[i] = reg_get(regs, APIC_IRR + 0x10 * i);
		isr[i] = reg_get(regs, APIC_ISR + 0x10 * i);
		tmr[i] = reg_get(regs, APIC_TMR + 0x10 * i);
		reg_set(regs, APIC_IRR + 0x10 * i, 0);
		reg_set(regs, APIC_ISR + 0x10 * i, 0);
		reg_set(regs, APIC_TMR + 0x10 * i, 0);
	}
	reg_set(regs, APIC_PROCPRI, 0);
	kvm_apic_set_tpr(v, reg_get(regs, APIC_TASKPRI));
	kvm_apic_set_vectors(v, irr, isr, tmr);
	/* The restored current count starts the timer; the register reads 0. */
	v->arch.lapic_timer_first_ns = (uint64_t)reg_get(regs, APIC_TMCCT) * count_ns(v, regs);
	v->arch.lapic_timer_start_ns = now_ns();
	reg_set(regs, APIC_TMCCT, 0);
	return 0;
}

/* ---- the guest's accesses: the xAPIC page and the x2APIC MSRs ------------------ */

#define APIC_EOI 0xb0
#define APIC_ESR 0x280
#define APIC_ICR 0x300
#define APIC_ICR2 0x310
#define APIC_LVTTHMR 0x330
#define APIC_LVTPC 0x340
#define APIC_LVT1 0x360
#define APIC_LVTERR 0x370
#define APIC_SELF_IPI 0x3f0
#define APIC_ARBPRI 0x90
#define APIC_SPIV_DIRECTED_EOI 0x1000U
#define APIC_LVT_TIMER_MODE 0x60000U
#define APIC_LVT_TIMER_TSCDEADLINE 0x40000U
#define APIC_ICR_BUSY 0x1000U
#define APIC_DEFAULT_SIZE 0x1000U
#define MSR_X2APIC_FIRST 0x800U
#define MSR_X2APIC_LAST 0x8ffU
/* x2APIC ICR bits that must be zero (they #GP): 31:20, 17:16, 13. */
#define X2APIC_ICR_RESERVED 0xfff32000ULL

/* The bits of each LVT a write keeps (apic_lvt_mask). */
#define LVT_MASK (APIC_LVT_MASKED | 0x1000U | 0xffU)
#define LINT_MASK (LVT_MASK | 0x700U | 0x2000U | 0x4000U | 0x8000U)

static bool reg_readable(struct kvm_vcpu *v, unsigned off)
{
	bool x2 = x2apic_mode(v);

	switch (off) {
	case APIC_ARBPRI:
	case APIC_DFR:
	case APIC_ICR2:
		return !x2;
	case APIC_ID:
	case APIC_LVR:
	case APIC_TASKPRI:
	case APIC_PROCPRI:
	case APIC_LDR:
	case APIC_SPIV:
	case APIC_ESR:
	case APIC_ICR:
	case APIC_LVTT:
	case APIC_LVTTHMR:
	case APIC_LVTPC:
	case APIC_LVT0:
	case APIC_LVT1:
	case APIC_LVTERR:
	case APIC_TMICT:
	case APIC_TMCCT:
	case APIC_TDCR:
		return true;
	default:
		/* ISR, TMR, IRR: eight registers each. */
		return off >= APIC_ISR && off < APIC_IRR + 0x80;
	}
}

/* PPR and the eight IRR, ISR and TMR registers come from the interrupt model. */
static bool lapic_vector_reg(struct kvm_vcpu *v, unsigned off, uint32_t *val)
{
	bool is_isr = off >= APIC_ISR && off < APIC_ISR + 0x80;
	bool is_irr = off >= APIC_IRR && off < APIC_IRR + 0x80;
	bool is_tmr = off >= APIC_TMR && off < APIC_TMR + 0x80;
	uint32_t irr[8], isr[8], tmr[8];

	if (off != APIC_PROCPRI && !is_isr && !is_irr && !is_tmr)
		return false;
	kvm_apic_get_vectors(v, irr, isr, tmr);
	if (is_irr)
		*val = irr[(off - APIC_IRR) >> 4];
	else if (is_isr)
		*val = isr[(off - APIC_ISR) >> 4];
	else if (is_tmr)
		*val = tmr[(off - APIC_TMR) >> 4];
	else
		*val = lapic_ppr(v->arch.lapic_regs, isr);
	return true;
}

/* kvm_lapic_reg_read(): 1 for a register that does not exist. */
static int lapic_reg_read(struct kvm_vcpu *v, unsigned off, uint32_t *val)
{
	const uint8_t *regs = v->arch.lapic_regs;

	if (!reg_readable(v, off))
		return 1;
	switch (off) {
	case APIC_LVR:
		*val = lapic_version(v);
		return 0;
	case APIC_TMCCT:
		*val = lapic_tmcct(v);
		return 0;
	case APIC_ID:
		/* xAPIC: 8-bit ID in 31:24; x2APIC: the 32-bit vCPU id. */
		*val = x2apic_mode(v) ? v->vcpu_id : reg_get(regs, APIC_ID);
		return 0;
	default:
		if (!lapic_vector_reg(v, off, val))
			*val = reg_get(regs, off);
		return 0;
	}
}

/* The timer starts counting @count from now (start_apic_timer()). */
static void lapic_timer_start(struct kvm_vcpu *v, uint32_t count)
{
	v->arch.lapic_timer_first_ns = (uint64_t)count * count_ns(v, v->arch.lapic_regs);
	v->arch.lapic_timer_start_ns = now_ns();
}

static bool timer_tscdeadline(const uint8_t *regs)
{
	return (reg_get(regs, APIC_LVTT) & APIC_LVT_TIMER_MODE) == APIC_LVT_TIMER_TSCDEADLINE;
}

/* kvm_lapic_reg_write(): 1 where the register refuses the write (#GP in x2APIC mode). */
static int lapic_reg_write(struct kvm_vcpu *v, unsigned off, uint32_t val)
{
	uint8_t *regs = v->arch.lapic_regs;
	bool x2 = x2apic_mode(v);

	switch (off) {
	case APIC_ID:
		if (x2)
			return 1;
		reg_set(regs, APIC_ID, val & 0xff000000U);
		return 0;
	case APIC_TASKPRI:
		reg_set(regs, APIC_TASKPRI, val & 0xff);
		kvm_apic_set_tpr(v, val & 0xff); /* PPR gates delivery in lapic.c */
		return 0;
	case APIC_EOI:
		kvm_apic_eoi_highest(v);
		return 0;
	case APIC_LDR:
		if (x2)
			return 1;
		reg_set(regs, APIC_LDR, val & 0xff000000U);
		return 0;
	case APIC_DFR:
		if (x2)
			return 1;
		reg_set(regs, APIC_DFR, val | 0x0fffffffU);
		return 0;
	case APIC_SPIV: {
		uint32_t mask = 0x3ff;

		if (lapic_version(v) & APIC_LVR_DIRECTED_EOI)
			mask |= APIC_SPIV_DIRECTED_EOI;
		lapic_set_spiv(v, val & mask);
		if (!(val & APIC_SPIV_ENABLED)) {
			/* Software-disabling masks every LVT. */
			for (unsigned i = 0; i < KVM_APIC_NR_LVT; i++) {
				unsigned o = APIC_LVTT + 0x10 * i;

				reg_set(regs, o, reg_get(regs, o) | APIC_LVT_MASKED);
			}
		}
		return 0;
	}
	case APIC_ICR:
		if (x2)
			return 1; /* a 32-bit write cannot reach it: see kvm_x2apic_msr */
		val &= ~APIC_ICR_BUSY; /* delivered at once: never busy */
		kvm_apic_send_ipi(v, val, reg_get(regs, APIC_ICR2) >> 24);
		reg_set(regs, APIC_ICR, val);
		return 0;
	case APIC_ICR2:
		if (x2)
			return 1;
		reg_set(regs, APIC_ICR2, val & 0xff000000U);
		return 0;
	case APIC_LVT0:
	case APIC_LVTTHMR:
	case APIC_LVTPC:
	case APIC_LVT1:
	case APIC_LVTERR: {
		uint32_t mask = off == APIC_LVT0 || off == APIC_LVT1 ? LINT_MASK
				: off == APIC_LVTERR			? LVT_MASK
									: LVT_MASK | 0x700U;

		if (!(reg_get(regs, APIC_SPIV) & APIC_SPIV_ENABLED))
			val |= APIC_LVT_MASKED;
		reg_set(regs, off, val & mask);
		return 0;
	}
	case APIC_LVTT: {
		uint32_t mask = LVT_MASK | APIC_LVT_TIMER_MODE, old = reg_get(regs, APIC_LVTT);

		/* TSC-deadline only if the guest's CPUID offers it (1:ECX[24]). */
		if (!kvm_guest_cpuid_has(v, 1, 0, 2, 24))
			mask &= ~APIC_LVT_TIMER_TSCDEADLINE;
		if (!(reg_get(regs, APIC_SPIV) & APIC_SPIV_ENABLED))
			val |= APIC_LVT_MASKED;
		val &= mask;
		/* A mode change stops the timer. */
		if ((old ^ val) & APIC_LVT_TIMER_MODE) {
			reg_set(regs, APIC_TMICT, 0);
			v->arch.lapic_timer_first_ns = 0;
		}
		reg_set(regs, APIC_LVTT, val);
		return 0;
	}
	case APIC_TMICT:
		if (timer_tscdeadline(regs))
			return 0; /* ignored in TSC-deadline mode */
		reg_set(regs, APIC_TMICT, val);
		lapic_timer_start(v, val);
		return 0;
	case APIC_TDCR: {
		uint32_t left = lapic_tmcct(v);
		unsigned old_div = divide_count(regs);

		reg_set(regs, APIC_TDCR, val & 0xb);
		/* A running count goes on at the new rate from where it is. */
		if (divide_count(regs) != old_div && v->arch.lapic_timer_first_ns && left)
			lapic_timer_start(v, left);
		return 0;
	}
	case APIC_ESR:
		if (x2 && val)
			return 1;
		reg_set(regs, APIC_ESR, 0);
		return 0;
	case APIC_SELF_IPI:
		if (!x2)
			return 1;
		kvm_apic_send_ipi(v, (val & 0xff) | (1U << 18), 0);
		return 0;
	default:
		return 1;
	}
}

void kvm_lapic_timer_check(struct kvm_vcpu *v)
{
	const uint8_t *regs = v->arch.lapic_regs;
	uint64_t first, elapsed, period;
	uint32_t lvtt;

	if (!regs || !(first = v->arch.lapic_timer_first_ns))
		return;
	lvtt = reg_get(regs, APIC_LVTT);
	if (((lvtt & APIC_LVT_TIMER_MODE) >> 17) > 1)
		return; /* TSC-deadline: msr.c */
	elapsed = now_ns() - v->arch.lapic_timer_start_ns;
	if (elapsed < first)
		return;
	period = (uint64_t)reg_get(regs, APIC_TMICT) * count_ns(v, regs);
	if (!(lvtt & APIC_LVT_TIMER_MODE) || !period) {
		v->arch.lapic_timer_first_ns = 0; /* one-shot: expired, TMCCT reads 0 */
	} else {
		/* Periodic: the current period starts at the last expiry. */
		v->arch.lapic_timer_start_ns += first + (elapsed - first) / period * period;
		v->arch.lapic_timer_first_ns = period;
	}
	if (!(lvtt & APIC_LVT_MASKED) && (reg_get(regs, APIC_SPIV) & APIC_SPIV_ENABLED))
		kvm_apic_send_ipi(v, (lvtt & 0xff) | (1U << 18), 0); /* to itself */
}

bool kvm_lapic_mmio(struct kvm_vcpu *v, uint64_t gpa, unsigned len, bool write, uint8_t *data)
{
	uint64_t base = v->sregs.apic_base & ~0xfffULL;
	unsigned off = (unsigned)(gpa - base);
	uint32_t val = 0;

	/* apic_mmio_in_range(): only a hardware-enabled in-kernel LAPIC. */
	if (!v->arch.lapic_regs || !(v->sregs.apic_base & APIC_BASE_ENABLE) || gpa < base ||
	    gpa - base >= APIC_DEFAULT_SIZE || len > 8)
		return false;
	if (x2apic_mode(v)) {
		/* The page is gone in x2APIC mode: reads all ones, writes dropped. */
		if (!write)
			memset(data, 0xff, len);
		return true;
	}
	if (write) {
		/* Only aligned 32-bit writes reach a register. */
		if (len == 4 && !(off & 0xf)) {
			memcpy(&val, data, 4);
			(void)lapic_reg_write(v, off, val);
		}
		return true;
	}
	memset(data, 0, len);
	/* A read within one 32-bit register, at any byte of it. */
	if ((off & 0xf) + len <= 4 && !lapic_reg_read(v, off & ~0xfU, &val)) {
		val >>= 8 * (off & 0xf);
		memcpy(data, &val, len);
	}
	return true;
}

int kvm_x2apic_msr(struct kvm_vcpu *v, uint32_t index, bool write, uint64_t *data)
{
	unsigned off = (index - MSR_X2APIC_FIRST) << 4;
	uint8_t *regs = v->arch.lapic_regs;
	uint32_t lo;

	if (!regs || !x2apic_mode(v) || index < MSR_X2APIC_FIRST || index > MSR_X2APIC_LAST)
		return 1;
	if (off == APIC_ICR) {
		/* One 64-bit register: the destination in the high half. */
		if (!write) {
			*data = reg_get(regs, APIC_ICR) | (uint64_t)reg_get(regs, APIC_ICR2) << 32;
			return 0;
		}
		if (*data & X2APIC_ICR_RESERVED)
			return 1;
		lo = (uint32_t)*data & ~APIC_ICR_BUSY;
		kvm_apic_send_ipi(v, lo, (uint32_t)(*data >> 32));
		reg_set(regs, APIC_ICR, lo);
		reg_set(regs, APIC_ICR2, (uint32_t)(*data >> 32));
		return 0;
	}
	if (!write) {
		if (lapic_reg_read(v, off, &lo))
			return 1;
		*data = lo;
		return 0;
	}
	/* Bits 63:32 are reserved in every other register. */
	if (*data >> 32)
		return 1;
	return lapic_reg_write(v, off, (uint32_t)*data);
}

void kvm_lapic_set_base(struct kvm_vcpu *v, uint64_t old)
{
	uint8_t *regs = v->arch.lapic_regs;
	uint32_t id = v->vcpu_id;

	if (!regs || old == v->sregs.apic_base)
		return;
	WRITE_ONCE(v->arch.lapic_x2apic, x2apic_mode(v));
	if (x2apic_mode(v)) {
		/* Entering x2APIC: the ID is the vCPU id, the LDR derived from it. */
		if (!(old & APIC_BASE_EXTD)) {
			reg_set(regs, APIC_ID, id);
			reg_set(regs, APIC_LDR, ((id >> 4) << 16) | (1U << (id & 0xf)));
		}
	} else if ((old & APIC_BASE_EXTD) || !(old & APIC_BASE_ENABLE)) {
		/* Back to xAPIC, or enabled again: the reset ID (KVM's ABI). */
		if (v->sregs.apic_base & APIC_BASE_ENABLE)
			reg_set(regs, APIC_ID, id << 24);
	}
}
