/* SPDX-License-Identifier: MIT */
/*
 * MSRs through the VMM's eyes (Linux 6.12, arch/x86/kvm/x86.c and svm.c):
 * KVM_GET/SET_MSRS on a vCPU, KVM_GET_MSR_INDEX_LIST,
 * KVM_GET_MSR_FEATURE_INDEX_LIST and KVM_GET_MSRS on /dev/kvm, and
 * KVM_X86_SET_MSR_FILTER.
 *
 * Every access here is host-initiated, so the guest-only checks (CPUID
 * gates, read-only bits) are not applied; the value checks are:
 * EFER reserved bits, PAT entries, canonical addresses for the segment-base
 * and syscall MSRs (SYSENTER_ESP/EIP are made canonical instead, as KVM
 * does), APIC_BASE reserved bits and mode, the machine-check banks, the
 * TSC_AUX upper half for an Intel guest, the paravirtual MSRs' reserved
 * bits.  An MSR guestmem does not model fails as an MSR KVM does not know
 * fails: KVM_GET/SET_MSRS stop there and return how many were processed.
 * Reads of an advertised MSR that fails return 0 with success, writes of 0
 * to one succeed (kvm_do_msr_access's rule for host-initiated accesses).
 *
 * Modelled beyond KVM's checks: the kvm-clock MSRs are stored but no
 * pvclock page is written yet (the CPU model does not offer kvm-clock).
 * With KVM_CAP_ENFORCE_PV_FEATURE_CPUID a paravirtual MSR the guest's KVM
 * leaf lacks is unknown here too (kvm_pv.c), as in KVM.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "lib/cpuinfo.h"
#include "lib/host_cpuid.h"
#include "lib/rcu.h"
#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "vcpu/x86_run.h"
#include "lib/lockdep.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_APICBASE 0x1b
#define MSR_SMI_COUNT 0x34
#define MSR_IA32_TSC_ADJUST 0x3b
#define MSR_IA32_UCODE_REV 0x8b
#define MSR_IA32_SMBASE 0x9e
#define MSR_PLATFORM_INFO 0xce
#define MSR_IA32_ARCH_CAPABILITIES 0x10a
#define MSR_MISC_FEATURES_ENABLES 0x140
#define MSR_IA32_SYSENTER_CS 0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_IA32_MCG_CAP 0x179
#define MSR_IA32_MCG_STATUS 0x17a
#define MSR_IA32_MCG_CTL 0x17b
#define MSR_IA32_MISC_ENABLE 0x1a0
#define MSR_IA32_POWER_CTL 0x1fc
#define MSR_IA32_CR_PAT 0x277
#define MSR_IA32_MC0_CTL2 0x280
#define MSR_IA32_PERF_CAPABILITIES 0x345
#define MSR_IA32_MC0_CTL 0x400
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103
#define MSR_K7_HWCR 0xc0010015
#define MSR_AMD64_DE_CFG 0xc0011029
#define MSR_KVM_WALL_CLOCK 0x11
#define MSR_KVM_SYSTEM_TIME 0x12
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_STEAL_TIME 0x4b564d03
#define MSR_KVM_POLL_CONTROL 0x4b564d05

#define EFER_SCE (1ULL << 0)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)
#define EFER_NX (1ULL << 11)
#define EFER_FFXSR (1ULL << 14)
#define EFER_AUTOIBRS (1ULL << 21)
#define MISC_ENABLE_RESET ((1ULL << 11) | (1ULL << 12)) /* BTS, PEBS unavailable */
#define PAT_RESET 0x0007040600070406ULL
#ifndef KVM_STEAL_RESERVED_MASK
#define KVM_STEAL_RESERVED_MASK 0x3eULL
#endif

