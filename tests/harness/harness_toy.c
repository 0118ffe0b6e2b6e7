// SPDX-License-Identifier: MIT
/*
 * Cases that pass, fail, skip, hang and crash on purpose: test_harness.c
 * runs this program and checks what the runner reports.  Not a test itself.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

TEST(passes)
{
	ASSERT_EQ(1 + 1, 2);
	DIAG("two lines\nof diagnostics");
}

TEST(fails_expect)
{
	int x = 3;

	EXPECT_EQ(x, 4);
	DIAG("after the failed EXPECT");
}

TEST(fails_errno)
{
	ASSERT_ERRNO(close(-5), EINVAL);
	DIAG("not reached");
}

TEST(skips)
{
	SKIP("no %s here", "thing");
}

TEST_TIMEOUT(hangs, 1)
{
	for (;;)
		pause();
}

TEST(sleeps_5s)
{
	sleep(5);
}

static void *failing_thread(void *arg)
{
	(void)arg;
	ASSERT_EQ(1, 2);
	return NULL;
}

TEST(thread_fails)
{
	pthread_t t;

	ASSERT_EQ(pthread_create(&t, NULL, failing_thread, NULL), 0);
	pthread_join(t, NULL);
}

TEST(crashes)
{
	abort();
}

static void param(void *arg)
{
	ASSERT_STR_EQ(arg, "yes");
}

int main(int argc, char **argv)
{
	test_add("param/yes", param, "yes", 0);
	test_add("param/no", param, "no", 0);
	if (getenv("TOY_SKIP_ALL"))
		test_skip_all("toy: skip all");
	return test_main(argc, argv);
}
