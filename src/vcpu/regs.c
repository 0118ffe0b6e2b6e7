/* SPDX-License-Identifier: MIT */
/*
 * Register state ioctls (spec kvm-vcpu-eventfd-spec.md §6): KVM_GET/SET_REGS,
 * KVM_GET/SET_SREGS with x86's validity rules, KVM_SET_MP_STATE,
 * KVM_SET_CPUID2, KVM_SET_SIGNAL_MASK.
 *
 * There is no instruction set behind these registers: the guest is C code.
 * They are stored faithfully, validated as KVM validates them, and the
 * guest accessors use the general-purpose ones as the instructions they
 * stand for would (see guest.c).
 *
 * Context of everything here: vcpu->mutex held (so the guest is parked).
 */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"
#include "vcpu/x86.h"

#define X86_EFLAGS_FIXED 0x2ULL
#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)
#define X86_CR4_PAE (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define APIC_BASE_EXTD (1ULL << 10)
#define APIC_BASE_ENABLE (1ULL << 11)

#define X86_EFLAGS_TF (1ULL << 8)

uint64_t kvm_get_linear_rip(struct kvm_vcpu *v)
{
	if ((v->sregs.efer & EFER_LMA) && v->sregs.cs.l)
		return v->regs.rip;
	return (uint32_t)(v->sregs.cs.base + v->regs.rip);
}

/*
 * vcpu->regs.rflags is the value the guest runs with; while
 * KVM_GUESTDBG_SINGLESTEP is on it carries the debugger's TF, which KVM
 * hides from every reader and puts back only while RIP is still where the
 * step was armed (singlestep_rip): a VMM that moves RIP ends the stepping
 * until its next KVM_SET_GUEST_DEBUG, as in KVM.
 */
uint64_t kvm_get_rflags(struct kvm_vcpu *v)
{
	uint64_t rflags = v->regs.rflags;

	if (v->arch.guest_debug & KVM_GUESTDBG_SINGLESTEP)
		rflags &= ~X86_EFLAGS_TF;
	return rflags;
}

void kvm_set_rflags(struct kvm_vcpu *v, uint64_t rflags)
{
	if ((v->arch.guest_debug & KVM_GUESTDBG_SINGLESTEP) &&
	    kvm_get_linear_rip(v) == v->arch.singlestep_rip)
		rflags |= X86_EFLAGS_TF;
	v->regs.rflags = rflags;
}

void kvm_vcpu_get_regs(struct kvm_vcpu *vcpu, struct kvm_regs *regs)
{
	lockdep_assert_held(&vcpu->mutex);
	*regs = vcpu->regs;
	regs->rflags = kvm_get_rflags(vcpu);
}

void kvm_vcpu_set_regs(struct kvm_vcpu *vcpu, const struct kvm_regs *regs)
{
	lockdep_assert_held(&vcpu->mutex);
	vcpu->regs = *regs;
	kvm_set_rflags(vcpu, regs->rflags | X86_EFLAGS_FIXED); /* bit 1 always reads 1 */
}

void kvm_vcpu_get_sregs(struct kvm_vcpu *vcpu, struct kvm_sregs *sregs)
{
	lockdep_assert_held(&vcpu->mutex);
	*sregs = vcpu->sregs;
}

/* ---- guest CPUID -------------------------------------------------------- */

static const struct kvm_cpuid_entry2 *vcpu_cpuid(struct kvm_vcpu *v, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < v->cpuid_nent; i++) {
		const struct kvm_cpuid_entry2 *e = &v->cpuid[i];

		if (e->function == fn &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
			return e;
	}
	return NULL;
}

/* @reg: 0 eax, 1 ebx, 2 ecx, 3 edx. */
bool kvm_guest_cpuid_has(struct kvm_vcpu *v, uint32_t fn, uint32_t idx, int reg, int bit)
{
	const struct kvm_cpuid_entry2 *e = vcpu_cpuid(v, fn, idx);
	uint32_t r[4];

	if (!e)
		return false;
	r[0] = e->eax, r[1] = e->ebx, r[2] = e->ecx, r[3] = e->edx;
	return r[reg] & (1U << bit);
}

