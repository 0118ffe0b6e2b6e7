/* SPDX-License-Identifier: MIT */
/*
 * KVM_GET_SUPPORTED_CPUID: the virtual CPU model, and the host's XSAVE
 * facts it rests on.
 *
 * The model is what a backend that runs guest code natively on this host
 * can honour: the host's CPUID bits filtered through Linux 6.12's
 * kvm_set_cpu_caps() masks (the bits KVM ever offers), then minus what
 * guestmem cannot virtualise:
 *  - VMX and SVM (no nesting), SGX, SMX;
 *  - the PMU: no PDCM, leaf 0xA all zero (KVM with enable_pmu=0), no AMD
 *    core/NB/LLC counter extensions;
 *  - features whose state lives in MSRs guestmem does not model or whose
 *    instructions would run natively with the host's values: MTRR, OSVW,
 *    RDTSCP and RDPID (TSC_AUX would be the host's), UMIP (SIDT and
 *    friends run natively, see the facts file), PKU, LA57, LAM, WAITPKG,
 *    bus-lock detection, the SPEC_CTRL family, XSAVES and XFD (supervisor
 *    and XFD state), AMX, AVX10, TOPOEXT (no leaf 0x8000001e here).
 * KVM's own additions stay: x2APIC (emulated), TSC_ADJUST and
 * ARCH_CAPABILITIES (emulated MSRs), the hypervisor bit, and the KVM leaves
 * 0x40000000 ("KVMKVMKVM") and 0x40000001 with the paravirtual features
 * guestmem implements: NOP_IO_DELAY (a hint), HC_MAP_GPA_RANGE (the
 * hypercall of KVM_CAP_EXIT_HYPERCALL) and STEAL_TIME (kvm_pv.c; as KVM,
 * only when the host keeps scheduling delays).  No kvmclock, async PF or
 * PV EOI: nothing implements them yet.
 *
 * Leaves: 0 .. min(host, 0xd) with their subleaves, the KVM leaves, then
 * 0x80000000 .. min(host, 0x80000008).  Subleaf-indexed leaves carry
 * KVM_CPUID_FLAG_SIGNIFCANT_INDEX.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/host_cpuid.h"
#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"

#define BIT32(n) (1U << (n))
#define CPUID_MAX_BASIC 0xd
#define CPUID_MAX_EXT 0x80000008
#define KVM_CPUID_SIGNATURE 0x40000000
#define KVM_CPUID_FEATURES 0x40000001
#define KVM_FEATURE_NOP_IO_DELAY 1
#define KVM_FEATURE_HC_MAP_GPA_RANGE 16

/* Leaf 1 ECX: SSE3 PCLMULQDQ SSSE3 FMA CX16 PCID SSE4.1 SSE4.2 MOVBE POPCNT
 * AES XSAVE AVX F16C RDRAND (6.12's mask minus PDCM; x2APIC set below). */
#define MASK_1_ECX                                                                 \
	(BIT32(0) | BIT32(1) | BIT32(9) | BIT32(12) | BIT32(13) | BIT32(17) |      \
	 BIT32(19) | BIT32(20) | BIT32(22) | BIT32(23) | BIT32(25) | BIT32(26) |   \
	 BIT32(28) | BIT32(29) | BIT32(30))
#define CPUID_1_ECX_X2APIC BIT32(21)
#define CPUID_1_ECX_HYPERVISOR BIT32(31)
/* Leaf 1 EDX: 6.12's mask minus MTRR. */
#define MASK_1_EDX                                                                 \
	((0x3ffU & ~BIT32(10)) /* FPU..APIC */ | BIT32(11) | BIT32(13) | BIT32(14) | \
	 BIT32(15) | BIT32(16) | BIT32(17) | BIT32(19) | BIT32(23) | BIT32(24) |   \
	 BIT32(25) | BIT32(26) | BIT32(27))
/* Leaf 7.0 EBX: FSGSBASE BMI1 HLE AVX2 FDP_EXCPTN_ONLY SMEP BMI2 ERMS
 * INVPCID RTM ZERO_FCS_FDS AVX512F/DQ RDSEED ADX SMAP AVX512IFMA CLFLUSHOPT
 * CLWB AVX512PF/ER/CD SHA AVX512BW/VL (6.12's mask minus SGX). */
