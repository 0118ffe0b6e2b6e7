/* SPDX-License-Identifier: MIT */
/*
 * lockdep: the documented order passes; an inversion, an assertion on a
 * lock not held, a read hold where a write hold is asserted and an unlock
 * of a lock not held each abort (checked in a child process).
 */
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#include "lib/lockdep.h"

static pthread_mutex_t outer = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t inner = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;

/* Run @fn in a child; returns the signal that ended it (0: normal exit). */
static int run_child(void (*fn)(void))
{
	pid_t pid;
	int st;

	fflush(NULL);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		/* Keep the expected abort's message out of the TAP stream. */
		if (!freopen("/dev/null", "w", stderr))
			_exit(2);
		fn();
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void in_order(void)
{
	gm_mutex_lock(&outer, GM_LOCK_SLOTS);
	gm_rwlock_wrlock(&rw, GM_LOCK_MMU);
	lockdep_assert_held(&outer);
	lockdep_assert_held_write(&rw);
	gm_rwlock_unlock(&rw);
	gm_mutex_lock(&inner, GM_LOCK_IRQ);
	gm_mutex_unlock(&outer); /* out-of-order release is fine */
	gm_mutex_unlock(&inner);
}

static void inverted(void)
{
	gm_mutex_lock(&inner, GM_LOCK_MMU);
	gm_mutex_lock(&outer, GM_LOCK_SLOTS);
}

static void same_class_twice(void)
{
	gm_mutex_lock(&outer, GM_LOCK_SLOTS);
	gm_mutex_lock(&inner, GM_LOCK_SLOTS);
}

static void assert_not_held(void)
{
	gm_mutex_lock(&outer, GM_LOCK_SLOTS);
	gm_mutex_unlock(&outer);
	lockdep_assert_held(&outer);
}

static void assert_write_but_read(void)
{
	gm_rwlock_rdlock(&rw, GM_LOCK_MMU);
	lockdep_assert_held_write(&rw);
}

static void unlock_not_held(void)
{
	/* Locked behind lockdep's back: the wrapper's unlock must object. */
	pthread_mutex_lock(&outer);
	gm_mutex_unlock(&outer);
}

static void trylock_recorded(void)
{
	gm_mutex_lock(&inner, GM_LOCK_IRQ);
	/* A trylock cannot deadlock: allowed out of order, then held. */
	if (gm_rwlock_tryrdlock(&rw, GM_LOCK_MMU) == 0) {
		lockdep_assert_held(&rw);
		gm_rwlock_unlock(&rw);
	}
	gm_mutex_unlock(&inner);
}

TEST(order)
{
	ASSERT_EQ(run_child(in_order), 0);
	ASSERT_EQ(run_child(trylock_recorded), 0);
#ifndef NDEBUG
	ASSERT_EQ(run_child(inverted), SIGABRT);
	ASSERT_EQ(run_child(same_class_twice), SIGABRT);
#endif
}

TEST(assertions)
{
#ifndef NDEBUG
	ASSERT_EQ(run_child(assert_not_held), SIGABRT);
	ASSERT_EQ(run_child(assert_write_but_read), SIGABRT);
	ASSERT_EQ(run_child(unlock_not_held), SIGABRT);
#endif
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