/* cpuid_get_supported_xcr0(): the guest's leaf 0xD.0 within what KVM offers; 0 without it. */
uint64_t kvm_guest_supported_xcr0(struct kvm_vcpu *v)
{
	const struct kvm_cpuid_entry2 *e = vcpu_cpuid(v, 0xd, 0);

	return e ? (e->eax | (uint64_t)e->edx << 32) & kvm_supported_xcr0() : 0;
}

/* "GenuineIntel" (or a vendor KVM treats as Intel-compatible: not AMD/Hygon). */
bool kvm_guest_cpuid_is_intel(struct kvm_vcpu *v)
{
	const struct kvm_cpuid_entry2 *e = vcpu_cpuid(v, 0, 0);

	if (!e)
		return true; /* KVM: no vendor leaf is not AMD-compatible */
	return !((e->ebx == 0x68747541 && e->ecx == 0x444d4163 && e->edx == 0x69746e65) ||
		 (e->ebx == 0x6f677948 && e->ecx == 0x656e6975 && e->edx == 0x6e65476e));
}

/* Guest MAXPHYADDR: CPUID 0x80000008 if the guest has it, else 36. */
int kvm_guest_maxphyaddr(struct kvm_vcpu *v)
{
	const struct kvm_cpuid_entry2 *e = vcpu_cpuid(v, 0x80000000, 0);

	if (e && e->eax >= 0x80000008 && (e = vcpu_cpuid(v, 0x80000008, 0)))
		return e->eax & 0xff;
	return 36;
}

static uint64_t reserved_gpa_bits(struct kvm_vcpu *v)
{
	return ~((1ULL << kvm_guest_maxphyaddr(v)) - 1);
}

/* ---- SET_SREGS validity (kvm_is_valid_sregs and friends) -------------- */

static bool valid_cr0(uint64_t cr0)
{
	if (cr0 >> 32)
		return false;
	if ((cr0 & X86_CR0_NW) && !(cr0 & X86_CR0_CD))
		return false;
	return !((cr0 & X86_CR0_PG) && !(cr0 & X86_CR0_PE));
}

/*
 * CR4 bits gated by a CPUID feature (__cr4_reserved_bits): reserved unless
 * the CPU model has the feature.  Leaf, subleaf, register, bit.
 */
static const struct {
	int cr4_bit;
	uint32_t fn, idx;
	int reg, bit;
} cr4_gated[] = {
	{ 18, 1, 0, 2, 26 },  /* OSXSAVE: XSAVE */
	{ 20, 7, 0, 1, 7 },   /* SMEP */
	{ 21, 7, 0, 1, 20 },  /* SMAP */
	{ 16, 7, 0, 1, 0 },   /* FSGSBASE */
	{ 22, 7, 0, 2, 3 },   /* PKE: PKU */
	{ 12, 7, 0, 2, 16 },  /* LA57 */
	{ 11, 7, 0, 2, 2 },   /* UMIP */
	{ 13, 1, 0, 2, 5 },   /* VMXE: VMX */
	{ 17, 1, 0, 2, 17 },  /* PCIDE: PCID */
	{ 28, 7, 1, 0, 26 },  /* LAM_SUP: LAM */
};

/*
 * CR4_RESERVED_BITS' complement: VME..OSXMMEXCPT (0-10) and the gated
 * bits.  CET (23) joins in 6.18 with shadow stacks, which guestmem's CPU
 * model never offers, so it is reserved in every profile.
 */
#define CR4_KNOWN_BITS (0x7ffULL | (1ULL << 11) | (1ULL << 12) | (1ULL << 13) | \
			(1ULL << 16) | (1ULL << 17) | (1ULL << 18) | (1ULL << 20) | \
			(1ULL << 21) | (1ULL << 22) | (1ULL << 28))

/* CR4 reserved by the CPU model (KVM's cr4_reserved_bits, from its caps). */
static uint64_t cr4_reserved_bits(void)
{
	uint64_t rsvd = ~CR4_KNOWN_BITS;

	for (size_t i = 0; i < ARRAY_SIZE(cr4_gated); i++)
		if (!kvm_cpu_cap_has(cr4_gated[i].fn, cr4_gated[i].idx, cr4_gated[i].reg,
				     cr4_gated[i].bit))
			rsvd |= 1ULL << cr4_gated[i].cr4_bit;
	return rsvd;
}

