/* SPDX-License-Identifier: MIT */
/*
 * Starting a guest process: the stub (embedded in the library) exec'd
 * from a sealed memfd in a clone3 child.  Used by the library itself
 * (gproc.c, the process is the VMM's child) and by the spawner daemon
 * (spawner.c, the process is the daemon's child, perhaps as another user).
 */
#ifndef GM_GPROC_SPAWN_H
#define GM_GPROC_SPAWN_H

#include <stdbool.h>
#include <sys/types.h>

/* Who the guest process runs as; set false: the caller's credentials. */
struct gp_creds {
	bool set;
	uid_t uid;
	gid_t gid;
};

/*
 * Become @cr's user (no supplementary groups): raw system calls, which
 * change the calling thread only, so for a process with one thread (a
 * child between fork and exec).  0 or -errno.
 */
int gp_become(const struct gp_creds *cr);

/*
 * Start the stub with @ctl (the stub's end of its control socket) as its
 * fd 3 and GP_VM_* @flags as its argument, as @cr's user if set (no
 * supplementary groups).  Its command line names @vmm_pid ("vmm=PID"), the
 * process it serves, for people and tests (ps, /proc/PID/cmdline).  Exit signal 0: not a SIGCHLD child, invisible to
 * waitpid(-1); reap it with waitid(P_PIDFD, ..., __WALL).  Returns the
 * pid and *@pidfd (close-on-exec, in the caller's table), or -errno.
 * @ctl stays the caller's to close.
 */
long gp_spawn_stub(int ctl, unsigned flags, const struct gp_creds *cr, int vmm_pid, int *pidfd);

#endif
