/* SPDX-License-Identifier: MIT */
/*
 * Memory-ordering primitives with the kernel's names, on GCC/Clang __atomic
 * builtins so that they work on plain fields and ThreadSanitizer sees them.
 *
 * READ_ONCE/WRITE_ONCE: a single, untorn, non-cached access (relaxed).
 * smp_load_acquire/smp_store_release: one-way barriers; every acquire in this
 * tree names the release it pairs with.
 */
#ifndef GM_LIB_COMPILER_H
#define GM_LIB_COMPILER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define READ_ONCE(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define WRITE_ONCE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define smp_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/*
 * No stand-alone fences: ThreadSanitizer cannot model them.  Express
 * ordering on the access itself (acquire loads, release stores).
 */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define GM_PAGE_SHIFT 12
#define GM_PAGE_SIZE (1ULL << GM_PAGE_SHIFT)
#define GM_PAGE_ALIGNED(x) (((x) & (GM_PAGE_SIZE - 1)) == 0)

#define GM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define GM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Symbols of the public API; everything else in the shared library is hidden. */
#define GM_API __attribute__((visibility("default")))

#ifdef NDEBUG
#define gm_assert(cond) ((void)0)
#else
#include <stdio.h>
#include <stdlib.h>
#define gm_assert(cond)                                                     \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "guestmem: %s:%d: assertion `%s'\n", \
				__FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)
#endif

/* A failing pthread operation is a programming error (libuv's rule). */
#define gm_check_pthread(call)                                              \
	do {                                                                \
		int __e = (call);                                           \
		if (__e) {                                                  \
			fprintf(stderr, "guestmem: %s failed: %d\n", #call, __e); \
			abort();                                            \
		}                                                           \
	} while (0)

#endif
