/* SPDX-License-Identifier: MIT */
/*
 * Descriptors passed with a message (SCM_RIGHTS): the control-message
 * arithmetic, once.  Every guestmem message carries at most
 * GM_SCM_MAX_FDS of them.
 */
#ifndef GM_LIB_SCM_H
#define GM_LIB_SCM_H

#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include "compiler.h"

#define GM_SCM_MAX_FDS 2

/* Room for the control data of one message; aligned as a cmsghdr must be. */
union gm_scm_buf {
	struct cmsghdr h;
	char buf[CMSG_SPACE(GM_SCM_MAX_FDS * sizeof(int))];
};

/* Attach @fds[0 .. @n) to @m, whose control data is @b (@n 0: none). */
static inline void gm_scm_attach(struct msghdr *m, union gm_scm_buf *b, const int *fds,
				 unsigned n)
{
	gm_assert(n <= GM_SCM_MAX_FDS);
	if (!n) {
		m->msg_control = NULL;
		m->msg_controllen = 0;
		return;
	}
	memset(b, 0, sizeof(*b));
	m->msg_control = b->buf;
	m->msg_controllen = CMSG_SPACE(n * sizeof(int));
	b->h.cmsg_level = SOL_SOCKET;
	b->h.cmsg_type = SCM_RIGHTS;
	b->h.cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(&b->h), fds, n * sizeof(int));
}

/*
 * Make @b the control data a receive into @m may fill: room for one
 * descriptor, so the kernel closes any more a sender attached
 * (MSG_CTRUNC) instead of leaving them in this process's table.
 */
static inline void gm_scm_expect(struct msghdr *m, union gm_scm_buf *b)
{
	memset(b, 0, sizeof(*b));
	m->msg_control = b->buf;
	m->msg_controllen = CMSG_SPACE(sizeof(int));
}

/* The descriptor a message received with gm_scm_expect() carried, or -1. */
static inline int gm_scm_fd(struct msghdr *m)
{
	int fd = -1;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

#endif
