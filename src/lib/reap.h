/* SPDX-License-Identifier: MIT */
/*
 * Deferred release of large host resources.  Giving a million pages back
 * to the host (munmap of a VM's stage-2 tables, close of a guest_memfd's
 * backing file) costs the host kernel about a microsecond per page on the
 * development VM; a VMM destroying a VM should not wait seconds for it.
 * gm_reap() queues such work; one detached thread, started on first use
 * with every signal blocked, runs the jobs in order.  Until it has, the
 * memory is still the process's (it shows in RSS); nothing else of the
 * object remains.
 */
#ifndef GM_LIB_REAP_H
#define GM_LIB_REAP_H

#include <stddef.h>

struct gm_reap_job {
	struct gm_reap_job *next;
	/* Does the release and frees the job. */
	void (*fn)(struct gm_reap_job *job);
};

/* Below this much memory a release is done at once (tests stay synchronous). */
#define GM_REAP_MIN_BYTES (64ULL << 20)

/* Run @job->fn(@job) on the reaper thread, or at once if it cannot start. */
void gm_reap(struct gm_reap_job *job);

/* Wait until every job queued before the call has run. */
void gm_reap_wait(void);

#endif
