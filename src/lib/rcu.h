/* SPDX-License-Identifier: MIT */
/*
 * RCU for guestmem: liburcu's membarrier flavour (urcu-memb).  Its grace
 * periods wait for readers with a futex that the last reader wakes, so a
 * remote flush costs microseconds even while vCPUs are busy (the
 * bulletproof flavour polls every 10 ms).  Threads of an unmodified VMM
 * enter read-side sections without knowing about RCU, so registration is
 * lazy: the first read lock of a thread registers it, and a thread-exit
 * destructor unregisters it.
 *
 * Pointers are published with smp_store_release and read with
 * smp_load_acquire (instead of liburcu's rcu_assign_pointer/rcu_dereference)
 * so that ThreadSanitizer sees the publication edge.  Likewise the grace
 * period is made visible to TSan: every read-side unlock "releases" a token
 * that synchronize acquires, which is exactly the ordering a grace period
 * guarantees.
 */
#ifndef GM_LIB_RCU_H
#define GM_LIB_RCU_H

#include <urcu/urcu-memb.h>

#include "compiler.h"

#if defined(__SANITIZE_THREAD__)
#define GM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GM_TSAN 1
#endif
#endif

#ifdef GM_TSAN
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
extern char gm_rcu_tsan_token;
#define gm_tsan_release_gp() __tsan_release(&gm_rcu_tsan_token)
#define gm_tsan_acquire_gp() __tsan_acquire(&gm_rcu_tsan_token)
#else
#define gm_tsan_release_gp() ((void)0)
#define gm_tsan_acquire_gp() ((void)0)
#endif

extern __thread bool gm_rcu_registered __attribute__((tls_model("initial-exec")));
/* Register the calling thread with RCU (and arrange its unregistration). */
void gm_rcu_register_slow(void);

static inline void gm_rcu_read_lock(void)
{
	if (unlikely(!gm_rcu_registered))
		gm_rcu_register_slow();
	urcu_memb_read_lock();
}

static inline void gm_rcu_read_unlock(void)
{
	gm_tsan_release_gp();
	urcu_memb_read_unlock();
}

/*
 * Wait until every read-side section that began before this call ended.
 * Context: not inside a read-side section.
 */
#ifdef GM_TSAN
void gm_synchronize_rcu(void); /* also frees what gm_free_rcu() queued */
#else
static inline void gm_synchronize_rcu(void)
{
	urcu_memb_synchronize_rcu();
}
#endif

#define gm_rcu_dereference(p) smp_load_acquire(&(p))
#define gm_rcu_assign_pointer(p, v) smp_store_release(&(p), (v))

/*
 * Free @ptr with free() after a grace period, without blocking the caller.
 * Context: any, except inside a read-side section.
 */
void gm_free_rcu(void *ptr);

/*
 * Call @fn(@head) after a grace period, without blocking the caller (for
 * batches: one deferral for many objects).  Context: as gm_free_rcu().
 */
void gm_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *head));

#endif
