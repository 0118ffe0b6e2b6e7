/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>

#include "thread.h"

struct gm_thread_start {
	void *(*fn)(void *);
	void *arg;
	sem_t running;
};

static void *gm_thread_trampoline(void *p)
{
	struct gm_thread_start *s = p;
	void *(*fn)(void *) = s->fn;
	void *arg = s->arg;

	sem_post(&s->running); /* *s is gone after this */
	return fn(arg);
}

/* @tid NULL: detached.  @stack: the caller's (@stack_size bytes), or NULL. */
static int thread_start(pthread_t *tid, void *(*fn)(void *), void *arg, void *stack,
			size_t stack_size)
{
	struct gm_thread_start s = { .fn = fn, .arg = arg };
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t t;
	int err;

	sem_init(&s.running, 0, 0);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	if (!tid)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (stack)
		pthread_attr_setstack(&attr, stack, stack_size);
	else if (stack_size)
		pthread_attr_setstacksize(&attr, stack_size);
	err = pthread_create(tid ? tid : &t, &attr, gm_thread_trampoline, &s);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		while (sem_wait(&s.running) && errno == EINTR)
			;
	sem_destroy(&s.running);
	return err;
}

int gm_thread_start(void *(*fn)(void *), void *arg, size_t stack_size)
{
	return thread_start(NULL, fn, arg, NULL, stack_size);
}

int gm_thread_start_on(void *(*fn)(void *), void *arg, void *stack, size_t stack_size)
{
	return thread_start(NULL, fn, arg, stack, stack_size);
}

int gm_thread_start_joinable(pthread_t *tid, void *(*fn)(void *), void *arg)
{
	return thread_start(tid, fn, arg, NULL, 0);
}
