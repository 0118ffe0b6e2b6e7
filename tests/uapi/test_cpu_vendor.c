// SPDX-License-Identifier: MIT
/*
 * test_cpu_vendor: under `guestmem exec`, the CPU vendor the VMM's own
 * CPUID shows, KVM_GET_SUPPORTED_CPUID's vendor and the vendor module's
 * parameters agree, and that vendor's hypercall instruction traps at CPL3
 * (so guest code reaches guestmem's vCPUs), whatever the host is
 * (src/preload/cpuid_fault.c).  SIGSEGV stays the program's: its handler
 * is reported and called, and with none a fault still kills.
 * A plain-libc program; GUESTMEM_CPU_VENDOR is set by the meson test.
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "harness.h"

static void native_vendor(char v[13])
{
	unsigned int a, b, c, d;

	__cpuid(0, a, b, c, d);
	memcpy(v, &b, 4);
	memcpy(v + 4, &d, 4);
	memcpy(v + 8, &c, 4);
	v[12] = '\0';
}

static bool is_intel(const char *v)
{
	return !strcmp(v, "GenuineIntel");
}

/* Exit 1 from the child if the instruction trapped, 0 if it returned. */
static void trapped(int sig)
{
	(void)sig;
	_exit(1);
}

static bool hypercall_traps(bool intel)
{
	int status = 0;
	pid_t pid = fork();

	if (pid == 0) {
		unsigned long rax = ~0ul;

		signal(SIGILL, trapped);
		signal(SIGSEGV, trapped);
		if (intel)
			__asm__ volatile("vmcall" : "+a"(rax) : : "memory");
		else
			__asm__ volatile("vmmcall" : "+a"(rax) : : "memory");
		_exit(0);
	}
	waitpid(pid, &status, 0);
	return WIFEXITED(status) && WEXITSTATUS(status) == 1;
}

TEST(supported_cpuid_and_modules_agree)
{
	struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[256];
	} c = { .h.nent = 256 };
	char v[13], kv[13] = "";
	int kvm = open("/dev/kvm", O_RDWR);

	ASSERT_TRUE(kvm >= 0);
	ASSERT_EQ(ioctl(kvm, KVM_GET_SUPPORTED_CPUID, &c), 0);
	for (unsigned i = 0; i < c.h.nent; i++)
		if (c.e[i].function == 0) {
			memcpy(kv, &c.e[i].ebx, 4);
			memcpy(kv + 4, &c.e[i].edx, 4);
			memcpy(kv + 8, &c.e[i].ecx, 4);
			kv[12] = '\0';
		}
	native_vendor(v);
	EXPECT_MSG(!strcmp(v, kv), "native CPUID says %s, KVM_GET_SUPPORTED_CPUID %s", v, kv);
	EXPECT_EQ(access(is_intel(v) ? "/sys/module/kvm_intel/parameters/ept"
				     : "/sys/module/kvm_amd/parameters/npt", R_OK), 0);
	EXPECT_EQ(access(is_intel(v) ? "/sys/module/kvm_amd/parameters/npt"
				     : "/sys/module/kvm_intel/parameters/ept", R_OK), -1);
	close(kvm);
}

TEST(hypercall_instruction_traps)
{
	const char *set = getenv("GUESTMEM_CPU_VENDOR");
	char v[13];

	native_vendor(v);
	if (set && !strcmp(set, "host") && !hypercall_traps(is_intel(v)))
		SKIP("GUESTMEM_CPU_VENDOR=host and this host's hypervisor answers %s itself",
		     is_intel(v) ? "VMCALL" : "VMMCALL");
	if (set && strcmp(set, "auto") && strcmp(set, "host")) {
		/* An explicit vendor is shown, whether or not its instruction traps. */
		EXPECT_MSG(is_intel(v) == !strcmp(set, "intel"), "asked for %s, shown %s", set, v);
		return;
	}
	EXPECT_MSG(hypercall_traps(is_intel(v)), "vendor %s: its hypercall instruction did not trap", v);
}

static volatile sig_atomic_t handled;
/* Address 8: a write there faults; volatile so the compiler keeps it. */
static volatile uintptr_t bad_addr = 8;

static void fault(void)
{
	*(volatile int *)bad_addr = 1;
}

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	handled = sig == SIGSEGV && si->si_addr == (void *)8;
	_exit(handled ? 7 : 8);
}

TEST(sigsegv_stays_the_programs)
{
	struct sigaction sa = { .sa_sigaction = segv_handler, .sa_flags = SA_SIGINFO }, old;
	int status = 0;
	pid_t pid = fork();

	if (pid == 0) {
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGSEGV, &sa, NULL) || sigaction(SIGSEGV, NULL, &old) ||
		    old.sa_sigaction != segv_handler)
			_exit(9);
		fault();
		_exit(10);
	}
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 7, "status %#x", status);

	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		fault();
		_exit(10);
	}
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %#x", status);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
