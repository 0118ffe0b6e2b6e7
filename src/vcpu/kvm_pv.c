// SPDX-License-Identifier: MIT
/*
 * KVM's paravirtual interfaces as Linux 6.12 offers them to a VMM:
 *
 * - KVM_CAP_ENFORCE_PV_FEATURE_CPUID (vCPU scope): once enabled, a
 *   paravirtual MSR whose feature bit is clear in the guest's KVM leaf
 *   (0x40000001 EAX under the "KVMKVMKVM" signature) is unknown, for the
 *   VMM's KVM_GET/SET_MSRS too (msr.c).  The features are re-read when
 *   enforcement is switched on and at each KVM_SET_CPUID2 that has the
 *   signature; a table without it leaves the last ones in force, as KVM.
 * - Steal time (MSR_KVM_STEAL_TIME): at each KVM_RUN that enters the guest,
 *   the 64-byte record the guest registered gets the scheduler delay of the
 *   thread doing KVM_RUN since the last record (the host's run_delay from
 *   /proc/thread-self/schedstat), its version made odd, then even again
 *   around the update, and preempted cleared.  The write goes through the
 *   memslot's user mapping (not stage-2, as KVM's uaccess) and is logged
 *   for dirty logging.
 * - KVM_GET_CLOCK / KVM_SET_CLOCK: kvm-clock is the raw monotonic clock
 *   counted from boot plus a per-VM offset.  The host clocksource is the
 *   constant TSC this model assumes, so KVM's master clock is in use and
 *   KVM_GET_CLOCK reports TSC_STABLE with the wall clock and the host TSC
 *   read together (REALTIME, HOST_TSC).  One difference: KVM stops using
 *   the master clock while the vCPUs' TSCs disagree; here it stays on.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <guestmem/kvm.h>

#include "core/kvm_arch.h"
#include "lib/lockdep.h"
#include "lib/rcu.h"
#include "lib/procfile.h"
#include "lib/sys_raw.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"

#define KVM_SIGNATURE "KVMKVMKVM\0\0\0"
#define KVM_CPUID_FEATURES_LEAF 0x01
#define STEAL_RECORD_SIZE 64 /* struct kvm_steal_time */
#define STEAL_OFF_VERSION 8
#define STEAL_OFF_PREEMPTED 16

/* ---- enforcement ----------------------------------------------------------------- */

static struct kvm_cpuid_entry2 *guest_cpuid_find(struct kvm_vcpu *v, uint32_t fn)
{
	for (uint32_t i = 0; i < v->cpuid_nent; i++)
		if (v->cpuid[i].function == fn)
			return &v->cpuid[i];
	return NULL;
}

/*
 * The features leaf of the first hypervisor range (0x40000000,
 * 0x40000100, ...) with KVM's signature (kvm_find_kvm_cpuid_features).
 */
static struct kvm_cpuid_entry2 *kvm_pv_features_leaf(struct kvm_vcpu *v)
{
	const struct kvm_cpuid_entry2 *e;

	for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
		e = guest_cpuid_find(v, base);
		if (!e || memcmp(&e->ebx, KVM_SIGNATURE, 4) || memcmp(&e->ecx, KVM_SIGNATURE + 4, 4) ||
		    memcmp(&e->edx, KVM_SIGNATURE + 8, 4))
			continue;
		return guest_cpuid_find(v, base | KVM_CPUID_FEATURES_LEAF);
	}
	return NULL;
}

/*
 * The guest's new CPUID as KVM fixes it up at KVM_SET_CPUID2: with HLT
 * exits disabled, no PV_UNHALT (bit 7 of the features leaf's EAX).
 */
void kvm_pv_cpuid_fixup(struct kvm_vcpu *v)
{
	struct kvm_cpuid_entry2 *f;

	if (!(READ_ONCE(v->kvm->arch.disabled_exits) & KVM_X86_DISABLE_EXITS_HLT))
		return;
	f = kvm_pv_features_leaf(v);
	if (f)
		f->eax &= ~(1U << KVM_FEATURE_PV_UNHALT);
}

void kvm_update_pv_runtime(struct kvm_vcpu *v)
{
	const struct kvm_cpuid_entry2 *f = kvm_pv_features_leaf(v);

	if (f)
		v->arch.pv_features = f->eax;
}

