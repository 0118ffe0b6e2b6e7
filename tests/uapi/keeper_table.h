/* SPDX-License-Identifier: MIT */
/*
 * Finding guestmem's keeper thread (src/uapi/keeper.c) from a test: its
 * descriptor table is its own, listed under /proc/self/task/TID/fd.
 */
#ifndef GM_TESTS_UAPI_KEEPER_TABLE_H
#define GM_TESTS_UAPI_KEEPER_TABLE_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>

/* The keeper's fd directory into @out, found by the thread's name; false if none. */
static inline bool keeper_fd_dir(char *out, size_t size)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	bool found = false;

	out[0] = '\0';
	if (!d)
		return false;
	while (!found && (e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "gm-keeper\n")) {
			snprintf(out, size, "/proc/self/task/%s/fd", e->d_name);
			found = true;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

#endif
