/* SPDX-License-Identifier: MIT */
/*
 * The x86 system, VM and vCPU ioctls of issue 9 through <guestmem/sys.h>,
 * per kernel profile: each ioctl's happy path and every invalid-argument
 * case with the errno Linux 6.12 gives (arch/x86/kvm/x86.c), in its check
 * order.  Tables where there are several cases of one rule.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>

#include "harness.h"

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "uapi/uapi.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86_walk.h"
#include "lib/lockdep.h"

#define PAGE 4096
#define PAT_OK 0x0007040600070406ULL


/* For cases that build their own VMs. */
static int no_setup(void **state)
{
	(void)state;
	return 0;
}

static int no_teardown(void **state)
{
	(void)state;
	return 0;
}

static const char *const profiles[] = { "linux-6.8", "linux-6.12", "linux-6.18" };

struct fx {
	int kvm, vm, vcpu;
};

/* A VM of @profile (a VM keeps the configuration it was created with). */
static int vm_of(int kvm, const char *profile)
{
	ASSERT_EQ(guestmem_config_set(profile, NULL, NULL), 0);
	return guestmem_sys_ioctl(kvm, KVM_CREATE_VM, 0);
}

static int setup_profile(void **state, const char *profile, bool irqchip)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(x->kvm >= 0);
	x->vm = vm_of(x->kvm, profile);
	ASSERT_TRUE(x->vm >= 0);
	if (irqchip)
		ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_CREATE_IRQCHIP, 0), 0);
	x->vcpu = guestmem_sys_ioctl(x->vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(x->vcpu >= 0);
	*state = x;
	return 0;
}

static int setup(void **state)
{
	return setup_profile(state, "linux-6.12", true);
}

static int setup_noirqchip(void **state)
{
	return setup_profile(state, "linux-6.12", false);
}

static int teardown(void **state)
{
	struct fx *x = *state;

	guestmem_sys_close(x->vcpu);
	guestmem_sys_close(x->vm);
	guestmem_sys_close(x->kvm);
	free(x);
	return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

struct cpuid_buf {
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 e[256];
};

static void supported_cpuid(int kvm, struct cpuid_buf *c)
{
	memset(c, 0, sizeof(*c));
	c->hdr.nent = 256;
	ASSERT_EQ(guestmem_sys_ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c), 0);
}

static struct kvm_cpuid_entry2 *leaf(struct cpuid_buf *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->hdr.nent; i++)
		if (c->e[i].function == fn && c->e[i].index == idx)
			return &c->e[i];
	return NULL;
}

struct msrs1 {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[4];
};

/* KVM_SET_MSRS of one MSR: the count processed (1 or 0). */
static long set_msr(int vcpu, uint32_t index, uint64_t data)
{
	struct msrs1 m = { { .nmsrs = 1 }, { { .index = index, .data = data } } };

	return guestmem_sys_ioctl(vcpu, KVM_SET_MSRS, &m);
}

/* KVM_GET_MSRS of one MSR; *data receives the value. */
static long get_msr(int vcpu, uint32_t index, uint64_t *data)
{
	struct msrs1 m = { { .nmsrs = 1 }, { { .index = index, .data = 0x5a5a } } };
	long r = guestmem_sys_ioctl(vcpu, KVM_GET_MSRS, &m);

	*data = m.e[0].data;
	return r;
}

static long cap(int fd, long c)
{
	return guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION, c);
}

static int enable_cap(int vm, uint32_t c, uint64_t arg0)
{
	struct kvm_enable_cap e = { .cap = c, .args = { arg0 } };

	return guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &e);
}

/* ---- profile ------------------------------------------------------------------- */

/* KVM_CAP_MAX_VCPU_ID below the boot vCPU's id: 6.12 and later refuse it. */
TEST_F(test_max_vcpu_id_below_bsp, no_setup, no_teardown)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR);

	(void)state;
	for (unsigned p = 0; p < 3; p++) {
		struct kvm_enable_cap c = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4 } };
		int vm = vm_of(kvm, profiles[p]);

		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_BOOT_CPU_ID, 5), 0);
		if (p == 0) {
			ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &c), 0);
		} else {
			ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &c), EINVAL);
			c.args[0] = 5; /* equal is allowed */
			ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &c), 0);
		}
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* KVM_CREATE_VCPU: 6.8 drops the id's upper half, 6.12 refuses it. */
TEST_F(test_create_vcpu_id_bits, no_setup, no_teardown)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR);

	(void)state;
	for (unsigned p = 0; p < 3; p++) {
		int vm = vm_of(kvm, profiles[p]), vcpu;

		vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, (1UL << 32) | 3);
		if (p == 0) {
			ASSERT_TRUE(vcpu >= 0);
			guestmem_sys_close(vcpu);
		} else {
			ASSERT_EQ(vcpu, -1);
			ASSERT_EQ(errno, EINVAL);
		}
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* Whether this host lets RDTSC fault, which TSC scaling needs (src/vcpu/tsc.c). */
static bool host_tsc_faults(void)
{
	bool ok = prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0;

	return prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0) == 0 && ok;
}

/* The x86 capabilities, the same in every profile. */
TEST_F(test_caps, setup, teardown)
{
	const long scaled = host_tsc_faults();
	const struct { long cap, val; } t[] = {
		{ KVM_CAP_GET_TSC_KHZ, 1 },	    { KVM_CAP_TSC_CONTROL, scaled },
		{ KVM_CAP_VM_TSC_CONTROL, scaled }, { KVM_CAP_MCE, 32 },
		{ KVM_CAP_DEBUGREGS, 1 },	    { KVM_CAP_XSAVE, 1 },
		{ KVM_CAP_XCRS, 1 },		    { KVM_CAP_SET_GUEST_DEBUG, 1 },
		{ KVM_CAP_SET_GUEST_DEBUG2, 0x1f0003 }, { KVM_CAP_X86_USER_SPACE_MSR, 1 },
		{ KVM_CAP_X86_MSR_FILTER, 1 },	    { KVM_CAP_EXCEPTION_PAYLOAD, 1 },
		{ KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1 }, { KVM_CAP_GET_MSR_FEATURES, 1 },
		{ KVM_CAP_SYS_ATTRIBUTES, 1 },	    { KVM_CAP_VCPU_ATTRIBUTES, 1 },
	};
	struct fx *x = *state;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ASSERT_EQ(cap(x->kvm, t[i].cap), t[i].val);
		ASSERT_EQ(cap(x->vm, t[i].cap), t[i].val);
	}
	ASSERT_TRUE(cap(x->kvm, KVM_CAP_XSAVE2) >= 4096);
}

/* ---- TSC frequency ----------------------------------------------------------------- */

/* The guest TSC's rate over 50 ms, in kHz (MSR_IA32_TSC, as the guest reads it). */
static uint64_t measured_khz(int vcpu)
{
	struct timespec ms50 = { 0, 50000000 }, a, b;
	uint64_t t0, t1, ns;

	clock_gettime(CLOCK_MONOTONIC, &a);
	ASSERT_EQ(get_msr(vcpu, 0x10, &t0), 1);
	nanosleep(&ms50, NULL);
	ASSERT_EQ(get_msr(vcpu, 0x10, &t1), 1);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ns = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ULL + (uint64_t)b.tv_nsec -
	     (uint64_t)a.tv_nsec;
	return (t1 - t0) * 1000000ULL / ns;
}

