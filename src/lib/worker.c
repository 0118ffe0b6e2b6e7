// SPDX-License-Identifier: MIT
/* Library threads that run calls for other threads (worker.h). */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>
#include <semaphore.h>

#include "lockdep.h"
#include "sys_raw.h"
#include "thread.h"

struct gm_work {
	struct gm_work *next;
	long (*fn)(void *);
	void *arg;
	long ret;
	bool done;    /* atomic: release by the worker, acquire by the caller */
	bool waiting; /* the caller sleeps on w->cv (under w->lock) */
};

/*
 * Calls come in bursts (a create's accept, a close's check then release)
 * and each runs one system call, so both sides spin this long before
 * sleeping: a sleeping thread's wake-up costs tens of microseconds on a
 * paravirtualised host, several times the work.
 */
#define GM_WORKER_SPIN_NS 100000

static uint64_t gm_worker_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Spin until *@flag is set or the spin time is up; whether it was set. */
static bool gm_worker_spin(const void *const *ptr, const bool *flag)
{
	uint64_t end = gm_worker_now_ns() + GM_WORKER_SPIN_NS;

	do {
		if (flag ? __atomic_load_n(flag, __ATOMIC_ACQUIRE)
			 : __atomic_load_n(ptr, __ATOMIC_ACQUIRE) != NULL)
			return true;
		__builtin_ia32_pause();
	} while (gm_worker_now_ns() < end);
	return false;
}

struct gm_worker gm_own_table = GM_WORKER_INIT(gm_own_table, "gm-keeper", true);

/* The worker the calling thread belongs to, if any. */
static __thread const struct gm_worker *gm_worker_self;

int gm_worker_tid(const struct gm_worker *w)
{
	return __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE);
}

bool gm_worker_current(const struct gm_worker *w)
{
	return gm_worker_self == w;
}

static void *gm_worker_main(void *arg)
{
	struct gm_worker *w = arg;
	bool spun = false, wake;
	int err = 0;

	gm_worker_self = w;
	__atomic_store_n(&w->tid, (int)GM_RAW_SYSCALL(SYS_gettid), __ATOMIC_RELEASE);
	/* Named, so a test or a debugger can find it (and its table). */
	pthread_setname_np(pthread_self(), w->name);
	/* Every number, so the copy the kernel makes is empty (no window). */
	if (w->own_table && GM_RAW_SYSCALL(SYS_close_range, 0, ~0U, CLOSE_RANGE_UNSHARE))
		err = errno;
	gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
	w->err = err;
	w->state = err ? GM_WORKER_FAILED : GM_WORKER_RUNNING;
	gm_check_pthread(pthread_cond_broadcast(&w->cv));
	while (!err) {
		struct gm_work *work = w->head;

		if (!work) {
			if (!spun) {
				spun = true;
				gm_mutex_unlock(&w->lock);
				gm_worker_spin((const void *const *)&w->head, NULL);
				gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
				continue;
			}
			w->idle = true;
			gm_check_pthread(pthread_cond_wait(&w->cv, &w->lock));
			w->idle = false;
			continue;
		}
		spun = false;
		__atomic_store_n(&w->head, work->next, __ATOMIC_RELAXED);
		if (!w->head)
			w->tail = &w->head;
		gm_mutex_unlock(&w->lock);
		work->ret = work->fn(work->arg);
		gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
		/*
		 * Read before done is set: a caller that sees done returns and
		 * its frame (*work) is gone.  Under the lock, one that did not
		 * set waiting yet will find done under it and not sleep.
		 */
		wake = work->waiting;
		__atomic_store_n(&work->done, true, __ATOMIC_RELEASE);
		if (wake)
			gm_check_pthread(pthread_cond_broadcast(&w->cv));
	}
	gm_mutex_unlock(&w->lock);
	return NULL;
}

/* Context: w->lock held.  Returns 0 once the thread runs, or -errno. */
static int gm_worker_start_locked(struct gm_worker *w)
{
	int err;

	lockdep_assert_held(&w->lock);
	if (w->state == GM_WORKER_IDLE) {
		w->state = GM_WORKER_STARTING;
		gm_mutex_unlock(&w->lock);
		err = gm_thread_start(gm_worker_main, w, 64 * 1024);
		gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
		if (err) {
			w->err = err;
			w->state = GM_WORKER_FAILED;
		}
	}
	while (w->state == GM_WORKER_STARTING)
		gm_check_pthread(pthread_cond_wait(&w->cv, &w->lock));
	/* Not for good: a later call tries again (EAGAIN, EMFILE pass). */
	if (w->state == GM_WORKER_FAILED) {
		w->state = GM_WORKER_IDLE;
		return -w->err;
	}
	return 0;
}

