/* SPDX-License-Identifier: MIT */
/*
 * Shared by the preload's wrapper files: how to reach the next definition
 * of a libc symbol.
 */
#ifndef GM_PRELOAD_PRELOAD_H
#define GM_PRELOAD_PRELOAD_H

#include <dlfcn.h>

#include "uapi/entry.h"

#define EXPORT __attribute__((visibility("default")))

/* 1 once the seccomp filter is installed (seccomp.c). */
extern int gm_seccomp_active;

/* The next definition of a symbol; resolved once (racing resolvers agree). */
static inline void *gm_next(void **slot, const char *name, const char *version)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (p)
		return p;
	p = version ? dlvsym(RTLD_NEXT, name, version) : dlsym(RTLD_NEXT, name);
	__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	return p;
}

#define NEXT(name)                                                   \
	({                                                           \
		static void *gm_slot_;                               \
		(__typeof__(&name))gm_next(&gm_slot_, #name, NULL); \
	})

#define NEXT_VERSIONED(name, type, version)                          \
	({                                                           \
		static void *gm_slot_;                               \
		(type)gm_next(&gm_slot_, name, version);             \
	})

#endif
