/* SPDX-License-Identifier: MIT */
/*
 * The x86 capabilities the Linux 6.12 selftests check for, through the
 * uAPI (<guestmem/sys.h>) per profile: the KVM_CHECK_EXTENSION answers,
 * KVM_ENABLE_CAP's checks with the errno 6.12 gives in its order, and the
 * effect of each capability where the uAPI shows it (the LAPIC page, MSR
 * accesses, kvm-clock, the steal-time record guest memory holds).
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include "harness.h"
#include "vcpu_fixture.h"

#include <guestmem/guestmem.h>

#include "lib/host_cpuid.h"
#include "vcpu/x86.h"

#define PAGE 4096
#define APIC_LVT0 0x350
#define APIC_LVTT 0x320
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3e0
#define MSR_PLATFORM_INFO 0xce
#define MSR_SMI_COUNT 0x34

static const char *const profiles[] = { "linux-6.8", "linux-6.12", "linux-6.18" };

static int open_kvm(void)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_TRUE(kvm >= 0);
	return kvm;
}

/* A VM of @profile (a VM keeps the configuration it was created with). */
static int vm_of(int kvm, const char *profile)
{
	int vm;

	ASSERT_EQ(guestmem_config_set(profile, NULL, NULL), 0);
	vm = guestmem_sys_ioctl(kvm, KVM_CREATE_VM, 0);
	ASSERT_TRUE(vm >= 0);
	return vm;
}

static int enable_cap(int fd, uint32_t cap, uint32_t flags, uint64_t arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .flags = flags, .args = { arg0 } };

	return guestmem_sys_ioctl(fd, KVM_ENABLE_CAP, &c);
}

static bool is_6_8(const char *p)
{
	return !strcmp(p, "linux-6.8");
}

/* KVM's vendor module is the presented vendor's (lib/host_cpuid.h). */
static bool host_is_intel(void)
{
	return gm_cpu_vendor() == GM_VENDOR_INTEL;
}

/* What DISABLE_QUIRKS2 offers: bits 0-6 in 6.8, 0-10 later (PAT: see caps.c). */
static uint64_t quirks_of(const char *p)
{
	unsigned a = 0, b = 0, c = 0, d = 0;

	if (is_6_8(p))
		return 0x7f;
	__get_cpuid(1, &a, &b, &c, &d);
	if (host_is_intel() && !(d & (1U << 27)))
		return 0x7ff & ~(uint64_t)KVM_X86_QUIRK_IGNORE_GUEST_PAT;
	return 0x7ff;
}

static bool have_schedstat(void)
{
	return access("/proc/thread-self/schedstat", R_OK) == 0;
}

/* TSC scaling is modelled where RDTSC can be made to fault (src/vcpu/tsc.c). */
static int host_tsc_faults(void)
{
	int ok = prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0;

	return prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0) == 0 && ok;
}

TEST(check_extension_per_profile)
{
	int kvm = open_kvm(), tsc_scaled = host_tsc_faults();

	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
		const char *p = profiles[i];
		int vm = vm_of(kvm, p);
		int fds[2] = { kvm, vm };

		for (int j = 0; j < 2; j++) {
			int fd = fds[j];

			DIAG("%s, %s fd", p, j ? "VM" : "system");
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS), 1);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_DISABLE_QUIRKS2),
				  (int)quirks_of(p));
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_X86_APIC_BUS_CYCLES_NS),
				  is_6_8(p) ? 0 : 1);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_MSR_PLATFORM_INFO), 1);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_EXIT_ON_EMULATION_FAILURE), 1);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_ENFORCE_PV_FEATURE_CPUID), 1);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_ADJUST_CLOCK),
				  KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_STEAL_TIME),
				  have_schedstat() ? 1 : 0);
			/* TSC scaling where RDTSC can fault; guest MAXPHYADDR = host's. */
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_VM_TSC_CONTROL), tsc_scaled);
			EXPECT_EQ(guestmem_sys_ioctl(fd, KVM_CHECK_EXTENSION,
						     KVM_CAP_SMALLER_MAXPHYADDR), 0);
		}
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* LVT0 of a new boot vCPU: ExtINT (0x700) with the LINT0 quirk, masked without. */
static uint32_t bsp_lvt0(int vm)
{
	struct kvm_lapic_state s;
	uint32_t lvt0;
	int vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);

	ASSERT_TRUE(vcpu >= 0);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_LAPIC, &s), 0);
	memcpy(&lvt0, s.regs + APIC_LVT0, 4);
	guestmem_sys_close(vcpu);
	return lvt0;
}

