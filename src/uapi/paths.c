// SPDX-License-Identifier: MIT
/*
 * Paths that name guestmem objects: "/dev/kvm" itself, and the /proc magic
 * links of our own fds ("/proc/self/fd/N", "/proc/thread-self/fd/N",
 * "/proc/<our pid>/fd/N", "/proc/<our pid>/task/<tid>/fd/N").
 *
 * Only absolute paths are recognised; a VMM that reaches /dev/kvm through
 * a relative path or a directory fd gets the host's answer.
 */
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/ownfd.h"
#include "uapi.h"

/* Lexically: "/dev/kvm" with any run of '/' and "." components allowed. */
bool gm_path_is_dev_kvm(const char *path)
{
	static const char *const want[] = { "dev", "kvm" };
	size_t n = 0;

	if (!path || path[0] != '/' || !strstr(path, "kvm"))
		return false;
	while (*path) {
		size_t len;

		while (*path == '/')
			path++;
		len = strcspn(path, "/");
		if (len == 0)
			break;
		if (len == 1 && path[0] == '.') {
			path += len;
			continue;
		}
		if (n == 2 || len != strlen(want[n]) || strncmp(path, want[n], len))
			return false;
		n++;
		path += len;
	}
	return n == 2;
}

/* Parse a decimal number ending at '/' or '\0'; -1 if none or too big. */
static long gm_parse_num(const char **p)
{
	long v = 0;

	if (!isdigit((unsigned char)**p))
		return -1;
	while (isdigit((unsigned char)**p)) {
		v = v * 10 + (**p - '0');
		if (v > INT_MAX)
			return -1;
		(*p)++;
	}
	return v;
}

/* The fd number N of one of our own /proc fd links, or -1. */
static int gm_proc_fd_number(const char *path)
{
	const char *p;
	long n;

	if (!path || strncmp(path, "/proc/", 6))
		return -1;
	p = path + 6;
	if (!strncmp(p, "self/", 5)) {
		p += 5;
	} else if (!strncmp(p, "thread-self/", 12)) {
		p += 12;
	} else {
		if (gm_parse_num(&p) != getpid() || *p++ != '/')
			return -1;
		if (!strncmp(p, "task/", 5)) {
			p += 5;
			if (gm_parse_num(&p) < 0 || *p++ != '/')
				return -1;
		}
	}
	if (strncmp(p, "fd/", 3))
		return -1;
	p += 3;
	n = gm_parse_num(&p);
	return *p ? -1 : (int)n;
}

/*
 * Whether @path names one of guestmem's own descriptors through /proc
 * (fd/N or fdinfo/N of this process) or /dev/fd/N: not open as far as
 * the application is concerned (lib/ownfd.h), so ENOENT.
 */
bool gm_proc_fd_is_own(const char *path)
{
	static const char *const dirs[] = { "/proc/self/fdinfo/", "/proc/thread-self/fdinfo/",
					    "/dev/fd/" };
	const char *p = NULL;
	long n;

	if (!path || (strncmp(path, "/proc/", 6) && strncmp(path, "/dev/fd/", 8)))
		return false;
	n = gm_proc_fd_number(path);
	if (n >= 0)
		return gm_fd_is_own((int)n);
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && !p; i++)
		if (!strncmp(path, dirs[i], strlen(dirs[i])))
			p = path + strlen(dirs[i]);
	if (!p)
		return false;
	n = gm_parse_num(&p);
	return !*p && n >= 0 && gm_fd_is_own((int)n);
}

struct gm_file *gm_proc_fd_lookup(const char *path)
{
	int fd = gm_proc_fd_number(path);

	return fd < 0 ? NULL : gm_file_lookup_foreign(fd);
}

time_t gm_synthetic_file_time(void)
{
	static time_t boot;
	time_t t = __atomic_load_n(&boot, __ATOMIC_RELAXED);

	if (!t) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		t = now.tv_sec;
		/* The first caller's time wins; later ones read it. */
		if (!__atomic_compare_exchange_n(&boot, &(time_t){ 0 }, t, false, __ATOMIC_RELAXED,
						 __ATOMIC_RELAXED))
			t = __atomic_load_n(&boot, __ATOMIC_RELAXED);
	}
	return t;
}