/* What KVM_GET_MSR_INDEX_LIST reports: msrs_to_save, then the emulated ones. */
static const uint32_t msr_list[] = {
	MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP, MSR_STAR,
	MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_SYSCALL_MASK, MSR_LSTAR, MSR_IA32_TSC,
	MSR_IA32_CR_PAT,
	MSR_KVM_SYSTEM_TIME, MSR_KVM_WALL_CLOCK, MSR_KVM_SYSTEM_TIME_NEW,
	MSR_KVM_WALL_CLOCK_NEW, MSR_KVM_STEAL_TIME, MSR_IA32_TSC_ADJUST,
	MSR_IA32_TSC_DEADLINE, MSR_IA32_ARCH_CAPABILITIES, MSR_IA32_PERF_CAPABILITIES,
	MSR_IA32_MISC_ENABLE, MSR_IA32_MCG_STATUS, MSR_IA32_MCG_CTL,
	MSR_SMI_COUNT, MSR_PLATFORM_INFO, MSR_MISC_FEATURES_ENABLES, MSR_IA32_POWER_CTL,
	MSR_IA32_UCODE_REV, MSR_K7_HWCR, MSR_KVM_POLL_CONTROL,
	MSR_IA32_SMBASE, /* last: only with CONFIG_KVM_SMM */
};

/* KVM_GET_MSR_FEATURE_INDEX_LIST on an AMD host (no VMX MSRs). */
static const uint32_t msr_feature_list[] = {
	MSR_AMD64_DE_CFG, MSR_IA32_UCODE_REV, MSR_IA32_ARCH_CAPABILITIES,
	MSR_IA32_PERF_CAPABILITIES,
};

const uint32_t *kvm_msr_index_list(uint32_t *n)
{
	*n = ARRAY_SIZE(msr_list) - (gm_config_get()->smm ? 0 : 1);
	return msr_list;
}

const uint32_t *kvm_msr_feature_index_list(uint32_t *n)
{
	*n = ARRAY_SIZE(msr_feature_list);
	return msr_feature_list;
}

static bool msr_advertised(uint32_t index)
{
	if (index == MSR_IA32_SMBASE)
		return gm_config_get()->smm;
	for (size_t i = 0; i < ARRAY_SIZE(msr_list); i++)
		if (msr_list[i] == index)
			return true;
	for (size_t i = 0; i < ARRAY_SIZE(msr_feature_list); i++)
		if (msr_feature_list[i] == index)
			return true;
	return false;
}

/* ---- host facts -------------------------------------------------------------- */

/* A line of /proc/cpuinfo with a space on each side, for word searches. */
static bool cpuinfo_field(const char *key, char *out, size_t size)
{
	char v[1000];

	if (!gm_cpuinfo_field(key, v, sizeof(v)))
		return false;
	snprintf(out, size, " %s ", v);
	return true;
}

static bool host_has_bug(const char *bugs, const char *name)
{
	char word[64];

	snprintf(word, sizeof(word), " %s ", name);
	return strstr(bugs, word) != NULL;
}

/*
 * kvm_get_arch_capabilities() on a host without the MSR (AMD): only the
 * bits KVM synthesises from the host's bug list.
 */
static uint64_t host_arch_capabilities(void)
{
	char bugs[1024] = " ";
	uint64_t v = (1ULL << 6) | (1ULL << 3); /* PSCHANGE_MC_NO, SKIP_VMENTRY_L1DFLUSH */

	cpuinfo_field("bugs", bugs, sizeof(bugs));
	if (!host_has_bug(bugs, "meltdown"))
		v |= 1ULL << 0; /* RDCL_NO */
	if (!host_has_bug(bugs, "spec_store_bypass"))
		v |= 1ULL << 4; /* SSB_NO */
	if (!host_has_bug(bugs, "mds"))
		v |= 1ULL << 5; /* MDS_NO */
	if (!host_has_bug(bugs, "rfds"))
		v |= 1ULL << 27; /* RFDS_NO */
	if (!host_has_bug(bugs, "its"))
		v |= 1ULL << 62; /* ITS_NO */
	if (!host_has_bug(bugs, "gds"))
		v |= 1ULL << 26; /* GDS_NO */
	return v; /* no RTM: TAA_NO stays clear */
}

static uint64_t host_ucode_rev(void)
{
	char buf[64];

	/* KVM reads the MSR; the kernel shows the same value here. */
	if (!cpuinfo_field("microcode", buf, sizeof(buf)))
		return 0;
	return strtoull(buf, NULL, 16) << 32; /* AMD: the patch level in EDX */
}