static int vm_with_irqchip(int kvm, const char *p)
{
	int vm = vm_of(kvm, p);

	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	return vm;
}

static struct kvm *kvm_of(int vm)
{
	struct gm_file *f = gm_file_lookup(vm);
	struct kvm *kvm;

	ASSERT_NOT_NULL(f);
	kvm = f->obj;
	gm_file_put(f);
	return kvm;
}

static struct kvm_vcpu *vcpu_of(int fd)
{
	struct gm_file *f = gm_file_lookup(fd);
	struct kvm_vcpu *v;

	ASSERT_NOT_NULL(f);
	v = f->obj;
	gm_file_put(f);
	return v;
}

/*
 * The boot vCPU's LVT0 in a VM of @p after enabling @n caps in turn
 * (@caps[i] with @args[i]), each expected to give @rets[i] (0 or an errno).
 */
static uint32_t lvt0_after(int kvm, const char *p, int n, const uint32_t *caps,
			   const uint64_t *args, const uint32_t *flags, const int *errs)
{
	int vm = vm_with_irqchip(kvm, p);
	uint32_t lvt0;

	for (int i = 0; i < n; i++) {
		DIAG("%s: cap %u flags %u arg %#llx", p, caps[i], flags[i],
		     (unsigned long long)args[i]);
		if (errs[i])
			ASSERT_ERRNO(enable_cap(vm, caps[i], flags[i], args[i]), errs[i]);
		else
			ASSERT_EQ(enable_cap(vm, caps[i], flags[i], args[i]), 0);
	}
	lvt0 = bsp_lvt0(vm);
	guestmem_sys_close(vm);
	return lvt0;
}

TEST(disable_quirks)
{
	const uint32_t Q1 = KVM_CAP_DISABLE_QUIRKS, Q2 = KVM_CAP_DISABLE_QUIRKS2;
	const uint64_t lint0 = KVM_X86_QUIRK_LINT0_REENABLED;
	int kvm = open_kvm();

	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
		const char *p = profiles[i];
		uint64_t q = quirks_of(p);
		bool v68 = is_6_8(p);

		/* A new VM starts with the quirks of the other vendor off (6.12 on). */
		int vm = vm_of(kvm, p);

		EXPECT_EQ(kvm_of(vm)->arch.disabled_quirks,
			  v68 ? 0 : (host_is_intel() ? KVM_X86_QUIRK_CD_NW_CLEARED
						     : KVM_X86_QUIRK_IGNORE_GUEST_PAT) & q);
		guestmem_sys_close(vm);
		/* Flags first, then the unknown bits (v2 only): nothing changes. */
		EXPECT_EQ(lvt0_after(kvm, p, 3, (uint32_t[]){ Q2, Q2, Q2 },
				     (uint64_t[]){ 0, (q + 1) | q, 1ULL << 40 },
				     (uint32_t[]){ 1, 0, 0 }, (int[]){ EINVAL, EINVAL, EINVAL }),
			  0x700);
		EXPECT_EQ(lvt0_after(kvm, p, 1, (uint32_t[]){ Q1 }, (uint64_t[]){ lint0 },
				     (uint32_t[]){ 1 }, (int[]){ EINVAL }),
			  0x700);
		/* v1 takes any bits; LINT0 off leaves LVT0 masked. */
		EXPECT_EQ(lvt0_after(kvm, p, 1, (uint32_t[]){ Q1 }, (uint64_t[]){ ~0ULL },
				     (uint32_t[]){ 0 }, (int[]){ 0 }),
			  0x10000);
		EXPECT_EQ(lvt0_after(kvm, p, 1, (uint32_t[]){ Q2 }, (uint64_t[]){ q },
				     (uint32_t[]){ 0 }, (int[]){ 0 }),
			  0x10000);
		/* Another quirk leaves LINT0 alone. */
		EXPECT_EQ(lvt0_after(kvm, p, 1, (uint32_t[]){ Q2 },
				     (uint64_t[]){ KVM_X86_QUIRK_OUT_7E_INC_RIP },
				     (uint32_t[]){ 0 }, (int[]){ 0 }),
			  0x700);
		/* 6.8 replaces the set (the quirk is back); later ones only add. */
		EXPECT_EQ(lvt0_after(kvm, p, 2, (uint32_t[]){ Q2, Q1 }, (uint64_t[]){ lint0, 0 },
				     (uint32_t[]){ 0, 0 }, (int[]){ 0, 0 }),
			  v68 ? 0x700 : 0x10000);
		EXPECT_EQ(lvt0_after(kvm, p, 2, (uint32_t[]){ Q1, Q2 },
				     (uint64_t[]){ lint0, KVM_X86_QUIRK_CD_NW_CLEARED },
				     (uint32_t[]){ 0, 0 }, (int[]){ 0, 0 }),
			  v68 ? 0x700 : 0x10000);
	}
	guestmem_sys_close(kvm);
}