#define MASK_7_EBX                                                                 \
	(BIT32(0) | BIT32(3) | BIT32(4) | BIT32(5) | BIT32(6) | BIT32(7) |         \
	 BIT32(8) | BIT32(9) | BIT32(10) | BIT32(11) | BIT32(13) | BIT32(16) |     \
	 BIT32(17) | BIT32(18) | BIT32(19) | BIT32(20) | BIT32(21) | BIT32(23) |   \
	 BIT32(24) | BIT32(26) | BIT32(27) | BIT32(28) | BIT32(29) | BIT32(30) |   \
	 BIT32(31))
#define CPUID_7_EBX_TSC_ADJUST BIT32(1)
/* Leaf 7.0 ECX: AVX512VBMI VBMI2 GFNI VAES VPCLMULQDQ VNNI BITALG
 * VPOPCNTDQ CLDEMOTE MOVDIRI MOVDIR64B. */
#define MASK_7_ECX                                                                 \
	(BIT32(1) | BIT32(6) | BIT32(8) | BIT32(9) | BIT32(10) | BIT32(11) |       \
	 BIT32(12) | BIT32(14) | BIT32(25) | BIT32(27) | BIT32(28))
/* Leaf 7.0 EDX: AVX512_4VNNIW/4FMAPS FSRM VP2INTERSECT MD_CLEAR SERIALIZE
 * TSXLDTRK AVX512_FP16. */
#define MASK_7_EDX                                                                 \
	(BIT32(2) | BIT32(3) | BIT32(4) | BIT32(8) | BIT32(10) | BIT32(14) |       \
	 BIT32(16) | BIT32(23))
#define CPUID_7_EDX_ARCH_CAPABILITIES BIT32(29)
/* Leaf 7.1 EAX: AVX_VNNI AVX512_BF16 CMPCCXADD FZRM FSRS FSRC AVX_IFMA. */
#define MASK_7_1_EAX                                                               \
	(BIT32(4) | BIT32(5) | BIT32(7) | BIT32(10) | BIT32(11) | BIT32(12) |      \
	 BIT32(23))
/* Leaf 7.1 EDX: AVX_VNNI_INT8 AVX_NE_CONVERT PREFETCHITI. */
#define MASK_7_1_EDX (BIT32(4) | BIT32(5) | BIT32(14))
/* Leaf 0xD.1 EAX: XSAVEOPT XSAVEC XGETBV1. */
#define MASK_D_1_EAX (BIT32(0) | BIT32(1) | BIT32(2))
/* 0x80000001 ECX: LAHF_LM CMP_LEGACY CR8_LEGACY ABM SSE4A MISALIGNSSE
 * 3DNOWPREFETCH XOP FMA4 TBM. */
#define MASK_81_ECX                                                                \
	(BIT32(0) | BIT32(1) | BIT32(4) | BIT32(5) | BIT32(6) | BIT32(7) |         \
	 BIT32(8) | BIT32(11) | BIT32(16) | BIT32(21))
/* 0x80000001 EDX: 6.12's mask minus MTRR and RDTSCP. */
#define MASK_81_EDX                                                                \
	((0x3ffU & ~BIT32(10)) | BIT32(11) | BIT32(13) | BIT32(14) | BIT32(15) |     \
	 BIT32(16) | BIT32(17) | BIT32(20) | BIT32(22) | BIT32(23) | BIT32(24) |   \
	 BIT32(25) | BIT32(26) | BIT32(29) | BIT32(30) | BIT32(31))
/* 0x80000007 EDX: invariant TSC. */
#define MASK_87_EDX BIT32(8)
/* 0x80000008 EBX: CLZERO XSAVEERPTR WBNOINVD AMD_IBPB AMD_SSB_NO. */
#define MASK_88_EBX (BIT32(0) | BIT32(2) | BIT32(9) | BIT32(12) | BIT32(26))