bool kvm_guest_pv_has(struct kvm_vcpu *v, unsigned bit)
{
	return !v->arch.pv_enforce || (v->arch.pv_features & (1U << bit));
}

int kvm_vcpu_enable_cap(struct kvm_vcpu *v, const struct kvm_enable_cap *cap)
{
	lockdep_assert_held(&v->mutex);
	if (cap->flags)
		return -EINVAL;
	switch (cap->cap) {
	case KVM_CAP_ENFORCE_PV_FEATURE_CPUID:
		v->arch.pv_enforce = cap->args[0] != 0;
		if (v->arch.pv_enforce)
			kvm_update_pv_runtime(v);
		return 0;
	default:
		return -EINVAL; /* Hyper-V's vCPU caps: not built (no CONFIG_KVM_HYPERV) */
	}
}

/* ---- steal time ------------------------------------------------------------------- */

/*
 * The calling thread's run-queue wait in ns (the second number of
 * schedstat); false without schedstats.  Raw calls: no preload re-entry.
 */
static bool thread_run_delay(uint64_t *ns)
{
	unsigned long long run, delay;
	char buf[128];

	if (gm_read_proc_buf("/proc/thread-self/schedstat", buf, sizeof(buf)) < 0)
		return false;
	if (sscanf(buf, "%llu %llu", &run, &delay) != 2)
		return false;
	*ns = delay;
	return true;
}

bool kvm_sched_info_on(void)
{
	static int on = -1; /* relaxed: every thread computes the same answer */
	int v = __atomic_load_n(&on, __ATOMIC_RELAXED);
	uint64_t ns;

	if (v < 0) {
		v = thread_run_delay(&ns);
		__atomic_store_n(&on, v, __ATOMIC_RELAXED);
	}
	return v;
}

bool kvm_arch_sched_info_on(void)
{
	return kvm_sched_info_on();
}

int kvm_set_steal_time_msr(struct kvm_vcpu *v, uint64_t data)
{
	if (!kvm_sched_info_on())
		return 1;
	if (data & KVM_STEAL_RESERVED_MASK)
		return 1;
	v->arch.st_msr = data;
	return 0;
}

/*
 * The host address of the guest record at @gpa (it does not cross a
 * page), for writing, and its memslot; NULL if there is no RAM there the
 * guest may write (private, read-only, or memory the VMM unmapped or
 * write-protected: KVM's cached write fails and skips the record).  It is
 * reached as every access of guest memory from this side is, through the
 * vCPU's stage-2 (kvm_vcpu_gpa_host()): the MMU notifier's invalidation
 * zaps the leaf and waits for this RCU section before the VMM's munmap
 * or mprotect goes on, as it keeps KVM's gfn_to_pfn_cache current.  Not
 * while the vCPU is in SMM, whose accesses go to address space 1: the
 * record waits for RSM.  Context: gm_rcu_read_lock().
 */
static uint8_t *record_hva(struct kvm_vcpu *v, uint64_t gpa, struct kvm_memory_slot **slotp)
{
	struct kvm_page_fault f;
	uint8_t *host;

	/* A private gfn: KVM's cache writes the shared view (the memslot's
	 * host address), which the guest does not see there; nothing here. */
	if (v->arch.ev.smi.smm || kvm_mem_is_private(v->kvm, gpa >> GM_PAGE_SHIFT) ||
	    kvm_vcpu_gpa_host(v, gpa, true, &host, &f) != KVM_PF_FIXED)
		return NULL;
	*slotp = kvm_cached_gfn_to_memslot(v->kvm, 0, &v->last_used_slot, gpa >> GM_PAGE_SHIFT);
	return *slotp ? host : NULL;
}

