/* SPDX-License-Identifier: MIT */
/*
 * KVM_GET_SUPPORTED_CPUID, KVM_GET_MSR_INDEX_LIST and the vCPU MSR store.
 *
 * The supported CPUID is the host's (what KVM starts from), with the
 * hypervisor bit set and KVM's paravirtual leaves 0x40000000/1 added; leaves
 * with subleaves are listed per subleaf with KVM_CPUID_FLAG_SIGNIFCANT_INDEX.
 * The MSR list is the usual set a VMM saves and restores.  There is no CPU
 * behind either: they exist so that VMMs that ask, as every real one does
 * at start-up, get plausible answers through the kernel's protocol.
 */
#include <cpuid.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"

#define CPUID_MAX_BASIC 0xd
#define CPUID_MAX_EXT 0x80000008
#define KVM_CPUID_SIGNATURE 0x40000000
#define KVM_CPUID_FEATURES 0x40000001

struct cpuid_buf {
	struct kvm_cpuid_entry2 *e;
	uint32_t n, max;
};

static int cpuid_add(struct cpuid_buf *b, uint32_t fn, uint32_t idx, bool indexed)
{
	struct kvm_cpuid_entry2 *e;

	if (b->n == b->max)
		return -E2BIG;
	e = &b->e[b->n++];
	memset(e, 0, sizeof(*e));
	e->function = fn;
	e->index = indexed ? idx : 0;
	e->flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
	__cpuid_count(fn, idx, e->eax, e->ebx, e->ecx, e->edx);
	return 0;
}

/* Subleaves of leaf @fn: 4 until type 0, 7 up to its EAX, 0xb two, 0xd 0-63 present. */
static int cpuid_add_indexed(struct cpuid_buf *b, uint32_t fn)
{
	uint32_t a, bx, c, d, n = 1;
	int r = 0;

	if (fn == 7) {
		__cpuid_count(7, 0, a, bx, c, d);
		n = GM_MIN(a, 2U) + 1;
	} else if (fn == 0xb) {
		n = 2;
	}
	for (uint32_t i = 0; !r && i < (fn == 4 || fn == 0xd ? 64 : n); i++) {
		__cpuid_count(fn, i, a, bx, c, d);
		if (fn == 4 && (a & 0x1f) == 0)
			break;
		if (fn == 0xd && i > 1 && !a)
			continue; /* state component not supported */
		r = cpuid_add(b, fn, i, true);
	}
	return r;
}

static int cpuid_basic(struct cpuid_buf *b)
{
	uint32_t max = GM_MIN(__get_cpuid_max(0, NULL), (unsigned)CPUID_MAX_BASIC);
	int r = 0;

	for (uint32_t fn = 0; !r && fn <= max; fn++) {
		if (fn == 4 || fn == 7 || fn == 0xb || fn == 0xd) {
			r = cpuid_add_indexed(b, fn);
			continue;
		}
		r = cpuid_add(b, fn, 0, false);
		if (r)
			break;
		if (fn == 0)
			b->e[b->n - 1].eax = max;
		if (fn == 1)
			b->e[b->n - 1].ecx |= 1U << 31; /* running under a hypervisor */
	}
	return r;
}

static int cpuid_kvm_leaves(struct cpuid_buf *b)
{
	/* CLOCKSOURCE, NOP_IO_DELAY, CLOCKSOURCE2, ASYNC_PF, STEAL_TIME, PV_EOI,
	 * PV_UNHALT, PV_TLB_FLUSH .. MIGRATION_CONTROL, CLOCKSOURCE_STABLE. */
	const uint32_t features = 0x3fffbU | (1U << 24);
	struct kvm_cpuid_entry2 *e;

	if (b->n + 2 > b->max)
		return -E2BIG;
	e = &b->e[b->n++];
	*e = (struct kvm_cpuid_entry2){ .function = KVM_CPUID_SIGNATURE,
					.eax = KVM_CPUID_FEATURES };
	memcpy(&e->ebx, "KVMKVMKVM\0\0\0", 12);
	e = &b->e[b->n++];
	*e = (struct kvm_cpuid_entry2){ .function = KVM_CPUID_FEATURES, .eax = features };
	return 0;
}

