// SPDX-License-Identifier: MIT
/*
 * The host's CPUID around CPUID faulting (see host_cpuid.h).
 */
#include <asm/prctl.h>
#include <cpuid.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "lib/host_cpuid.h"

/* Written once before main (the preload's constructor), read after. */
static bool gm_faulting;
static enum gm_x86_vendor gm_presented;

static void raw_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	__cpuid_count(leaf, sub, out[0], out[1], out[2], out[3]);
}

void gm_host_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	if (!__atomic_load_n(&gm_faulting, __ATOMIC_RELAXED)) {
		raw_cpuid(leaf, sub, out);
		return;
	}
	/*
	 * CPUID faulting is a per-thread flag: lift it for this one
	 * instruction.  Raw system calls, so this also runs inside the
	 * SIGSEGV handler that emulates the VMM's own CPUID.
	 */
	syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
	raw_cpuid(leaf, sub, out);
	syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

uint32_t gm_host_cpuid_max(uint32_t base)
{
	uint32_t r[4];

	gm_host_cpuid(base, 0, r);
	if (base && (r[0] & 0xffff0000u) != base)
		return 0; /* the range is absent: the answer is some other leaf */
	return r[0];
}

enum gm_x86_vendor gm_host_vendor(void)
{
	uint32_t r[4];
	char v[12];

	gm_host_cpuid(0, 0, r);
	memcpy(v, &r[1], 4);
	memcpy(v + 4, &r[3], 4);
	memcpy(v + 8, &r[2], 4);
	if (!memcmp(v, "GenuineIntel", 12))
		return GM_VENDOR_INTEL;
	if (!memcmp(v, "AuthenticAMD", 12) || !memcmp(v, "HygonGenuine", 12))
		return GM_VENDOR_AMD;
	return GM_VENDOR_OTHER;
}

enum gm_x86_vendor gm_cpu_vendor(void)
{
	if (__atomic_load_n(&gm_faulting, __ATOMIC_ACQUIRE))
		return gm_presented;
	return gm_host_vendor();
}

void gm_vendor_regs(enum gm_x86_vendor v, uint32_t *ebx, uint32_t *edx, uint32_t *ecx)
{
	const char *s = v == GM_VENDOR_INTEL ? "GenuineIntel" : "AuthenticAMD";

	memcpy(ebx, s, 4);
	memcpy(edx, s + 4, 4);
	memcpy(ecx, s + 8, 4);
}

void gm_host_cpuid_faulting_on(enum gm_x86_vendor presented)
{
	gm_presented = presented;
	/* Release: gm_cpu_vendor()'s acquire sees gm_presented. */
	__atomic_store_n(&gm_faulting, true, __ATOMIC_RELEASE);
}

bool gm_host_cpuid_faulting(void)
{
	return __atomic_load_n(&gm_faulting, __ATOMIC_ACQUIRE);
}
