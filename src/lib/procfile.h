/* SPDX-License-Identifier: MIT */
/*
 * Reading a /proc file whole with raw system calls: library code must not
 * call libc's open/read, which the preload answers under `guestmem exec`.
 */
#ifndef GM_LIB_PROCFILE_H
#define GM_LIB_PROCFILE_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The first @max bytes of @path (all of it: SIZE_MAX), NUL-terminated, in a
 * buffer the caller frees; NULL if it cannot be opened or read, or on ENOMEM.
 */
char *gm_read_proc_file(const char *path, size_t max);

/*
 * The first @len - 1 bytes of @path into @buf, NUL-terminated, with one
 * read and no allocation (for threads that must not call malloc); the
 * byte count, or -1 if it cannot be opened or read or is empty.
 */
long gm_read_proc_buf(const char *path, char *buf, size_t len);

/*
 * Whether this process's @fd is a file whose /proc/self/fd link reads
 * exactly @what ("anon_inode:[eventfd]", ...): what kind of anonymous
 * file a number holds, with no allocation.  @what is at most 62 bytes.
 */
bool gm_fd_link_is(int fd, const char *what);

/*
 * Whether @fd is the socket with inode @ino: a descriptor guestmem was
 * handed at a number the program could have closed or reused meanwhile.
 */
bool gm_fd_is_socket(int fd, unsigned long ino);

#endif
