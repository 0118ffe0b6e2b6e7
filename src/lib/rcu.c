/* SPDX-License-Identifier: MIT */
#include <stdlib.h>

#include "rcu.h"

#ifdef GM_TSAN
char gm_rcu_tsan_token;
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
	/* liburcu's callback queue is invisible to TSan: wait instead. */
	gm_synchronize_rcu();
	free(ptr);
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
	urcu_bp_call_rcu(&f->head, gm_rcu_free_cb);
}
