/* SPDX-License-Identifier: MIT */
/*
 * The TSC a vCPU sees: its frequency (KVM_GET/SET_TSC_KHZ on the VM and on
 * the vCPU) and its value (MSR_IA32_TSC), as Linux 6.12 keeps them.
 *
 * Guest code runs natively in the guest process, where RDTSC and RDTSCP
 * fault (PR_SET_TSC, PR_TSC_SIGSEGV) and are emulated with this file's
 * TSC.  Where the host lets RDTSC fault, guestmem models a host with TSC
 * scaling, as KVM on AMD (8.32 ratio, at most 2^40 - 1) or Intel (16.48)
 * keeps it: KVM_CAP_TSC_CONTROL and KVM_CAP_VM_TSC_CONTROL read 1, and the
 * guest TSC is the host's times the vCPU's ratio plus its offset.  Where
 * it does not, RDTSC would run at the host's rate: KVM's answers for a
 * host without scaling follow (the caps read 0, a vCPU frequency more
 * than 250 ppm below the host's is refused, a faster one accepted).
 *
 * The host frequency: /proc/cpuinfo's "cpu MHz" when it agrees with a
 * 10 ms calibration against CLOCK_MONOTONIC_RAW within 0.5% (hosts with a
 * constant TSC report the TSC rate there, to the kHz), else the calibration.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <x86intrin.h>

#include "lib/cpuinfo.h"
#include "lib/host_cpuid.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "lib/lockdep.h"

#define TSC_TOLERANCE_PPM 250

static uint32_t host_tsc_khz; /* 0 until computed, then fixed (relaxed CAS) */

static uint64_t mono_raw_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC_RAW, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static uint32_t tsc_calibrate_khz(void)
{
	uint64_t ns0 = mono_raw_ns(), t0 = __rdtsc(), ns1, t1;

	do
		ns1 = mono_raw_ns();
	while (ns1 - ns0 < 10000000ULL);
	t1 = __rdtsc();
	return (uint32_t)((t1 - t0) * 1000000ULL / (ns1 - ns0));
}

static uint32_t cpuinfo_khz(void)
{
	unsigned mhz = 0, frac = 0;
	char v[64];

	if (!gm_cpuinfo_field("cpu MHz", v, sizeof(v)) || sscanf(v, "%u.%3u", &mhz, &frac) < 1)
		return 0;
	return mhz * 1000 + frac;
}