TEST(exit_on_emulation_failure)
{
	int kvm = open_kvm(), vm = vm_of(kvm, "linux-6.12");

	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1, 1), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0, 2), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0, 3), EINVAL);
	EXPECT_FALSE(kvm_of(vm)->arch.exit_on_emulation_error);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0, 1), 0);
	EXPECT_TRUE(kvm_of(vm)->arch.exit_on_emulation_error);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0, 0), 0);
	EXPECT_FALSE(kvm_of(vm)->arch.exit_on_emulation_error);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

static int set_msr(int vcpu, uint32_t index, uint64_t data)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e = { .index = index, .data = data } };

	return guestmem_sys_ioctl(vcpu, KVM_SET_MSRS, &m);
}

static int get_msr(int vcpu, uint32_t index, uint64_t *data)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e = { .index = index, .data = 0x5a5a } };
	int r = guestmem_sys_ioctl(vcpu, KVM_GET_MSRS, &m);

	*data = m.e.data;
	return r;
}

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MISC_MWAIT (1ULL << 18)

static void set_leaf1(int vcpu, uint32_t ecx)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[1];
	} c = { .hdr.nent = 1, .e[0] = { .function = 1, .ecx = ecx } };

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_CPUID2, &c), 0);
}

static uint32_t leaf1_ecx(int vcpu)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[8];
	} c = { .hdr.nent = 8 };

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_CPUID2, &c), 0);
	for (uint32_t i = 0; i < c.hdr.nent; i++)
		if (c.e[i].function == 1)
			return c.e[i].ecx;
	ASSERT_MSG(false, "no leaf 1");
	return 0;
}

/*
 * KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT: on (the default), MISC_ENABLE.MWAIT
 * is a plain bit; off, changing it needs SSE3 and it drives CPUID.1:ECX
 * bit 3 (MONITOR), also at KVM_SET_CPUID2.
 */
