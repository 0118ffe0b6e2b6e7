// SPDX-License-Identifier: MIT
#include "cpuinfo.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sys_raw.h"

/* The first processor's block; its longest line ("flags", "bugs") fits. */
#define CPUINFO_HEAD 16384

bool gm_cpuinfo_field(const char *key, char *out, size_t size)
{
	char *buf = malloc(CPUINFO_HEAD + 1);
	size_t klen = strlen(key), len = 0;
	bool found = false;
	char *line;
	ssize_t n;
	int fd;

	fd = buf ? gm_raw_open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC, 0) : -1;
	if (fd < 0) {
		free(buf);
		return false;
	}
	while (len < CPUINFO_HEAD && (n = gm_raw_read(fd, buf + len, CPUINFO_HEAD - len)) > 0)
		len += (size_t)n;
	gm_raw_close(fd);
	buf[len] = '\0';
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
