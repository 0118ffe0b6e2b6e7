// SPDX-License-Identifier: MIT
/*
 * The test runner of harness.h: one forked process per case, a timeout per
 * case, TAP version 13 on stdout.
 *
 * Plain libc only (no libguestmem): the "exec" builds of the uAPI tests link
 * this into a plain program that runs under `guestmem exec --`.
 */
#include "harness.h"

#include <fnmatch.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_SKIP 77 /* a child's "skipped" exit status */

/* What a case's process tells the runner, in memory shared across fork. */
struct test_result {
	atomic_int failed;
	atomic_int skipped;
	char skip_reason[256];
};

static struct test_case *cases_head, **cases_tail = &cases_head;
static const char *skip_all_reason;
static struct test_result outside; /* checks before test_main() */
static struct test_result *result = &outside;
static const char *current;
static bool nofork;
static pthread_t runner_thread;
static sigjmp_buf nofork_jmp;
static volatile sig_atomic_t child_pid; /* for the signal forwarder */

void test_register(struct test_case *c)
{
	c->next = NULL;
	*cases_tail = c;
	cases_tail = &c->next;
}

static struct test_case *add_case(const char *name, unsigned timeout_s)
{
	struct test_case *c = calloc(1, sizeof(*c));

	if (!c || !(c->name = strdup(name))) {
		perror("test_add");
		exit(2);
	}
	c->timeout_s = timeout_s;
	test_register(c);
	return c;
}

void test_add(const char *name, void (*fn)(void *arg), void *arg, unsigned timeout_s)
{
	struct test_case *c = add_case(name, timeout_s);

	c->fn = fn;
	c->arg = arg;
}

void test_add_fn(const char *name, void (*fn)(void), unsigned timeout_s)
{
	add_case(name, timeout_s)->plain = fn;
}

void test_skip_all(const char *why)
{
	skip_all_reason = why;
}

const char *test_current(void)
{
	return current ? current : "(none)";
}

bool test_failed(void)
{
	return atomic_load(&result->failed);
}

const char *test_errno_name(int e)
{
	const char *n = e ? strerrorname_np(e) : "0";

	return n ? n : "E?";
}

/* One "# " line; vprintf then a newline, written as one line-buffered line. */
static void vdiag(const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	for (char *line = buf, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		if (nl && !*nl)
			nl = NULL;
		printf("# %s\n", line);
	}
	fflush(stdout);
}

void test_diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(fmt, ap);
	va_end(ap);
}

void test_fail(bool fatal, const char *file, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	test_diag("%s:%d: %s: %s", file, line, fatal ? "ASSERT failed" : "EXPECT failed", msg);
	atomic_store(&result->failed, 1);
	if (!fatal)
		return;
	if (nofork) {
		test_diag("case %s failed (GM_TEST_NOFORK: abort for the debugger)", test_current());
		abort();
	}
	/* Not exit(): atexit handlers may wait for threads the case left. */
	_exit(1);
}

void test_fail_expr(bool fatal, const char *file, int line, const char *expr, const char *fmt,
		    ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	test_fail(fatal, file, line, "%s: %s", expr, msg);
}

void test_skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(result->skip_reason, sizeof(result->skip_reason), fmt, ap);
	va_end(ap);
	/* The reason ends up after "# SKIP" on the TAP line: one line, no '#'. */
	for (char *p = result->skip_reason; *p; p++)
		if (*p == '\n' || *p == '#')
			*p = ' ';
	atomic_store(&result->skipped, 1);
	fflush(stdout);
	if (nofork) {
		if (pthread_equal(pthread_self(), runner_thread))
			siglongjmp(nofork_jmp, 1);
		test_diag("SKIP from a thread other than the case's (GM_TEST_NOFORK)");
		abort();
	}
	_exit(EXIT_SKIP);
}

long long test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

void test_nap(unsigned *step)
{
	struct timespec ts = { 0, (long)(100 * 1000) << (*step < 7 ? *step : 7) };

	nanosleep(&ts, NULL);
	++*step;
}

char test_stat_state(const char *stat_path)
{
	char buf[512], *p, state = 0;
	FILE *fp = fopen(stat_path, "r");

	if (!fp)
		return 0;
	/* The state follows the command name, which may contain ')'. */
	if (fgets(buf, sizeof(buf), fp) && (p = strrchr(buf, ')')) && p[1] == ' ')
		state = p[2];
	fclose(fp);
	return state;
}