int kvm_get_feature_msr(uint32_t index, uint64_t *data)
{
	uint32_t a, b, c, d;

	switch (index) {
	case MSR_AMD64_DE_CFG:
		gm_host_cpuid_regs(0x80000000, 0, a, b, c, d);
		d = 0;
		if (a >= 0x80000021)
			gm_host_cpuid_regs(0x80000021, 0, a, b, c, d);
		*data = (a & (1U << 2)) ? 1ULL << 1 : 0; /* LFENCE serialising */
		return 0;
	case MSR_IA32_UCODE_REV:
		*data = host_ucode_rev();
		return 0;
	case MSR_IA32_ARCH_CAPABILITIES:
		*data = host_arch_capabilities();
		return 0;
	case MSR_IA32_PERF_CAPABILITIES:
		*data = 0; /* no PMU */
		return 0;
	default:
		*data = 0;
		/* Not a feature MSR: an advertised one still reads 0. */
		return msr_advertised(index) ? 0 : 1;
	}
}

/* ---- the generic store ------------------------------------------------------------ */

static struct kvm_x86_msr_val *msr_slot(struct kvm_vcpu *v, uint32_t index)
{
	for (uint32_t i = 0; i < v->arch.nr_msrs; i++)
		if (v->arch.msrs[i].index == index)
			return &v->arch.msrs[i];
	return NULL;
}

static uint64_t msr_stored(struct kvm_vcpu *v, uint32_t index, uint64_t reset)
{
	struct kvm_x86_msr_val *m = msr_slot(v, index);

	return m ? m->data : reset;
}

static int msr_store(struct kvm_vcpu *v, uint32_t index, uint64_t data)
{
	struct kvm_x86_msr_val *m = msr_slot(v, index);

	if (!m) {
		m = realloc(v->arch.msrs, (v->arch.nr_msrs + 1) * sizeof(*m));
		if (!m)
			return 1; /* the array stops here, like a failed access */
		v->arch.msrs = m;
		m = &m[v->arch.nr_msrs++];
		m->index = index;
	}
	m->data = data;
	return 0;
}

/* ---- checks -------------------------------------------------------------------------- */

/* Canonical for the host's 48-bit virtual addresses (no LA57 here). */
static bool is_canonical(uint64_t la)
{
	return (uint64_t)((int64_t)(la << 16) >> 16) == la;
}

static bool pat_valid(uint64_t data)
{
	if (data & 0xf8f8f8f8f8f8f8f8ULL)
		return false;
	/* Each entry is one of 0, 1, 4, 5, 6, 7. */
	return (data | ((data & 0x0202020202020202ULL) << 1)) == data;
}

/* EFER bits this host lets a guest set: SCE, LME, LMA, NX, FFXSR, AUTOIBRS. */
uint64_t kvm_efer_reserved_bits(void)
{
	uint64_t ok = EFER_SCE | EFER_LME | EFER_LMA;
	uint32_t a, b, c, d;

	gm_host_cpuid_regs(0x80000001, 0, a, b, c, d);
	if (d & (1U << 20))
		ok |= EFER_NX;
	if (d & (1U << 25))
		ok |= EFER_FFXSR;
	gm_host_cpuid_regs(0x80000000, 0, a, b, c, d);
	if (a >= 0x80000021) {
		gm_host_cpuid_regs(0x80000021, 0, a, b, c, d);
		if (a & (1U << 8))
			ok |= EFER_AUTOIBRS;
	}
	return ~ok;
}

static int set_efer(struct kvm_vcpu *v, uint64_t efer)
{
	if (efer & kvm_efer_reserved_bits())
		return 1;
	/* LMA is the CPU's to set: keep the current one. */
	v->sregs.efer = (efer & ~EFER_LMA) | (v->sregs.efer & EFER_LMA);
	return 0;
}

/* ---- machine check (set_msr_mce / get_msr_mce) ------------------------------------ */

