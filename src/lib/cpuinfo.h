/* SPDX-License-Identifier: MIT */
/*
 * Facts about the host CPU from /proc/cpuinfo, read with raw system calls:
 * library code must not call libc's fopen, which the preload answers
 * (module parameters) under `guestmem exec`.
 */
#ifndef GM_LIB_CPUINFO_H
#define GM_LIB_CPUINFO_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The value of @key ("cpu MHz", "bugs", "microcode") for the first
 * processor, without the newline, in @out.  False if the host has no such
 * line or /proc is not there.
 */
bool gm_cpuinfo_field(const char *key, char *out, size_t size);

#endif
