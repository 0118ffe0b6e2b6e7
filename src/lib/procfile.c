// SPDX-License-Identifier: MIT
#include "procfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler.h"
#include "sys_raw.h"

char *gm_read_proc_file(const char *path, size_t max)
{
	size_t cap = max < ((size_t)64 << 10) ? max + 1 : (size_t)64 << 10, len = 0;
	char *buf = malloc(cap), *n;
	int fd = buf ? gm_raw_open(path, O_RDONLY | O_CLOEXEC, 0) : -1;
	ssize_t got;

	if (fd < 0)
		goto fail;
	while (len < max) {
		/* /proc files report no size: grow while reads keep coming. */
		if (cap - len < 4096 && cap <= max) {
			n = realloc(buf, cap * 2);
			if (!n)
				goto fail;
			buf = n;
			cap *= 2;
		}
		got = gm_raw_read(fd, buf + len, GM_MIN(cap - len - 1, max - len));
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			goto fail;
		if (got == 0)
			break;
		len += (size_t)got;
	}
	gm_raw_close(fd);
	buf[len] = '\0';
	return buf;
fail:
	if (fd >= 0)
		gm_raw_close(fd);
	free(buf);
	return NULL;
}

long gm_read_proc_buf(const char *path, char *buf, size_t len)
{
	int fd = gm_raw_open(path, O_RDONLY | O_CLOEXEC, 0);
	ssize_t n;

	if (fd < 0 || len < 2) {
		if (fd >= 0)
			gm_raw_close(fd);
		return -1;
	}
	do
		n = gm_raw_read(fd, buf, len - 1);
	while (n < 0 && errno == EINTR);
	gm_raw_close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return (long)n;
}

bool gm_fd_link_is(int fd, const char *what)
{
	char path[32], link[64];
	size_t want = strlen(what);
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = gm_raw_readlinkat(AT_FDCWD, path, link, sizeof(link));
	return want < sizeof(link) && n == (ssize_t)want && !memcmp(link, what, want);
}

bool gm_fd_is_socket(int fd, unsigned long ino)
{
	struct stat st;

	return fd >= 0 && !gm_raw_fstat(fd, &st) && S_ISSOCK(st.st_mode) && st.st_ino == ino;
}
