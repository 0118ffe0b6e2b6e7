// SPDX-License-Identifier: MIT
/*
 * The CPU vendor a VMM sees under `guestmem exec` (lib/host_cpuid.h).
 *
 * Guest code chooses its hypercall instruction from the vendor: VMCALL on
 * Intel, VMMCALL on AMD (the KVM selftests read the vendor with a native
 * CPUID in the VMM's process and copy the answer into the guest).  Our
 * vCPUs run guest code natively at CPL3, where the instruction must trap
 * to reach guestmem.  On bare metal both do (#UD or #GP).  On a host that
 * is itself a guest, the outer hypervisor intercepts its own vendor's
 * instruction at every privilege level and answers it (measured on this
 * project's AMD CI VMs: VMMCALL returns RAX = -1, no trap).  Then, where
 * the CPU has CPUID faulting, the VMM's process is shown the other vendor:
 * its CPUID instructions fault, and the handler below answers them with
 * the host's values and that vendor string.  KVM_GET_SUPPORTED_CPUID and
 * the vendor module's parameters follow (gm_cpu_vendor()).
 *
 * GUESTMEM_CPU_VENDOR=auto (default) does the above; host never switches;
 * intel or amd switch whenever CPUID faulting allows.
 *
 * SIGSEGV stays the VMM's: sigaction() and signal() for SIGSEGV are
 * answered from a recorded disposition, and a fault that is not a CPUID
 * goes to the VMM's handler, or kills as the default action would.  A raw
 * rt_sigaction system call bypasses this (a deviation the README lists).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <asm/prctl.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "preload.h"
#include "lib/host_cpuid.h"

/* The VMM's SIGSEGV disposition while we own the real one.  Written by
 * sigaction()/signal() callers; read by the handler.  Guarded by nothing
 * more than the kernel's own sigaction is: racing installers get one of
 * their values, as with the real call. */
static struct sigaction gm_vmm_segv; /* zero: SIG_DFL */

/* libc's sigaction: one NEXT site, resolved at start-up (never first in a
 * signal handler, where dlsym is not safe). */
static int real_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	return NEXT(sigaction)(sig, act, old);
}

/* ---- the handler ------------------------------------------------------------ */

static void chain_to_vmm(int sig, siginfo_t *si, void *uc)
{
	struct sigaction act = gm_vmm_segv;

	if (act.sa_handler == SIG_DFL || act.sa_handler == SIG_IGN) {
		/* A synchronous fault cannot be ignored: re-run the instruction
		 * with the default action, which kills as it would have. */
		struct sigaction dfl = { .sa_handler = SIG_DFL };

		real_sigaction(SIGSEGV, &dfl, NULL);
		return;
	}
	if (act.sa_flags & SA_RESETHAND)
		gm_vmm_segv.sa_handler = SIG_DFL;
	if (act.sa_flags & SA_SIGINFO)
		act.sa_sigaction(sig, si, uc);
	else
		act.sa_handler(sig);
}

static void set_reg32(greg_t *g, int reg, uint32_t v)
{
	g[reg] = (greg_t)v; /* 32-bit results zero-extend */
}

static void gm_cpuid_sigsegv(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	const uint8_t *ip = (const uint8_t *)g[REG_RIP];
	uint32_t leaf, r[4];

	/* CPUID faulting raises #GP(0) on the instruction itself. */
	if (si->si_code != SI_KERNEL || g[REG_TRAPNO] != 13 || ip[0] != 0x0f || ip[1] != 0xa2) {
		chain_to_vmm(sig, si, ucv);
		return;
	}
	leaf = (uint32_t)g[REG_RAX];
	gm_host_cpuid(leaf, (uint32_t)g[REG_RCX], r);
	if (leaf == 0) {
		gm_vendor_regs(gm_cpu_vendor(), &r[1], &r[3], &r[2]);
	} else if (leaf == 0x80000000) {
		if (gm_cpu_vendor() == GM_VENDOR_INTEL)
			r[1] = r[2] = r[3] = 0;
		else
			gm_vendor_regs(GM_VENDOR_AMD, &r[1], &r[3], &r[2]);
	}
	set_reg32(g, REG_RAX, r[0]);
	set_reg32(g, REG_RBX, r[1]);
	set_reg32(g, REG_RCX, r[2]);
	set_reg32(g, REG_RDX, r[3]);
	g[REG_RIP] += 2;
}