/* XCR0 components KVM offers and guestmem can run: x87, SSE, AVX, AVX-512. */
#define XFEATURE_MASK_GUEST 0xe7ULL

/* ---- host XSAVE facts -------------------------------------------------------- */

static uint64_t host_xcr0(void)
{
	uint32_t a, b, c, d;

	gm_host_cpuid_regs(1, 0, a, b, c, d);
	if (!(c & BIT32(27))) /* OSXSAVE: XGETBV works */
		return 0;
	__asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0));
	return ((uint64_t)d << 32) | a;
}

uint64_t kvm_supported_xcr0(void)
{
	return host_xcr0() & XFEATURE_MASK_GUEST;
}

void kvm_xstate_component(int i, uint32_t *offset, uint32_t *size)
{
	uint32_t a, b, c, d;

	if (i < 2) { /* the legacy region */
		*offset = i ? 160 : 0;
		*size = i ? 256 : 160;
		return;
	}
	gm_host_cpuid_regs(0xd, i, a, b, c, d);
	*size = a;
	*offset = b;
}

uint32_t kvm_xstate_required_size(uint64_t xcr0)
{
	uint32_t ret = 512 + 64; /* legacy region + XSAVE header */

	for (int i = 2; i < 64; i++) {
		uint32_t off, size;

		if (!(xcr0 & (1ULL << i)))
			continue;
		kvm_xstate_component(i, &off, &size);
		ret = GM_MAX(ret, off + size);
	}
	return ret;
}

bool kvm_arch_has_xsave(void)
{
	uint32_t a, b, c, d;

	gm_host_cpuid_regs(1, 0, a, b, c, d);
	return c & BIT32(26);
}

long kvm_arch_xsave2_size(void)
{
	return GM_MAX((long)kvm_xstate_required_size(kvm_supported_xcr0()),
		      (long)KVM_XSAVE_UABI_SIZE);
}

uint32_t kvm_mxcsr_feature_mask(void)
{
	static _Alignas(64) uint8_t area[512];
	uint32_t mask;

	__builtin_ia32_fxsave64(area);
	memcpy(&mask, area + 28, 4); /* MXCSR_MASK; 0 means the default 0xffbf */
	return mask ? mask : 0xffbf;
}

/* ---- the table ------------------------------------------------------------------ */

struct cpuid_buf {
	struct kvm_cpuid_entry2 *e;
	uint32_t n, max;
};

static struct kvm_cpuid_entry2 *cpuid_add(struct cpuid_buf *b, uint32_t fn, uint32_t idx,
					  bool indexed)
{
	struct kvm_cpuid_entry2 *e;

	if (b->n == b->max)
		return NULL;
	e = &b->e[b->n++];
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = indexed ? idx : 0;
	e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
	gm_host_cpuid_regs(fn, idx, e->eax, e->ebx, e->ecx, e->edx);
	return e;
}

/* Leaf 4: every cache level until type 0 (as KVM, the last one included). */
static int cpuid_leaf4(struct cpuid_buf *b)
{
	for (uint32_t i = 0;; i++) {
		struct kvm_cpuid_entry2 *e = cpuid_add(b, 4, i, true);

		if (!e)
			return -E2BIG;
		if (!(e->eax & 0x1f) || i == 63)
			return 0;
	}
}

static int cpuid_leaf7(struct cpuid_buf *b)
{
	struct kvm_cpuid_entry2 *e = cpuid_add(b, 7, 0, true);
	uint32_t max;

	if (!e)
		return -E2BIG;
	max = e->eax = GM_MIN(e->eax, 1U);
	e->ebx = (e->ebx & MASK_7_EBX) | CPUID_7_EBX_TSC_ADJUST;
	e->ecx &= MASK_7_ECX;
	e->edx = (e->edx & MASK_7_EDX) | CPUID_7_EDX_ARCH_CAPABILITIES;
	if (max < 1)
		return 0;
	e = cpuid_add(b, 7, 1, true);
	if (!e)
		return -E2BIG;
	e->eax &= MASK_7_1_EAX;
	e->edx &= MASK_7_1_EDX;
	e->ebx = e->ecx = 0;
	return 0;
}

