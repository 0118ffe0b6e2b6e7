/* SPDX-License-Identifier: MIT */
/*
 * guestmem's own descriptors in the VMM's table (backing memfds, kvm_run
 * and ring memfds, eventfds, epoll sets, socket peers, the guest process's
 * channels).  The kernel would put none of them there, so the VMM must not
 * see them: each is moved to a number at or above gm_fd_floor() (clear of
 * the low numbers a VMM uses and dup2()s onto) and marked here.  The
 * surfaces that answer for the VMM (the preload's libc wrappers,
 * guestmem_sys_*(), the seccomp listener) treat a marked number as not
 * open: EBADF, and close/close_range/closefrom skip it, so a VMM that
 * closes every descriptor it did not open leaves guestmem intact.
 *
 * A mark lives exactly as long as the descriptor: it is set by gm_fd_own()
 * and cleared by gm_fd_close() right after the close, the only way
 * guestmem closes one.  Numbers at or above GM_FD_TRACKED are not marked
 * (the VMM sees them as today).
 */
#ifndef GM_LIB_OWNFD_H
#define GM_LIB_OWNFD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GM_FD_TRACKED (1 << 20) /* the usual hard RLIMIT_NOFILE */

extern _Atomic uint64_t gm_fd_marks[GM_FD_TRACKED / 64];

/*
 * The lowest number for guestmem's descriptors: 512, or half the soft
 * RLIMIT_NOFILE when that is lower; decided at the first call.
 */
int gm_fd_floor(void);

/*
 * Take @fd (a new descriptor of guestmem's) out of the VMM's way: move it
 * to the lowest free number >= gm_fd_floor() (keeping FD_CLOEXEC) and mark
 * it.  Returns the descriptor to use from now on; @fd itself if it is < 0
 * (so gm_fd_own(memfd_create(...)) passes errors on), or if no higher
 * number is free (it is marked where it is).
 */
int gm_fd_own(int fd);

/*
 * A marked close-on-exec duplicate of @fd (someone else's descriptor that
 * guestmem keeps a reference to), at or above the floor if one is free.
 * -1 with errno on failure.
 */
int gm_fd_own_dup(int fd);

/*
 * Mark @fd, a descriptor of guestmem's inherited at a number chosen before
 * this image ran (named in the environment), where it is.
 */
void gm_fd_mark_own(int fd);

/* Close @fd and unmark it. */
int gm_fd_close(int fd);

/*
 * Unmark @fd without closing it: the descriptor guestmem had there was
 * closed or replaced by a call nobody answered for guestmem (a raw close
 * or dup2 in a fork child whose listener had not started), so whatever is
 * there now is the program's.
 */
void gm_fd_forget(int fd);

/*
 * Whether @fd is one of guestmem's own.  Relaxed: only guestmem uses the
 * numbers it marks, so no other data is published with a mark.
 */
static inline bool gm_fd_is_own(int fd)
{
	if ((unsigned)fd >= GM_FD_TRACKED)
		return false;
	return atomic_load_explicit(&gm_fd_marks[fd / 64], memory_order_relaxed) &
	       (1ULL << (fd % 64));
}

/* Whether any descriptor in [lo, hi] is marked. */
bool gm_fd_any_own(unsigned lo, unsigned hi);

/* The next marked number >= @from, or -1. */
int gm_fd_next_own(unsigned from);

#endif