TEST(quirk_misc_enable_no_mwait)
{
	int kvm = open_kvm();

	for (int off = 0; off < 2; off++) {
		int vm = vm_of(kvm, "linux-6.12"), vcpu;

		if (off)
			ASSERT_EQ(enable_cap(vm, KVM_CAP_DISABLE_QUIRKS2, 0,
					     KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT), 0);
		vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
		ASSERT_TRUE(vcpu >= 0);
		set_leaf1(vcpu, 0); /* no SSE3 */
		EXPECT_EQ(set_msr(vcpu, MSR_IA32_MISC_ENABLE, MISC_MWAIT), off ? 0 : 1);
		EXPECT_EQ(leaf1_ecx(vcpu), 0);
		set_leaf1(vcpu, 1); /* SSE3 */
		EXPECT_EQ(set_msr(vcpu, MSR_IA32_MISC_ENABLE, MISC_MWAIT), 1);
		EXPECT_EQ(leaf1_ecx(vcpu), off ? 1U | 1U << 3 : 1U);
		/* A new table takes the bit from the MSR. */
		set_leaf1(vcpu, 1);
		EXPECT_EQ(leaf1_ecx(vcpu), off ? 1U | 1U << 3 : 1U);
		EXPECT_EQ(set_msr(vcpu, MSR_IA32_MISC_ENABLE, 0), 1);
		EXPECT_EQ(leaf1_ecx(vcpu), 1U);
		guestmem_sys_close(vcpu);
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* Guest RDMSR of PLATFORM_INFO follows the cap; the VMM's never does. */
TEST(msr_platform_info)
{
	int kvm = open_kvm(), vm = vm_of(kvm, "linux-6.12");
	int vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_vcpu *v;
	uint64_t data;

	ASSERT_TRUE(vcpu >= 0);
	v = vcpu_of(vcpu);
	ASSERT_EQ(set_msr(vcpu, MSR_PLATFORM_INFO, 0x1234), 1);
	ASSERT_EQ(kvm_vcpu_guest_msr(v, MSR_PLATFORM_INFO, false, &data), 0);
	EXPECT_EQ(data, 0x1234);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_MSR_PLATFORM_INFO, 1, 0), EINVAL);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_MSR_PLATFORM_INFO, 0, 0), 0);
	EXPECT_EQ(kvm_vcpu_guest_msr(v, MSR_PLATFORM_INFO, false, &data), 1); /* #GP */
	EXPECT_EQ(data, 0);
	ASSERT_EQ(get_msr(vcpu, MSR_PLATFORM_INFO, &data), 1);
	EXPECT_EQ(data, 0x1234);
	/* Any nonzero argument means "readable". */
	ASSERT_EQ(enable_cap(vm, KVM_CAP_MSR_PLATFORM_INFO, 0, 2), 0);
	ASSERT_EQ(kvm_vcpu_guest_msr(v, MSR_PLATFORM_INFO, false, &data), 0);
	EXPECT_EQ(data, 0x1234);
	/* Only the host writes PLATFORM_INFO and SMI_COUNT. */
	EXPECT_EQ(kvm_vcpu_guest_msr(v, MSR_PLATFORM_INFO, true, &(uint64_t){ 0x1234 }), 1);
	EXPECT_EQ(kvm_vcpu_guest_msr(v, MSR_SMI_COUNT, true, &(uint64_t){ 1 }), 1);
	ASSERT_EQ(set_msr(vcpu, MSR_SMI_COUNT, 1), 1);
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

static void set_lapic_timer(int vcpu, uint32_t count)
{
	struct kvm_lapic_state s;
	uint32_t tdcr = 0xb, lvtt = 0x20; /* divide by 1; one-shot, vector 0x20 */

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_LAPIC, &s), 0);
	memcpy(s.regs + APIC_TDCR, &tdcr, 4);
	memcpy(s.regs + APIC_LVTT, &lvtt, 4);
	memcpy(s.regs + APIC_TMICT, &count, 4);
	memcpy(s.regs + APIC_TMCCT, &count, 4);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_LAPIC, &s), 0);
}

static uint32_t lapic_tmcct(int vcpu)
{
	struct kvm_lapic_state s;
	uint32_t v;

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_LAPIC, &s), 0);
	memcpy(&v, s.regs + APIC_TMCCT, 4);
	return v;
}

TEST(apic_bus_cycles_checks)
{
	const uint64_t max_ok = UINT64_MAX / (0xffffffffULL * 128);
	int kvm = open_kvm(), vm = vm_of(kvm, "linux-6.12"), vcpu;

	/* The value first (EINVAL), then the in-kernel LAPIC (ENXIO). */
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 1, 10), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 0), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, max_ok + 1), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 10), ENXIO);
	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, max_ok), 0);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 10), 0);
	vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(vcpu >= 0);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 10), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 0), EINVAL);
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);

	/* Unknown to 6.8; the split irqchip is an in-kernel LAPIC too. */
	vm = vm_of(kvm, "linux-6.8");
	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 10), EINVAL);
	guestmem_sys_close(vm);
	vm = vm_of(kvm, "linux-6.18");
	ASSERT_EQ(enable_cap(vm, KVM_CAP_SPLIT_IRQCHIP, 0, 24), 0);
	ASSERT_EQ(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 10), 0);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