static int cpuid_leafd(struct cpuid_buf *b)
{
	uint64_t xcr0 = kvm_supported_xcr0();
	struct kvm_cpuid_entry2 *e = cpuid_add(b, 0xd, 0, true);

	if (!e)
		return -E2BIG;
	e->eax = (uint32_t)xcr0;
	e->edx = (uint32_t)(xcr0 >> 32);
	e->ebx = e->ecx = kvm_xstate_required_size(xcr0);
	if (!xcr0)
		return 0;
	e = cpuid_add(b, 0xd, 1, true);
	if (!e)
		return -E2BIG;
	e->eax &= MASK_D_1_EAX;
	/* XSAVEC's compacted size of XCR0 (no supervisor state offered). */
	e->ebx = 0;
	if (e->eax & BIT32(1)) {
		uint32_t size = 576;

		for (int i = 2; i < 64; i++) {
			uint32_t off, sz, a, bx, c, d;

			if (!(xcr0 & (1ULL << i)))
				continue;
			gm_host_cpuid_regs(0xd, i, a, bx, c, d);
			(void)a, (void)bx, (void)d;
			kvm_xstate_component(i, &off, &sz);
			if (c & 2) /* 64-byte aligned in the compacted form */
				size = (size + 63) & ~63U;
			size += sz;
		}
		e->ebx = size;
	}
	e->ecx = e->edx = 0;
	for (int i = 2; i < 64; i++) {
		if (!(xcr0 & (1ULL << i)))
			continue;
		e = cpuid_add(b, 0xd, (uint32_t)i, true);
		if (!e)
			return -E2BIG;
		e->ecx &= ~BIT32(2); /* no XFD */
		e->edx = 0;
	}
	return 0;
}

/* One basic leaf without subleaves, filtered. */
static int cpuid_basic_leaf(struct cpuid_buf *b, uint32_t fn, uint32_t max)
{
	struct kvm_cpuid_entry2 *e = cpuid_add(b, fn, 0, false);

	if (!e)
		return -E2BIG;
	switch (fn) {
	case 0:
		e->eax = max;
		/* The vendor guestmem presents (lib/host_cpuid.h). */
		if (gm_cpu_vendor() != gm_host_vendor())
			gm_vendor_regs(gm_cpu_vendor(), &e->ebx, &e->edx, &e->ecx);
		break;
	case 1:
		e->ecx = (e->ecx & MASK_1_ECX) | CPUID_1_ECX_X2APIC | CPUID_1_ECX_HYPERVISOR;
		e->edx &= MASK_1_EDX;
		break;
	case 5: /* MONITOR/MWAIT: not offered */
	case 0xa: /* no PMU */
		e->eax = e->ebx = e->ecx = e->edx = 0;
		break;
	case 6:
		e->eax = 0x4; /* ARAT only, as KVM */
		e->ebx = e->ecx = e->edx = 0;
		break;
	}
	return 0;
}

static int cpuid_basic(struct cpuid_buf *b)
{
	uint32_t max = GM_MIN(gm_host_cpuid_max(0), (unsigned)CPUID_MAX_BASIC);
	int r = 0;

	for (uint32_t fn = 0; !r && fn <= max; fn++) {
		switch (fn) {
		case 4:
			r = cpuid_leaf4(b);
			break;
		case 7:
			r = cpuid_leaf7(b);
			break;
		case 0xb: /* topology: KVM zeroes EAX..ECX of both levels */
			for (uint32_t i = 0; !r && i < 2; i++) {
				struct kvm_cpuid_entry2 *e = cpuid_add(b, fn, i, true);

				if (!e)
					r = -E2BIG;
				else
					e->eax = e->ebx = e->ecx = 0;
			}
			break;
		case 0xd:
			r = cpuid_leafd(b);
			break;
		default:
			r = cpuid_basic_leaf(b, fn, max);
		}
	}
	return r;
}