void kvm_vcpu_record_steal_time(struct kvm_vcpu *v)
{
	uint64_t gpa = v->arch.st_msr & ~(uint64_t)(STEAL_RECORD_SIZE - 1), delay, steal;
	struct kvm_memory_slot *slot;
	uint32_t version, *pver;
	uint64_t *psteal;
	uint8_t *st;

	lockdep_assert_held(&v->mutex);
	if (!(v->arch.st_msr & KVM_MSR_ENABLED) || !thread_run_delay(&delay))
		return;
	gm_rcu_read_lock();
	st = record_hva(v, gpa, &slot);
	if (!st)
		goto out;
	psteal = (uint64_t *)st;
	pver = (uint32_t *)(st + STEAL_OFF_VERSION);
	__atomic_store_n(st + STEAL_OFF_PREEMPTED, 0, __ATOMIC_RELAXED);
	/* An odd version means "being written": a reader retries. */
	version = __atomic_load_n(pver, __ATOMIC_RELAXED);
	if (version & 1)
		version++; /* the guest left it odd: start from even */
	__atomic_store_n(pver, version + 1, __ATOMIC_RELAXED);
	steal = __atomic_load_n(psteal, __ATOMIC_RELAXED);
	steal += delay - v->arch.st_last_steal;
	/* Release: the odd version is visible before the new steal. */
	__atomic_store_n(psteal, steal, __ATOMIC_RELEASE);
	/* The new steal before the even version (the guest reads it with acquire). */
	__atomic_store_n(pver, version + 2, __ATOMIC_RELEASE);
	v->arch.st_last_steal = delay;
	mark_page_dirty_in_slot(slot, gpa >> GM_PAGE_SHIFT);
out:
	gm_rcu_read_unlock();
}

/* ---- kvm-clock ------------------------------------------------------------------------ */

static int64_t clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * BOOTTIME - MONOTONIC (the time spent suspended), at its largest seen:
 * it only grows, and a reading taken with a preemption between the two
 * clocks would otherwise come out smaller and step kvm-clock back.
 */
static int64_t gm_suspended_ns;

