// SPDX-License-Identifier: MIT
/*
 * The harness reports what happened: runs harness_toy (HARNESS_TOY) with
 * filters and checks its TAP, diagnostics and exit status - failures,
 * skips, timeouts, crashes and failures in other threads included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

struct toy {
	char out[16384];
	int status; /* exit status, or 128 + signal */
	long long ms;
};

/* Run the toy with @env ("NAME=VALUE" or NULL) and the NULL-ended args. */
static void run_toy(struct toy *t, const char *env, const char *const *args)
{
	const char *path = getenv("HARNESS_TOY");
	const char *argv[16] = { path };
	long long start = test_now_ms();
	size_t len = 0;
	int p[2], st;
	ssize_t n;
	pid_t pid;

	ASSERT_NOT_NULL(path);
	for (int i = 0; args && args[i] && i < 14; i++)
		argv[i + 1] = args[i];
	ASSERT_EQ(pipe(p), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		if (env)
			putenv((char *)env);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	while ((n = read(p[0], t->out + len, sizeof(t->out) - 1 - len)) > 0)
		len += (size_t)n;
	t->out[len] = '\0';
	close(p[0]);
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	t->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	t->ms = test_now_ms() - start;
}

/* The toy's whole output, when a check failed. */
static void show(const struct toy *t)
{
	if (test_failed())
		DIAG("toy exited %d after %lld ms:\n%s", t->status, t->ms, t->out);
}

#define HAS(t, s) EXPECT_NOT_NULL(strstr((t)->out, (s)))

TEST(plan_first_and_pass)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "passes", NULL });
	EXPECT_EQ(strncmp(t.out, "TAP version 13\n1..1\n", 20), 0);
	HAS(&t, "# two lines\n# of diagnostics\n");
	HAS(&t, "\nok 1 passes\n");
	EXPECT_EQ(t.status, 0);
	show(&t);
}

TEST(expect_failure_goes_on_and_prints_both_values)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "fails_expect", NULL });
	HAS(&t, "x = 3 (0x3), 4 = 4 (0x4)");
	HAS(&t, "# after the failed EXPECT\n");
	HAS(&t, "\nnot ok 1 fails_expect\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(assert_errno_ends_the_case)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "fails_errno", NULL });
	HAS(&t, "close(-5) returned -1 errno EBADF, expected -1 errno EINVAL");
	EXPECT_NULL(strstr(t.out, "not reached"));
	HAS(&t, "\nnot ok 1 fails_errno\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(skip_is_a_tap_skip)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "skips", NULL });
	HAS(&t, "1..1\nok 1 skips # SKIP no thing here\n");
	EXPECT_EQ(t.status, 0);
	show(&t);
}

TEST(skip_all_keeps_the_plan)
{
	struct toy t;

	run_toy(&t, "TOY_SKIP_ALL=1", (const char *[]){ "param/*", "passes", NULL });
	HAS(&t, "1..3\n");
	HAS(&t, "ok 1 passes # SKIP toy: skip all\n");
	HAS(&t, "ok 3 param/no # SKIP toy: skip all\n");
	EXPECT_EQ(t.status, 0);
	show(&t);
}

TEST(timeout_fails_and_names_the_case)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "hangs", NULL });
	HAS(&t, "# case hangs timed out after 1 s");
	HAS(&t, "\nnot ok 1 hangs\n");
	EXPECT_EQ(t.status, 1);
	EXPECT_GE(t.ms, 1000);
	EXPECT_LT(t.ms, 20000);
	show(&t);
}

TEST(timeout_override)
{
	struct toy t;

	run_toy(&t, "GM_TEST_TIMEOUT=1", (const char *[]){ "sleeps_5s", NULL });
	HAS(&t, "\nnot ok 1 sleeps_5s\n");
	EXPECT_LT(t.ms, 4500);
	show(&t);
}

TEST(failure_in_another_thread)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "thread_fails", NULL });
	HAS(&t, "expected 1 == 2");
	HAS(&t, "\nnot ok 1 thread_fails\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(crash_names_the_signal)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "crashes", NULL });
	HAS(&t, "# case crashes killed by SIGABRT");
	HAS(&t, "\nnot ok 1 crashes\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(filter_globs_and_numbers_in_order)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "param/*", "passes", NULL });
	HAS(&t, "1..3\n");
	HAS(&t, "\nok 1 passes\n");
	HAS(&t, "\nok 2 param/yes\n");
	HAS(&t, "\"no\" vs \"yes\"");
	HAS(&t, "not ok 3 param/no\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(filter_matching_nothing_fails)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "no_such_case", NULL });
	HAS(&t, "1..0\n");
	EXPECT_EQ(t.status, 1);
	show(&t);
}

TEST(list)
{
	struct toy t;

	run_toy(&t, NULL, (const char *[]){ "-l", NULL });
	EXPECT_EQ(strncmp(t.out, "passes\nfails_expect\n", 20), 0);
	HAS(&t, "param/no\n");
	EXPECT_EQ(t.status, 0);
	show(&t);
}

TEST(nofork_runs_in_process)
{
	struct toy t;

	run_toy(&t, "GM_TEST_NOFORK=1", (const char *[]){ "skips", "passes", NULL });
	HAS(&t, "1..2\n");
	HAS(&t, "ok 1 passes\n");
	HAS(&t, "ok 2 skips # SKIP no thing here\n");
	EXPECT_EQ(t.status, 0);
	show(&t);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
