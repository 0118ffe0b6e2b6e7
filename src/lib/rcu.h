/* SPDX-License-Identifier: MIT */
/*
 * RCU for guestmem: liburcu's bulletproof flavour (urcu-bp), so that any
 * thread of an unmodified VMM may enter a read-side section without
 * registering first.
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

#include <urcu/urcu-bp.h>

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

static inline void gm_rcu_read_lock(void)
{
	urcu_bp_read_lock();
}

static inline void gm_rcu_read_unlock(void)
{
	gm_tsan_release_gp();
	urcu_bp_read_unlock();
}

/* Wait until every read-side section that began before this call ended. */
static inline void gm_synchronize_rcu(void)
{
	urcu_bp_synchronize_rcu();
	gm_tsan_acquire_gp();
}

#define gm_rcu_dereference(p) smp_load_acquire(&(p))
#define gm_rcu_assign_pointer(p, v) smp_store_release(&(p), (v))

/*
 * Free @ptr with free() after a grace period, without blocking the caller
 * (under ThreadSanitizer it blocks: liburcu's queue is not instrumented).
 * Context: not inside a read-side section, no lock a reader may wait for.
 */
void gm_free_rcu(void *ptr);

#endif
