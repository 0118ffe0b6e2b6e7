// SPDX-License-Identifier: MIT
/*
 * Forwarded notifications (src/preload/seccomp.c, "exec"): the receiver's
 * record of what it forwarded and is still awaited, and each listener's
 * record of which forwarded ids it has taken.
 *
 * A forward can be lost.  An image's name is a socket in its fd table, and
 * a fork child holds a copy from fork until its handler closes it.  If the
 * image execs in that moment, the new image's first calls are forwarded to
 * the old name, still bound by the child's copy, and the child's close
 * drops them with the queue.  So the receiver sends again what is still
 * pending, later and later; the listener takes each id once; and once
 * nobody holds the name any more, the caller gets the receiver's answer
 * for a process without a listener.  A forward that met a full queue is
 * kept the same way, tried again sooner.
 */
#ifndef GUESTMEM_PRELOAD_SECCOMP_FORWARDS_H
#define GUESTMEM_PRELOAD_SECCOMP_FORWARDS_H

#include <linux/seccomp.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* The receiver (one thread per process): @n, a notification of
 * @listener, went to @addr, or is to go there as soon as its queue has
 * room (@queue_full).  False if it could not be kept (the record is full
 * of callers still waiting). */
bool gm_sc_sent_note(int listener, const struct seccomp_notif *n, const struct sockaddr_un *addr,
		     socklen_t len, bool queue_full);

/* Milliseconds until the next forward is due again; -1 if none is. */
int gm_sc_sent_wait_ms(void);

/*
 * Send again, on @sock, each due forward that @listener still reports
 * pending; one whose name nobody holds gets @unserved instead.
 */
void gm_sc_sent_again(int listener, int sock, void (*unserved)(const struct seccomp_notif *));

/* The listener thread: true the first time forwarded @id arrives. */
bool gm_sc_take_once(int listener, uint64_t id);

/* A fork child: the parent's records are not its own. */
void gm_sc_forwards_forget(void);

#endif