/*
 * The timer counts bus cycles: 200000 counts at 1 ns are over after 0.2 ms,
 * at 1000 ns they take 200 ms.  After 20 ms the first has expired, the
 * second has about 180000 left.
 */
TEST(apic_bus_cycles_timer)
{
	const uint32_t count = 200000;
	struct timespec ms20 = { 0, 20 * 1000 * 1000 };
	int kvm = open_kvm();
	uint32_t left[2];

	for (int i = 0; i < 2; i++) {
		int vm = vm_with_irqchip(kvm, "linux-6.12"), vcpu;

		if (i)
			ASSERT_EQ(enable_cap(vm, KVM_CAP_X86_APIC_BUS_CYCLES_NS, 0, 1000), 0);
		vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
		ASSERT_TRUE(vcpu >= 0);
		/*
		 * The second timer must be read before its 200 ms run out: a
		 * loaded machine (sanitizers, other jobs) may stall us past
		 * that, so such a sample is taken again, never accepted.
		 */
		for (int tries = 0;; tries++) {
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			set_lapic_timer(vcpu, count);
			nanosleep(&ms20, NULL);
			left[i] = lapic_tmcct(vcpu);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 150)
				break;
			ASSERT_MSG(tries < 20, "20 samples each took 150 ms or more");
		}
		guestmem_sys_close(vcpu);
		guestmem_sys_close(vm);
	}
	EXPECT_EQ(left[0], 0);
	EXPECT_GT(left[1], 0);
	EXPECT_LE(left[1], count - 20000); /* at least 20 ms went by */
	guestmem_sys_close(kvm);
}

#define MSR_KVM_STEAL_TIME 0x4b564d03
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_POLL_CONTROL 0x4b564d05

/* Guest CPUID with the KVM leaves, features @eax (or none at all). */
static void set_pv_cpuid(int vcpu, bool with_kvm_leaf, uint32_t eax)
{
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[2];
	} c = { 0 };

	if (with_kvm_leaf) {
		c.hdr.nent = 2;
		c.e[0].function = 0x40000000;
		c.e[0].eax = 0x40000001;
		memcpy(&c.e[0].ebx, "KVMKVMKVM\0\0\0", 12);
		c.e[1].function = 0x40000001;
		c.e[1].eax = eax;
	}
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_CPUID2, &c), 0);
}

TEST(enforce_pv_feature_cpuid)
{
	int kvm = open_kvm(), vm = vm_of(kvm, "linux-6.12");
	int vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	uint64_t data;

	ASSERT_TRUE(vcpu >= 0);
	/* vCPU scope: the copy, the flags, then the cap. */
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_ENABLE_CAP, NULL), EFAULT);
	ASSERT_ERRNO(enable_cap(vcpu, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1, 1), EINVAL);
	ASSERT_ERRNO(enable_cap(vcpu, KVM_CAP_EXIT_ON_EMULATION_FAILURE, 0, 1), EINVAL);
	ASSERT_ERRNO(enable_cap(vcpu, KVM_CAP_HYPERV_SYNIC2, 0, 0), EINVAL);

	/* Not enforced: every PV MSR works whatever CPUID says. */
	set_pv_cpuid(vcpu, true, 0);
	ASSERT_EQ(set_msr(vcpu, MSR_KVM_STEAL_TIME, 0x2000 | KVM_MSR_ENABLED), 1);
	ASSERT_EQ(set_msr(vcpu, MSR_KVM_POLL_CONTROL, 0), 1);
	ASSERT_EQ(enable_cap(vcpu, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 1), 0);
	/* Enforced, no feature: the MSRs are unknown; 0 writes and reads pass. */
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_STEAL_TIME, 0x2000 | KVM_MSR_ENABLED), 0);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_SYSTEM_TIME_NEW, 0x3001), 0);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_POLL_CONTROL, 1), 0);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_STEAL_TIME, 0), 1);
	EXPECT_EQ(get_msr(vcpu, MSR_KVM_STEAL_TIME, &data), 1);
	EXPECT_EQ(data, 0); /* hidden, though it holds 0x2001 */
	/* KVM_SET_CPUID2 re-reads the features. */
	set_pv_cpuid(vcpu, true, 1U << KVM_FEATURE_STEAL_TIME);
	EXPECT_EQ(get_msr(vcpu, MSR_KVM_STEAL_TIME, &data), 1);
	EXPECT_EQ(data, 0x2000 | KVM_MSR_ENABLED);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_POLL_CONTROL, 1), 0);
	/* A table without the KVM signature leaves the last features. */
	set_pv_cpuid(vcpu, false, 0);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_STEAL_TIME, 0x4000 | KVM_MSR_ENABLED), 1);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_POLL_CONTROL, 1), 0);
	/* Enforcement off again. */
	ASSERT_EQ(enable_cap(vcpu, KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 0, 0), 0);
	EXPECT_EQ(set_msr(vcpu, MSR_KVM_POLL_CONTROL, 1), 1);
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

