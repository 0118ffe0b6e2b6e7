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
 * The page is the LAPIC's architectural state for real guest code; the
 * C-guest interrupt model (irqchip.c) keeps its own pending/in-service sets
 * of pin numbers, which are not vectors and do not appear here.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "vcpu/irqchip.h"
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
	reg_set(regs, APIC_SPIV, 0xff);
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

/* PPR from TPR and the highest vector in service (apic_update_ppr()). */
static void lapic_update_ppr(uint8_t *regs)
{
	uint32_t tpr = reg_get(regs, APIC_TASKPRI), isrv = 0;

	for (int i = 7; i >= 0 && !isrv; i--) {
		uint32_t w = reg_get(regs, APIC_ISR + 0x10 * (unsigned)i);

		if (w)
			isrv = (uint32_t)i * 32 + 31 - (uint32_t)__builtin_clz(w);
	}
	reg_set(regs, APIC_PROCPRI, (tpr & 0xf0) >= (isrv & 0xf0) ? tpr & 0xff : isrv & 0xf0);
}

int kvm_vcpu_get_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s)
{
	if (!v->arch.lapic_regs)
		return -EINVAL;
	memcpy(s->regs, v->arch.lapic_regs, KVM_LAPIC_REGS_SIZE);
	reg_set((uint8_t *)s->regs, APIC_LVR, lapic_version(v));
	reg_set((uint8_t *)s->regs, APIC_TMCCT, lapic_tmcct(v));
	if (x2apic_mode(v))
		reg_set((uint8_t *)s->regs, APIC_ID, v->vcpu_id << 24);
	return 0;
}

int kvm_vcpu_set_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s)
{
	uint8_t *regs = (uint8_t *)s->regs;
	uint32_t id = v->vcpu_id;

	if (!v->arch.lapic_regs)
		return -EINVAL;
	if (x2apic_mode(v)) {
		/* The x2APIC ID is read-only; the LDR follows from it. */
		reg_set(regs, APIC_ID, id);
		reg_set(regs, APIC_LDR, ((id >> 4) << 16) | (1U << (id & 0xf)));
	}
	memcpy(v->arch.lapic_regs, regs, KVM_LAPIC_REGS_SIZE);
	regs = v->arch.lapic_regs;
	reg_set(regs, APIC_LVR, lapic_version(v));
	lapic_update_ppr(regs);
	/* The restored current count starts the timer; the register reads 0. */
	v->arch.lapic_timer_first_ns = (uint64_t)reg_get(regs, APIC_TMCCT) * count_ns(v, regs);
	v->arch.lapic_timer_start_ns = now_ns();
	reg_set(regs, APIC_TMCCT, 0);
	return 0;
}
