// SPDX-License-Identifier: MIT
/* Forwarded notifications sent again and taken once: seccomp_forwards.h. */

#include "seccomp_forwards.h"

#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "lib/sys_raw.h"

/* Sent again after 50 ms, then twice as long each time, at most 1 s apart:
 * a lost forward costs its caller 50 ms; one that a worker holds for long
 * (a raw KVM_RUN) costs its listener a datagram a second.  Not sent yet
 * (a full queue): tried after 1 ms, then doubling the same way. */
#define GM_SC_AGAIN_FIRST_MS 50
#define GM_SC_FULL_FIRST_MS 1
#define GM_SC_AGAIN_MAX_MS 1000

struct gm_sc_sent {
	struct seccomp_notif n;
	struct sockaddr_un addr;
	socklen_t len;
	int64_t due_ms;
	int step_ms;
};

/*
 * Both records are touched by one thread only: the process's receiver
 * (sent), its listener (taken).  In the first image these are one thread,
 * which must never take a lock of libc's (seccomp.c, "the workers"), so
 * the records are fixed: each entry stands for a caller blocked in a
 * routed call.  Past 256 callers waiting at once on forwards, the excess
 * is not sent again, and one that met a full queue gets a stranger's
 * answer; past 1024 of this image's at once, an id arriving twice could
 * be served twice.
 */
#define GM_SC_SENT_MAX 256
#define GM_SC_TAKEN_MAX 1024
static struct gm_sc_sent gm_sc_sent[GM_SC_SENT_MAX];
static int gm_sc_nr_sent;
static uint64_t gm_sc_taken[GM_SC_TAKEN_MAX];
static int gm_sc_nr_taken;

static int64_t gm_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool gm_pending(int listener, uint64_t id)
{
	return GM_RAW_SYSCALL(SYS_ioctl, listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == 0;
}

static void gm_sc_sent_prune(int listener)
{
	int kept = 0;

	for (int i = 0; i < gm_sc_nr_sent; i++)
		if (gm_pending(listener, gm_sc_sent[i].n.id))
			gm_sc_sent[kept++] = gm_sc_sent[i];
	gm_sc_nr_sent = kept;
}

bool gm_sc_sent_note(int listener, const struct seccomp_notif *n, const struct sockaddr_un *addr,
		     socklen_t len, bool queue_full)
{
	struct gm_sc_sent *s;

	/* Full: keep only the callers still waiting (an answered forward
	 * stays until it is due); still full, this one is not sent again. */
	if (gm_sc_nr_sent == GM_SC_SENT_MAX)
		gm_sc_sent_prune(listener);
	if (gm_sc_nr_sent == GM_SC_SENT_MAX)
		return false;
	s = &gm_sc_sent[gm_sc_nr_sent++];
	s->n = *n;
	s->addr = *addr;
	s->len = len;
	s->step_ms = queue_full ? GM_SC_FULL_FIRST_MS : GM_SC_AGAIN_FIRST_MS;
	s->due_ms = gm_now_ms() + s->step_ms;
	return true;
}

int gm_sc_sent_wait_ms(void)
{
	int64_t now, first = INT64_MAX;

	if (!gm_sc_nr_sent)
		return -1;
	for (int i = 0; i < gm_sc_nr_sent; i++)
		if (gm_sc_sent[i].due_ms < first)
			first = gm_sc_sent[i].due_ms;
	now = gm_now_ms();
	return first <= now ? 0 : (int)(first - now);
}

void gm_sc_sent_again(int listener, int sock, void (*unserved)(const struct seccomp_notif *))
{
	int64_t now = gm_now_ms();

	for (int i = 0; i < gm_sc_nr_sent;) {
		struct gm_sc_sent *s = &gm_sc_sent[i];
		long r;

		if (s->due_ms > now) {
			i++;
			continue;
		}
		if (gm_pending(listener, s->n.id)) {
			/* Never waits: a full queue is tried again next time. */
			r = GM_RAW_SYSCALL(SYS_sendto, sock, &s->n, sizeof(s->n), MSG_DONTWAIT,
					   &s->addr, s->len);
			if (r >= 0 || (errno != ECONNREFUSED && errno != ENOENT)) {
				/* Sent, or the name refuses for now (a full queue,
				 * an image on its way out: EPIPE): later. */
				s->step_ms = s->step_ms * 2 > GM_SC_AGAIN_MAX_MS ? GM_SC_AGAIN_MAX_MS
										  : s->step_ms * 2;
				s->due_ms = now + s->step_ms;
				i++;
				continue;
			}
			/* Nobody holds the name: the caller's image has no listener
			 * (yet), and nothing took the call. */
			unserved(&s->n);
		}
		*s = gm_sc_sent[--gm_sc_nr_sent];
	}
}

bool gm_sc_take_once(int listener, uint64_t id)
{
	int i, kept = 0;

	for (i = 0; i < gm_sc_nr_taken; i++)
		if (gm_sc_taken[i] == id)
			return false;
	/* Full: ids answered since are never sent again (the receiver sends
	 * only pending ones), so only the pending need keeping. */
	if (gm_sc_nr_taken == GM_SC_TAKEN_MAX) {
		for (i = 0; i < gm_sc_nr_taken; i++)
			if (gm_pending(listener, gm_sc_taken[i]))
				gm_sc_taken[kept++] = gm_sc_taken[i];
		gm_sc_nr_taken = kept;
	}
	if (gm_sc_nr_taken < GM_SC_TAKEN_MAX)
		gm_sc_taken[gm_sc_nr_taken++] = id;
	return true;
}

void gm_sc_forwards_forget(void)
{
	gm_sc_nr_sent = 0;
	gm_sc_nr_taken = 0;
}