TEST_F(test_tsc_khz, setup, teardown)
{
	struct fx *x = *state;
	long host = guestmem_sys_ioctl(x->vm, KVM_GET_TSC_KHZ, 0);
	bool scaled = host_tsc_faults();
	uint64_t khz;
	int vcpu1;

	ASSERT_TRUE(host > 100000); /* > 100 MHz */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_TSC_KHZ, 0), host);
	/* vCPU: within 250 ppm or faster is fine. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, host * 2), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_TSC_KHZ, 0), host * 2);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, host - host / 10000), 0);
	if (scaled) {
		/* TSC scaling: slower too, and the guest's TSC ticks at that rate
		 * (generous bounds: a loaded 2-core VM stretches the 50 ms). */
		ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, host / 4), 0);
		khz = measured_khz(x->vcpu);
		ASSERT_TRUE(khz > (uint64_t)host / 5 && khz < (uint64_t)host / 3);
		/* At or above kvm_caps.max_guest_tsc_khz (at most 0x7fffffff). */
		ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, 0x7fffffff), EINVAL);
		ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_SET_TSC_KHZ, 0x7fffffff), EINVAL);
	} else {
		/* Slower is refused, but kept. */
		ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, host / 2), EINVAL);
		ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_TSC_KHZ, 0), host / 2);
	}
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_TSC_KHZ, 0), 0); /* host */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_TSC_KHZ, 0), host);
	khz = measured_khz(x->vcpu);
	ASSERT_TRUE(khz > (uint64_t)host * 4 / 5 && khz < (uint64_t)host * 4 / 3);
	/* VM default: new vCPUs start with it. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_TSC_KHZ, 1000000), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_GET_TSC_KHZ, 0), 1000000);
	vcpu1 = guestmem_sys_ioctl(x->vm, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(vcpu1 >= 0);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu1, KVM_GET_TSC_KHZ, 0), 1000000);
	if (scaled) {
		khz = measured_khz(vcpu1);
		ASSERT_TRUE(khz > 800000 && khz < 1330000);
	}
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_TSC_KHZ, 0), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_GET_TSC_KHZ, 0), host);
	guestmem_sys_close(vcpu1);
}

/*
 * kvm_synchronize_tsc(): vCPUs created apart share one TSC, and a VMM
 * restoring nearly equal values on each vCPU gets them synchronised too.
 */
TEST_F(test_tsc_sync, setup, teardown)
{
	struct fx *x = *state;
	struct timespec ms50 = { 0, 50000000 };
	uint64_t t0, t1, hz = (uint64_t)guestmem_sys_ioctl(x->vcpu, KVM_GET_TSC_KHZ, 0) * 1000;
	int vcpu1;

	nanosleep(&ms50, NULL);
	vcpu1 = guestmem_sys_ioctl(x->vm, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(vcpu1 >= 0);
	ASSERT_EQ(get_msr(vcpu1, 0x10, &t1), 1);
	ASSERT_EQ(get_msr(x->vcpu, 0x10, &t0), 1);
	ASSERT_TRUE(t0 >= t1 && t0 - t1 < hz / 50); /* well under the 50 ms apart */
	ASSERT_TRUE(t1 >= hz / 25);		    /* vCPU 1 did not start at 0 */
	/* Restoring a value on each vCPU, a little apart: one offset again. */
	ASSERT_EQ(set_msr(x->vcpu, 0x10, 1ULL << 42), 1);
	nanosleep(&ms50, NULL);
	ASSERT_EQ(set_msr(vcpu1, 0x10, 1ULL << 42), 1);
	ASSERT_EQ(get_msr(vcpu1, 0x10, &t1), 1);
	ASSERT_EQ(get_msr(x->vcpu, 0x10, &t0), 1);
	ASSERT_TRUE(t0 >= t1 && t0 - t1 < hz / 50);
	ASSERT_TRUE(t1 - (1ULL << 42) >= hz / 25);
	/* A value far from the expected one starts over. */
	ASSERT_EQ(set_msr(vcpu1, 0x10, 1ULL << 50), 1);
	ASSERT_EQ(get_msr(vcpu1, 0x10, &t1), 1);
	ASSERT_TRUE(t1 >= (1ULL << 50) && t1 - (1ULL << 50) < hz / 50);
	guestmem_sys_close(vcpu1);
}

/* ---- NR_MMU_PAGES ------------------------------------------------------------------ */

TEST_F(test_nr_mmu_pages, setup, teardown)
{
	struct fx *x = *state;

	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_SET_NR_MMU_PAGES, 0), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_SET_NR_MMU_PAGES, 63), EINVAL);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_NR_MMU_PAGES, 64), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_NR_MMU_PAGES, 1UL << 40), 0);
	/* 6.12 dropped the deprecated getter: the VM fd's default. */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_GET_NR_MMU_PAGES, 0), ENOTTY);
}

/* ---- CPU model ---------------------------------------------------------------------- */

TEST_F(test_cpu_model, setup, teardown)
{
	struct fx *x = *state;
	struct cpuid_buf c;
	struct kvm_cpuid_entry2 *e;
	struct kvm_device_attr a = { .group = 0, .attr = KVM_X86_XCOMP_GUEST_SUPP };
	uint64_t xcr0 = 0;

	supported_cpuid(x->kvm, &c);
	e = leaf(&c, 1, 0);
	ASSERT_NOT_NULL(e);
	ASSERT_TRUE(e->ecx & (1U << 31));  /* hypervisor */
	ASSERT_TRUE(e->ecx & (1U << 21));  /* x2APIC, emulated */
	ASSERT_FALSE(e->ecx & (1U << 5));  /* no VMX */
	ASSERT_FALSE(e->ecx & (1U << 15)); /* no PDCM: no PMU */
	ASSERT_FALSE(e->ecx & (1U << 3));  /* no MONITOR */
	ASSERT_FALSE(e->edx & (1U << 12)); /* no MTRR */
	e = leaf(&c, 0x80000001, 0);
	ASSERT_NOT_NULL(e);
	ASSERT_FALSE(e->ecx & (1U << 2));  /* no SVM */
	ASSERT_FALSE(e->ecx & (1U << 23)); /* no PERFCTR_CORE */
	ASSERT_FALSE(e->edx & (1U << 27)); /* no RDTSCP */
	ASSERT_TRUE(e->edx & (1U << 29));  /* long mode */
	e = leaf(&c, 7, 0);
	ASSERT_NOT_NULL(e);
	ASSERT_TRUE(e->ebx & (1U << 1));   /* TSC_ADJUST, emulated */
	ASSERT_TRUE(e->edx & (1U << 29));  /* ARCH_CAPABILITIES, emulated */
	ASSERT_FALSE(e->ecx & ((1U << 2) | (1U << 3) | (1U << 22))); /* UMIP PKU RDPID */
	e = leaf(&c, 0xa, 0);
	if (e)
		ASSERT_TRUE(!e->eax && !e->ebx && !e->ecx && !e->edx);
	e = leaf(&c, 0x40000000, 0);
	ASSERT_NOT_NULL(e);
	ASSERT_MEM_EQ(&e->ebx, "KVMKVMKVM\0\0\0", 12);
	ASSERT_EQ(e->eax, 0x40000001);
	e = leaf(&c, 0x40000001, 0);
	ASSERT_NOT_NULL(e);
	/* NOP_IO_DELAY, MAP_GPA_RANGE; STEAL_TIME where the host has schedstats. */
	ASSERT_EQ(e->eax, (1U << 1) | (1U << 16) |
			  (access("/proc/thread-self/schedstat", R_OK) ? 0 : 1U << 5));
	/* Leaf 0xD agrees with the system attribute. */
	a.addr = (uint64_t)(uintptr_t)&xcr0;
	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), 0);
	e = leaf(&c, 0xd, 0);
	ASSERT_NOT_NULL(e);
	ASSERT_EQ(e->eax, (uint32_t)xcr0);
	ASSERT_EQ(xcr0 & 3, 3);
	e = leaf(&c, 0xd, 1);
	ASSERT_NOT_NULL(e);
	ASSERT_FALSE(e->eax & (1U << 3)); /* no XSAVES */
}