uint32_t kvm_host_tsc_khz(void)
{
	uint32_t khz = READ_ONCE(host_tsc_khz);
	uint32_t cal, info;

	if (likely(khz))
		return khz;
	cal = tsc_calibrate_khz();
	info = cpuinfo_khz();
	khz = cal;
	if (info && (uint64_t)(info > cal ? info - cal : cal - info) * 200 < cal)
		khz = info;
	/* The first answer stays: every caller sees one host frequency. */
	if (!__atomic_compare_exchange_n(&host_tsc_khz, &(uint32_t){ 0 }, khz, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		khz = READ_ONCE(host_tsc_khz);
	return khz;
}

/* KVM's adjust_tsc_khz(): @khz scaled by (1e6 + ppm) / 1e6. */
static uint32_t adjust_tsc_khz(uint32_t khz, int ppm)
{
	return (uint32_t)((uint64_t)khz * (uint64_t)(1000000 + ppm) / 1000000);
}

static int tsc_control = -1; /* probed once: 0 or 1 (relaxed) */

bool kvm_arch_has_tsc_control(void)
{
	int c = READ_ONCE(tsc_control);
	sigset_t all, old;

	if (c >= 0)
		return c;
	/*
	 * The guest process's stub makes the same two calls on each vCPU
	 * thread; here on this thread, with no signal handler able to run a
	 * vDSO RDTSC in between.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	c = prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0;
	if (prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0))
		c = 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	WRITE_ONCE(tsc_control, c);
	return c;
}

/* The vendor module's ratio format: SVM 8.32 (40 bits), VMX 16.48. */
static unsigned tsc_ratio_frac_bits(void)
{
	return gm_kvm_vendor_is_intel() ? 48 : 32;
}

static uint64_t tsc_ratio_max(void)
{
	return gm_kvm_vendor_is_intel() ? ~0ULL : 0xffffffffffULL;
}

static uint64_t tsc_ratio_default(void)
{
	return 1ULL << tsc_ratio_frac_bits();
}

/* kvm_scale_tsc(): @tsc times @ratio, in the ratio's fixed point. */
static uint64_t scale_tsc(uint64_t tsc, uint64_t ratio)
{
	return (uint64_t)(((unsigned __int128)tsc * ratio) >> tsc_ratio_frac_bits());
}

/* The host TSC now, at the vCPU's rate. */
static uint64_t host_tsc_scaled(const struct kvm_vcpu *v)
{
	return scale_tsc(__rdtsc(), v->arch.tsc_ratio);
}

/* kvm_caps.max_guest_tsc_khz with TSC control; KVM_SET_TSC_KHZ refuses it and above. */
static uint64_t max_guest_tsc_khz(void)
{
	uint64_t max = scale_tsc(kvm_host_tsc_khz(), tsc_ratio_max());

	return max < 0x7fffffffULL ? max : 0x7fffffffULL;
}

/*
 * kvm_set_tsc_khz(): the new frequency is recorded before any check, as in
 * 6.12, so a refused rate still reads back.  Within 250 ppm of the host:
 * the default ratio; else the ratio, or without TSC control a faster rate
 * only (KVM's catch-up mode, not modelled: the guest sees the host's).
 */
static int set_tsc_khz(struct kvm_vcpu *v, uint32_t khz)
{
	uint32_t host = kvm_host_tsc_khz();
	uint64_t ratio;

	if (!khz) { /* no host frequency: calibration failed */
		v->arch.tsc_ratio = tsc_ratio_default();
		return -EINVAL;
	}
	v->arch.virtual_tsc_khz = khz;
	if (khz >= adjust_tsc_khz(host, -TSC_TOLERANCE_PPM) &&
	    khz <= adjust_tsc_khz(host, TSC_TOLERANCE_PPM)) {
		v->arch.tsc_ratio = tsc_ratio_default();
		return 0;
	}
	if (!kvm_arch_has_tsc_control())
		return khz > host ? 0 : -EINVAL;
	ratio = (uint64_t)(((unsigned __int128)1 << tsc_ratio_frac_bits()) * khz / host);
	if (!ratio || ratio >= tsc_ratio_max())
		return -EINVAL;
	v->arch.tsc_ratio = ratio;
	return 0;
}

/* The ioctls' own check before kvm_set_tsc_khz(): at or above the maximum. */
static bool khz_too_high(uint32_t khz)
{
	return kvm_arch_has_tsc_control() && khz >= max_guest_tsc_khz();
}

void kvm_vcpu_tsc_init(struct kvm_vcpu *v)
{
	v->arch.tsc_ratio = tsc_ratio_default();
	/* kvm_arch_vcpu_create(): the VM's rate, without the ioctl's checks;
	 * a failed one (slower, no scaling) still records the rate. */
	(void)set_tsc_khz(v, kvm_vm_get_tsc_khz(v->kvm));
}

int kvm_vcpu_set_tsc_khz(struct kvm_vcpu *v, uint32_t khz)
{
	if (khz_too_high(khz))
		return -EINVAL;
	return set_tsc_khz(v, khz ? khz : kvm_host_tsc_khz());
}

int kvm_vm_set_tsc_khz(struct kvm *kvm, uint32_t khz)
{
	if (khz_too_high(khz))
		return -EINVAL;
	WRITE_ONCE(kvm->arch.default_tsc_khz, khz ? khz : kvm_host_tsc_khz());
	return 0;
}

uint32_t kvm_vm_get_tsc_khz(struct kvm *kvm)
{
	uint32_t khz = READ_ONCE(kvm->arch.default_tsc_khz);

	return khz ? khz : kvm_host_tsc_khz();
}

uint32_t kvm_vcpu_tsc_rate_khz(const struct kvm_vcpu *v)
{
	return (uint32_t)scale_tsc(kvm_host_tsc_khz(), v->arch.tsc_ratio);
}

uint64_t kvm_vcpu_read_tsc(struct kvm_vcpu *v)
{
	return host_tsc_scaled(v) + (uint64_t)v->arch.tsc_offset;
}

/*
 * Writes of the VM's TSC state, in every VM: rare (vCPU creation, host MSR
 * writes), so one leaf lock is enough.  Nested in vcpu->mutex.
 */
static pthread_mutex_t tsc_write_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The guest's own WRMSRs (never a synchronisation): a TSC write moves
 * the offset and TSC_ADJUST by the same amount; a TSC_ADJUST write moves
 * the offset by its change.  Context: the vCPU's thread, vcpu->mutex.
 */
void kvm_vcpu_guest_write_tsc(struct kvm_vcpu *v, uint64_t tsc)
{
	int64_t adj;

	gm_mutex_lock(&tsc_write_lock, GM_LOCK_TSC);
	adj = (int64_t)(tsc - host_tsc_scaled(v)) - v->arch.tsc_offset;
	v->arch.tsc_offset += adj;
	v->arch.tsc_adjust += (uint64_t)adj;
	gm_mutex_unlock(&tsc_write_lock);
}

void kvm_vcpu_guest_write_tsc_adjust(struct kvm_vcpu *v, uint64_t val)
{
	gm_mutex_lock(&tsc_write_lock, GM_LOCK_TSC);
	v->arch.tsc_offset += (int64_t)(val - v->arch.tsc_adjust);
	v->arch.tsc_adjust = val;
	gm_mutex_unlock(&tsc_write_lock);
}

/*
 * kvm_synchronize_tsc(): a write of 0 (vCPU creation, or from the VMM), or
 * a VMM write within a second of where the last one would be now, joins
 * the VM's current offset when the rates match, so that vCPUs created or
 * restored together see one TSC; any other value starts a new offset.
 * The host TSC is constant here (no "unstable TSC" compensation).
 */
void kvm_vcpu_write_tsc(struct kvm_vcpu *v, uint64_t tsc, bool from_user)
{
	struct kvm *kvm = v->kvm;
	int64_t offset = (int64_t)(tsc - host_tsc_scaled(v));
	uint64_t ns = mono_raw_ns(), khz = v->arch.virtual_tsc_khz;
	bool sync = false;

	gm_mutex_lock(&tsc_write_lock, GM_LOCK_TSC);
	if (khz && tsc == 0) {
		sync = true;
	} else if (khz && kvm->arch.user_set_tsc) {
		uint64_t exp = kvm->arch.last_tsc_write +
			       (ns - kvm->arch.last_tsc_nsec) * khz / 1000000;

		sync = tsc < exp + khz * 1000 && tsc + khz * 1000 > exp;
	}
	if (from_user)
		kvm->arch.user_set_tsc = true;
	if (sync && khz == kvm->arch.last_tsc_khz)
		offset = kvm->arch.cur_tsc_offset;
	else
		kvm->arch.cur_tsc_offset = offset;
	kvm->arch.last_tsc_khz = (uint32_t)khz;
	kvm->arch.last_tsc_write = tsc;
	kvm->arch.last_tsc_nsec = ns;
	v->arch.tsc_offset = offset;
	gm_mutex_unlock(&tsc_write_lock);
}

/*
 * KVM_SET_DEVICE_ATTR KVM_VCPU_TSC_OFFSET (kvm_arch_tsc_set_attr): a VMM
 * write like MSR_IA32_TSC's, so the VM's synchronisation state records it
 * and a later KVM_SET_MSRS near this TSC joins this offset.  The offset is
 * the VM's current one either way (matched or a new generation).
 */
void kvm_vcpu_set_tsc_offset(struct kvm_vcpu *v, int64_t offset)
{
	struct kvm *kvm = v->kvm;

	gm_mutex_lock(&tsc_write_lock, GM_LOCK_TSC);
	kvm->arch.user_set_tsc = true;
	kvm->arch.cur_tsc_offset = offset;
	kvm->arch.last_tsc_khz = v->arch.virtual_tsc_khz;
	kvm->arch.last_tsc_write = host_tsc_scaled(v) + (uint64_t)offset;
	kvm->arch.last_tsc_nsec = mono_raw_ns();
	v->arch.tsc_offset = offset;
	gm_mutex_unlock(&tsc_write_lock);
}