static int mce_msr(struct kvm_vcpu *v, uint32_t index, uint64_t *data, bool set)
{
	unsigned banks = v->arch.mcg_cap & 0xff;
	struct kvm_vcpu_arch *a = &v->arch;

	if (index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + KVM_MAX_MCE_BANKS) {
		if (index >= MSR_IA32_MC0_CTL2 + banks)
			return 1;
		if (set && !(a->mcg_cap & KVM_MCG_CMCI_P) && *data)
			return 1;
		if (set && (*data & ~((1ULL << 30) | 0x7fffULL))) /* CMCI_EN, threshold */
			return 1;
		if (set)
			a->mci_ctl2_banks[index - MSR_IA32_MC0_CTL2] = *data;
		else
			*data = a->mci_ctl2_banks[index - MSR_IA32_MC0_CTL2];
		return 0;
	}
	/* MCi_CTL, _STATUS, _ADDR, _MISC */
	if (index >= MSR_IA32_MC0_CTL + 4 * banks)
		return 1;
	if (set && (index & 3) == 0 && *data && (*data | (1ULL << 10) | 1) != ~0ULL)
		return 1; /* MCi_CTL: 0 or all ones (bits 0 and 10 may be clear) */
	if (set)
		a->mce_banks[index - MSR_IA32_MC0_CTL] = *data;
	else
		*data = a->mce_banks[index - MSR_IA32_MC0_CTL];
	return 0;
}

static int mcg_msr(struct kvm_vcpu *v, uint32_t index, uint64_t *data, bool set)
{
	struct kvm_vcpu_arch *a = &v->arch;

	switch (index) {
	case MSR_IA32_MCG_CAP:
		if (set)
			return -1; /* not writable: unknown to KVM's set path */
		*data = a->mcg_cap;
		return 0;
	case MSR_IA32_MCG_STATUS:
		if (set)
			a->mcg_status = *data;
		else
			*data = a->mcg_status;
		return 0;
	default: /* MCG_CTL */
		if (set) {
			if (!(a->mcg_cap & KVM_MCG_CTL_P) && *data)
				return 1;
			if (*data != 0 && *data != ~0ULL)
				return 1;
			a->mcg_ctl = *data;
		} else {
			*data = a->mcg_ctl;
		}
		return 0;
	}
}

static bool is_mce_msr(uint32_t index)
{
	return (index >= MSR_IA32_MC0_CTL && index < MSR_IA32_MC0_CTL + 4 * KVM_MAX_MCE_BANKS) ||
	       (index >= MSR_IA32_MC0_CTL2 && index < MSR_IA32_MC0_CTL2 + KVM_MAX_MCE_BANKS);
}

/* ---- per-MSR access ----------------------------------------------------------------- */

/* The LAPIC exists and LVTT selects TSC-deadline mode (bits 17-18 = 2). */
static bool lapic_tscdeadline_mode(struct kvm_vcpu *v)
{
	uint32_t lvtt;

	if (!v->arch.lapic_regs)
		return false;
	memcpy(&lvtt, v->arch.lapic_regs + 0x320, 4);
	return ((lvtt >> 17) & 3) == 2;
}

/* Segment bases live in the sregs (KVM reads them from the VMCB). */
static void seg_base_set(struct kvm_vcpu *v, uint32_t index, uint64_t base)
{
	if (index == MSR_FS_BASE)
		v->sregs.fs.base = base;
	else
		v->sregs.gs.base = base;
}

/* The architectural MSRs with state elsewhere or address checks.  -2: not one. */
static int msr_write_arch(struct kvm_vcpu *v, uint32_t index, uint64_t data, bool host)
{
	switch (index) {
	case MSR_EFER:
		return set_efer(v, data);
	case MSR_IA32_APICBASE: {
		uint64_t old = v->sregs.apic_base;

		if (!kvm_valid_apic_base(v, data))
			return 1;
		v->sregs.apic_base = data;
		kvm_lapic_set_base(v, old);
		return 0;
	}
	case MSR_IA32_CR_PAT:
		return pat_valid(data) ? msr_store(v, index, data) : 1;
	case MSR_IA32_TSC:
		/* The VMM's write may synchronise; the guest's moves offset
		 * and TSC_ADJUST together (tsc.c). */
		if (host)
			kvm_vcpu_write_tsc(v, data, true);
		else
			kvm_vcpu_guest_write_tsc(v, data);
		return 0;
	case MSR_IA32_TSC_ADJUST:
		/* Ignored unless the guest has TSC_ADJUST (CPUID 7.0:EBX[1]);
		 * only the guest's writes move the TSC. */
		if (!kvm_guest_cpuid_has(v, 7, 0, 1, 1))
			return 0;
		if (host)
			v->arch.tsc_adjust = data;
		else
			kvm_vcpu_guest_write_tsc_adjust(v, data);
		return 0;
	case MSR_FS_BASE:
	case MSR_GS_BASE:
		if (!is_canonical(data))
			return 1;
		seg_base_set(v, index, data);
		return 0;
	case MSR_KERNEL_GS_BASE:
	case MSR_LSTAR:
	case MSR_CSTAR:
		return is_canonical(data) ? msr_store(v, index, data) : 1;
	case MSR_IA32_SYSENTER_ESP:
	case MSR_IA32_SYSENTER_EIP:
		/* Made canonical, not refused (AMD ignores the upper half). */
		return msr_store(v, index, (uint64_t)((int64_t)(data << 16) >> 16));
	case MSR_TSC_AUX:
		if (kvm_guest_cpuid_is_intel(v) && (data >> 32))
			return 1;
		return msr_store(v, index, (uint32_t)data);
	case MSR_IA32_TSC_DEADLINE:
		/* Ignored unless the LAPIC timer is in TSC-deadline mode. */
		return lapic_tscdeadline_mode(v) ? msr_store(v, index, data) : 0;
	default:
		return -2;
	}
}