/* ---- device attributes ----------------------------------------------------------- */

TEST_F(test_device_attr, setup, teardown)
{
	static const struct { uint32_t group; uint64_t attr; int err; } t[] = {
		{ 0, 0, 0 }, { 0, 1, ENXIO }, { 1, 0, 0 }, { 1, 1, ENXIO }, { 2, 0, ENXIO },
	};
	struct fx *x = *state;
	uint64_t val = 0, off = 0;
	struct kvm_device_attr a = { .addr = (uint64_t)(uintptr_t)&val };

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		a.group = t[i].group;
		a.attr = t[i].attr;
		if (t[i].err) {
			ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_HAS_DEVICE_ATTR, &a), t[i].err);
			ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), t[i].err);
		} else {
			ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_HAS_DEVICE_ATTR, &a), 0);
			ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), 0);
		}
	}
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_HAS_DEVICE_ATTR, NULL), EFAULT);
	a.group = 0, a.attr = 0, a.addr = 0;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), EFAULT);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_SET_DEVICE_ATTR, &a), EINVAL);
	/* The vCPU's TSC offset (KVM_VCPU_TSC_CTRL / KVM_VCPU_TSC_OFFSET). */
	a.addr = (uint64_t)(uintptr_t)&off;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_HAS_DEVICE_ATTR, &a), 0);
	off = 12345;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEVICE_ATTR, &a), 0);
	off = 0;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_DEVICE_ATTR, &a), 0);
	ASSERT_EQ(off, 12345);
	/* A VMM's TSC write within a second of that one joins its offset. */
	ASSERT_EQ(get_msr(x->vcpu, 0x10, &val), 1);
	ASSERT_EQ(set_msr(x->vcpu, 0x10, val + 1000), 1);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_DEVICE_ATTR, &a), 0);
	ASSERT_EQ(off, 12345);
	a.attr = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_HAS_DEVICE_ATTR, &a), ENXIO);
	a.attr = 0, a.group = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_DEVICE_ATTR, &a), ENXIO);
}

/* ---- MSR lists and feature MSRs ----------------------------------------------------- */

TEST_F(test_msr_feature_lists, setup, teardown)
{
	struct fx *x = *state;
	struct {
		struct kvm_msr_list hdr;
		uint32_t idx[300];
	} l = { { 1 } };
	struct msrs1 m = { { .nmsrs = 3 },
			   { { .index = 0x10a }, { .index = 0x10 }, { .index = 0xdead } } };
	bool pat = false, efer = false;

	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, &l), E2BIG);
	ASSERT_EQ(l.hdr.nmsrs, 4); /* written back before E2BIG */
	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, &l), 0);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_MSR_FEATURE_INDEX_LIST, NULL), EFAULT);
	l.hdr.nmsrs = 300;
	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_MSR_INDEX_LIST, &l), 0);
	for (uint32_t i = 0; i < l.hdr.nmsrs; i++) {
		pat |= l.idx[i] == 0x277;
		efer |= l.idx[i] == 0xc0000080;
	}
	ASSERT_TRUE(pat);
	ASSERT_FALSE(efer); /* EFER travels in the sregs */
	/* /dev/kvm KVM_GET_MSRS: a feature MSR, an advertised one (reads 0),
	 * then an unknown one stops the array. */
	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_MSRS, &m), 2);
	ASSERT_TRUE(m.e[0].data & (1ULL << 6)); /* PSCHANGE_MC_NO */
	ASSERT_EQ(m.e[1].data, 0);
	m.hdr.nmsrs = 256;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_MSRS, &m), E2BIG);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_GET_MSRS, NULL), EFAULT);
	uint64_t cap_supp = 0;
	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, &cap_supp), 0);
	ASSERT_EQ(cap_supp, (1ULL << 8) | (1ULL << 24));
	ASSERT_ERRNO(guestmem_sys_ioctl(x->kvm, KVM_X86_GET_MCE_CAP_SUPPORTED, NULL), EFAULT);
}

/* ---- vCPU MSR values ------------------------------------------------------------------ */

TEST_F(test_msr_values, setup, teardown)
{
	static const struct { uint32_t index; uint64_t data; long processed; } t[] = {
		{ 0xc0000080, 1, 1 },			/* EFER.SCE */
		{ 0xc0000080, 1ULL << 1, 0 },		/* EFER reserved bit */
		{ 0xc0000080, 1ULL << 12, 0 },		/* SVME: no nesting */
		{ 0x277, 0x0007040600070406ULL, 1 },	/* PAT power-on value */
		{ 0x277, 0x02, 0 },			/* PAT type 2 */
		{ 0x277, 0x08, 0 },			/* PAT reserved bit */
		{ 0xc0000100, 0xffff800000000000ULL, 1 }, /* FS_BASE canonical */
		{ 0xc0000100, 0x0000800000000000ULL, 0 }, /* non-canonical */
		{ 0xc0000102, 0x8000000000000000ULL, 0 }, /* KERNEL_GS_BASE */
		{ 0xc0000082, 0x0001000000000000ULL, 0 }, /* LSTAR */
		{ 0x176, 0x0000800000000000ULL, 1 },	/* SYSENTER_EIP: made canonical */
		{ 0x1b, 0xfee00900ULL, 1 },		/* APIC_BASE enabled, BSP */
		{ 0x1b, 0xfee00a00ULL, 0 },		/* reserved bit 9 */
		{ 0x1b, 0xfee00400ULL, 0 },		/* x2APIC without xAPIC enable */
		{ 0x1a0, ~0ULL, 1 },			/* MISC_ENABLE: any host value */
		{ 0x17b, 5, 0 },			/* MCG_CTL: 0 or all ones */
		{ 0x400, 5, 0 },			/* MC0_CTL likewise */
		{ 0x400, ~0ULL & ~(1ULL << 10), 1 },	/* bit 10 may be clear */
		{ 0x400 + 4 * 32, 0, 0 },		/* beyond the banks */
		{ 0x345, 1, 0 },			/* PERF_CAPABILITIES: no PMU */
		{ 0x4b564d05, 2, 0 },			/* POLL_CONTROL reserved bit */
		{ 0x4b564d03, 0x2, 0 },			/* STEAL_TIME reserved bits */
		{ 0xdeadbeef, 0, 0 },			/* unknown */
		{ 0xdeadbeef, 1, 0 },
		{ 0x140, 1, 0 },			/* CPUID faulting not offered */
	};
	struct fx *x = *state;
	struct msrs1 m = { { .nmsrs = 3 },
			   { { .index = 0x277, .data = PAT_OK }, { .index = 0x277, .data = 0x02 },
			     { .index = 0x277, .data = PAT_OK } } };
	uint64_t v, t0;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		DIAG("msr %#x data %#llx", t[i].index, (unsigned long long)t[i].data);
		ASSERT_EQ(set_msr(x->vcpu, t[i].index, t[i].data), t[i].processed);
	}
	/* The array stops at the first refused entry. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_MSRS, &m), 1);
	ASSERT_EQ(get_msr(x->vcpu, 0x176, &v), 1);
	ASSERT_EQ(v, 0xffff800000000000ULL);
	ASSERT_EQ(get_msr(x->vcpu, 0x1a0, &v), 1);
	ASSERT_EQ(v, ~0ULL);
	ASSERT_EQ(get_msr(x->vcpu, 0xdeadbeef, &v), 0);
	ASSERT_EQ(v, 0); /* a failed read is zeroed */
	ASSERT_EQ(get_msr(x->vcpu, 0x179, &v), 1); /* MCG_CAP */
	ASSERT_EQ(v, 32);
	/* TSC: a host write sets the guest's count, which then ticks. */
	ASSERT_EQ(set_msr(x->vcpu, 0x10, 1ULL << 40), 1);
	ASSERT_EQ(get_msr(x->vcpu, 0x10, &t0), 1);
	ASSERT_TRUE(t0 >= (1ULL << 40) && t0 < (1ULL << 40) + (1ULL << 36));
	/* EFER through the MSR is the sregs' EFER, LMA kept. */
	ASSERT_EQ(set_msr(x->vcpu, 0xc0000080, 0x501), 1); /* SCE|LME|LMA(ignored)|NX */
	ASSERT_EQ(get_msr(x->vcpu, 0xc0000080, &v), 1);
	ASSERT_EQ(v, 0x101);
}

