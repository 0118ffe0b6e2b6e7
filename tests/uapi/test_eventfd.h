/* SPDX-License-Identifier: MIT */
/*
 * A small TAP harness for the eventfd/irqchip tests: one function per case,
 * each run in a forked child with an alarm(), checks that print both values.
 * Include after the system headers and tests/uapi/sysmap.h.
 */
#ifndef GM_TESTS_TEST_EVENTFD_H
#define GM_TESTS_TEST_EVENTFD_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

static int tap_failed;

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			printf("#   %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			tap_failed = 1;                                              \
		}                                                                    \
	} while (0)

#define CHECK_EQ(a, b)                                                               \
	do {                                                                         \
		long long _a = (long long)(a), _b = (long long)(b);                  \
		if (_a != _b) {                                                      \
			printf("#   %s:%d: %s is %lld (0x%llx), expected %s = %lld (0x%llx)\n", \
			       __FILE__, __LINE__, #a, _a, (unsigned long long)_a, #b, _b, \
			       (unsigned long long)_b);                              \
			tap_failed = 1;                                              \
		}                                                                    \
	} while (0)

/* A call that must fail with -1 and @err. */
#define CHECK_ERR(call, err)                                                         \
	do {                                                                         \
		errno = 0;                                                           \
		long _r = (long)(call);                                              \
		int _e = errno;                                                      \
		if (_r != -1 || _e != (err)) {                                       \
			printf("#   %s:%d: %s returned %ld errno %d (%s), expected -1 errno %d (%s)\n", \
			       __FILE__, __LINE__, #call, _r, _e, strerror(_e), (err), strerror(err)); \
			tap_failed = 1;                                              \
		}                                                                    \
	} while (0)

/* A call that must return @val. */
#define CHECK_RET(call, val)                                                         \
	do {                                                                         \
		errno = 0;                                                           \
		long _r = (long)(call);                                              \
		int _e = errno;                                                      \
		if (_r != (long)(val)) {                                             \
			printf("#   %s:%d: %s returned %ld errno %d (%s), expected %ld\n", \
			       __FILE__, __LINE__, #call, _r, _e, strerror(_e), (long)(val)); \
			tap_failed = 1;                                              \
		}                                                                    \
	} while (0)

#define REQUIRE(cond)                                                                \
	do {                                                                         \
		if (!(cond)) {                                                       \
			printf("#   %s:%d: required: %s (errno %d %s)\n", __FILE__, __LINE__, \
			       #cond, errno, strerror(errno));                       \
			fflush(stdout);                                              \
			_exit(1);                                                    \
		}                                                                    \
	} while (0)

struct tap_case {
	const char *name;
	void (*fn)(void);
};

/* Run every case in its own process; a hang is killed by the alarm. */
static int tap_run(const struct tap_case *cases, int n, unsigned timeout)
{
	int failures = 0;

	printf("1..%d\n", n);
	for (int i = 0; i < n; i++) {
		int status = 0;
		pid_t pid;

		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			alarm(timeout);
			tap_failed = 0;
			cases[i].fn();
			exit(tap_failed); /* not _exit: LeakSanitizer runs at exit */
		}
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			status = -1;
		if (WIFSIGNALED(status))
			printf("#   killed by signal %d%s\n", WTERMSIG(status),
			       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
		if (status == 0) {
			printf("ok %d - %s\n", i + 1, cases[i].name);
		} else {
			printf("not ok %d - %s\n", i + 1, cases[i].name);
			failures++;
		}
	}
	return failures ? 1 : 0;
}

/* The counter of an eventfd, consumed; 0 if it is zero (never blocks). */
static inline uint64_t efd_take(int fd)
{
	uint64_t v = 0;
	int fl = fcntl(fd, F_GETFL);

	fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	if (read(fd, &v, sizeof(v)) != sizeof(v))
		v = 0;
	fcntl(fd, F_SETFL, fl);
	return v;
}

static inline void efd_signal(int fd, uint64_t n)
{
	if (write(fd, &n, sizeof(n)) != sizeof(n))
		printf("#   eventfd write failed: %s\n", strerror(errno));
}

#endif
