/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd storage (src/core/backing*.c), run once per backing kind:
 * zero-filled allocation, punch frees and reads zero again, ascending
 * allocation without rollback (EINTR, ENOMEM), concurrent lookups racing
 * punch, and the per-kind extras (memfd file, secretmem free list).
 * secretmem cases skip when the host refuses memfd_secret(2).
 */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/backing.h"
#include "lib/compiler.h"

#define PAGE GM_PAGE_SIZE

static enum gm_backing_kind kind_memfd = GM_BACKING_MEMFD;
static enum gm_backing_kind kind_secretmem = GM_BACKING_SECRETMEM;

#define KIND(state) enum gm_backing_kind kind = *(enum gm_backing_kind *)*(state)

static void init_ok(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages)
{
	assert_int_equal(gm_backing_init(b, kind, nr_pages), 0);
	assert_int_equal(gm_backing_nr_allocated(b), 0);
}

static char *page_of(struct gm_backing *b, uint64_t index, bool alloc)
{
	int err = 12345;
	char *p = gm_backing_page(b, index, alloc, &err);

	if (p)
		assert_int_equal(err, 0);
	else
		assert_int_equal(err, 0); /* absent (!alloc); alloc failures are -ENOMEM */
	return p;
}

static bool page_is_zero(const char *p)
{
	for (size_t i = 0; i < PAGE; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- cases ---------------------------------------------------------------- */

static void test_sizes(void **state)
{
	KIND(state);
	struct gm_backing b;
	uint64_t max_pages = (uint64_t)INT64_MAX >> 12; /* 2^63 - 4096 bytes */
	char *p;

	init_ok(&b, kind, 1);
	assert_null(page_of(&b, 0, false));
	p = page_of(&b, 0, true);
	assert_non_null(p);
	assert_true(page_is_zero(p));
	assert_int_equal(gm_backing_nr_allocated(&b), 1);
	gm_backing_fini(&b);

	/* The largest guest_memfd: sparse, only the touched page costs memory. */
	init_ok(&b, kind, max_pages);
	p = page_of(&b, max_pages - 1, true);
	assert_non_null(p);
	assert_true(page_is_zero(p));
	memset(p, 0xa5, PAGE);
	assert_ptr_equal(page_of(&b, max_pages - 1, false), p);
	assert_int_equal(gm_backing_nr_allocated(&b), 1);
	gm_backing_punch(&b, max_pages - 1, 1);
	assert_int_equal(gm_backing_nr_allocated(&b), 0);
	assert_null(page_of(&b, max_pages - 1, false));
	gm_backing_fini(&b);

	assert_int_equal(gm_backing_init(&b, kind, max_pages + 1), -EINVAL);
}

static void test_allocate_punch_data(void **state)
{
	KIND(state);
	struct gm_backing b;
	char *p;

	init_ok(&b, kind, 2048); /* 8 MiB: several 2 MiB windows */
	assert_int_equal(gm_backing_allocate(&b, 100, 1000), 0);
	assert_int_equal(gm_backing_nr_allocated(&b), 1000);
	assert_null(page_of(&b, 99, false));
	assert_null(page_of(&b, 1100, false));
	for (uint64_t i = 100; i < 1100; i++) {
		p = page_of(&b, i, false);
		assert_non_null(p);
		assert_true(page_is_zero(p));
		memcpy(p, &i, sizeof(i));
	}
	/* Allocating present pages is a no-op that keeps their data. */
	assert_int_equal(gm_backing_allocate(&b, 0, 2048), 0);
	assert_int_equal(gm_backing_nr_allocated(&b), 2048);
	for (uint64_t i = 100; i < 1100; i++)
		assert_int_equal(*(uint64_t *)page_of(&b, i, false), i);

	gm_backing_punch(&b, 500, 100);
	assert_int_equal(gm_backing_nr_allocated(&b), 1948);
	assert_null(page_of(&b, 500, false));
	assert_null(page_of(&b, 599, false));
	assert_int_equal(*(uint64_t *)page_of(&b, 499, false), 499);
	assert_int_equal(*(uint64_t *)page_of(&b, 600, false), 600);
	/* The next use of a punched page sees zeros. */
	p = page_of(&b, 550, true);
	assert_non_null(p);
	assert_true(page_is_zero(p));
	assert_int_equal(gm_backing_nr_allocated(&b), 1949);
	assert_int_equal(gm_backing_allocate(&b, 500, 100), 0);
	for (uint64_t i = 500; i < 600; i++)
		assert_true(page_is_zero(page_of(&b, i, false)));
	gm_backing_fini(&b);
}

static void test_punch_clipped(void **state)
{
	KIND(state);
	struct gm_backing b;

	init_ok(&b, kind, 64);
	assert_int_equal(gm_backing_allocate(&b, 0, 64), 0);
	*(uint64_t *)page_of(&b, 59, false) = 59;
	/* Beyond EOF: nothing happens; straddling EOF: clipped to it. */
	gm_backing_punch(&b, 64, 1ULL << 40);
	gm_backing_punch(&b, 1ULL << 50, 1);
	assert_int_equal(gm_backing_nr_allocated(&b), 64);
	gm_backing_punch(&b, 60, UINT64_MAX / 2);
	assert_int_equal(gm_backing_nr_allocated(&b), 60);
	assert_int_equal(*(uint64_t *)page_of(&b, 59, false), 59);
	assert_null(page_of(&b, 63, false));
	gm_backing_fini(&b);
}

struct same_page_arg {
	struct gm_backing *b;
	char **addrs;
	uint64_t n;
};

static void *same_page_thread(void *arg)
{
	struct same_page_arg *a = arg;

	for (uint64_t i = 0; i < a->n; i++) {
		int err;

		a->addrs[i] = gm_backing_page(a->b, i, true, &err);
	}
	return NULL;
}

/* Racing first uses of the same pages agree on one page each. */
static void test_concurrent_first_use(void **state)
{
	KIND(state);
	enum { T = 4, N = 1024 };
	struct gm_backing b;
	struct same_page_arg args[T];
	pthread_t th[T];

	init_ok(&b, kind, N);
	for (int t = 0; t < T; t++) {
		args[t] = (struct same_page_arg){ &b, calloc(N, sizeof(char *)), N };
		assert_non_null(args[t].addrs);
		assert_int_equal(pthread_create(&th[t], NULL, same_page_thread, &args[t]), 0);
	}
	for (int t = 0; t < T; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	for (uint64_t i = 0; i < N; i++) {
		assert_non_null(args[0].addrs[i]);
		for (int t = 1; t < T; t++)
			assert_ptr_equal(args[t].addrs[i], args[0].addrs[i]);
	}
	assert_int_equal(gm_backing_nr_allocated(&b), N);
	for (int t = 0; t < T; t++)
		free(args[t].addrs);
	gm_backing_fini(&b);
}

struct race_arg {
	struct gm_backing *b;
	int stop;
	unsigned seed;
	uint64_t lookups;
};

static void *fault_thread(void *arg)
{
	struct race_arg *a = arg;

	while (!__atomic_load_n(&a->stop, __ATOMIC_ACQUIRE)) {
		int err;

		if (!gm_backing_page(a->b, (uint64_t)rand_r(&a->seed) % 1024, true, &err))
			fail_msg("lookup failed: %d", err);
		a->lookups++;
	}
	return NULL;
}

/*
 * Fault-path lookups racing punch-hole (the fault path does not take the
 * invalidate lock).  Afterwards the bookkeeping must match the storage
 * exactly: every page that lookup reports present is counted, and no
 * other is.
 */
static void test_lookup_races_punch(void **state)
{
	KIND(state);
	struct gm_backing b;
	struct race_arg args[2];
	pthread_t th[2];
	unsigned seed = 1;
	uint64_t present = 0;
	struct timespec t0, t;

	init_ok(&b, kind, 1024);
	for (int i = 0; i < 2; i++) {
		args[i] = (struct race_arg){ &b, 0, (unsigned)i + 7, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, fault_thread, &args[i]), 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		uint64_t start = (uint64_t)rand_r(&seed) % 1024;

		gm_backing_punch(&b, start, 1 + (uint64_t)rand_r(&seed) % 64);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
	for (int i = 0; i < 2; i++) {
		__atomic_store_n(&args[i].stop, 1, __ATOMIC_RELEASE);
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_true(args[i].lookups > 0);
	}
	for (uint64_t i = 0; i < 1024; i++)
		present += page_of(&b, i, false) != NULL;
	assert_int_equal(gm_backing_nr_allocated(&b), present);
	/* And the allocator still fills every hole. */
	assert_int_equal(gm_backing_allocate(&b, 0, 1024), 0);
	assert_int_equal(gm_backing_nr_allocated(&b), 1024);
	gm_backing_fini(&b);
}

static void test_memfd_file(void **state)
{
	KIND(state);
	struct gm_backing b;
	int fd;

	init_ok(&b, kind, 1024);
	fd = gm_backing_memfd(&b);
	if (kind == GM_BACKING_SECRETMEM) {
		assert_int_equal(fd, -1);
	} else {
		/* The file a 6.18 MMAP guest_memfd maps: same pages, same data. */
		char *p = page_of(&b, 700, true), *m;

		assert_true(fd >= 0);
		m = mmap(NULL, 1024 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		assert_true(m != MAP_FAILED);
		strcpy(p, "through the backing");
		assert_string_equal(m + 700 * PAGE, "through the backing");
		strcpy(m + 3 * PAGE, "through the mapping");
		/* Present although guestmem did not allocate it. */
		assert_string_equal(page_of(&b, 3, false), "through the mapping");
		gm_backing_punch(&b, 700, 1);
		assert_int_equal(m[700 * PAGE], 0);
		munmap(m, 1024 * PAGE);
	}
	gm_backing_fini(&b);
}

/* A pending signal the thread blocks does not interrupt (as in the kernel). */
static void test_blocked_signal(void **state)
{
	KIND(state);
	struct gm_backing b;
	sigset_t set, old;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	assert_int_equal(raise(SIGUSR1), 0);
	init_ok(&b, kind, 2048);
	assert_int_equal(gm_backing_allocate(&b, 0, 2048), 0);
	assert_int_equal(gm_backing_nr_allocated(&b), 2048);
	assert_int_equal(sigtimedwait(&set, NULL, &zero), SIGUSR1);
	assert_int_equal(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
	gm_backing_fini(&b);
}

static int alarms;

static void on_alarm(int sig)
{
	(void)sig;
	__atomic_fetch_add(&alarms, 1, __ATOMIC_RELAXED);
}

static void set_timer(long usec)
{
	struct itimerval it = { { 0, usec }, { 0, usec } };

	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
}

/* Check that exactly [0, n) is allocated: ascending order, no rollback. */
static void assert_prefix(struct gm_backing *b, uint64_t n, uint64_t total)
{
	for (uint64_t i = 0; i < total; i++) {
		if ((page_of(b, i, false) != NULL) != (i < n))
			fail_msg("page %llu: present %d, expected prefix of %llu pages",
				 (unsigned long long)i, page_of(b, i, false) != NULL,
				 (unsigned long long)n);
	}
}

/*
 * A signal arriving during a long allocation stops it with EINTR, keeps
 * what was allocated, and its handler still runs.
 */
static void test_eintr_no_rollback(void **state)
{
	KIND(state);
	enum { N = 32768 }; /* 128 MiB */
	struct sigaction sa = { 0 }, old_sa;
	struct gm_backing b;
	uint64_t got = 0;
	int ret = 0;

	sa.sa_handler = on_alarm; /* no SA_RESTART */
	assert_int_equal(sigaction(SIGALRM, &sa, &old_sa), 0);
	for (int attempt = 0; attempt < 20 && !(ret == -EINTR && got > 0); attempt++) {
		int seen;

		init_ok(&b, kind, N);
		seen = __atomic_load_n(&alarms, __ATOMIC_RELAXED);
		set_timer(1000);
		ret = gm_backing_allocate(&b, 0, N);
		/* The interrupting signal was delivered on the way out. */
		if (ret == -EINTR)
			assert_true(__atomic_load_n(&alarms, __ATOMIC_RELAXED) > seen);
		set_timer(0);
		got = gm_backing_nr_allocated(&b);
		if (ret == -EINTR && got > 0)
			break;
		gm_backing_fini(&b);
	}
	assert_int_equal(sigaction(SIGALRM, &old_sa, NULL), 0);
	assert_int_equal(ret, -EINTR);
	assert_true(got > 0 && got < N);
	assert_prefix(&b, got, N);
	assert_int_equal(gm_backing_allocate(&b, 0, N), 0);
	assert_int_equal(gm_backing_nr_allocated(&b), N);
	gm_backing_fini(&b);
}

/* secretmem: punched pages are zeroed and reused before the pool grows. */
static void test_secretmem_reuse(void **state)
{
	KIND(state);
	struct gm_backing b;
	char *p, *q;

	init_ok(&b, kind, 4096);
	p = page_of(&b, 0, true);
	memset(p, 0x5a, PAGE);
	gm_backing_punch(&b, 0, 1);
	q = page_of(&b, 7, true);
	assert_ptr_equal(q, p);
	assert_true(page_is_zero(q));
	assert_int_equal(gm_backing_nr_allocated(&b), 1);
	gm_backing_fini(&b);
}

/* Child of test_secretmem_enomem: 0 pass, 77 cannot test, else failure. */
static int secretmem_enomem_child(void)
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	struct rlimit rl = { 3 << 20, 3 << 20 };
	struct gm_backing b;
	uint64_t n;
	int ret, err;

	/* Root bypasses RLIMIT_MEMLOCK through CAP_IPC_LOCK: drop it. */
	if (syscall(SYS_capget, &hdr, data))
		return 77;
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &hdr, data) || setrlimit(RLIMIT_MEMLOCK, &rl))
		return 77;
	if (gm_backing_init(&b, GM_BACKING_SECRETMEM, 4096))
		return 77;
	ret = gm_backing_allocate(&b, 0, 4096); /* 16 MiB of locked memory */
	n = gm_backing_nr_allocated(&b);
	if (ret == 0)
		return 77; /* this host does not charge secretmem to the limit */
	if (ret != -ENOMEM || n == 0 || n >= 4096) {
		fprintf(stderr, "allocate: %d (want %d), %llu pages\n", ret, -ENOMEM,
			(unsigned long long)n);
		return 1;
	}
	for (uint64_t i = 0; i < 4096; i++) {
		if ((gm_backing_page(&b, i, false, &err) != NULL) != (i < n)) {
			fprintf(stderr, "page %llu breaks the prefix of %llu\n",
				(unsigned long long)i, (unsigned long long)n);
			return 2;
		}
	}
	gm_backing_fini(&b);
	return 0;
}

/* ENOMEM part way: the pages before the failure stay allocated. */
static void test_secretmem_enomem(void **state)
{
	KIND(state);
	int status;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(secretmem_enomem_child());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		/* Not a failure of ours; meson's TAP counts "not ok # SKIP" as one. */
		print_message("# SKIP %s: cannot limit secretmem via RLIMIT_MEMLOCK here\n",
			      gm_backing_name(kind));
		return;
	}
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_kinds(void **state)
{
	struct gm_backing b;

	(void)state;
	assert_true(gm_backing_available(GM_BACKING_MEMFD));
	assert_false(gm_backing_available((enum gm_backing_kind)7));
	assert_int_equal(gm_backing_init(&b, (enum gm_backing_kind)7, 1), -EINVAL);
}

typedef void (*test_fn)(void **state);

static void add(struct CMUnitTest *t, size_t *n, const char *name, test_fn fn,
		enum gm_backing_kind *kind)
{
	t[(*n)++] = (struct CMUnitTest){ name, fn, NULL, NULL, kind };
}

#define BOTH(fn)                                                       \
	do {                                                           \
		add(tests, &n, #fn "/memfd", fn, &kind_memfd);         \
		if (secretmem)                                         \
			add(tests, &n, #fn "/secretmem", fn, &kind_secretmem); \
	} while (0)

/* Lines of /proc/self/maps: the process's number of mappings. */
static long nr_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	long n = 0;
	int c;

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/*
 * memfd: scattered pages of a large guest_memfd cost no host mapping each
 * (one per 2 MiB window used to: vm.max_map_count ended a guest at ~65,500
 * scattered windows), and teardown is one munmap.
 */
static void test_memfd_scattered_one_mapping(void **state)
{
	KIND(state);
	struct gm_backing b;
	uint64_t nr_pages = (64ULL << 30) >> 12, stride = (2ULL << 20) >> 12;
	long before;

	init_ok(&b, kind, nr_pages);
	before = nr_mappings();
	for (uint64_t i = 0; i < 3000; i++) {
		char *p = page_of(&b, (i * 7919 % (nr_pages / stride)) * stride + i % stride, true);

		assert_non_null(p);
		p[0] = 1;
	}
	assert_int_equal(gm_backing_nr_allocated(&b), 3000);
	assert_true(nr_mappings() <= before + 2);
	gm_backing_fini(&b);
}

int main(void)
{
	/* Cases that cannot run are left out, not skipped: meson's TAP parser
	 * counts cmocka's "not ok # SKIP" as a failure. */
	bool secretmem = gm_backing_available(GM_BACKING_SECRETMEM);
	struct CMUnitTest tests[32];
	size_t n = 0;

	add(tests, &n, "test_kinds", test_kinds, NULL);
	BOTH(test_sizes);
	BOTH(test_allocate_punch_data);
	BOTH(test_punch_clipped);
	BOTH(test_concurrent_first_use);
	BOTH(test_lookup_races_punch);
	BOTH(test_memfd_file);
	BOTH(test_blocked_signal);
	BOTH(test_eintr_no_rollback);
	add(tests, &n, "test_memfd_scattered_one_mapping", test_memfd_scattered_one_mapping,
	    &kind_memfd);
	if (secretmem) {
		add(tests, &n, "test_secretmem_reuse", test_secretmem_reuse, &kind_secretmem);
		add(tests, &n, "test_secretmem_enomem", test_secretmem_enomem, &kind_secretmem);
	} else {
		printf("# SKIP secretmem cases: the host refuses memfd_secret(2)\n");
	}
	/* memfd has no ENOMEM case: host tmpfs exhaustion cannot be induced safely. */
	return _cmocka_run_group_tests("test_backing", tests, n, NULL, NULL);
}