TEST_F(test_msr_reset_values, setup, teardown)
{
	struct fx *x = *state;
	uint64_t v;

	ASSERT_EQ(get_msr(x->vcpu, 0x277, &v), 1);
	ASSERT_EQ(v, PAT_OK);
	ASSERT_EQ(get_msr(x->vcpu, 0x1a0, &v), 1);
	ASSERT_EQ(v, 0x1800); /* BTS and PEBS unavailable */
	ASSERT_EQ(get_msr(x->vcpu, 0x1b, &v), 1);
	ASSERT_EQ(v, 0xfee00900);
	ASSERT_EQ(get_msr(x->vcpu, 0x4b564d05, &v), 1);
	ASSERT_EQ(v, 1); /* poll control */
	ASSERT_EQ(get_msr(x->vcpu, 0x10a, &v), 1);
	ASSERT_TRUE(v & (1ULL << 6));
}

/* ---- MSR filter and user-space MSR exits --------------------------------------------- */

TEST_F(test_msr_filter, setup, teardown)
{
	struct fx *x = *state;
	uint8_t bitmap[0x600];
	struct kvm_msr_filter f;

	memset(bitmap, 0xff, sizeof(bitmap));
	memset(&f, 0, sizeof(f));
	f.flags = 2;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EINVAL);
	f.flags = KVM_MSR_FILTER_DEFAULT_DENY; /* deny everything: refused */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EINVAL);
	f.flags = 0; /* allow everything: an empty filter is fine */
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), 0);
	f.ranges[0] = (struct kvm_msr_filter_range){ .flags = 4, .nmsrs = 1, .bitmap = bitmap };
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EINVAL);
	f.ranges[0].flags = 0;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EINVAL);
	f.ranges[0].flags = KVM_MSR_FILTER_READ;
	f.ranges[0].nmsrs = 0x600 * 8 + 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EINVAL);
	f.ranges[0].nmsrs = 0x600 * 8;
	f.ranges[0].bitmap = NULL;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), EFAULT);
	f.ranges[0].bitmap = bitmap;
	f.ranges[1] = (struct kvm_msr_filter_range){ .flags = 7, .nmsrs = 0 }; /* skipped */
	f.flags = KVM_MSR_FILTER_DEFAULT_DENY;
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, &f), 0);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_X86_SET_MSR_FILTER, NULL), EFAULT);
	/* KVM_CAP_X86_USER_SPACE_MSR: INVAL | UNKNOWN | FILTER only. */
	ASSERT_ERRNO(enable_cap(x->vm, KVM_CAP_X86_USER_SPACE_MSR, 8), EINVAL);
	ASSERT_EQ(enable_cap(x->vm, KVM_CAP_X86_USER_SPACE_MSR, 7), 0);
}

/* ---- LAPIC ------------------------------------------------------------------------- */

static uint32_t apic_reg(const struct kvm_lapic_state *s, unsigned off)
{
	uint32_t v;

	memcpy(&v, s->regs + off, 4);
	return v;
}

static void apic_set(struct kvm_lapic_state *s, unsigned off, uint32_t v)
{
	memcpy(s->regs + off, &v, 4);
}

TEST_F(test_lapic_needs_irqchip, setup_noirqchip, teardown)
{
	struct fx *x = *state;
	struct kvm_lapic_state s;

	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, &s), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_LAPIC, &s), EINVAL);
	/* The LAPIC check comes before the copy. */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, NULL), EINVAL);
}

TEST_F(test_lapic, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_lapic_state s;
	struct cpuid_buf c;
	uint32_t left;

	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, &s), 0);
	ASSERT_EQ(apic_reg(&s, 0x20), 0);	  /* ID of vCPU 0 */
	ASSERT_EQ(apic_reg(&s, 0x30), 0x50014);	  /* version, 6 LVTs */
	ASSERT_EQ(apic_reg(&s, 0xf0), 0xff);	  /* SPIV */
	ASSERT_EQ(apic_reg(&s, 0xe0), 0xffffffff); /* DFR */
	ASSERT_EQ(apic_reg(&s, 0x320), 0x10000);  /* LVTT masked */
	ASSERT_EQ(apic_reg(&s, 0x350), 0x700);	  /* LINT0 ExtINT on the BSP */
	ASSERT_EQ(apic_reg(&s, 0x370), 0x10000);  /* LVTERR masked */
	/* TPR and ISR give the PPR; LVR is KVM's whatever is written. */
	apic_set(&s, 0x80, 0x20);
	apic_set(&s, 0x100 + 0x10 * 2, 1U << 16); /* vector 80 in service */
	apic_set(&s, 0x30, 0x12345678);
	/* A running one-shot count: TMICT, the current count, divide by 1. */
	apic_set(&s, 0x380, 2000000000U);
	apic_set(&s, 0x390, 2000000000U);
	apic_set(&s, 0x3e0, 0xb);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_LAPIC, &s), 0);
	memset(&s, 0, sizeof(s));
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, &s), 0);
	ASSERT_EQ(apic_reg(&s, 0x80), 0x20);
	ASSERT_EQ(apic_reg(&s, 0xa0), 0x50);
	ASSERT_EQ(apic_reg(&s, 0x30), 0x50014);
	left = apic_reg(&s, 0x390);
	ASSERT_TRUE(left > 0 && left < 2000000000U);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_LAPIC, NULL), EFAULT);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, NULL), EFAULT);
	/* x2APIC needs it in the guest CPUID (else EXTD is a reserved bit). */
	ASSERT_EQ(set_msr(x->vcpu, 0x1b, 0xfee00d00ULL), 0);
	supported_cpuid(x->kvm, &c);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_CPUID2, &c), 0);
	/* x2APIC mode: the ID reads as vcpu_id << 24, a written one is ignored. */
	ASSERT_EQ(set_msr(x->vcpu, 0x1b, 0xfee00d00ULL), 1);
	apic_set(&s, 0x20, 0x77);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_LAPIC, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_LAPIC, &s), 0);
	ASSERT_EQ(apic_reg(&s, 0x20), 0);
	ASSERT_EQ(apic_reg(&s, 0xd0), 1); /* x2APIC LDR of ID 0 */
}