static int64_t now_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

TEST(kvm_clock)
{
	const int64_t sec = 1000000000LL;
	int kvm = open_kvm();

	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
		int vm = vm_of(kvm, profiles[i]);
		struct kvm_clock_data d, d2;
		uint64_t tsc0 = __rdtsc();
		int64_t real0 = now_ns(CLOCK_REALTIME);

		DIAG("%s", profiles[i]);
		ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, NULL), EFAULT);
		ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, NULL), EFAULT);
		memset(&d, 0xff, sizeof(d));
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, &d), 0);
		EXPECT_EQ(d.flags, KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC);
		EXPECT_LT(d.clock, (uint64_t)sec); /* a new VM's clock starts at 0 */
		EXPECT_GE(d.host_tsc, tsc0);
		EXPECT_LE(d.host_tsc, __rdtsc());
		EXPECT_GE((int64_t)d.realtime, real0);
		EXPECT_LE((int64_t)d.realtime, now_ns(CLOCK_REALTIME));
		EXPECT_EQ(d.pad0, 0);
		EXPECT_EQ(d.pad[0], 0);

		/* Flags beyond the three: EINVAL, nothing set. */
		memset(&d2, 0, sizeof(d2));
		d2.clock = 1000 * sec;
		d2.flags = 1;
		ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d2), EINVAL);
		d2.flags = 1U << 4;
		ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d2), EINVAL);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, &d), 0);
		EXPECT_LT(d.clock, (uint64_t)sec);

		/* A plain set: the clock continues from the value. */
		d2.flags = 0;
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d2), 0);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, &d), 0);
		EXPECT_GE(d.clock, (uint64_t)(1000 * sec));
		EXPECT_LT(d.clock, (uint64_t)(1001 * sec));

		/* With REALTIME the time since @realtime is added... */
		d2.flags = KVM_CLOCK_REALTIME;
		d2.realtime = (uint64_t)(now_ns(CLOCK_REALTIME) - 5 * sec);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d2), 0);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, &d), 0);
		EXPECT_GE(d.clock, (uint64_t)(1005 * sec));
		EXPECT_LT(d.clock, (uint64_t)(1006 * sec));
		/* ...but a realtime in the future never steps it back. */
		d2.realtime = (uint64_t)(now_ns(CLOCK_REALTIME) + 5 * sec);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d2), 0);
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_GET_CLOCK, &d), 0);
		EXPECT_GE(d.clock, (uint64_t)(1000 * sec));
		EXPECT_LT(d.clock, (uint64_t)(1001 * sec));
		/* A KVM_GET_CLOCK result is accepted as it is. */
		ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_CLOCK, &d), 0);
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

/* The guest of the steal-time test: one port write per KVM_RUN. */
static void out_loop(struct guestmem_guest *g)
{
	for (uint8_t i = 0;; i++)
		guestmem_guest_outb(g, 0x80, i);
}