int64_t kvm_arch_kvmclock_base_ns(void)
{
	/* Boot time at the raw clock's rate: raw + (boottime - monotonic). */
	int64_t boot = clock_ns(CLOCK_BOOTTIME), mono = clock_ns(CLOCK_MONOTONIC);
	int64_t off = __atomic_load_n(&gm_suspended_ns, __ATOMIC_RELAXED);

	/* mono read after boot: boot - mono is at most the true offset. */
	while (boot - mono > off &&
	       !__atomic_compare_exchange_n(&gm_suspended_ns, &off, boot - mono, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	if (boot - mono > off)
		off = boot - mono;
	return clock_ns(CLOCK_MONOTONIC_RAW) + off;
}

void kvm_vm_get_clock(struct kvm *kvm, struct kvm_clock_data *data)
{
	int64_t offset, base;

	memset(data, 0, sizeof(*data));
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	offset = kvm->arch.kvmclock_offset;
	gm_mutex_unlock(&kvm->lock);
	/* The three readings as close together as user space can take them. */
	base = kvm_arch_kvmclock_base_ns();
	data->host_tsc = __rdtsc();
	data->realtime = (uint64_t)clock_ns(CLOCK_REALTIME);
	data->clock = (uint64_t)(base + offset);
	data->flags = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
}

/*
 * pvclock's scale for @hz ticks a second: ns = ((ticks << shift) * mul) >> 32
 * (a negative shift shifts right), with mul in [2^31, 2^32).
 */
static void pvclock_scale(uint64_t hz, uint32_t *mul, int8_t *shift)
{
	unsigned __int128 r = ((unsigned __int128)1000000000ULL << 32) / hz;
	int s = 0;

	while (r >= (1ULL << 32)) {
		r >>= 1;
		s++;
	}
	while (r < (1ULL << 31)) {
		r <<= 1;
		s--;
	}
	*mul = (uint32_t)r;
	*shift = (int8_t)s;
}

/* struct pvclock_vcpu_time_info (the kvm-clock ABI), 32 bytes. */
#define PVTI_SIZE 32
#define PVTI_VERSION 0
#define PVTI_TSC_TIMESTAMP 8
#define PVTI_SYSTEM_TIME 16
#define PVTI_MUL 24
#define PVTI_SHIFT 28
#define PVTI_FLAGS 29
#define PVCLOCK_TSC_STABLE_BIT 1
/* The record is written again at least this often (KVM: KVMCLOCK_SYNC_PERIOD, 300 s). */
#define PVCLOCK_SYNC_NS 1000000000ULL

/*
 * kvm_guest_time_update(): the guest's TSC and the VM's kvm-clock read
 * together, and the scale from guest TSC ticks (the host's rate times
 * the vCPU's TSC ratio, as kvm_guest_time_update() computes it) to ns.  The version is odd
 * while the record changes.
 */
void kvm_vcpu_update_pvclock(struct kvm_vcpu *v)
{
	uint64_t gpa = v->arch.pv_time & ~1ULL, tsc, hz = (uint64_t)kvm_vcpu_tsc_rate_khz(v) * 1000;
	uint64_t now;
	struct kvm_memory_slot *slot;
	int64_t offset, ns;
	uint32_t mul, ver;
	int8_t shift;
	uint8_t *p, flags = PVCLOCK_TSC_STABLE_BIT;

	lockdep_assert_held(&v->mutex);
	if (!(v->arch.pv_time & KVM_MSR_ENABLED) || !hz ||
	    (gpa & (GM_PAGE_SIZE - 1)) > GM_PAGE_SIZE - PVTI_SIZE)
		return;
	/* Not kvm->lock: it ranks above vcpu->mutex.  The store is atomic. */
	offset = __atomic_load_n(&v->kvm->arch.kvmclock_offset, __ATOMIC_RELAXED);
	now = (uint64_t)clock_ns(CLOCK_MONOTONIC);
	/* @hz follows the TSC ratio: with the offsets it says all the record does. */
	if (!v->arch.pv_time_stale && hz == v->arch.pv_time_hz &&
	    v->arch.tsc_offset == v->arch.pv_time_tsc_offset &&
	    offset == v->arch.pv_time_clock_offset && now - v->arch.pv_time_at_ns < PVCLOCK_SYNC_NS)
		return; /* the record the guest has still holds */
	pvclock_scale(hz, &mul, &shift);
	ns = kvm_arch_kvmclock_base_ns() + offset;
	tsc = kvm_vcpu_read_tsc(v);
	gm_rcu_read_lock();
	p = record_hva(v, gpa, &slot);
	if (!p)
		goto out;
	ver = v->arch.pv_time_version;
	__atomic_store_n((uint32_t *)(p + PVTI_VERSION), ver + 1, __ATOMIC_RELAXED);
	/* Release stores: the odd version is visible before each new field
	 * (as in kvm_vcpu_record_steal_time), the fields before the even one. */
	__atomic_store_n((uint64_t *)(p + PVTI_TSC_TIMESTAMP), tsc, __ATOMIC_RELEASE);
	__atomic_store_n((int64_t *)(p + PVTI_SYSTEM_TIME), ns, __ATOMIC_RELEASE);
	__atomic_store_n((uint32_t *)(p + PVTI_MUL), mul, __ATOMIC_RELEASE);
	__atomic_store_n((int8_t *)(p + PVTI_SHIFT), shift, __ATOMIC_RELEASE);
	__atomic_store_n(p + PVTI_FLAGS, flags, __ATOMIC_RELEASE);
	__atomic_store_n((uint32_t *)(p + PVTI_VERSION), ver + 2, __ATOMIC_RELEASE);
	v->arch.pv_time_version = ver + 2;
	v->arch.pv_time_stale = false;
	v->arch.pv_time_hz = hz;
	v->arch.pv_time_tsc_offset = v->arch.tsc_offset;
	v->arch.pv_time_clock_offset = offset;
	v->arch.pv_time_at_ns = now;
	mark_page_dirty_in_slot(slot, gpa >> GM_PAGE_SHIFT);
out:
	gm_rcu_read_unlock();
}

int kvm_vm_set_clock(struct kvm *kvm, struct kvm_clock_data *data)
{
	const uint32_t valid = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;
	uint64_t clock = data->clock;

	/* Only REALTIME is used; a KVM_GET_CLOCK result may be passed back. */
	if (data->flags & ~valid)
		return -EINVAL;
	if (data->flags & KVM_CLOCK_REALTIME) {
		uint64_t now = (uint64_t)clock_ns(CLOCK_REALTIME);

		/* The time since @data was taken, never a step backwards. */
		if (now > data->realtime)
			clock += now - data->realtime;
	}
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	/* Atomic: vCPUs read it locklessly (kvm_vcpu_update_pvclock). */
	__atomic_store_n(&kvm->arch.kvmclock_offset,
			 (int64_t)(clock - (uint64_t)kvm_arch_kvmclock_base_ns()), __ATOMIC_RELAXED);
	gm_mutex_unlock(&kvm->lock);
	return 0;
}
