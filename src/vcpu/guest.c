/* SPDX-License-Identifier: MIT */
/*
 * The guest thread and <guestmem/guest.h>.
 *
 * An accessor splits its access at page boundaries.  Each piece first
 * tries the hit path: inside an RCU read-side section, walk the stage-2
 * table and load or store through the host address - no lock, no atomic
 * read-modify-write (aligned 1/2/4/8-byte pieces use one relaxed atomic
 * load or store, a plain mov on x86, so that racing vCPUs behave as on
 * hardware).  A miss runs the fault path (src/mmu/fault.c) outside the
 * section and then redoes the piece; retries never leave the accessor.
 *
 * Exits: the accessor writes the exit into kvm_run and parks (guest_park);
 * the next KVM_RUN completes it (run.c) and resumes the accessor, which
 * then returns the data the VMM supplied, or redoes the access after a
 * memory-fault exit.  Every accessor starts with a stop point: if KVM_RUN
 * was interrupted by a signal (vcpu->kick), the guest parks there without
 * an exit.  The guest never parks inside an RCU read-side section.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/rcu.h"
#include "lib/sys_raw.h"
#include "mmu/mmu.h"
#include "vcpu/vcpu.h"

/* ---- parking ------------------------------------------------------------ */

/*
 * Publish the guest's half of the handoff: @state with what KVM_RUN must
 * return, then wake KVM_RUN if it went to sleep.  Dekker with
 * wait_for_guest(): we store state then load waiter_sleeping, it stores
 * waiter_sleeping then loads state, all four sequentially consistent, so
 * at least one of us sees the other and KVM_RUN cannot sleep through it.
 */
static void guest_publish(struct kvm_vcpu *v, enum kvm_guest_state state, bool exited, int ret)
{
	uint64_t one = 1;

	gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
	v->exited = exited;
	v->run_ret = ret;
	/*
	 * Sequentially consistent (hence also a release: a lockless reader of
	 * state sees exited and run_ret): with the load below and the two
	 * seq_cst accesses of wait_for_guest() it forms the Dekker pattern.
	 */
	__atomic_store_n(&v->state, state, __ATOMIC_SEQ_CST);
	gm_mutex_unlock(&v->hand_lock);
	/* VM destruction joins us, so the fd is still open. */
	if (__atomic_load_n(&v->waiter_sleeping, __ATOMIC_SEQ_CST) &&
	    gm_raw_write(v->wake_fd, &one, sizeof(one)) != sizeof(one))
		gm_assert(!"write of the vCPU eventfd failed");
}

void kvm_guest_park(struct kvm_vcpu *v, bool exited, int ret)
{
	bool dying;

	guest_publish(v, GUEST_OUT, exited, ret);
	/*
	 * Most exits are handled in microseconds: spin a little before
	 * sleeping.  Acquire: pairs with the release in resume_guest().
	 */
	kvm_vcpu_spin_until(smp_load_acquire(&v->state) == GUEST_IN || READ_ONCE(v->dying));
	gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
	while (v->state != GUEST_IN && !v->dying)
		gm_check_pthread(pthread_cond_wait(&v->hand_cv, &v->hand_lock));
	dying = v->dying;
	gm_mutex_unlock(&v->hand_lock);
	if (dying)
		pthread_exit(NULL); /* the VM is being destroyed */
}

/* ---- the thread ------------------------------------------------------------ */

static void *guest_thread_main(void *arg)
{
	struct kvm_vcpu *v = arg;

	/* This thread is the vCPU's: what it dirties goes to its ring. */
	kvm_set_running_dirty_ring(&v->dirty_ring);
	v->guest_fn(&v->guest);

	/* Returning ends the vCPU: this and every later KVM_RUN is SHUTDOWN. */
	v->run->exit_reason = KVM_EXIT_SHUTDOWN;
	v->pending = VCPU_PENDING_NONE;
	guest_publish(v, GUEST_DONE, true, 0);
	return NULL;
}

int kvm_guest_thread_start(struct kvm_vcpu *v)
{
	char name[16];
	int r;

	if (v->wake_fd < 0) {
		v->wake_fd = gm_fd_own(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
		if (v->wake_fd < 0)
			return -errno;
	}
	r = pthread_create(&v->thread, NULL, guest_thread_main, v);
	if (r)
		return -r;
	snprintf(name, sizeof(name), "vcpu%u", v->vcpu_id);
	pthread_setname_np(v->thread, name);
	return 0;
}

void kvm_guest_thread_stop(struct kvm_vcpu *v)
{
	bool started;

	gm_mutex_lock(&v->hand_lock, GM_LOCK_VCPU_HAND);
	gm_assert(v->state != GUEST_IN); /* nobody can be in KVM_RUN now */
	started = v->state != GUEST_NOT_STARTED;
	WRITE_ONCE(v->dying, true);
	gm_check_pthread(pthread_cond_broadcast(&v->hand_cv));
	gm_mutex_unlock(&v->hand_lock);
	/* A forked child shares the object but has no such thread. */
	if (started && v->kvm->creator_pid == getpid())
		gm_check_pthread(pthread_join(v->thread, NULL));
}

/* ---- GUESTMEM_GUEST ---------------------------------------------------------- */

static pthread_once_t guest_dl_once = PTHREAD_ONCE_INIT;
static guestmem_guest_fn guest_dl_fn;

static void guest_dl_load(void)
{
	const char *path = getenv("GUESTMEM_GUEST");
	void *h;

	if (!path || !*path)
		return; /* no C guest: the vCPUs run the VMM's machine code */
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "guestmem: GUESTMEM_GUEST: %s\n", dlerror());
		return;
	}
	*(void **)&guest_dl_fn = dlsym(h, "guestmem_guest_main");
	if (!guest_dl_fn)
		fprintf(stderr, "guestmem: GUESTMEM_GUEST: %s has no guestmem_guest_main\n", path);
}

guestmem_guest_fn kvm_guest_default_fn(void)
{
	gm_check_pthread(pthread_once(&guest_dl_once, guest_dl_load));
	return guest_dl_fn;
}
