/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdlib.h>

#include "rcu.h"
#include "lockdep.h"

__thread bool gm_rcu_registered __attribute__((tls_model("initial-exec")));
static pthread_key_t gm_rcu_key;
static pthread_once_t gm_rcu_once = PTHREAD_ONCE_INIT;

/* Thread exit: a registered thread must leave the reader registry. */
static void gm_rcu_thread_exit(void *unused)
{
	(void)unused;
	if (gm_rcu_registered) {
		urcu_memb_unregister_thread();
		gm_rcu_registered = false;
	}
}

/*
 * fork(): liburcu's call_rcu worker must be quiesced around it, and the
 * child gets a fresh one; registered reader threads other than the forking
 * one do not exist in the child.
 */
static void gm_rcu_init_once(void)
{
	gm_check_pthread(pthread_key_create(&gm_rcu_key, gm_rcu_thread_exit));
	pthread_atfork(urcu_memb_call_rcu_before_fork, urcu_memb_call_rcu_after_fork_parent,
		       urcu_memb_call_rcu_after_fork_child);
}

void gm_rcu_register_slow(void)
{
	gm_check_pthread(pthread_once(&gm_rcu_once, gm_rcu_init_once));
	urcu_memb_register_thread();
	gm_rcu_registered = true;
	/* Any non-NULL value makes the destructor run at thread exit. */
	pthread_setspecific(gm_rcu_key, &gm_rcu_registered);
}

#ifdef GM_TSAN
char gm_rcu_tsan_token;

/* Pointers waiting for a grace period (TSan builds only); leaf lock. */
static pthread_mutex_t gm_tsan_defer_lock = PTHREAD_MUTEX_INITIALIZER;
struct gm_tsan_deferred {
	struct gm_tsan_deferred *next;
	void *ptr;			      /* free()d, or */
	void (*fn)(struct rcu_head *head);    /* called on head */
	struct rcu_head *head;
};
static struct gm_tsan_deferred *gm_tsan_deferred;

static void gm_tsan_defer(void *ptr, void (*fn)(struct rcu_head *), struct rcu_head *head)
{
	struct gm_tsan_deferred *d = malloc(sizeof(*d));

	if (!d)
		return; /* leak rather than free under a reader */
	d->ptr = ptr;
	d->fn = fn;
	d->head = head;
	gm_mutex_lock(&gm_tsan_defer_lock, GM_LOCK_RCU_DEFER);
	d->next = gm_tsan_deferred;
	gm_tsan_deferred = d;
	gm_mutex_unlock(&gm_tsan_defer_lock);
}

void gm_synchronize_rcu(void)
{
	struct gm_tsan_deferred *d;

	gm_mutex_lock(&gm_tsan_defer_lock, GM_LOCK_RCU_DEFER);
	d = gm_tsan_deferred;
	gm_tsan_deferred = NULL;
	gm_mutex_unlock(&gm_tsan_defer_lock);
	urcu_memb_synchronize_rcu();
	gm_tsan_acquire_gp();
	while (d) { /* queued before the grace period began */
		struct gm_tsan_deferred *next = d->next;

		if (d->fn)
			d->fn(d->head);
		else
			free(d->ptr);
		free(d);
		d = next;
	}
}
#endif

struct gm_rcu_free {
	struct rcu_head head;
	void *ptr;
};

static void gm_rcu_free_cb(struct rcu_head *head)
{
	struct gm_rcu_free *f = caa_container_of(head, struct gm_rcu_free, head);

	gm_tsan_acquire_gp();
	free(f->ptr);
	free(f);
}

void gm_free_rcu(void *ptr)
{
	struct gm_rcu_free *f;

	if (!ptr)
		return;
#ifdef GM_TSAN
	/*
	 * liburcu's callback queue is invisible to TSan: queue the pointer
	 * for the next gm_synchronize_rcu() of any thread instead.
	 */
	gm_tsan_defer(ptr, NULL, NULL);
	return;
#endif
	f = malloc(sizeof(*f));
	if (!f) {
		/* No memory for the deferral record: wait for readers instead. */
		gm_synchronize_rcu();
		free(ptr);
		return;
	}
	f->ptr = ptr;
	urcu_memb_call_rcu(&f->head, gm_rcu_free_cb);
}

void gm_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *head))
{
#ifdef GM_TSAN
	gm_tsan_defer(NULL, fn, head); /* see gm_free_rcu() */
#else
	urcu_memb_call_rcu(head, fn);
#endif
}
