/* SPDX-License-Identifier: MIT */
/*
 * harness.h - the one test harness of guestmem's test programs.
 *
 * A program is a list of cases.  The runner forks one process per case, kills
 * it after its timeout (a timeout is a failure that names the case) and prints
 * TAP version 13 on stdout: the plan "1..N" first, then "ok N name",
 * "not ok N name" or "ok N name # SKIP reason".  Everything else a case prints
 * on stdout must be a diagnostic line starting with "# " (use DIAG()).
 *
 *	#include "harness.h"
 *
 *	TEST(punch_zeroes)                      // default timeout, 60 s
 *	{
 *		int fd = make_gmem();
 *
 *		if (!secretmem_available())
 *			SKIP("the host refuses memfd_secret");
 *		ASSERT_EQ(fallocate(fd, PUNCH, 0, 4096), 0);   // fatal
 *		EXPECT_EQ(read_byte(fd, 0), 0);                  // continues
 *		ASSERT_ERRNO(fallocate(fd, 0, 1, 1), EINVAL);    // -1 and errno
 *		ASSERT_WAIT(atomic_load(&worker_ready), 5000);   // bounded poll
 *		ASSERT_MSG(p != MAP_FAILED, "mmap: %s", test_errno_name(errno));
 *	}
 *
 *	TEST_TIMEOUT(big_stress, 240) { ... }              // own timeout
 *
 *	static int setup(void **state) { *state = make(); return 0; }
 *	static int teardown(void **state) { drop(*state); return 0; }
 *	TEST_F(with_fixture, setup, teardown) { use(*state); }
 *
 *	int main(int argc, char **argv)
 *	{
 *		test_add("param/one", fn, arg, 0);  // run-time cases (optional)
 *		test_add_fn("a named case", fn0, 30); // void fn0(void)
 *		return test_main(argc, argv);
 *	}
 *
 * Cases run in the order they are defined (static TEST()s first, then the
 * test_add() ones).  ASSERT_* ends the case on failure, EXPECT_* records the
 * failure and goes on; both print the expression and both values.  SKIP()
 * ends the case as a skip (a real TAP skip, counted in the plan).  A failing
 * check in any thread of the case fails the case.  Print nothing on stdout
 * before test_main(): TAP's version line must come first.  A case that forks
 * ends its children with _exit().
 *
 * In meson: dependencies : [harness_dep], protocol : 'tap'.
 *
 * Running a program by hand:
 *	./test_x                 all cases
 *	./test_x NAME...         only the cases whose name matches a glob NAME
 *	./test_x -l              list the case names
 *	GM_TEST_NOFORK=1 gdb --args ./test_x NAME
 *	                         run in-process, no timeout (a failing ASSERT
 *	                         abort()s, so the debugger stops there)
 *	GM_TEST_TIMEOUT=S        every case's timeout is S seconds
 */
#ifndef GM_TESTS_HARNESS_H
#define GM_TESTS_HARNESS_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#define TEST_DEFAULT_TIMEOUT 60 /* seconds */

struct test_case {
	const char *name;
	void (*fn)(void *arg);
	void *arg;
	void (*plain)(void); /* instead of fn(arg), if set */
	unsigned timeout_s; /* 0: TEST_DEFAULT_TIMEOUT */
	struct test_case *next;
};

/* Static registration (TEST and friends); runs before main(). */
void test_register(struct test_case *c);
/* A run-time case; @name is copied.  Call before test_main(). */
void test_add(const char *name, void (*fn)(void *arg), void *arg, unsigned timeout_s);
/* The same for a case without an argument (a table of named cases). */
void test_add_fn(const char *name, void (*fn)(void), unsigned timeout_s);
/* Every case of the run reports "# SKIP @why" (a program whose prerequisite,
 * e.g. its guest module, is missing); the plan stays complete. */
void test_skip_all(const char *why);
/* Run the selected cases; returns the process exit status. */
int test_main(int argc, char **argv);

/* The name of the running case (for diagnostics). */
const char *test_current(void);
/* Whether a check of the running case failed so far (for extra diagnostics). */
bool test_failed(void);