/* ---- XSAVE and FPU ---------------------------------------------------------------------- */

TEST_F(test_xsave, setup, teardown)
{
	struct fx *x = *state;
	static uint8_t b[4096], b2[4096];
	struct kvm_fpu fpu;
	uint64_t xfeat, supp = 0;
	struct kvm_device_attr a = { .addr = (uint64_t)(uintptr_t)&supp };
	uint16_t fcw;
	uint32_t mxcsr;

	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_XSAVE, b), 0);
	memcpy(&fcw, b, 2);
	memcpy(&mxcsr, b + 24, 4);
	ASSERT_EQ(fcw, 0x37f);
	ASSERT_EQ(mxcsr, 0x1f80);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_XSAVE2, b2), 0);
	ASSERT_MEM_EQ(b, b2, sizeof(b));
	/* Header checks, each on an otherwise valid area. */
	for (int c = 0; c < 4; c++) {
		memcpy(b2, b, sizeof(b));
		xfeat = 3;
		if (c == 0)
			xfeat = supp | (1ULL << 62); /* beyond XCR0 */
		memcpy(b2 + 512, &xfeat, 8);
		if (c == 1)
			b2[512 + 8] = 1; /* xcomp_bv: compacted */
		if (c == 2)
			b2[512 + 40] = 1; /* reserved header byte */
		if (c == 3)
			b2[24 + 3] = 0x80; /* MXCSR bit 31 */
		ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XSAVE, b2), EINVAL);
	}
	/* MXCSR is not looked at when no FP/SSE/AVX state is given. */
	memcpy(b2, b, sizeof(b));
	xfeat = 0;
	memcpy(b2 + 512, &xfeat, 8);
	b2[24 + 3] = 0x80;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_XSAVE, b2), 0);
	/* SSE state round-trips, and KVM_GET_FPU sees the same registers. */
	memcpy(b2, b, sizeof(b));
	xfeat = 3;
	memcpy(b2 + 512, &xfeat, 8);
	memset(b2 + 160, 0xa5, 16); /* XMM0 */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_XSAVE, b2), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_FPU, &fpu), 0);
	ASSERT_EQ(fpu.xmm[0][0], 0xa5);
	ASSERT_EQ(fpu.fcw, 0x37f);
	fpu.fcw = 0x27f;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_FPU, &fpu), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_XSAVE, b2), 0);
	memcpy(&fcw, b2, 2);
	ASSERT_EQ(fcw, 0x27f);
	ASSERT_EQ(b2[160], 0xa5);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XSAVE, NULL), EFAULT);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_XSAVE2, NULL), EFAULT);
}

/* KVM_GET/SET_XCRS: XCR0 alone, x87 at reset, checked as XSETBV checks it. */
TEST_F(test_xcrs, setup, teardown)
{
	struct fx *x = *state;
	static struct cpuid_buf c;
	struct kvm_xcrs r, w;
	uint64_t supp = 0;
	struct kvm_device_attr a = { .addr = (uint64_t)(uintptr_t)&supp };

	ASSERT_EQ(guestmem_sys_ioctl(x->kvm, KVM_GET_DEVICE_ATTR, &a), 0);
	memset(&r, 0xa5, sizeof(r));
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_XCRS, &r), 0);
	ASSERT_EQ(r.nr_xcrs, 1);
	ASSERT_EQ(r.flags, 0);
	ASSERT_EQ(r.xcrs[0].xcr, 0);
	ASSERT_EQ(r.xcrs[0].value, 1);
	ASSERT_EQ(r.xcrs[1].value, 0); /* the rest zeroed */
	memset(&w, 0, sizeof(w));
	w.nr_xcrs = 1;
	w.xcrs[0].value = 3;
	/* Before KVM_SET_CPUID2 the guest may have x87 only. */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), EINVAL);
	supported_cpuid(x->kvm, &c);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_CPUID2, &c), 0);
	w.flags = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), EINVAL);
	w.flags = 0;
	w.nr_xcrs = KVM_MAX_XCRS + 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), EINVAL);
	w.nr_xcrs = 1;
	w.xcrs[0].value = 2; /* no x87 */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), EINVAL);
	w.xcrs[0].value = 5; /* AVX without SSE */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), EINVAL);
	/* Other XCRs are ignored; the first XCR0 entry counts. */
	w.nr_xcrs = 3;
	w.xcrs[0] = (struct kvm_xcr){ .xcr = 1, .value = 0x55 };
	w.xcrs[1] = (struct kvm_xcr){ .xcr = 0, .value = supp & 7 };
	w.xcrs[2] = (struct kvm_xcr){ .xcr = 0, .value = 2 };
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, &w), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_XCRS, &r), 0);
	ASSERT_EQ(r.nr_xcrs, 1);
	ASSERT_EQ(r.xcrs[0].value, supp & 7);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_XCRS, NULL), EFAULT);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_XCRS, NULL), EFAULT);
}

/* ---- events ------------------------------------------------------------------------------ */

TEST_F(test_vcpu_events, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_vcpu_events e;
	struct kvm_mp_state mp = { KVM_MP_STATE_INIT_RECEIVED };
	static const struct { uint32_t flags; uint8_t inj, nr; int err; } t[] = {
		{ 0x40, 0, 0, EINVAL },				/* unknown flag */
		{ KVM_VCPUEVENT_VALID_PAYLOAD, 0, 0, EINVAL },	/* cap not enabled */
		{ 0, 1, 2, EINVAL },				/* NMI as an exception */
		{ 0, 1, 32, EINVAL },				/* not an exception */
		{ KVM_VCPUEVENT_VALID_TRIPLE_FAULT, 0, 0, EINVAL }, /* cap not enabled */
		{ 0, 1, 13, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		memset(&e, 0, sizeof(e));
		e.flags = t[i].flags;
		e.exception.injected = t[i].inj;
		e.exception.nr = t[i].nr;
		if (t[i].err)
			ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), t[i].err);
		else
			ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	}
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(e.flags, KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW |
					  KVM_VCPUEVENT_VALID_SMM);
	ASSERT_EQ(e.exception.injected, 1);
	ASSERT_EQ(e.exception.nr, 13);
	/* NMIs: at most two queued, one while masked; AMD's single shadow bit. */
	memset(&e, 0, sizeof(e));
	e.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	e.nmi.pending = 5;
	e.interrupt.shadow = 1;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(e.nmi.pending, 2);
	ASSERT_EQ(e.interrupt.shadow, 3);
	e.nmi.masked = 1;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(e.nmi.pending, 1);
	/* #BP is a software exception: not reported as injected. */
	memset(&e, 0, sizeof(e));
	e.exception.injected = 1;
	e.exception.nr = 3;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(e.exception.injected, 0);
	ASSERT_EQ(e.exception.nr, 3);
	/* With the payload ABI and triple-fault events enabled. */
	ASSERT_EQ(enable_cap(x->vm, KVM_CAP_EXCEPTION_PAYLOAD, 1), 0);
	ASSERT_EQ(enable_cap(x->vm, KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1), 0);
	memset(&e, 0, sizeof(e));
	e.flags = KVM_VCPUEVENT_VALID_PAYLOAD | KVM_VCPUEVENT_VALID_TRIPLE_FAULT;
	e.exception.pending = 1;
	e.exception.nr = 14;
	e.exception_has_payload = 1;
	e.exception_payload = 0x1000;
	e.triple_fault.pending = 1;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_TRUE(e.flags & KVM_VCPUEVENT_VALID_PAYLOAD);
	ASSERT_EQ(e.exception.pending, 1);
	ASSERT_EQ(e.exception.injected, 0);
	ASSERT_EQ(e.exception_payload, 0x1000);
	ASSERT_EQ(e.triple_fault.pending, 1);
	/* SMIs are refused while an INIT is latched. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_MP_STATE, &mp), 0);
	memset(&e, 0, sizeof(e));
	e.flags = KVM_VCPUEVENT_VALID_SMM;
	e.smi.pending = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, &e), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_VCPU_EVENTS, NULL), EFAULT);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, NULL), EFAULT);
}

/* SMM state without CONFIG_KVM_SMM is refused. */
TEST_F(test_vcpu_events_nosmm, no_setup, no_teardown)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR), vm, vcpu;
	struct kvm_vcpu_events e = { .flags = KVM_VCPUEVENT_VALID_SMM, .smi = { .smm = 1 } };

	(void)state;
	ASSERT_EQ(guestmem_config_set("linux-6.12", "KVM_SMM=n", NULL), 0);
	vm = guestmem_sys_ioctl(kvm, KVM_CREATE_VM, 0);
	vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_VCPU_EVENTS, &e), EINVAL);
	e.smi.smm = 0;
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_config_set(NULL, "KVM_SMM=y", NULL), 0);
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