/*
 * The same from the guest's CPUID (cr4_guest_rsvd_bits): computed by
 * KVM_SET_CPUID2 only, so before it nothing is reserved this way.  That
 * order is 6.12's (and 6.8's): a VMM may set CR4 before its CPUID.
 */
static uint64_t cr4_guest_rsvd_bits(struct kvm_vcpu *v)
{
	uint64_t rsvd = 0;

	if (!v->arch.cpuid_set)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(cr4_gated); i++)
		if (!kvm_guest_cpuid_has(v, cr4_gated[i].fn, cr4_gated[i].idx, cr4_gated[i].reg,
					 cr4_gated[i].bit))
			rsvd |= 1ULL << cr4_gated[i].cr4_bit;
	return rsvd;
}

uint64_t kvm_vcpu_cr4_reserved(struct kvm_vcpu *v)
{
	return cr4_reserved_bits() | cr4_guest_rsvd_bits(v);
}

static bool valid_cr4(struct kvm_vcpu *v, uint64_t cr4)
{
	return !(cr4 & cr4_reserved_bits()) && !(cr4 & cr4_guest_rsvd_bits(v));
}

/*
 * kvm_valid_efer(), checked by KVM_SET_SREGS from 6.12 on: the host's
 * reserved bits, then each bit against the guest's CPUID.
 */
static bool valid_efer(struct kvm_vcpu *v, uint64_t efer)
{
	static const struct { uint64_t efer; uint32_t fn; int reg, bit; } gated[] = {
		{ 1ULL << 21, 0x80000021, 0, 8 },	       /* AUTOIBRS */
		{ 1ULL << 14, 0x80000001, 3, 25 },	       /* FFXSR: FXSR_OPT */
		{ 1ULL << 12, 0x80000001, 2, 2 },	       /* SVME: SVM */
		{ EFER_LME | EFER_LMA, 0x80000001, 3, 29 },   /* LM */
		{ 1ULL << 11, 0x80000001, 3, 20 },	       /* NX */
	};

	if (efer & kvm_efer_reserved_bits())
		return false;
	for (size_t i = 0; i < ARRAY_SIZE(gated); i++)
		if ((efer & gated[i].efer) &&
		    !kvm_guest_cpuid_has(v, gated[i].fn, 0, gated[i].reg, gated[i].bit))
			return false;
	return true;
}

/* kvm_is_valid_sregs(): mode, CR3, then CR4, CR0 and (6.12+) EFER. */
static bool valid_sregs(struct kvm_vcpu *v, const struct kvm_sregs *s)
{
	if ((s->efer & EFER_LME) && (s->cr0 & X86_CR0_PG)) {
		/* Long-mode paging needs PAE and LMA, and a CR3 the guest can hold. */
		if (!(s->cr4 & X86_CR4_PAE) || !(s->efer & EFER_LMA))
			return false;
		if (s->cr3 & reserved_gpa_bits(v))
			return false;
	} else if ((s->efer & EFER_LMA) || s->cs.l) {
		return false;
	}
	if (!valid_cr4(v, s->cr4) || !valid_cr0(s->cr0))
		return false;
	return v->kvm->cfg.profile < GM_PROFILE_LINUX_6_12 || valid_efer(v, s->efer);
}

/* kvm_set_apic_base as host-initiated: reserved bits and the mode only. */
bool kvm_valid_apic_base(struct kvm_vcpu *v, uint64_t base)
{
	uint64_t rsvd = reserved_gpa_bits(v) | 0x2ff;

	if (!kvm_guest_cpuid_has(v, 1, 0, 2, 21)) /* x2APIC */
		rsvd |= APIC_BASE_EXTD;
	if (base & rsvd)
		return false;
	/* x2APIC enabled without xAPIC enabled is not a mode. */
	return !((base & APIC_BASE_EXTD) && !(base & APIC_BASE_ENABLE));
}