static long gm_worker_call_in(struct gm_worker *w, long (*fn)(void *), void *arg, bool start)
{
	struct gm_work work = { .fn = fn, .arg = arg };
	int err;

	if (gm_worker_current(w))
		return fn(arg);
	gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
	err = start ? gm_worker_start_locked(w) : w->state == GM_WORKER_RUNNING ? 0 : -ESRCH;
	if (err) {
		gm_mutex_unlock(&w->lock);
		return err;
	}
	/* Release: a spinning worker reads the call through w->head. */
	if (w->tail == &w->head)
		__atomic_store_n(&w->head, &work, __ATOMIC_RELEASE);
	else
		*w->tail = &work;
	w->tail = &work.next;
	if (w->idle)
		gm_check_pthread(pthread_cond_broadcast(&w->cv));
	gm_mutex_unlock(&w->lock);
	if (gm_worker_spin(NULL, &work.done))
		return work.ret;
	gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
	work.waiting = true;
	while (!__atomic_load_n(&work.done, __ATOMIC_ACQUIRE))
		gm_check_pthread(pthread_cond_wait(&w->cv, &w->lock));
	gm_mutex_unlock(&w->lock);
	return work.ret;
}

int gm_worker_start(struct gm_worker *w)
{
	int err;

	if (gm_worker_current(w))
		return 0;
	gm_mutex_lock(&w->lock, GM_LOCK_WORKER);
	err = gm_worker_start_locked(w);
	gm_mutex_unlock(&w->lock);
	return err;
}

long gm_worker_call(struct gm_worker *w, long (*fn)(void *), void *arg)
{
	return gm_worker_call_in(w, fn, arg, true);
}

long gm_worker_call_running(struct gm_worker *w, long (*fn)(void *), void *arg)
{
	return gm_worker_call_in(w, fn, arg, false);
}

struct gm_worker_spawn {
	struct gm_worker *w;
	void *(*fn)(void *);
	void *arg;
	sem_t copied; /* the thread has its copy: *this may go */
};

static void *gm_worker_spawned(void *p)
{
	struct gm_worker_spawn *s = p;
	struct gm_worker *w = s->w;
	void *(*fn)(void *) = s->fn;
	void *arg = s->arg;

	sem_post(&s->copied);
	gm_worker_self = w;
	return fn(arg);
}

/*
 * On @w's thread, so the new one shares its table.  No allocation: a
 * thread freeing memory while the VMM forks can leave a sanitizer's
 * allocator locked in the child.
 */
static long gm_worker_spawn_here(void *p)
{
	struct gm_worker_spawn *s = p;
	/* Room for what a spawned thread runs (the irqfd watcher injects). */
	int err = gm_thread_start(gm_worker_spawned, s, 256 * 1024);

	if (!err)
		while (sem_wait(&s->copied) && errno == EINTR)
			;
	return -err;
}

int gm_worker_spawn(struct gm_worker *w, void *(*fn)(void *), void *arg)
{
	struct gm_worker_spawn s = { .w = w, .fn = fn, .arg = arg };
	long r;

	sem_init(&s.copied, 0, 0);
	r = gm_worker_call(w, gm_worker_spawn_here, &s);
	sem_destroy(&s.copied);
	return (int)r;
}

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL /* Linux 6.9 */
#endif

int gm_fd_adopt(int tid, int fd, unsigned long ino)
{
	int pidfd = (int)GM_RAW_SYSCALL(SYS_pidfd_open, tid, PIDFD_THREAD);
	struct stat st;
	int copy;

	if (pidfd < 0 && errno == EINVAL)
		pidfd = (int)GM_RAW_SYSCALL(SYS_pidfd_open, getpid(), 0);
	if (pidfd < 0)
		return -errno;
	copy = (int)GM_RAW_SYSCALL(SYS_pidfd_getfd, pidfd, fd, 0);
	gm_raw_close(pidfd);
	if (copy < 0)
		return -errno;
	if (gm_raw_fstat(copy, &st) || st.st_ino != ino) {
		gm_raw_close(copy);
		return -EBADF;
	}
	return copy;
}

void gm_worker_forget(struct gm_worker *w)
{
	pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

	w->lock = mx;
	w->cv = cv;
	w->head = NULL;
	w->tail = &w->head;
	w->state = GM_WORKER_IDLE;
	w->err = 0;
	w->tid = 0;
}
