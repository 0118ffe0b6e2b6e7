// SPDX-License-Identifier: MIT
/*
 * KVM_RUN's signal check without delivering the signal.
 *
 * The kernel runs a vCPU with the KVM_SET_SIGNAL_MASK mask (or the
 * caller's) in force: a signal that mask lets through ends KVM_RUN with
 * EINTR, but is not delivered there.  It stays pending, and on the way back
 * to user space the caller's own mask decides: a signal the caller blocks
 * (QEMU's SIG_IPI, the selftests' SIG_IPI, which they collect with
 * sigwait) is never delivered at all.  Waiting in ppoll() with the run mask
 * would deliver it, and with no handler installed its default action kills
 * the VMM.  So KVM_RUN keeps every signal blocked and watches the ones the
 * run mask lets through with a signalfd, which polls readable while such a
 * signal is pending and does not consume it.  When KVM_RUN restores the
 * caller's mask, the pending signal is delivered if that mask allows, as
 * on return from the kernel.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/signalfd.h>

#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "vcpu/vcpu.h"

/* The signals @run_mask lets through. */
static void watched_set(const sigset_t *run_mask, sigset_t *out)
{
	/* glibc's sigfillset writes the kernel's 64 bits only: zero the rest,
	 * or kvm_vcpu_sigfd()'s comparison sees stack garbage and calls
	 * signalfd() again at every entry. */
	memset(out, 0, sizeof(*out));
	sigfillset(out);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(run_mask, sig) == 1)
			sigdelset(out, sig);
}

int kvm_vcpu_sigfd(struct kvm_vcpu *v, const sigset_t *run_mask)
{
	sigset_t want;
	int fd;

	lockdep_assert_held(&v->mutex);
	watched_set(run_mask, &want);
	if (v->sig_fd >= 0 && !memcmp(&want, &v->sig_fd_set, sizeof(want)))
		return v->sig_fd;
	/* Creates the fd the first time; later changes only its mask. */
	fd = signalfd(v->sig_fd, &want, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (v->sig_fd < 0)
		fd = gm_fd_own(fd);
	v->sig_fd = fd;
	v->sig_fd_set = want;
	return fd;
}

bool kvm_vcpu_signal_pending(struct kvm_vcpu *v, const sigset_t *run_mask, int timeout_ms)
{
	struct pollfd p = { .fd = kvm_vcpu_sigfd(v, run_mask), .events = POLLIN };

	if (p.fd < 0)
		return false; /* no signalfd (EMFILE): signals are not seen */
	while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR)
		;
	return p.revents & POLLIN;
}

int kvm_vcpu_exit_intr(struct kvm_vcpu *v)
{
	kvm_stat_inc(&v->stat.signal_exits);
	v->run->exit_reason = KVM_EXIT_INTR;
	return -EINTR;
}
