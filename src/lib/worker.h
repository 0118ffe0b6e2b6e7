/* SPDX-License-Identifier: MIT */
/*
 * A library thread that runs calls for other threads, one at a time, and
 * returns each call's result to its caller (a synchronous hand-off; both
 * sides spin briefly before sleeping, see worker.c).
 *
 * With @own_table the thread starts with a descriptor table of its own,
 * empty (close_range(CLOSE_RANGE_UNSHARE) over every number), and threads
 * it starts share that table.  Descriptors it opens are then out of the
 * VMM's table altogether: not listed in /proc/self/fd, not reachable by
 * any close, dup2 or exec of the VMM's, and inherited by no fork child.
 * Other threads reach them only through calls run on it.
 */
#ifndef GM_LIB_WORKER_H
#define GM_LIB_WORKER_H

#include <pthread.h>
#include <stdbool.h>

struct gm_work;

struct gm_worker {
	const char *name;
	bool own_table;
	/* lock: the queue, state and err; a leaf (calls run without it). */
	pthread_mutex_t lock;
	pthread_cond_t cv; /* with lock: work queued, work done, state changed */
	struct gm_work *head, **tail; /* head also read by the spinning worker */
	bool idle; /* the worker sleeps on cv */
	enum { GM_WORKER_IDLE, GM_WORKER_STARTING, GM_WORKER_RUNNING, GM_WORKER_FAILED } state;
	int err; /* why it failed to start: calls get it */
	int tid; /* its thread's id once it runs, else 0; atomic */
};

/*
 * The library's own descriptor table, one per process: a worker named
 * "gm-keeper" with a table of its own.  What it holds: the objects'
 * socket ends (src/uapi/keeper.c) and the guest processes' pidfds
 * (src/gproc/gproc.c).
 */
extern struct gm_worker gm_own_table;

#define GM_WORKER_INIT(w, nm, own)                                                        \
	{ .name = (nm), .own_table = (own), .lock = PTHREAD_MUTEX_INITIALIZER,            \
	  .cv = PTHREAD_COND_INITIALIZER, .tail = &(w).head }

/*
 * Run @fn(@arg) on @w's thread (started on the first call) and return
 * what it returns; at once on the calling thread if that thread is @w's or
 * one it started.  A negative errno if the thread cannot start.
 */
long gm_worker_call(struct gm_worker *w, long (*fn)(void *), void *arg);
/*
 * The same without starting the thread (-ESRCH if it does not run): for
 * callers in another descriptor table, since a thread shares the table of
 * the thread that started it.
 */
long gm_worker_call_running(struct gm_worker *w, long (*fn)(void *), void *arg);

/*
 * Start @w's thread if it does not run (it shares the calling thread's
 * descriptor table unless own_table).  0 or -errno.
 */
int gm_worker_start(struct gm_worker *w);

/* @w's thread's id (for /proc/self/task/<tid>), or 0 if it does not run. */
int gm_worker_tid(const struct gm_worker *w);

/* Whether the calling thread is @w's or one it started. */
bool gm_worker_current(const struct gm_worker *w);

/*
 * Start a detached thread running @fn(@arg) that shares @w's descriptor
 * table (and counts as @w's for gm_worker_current()).  0 or -errno.
 */
int gm_worker_spawn(struct gm_worker *w, void *(*fn)(void *), void *arg);

/*
 * On a worker with its own table: a copy of descriptor @fd of thread
 * @tid's table (the caller's thread, which waits in gm_worker_call()).
 * That thread's table if the kernel names threads by pidfd (6.9), else
 * the process's (the leader's); the copy must be of the file with inode
 * @ino, or a thread with a table of its own would hand over another file.
 * The new descriptor (close-on-exec) or -errno.
 */
int gm_fd_adopt(int tid, int fd, unsigned long ino);

/*
 * In a fork child: @w's threads are gone (and with them an own table):
 * forget them; the next call starts a new one.
 */
void gm_worker_forget(struct gm_worker *w);

#endif
