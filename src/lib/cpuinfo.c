// SPDX-License-Identifier: MIT
#include "cpuinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procfile.h"

/* The first processor's block; its longest line ("flags", "bugs") fits. */
#define CPUINFO_HEAD 16384

bool gm_cpuinfo_field(const char *key, char *out, size_t size)
{
	char *buf = gm_read_proc_file("/proc/cpuinfo", CPUINFO_HEAD);
	size_t klen = strlen(key);
	bool found = false;
	char *line;

	if (!buf)
		return false;
	/* Lines are "key<tabs>: value"; the first blank line ends processor 0. */
	for (line = buf; !found && line && *line && *line != '\n'; ) {
		char *next = strchr(line, '\n'), *colon = strchr(line, ':');

		if (next)
			*next++ = '\0';
		if (!strncmp(line, key, klen) && colon &&
		    strspn(line + klen, " \t") == (size_t)(colon - line - (long)klen)) {
			snprintf(out, size, "%s", colon[1] == ' ' ? colon + 2 : colon + 1);
			found = true;
		}
		line = next;
	}
	free(buf);
	return found;
}
