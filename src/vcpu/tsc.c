/* SPDX-License-Identifier: MIT */
/*
 * The TSC a vCPU sees: its frequency (KVM_GET/SET_TSC_KHZ on the VM and on
 * the vCPU) and its value (MSR_IA32_TSC), as Linux 6.12 keeps them.
 *
 * guestmem models a host without TSC scaling (KVM's has_tsc_control false):
 * guest code runs natively, and RDTSC cannot be made to trap on the hosts
 * we run on (shared/spec/x86-guests-facts.md), so the guest TSC ticks at
 * the host's rate plus an offset.  KVM's answers for such a host follow:
 * KVM_CAP_TSC_CONTROL and KVM_CAP_VM_TSC_CONTROL read 0, any VM default is
 * accepted, and a vCPU frequency more than 250 ppm below the host's is
 * refused (faster is accepted: KVM's "catch-up" mode).
 *
 * The host frequency: /proc/cpuinfo's "cpu MHz" when it agrees with a
 * 10 ms calibration against CLOCK_MONOTONIC_RAW within 0.5% (hosts with a
 * constant TSC report the TSC rate there, to the kHz), else the calibration.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <x86intrin.h>

#include "lib/cpuinfo.h"
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

/*
 * kvm_set_tsc_khz() without TSC scaling.  The new frequency is recorded
 * before the range check, as in 6.12: a refused rate still reads back.
 */
static int set_tsc_khz(struct kvm_vcpu *v, uint32_t khz)
{
	uint32_t host = kvm_host_tsc_khz();

	if (!khz)
		return -EINVAL; /* no host frequency: calibration failed */
	v->arch.virtual_tsc_khz = khz;
	if (khz >= adjust_tsc_khz(host, -TSC_TOLERANCE_PPM) &&
	    khz <= adjust_tsc_khz(host, TSC_TOLERANCE_PPM))
		return 0;
	/* Faster than the host: KVM catches the guest TSC up on entry. */
	return khz > host ? 0 : -EINVAL;
}

int kvm_vcpu_set_tsc_khz(struct kvm_vcpu *v, uint32_t khz)
{
	return set_tsc_khz(v, khz ? khz : kvm_host_tsc_khz());
}

int kvm_vm_set_tsc_khz(struct kvm *kvm, uint32_t khz)
{
	/* Without TSC scaling there is no upper limit to check. */
	WRITE_ONCE(kvm->arch.default_tsc_khz, khz ? khz : kvm_host_tsc_khz());
	return 0;
}

uint32_t kvm_vm_get_tsc_khz(struct kvm *kvm)
{
	uint32_t khz = READ_ONCE(kvm->arch.default_tsc_khz);

	return khz ? khz : kvm_host_tsc_khz();
}

uint64_t kvm_vcpu_read_tsc(struct kvm_vcpu *v)
{
	return __rdtsc() + (uint64_t)v->arch.tsc_offset;
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
	adj = (int64_t)(tsc - __rdtsc()) - v->arch.tsc_offset;
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
	int64_t offset = (int64_t)(tsc - __rdtsc());
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
	kvm->arch.last_tsc_write = __rdtsc() + (uint64_t)offset;
	kvm->arch.last_tsc_nsec = mono_raw_ns();
	v->arch.tsc_offset = offset;
	gm_mutex_unlock(&tsc_write_lock);
}