/* ---- start-up ----------------------------------------------------------------- */

/* Runs before the program's constructors that may read CPUID (priority). */
__attribute__((constructor(101))) static void gm_cpu_vendor_init(void)
{
	const char *set = getenv("GUESTMEM_CPU_VENDOR");
	enum gm_x86_vendor host = gm_host_vendor(), want = gm_cpu_vendor();
	struct sigaction sa = { .sa_sigaction = gm_cpuid_sigsegv,
				.sa_flags = SA_SIGINFO | SA_ONSTACK };

	if (want == host)
		return;
	if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0)) {
		if (set && strcmp(set, "auto"))
			fprintf(stderr, "guestmem: GUESTMEM_CPU_VENDOR=%s needs CPUID faulting, "
					"which this CPU lacks; the host vendor applies\n", set);
		return;
	}
	/* Our handler replaces whatever is installed; that becomes the VMM's. */
	sigemptyset(&sa.sa_mask);
	real_sigaction(SIGSEGV, &sa, &gm_vmm_segv);
	gm_host_cpuid_faulting_on();
}

/* ---- SIGSEGV stays the VMM's --------------------------------------------------- */

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
	if (sig != SIGSEGV || !gm_host_cpuid_faulting())
		return real_sigaction(sig, act, old);
	if (old)
		*old = gm_vmm_segv;
	if (act) {
		gm_vmm_segv = *act;
		sigdelset(&gm_vmm_segv.sa_mask, SIGKILL);
		sigdelset(&gm_vmm_segv.sa_mask, SIGSTOP);
	}
	return 0;
}

static sighandler_t record_handler(int sig, sighandler_t h, int flags,
				   sighandler_t (*next)(int, sighandler_t))
{
	sighandler_t prev;

	if (sig != SIGSEGV || !gm_host_cpuid_faulting())
		return next(sig, h);
	if (h == SIG_ERR) {
		errno = EINVAL;
		return SIG_ERR;
	}
	prev = gm_vmm_segv.sa_handler;
	memset(&gm_vmm_segv, 0, sizeof(gm_vmm_segv));
	gm_vmm_segv.sa_handler = h;
	gm_vmm_segv.sa_flags = flags;
	return prev;
}

/* signal() is BSD semantics in glibc: SA_RESTART, the handler stays. */
EXPORT sighandler_t signal(int sig, sighandler_t h)
{
	return record_handler(sig, h, SA_RESTART, NEXT(signal));
}

EXPORT sighandler_t bsd_signal(int sig, sighandler_t h)
{
	return record_handler(sig, h, SA_RESTART, NEXT(bsd_signal));
}

EXPORT sighandler_t sysv_signal(int sig, sighandler_t h)
{
	return record_handler(sig, h, SA_RESETHAND | SA_NODEFER, NEXT(sysv_signal));
}

/*
 * A faulting CPUID in a thread that blocks SIGSEGV would kill the process
 * (the kernel forces a blocked synchronous signal).  Threads block
 * everything routinely (sigfillset before pthread_create, as GLib and
 * guestmem's own threads do; glibc's pthread_exit then loads libgcc_s,
 * whose constructor runs CPUID), so while CPUID faults SIGSEGV is never
 * blocked.  Blocking it only ever deferred a SIGSEGV sent with kill().
 */
static const sigset_t *without_segv(int how, const sigset_t *set, sigset_t *tmp)
{
	if (!set || how == SIG_UNBLOCK || !gm_host_cpuid_faulting() || !sigismember(set, SIGSEGV))
		return set;
	*tmp = *set;
	sigdelset(tmp, SIGSEGV);
	return tmp;
}

EXPORT int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t tmp;

	return NEXT(pthread_sigmask)(how, without_segv(how, set, &tmp), old);
}

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	sigset_t tmp;

	return NEXT(sigprocmask)(how, without_segv(how, set, &tmp), old);
}