/* Feature, platform and paravirtual MSRs with value rules.  -2: not one. */
static int msr_write_checked(struct kvm_vcpu *v, uint32_t index, uint64_t data)
{
	switch (index) {
	case MSR_IA32_PERF_CAPABILITIES:
		return data ? 1 : msr_store(v, index, 0); /* nothing supported */
	case MSR_K7_HWCR:
		data &= ~(0x40ULL | 0x100ULL | 0x8ULL); /* ignored bits */
		return (data & ~((1ULL << 18) | (1ULL << 24))) ? 1 : msr_store(v, index, data);
	case MSR_KVM_STEAL_TIME:
		return kvm_set_steal_time_msr(v, data); /* kvm_pv.c */
	case MSR_KVM_POLL_CONTROL:
		return (data & ~1ULL) ? 1 : msr_store(v, index, data);
	case MSR_MISC_FEATURES_ENABLES:
		/* Bit 0, CPUID faulting, only if PLATFORM_INFO offers it. */
		if ((data & ~1ULL) ||
		    ((data & 1) && !(msr_stored(v, MSR_PLATFORM_INFO, 0) & (1ULL << 31))))
			return 1;
		return msr_store(v, index, data);
	case MSR_PLATFORM_INFO:
		/* Clearing the CPUID-fault bit while faulting is on is refused. */
		if (!(data & (1ULL << 31)) && (msr_stored(v, MSR_MISC_FEATURES_ENABLES, 0) & 1))
			return 1;
		return msr_store(v, index, data);
	case MSR_IA32_SMBASE:
		if (!v->kvm->cfg.smm)
			return -1;
		v->arch.smbase = (uint32_t)data;
		return 0;
	default:
		return -2;
	}
}

/*
 * The paravirtual MSRs' feature bits in the KVM CPUID leaf: with
 * KVM_CAP_ENFORCE_PV_FEATURE_CPUID, an MSR whose bit the guest lacks is
 * unknown (kvm_pv.c), for reads and writes alike.  -1: not a PV MSR.
 */
static int msr_pv_feature(uint32_t index)
{
	switch (index) {
	case MSR_KVM_WALL_CLOCK:
	case MSR_KVM_SYSTEM_TIME:
		return KVM_FEATURE_CLOCKSOURCE;
	case MSR_KVM_WALL_CLOCK_NEW:
	case MSR_KVM_SYSTEM_TIME_NEW:
		return KVM_FEATURE_CLOCKSOURCE2;
	case MSR_KVM_STEAL_TIME:
		return KVM_FEATURE_STEAL_TIME;
	case MSR_KVM_POLL_CONTROL:
		return KVM_FEATURE_POLL_CONTROL;
	default:
		return -1;
	}
}

static bool msr_pv_hidden(struct kvm_vcpu *v, uint32_t index)
{
	int bit = msr_pv_feature(index);

	return bit >= 0 && !kvm_guest_pv_has(v, (unsigned)bit);
}

#define MISC_ENABLE_MWAIT (1ULL << 18)

