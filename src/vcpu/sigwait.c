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
#include <pthread.h>
#include <stdlib.h>
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

/*
 * One signalfd per distinct watched set, shared by the vCPUs whose run
 * masks agree (usually all of them): a signalfd polls readable for the
 * signals pending for the thread that polls it, so one file serves every
 * vCPU thread, and the VMM's table holds one, not one per vCPU.
 * gm_sigfd_lock: the list and the reference counts; a leaf.
 */
struct kvm_sigfd {
	struct kvm_sigfd *next;
	sigset_t set;
	int fd;
	long refs;
};

static pthread_mutex_t gm_sigfd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_sigfd *gm_sigfds;

static struct kvm_sigfd *sigfd_get(const sigset_t *want, int *err)
{
	struct kvm_sigfd *s;
	int fd;

	gm_mutex_lock(&gm_sigfd_lock, GM_LOCK_SIGFD);
	for (s = gm_sigfds; s; s = s->next)
		if (!memcmp(&s->set, want, sizeof(*want)))
			break;
	if (!s) {
		fd = signalfd(-1, want, SFD_NONBLOCK | SFD_CLOEXEC);
		s = fd < 0 ? NULL : malloc(sizeof(*s));
		if (!s) {
			*err = fd < 0 ? -errno : -ENOMEM;
			if (fd >= 0)
				gm_raw_close(fd);
			gm_mutex_unlock(&gm_sigfd_lock);
			return NULL;
		}
		*s = (struct kvm_sigfd){ .next = gm_sigfds, .set = *want, .fd = gm_fd_own(fd) };
		gm_sigfds = s;
	}
	s->refs++;
	gm_mutex_unlock(&gm_sigfd_lock);
	return s;
}

void kvm_vcpu_sigfd_put(struct kvm_sigfd *s)
{
	struct kvm_sigfd **pp;

	if (!s)
		return;
	gm_mutex_lock(&gm_sigfd_lock, GM_LOCK_SIGFD);
	if (--s->refs == 0) {
		for (pp = &gm_sigfds; *pp != s; pp = &(*pp)->next)
			;
		*pp = s->next;
		gm_fd_close(s->fd);
		free(s);
	}
	gm_mutex_unlock(&gm_sigfd_lock);
}

int kvm_vcpu_sigfd(struct kvm_vcpu *v, const sigset_t *run_mask)
{
	struct kvm_sigfd *s;
	sigset_t want;
	int err = 0;

	lockdep_assert_held(&v->mutex);
	watched_set(run_mask, &want);
	if (v->sigfd && !memcmp(&want, &v->sigfd->set, sizeof(want)))
		return v->sigfd->fd;
	s = sigfd_get(&want, &err);
	if (!s)
		return err;
	kvm_vcpu_sigfd_put(v->sigfd);
	v->sigfd = s;
	return s->fd;
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