struct steal_record {
	uint64_t steal;
	uint32_t version, flags;
	uint8_t preempted;
	uint8_t pad[47];
};

TEST(steal_time_record)
{
	struct vcpu_fixture f;
	struct kvm_userspace_memory_region r;
	struct steal_record *st;
	uint8_t *mem;
	uint64_t bitmap = 0, last;
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = &bitmap };

	if (!have_schedstat())
		SKIP("the host keeps no schedstats: no steal time, as KVM");
	guestmem_config_set("linux-6.12", NULL, NULL);
	vcpu_fixture_open(&f, 0);
	vcpu_fixture_set_guest(&f, out_loop, NULL);
	mem = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(mem != MAP_FAILED);
	r = (struct kvm_userspace_memory_region){ .slot = 0,
						  .flags = KVM_MEM_LOG_DIRTY_PAGES,
						  .memory_size = 4 * PAGE,
						  .userspace_addr = (uintptr_t)mem };
	ASSERT_EQ(guestmem_sys_ioctl(f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	st = (struct steal_record *)(mem + 2 * PAGE + 0x40);
	st->steal = 1000;
	st->version = 5; /* odd junk: made even first */
	st->preempted = 1;

	/* Registered but disabled: nothing written. */
	ASSERT_EQ(set_msr(f.vcpu, MSR_KVM_STEAL_TIME, 2 * PAGE + 0x40), 1);
	ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(f.run->exit_reason, KVM_EXIT_IO);
	EXPECT_EQ(st->version, 5);
	/* Reserved bits 1-5: refused. */
	ASSERT_EQ(set_msr(f.vcpu, MSR_KVM_STEAL_TIME, (2 * PAGE + 0x42) | KVM_MSR_ENABLED), 0);

	ASSERT_EQ(set_msr(f.vcpu, MSR_KVM_STEAL_TIME, (2 * PAGE + 0x40) | KVM_MSR_ENABLED), 1);
	ASSERT_EQ(guestmem_sys_ioctl(f.vm, KVM_GET_DIRTY_LOG, &log), 0); /* clear */
	ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(st->version, 8);
	EXPECT_EQ(st->preempted, 0);
	EXPECT_GE(st->steal, 1000);
	ASSERT_EQ(guestmem_sys_ioctl(f.vm, KVM_GET_DIRTY_LOG, &log), 0);
	EXPECT_EQ(bitmap, 1ULL << 2); /* the record's page, logged */

	/* Every entry updates it; steal never goes back. */
	for (int i = 0; i < 3; i++) {
		last = st->steal;
		st->preempted = 1;
		ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
		EXPECT_EQ(st->version, 10 + 2 * (uint32_t)i);
		EXPECT_EQ(st->preempted, 0);
		EXPECT_GE(st->steal, last);
	}
	/* An immediate exit does not enter: no update. */
	f.run->immediate_exit = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), EINTR);
	EXPECT_EQ(st->version, 14);
	f.run->immediate_exit = 0;
	vcpu_fixture_close(&f);
	munmap(mem, 4 * PAGE);
}

/*
 * The steal-time and kvm-clock records of memory the VMM unmapped (or
 * made read-only) behind its memslot: KVM's cached writes fail and skip
 * them; KVM_RUN goes on and the VMM is not killed.  Through the C API the
 * VMM does both with the calls that tell the MMU notifier
 * (guestmem_sys_mprotect/munmap; libc's under guestmem exec).
 */