/*
 * With KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT disabled, MISC_ENABLE.MWAIT is
 * the guest's CPUID.1:ECX.MONITOR (bit 3), kept in step at every change
 * and at KVM_SET_CPUID2.
 */
void kvm_update_misc_enable_cpuid(struct kvm_vcpu *v)
{
	bool on = msr_stored(v, MSR_IA32_MISC_ENABLE, MISC_ENABLE_RESET) & MISC_ENABLE_MWAIT;

	if (kvm_check_has_quirk(v->kvm, KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT))
		return;
	for (uint32_t i = 0; i < v->cpuid_nent; i++)
		if (v->cpuid[i].function == 1) {
			v->cpuid[i].ecx = on ? v->cpuid[i].ecx | (1U << 3) : v->cpuid[i].ecx & ~(1U << 3);
			return;
		}
}

/* A change of the MWAIT bit then needs SSE3 in guest CPUID. */
static int set_misc_enable(struct kvm_vcpu *v, uint64_t data)
{
	uint64_t old = msr_stored(v, MSR_IA32_MISC_ENABLE, MISC_ENABLE_RESET);
	int r;

	if (kvm_check_has_quirk(v->kvm, KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT) ||
	    !((old ^ data) & MISC_ENABLE_MWAIT))
		return msr_store(v, MSR_IA32_MISC_ENABLE, data);
	if (!kvm_guest_cpuid_has(v, 1, 0, 2, 0))
		return 1;
	r = msr_store(v, MSR_IA32_MISC_ENABLE, data);
	if (!r)
		kvm_update_misc_enable_cpuid(v);
	return r;
}

/*
 * Writes: 0 done, 1 refused, -1 unknown MSR (KVM_MSR_RET_UNSUPPORTED).
 * @host: KVM_SET_MSRS rather than the guest's WRMSR (host_initiated).
 */
static int msr_write(struct kvm_vcpu *v, uint32_t index, uint64_t data, bool host)
{
	int r;

	if (msr_pv_hidden(v, index))
		return -1;
	/* The x2APIC registers live in the in-kernel LAPIC (lapic_state.c). */
	if (index >= 0x800 && index <= 0x8ff)
		return kvm_x2apic_msr(v, index, true, &data);
	r = msr_write_arch(v, index, data, host);

	if (r == -2)
		r = msr_write_checked(v, index, data);
	if (r != -2)
		return r;
	switch (index) {
	case MSR_IA32_MCG_CAP:
	case MSR_IA32_MCG_STATUS:
	case MSR_IA32_MCG_CTL:
		return mcg_msr(v, index, &data, true);
	case MSR_IA32_MISC_ENABLE: /* host writes may set any bit */
		return set_misc_enable(v, data);
	case MSR_IA32_SYSENTER_CS:
	case MSR_STAR:
	case MSR_SYSCALL_MASK:
	case MSR_IA32_ARCH_CAPABILITIES:
	case MSR_IA32_UCODE_REV:
	case MSR_SMI_COUNT:
	case MSR_IA32_POWER_CTL:
	case MSR_KVM_WALL_CLOCK:
	case MSR_KVM_WALL_CLOCK_NEW:
		return msr_store(v, index, data);
	case MSR_KVM_SYSTEM_TIME:
	case MSR_KVM_SYSTEM_TIME_NEW:
		/* Both name one record (vcpu->arch.time); written at once. */
		v->arch.pv_time = data;
		v->arch.pv_time_stale = true;
		kvm_vcpu_update_pvclock(v);
		return msr_store(v, index, data);
	default:
		return is_mce_msr(index) ? mce_msr(v, index, &data, true) : -1;
	}
}

/*
 * Values before the first write.  PLATFORM_INFO resets to 0, not KVM's
 * CPUID_FAULT: guest CPUID runs natively on these hosts, so CPUID faulting
 * cannot be offered.
 */
static uint64_t msr_reset(struct kvm_vcpu *v, uint32_t index)
{
	switch (index) {
	case MSR_IA32_CR_PAT:
		return PAT_RESET;
	case MSR_IA32_MISC_ENABLE:
		return MISC_ENABLE_RESET;
	case MSR_IA32_ARCH_CAPABILITIES:
		return host_arch_capabilities();
	case MSR_IA32_UCODE_REV:
		return host_ucode_rev();
	case MSR_KVM_POLL_CONTROL:
		return 1;
	default:
		(void)v;
		return 0;
	}
}

