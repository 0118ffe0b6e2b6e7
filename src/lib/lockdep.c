/* SPDX-License-Identifier: MIT */
/*
 * The lockdep bookkeeping (see lockdep.h): per thread, a small stack of the
 * locks held.  Only the owning thread reads or writes it.
 */
#include "lockdep.h"

#ifndef NDEBUG
#include <stdio.h>
#include <stdlib.h>

/* Deeper nesting than this is itself a bug worth hearing about. */
#define LOCKDEP_MAX_HELD 16

struct lockdep_held {
	const void *lock;
	const char *name, *file;
	int line;
	unsigned char cls, mode;
};

static __thread struct lockdep_held lockdep_held[LOCKDEP_MAX_HELD];
static __thread int lockdep_nr_held;

static void lockdep_print_held(void)
{
	for (int i = 0; i < lockdep_nr_held; i++) {
		const struct lockdep_held *h = &lockdep_held[i];

		fprintf(stderr, "  #%d: %s (class %d) taken at %s:%d\n", i, h->name, h->cls,
			h->file, h->line);
	}
}

void __lockdep_acquire(const void *lock, enum gm_lock_class cls, int mode, bool trylock,
		       const char *name, const char *file, int line)
{
	struct lockdep_held *h;

	for (int i = 0; !trylock && i < lockdep_nr_held; i++) {
		if (lockdep_held[i].cls < cls)
			continue;
		fprintf(stderr,
			"guestmem lockdep: lock order inversion: taking %s (class %d) at "
			"%s:%d while holding %s (class %d) taken at %s:%d\n"
			"held by this thread:\n",
			name, cls, file, line, lockdep_held[i].name, lockdep_held[i].cls,
			lockdep_held[i].file, lockdep_held[i].line);
		lockdep_print_held();
		abort();
	}
	if (lockdep_nr_held == LOCKDEP_MAX_HELD) {
		fprintf(stderr, "guestmem lockdep: more than %d locks held at %s:%d\n",
			LOCKDEP_MAX_HELD, file, line);
		lockdep_print_held();
		abort();
	}
	h = &lockdep_held[lockdep_nr_held++];
	*h = (struct lockdep_held){ lock, name, file, line, (unsigned char)cls,
				    (unsigned char)mode };
}

void __lockdep_release(const void *lock, const char *name, const char *file, int line)
{
	/* Innermost first: locks are usually released in reverse order. */
	for (int i = lockdep_nr_held - 1; i >= 0; i--) {
		if (lockdep_held[i].lock != lock)
			continue;
		for (int j = i + 1; j < lockdep_nr_held; j++)
			lockdep_held[j - 1] = lockdep_held[j];
		lockdep_nr_held--;
		return;
	}
	fprintf(stderr, "guestmem lockdep: releasing %s at %s:%d, which this thread "
		"does not hold\n", name, file, line);
	lockdep_print_held();
	abort();
}

void __lockdep_assert_held(const void *lock, int mode, const char *name, const char *file,
			   int line)
{
	for (int i = 0; i < lockdep_nr_held; i++)
		if (lockdep_held[i].lock == lock && (lockdep_held[i].mode & mode))
			return;
	fprintf(stderr, "guestmem lockdep: %s must be held%s at %s:%d\n", name,
		mode == LOCKDEP_EXCLUSIVE ? " for write" : "", file, line);
	lockdep_print_held();
	abort();
}
#endif