TEST(pv_records_on_unmapped_memory)
{
	struct vcpu_fixture f;
	struct kvm_userspace_memory_region r;
	uint8_t *mem;

	guestmem_config_set("linux-6.12", NULL, NULL);
	vcpu_fixture_open(&f, 0);
	vcpu_fixture_set_guest(&f, out_loop, NULL);
	mem = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(mem != MAP_FAILED);
	r = (struct kvm_userspace_memory_region){ .slot = 0, .memory_size = 4 * PAGE,
						  .userspace_addr = (uintptr_t)mem };
	ASSERT_EQ(guestmem_sys_ioctl(f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	ASSERT_EQ(set_msr(f.vcpu, MSR_KVM_SYSTEM_TIME_NEW, PAGE | KVM_MSR_ENABLED), 1);
	ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(*(uint32_t *)(mem + PAGE) & 1, 0u); /* written, version even */
	EXPECT_NE(*(uint32_t *)(mem + PAGE), 0u);
	if (have_schedstat())
		ASSERT_EQ(set_msr(f.vcpu, MSR_KVM_STEAL_TIME, (2 * PAGE) | KVM_MSR_ENABLED), 1);
	/* Read-only first: nothing written, nothing killed. */
	ASSERT_EQ(guestmem_sys_mprotect(mem, 4 * PAGE, PROT_READ), 0);
	ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(f.run->exit_reason, KVM_EXIT_IO);
	/* Then gone altogether. */
	ASSERT_EQ(guestmem_sys_munmap(mem, 4 * PAGE), 0);
	ASSERT_EQ(guestmem_sys_ioctl(f.vcpu, KVM_RUN, 0), 0);
	EXPECT_EQ(f.run->exit_reason, KVM_EXIT_IO);
	vcpu_fixture_close(&f);
}

/* A vCPU without VMX/SVM: the vendor module's header, nothing nested. */
TEST(nested_state)
{
	const bool intel = host_is_intel();
	int kvm = open_kvm(), vm = vm_of(kvm, "linux-6.12");
	int vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_nested_state s, t;

	ASSERT_TRUE(vcpu >= 0);
	EXPECT_EQ(guestmem_sys_ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE),
		  128 + (intel ? 8192 : 4096));
	/* GET: the size field (EFAULT), too small (E2BIG, size written back). */
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_GET_NESTED_STATE, NULL), EFAULT);
	memset(&s, 0xa5, sizeof(s));
	s.size = 127;
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_GET_NESTED_STATE, &s), E2BIG);
	EXPECT_EQ(s.size, 128);
	EXPECT_EQ(s.flags, 0xa5a5); /* nothing else written */
	s.size = 128;
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_NESTED_STATE, &s), 0);
	EXPECT_EQ(s.size, 128);
	EXPECT_EQ(s.format, intel ? KVM_STATE_NESTED_FORMAT_VMX : KVM_STATE_NESTED_FORMAT_SVM);
	EXPECT_EQ(s.flags, intel ? 0 : KVM_STATE_NESTED_GIF_SET);
	if (intel) {
		EXPECT_EQ(s.hdr.vmx.vmxon_pa, ~0ULL);
		EXPECT_EQ(s.hdr.vmx.vmcs12_pa, ~0ULL);
	} else {
		EXPECT_EQ(s.hdr.svm.vmcb_pa, 0);
	}

	/* SET: the copy, the generic checks, then the vendor's. */
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, NULL), EFAULT);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &s), 0); /* GET's answer */
	t = s;
	t.size = 127;
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	t = s;
	t.flags |= 0x10;
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	t = s;
	t.flags |= KVM_STATE_NESTED_RUN_PENDING;
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	t = s;
	t.format ^= 1; /* the other vendor's */
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	t = s;
	t.flags |= KVM_STATE_NESTED_GUEST_MODE;
	ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	t = s;
	t.size = 128 + 4096; /* larger is fine: no data is read */
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), 0);
	if (intel) {
		t = s;
		t.hdr.vmx.vmxon_pa = 0x1000; /* VMXON needs VMX */
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
		t = s;
		t.flags = KVM_STATE_NESTED_EVMCS;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
		t = s;
		t.hdr.vmx.smm.flags = KVM_STATE_NESTED_SMM_VMXON;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
		t = s;
		t.hdr.vmx.flags = KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE;
		ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), 0);
		t.hdr.vmx.flags = 2;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	} else {
		/* EFER.SVME clear: exactly GIF set, nothing else. */
		t = s;
		t.flags = 0;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
		t.flags = KVM_STATE_NESTED_EVMCS | KVM_STATE_NESTED_GIF_SET;
		ASSERT_ERRNO(guestmem_sys_ioctl(vcpu, KVM_SET_NESTED_STATE, &t), EINVAL);
	}
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
