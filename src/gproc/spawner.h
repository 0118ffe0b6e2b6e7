/* SPDX-License-Identifier: MIT */
/*
 * The guest-process spawner: the first duty of guestmemd (step 4 of
 * docs/design-guest-execution-and-isolation.md).  `guestmem exec` starts
 * it before the VMM: a daemon (double-forked, its own session,
 * non-dumpable) that starts every guest process of the session as its own
 * child, optionally as another user (`--user`), so that the VMM is neither
 * the guest processes' parent nor, with --user, their owner: it cannot
 * signal, trace, renice or limit them.
 *
 * The VMM reaches it through a "door": one end of a SOCK_SEQPACKET socket
 * pair, inherited across fork and exec (not close-on-exec), named in the
 * environment (GP_SPAWNER_ENV = "FD:INODE:STRICT") and marked as one of
 * guestmem's own descriptors (lib/ownfd.h).  Holding the door is the
 * permission: every process of the session holds it and nobody else.  A
 * request carries two descriptors: a "link" (a socket pair end the
 * spawner answers on and then watches: when the VMM closes the other end,
 * the guest process is killed and reaped) and the stub's end of its
 * control socket.  The spawner exits once no process holds the door and
 * none of its children is left.
 */
#ifndef GM_GPROC_SPAWNER_H
#define GM_GPROC_SPAWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "gproc/spawn.h"

#define GP_SPAWNER_ENV "GUESTMEM_GPROCD"

/*
 * Start the spawner, whose children run as @cr's user if set.  Returns
 * the VMM's door (not close-on-exec, at or above the descriptor floor)
 * and its environment value in @env, or -errno.  For `guestmem exec`,
 * before it execs the VMM; @strict goes into the value (see
 * gp_spawner_door()).  It forks: call it while this process has one
 * thread.
 */
int gp_spawner_start(const struct gp_creds *cr, bool strict, char *env, size_t env_len);

/*
 * This process's door, from the environment, checked once (the number
 * must hold the socket with that inode).  -1: none named (start guest
 * processes here).  -EIO: one is named but is not there; *@strict then
 * says whether guest processes must not be started here instead (--user
 * was given: a guest process of the VMM's own user would be weaker than
 * asked for).
 */
int gp_spawner_door(bool *strict);

/*
 * In a fork child whose raw calls nobody answered for guestmem until now:
 * if a raw close or dup2 took the door's number, the door is gone (-EIO
 * above, as if its spawner had died) and the number is the program's.
 */
void gp_spawner_door_recheck(void);

/*
 * @fd: a copy of the session's door from elsewhere (the seccomp helper
 * keeps one).  Taken if this process's own, named in its environment, is
 * gone (-EIO above); closed otherwise.  For an image's constructor and a
 * fork child's late start (serialised before its first object).
 */
void gp_spawner_door_offer(int fd);

/*
 * Ask the spawner behind @door for a guest process with GP_VM_* @flags
 * whose control socket is @ctl (the stub's end; still the caller's to
 * close).  Returns the pid and *@link, the end whose close kills and
 * reaps the process (close-on-exec), or -errno.
 */
long gp_spawner_request(int door, int ctl, unsigned flags, int *link);

#endif
