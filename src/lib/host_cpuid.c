// SPDX-License-Identifier: MIT
/*
 * The host's CPUID around CPUID faulting (see host_cpuid.h).
 */
#include <asm/prctl.h>
#include <cpuid.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/host_cpuid.h"

/* Written once before main (the preload's constructor), read after. */
static bool gm_faulting;

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

/*
 * Does @vendor's hypercall instruction trap at CPL3 here?  Run it in a
 * child: killed by SIGILL or SIGSEGV if it trapped, exit 0 if it returned
 * (a hypervisor under us answered it).  The child is a clone without an
 * exit signal, so the caller's SIGCHLD handling and waitpid(-1) never see
 * it; it makes raw system calls only (any thread may ask), and dumps no
 * core.  Hypercall number ~0: nobody implements it.
 */
bool gm_hypercall_traps(enum gm_x86_vendor vendor)
{
	struct rlimit nocore = { 0, 0 };
	int status = 0;
	pid_t pid = (pid_t)syscall(SYS_clone, 0UL, 0UL, 0UL, 0UL, 0UL);

	if (pid < 0)
		return true; /* cannot tell: assume bare metal */
	if (pid == 0) {
		unsigned long rax = ~0ul;

		syscall(SYS_prlimit64, 0, RLIMIT_CORE, &nocore, NULL);
		if (vendor == GM_VENDOR_AMD)
			__asm__ volatile("vmmcall" : "+a"(rax) : : "memory");
		else
			__asm__ volatile("vmcall" : "+a"(rax) : : "memory");
		syscall(SYS_exit_group, 0);
	}
	while (syscall(SYS_wait4, pid, &status, __WALL, NULL) < 0 && errno == EINTR)
		;
	return !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static enum gm_x86_vendor gm_vendor_choice(void)
{
	const char *set = getenv("GUESTMEM_CPU_VENDOR");
	enum gm_x86_vendor host = gm_host_vendor();

	if (host == GM_VENDOR_OTHER || (set && !strcmp(set, "host")))
		return host;
	if (set && !strcmp(set, "intel"))
		return GM_VENDOR_INTEL;
	if (set && !strcmp(set, "amd"))
		return GM_VENDOR_AMD;
	if (set && *set && strcmp(set, "auto"))
		return host; /* a bad value: the config check reports it */
	if (gm_hypercall_traps(host))
		return host;
	return host == GM_VENDOR_AMD ? GM_VENDOR_INTEL : GM_VENDOR_AMD;
}

enum gm_x86_vendor gm_cpu_vendor(void)
{
	/*
	 * 0: not chosen yet, else vendor + 1; racing first callers agree.  The
	 * preload's constructor makes the first call, before main: the vendor
	 * it presents is this one.
	 */
	static int chosen;
	int c;

	c = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
	if (!c) {
		c = (int)gm_vendor_choice() + 1;
		__atomic_store_n(&chosen, c, __ATOMIC_RELAXED);
	}
	return (enum gm_x86_vendor)(c - 1);
}

void gm_vendor_regs(enum gm_x86_vendor v, uint32_t *ebx, uint32_t *edx, uint32_t *ecx)
{
	const char *s = v == GM_VENDOR_INTEL ? "GenuineIntel" : "AuthenticAMD";

	memcpy(ebx, s, 4);
	memcpy(edx, s + 4, 4);
	memcpy(ecx, s + 8, 4);
}

void gm_host_cpuid_faulting_on(void)
{
	__atomic_store_n(&gm_faulting, true, __ATOMIC_RELEASE);
}

bool gm_host_cpuid_faulting(void)
{
	return __atomic_load_n(&gm_faulting, __ATOMIC_ACQUIRE);
}