long test_read_long(const char *path, long dflt)
{
	FILE *f = fopen(path, "r");
	long v = dflt;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

int test_access_signal(volatile uint8_t *p, bool write)
{
	int st;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* Sanitizer runtimes catch these; the caller wants the plain signal. */
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		if (write)
			*p = 0xa5;
		else
			(void)*p;
		_exit(0);
	}
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

long test_proc_status(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t n = strlen(key);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n) && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

bool test_thread_blocked(pid_t tid)
{
	char path[64], state;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	state = test_stat_state(path);
	return state == 'S' || state == 'D';
}

static void run_case(const struct test_case *c)
{
	if (c->plain)
		c->plain();
	else
		c->fn(c->arg);
}

static unsigned timeout_of(const struct test_case *c)
{
	const char *env = getenv("GM_TEST_TIMEOUT");

	if (env && atoi(env) > 0)
		return (unsigned)atoi(env);
	return c->timeout_s ? c->timeout_s : TEST_DEFAULT_TIMEOUT;
}

/* A runner killed by meson (or ^C) takes the running case with it. */
static void forward_signal(int sig)
{
	if (child_pid > 0)
		kill(-child_pid, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Wait for @pid at most @timeout_s seconds; false on timeout (and kills it). */
static bool wait_bounded(pid_t pid, unsigned timeout_s, int *status)
{
	long long end = test_now_ms() + timeout_s * 1000LL;
	unsigned step = 0;
	pid_t r;

	while ((r = waitpid(pid, status, WNOHANG)) == 0) {
		if (test_now_ms() >= end) {
			kill(-pid, SIGKILL); /* the case's process group */
			kill(pid, SIGKILL);
			waitpid(pid, status, 0);
			return false;
		}
		test_nap(&step);
	}
	if (r < 0) {
		test_diag("waitpid: %s", test_errno_name(errno));
		*status = -1;
	}
	return true;
}

/* Run case @c as number @n; true if it did not fail. */
static bool run_forked(const struct test_case *c, int n)
{
	unsigned timeout = timeout_of(c);
	int status = 0;
	pid_t pid;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		test_diag("fork: %s", test_errno_name(errno));
		printf("not ok %d %s\n", n, c->name);
		return false;
	}
	if (pid == 0) {
		setpgid(0, 0); /* a timeout kills whatever the case forked too */
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		run_case(c);
		fflush(stdout);
		/* exit(), not _exit(): LeakSanitizer checks at exit. */
		exit(atomic_load(&result->failed) ? 1 : 0);
	}
	setpgid(pid, pid); /* both sides, so neither races the other */
	child_pid = pid;
	if (!wait_bounded(pid, timeout, &status)) {
		child_pid = 0;
		test_diag("case %s timed out after %u s (killed)", c->name, timeout);
		printf("not ok %d %s\n", n, c->name);
		return false;
	}
	child_pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIP && atomic_load(&result->skipped) &&
	    !atomic_load(&result->failed)) {
		printf("ok %d %s # SKIP %s\n", n, c->name, result->skip_reason);
		return true;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !atomic_load(&result->failed)) {
		printf("ok %d %s\n", n, c->name);
		return true;
	}
	if (WIFSIGNALED(status))
		test_diag("case %s killed by SIG%s", c->name, sigabbrev_np(WTERMSIG(status)));
	else if (WIFEXITED(status) && WEXITSTATUS(status) != 1)
		test_diag("case %s exited with status %d", c->name, WEXITSTATUS(status));
	printf("not ok %d %s\n", n, c->name);
	return false;
}

/* GM_TEST_NOFORK: in this process, for a debugger. */
static bool run_inline(const struct test_case *c, int n)
{
	if (sigsetjmp(nofork_jmp, 1) == 0)
		run_case(c);
	fflush(stdout);
	if (atomic_load(&result->failed)) {
		printf("not ok %d %s\n", n, c->name);
		return false;
	}
	if (atomic_load(&result->skipped))
		printf("ok %d %s # SKIP %s\n", n, c->name, result->skip_reason);
	else
		printf("ok %d %s\n", n, c->name);
	return true;
}

static bool selected(const struct test_case *c, int argc, char **argv)
{
	bool any = false;

	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;
		any = true;
		if (!fnmatch(argv[i], c->name, 0))
			return true;
	}
	return !any;
}

int test_main(int argc, char **argv)
{
	const char *env = getenv("GM_TEST_NOFORK");
	struct sigaction sa = { .sa_handler = forward_signal };
	int n = 0, planned = 0, failed = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-l")) {
			for (struct test_case *c = cases_head; c; c = c->next)
				puts(c->name);
			return 0;
		}
		if (argv[i][0] == '-') {
			fprintf(stderr, "usage: %s [-l] [GLOB...]\n", argv[0]);
			return 2;
		}
	}
	nofork = env && *env && strcmp(env, "0");
	runner_thread = pthread_self();
	result = mmap(NULL, sizeof(*result), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (result == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	for (struct test_case *c = cases_head; c; c = c->next)
		planned += selected(c, argc, argv);
	printf("TAP version 13\n1..%d\n", planned);
	if (!planned && argc > 1)
		test_diag("no case matches the filter");
	for (struct test_case *c = cases_head; c; c = c->next) {
		if (!selected(c, argc, argv))
			continue;
		n++;
		if (skip_all_reason) {
			printf("ok %d %s # SKIP %s\n", n, c->name, skip_all_reason);
			continue;
		}
		memset(result, 0, sizeof(*result));
		current = c->name;
		failed += !(nofork ? run_inline(c, n) : run_forked(c, n));
		current = NULL;
	}
	if (failed)
		test_diag("%d of %d cases failed", failed, planned);
	return failed || (!planned && argc > 1) ? 1 : 0;
}
