/* SPDX-License-Identifier: MIT */
/*
 * The processes guestmem leaves behind the VMM (the seccomp session's
 * helper, the guest-process spawner) start the same way: a double fork,
 * so that the VMM's waitpid(-1) and SIGCHLD never see them, into a
 * session of their own (a kill(0, ...) or a terminal's signals miss
 * them), holding one descriptor of the caller's and nothing else (a pipe
 * the VMM's parent reads to EOF is not kept open by them).
 */
#ifndef GM_LIB_DAEMON_H
#define GM_LIB_DAEMON_H

/*
 * Fork such a process keeping @fd as its fd 3 (close-on-exec).  Raw
 * forks: no fork handler runs (the caller may be a multi-threaded VMM).
 * Returns 0 in the new process, a positive number in the caller once the
 * intermediate child is reaped, or -errno; @fd stays the caller's too.
 */
int gm_daemon_fork(int fd);

#endif
