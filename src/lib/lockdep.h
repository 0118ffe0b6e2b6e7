/* SPDX-License-Identifier: MIT */
/*
 * A small lockdep: lock and unlock wrappers that, in debug builds (NDEBUG
 * not defined, which is how the project builds and tests), keep the locks
 * each thread holds with their class and abort with both locks' names and
 * places when a thread takes a lock out of the one global order of
 * docs/locking.md; and lockdep_assert_held() for functions that expect a
 * lock held.  The bookkeeping is a thread-local array: no shared state, no
 * atomics, nothing for ThreadSanitizer to see.  With NDEBUG the wrappers are
 * the plain pthread calls.
 *
 * A lock's class is its rank in the order: a thread may take a lock only if
 * every lock it already holds has a lower rank (trylocks cannot deadlock
 * and are only recorded).  Keep this enum and docs/locking.md in step.
 */
#ifndef GM_LIB_LOCKDEP_H
#define GM_LIB_LOCKDEP_H

#include <pthread.h>
#include <stdbool.h>

#include "compiler.h"

/* Outermost first (see docs/locking.md for what each protects). */
enum gm_lock_class {
	GM_LOCK_NONE = 0,
	GM_LOCK_HANGUP,		/* uapi gm_hangup_lock */
	GM_LOCK_FILE_POS,	/* uapi f->pos_lock (read(2) of a stats fd) */
	GM_LOCK_IRQFDS,		/* ev->irqfds_lock */
	GM_LOCK_KVM,		/* kvm->lock */
	GM_LOCK_VCPU,		/* vcpu->mutex */
	GM_LOCK_X86_INIT,	/* x86_vm_init_lock (src/vcpu/x86_run.c) */
	GM_LOCK_SLOTS,		/* kvm->slots_lock */
	GM_LOCK_GMEM_INVALIDATE, /* gmem->invalidate_lock */
	GM_LOCK_MN,		/* kvm->mn_lock */
	GM_LOCK_MMU,		/* kvm->mmu_lock */
	GM_LOCK_SHADOW,		/* the x86 shadow's sh->lock (src/vcpu/x86_shadow.c) */
	GM_LOCK_BACKING,	/* a backing's pool lock (secretmem sm->lock, memfd m->lock) */
	GM_LOCK_SHRAM,		/* gm_shram_lock (src/core/gmemfd.c) */
	GM_LOCK_IOEVENTFD,	/* ev->io_lock */
	GM_LOCK_IRQ,		/* ev->irq_lock */
	GM_LOCK_VCPU_HAND,	/* vcpu->hand_lock */
	GM_LOCK_HALT,		/* apic->halt_lock */
	GM_LOCK_TSC,		/* vcpu tsc_write_lock (TSC synchronisation) */
	GM_LOCK_COALESCED,	/* kvm->arch.coalesced ring_lock */
	GM_LOCK_IRQFD_ALL,	/* gm_irqfd_all_lock */
	GM_LOCK_VM_LIST,	/* gm_vm_list_lock */
	GM_LOCK_FILES,		/* uapi gm_files_lock */
	GM_LOCK_HVA,		/* uapi gm_hva_lock */
	GM_LOCK_PIPE,		/* uapi gm_pipe_lock */
	GM_LOCK_CONFIG,		/* gm_config_mutex */
	GM_LOCK_RCU_DEFER,	/* gm_tsan_defer_lock (ThreadSanitizer builds) */
	GM_LOCK_RANGEMAP_POOL,	/* rangemap's rm_pool_lock (free-node pool) */
	GM_LOCK_S2_POOL,	/* a VM's stage-2 table pool (mmu->pool.lock) */
	GM_LOCK_REAP,		/* gm_reap_lock (deferred releases) */
	GM_LOCK_GPROC_CTL,	/* gproc vm->ctl_lock (guest-process control socket) */
	GM_LOCK_SIGFD,		/* gm_sigfd_lock (src/vcpu/sigwait.c) */
	GM_LOCK_KEEPER_CONNECT,	/* gm_keeper_connect_lock (src/uapi/keeper.c) */
	GM_LOCK_WORKER,		/* a gm_worker's lock (src/lib/worker.h) */
	GM_LOCK_NR_CLASSES,
};

#ifndef NDEBUG
enum { LOCKDEP_SHARED = 1, LOCKDEP_EXCLUSIVE = 2, LOCKDEP_ANY = 3 };
void __lockdep_acquire(const void *lock, enum gm_lock_class cls, int mode, bool trylock,
		       const char *name, const char *file, int line);
void __lockdep_release(const void *lock, const char *name, const char *file, int line);
void __lockdep_assert_held(const void *lock, int mode, const char *name, const char *file,
			   int line);
#define __LOCKDEP_ACQUIRE(l, c, m, t) __lockdep_acquire((l), (c), (m), (t), #l, __FILE__, __LINE__)
#define __LOCKDEP_RELEASE(l) __lockdep_release((l), #l, __FILE__, __LINE__)
/* Context: the calling thread holds @l (any mode; _write: exclusively). */
#define lockdep_assert_held(l) \
	__lockdep_assert_held((l), LOCKDEP_ANY, #l, __FILE__, __LINE__)
#define lockdep_assert_held_write(l) \
	__lockdep_assert_held((l), LOCKDEP_EXCLUSIVE, #l, __FILE__, __LINE__)
#else
#define __LOCKDEP_ACQUIRE(l, c, m, t) ((void)(l), (void)(c))
#define __LOCKDEP_RELEASE(l) ((void)(l))
#define lockdep_assert_held(l) ((void)(l))
#define lockdep_assert_held_write(l) ((void)(l))
#endif

/* The order is checked before blocking, so an inversion aborts, not hangs. */
#define gm_mutex_lock(m, cls)                                                    \
	do {                                                                     \
		__LOCKDEP_ACQUIRE((m), (cls), LOCKDEP_EXCLUSIVE, false);         \
		gm_check_pthread(pthread_mutex_lock(m));                         \
	} while (0)
#define gm_mutex_unlock(m)                                                       \
	do {                                                                     \
		__LOCKDEP_RELEASE(m);                                            \
		gm_check_pthread(pthread_mutex_unlock(m));                       \
	} while (0)
#define gm_rwlock_rdlock(l, cls)                                                 \
	do {                                                                     \
		__LOCKDEP_ACQUIRE((l), (cls), LOCKDEP_SHARED, false);            \
		gm_check_pthread(pthread_rwlock_rdlock(l));                      \
	} while (0)
#define gm_rwlock_wrlock(l, cls)                                                 \
	do {                                                                     \
		__LOCKDEP_ACQUIRE((l), (cls), LOCKDEP_EXCLUSIVE, false);         \
		gm_check_pthread(pthread_rwlock_wrlock(l));                      \
	} while (0)
#define gm_rwlock_unlock(l)                                                      \
	do {                                                                     \
		__LOCKDEP_RELEASE(l);                                            \
		gm_check_pthread(pthread_rwlock_unlock(l));                      \
	} while (0)
/* 0 and the lock taken (for read), or the pthread error (EBUSY). */
#define gm_rwlock_tryrdlock(l, cls)                                              \
	({                                                                       \
		int __r = pthread_rwlock_tryrdlock(l);                           \
		if (!__r)                                                        \
			__LOCKDEP_ACQUIRE((l), (cls), LOCKDEP_SHARED, true);     \
		__r;                                                             \
	})

#endif
