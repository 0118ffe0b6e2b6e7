/* SPDX-License-Identifier: MIT */
/*
 * Files guestmem keeps for long but uses rarely (the memfds memslot RAM
 * was converted to, its own opens of the VMM's memory files), held in the
 * library's own descriptor table (gm_own_table, lib/worker.h) instead of
 * the VMM's: no number of the VMM's holds them between uses.
 *
 * A kept file is named by a handle ("kfd": its number in that table and
 * the access mode it was kept with).  A use opens it anew in the calling
 * thread's table through /proc/self/task/<keeper>/fd/<number> (one
 * open(2), no hand-off; the same file, a new open file description, with
 * the kept access mode), and closes that when done.  Only files that can
 * be opened through /proc can be kept (regular files, memfds, hugetlbfs
 * files; not sockets or pipes).
 */
#ifndef GM_LIB_KEEPFD_H
#define GM_LIB_KEEPFD_H

/*
 * Keep the file @fd refers to (with @fd's access mode) in the own table;
 * @fd stays the caller's.  The kfd (>= 0), or -errno (then nothing is
 * kept).
 */
int gm_fd_keep(int fd);

/*
 * The kept file @kfd, opened in the calling thread's table with the
 * access mode it was kept with (the file's permissions are checked
 * again), close-on-exec, as one of guestmem's own (lib/ownfd.h): close it
 * with gm_fd_close().  -1 with errno on failure (ESRCH: no keeper runs,
 * as in a fork child, whose parent's keeper is not its own).
 */
int gm_fd_fetch(int kfd);

/* The kept file's number in the own table, for code that runs there
 * (the keeper sending it on). */
int gm_fd_kept_number(int kfd);

/* Close the kept file @kfd (a hand-off to the keeper). */
void gm_fd_drop(int kfd);

#endif