__attribute__((format(printf, 1, 2))) void test_diag(const char *fmt, ...);
__attribute__((format(printf, 4, 5))) void test_fail(bool fatal, const char *file, int line,
						     const char *fmt, ...);
__attribute__((format(printf, 5, 6))) void test_fail_expr(bool fatal, const char *file, int line,
							  const char *expr, const char *fmt, ...);
__attribute__((format(printf, 1, 2), noreturn)) void test_skip(const char *fmt, ...);
const char *test_errno_name(int e);
/* Monotonic milliseconds, and one growing nap (100 us .. 10 ms) of a poll. */
long long test_now_ms(void);
void test_nap(unsigned *step);
/* Whether thread @tid of this process sleeps (state S or D): blocked on a
 * lock or in a wait, which a handshake can observe without a timing guess. */
bool test_thread_blocked(pid_t tid);
/* The state letter of a /proc/.../stat file (R, S, D, Z, ...), or 0 if unreadable. */
char test_stat_state(const char *stat_path);
/* The number a /proc (or /sys) file holds, or @dflt if it cannot be read. */
long test_read_long(const char *path, long dflt);
/* The first number on the line "@key:" of /proc/@pid/status (Uid, PPid, ...), or -1. */
long test_proc_status(pid_t pid, const char *key);
/*
 * Read or write the byte at @p in a child, so that an expected SIGBUS or
 * SIGSEGV kills only that process (with the default action, not a
 * sanitizer's handler).  The terminating signal, 0 if the access completed,
 * -1 if no child could run.
 */
int test_access_signal(volatile uint8_t *p, bool write);