/* Reads: 0 done, -1 unknown MSR. */
static int msr_read(struct kvm_vcpu *v, uint32_t index, uint64_t *data)
{
	if (msr_pv_hidden(v, index))
		return -1;
	if (index >= 0x800 && index <= 0x8ff)
		return kvm_x2apic_msr(v, index, false, data);
	switch (index) {
	case MSR_KVM_STEAL_TIME:
		*data = v->arch.st_msr;
		return 0;
	case MSR_EFER:
		*data = v->sregs.efer;
		return 0;
	case MSR_IA32_APICBASE:
		*data = v->sregs.apic_base;
		return 0;
	case MSR_IA32_TSC:
		*data = kvm_vcpu_read_tsc(v);
		return 0;
	case MSR_IA32_TSC_ADJUST:
		*data = v->arch.tsc_adjust;
		return 0;
	case MSR_FS_BASE:
	case MSR_GS_BASE:
		*data = index == MSR_FS_BASE ? v->sregs.fs.base : v->sregs.gs.base;
		return 0;
	case MSR_IA32_MCG_CAP:
	case MSR_IA32_MCG_STATUS:
	case MSR_IA32_MCG_CTL:
		return mcg_msr(v, index, data, false);
	case MSR_IA32_SMBASE:
		if (!v->kvm->cfg.smm)
			return -1;
		*data = v->arch.smbase;
		return 0;
	case MSR_TSC_AUX:
		break;
	case MSR_IA32_TSC_DEADLINE:
		*data = lapic_tscdeadline_mode(v) ? msr_stored(v, index, 0) : 0;
		return 0;
	default:
		if (is_mce_msr(index))
			return mce_msr(v, index, data, false) ? -1 : 0;
		if (!msr_advertised(index) || index == MSR_AMD64_DE_CFG)
			return -1;
	}
	*data = msr_stored(v, index, msr_reset(v, index));
	return 0;
}

int kvm_vcpu_get_msr(struct kvm_vcpu *v, uint32_t index, uint64_t *data)
{
	int r = msr_read(v, index, data);

	if (r)
		*data = 0; /* an advertised MSR reads 0 (kvm_do_msr_access) */
	return r && !msr_advertised(index);
}

int kvm_vcpu_set_msr(struct kvm_vcpu *v, uint32_t index, uint64_t data)
{
	int r = msr_write(v, index, data, true);

	if (r < 0) /* unsupported: writing 0 to an advertised MSR is fine */
		return !(data == 0 && msr_advertised(index));
	return r;
}

int kvm_vcpu_guest_msr(struct kvm_vcpu *v, uint32_t index, bool write, uint64_t *data)
{
	int r;

	/* What only the host may do, and what KVM_CAP_MSR_PLATFORM_INFO
	 * withholds from the guest (it may read PLATFORM_INFO by default). */
	if (write && (index == MSR_PLATFORM_INFO || index == MSR_SMI_COUNT))
		return 1;
	/* SMBASE lives in SMRAM's save area for the guest: #GP either way. */
	if (index == MSR_IA32_SMBASE) {
		*data = write ? *data : 0;
		return 1;
	}
	if (!write && index == MSR_PLATFORM_INFO &&
	    !READ_ONCE(v->kvm->arch.guest_can_read_msr_platform_info)) {
		*data = 0;
		return 1;
	}
	r = write ? msr_write(v, index, *data, false) : msr_read(v, index, data);
	if (r && !write)
		*data = 0; /* nothing read reaches the guest */
	return r < 0 ? -1 : r;
}

int kvm_vcpu_msrs(struct kvm_vcpu *v, struct kvm_msr_entry *e, uint32_t n, bool set)
{
	uint32_t i;

	for (i = 0; i < n; i++) {
		uint64_t data = e[i].data;
		int r = set ? kvm_vcpu_set_msr(v, e[i].index, data)
			    : kvm_vcpu_get_msr(v, e[i].index, &data);

		if (!set)
			e[i].data = data; /* 0 after a failed read, as KVM */

		if (r)
			break;
	}
	return (int)i;
}