/* ---- debug registers, guest debug, MCE ------------------------------------------------ */

TEST_F(test_debugregs, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_debugregs d;

	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_DEBUGREGS, &d), 0);
	ASSERT_EQ(d.dr6, 0xffff0ff0);
	ASSERT_EQ(d.dr7, 0x400);
	d.flags = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEBUGREGS, &d), EINVAL);
	d.flags = 0;
	d.dr6 = 1ULL << 32;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEBUGREGS, &d), EINVAL);
	d.dr6 = 0xffff0ff1;
	d.dr7 = 1ULL << 32;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEBUGREGS, &d), EINVAL);
	d.dr7 = 0x401;
	d.db[2] = 0x1234;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEBUGREGS, &d), 0);
	memset(&d, 0, sizeof(d));
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_DEBUGREGS, &d), 0);
	ASSERT_EQ(d.db[2], 0x1234);
	ASSERT_EQ(d.dr6, 0xffff0ff1);
	ASSERT_EQ(d.dr7, 0x401);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_DEBUGREGS, NULL), EFAULT);
}

TEST_F(test_guest_debug, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_guest_debug g = { .control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP };
	struct kvm_vcpu_events e;

	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_GUEST_DEBUG, &g), 0);
	g.control = KVM_GUESTDBG_ENABLE | (1U << 30); /* unknown bits are kept */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_GUEST_DEBUG, &g), 0);
	/* Injecting #DB queues it; a second one while it is pending is EBUSY. */
	g.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_INJECT_DB;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_GUEST_DEBUG, &g), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(e.exception.injected, 1); /* pending, reported so without payloads */
	ASSERT_EQ(e.exception.nr, 1);
	g.control = KVM_GUESTDBG_INJECT_BP;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_GUEST_DEBUG, &g), EBUSY);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_SET_GUEST_DEBUG, NULL), EFAULT);
}

TEST_F(test_setup_mce, setup, teardown)
{
	static const struct { uint64_t cap; int err; } t[] = {
		{ 0, EINVAL },			   /* no banks */
		{ 33, EINVAL },			   /* more than KVM_MAX_MCE_BANKS */
		{ 10 | (1ULL << 10), EINVAL },	   /* CMCI: not on AMD */
		{ 10 | (1ULL << 9), EINVAL },	   /* reserved */
		{ 10 | (1ULL << 8) | (1ULL << 24) | 0x30000, 0 },
	};
	struct fx *x = *state;
	uint64_t v;

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		if (t[i].err)
			ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_X86_SETUP_MCE, &t[i].cap),
				     t[i].err);
		else
			ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_X86_SETUP_MCE, &t[i].cap), 0);
	}
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_X86_SETUP_MCE, NULL), EFAULT);
	ASSERT_EQ(get_msr(x->vcpu, 0x179, &v), 1);
	ASSERT_EQ(v, t[4].cap);
	ASSERT_EQ(get_msr(x->vcpu, 0x17b, &v), 1); /* MCG_CTL all ones */
	ASSERT_EQ(v, ~0ULL);
	ASSERT_EQ(get_msr(x->vcpu, 0x400 + 4 * 9, &v), 1); /* MC9_CTL */
	ASSERT_EQ(v, ~0ULL);
	ASSERT_EQ(get_msr(x->vcpu, 0x400 + 4 * 10, &v), 0); /* bank 10: none */
}

/* ---- SET_SREGS: CR4 and EFER checks in 6.12's order --------------------------------- */

TEST_F(test_sregs_cr4_order, no_setup, no_teardown)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR);
	struct cpuid_buf c;

	(void)state;
	supported_cpuid(kvm, &c);
	for (unsigned p = 0; p < 3; p++) {
		int vm = vm_of(kvm, profiles[p]), vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
		struct kvm_cpuid_entry2 *e1;
		struct kvm_sregs s;

		ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_SREGS, &s), 0);
		/* Before KVM_SET_CPUID2 only the CPU model limits CR4. */
		s.cr4 = (1ULL << 18) | (1ULL << 9); /* OSXSAVE, OSFXSR */
		ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), 0);
		s.cr4 = 1ULL << 13; /* VMXE: not in the model */
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), EINVAL);
		s.cr4 = 1ULL << 23; /* CET: never offered */
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), EINVAL);
		/* 6.12 checks EFER against the guest CPUID, which is empty yet. */
		s.cr4 = 0;
		s.efer = 1ULL << 11; /* NX */
		if (p == 0)
			ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), 0);
		else
			ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), EINVAL);
		/* After a CPUID without XSAVE, OSXSAVE is reserved. */
		e1 = leaf(&c, 1, 0);
		e1->ecx &= ~(1U << 26);
		ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_CPUID2, &c), 0);
		e1->ecx |= 1U << 26;
		s.cr4 = 1ULL << 18;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), EINVAL);
		s.cr4 = 0; /* NX now in the guest CPUID */
		ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_SREGS, &s), 0);
		guestmem_sys_close(vcpu);
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* ---- KVM_TRANSLATE and the page-table walker ---------------------------------------- */

#define PTE_P 1ULL
#define PTE_RW 2ULL
#define PTE_US 4ULL
#define PTE_A 0x20ULL
#define PTE_D 0x40ULL
#define PTE_PS 0x80ULL
#define PTE_XD (1ULL << 63)

/* 4-level tables at gpa 0x1000..0x4000: 0x400000 -> 0x10000 (4 KiB),
 * 0x600000 -> 0x200000 (2 MiB page). */
static void build_tables(uint64_t *mem /* indexed by gpa / 8 */, uint64_t leaf_flags)
{
	mem[0x1000 / 8] = 0x2000 | PTE_P | PTE_RW | PTE_US;
	mem[0x2000 / 8] = 0x3000 | PTE_P | PTE_RW | PTE_US;
	mem[0x3000 / 8 + 2] = 0x4000 | PTE_P | PTE_RW | PTE_US;
	mem[0x3000 / 8 + 3] = 0x200000 | PTE_P | PTE_RW | PTE_PS;
	mem[0x4000 / 8] = 0x10000 | leaf_flags;
}

