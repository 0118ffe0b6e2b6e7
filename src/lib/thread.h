/* SPDX-License-Identifier: MIT */
#ifndef GUESTMEM_LIB_THREAD_H
#define GUESTMEM_LIB_THREAD_H

#include <pthread.h>
#include <stddef.h>

/*
 * Start a detached library thread that takes none of the application's
 * signals, and return only once it runs @fn.  Its start-up (the C
 * library's, a sanitizer's) allocates; a thread still starting when the
 * application forks would leave an allocator lock held in the child
 * (ASan's allocator is not locked across fork).  @stack_size 0: the
 * default.  Returns 0 or the pthread_create error.
 */
int gm_thread_start(void *(*fn)(void *), void *arg, size_t stack_size);
/* The same on the caller's stack (@stack, @stack_size bytes, never freed):
 * no allocation and no guard page, so no munmap or mprotect. */
int gm_thread_start_on(void *(*fn)(void *), void *arg, void *stack, size_t stack_size);
/* The same, joinable: *@tid for pthread_join(). */
int gm_thread_start_joinable(pthread_t *tid, void *(*fn)(void *), void *arg);

#endif