int kvm_vcpu_set_sregs(struct kvm_vcpu *vcpu, const struct kvm_sregs *sregs)
{
	uint64_t old_base;

	lockdep_assert_held(&vcpu->mutex);
	if (!valid_sregs(vcpu, sregs) || !kvm_valid_apic_base(vcpu, sregs->apic_base))
		return -EINVAL;
	old_base = vcpu->sregs.apic_base;
	vcpu->sregs = *sregs;
	kvm_lapic_set_base(vcpu, old_base); /* the ID follows the mode */
	return 0;
}

/* ---- MP state, CPUID, signal mask ---------------------------------------- */

int kvm_vcpu_set_mp_state(struct kvm_vcpu *vcpu, uint32_t mp_state)
{
	lockdep_assert_held(&vcpu->mutex);
	switch (mp_state) {
	case KVM_MP_STATE_RUNNABLE:
		break;
	case KVM_MP_STATE_UNINITIALIZED:
	case KVM_MP_STATE_INIT_RECEIVED:
	case KVM_MP_STATE_HALTED:
	case KVM_MP_STATE_SIPI_RECEIVED:
	case KVM_MP_STATE_AP_RESET_HOLD:
		/* These need the in-kernel LAPIC (irqchip.h). */
		if (!irqchip_in_kernel(vcpu->kvm))
			return -EINVAL;
		/* A SIPI is latched: the vCPU reads as INIT_RECEIVED. */
		if (mp_state == KVM_MP_STATE_SIPI_RECEIVED)
			mp_state = KVM_MP_STATE_INIT_RECEIVED;
		break;
	default:
		return -EINVAL;
	}
	vcpu->mp_state = mp_state;
	return 0;
}

static bool cpuid_equal(struct kvm_vcpu *v, const struct kvm_cpuid_entry2 *e, uint32_t nent)
{
	if (nent != v->cpuid_nent)
		return false;
	for (uint32_t i = 0; i < nent; i++) {
		const struct kvm_cpuid_entry2 *a = &v->cpuid[i], *b = &e[i];

		if (a->function != b->function || a->index != b->index || a->flags != b->flags ||
		    a->eax != b->eax || a->ebx != b->ebx || a->ecx != b->ecx || a->edx != b->edx)
			return false;
	}
	return true;
}

int kvm_vcpu_set_cpuid(struct kvm_vcpu *vcpu, const struct kvm_cpuid_entry2 *e, uint32_t nent)
{
	struct kvm_cpuid_entry2 *copy = NULL;

	lockdep_assert_held(&vcpu->mutex);
	/* After the first run only the very same table is accepted. */
	if (vcpu->has_run)
		return cpuid_equal(vcpu, e, nent) ? 0 : -EINVAL;
	for (uint32_t i = 0; i < nent; i++) {
		uint32_t vaddr_bits = (e[i].eax >> 8) & 0xff;

		if (e[i].function == 0x80000008 && vaddr_bits != 0 && vaddr_bits != 48 &&
		    vaddr_bits != 57)
			return -EINVAL;
	}
	if (nent) {
		copy = malloc(nent * sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, e, nent * sizeof(*copy));
	}
	free(vcpu->cpuid);
	vcpu->cpuid = copy;
	vcpu->arch.cpuid_set = true; /* the guest's CR4 reserved bits apply now */
	vcpu->cpuid_nent = nent;
	kvm_pv_cpuid_fixup(vcpu);
	kvm_update_pv_runtime(vcpu);
	kvm_update_misc_enable_cpuid(vcpu);
	return 0;
}

int kvm_vcpu_set_sigmask(struct kvm_vcpu *vcpu, const void *set, uint32_t len)
{
	uint64_t k;

	lockdep_assert_held(&vcpu->mutex);
	if (!set) {
		vcpu->sigmask_active = false;
		return 0;
	}
	if (len != sizeof(k)) /* the kernel's sigset_t */
		return -EINVAL;
	memcpy(&k, set, sizeof(k));
	sigemptyset(&vcpu->sigmask);
	for (int sig = 1; sig <= 64; sig++)
		if ((k & (1ULL << (sig - 1))) && sig != SIGKILL && sig != SIGSTOP)
			sigaddset(&vcpu->sigmask, sig);
	vcpu->sigmask_active = true;
	return 0;
}