TEST_F(test_translate, setup_noirqchip, teardown)
{
	struct fx *x = *state;
	size_t size = 4 << 20;
	uint64_t *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = size,
						 .userspace_addr = (uint64_t)(uintptr_t)mem };
	struct kvm_translation tr = { .linear_address = 0x400123 };
	struct cpuid_buf c;
	struct kvm_sregs s;

	ASSERT_TRUE(mem != MAP_FAILED);
	build_tables(mem, PTE_P | PTE_RW);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	/* Paging off: the linear address is the physical one. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_TRANSLATE, &tr), 0);
	ASSERT_EQ(tr.valid, 1);
	ASSERT_EQ(tr.physical_address, 0x400123);
	/* Long mode with our tables (6.12 wants LM in the guest CPUID first). */
	supported_cpuid(x->kvm, &c);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_CPUID2, &c), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_GET_SREGS, &s), 0);
	s.cr0 = 0x80000011; /* PG | ET | PE */
	s.cr4 = 0x20;	    /* PAE */
	s.efer = 0x500;	    /* LME | LMA */
	s.cr3 = 0x1000;
	s.cs.l = 1;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_TRANSLATE, &tr), 0);
	ASSERT_EQ(tr.valid, 1);
	ASSERT_EQ(tr.physical_address, 0x10123);
	ASSERT_EQ(tr.writeable, 1);
	ASSERT_EQ(tr.usermode, 0);
	/* The walk set the accessed bits (a read: no dirty bit). */
	ASSERT_TRUE(mem[0x1000 / 8] & PTE_A);
	ASSERT_TRUE(mem[0x4000 / 8] & PTE_A);
	ASSERT_FALSE(mem[0x4000 / 8] & PTE_D);
	tr.linear_address = 0x601234; /* the 2 MiB page */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_TRANSLATE, &tr), 0);
	ASSERT_EQ(tr.physical_address, 0x201234);
	tr.linear_address = 0x800000; /* not present */
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_TRANSLATE, &tr), 0);
	ASSERT_EQ(tr.valid, 0);
	ASSERT_EQ(tr.physical_address, ~0ULL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vcpu, KVM_TRANSLATE, NULL), EFAULT);
	r.memory_size = 0;
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	munmap(mem, size);
}

/* Walker cases on a flat array standing in for guest memory. */
static uint64_t walk_mem[0x20000 / 8];

static int fake_read(void *ctx, uint64_t gpa, unsigned size, uint64_t *val)
{
	(void)ctx;
	if (gpa + size > sizeof(walk_mem))
		return -EFAULT;
	*val = 0;
	memcpy(val, (uint8_t *)walk_mem + gpa, size);
	return 0;
}

static int fake_cmpxchg(void *ctx, uint64_t gpa, unsigned size, uint64_t old, uint64_t nv)
{
	uint64_t cur;

	if (fake_read(ctx, gpa, size, &cur))
		return -EFAULT;
	if (cur != old)
		return 1;
	memcpy((uint8_t *)walk_mem + gpa, &nv, size);
	return 0;
}

TEST_F(test_walker, no_setup, no_teardown)
{
	static const struct {
		const char *what;
		uint64_t leaf;	/* flags of the 4 KiB PTE */
		uint64_t cr0, cr4, efer, rflags;
		uint32_t access;
		int ret;
		uint32_t ec;
	} t[] = {
		{ "read", PTE_P, 0, 0, 0, 0, 0, 0, 0 },
		{ "not present", 0, 0, 0, 0, 0, 0, 1, 0 },
		{ "write, read-only, WP", PTE_P, 1 << 16, 0, 0, 0, X86_PF_WRITE, 1, 3 },
		{ "supervisor write, read-only, no WP", PTE_P, 0, 0, 0, 0, X86_PF_WRITE, 0, 0 },
		{ "user read of a supervisor page", PTE_P, 0, 0, 0, 0, X86_PF_USER, 1, 5 },
		{ "user write, read-only, no WP", PTE_P | PTE_US, 0, 0, 0, 0,
		  X86_PF_USER | X86_PF_WRITE, 1, 7 },
		{ "fetch from XD with NXE", PTE_P | PTE_XD, 0, 0, 1 << 11, 0, X86_PF_FETCH, 1, 0x11 },
		{ "XD without NXE is reserved", PTE_P | PTE_XD, 0, 0, 0, 0, 0, 1, 9 },
		{ "bit 51 above MAXPHYADDR", PTE_P | (1ULL << 51), 0, 0, 0, 0, 0, 1, 9 },
		{ "SMEP: supervisor fetch of a user page", PTE_P | PTE_US, 0, 1 << 20, 1 << 11, 0,
		  X86_PF_FETCH, 1, 0x11 },
		{ "SMAP: supervisor read of a user page", PTE_P | PTE_US, 0, 1 << 21, 0, 0, 0, 1, 1 },
		{ "SMAP with RFLAGS.AC", PTE_P | PTE_US, 0, 1 << 21, 0, 1 << 18, 0, 0, 0 },
		{ "SMAP implicit access ignores AC", PTE_P | PTE_US, 0, 1 << 21, 0, 1 << 18,
		  X86_PF_IMPLICIT, 1, 1 },
	};
	const struct x86_walk_ops ops = { fake_read, fake_cmpxchg, NULL };

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct x86_walk_mode m = { .cr0 = (1ULL << 31) | 1 | t[i].cr0, .cr3 = 0x1000,
					   .cr4 = (1 << 5) | t[i].cr4, .efer = 0x500 | t[i].efer,
					   .rflags = t[i].rflags, .maxphyaddr = 48, .gbpages = true };
		struct x86_walk_result res;

		DIAG("walk: %s", t[i].what);
		memset(walk_mem, 0, sizeof(walk_mem));
		build_tables(walk_mem, t[i].leaf);
		ASSERT_EQ(x86_walk(&m, 0x400abc, t[i].access, &ops, &res), t[i].ret);
		if (t[i].ret) {
			ASSERT_EQ(res.error_code, t[i].ec);
			ASSERT_FALSE(walk_mem[0x4000 / 8] & PTE_A); /* faults set nothing */
		} else {
			ASSERT_EQ(res.gpa, 0x10abc);
			ASSERT_TRUE(walk_mem[0x4000 / 8] & PTE_A);
		}
	}
}

