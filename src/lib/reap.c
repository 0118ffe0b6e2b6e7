/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "lockdep.h"
#include "reap.h"
#include "thread.h"

/*
 * Protects the queue, the counters and `started`; a leaf (jobs run
 * without it).  With gm_reap_cv: the reaper waits for jobs, gm_reap_wait()
 * for the reaper.
 */
static pthread_mutex_t gm_reap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gm_reap_cv = PTHREAD_COND_INITIALIZER;
static struct gm_reap_job *gm_reap_head, **gm_reap_tail = &gm_reap_head;
static uint64_t gm_reap_queued, gm_reap_done;
static bool gm_reap_started;
static pthread_once_t gm_reap_once = PTHREAD_ONCE_INIT;

static void *gm_reaper_main(void *arg)
{
	(void)arg;
	gm_mutex_lock(&gm_reap_lock, GM_LOCK_REAP);
	for (;;) {
		struct gm_reap_job *job = gm_reap_head;

		if (!job) {
			gm_check_pthread(pthread_cond_wait(&gm_reap_cv, &gm_reap_lock));
			continue;
		}
		gm_reap_head = job->next;
		if (!gm_reap_head)
			gm_reap_tail = &gm_reap_head;
		gm_mutex_unlock(&gm_reap_lock);
		job->fn(job);
		gm_mutex_lock(&gm_reap_lock, GM_LOCK_REAP);
		gm_reap_done++;
		gm_check_pthread(pthread_cond_broadcast(&gm_reap_cv));
	}
	return NULL;
}

/* fork(): the child has no reaper (it starts one when it needs one). */
static void gm_reap_prepare(void)
{
	gm_check_pthread(pthread_mutex_lock(&gm_reap_lock));
}

static void gm_reap_parent(void)
{
	gm_check_pthread(pthread_mutex_unlock(&gm_reap_lock));
}

static void gm_reap_child(void)
{
	gm_check_pthread(pthread_mutex_unlock(&gm_reap_lock));
	gm_reap_started = false;
}

static void gm_reap_init_once(void)
{
	pthread_atfork(gm_reap_prepare, gm_reap_parent, gm_reap_child);
}

/* Start the reaper.  Context: gm_reap_lock held.  Returns whether it runs. */
static bool gm_reaper_start_locked(void)
{
	if (!gm_reap_started)
		gm_reap_started = gm_thread_start(gm_reaper_main, NULL, 64 * 1024) == 0;
	return gm_reap_started;
}

void gm_reap(struct gm_reap_job *job)
{
	gm_check_pthread(pthread_once(&gm_reap_once, gm_reap_init_once));
	gm_mutex_lock(&gm_reap_lock, GM_LOCK_REAP);
	if (!gm_reaper_start_locked()) {
		gm_mutex_unlock(&gm_reap_lock);
		job->fn(job);
		return;
	}
	job->next = NULL;
	*gm_reap_tail = job;
	gm_reap_tail = &job->next;
	gm_reap_queued++;
	gm_check_pthread(pthread_cond_broadcast(&gm_reap_cv));
	gm_mutex_unlock(&gm_reap_lock);
}

void gm_reap_wait(void)
{
	uint64_t target;

	gm_mutex_lock(&gm_reap_lock, GM_LOCK_REAP);
	target = gm_reap_queued;
	while (gm_reap_started && gm_reap_done < target)
		gm_check_pthread(pthread_cond_wait(&gm_reap_cv, &gm_reap_lock));
	gm_mutex_unlock(&gm_reap_lock);
}