#define GM_TEST_REG_(fname, sym, secs)                                                   \
	static struct test_case gm_case_##sym = { .name = fname, .fn = gm_run_##sym,     \
						  .timeout_s = (secs) };                 \
	__attribute__((constructor)) static void gm_reg_##sym(void)                      \
	{                                                                                \
		test_register(&gm_case_##sym);                                           \
	}

#define TEST_TIMEOUT(name, secs)                                                         \
	static void name(void);                                                          \
	static void gm_run_##name(void *arg)                                             \
	{                                                                                \
		(void)arg;                                                               \
		name();                                                                  \
	}                                                                                \
	GM_TEST_REG_(#name, name, secs)                                                  \
	static void name(void)

#define TEST(name) TEST_TIMEOUT(name, 0)

/* A case with a cmocka-style fixture: @setup(&state) returns 0 or the case
 * fails; @teardown runs after a body that returned. */
#define TEST_F_TIMEOUT(name, setup, teardown, secs)                                      \
	static void name(void **state);                                                  \
	static void gm_run_##name(void *arg)                                             \
	{                                                                                \
		void *state_ = NULL;                                                     \
		(void)arg;                                                               \
		ASSERT_EQ(setup(&state_), 0);                                            \
		name(&state_);                                                           \
		ASSERT_EQ(teardown(&state_), 0);                                         \
	}                                                                                \
	GM_TEST_REG_(#name, name, secs)                                                  \
	static void name(void **state)

#define TEST_F(name, setup, teardown) TEST_F_TIMEOUT(name, setup, teardown, 0)

/* A diagnostic line: "# " is prepended, the newline appended. */
#define DIAG(...) test_diag(__VA_ARGS__)
#define SKIP(...) test_skip(__VA_ARGS__)
#define FAIL(...) test_fail(true, __FILE__, __LINE__, __VA_ARGS__)
/*
 * No free huge page for a hugetlb case: a skip, unless the run reserved
 * some for the suite (GUESTMEM_TEST_HUGEPAGES, set by
 * scripts/with-hugepages.sh under `make check`), where it is a failure.
 */
#define SKIP_NO_HUGEPAGE(...)                                            \
	do {                                                             \
		if (getenv("GUESTMEM_TEST_HUGEPAGES"))                   \
			FAIL(__VA_ARGS__);                               \
		SKIP(__VA_ARGS__);                                       \
	} while (0)

/* ---- checks: ASSERT_x ends the case, EXPECT_x goes on -------------------- */

#define GM_CHECK_(fatal, cond, ...)                                                      \
	do {                                                                             \
		if (!(cond))                                                             \
			test_fail(fatal, __FILE__, __LINE__, __VA_ARGS__);               \
	} while (0)

/* @cond, with a message of the caller's (printf format and arguments). */
#define GM_MSG_(fatal, cond, ...)                                                        \
	do {                                                                             \
		if (!(cond))                                                             \
			test_fail_expr(fatal, __FILE__, __LINE__, #cond, __VA_ARGS__);   \
	} while (0)

#define GM_TRUE_(fatal, c)                                                               \
	GM_CHECK_(fatal, (c), "%s is false (errno %s)", #c, test_errno_name(errno))
#define GM_FALSE_(fatal, c) GM_CHECK_(fatal, !(c), "%s is true", #c)

/* Integers, compared as 64-bit values (signed for the orderings). */
#define GM_CMP_(fatal, a, op, b)                                                         \
	do {                                                                             \
		long long a_ = (long long)(a), b_ = (long long)(b);                      \
		GM_CHECK_(fatal, a_ op b_,                                               \
			  "expected %s " #op " %s: %s = %lld (%#llx), %s = %lld (%#llx)", \
			  #a, #b, #a, a_, (unsigned long long)a_, #b, b_,                \
			  (unsigned long long)b_);                                       \
	} while (0)

#define GM_PTR_(fatal, a, op, b)                                                         \
	do {                                                                             \
		const void *a_ = (const void *)(a), *b_ = (const void *)(b);             \
		GM_CHECK_(fatal, a_ op b_, "expected %s " #op " %s: %s = %p, %s = %p",   \
			  #a, #b, #a, a_, #b, b_);                                       \
	} while (0)

#define GM_STR_(fatal, a, b)                                                             \
	do {                                                                             \
		const char *a_ = (a), *b_ = (b);                                         \
		GM_CHECK_(fatal, a_ && b_ && !strcmp(a_, b_),                            \
			  "expected %s == %s: \"%s\" vs \"%s\"", #a, #b,                 \
			  a_ ? a_ : "(null)", b_ ? b_ : "(null)");                       \
	} while (0)

#define GM_MEM_(fatal, a, b, n)                                                          \
	do {                                                                             \
		const unsigned char *a_ = (const void *)(a), *b_ = (const void *)(b);    \
		size_t n_ = (n), i_ = 0;                                                 \
		while (i_ < n_ && a_[i_] == b_[i_])                                      \
			i_++;                                                            \
		GM_CHECK_(fatal, i_ == n_,                                               \
			  "%s and %s differ at byte %zu of %zu: %#x vs %#x", #a, #b, i_, \
			  n_, i_ < n_ ? a_[i_] : 0, i_ < n_ ? b_[i_] : 0);               \
	} while (0)

/* @call must return -1 with errno @err (the uAPI convention). */
#define GM_ERRNO_(fatal, call, err)                                                      \
	do {                                                                             \
		errno = 0;                                                               \
		long long r_ = (long long)(call);                                        \
		int e_ = errno, w_ = (err);                                              \
		GM_CHECK_(fatal, r_ == -1 && e_ == w_,                                   \
			  "%s returned %lld errno %s, expected -1 errno %s", #call, r_,  \
			  r_ == -1 ? test_errno_name(e_) : "-", test_errno_name(w_));    \
	} while (0)

/* @call must return @val (the errno is printed when it does not). */
#define GM_RET_(fatal, call, val)                                                        \
	do {                                                                             \
		errno = 0;                                                               \
		long long r_ = (long long)(call);                                        \
		int e_ = errno;                                                          \
		long long v_ = (long long)(val);                                         \
		GM_CHECK_(fatal, r_ == v_, "%s returned %lld (errno %s), expected %s = %lld", \
			  #call, r_, test_errno_name(e_), #val, v_);                     \
	} while (0)

/* @call must succeed: return >= 0. */
#define GM_OK_(fatal, call)                                                              \
	do {                                                                             \
		errno = 0;                                                               \
		long long r_ = (long long)(call);                                        \
		int e_ = errno;                                                          \
		GM_CHECK_(fatal, r_ >= 0, "%s returned %lld errno %s", #call, r_,        \
			  test_errno_name(e_));                                          \
	} while (0)

/* Poll @cond (a state the code under test exposes) until it holds, at most
 * @ms milliseconds: a bounded handshake instead of a sleep. */
#define GM_WAIT_(fatal, cond, ms)                                                        \
	do {                                                                             \
		long long end_ = test_now_ms() + (ms);                                   \
		unsigned step_ = 0;                                                      \
		bool ok_;                                                                \
		while (!(ok_ = (cond)) && test_now_ms() < end_)                          \
			test_nap(&step_);                                                \
		GM_CHECK_(fatal, ok_, "%s still false after %d ms", #cond, (int)(ms));   \
	} while (0)

#define ASSERT_MSG(cond, ...) GM_MSG_(true, cond, __VA_ARGS__)
#define ASSERT_TRUE(c) GM_TRUE_(true, c)
#define ASSERT_FALSE(c) GM_FALSE_(true, c)
#define ASSERT_EQ(a, b) GM_CMP_(true, a, ==, b)
#define ASSERT_NE(a, b) GM_CMP_(true, a, !=, b)
#define ASSERT_LT(a, b) GM_CMP_(true, a, <, b)
#define ASSERT_LE(a, b) GM_CMP_(true, a, <=, b)
#define ASSERT_GT(a, b) GM_CMP_(true, a, >, b)
#define ASSERT_GE(a, b) GM_CMP_(true, a, >=, b)
#define ASSERT_PTR_EQ(a, b) GM_PTR_(true, a, ==, b)
#define ASSERT_PTR_NE(a, b) GM_PTR_(true, a, !=, b)
#define ASSERT_NULL(p) GM_PTR_(true, p, ==, NULL)
#define ASSERT_NOT_NULL(p) GM_PTR_(true, p, !=, NULL)
#define ASSERT_STR_EQ(a, b) GM_STR_(true, a, b)
#define ASSERT_MEM_EQ(a, b, n) GM_MEM_(true, a, b, n)
#define ASSERT_ERRNO(call, err) GM_ERRNO_(true, call, err)
#define ASSERT_RET(call, val) GM_RET_(true, call, val)
#define ASSERT_OK(call) GM_OK_(true, call)
#define ASSERT_WAIT(cond, ms) GM_WAIT_(true, cond, ms)
/* A library call returning 0 or a negative errno must return -@err. */
#define ASSERT_NEG_ERRNO(call, err) GM_CMP_(true, call, ==, -(err))

#define EXPECT_MSG(cond, ...) GM_MSG_(false, cond, __VA_ARGS__)
#define EXPECT_TRUE(c) GM_TRUE_(false, c)
#define EXPECT_FALSE(c) GM_FALSE_(false, c)
#define EXPECT_EQ(a, b) GM_CMP_(false, a, ==, b)
#define EXPECT_NE(a, b) GM_CMP_(false, a, !=, b)
#define EXPECT_LT(a, b) GM_CMP_(false, a, <, b)
#define EXPECT_LE(a, b) GM_CMP_(false, a, <=, b)
#define EXPECT_GT(a, b) GM_CMP_(false, a, >, b)
#define EXPECT_GE(a, b) GM_CMP_(false, a, >=, b)
#define EXPECT_PTR_EQ(a, b) GM_PTR_(false, a, ==, b)
#define EXPECT_PTR_NE(a, b) GM_PTR_(false, a, !=, b)
#define EXPECT_NULL(p) GM_PTR_(false, p, ==, NULL)
#define EXPECT_NOT_NULL(p) GM_PTR_(false, p, !=, NULL)
#define EXPECT_STR_EQ(a, b) GM_STR_(false, a, b)
#define EXPECT_MEM_EQ(a, b, n) GM_MEM_(false, a, b, n)
#define EXPECT_ERRNO(call, err) GM_ERRNO_(false, call, err)
#define EXPECT_RET(call, val) GM_RET_(false, call, val)
#define EXPECT_OK(call) GM_OK_(false, call)
#define EXPECT_WAIT(cond, ms) GM_WAIT_(false, cond, ms)

#endif