static int cpuid_kvm_leaves(struct cpuid_buf *b)
{
	struct kvm_cpuid_entry2 *e;

	if (b->n + 2 > b->max)
		return -E2BIG;
	e = &b->e[b->n++];
	*e = (struct kvm_cpuid_entry2){ .function = KVM_CPUID_SIGNATURE,
					.eax = KVM_CPUID_FEATURES };
	memcpy(&e->ebx, "KVMKVMKVM\0\0\0", 12);
	e = &b->e[b->n++];
	*e = (struct kvm_cpuid_entry2){
		.function = KVM_CPUID_FEATURES,
		.eax = BIT32(KVM_FEATURE_NOP_IO_DELAY) | BIT32(KVM_FEATURE_HC_MAP_GPA_RANGE),
	};
	if (kvm_sched_info_on())
		e->eax |= BIT32(KVM_FEATURE_STEAL_TIME);
	return 0;
}

static void cpuid_ext_filter(struct kvm_cpuid_entry2 *e, uint32_t max)
{
	switch (e->function) {
	case 0x80000000:
		e->eax = max;
		/* AMD repeats the vendor here; Intel leaves it zero. */
		if (gm_cpu_vendor() == GM_VENDOR_INTEL && gm_host_vendor() != GM_VENDOR_INTEL)
			e->ebx = e->ecx = e->edx = 0;
		else if (gm_cpu_vendor() == GM_VENDOR_AMD && gm_host_vendor() != GM_VENDOR_AMD)
			gm_vendor_regs(GM_VENDOR_AMD, &e->ebx, &e->edx, &e->ecx);
		break;
	case 0x80000001:
		e->ebx &= ~0x0fff0000U; /* PkgType and reserved bits, as KVM */
		e->ecx &= MASK_81_ECX;
		e->edx &= MASK_81_EDX;
		break;
	case 0x80000006:
		e->edx &= ~0x30000U;
		break;
	case 0x80000007:
		e->edx &= MASK_87_EDX;
		e->eax = e->ebx = e->ecx = 0;
		break;
	case 0x80000008:
		/* Address sizes (no guest-physical override with TDP), then
		 * the feature bits; the core count stays, the rest goes. */
		e->eax &= 0xffff;
		e->ebx &= MASK_88_EBX;
		e->ecx &= ~(0xffff0000U | 0xf00U);
		e->edx = 0;
		break;
	}
}

static int cpuid_extended(struct cpuid_buf *b)
{
	uint32_t max = GM_MIN(gm_host_cpuid_max(0x80000000), (unsigned)CPUID_MAX_EXT);

	for (uint32_t fn = 0x80000000; fn <= max; fn++) {
		struct kvm_cpuid_entry2 *e = cpuid_add(b, fn, 0, false);

		if (!e)
			return -E2BIG;
		cpuid_ext_filter(e, max);
	}
	return 0;
}

int kvm_supported_cpuid(struct kvm_cpuid_entry2 *e, uint32_t max)
{
	struct cpuid_buf b = { e, 0, max };
	int r = cpuid_basic(&b);

	if (!r)
		r = cpuid_kvm_leaves(&b);
	if (!r)
		r = cpuid_extended(&b);
	return r ? r : (int)b.n;
}

/* ---- the model as a lookup (KVM's kvm_cpu_cap_has) -------------------------------- */

static struct kvm_cpuid_entry2 cap_table[KVM_MAX_CPUID_ENTRIES];
static int cap_nent;
static pthread_once_t cap_once = PTHREAD_ONCE_INIT;

static void cap_table_init(void)
{
	int n = kvm_supported_cpuid(cap_table, KVM_MAX_CPUID_ENTRIES);

	cap_nent = n < 0 ? 0 : n;
}

bool kvm_cpu_cap_has(uint32_t fn, uint32_t idx, int reg, int bit)
{
	gm_check_pthread(pthread_once(&cap_once, cap_table_init));
	for (int i = 0; i < cap_nent; i++) {
		const struct kvm_cpuid_entry2 *e = &cap_table[i];
		uint32_t r[4] = { e->eax, e->ebx, e->ecx, e->edx };

		if (e->function == fn && e->index == idx)
			return r[reg] & (1U << bit);
	}
	return false;
}