/* ---- MSR filter (KVM_X86_SET_MSR_FILTER) ----------------------------------------- */

struct kvm_x86_msr_filter {
	bool default_allow;
	uint32_t count;
	struct {
		uint32_t flags, base, nmsrs;
		unsigned long *bitmap;
	} ranges[KVM_MSR_FILTER_MAX_RANGES];
};

static void msr_filter_free(struct kvm_x86_msr_filter *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->count; i++)
		free(f->ranges[i].bitmap);
	free(f);
}

/* kvm_add_msr_filter(): an empty range is skipped before its flags are looked at. */
static int msr_filter_add(struct kvm_x86_msr_filter *f, const struct kvm_msr_filter_range *r,
			  kvm_copy_fn copy_in)
{
	size_t size;
	unsigned long *bitmap;

	if (!r->nmsrs)
		return 0;
	if (r->flags & ~(uint32_t)(KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE))
		return -EINVAL;
	if (!r->flags)
		return -EINVAL;
	size = (r->nmsrs + 63) / 64 * sizeof(long);
	if (size > KVM_MSR_FILTER_MAX_BITMAP_SIZE)
		return -EINVAL;
	bitmap = malloc(size);
	if (!bitmap)
		return -ENOMEM;
	if (copy_in(bitmap, r->bitmap, size)) {
		free(bitmap);
		return -EFAULT;
	}
	f->ranges[f->count].flags = r->flags;
	f->ranges[f->count].base = r->base;
	f->ranges[f->count].nmsrs = r->nmsrs;
	f->ranges[f->count].bitmap = bitmap;
	f->count++;
	return 0;
}

int kvm_vm_set_msr_filter(struct kvm *kvm, const struct kvm_msr_filter *filter,
			  kvm_copy_fn copy_in)
{
	struct kvm_x86_msr_filter *f, *old;
	bool empty = true;
	int r = 0;

	if (filter->flags & ~(uint32_t)KVM_MSR_FILTER_DEFAULT_DENY)
		return -EINVAL;
	for (int i = 0; i < KVM_MSR_FILTER_MAX_RANGES; i++)
		empty &= !filter->ranges[i].nmsrs;
	if (empty && (filter->flags & KVM_MSR_FILTER_DEFAULT_DENY))
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->default_allow = !(filter->flags & KVM_MSR_FILTER_DEFAULT_DENY);
	for (int i = 0; !r && i < KVM_MSR_FILTER_MAX_RANGES; i++)
		r = msr_filter_add(f, &filter->ranges[i], copy_in);
	if (r) {
		msr_filter_free(f);
		return r;
	}
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	old = kvm->arch.msr_filter;
	smp_store_release(&kvm->arch.msr_filter, f); /* pairs with kvm_msr_allowed() */
	gm_mutex_unlock(&kvm->lock);
	gm_synchronize_rcu();
	msr_filter_free(old);
	return 0;
}

bool kvm_msr_allowed(struct kvm *kvm, uint32_t index, bool write)
{
	const struct kvm_x86_msr_filter *f;
	uint32_t type = write ? KVM_MSR_FILTER_WRITE : KVM_MSR_FILTER_READ;
	bool allowed = true;

	if (index >= 0x800 && index <= 0x8ff)
		return true; /* x2APIC MSRs are never filtered */
	gm_rcu_read_lock();
	f = smp_load_acquire(&kvm->arch.msr_filter);
	if (f) {
		allowed = f->default_allow;
		for (uint32_t i = 0; i < f->count; i++) {
			uint32_t off = index - f->ranges[i].base;

			if (index >= f->ranges[i].base && off < f->ranges[i].nmsrs &&
			    (f->ranges[i].flags & type)) {
				allowed = f->ranges[i].bitmap[off / 64] & (1UL << (off % 64));
				break;
			}
		}
	}
	gm_rcu_read_unlock();
	return allowed;
}

void kvm_arch_destroy_vm(struct kvm *kvm)
{
	msr_filter_free(kvm->arch.msr_filter);
	kvm->arch.msr_filter = NULL;
	kvm_coalesced_destroy(kvm);
	kvm_x86_vm_destroy(kvm);
}