TEST_F(test_walker_modes, no_setup, no_teardown)
{
	const struct x86_walk_ops ops = { fake_read, fake_cmpxchg, NULL };
	struct x86_walk_mode m = { .cr0 = (1ULL << 31) | 1 | (1 << 16), .cr3 = 0x1000,
				   .cr4 = 1 << 5, .efer = 0x500, .maxphyaddr = 48, .gbpages = true };
	struct x86_walk_result res;
	uint32_t *m32 = (uint32_t *)walk_mem;

	(void)state;
	/* A write sets D on the leaf only. */
	memset(walk_mem, 0, sizeof(walk_mem));
	build_tables(walk_mem, PTE_P | PTE_RW);
	ASSERT_EQ(x86_walk(&m, 0x400000, X86_PF_WRITE, &ops, &res), 0);
	ASSERT_TRUE(walk_mem[0x4000 / 8] & PTE_D);
	ASSERT_FALSE(walk_mem[0x3000 / 8 + 2] & PTE_D);
	/* 2 MiB page; its low frame bits are reserved. */
	ASSERT_EQ(x86_walk(&m, 0x6abcde, 0, &ops, &res), 0);
	ASSERT_EQ(res.gpa, 0x2abcde);
	ASSERT_EQ(res.level, 2);
	walk_mem[0x3000 / 8 + 3] |= 1ULL << 13;
	ASSERT_EQ(x86_walk(&m, 0x6abcde, 0, &ops, &res), 1);
	ASSERT_EQ(res.error_code, X86_PF_PRESENT | X86_PF_RSVD);
	/* PS in a PML4E is reserved. */
	walk_mem[0x1000 / 8] |= PTE_PS;
	ASSERT_EQ(x86_walk(&m, 0x400000, 0, &ops, &res), 1);
	ASSERT_EQ(res.error_code, X86_PF_PRESENT | X86_PF_RSVD);
	/* 32-bit paging with a 4 MiB page (CR4.PSE). */
	memset(walk_mem, 0, sizeof(walk_mem));
	m.efer = 0;
	m.cr4 = 1 << 4;
	m32[0x1000 / 4 + 1] = 0x800000 | PTE_P | PTE_PS; /* 0x400000 -> 0x800000 */
	m32[0x1000 / 4 + 2] = 0x5000 | PTE_P;
	m32[0x5000 / 4 + 3] = 0x9000 | PTE_P;	  /* 0x803000 -> 0x9000 */
	ASSERT_EQ(x86_walk(&m, 0x412345, 0, &ops, &res), 0);
	ASSERT_EQ(res.gpa, 0x812345);
	ASSERT_EQ(x86_walk(&m, 0x803456, 0, &ops, &res), 0);
	ASSERT_EQ(res.gpa, 0x9456);
	m32[0x1000 / 4 + 1] |= 1U << 17; /* above PSE-36's address bits */
	ASSERT_EQ(x86_walk(&m, 0x412345, 0, &ops, &res), 1);
	ASSERT_EQ(res.error_code, X86_PF_PRESENT | X86_PF_RSVD);
	m.cr4 = 0; /* without CR4.PSE, PS is ignored: 0x800000 is a table */
	ASSERT_EQ(x86_walk(&m, 0x412345, 0, &ops, &res), 1);
	ASSERT_EQ(res.error_code, 0); /* unreachable here: not present */
	/* PAE: four PDPTEs at CR3, bits 1-2 reserved there. */
	memset(walk_mem, 0, sizeof(walk_mem));
	m.cr4 = 1 << 5;
	m.cr3 = 0x1020;
	walk_mem[0x1020 / 8 + 1] = 0x3000 | PTE_P; /* 1 GiB..2 GiB */
	walk_mem[0x3000 / 8] = 0x4000 | PTE_P | PTE_RW;
	walk_mem[0x4000 / 8 + 1] = 0x7000 | PTE_P | PTE_RW;
	ASSERT_EQ(x86_walk(&m, 0x40001234, 0, &ops, &res), 0);
	ASSERT_EQ(res.gpa, 0x7234);
	walk_mem[0x1020 / 8 + 1] |= PTE_RW;
	ASSERT_EQ(x86_walk(&m, 0x40001234, 0, &ops, &res), 1);
	ASSERT_EQ(res.error_code, X86_PF_PRESENT | X86_PF_RSVD);
	/* Paging off. */
	m.cr0 = 1;
	ASSERT_EQ(x86_walk(&m, 0x123456789ULL, 0, &ops, &res), 0);
	ASSERT_EQ(res.gpa, 0x23456789);
}

/* ---- coalesced MMIO and PIO ---------------------------------------------------------- */

#define COAL_MMIO 0x10000000ULL
#define COAL_PORT 0x200

static void guest_coalesced(struct guestmem_guest *g)
{
	guestmem_guest_write32(g, COAL_MMIO, 0x11223344);
	guestmem_guest_write16(g, COAL_MMIO + 8, 0x5566);
	guestmem_guest_write8(g, COAL_MMIO + 0xfff, 0x77);
	guestmem_guest_outb(g, COAL_PORT + 7, 0x88);
	guestmem_guest_outl(g, 0x40, 1); /* not coalesced: an exit */
	guestmem_guest_write32(g, COAL_MMIO, 0x99); /* the ring is full now */
	for (;;)
		guestmem_guest_outl(g, 0x40, 2);
}

TEST_F(test_coalesced, setup_noirqchip, teardown)
{
	struct fx *x = *state;
	struct kvm_coalesced_mmio_zone mmio = { .addr = COAL_MMIO, .size = 0x1000 };
	struct kvm_coalesced_mmio_zone pio = { .addr = COAL_PORT, .size = 8, .pio = 1 };
	struct kvm_coalesced_mmio_zone bad = { .addr = COAL_PORT, .size = 8, .pio = 2 };
	struct kvm_coalesced_mmio_ring *ring;
	struct kvm_run *run;
	struct gm_file *f;
	struct kvm_vcpu *v;
	uint32_t max = (4096 - 8) / 24;

	ASSERT_EQ(cap(x->kvm, KVM_CAP_COALESCED_PIO), 1);
	ASSERT_EQ(cap(x->kvm, KVM_CAP_COALESCED_MMIO), 2); /* the ring's page */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_REGISTER_COALESCED_MMIO, &bad), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_UNREGISTER_COALESCED_MMIO, &bad), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->vm, KVM_REGISTER_COALESCED_MMIO, NULL), EFAULT);
	/* Unregistering what does not exist is not an error. */
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_UNREGISTER_COALESCED_MMIO, &pio), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_REGISTER_COALESCED_MMIO, &mmio), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_REGISTER_COALESCED_MMIO, &pio), 0);
	run = guestmem_sys_mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, x->vcpu, 0);
	ASSERT_TRUE(run != MAP_FAILED);
	ring = (struct kvm_coalesced_mmio_ring *)((uint8_t *)run + 2 * PAGE);
	f = gm_file_lookup(x->vcpu);
	ASSERT_NOT_NULL(f);
	v = f->obj;
	gm_mutex_lock(&v->mutex, GM_LOCK_VCPU);
	ASSERT_EQ(kvm_vcpu_set_guest(v, guest_coalesced, x), 0);
	gm_mutex_unlock(&v->mutex);
	gm_file_put(f);
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, 0x40);
	ASSERT_EQ(ring->first, 0);
	ASSERT_EQ(ring->last, 4);
	ASSERT_EQ(ring->coalesced_mmio[0].phys_addr, COAL_MMIO);
	ASSERT_EQ(ring->coalesced_mmio[0].len, 4);
	ASSERT_EQ(ring->coalesced_mmio[0].data[0], 0x44);
	ASSERT_EQ(ring->coalesced_mmio[0].pio, 0);
	ASSERT_EQ(ring->coalesced_mmio[1].phys_addr, COAL_MMIO + 8);
	ASSERT_EQ(ring->coalesced_mmio[2].phys_addr, COAL_MMIO + 0xfff);
	ASSERT_EQ(ring->coalesced_mmio[3].phys_addr, COAL_PORT + 7);
	ASSERT_EQ(ring->coalesced_mmio[3].pio, 1);
	ASSERT_EQ(ring->coalesced_mmio[3].data[0], 0x88);
	/* A full ring (one slot kept free): the write exits as usual. */
	ring->first = (ring->last + 1) % max;
	ASSERT_EQ(guestmem_sys_ioctl(x->vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(run->mmio.phys_addr, COAL_MMIO);
	ASSERT_EQ(run->mmio.is_write, 1);
	ASSERT_EQ(ring->last, 4);
	ASSERT_EQ(guestmem_sys_ioctl(x->vm, KVM_UNREGISTER_COALESCED_MMIO, &mmio), 0);
	guestmem_sys_munmap(run, 3 * PAGE);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