static int cpuid_extended(struct cpuid_buf *b)
{
	uint32_t max = GM_MIN(__get_cpuid_max(0x80000000, NULL), (unsigned)CPUID_MAX_EXT);
	int r = 0;

	for (uint32_t fn = 0x80000000; !r && fn <= max; fn++) {
		r = cpuid_add(b, fn, 0, false);
		if (!r && fn == 0x80000000)
			b->e[b->n - 1].eax = max;
	}
	return r;
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

/* ---- MSRs ------------------------------------------------------------------ */

#define MSR_IA32_APICBASE 0x1b
#define MSR_EFER 0xc0000080

static const uint32_t msr_list[] = {
	0x10,	    /* TSC */
	0x1b,	    /* APICBASE */
	0x3b,	    /* TSC_ADJUST */
	0x48,	    /* SPEC_CTRL */
	0x174, 0x175, 0x176, /* SYSENTER_CS/ESP/EIP */
	0x17a, 0x17b, /* MCG_STATUS, MCG_CTL */
	0x1a0,	    /* MISC_ENABLE */
	0x277,	    /* PAT */
	0x4d0,	    /* MCG_EXT_CTL */
	0x6e0,	    /* TSC_DEADLINE */
	0xda0,	    /* XSS */
	0xc0000080, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* EFER..FMASK */
	0xc0000100, 0xc0000101, 0xc0000102, 0xc0000103, /* FS/GS/KERNEL_GS, TSC_AUX */
	0x11, 0x12, /* kvm-clock (old) */
	0x4b564d00, 0x4b564d01, 0x4b564d02, 0x4b564d03, 0x4b564d04, /* kvm-clock .. pv eoi */
	0x4b564d05, 0x4b564d06, 0x4b564d07, 0x4b564d08, /* poll control .. migration */
};

const uint32_t *kvm_msr_index_list(uint32_t *n)
{
	*n = ARRAY_SIZE(msr_list);
	return msr_list;
}

static uint64_t msr_reset_value(struct kvm_vcpu *v, uint32_t index)
{
	switch (index) {
	case MSR_IA32_APICBASE:
		return v->sregs.apic_base;
	case MSR_EFER:
		return v->sregs.efer;
	case 0x277:
		return 0x0007040600070406ULL; /* PAT power-on value */
	case 0x1a0:
		return 1; /* MISC_ENABLE: fast strings */
	default:
		return 0;
	}
}

static struct kvm_msr_entry *msr_find(struct kvm_vcpu *v, uint32_t index)
{
	for (uint32_t i = 0; i < v->nr_msrs; i++)
		if (v->msrs[i].index == index)
			return &v->msrs[i];
	return NULL;
}

static int msr_set(struct kvm_vcpu *v, uint32_t index, uint64_t data)
{
	struct kvm_msr_entry *m = msr_find(v, index);

	if (index == MSR_IA32_APICBASE)
		v->sregs.apic_base = data;
	else if (index == MSR_EFER)
		v->sregs.efer = data;
	if (!m) {
		struct kvm_msr_entry *n = realloc(v->msrs, (v->nr_msrs + 1) * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->msrs = n;
		m = &v->msrs[v->nr_msrs++];
		m->index = index;
	}
	m->data = data;
	return 0;
}

int kvm_vcpu_msrs(struct kvm_vcpu *v, struct kvm_msr_entry *e, uint32_t n, bool set)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		struct kvm_msr_entry *m;

		if (set) {
			if (msr_set(v, e[i].index, e[i].data))
				break; /* processed so far */
			continue;
		}
		m = msr_find(v, e[i].index);
		if (e[i].index == MSR_IA32_APICBASE || e[i].index == MSR_EFER || !m)
			e[i].data = msr_reset_value(v, e[i].index);
		else
			e[i].data = m->data;
	}
	return (int)i;
}
