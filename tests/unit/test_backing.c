/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd storage (src/core/backing*.c), run once per backing kind:
 * zero-filled allocation, punch frees and reads zero again, ascending
 * allocation without rollback (EINTR, ENOMEM), concurrent lookups racing
 * punch, and the per-kind extras (memfd file, secretmem free list).
 * secretmem cases report a TAP skip when the host refuses memfd_secret(2).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "harness.h"

#include "core/backing.h"
#include "lib/compiler.h"
#include "lib/reap.h"

#define PAGE GM_PAGE_SIZE

/* A case's backing: the kind, and for memfd whether the VMM may map it (linear). */
struct kind_arg {
	enum gm_backing_kind kind;
	bool mappable;
};
static struct kind_arg kind_memfd = { GM_BACKING_MEMFD, false };
static struct kind_arg kind_memfd_linear = { GM_BACKING_MEMFD, true };
static struct kind_arg kind_secretmem = { GM_BACKING_SECRETMEM, false };
/* What init_ok() and the cases' own inits pass (each case runs in a child). */
static bool cur_mappable;

/* The case's backing; a secretmem case skips (in the plan) if the host refuses it. */
#define KIND(arg)                                                       \
	enum gm_backing_kind kind = ((struct kind_arg *)(arg))->kind;   \
	cur_mappable = ((struct kind_arg *)(arg))->mappable;            \
	require_kind(kind)

static void require_kind(enum gm_backing_kind kind)
{
	if (!gm_backing_available(kind))
		SKIP("%s: the host refuses it (memfd_secret(2))", gm_backing_name(kind));
}

static void init_ok(struct gm_backing *b, enum gm_backing_kind kind, uint64_t nr_pages)
{
	ASSERT_EQ(gm_backing_init(b, kind, nr_pages, cur_mappable), 0);
	ASSERT_EQ(gm_backing_nr_allocated(b), 0);
}

static char *page_of(struct gm_backing *b, uint64_t index, bool alloc)
{
	int err = 12345;
	char *p = gm_backing_page(b, index, alloc, &err);

	if (p)
		ASSERT_EQ(err, 0);
	else
		ASSERT_EQ(err, 0); /* absent (!alloc); alloc failures are -ENOMEM */
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

static void test_sizes(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	uint64_t max_pages = (uint64_t)INT64_MAX >> 12; /* 2^63 - 4096 bytes */
	char *p;

	init_ok(&b, kind, 1);
	ASSERT_NULL(page_of(&b, 0, false));
	p = page_of(&b, 0, true);
	ASSERT_NOT_NULL(p);
	ASSERT_TRUE(page_is_zero(p));
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1);
	gm_backing_fini(&b);

	/* The largest guest_memfd: sparse, only the touched page costs memory. */
	init_ok(&b, kind, max_pages);
	p = page_of(&b, max_pages - 1, true);
	ASSERT_NOT_NULL(p);
	ASSERT_TRUE(page_is_zero(p));
	memset(p, 0xa5, PAGE);
	ASSERT_PTR_EQ(page_of(&b, max_pages - 1, false), p);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1);
	gm_backing_punch(&b, max_pages - 1, 1);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 0);
	ASSERT_NULL(page_of(&b, max_pages - 1, false));
	gm_backing_fini(&b);

	ASSERT_EQ(gm_backing_init(&b, kind, max_pages + 1, cur_mappable), -EINVAL);
}

static void test_allocate_punch_data(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	char *p;

	init_ok(&b, kind, 2048); /* 8 MiB: several 2 MiB windows */
	ASSERT_EQ(gm_backing_allocate(&b, 100, 1000), 0);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1000);
	ASSERT_NULL(page_of(&b, 99, false));
	ASSERT_NULL(page_of(&b, 1100, false));
	for (uint64_t i = 100; i < 1100; i++) {
		p = page_of(&b, i, false);
		ASSERT_NOT_NULL(p);
		ASSERT_TRUE(page_is_zero(p));
		memcpy(p, &i, sizeof(i));
	}
	/* Allocating present pages is a no-op that keeps their data. */
	ASSERT_EQ(gm_backing_allocate(&b, 0, 2048), 0);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 2048);
	for (uint64_t i = 100; i < 1100; i++)
		ASSERT_EQ(*(uint64_t *)page_of(&b, i, false), i);

	gm_backing_punch(&b, 500, 100);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1948);
	ASSERT_NULL(page_of(&b, 500, false));
	ASSERT_NULL(page_of(&b, 599, false));
	ASSERT_EQ(*(uint64_t *)page_of(&b, 499, false), 499);
	ASSERT_EQ(*(uint64_t *)page_of(&b, 600, false), 600);
	/* The next use of a punched page sees zeros. */
	p = page_of(&b, 550, true);
	ASSERT_NOT_NULL(p);
	ASSERT_TRUE(page_is_zero(p));
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1949);
	ASSERT_EQ(gm_backing_allocate(&b, 500, 100), 0);
	for (uint64_t i = 500; i < 600; i++)
		ASSERT_TRUE(page_is_zero(page_of(&b, i, false)));
	gm_backing_fini(&b);
}

static void test_punch_clipped(void *arg)
{
	KIND(arg);
	struct gm_backing b;

	init_ok(&b, kind, 64);
	ASSERT_EQ(gm_backing_allocate(&b, 0, 64), 0);
	*(uint64_t *)page_of(&b, 59, false) = 59;
	/* Beyond EOF: nothing happens; straddling EOF: clipped to it. */
	gm_backing_punch(&b, 64, 1ULL << 40);
	gm_backing_punch(&b, 1ULL << 50, 1);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 64);
	gm_backing_punch(&b, 60, UINT64_MAX / 2);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 60);
	ASSERT_EQ(*(uint64_t *)page_of(&b, 59, false), 59);
	ASSERT_NULL(page_of(&b, 63, false));
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
static void test_concurrent_first_use(void *arg)
{
	KIND(arg);
	enum { T = 4, N = 1024 };
	struct gm_backing b;
	struct same_page_arg args[T];
	pthread_t th[T];

	init_ok(&b, kind, N);
	for (int t = 0; t < T; t++) {
		args[t] = (struct same_page_arg){ &b, calloc(N, sizeof(char *)), N };
		ASSERT_NOT_NULL(args[t].addrs);
		ASSERT_EQ(pthread_create(&th[t], NULL, same_page_thread, &args[t]), 0);
	}
	for (int t = 0; t < T; t++)
		ASSERT_EQ(pthread_join(th[t], NULL), 0);
	for (uint64_t i = 0; i < N; i++) {
		ASSERT_NOT_NULL(args[0].addrs[i]);
		for (int t = 1; t < T; t++)
			ASSERT_PTR_EQ(args[t].addrs[i], args[0].addrs[i]);
	}
	ASSERT_EQ(gm_backing_nr_allocated(&b), N);
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
			FAIL("lookup failed: %d", err);
		__atomic_fetch_add(&a->lookups, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

/*
 * Fault-path lookups racing punch-hole (the fault path does not take the
 * invalidate lock).  Afterwards the bookkeeping must match the storage
 * exactly: every page that lookup reports present is counted, and no
 * other is.
 */
static void test_lookup_races_punch(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	struct race_arg args[2];
	pthread_t th[2];
	unsigned seed = 1;
	uint64_t present = 0;
	struct timespec t0, t;

	init_ok(&b, kind, 1024);
	for (int i = 0; i < 2; i++) {
		args[i] = (struct race_arg){ &b, 0, (unsigned)i + 7, 0 };
		ASSERT_EQ(pthread_create(&th[i], NULL, fault_thread, &args[i]), 0);
	}
	/* Both threads look up before the punching starts: on a loaded host a
	 * thread could otherwise start only after the 300 ms, and nothing
	 * would race. */
	for (int i = 0; i < 2; i++)
		ASSERT_WAIT(__atomic_load_n(&args[i].lookups, __ATOMIC_RELAXED) > 0, 10000);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		uint64_t start = (uint64_t)rand_r(&seed) % 1024;

		gm_backing_punch(&b, start, 1 + (uint64_t)rand_r(&seed) % 64);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 300000000L);
	for (int i = 0; i < 2; i++) {
		__atomic_store_n(&args[i].stop, 1, __ATOMIC_RELEASE);
		ASSERT_EQ(pthread_join(th[i], NULL), 0);
	}
	for (uint64_t i = 0; i < 1024; i++)
		present += page_of(&b, i, false) != NULL;
	ASSERT_EQ(gm_backing_nr_allocated(&b), present);
	/* And the allocator still fills every hole. */
	ASSERT_EQ(gm_backing_allocate(&b, 0, 1024), 0);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1024);
	gm_backing_fini(&b);
}

static void test_memfd_file(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	int fd;

	init_ok(&b, kind, 1024);
	fd = gm_backing_memfd(&b);
	if (kind == GM_BACKING_SECRETMEM || !cur_mappable) {
		/* Not for the VMM: secretmem, and a pool (offsets are not indices). */
		ASSERT_EQ(fd, -1);
	} else {
		/* The file a 6.18 MMAP guest_memfd maps: same pages, same data. */
		char *p = page_of(&b, 700, true), *m;

		ASSERT_TRUE(fd >= 0);
		m = mmap(NULL, 1024 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT_TRUE(m != MAP_FAILED);
		strcpy(p, "through the backing");
		ASSERT_STR_EQ(m + 700 * PAGE, "through the backing");
		strcpy(m + 3 * PAGE, "through the mapping");
		/* Present although guestmem did not allocate it. */
		ASSERT_STR_EQ(page_of(&b, 3, false), "through the mapping");
		gm_backing_punch(&b, 700, 1);
		ASSERT_EQ(m[700 * PAGE], 0);
		munmap(m, 1024 * PAGE);
	}
	gm_backing_fini(&b);
}

/* A pending signal the thread blocks does not interrupt (as in the kernel). */
static void test_blocked_signal(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	sigset_t set, old;
	struct timespec zero = { 0, 0 };

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
	ASSERT_EQ(raise(SIGUSR1), 0);
	init_ok(&b, kind, 2048);
	ASSERT_EQ(gm_backing_allocate(&b, 0, 2048), 0);
	ASSERT_EQ(gm_backing_nr_allocated(&b), 2048);
	ASSERT_EQ(sigtimedwait(&set, NULL, &zero), SIGUSR1);
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &old, NULL), 0);
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

	ASSERT_EQ(setitimer(ITIMER_REAL, &it, NULL), 0);
}

/* Check that exactly [0, n) is allocated: ascending order, no rollback. */
static void assert_prefix(struct gm_backing *b, uint64_t n, uint64_t total)
{
	for (uint64_t i = 0; i < total; i++) {
		if ((page_of(b, i, false) != NULL) != (i < n))
			FAIL("page %llu: present %d, expected prefix of %llu pages",
				 (unsigned long long)i, page_of(b, i, false) != NULL,
				 (unsigned long long)n);
	}
}

/*
 * A signal arriving during a long allocation stops it with EINTR, keeps
 * what was allocated, and its handler still runs.
 */
static void test_eintr_no_rollback(void *arg)
{
	KIND(arg);
	enum { N = 32768 }; /* 128 MiB */
	struct sigaction sa = { 0 }, old_sa;
	struct gm_backing b;
	uint64_t got = 0;
	int ret = 0;

	sa.sa_handler = on_alarm; /* no SA_RESTART */
	ASSERT_EQ(sigaction(SIGALRM, &sa, &old_sa), 0);
	for (int attempt = 0; attempt < 20 && !(ret == -EINTR && got > 0); attempt++) {
		int seen;

		init_ok(&b, kind, N);
		seen = __atomic_load_n(&alarms, __ATOMIC_RELAXED);
		set_timer(1000);
		ret = gm_backing_allocate(&b, 0, N);
		/* The interrupting signal was delivered on the way out. */
		if (ret == -EINTR)
			ASSERT_TRUE(__atomic_load_n(&alarms, __ATOMIC_RELAXED) > seen);
		set_timer(0);
		got = gm_backing_nr_allocated(&b);
		if (ret == -EINTR && got > 0)
			break;
		gm_backing_fini(&b);
	}
	ASSERT_EQ(sigaction(SIGALRM, &old_sa, NULL), 0);
	ASSERT_EQ(ret, -EINTR);
	ASSERT_TRUE(got > 0 && got < N);
	assert_prefix(&b, got, N);
	ASSERT_EQ(gm_backing_allocate(&b, 0, N), 0);
	ASSERT_EQ(gm_backing_nr_allocated(&b), N);
	gm_backing_fini(&b);
}

/* secretmem: punched pages are zeroed and reused before the pool grows. */
static void test_secretmem_reuse(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	char *p, *q;

	init_ok(&b, kind, 4096);
	p = page_of(&b, 0, true);
	memset(p, 0x5a, PAGE);
	gm_backing_punch(&b, 0, 1);
	q = page_of(&b, 7, true);
	ASSERT_PTR_EQ(q, p);
	ASSERT_TRUE(page_is_zero(q));
	ASSERT_EQ(gm_backing_nr_allocated(&b), 1);
	gm_backing_fini(&b);
}

/*
 * Run @child(@kind) in a process of its own (for process-wide limits) and
 * return its exit status; dying by a signal fails the case.
 */
static int in_child(int (*child)(enum gm_backing_kind), enum gm_backing_kind kind)
{
	int status;
	pid_t pid = fork();

	ASSERT_TRUE(pid >= 0);
	if (pid == 0)
		_exit(child(kind));
	ASSERT_EQ(waitpid(pid, &status, 0), pid);
	ASSERT_FALSE(WIFSIGNALED(status));
	ASSERT_TRUE(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Child of test_secretmem_enomem: 0 pass, 77 cannot test, else failure. */
static int secretmem_enomem_child(enum gm_backing_kind kind)
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
	if (gm_backing_init(&b, kind, 4096, cur_mappable))
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
static void test_secretmem_enomem(void *arg)
{
	KIND(arg);
	int status = in_child(secretmem_enomem_child, kind);

	if (status == 77)
		SKIP("%s: cannot limit secretmem via RLIMIT_MEMLOCK here", gm_backing_name(kind));
	ASSERT_EQ(status, 0);
}

/*
 * Child of test_fsize_limit: 0 pass, else failure.  SIGXFSZ keeps its
 * default action, so a leaked one kills the child.
 */
static int fsize_limit_child(enum gm_backing_kind kind)
{
	struct rlimit rl = { 1 << 20, 1 << 20 };
	struct gm_backing b;
	sigset_t mask;
	int ret;

	signal(SIGXFSZ, SIG_DFL);
	if (setrlimit(RLIMIT_FSIZE, &rl))
		return 1;
	/* Over the limit: the host refuses the size (the kernel would not). */
	ret = gm_backing_init(&b, kind, (4 << 20) / PAGE, cur_mappable);
	if (ret != -ENOMEM) {
		fprintf(stderr, "init over RLIMIT_FSIZE: %d (want %d)\n", ret, -ENOMEM);
		return 2;
	}
	if (pthread_sigmask(SIG_SETMASK, NULL, &mask) || sigismember(&mask, SIGXFSZ))
		return 3;
	/* Within it: the whole file works. */
	if (gm_backing_init(&b, kind, (1 << 20) / PAGE, cur_mappable))
		return 4;
	ret = gm_backing_allocate(&b, 0, (1 << 20) / PAGE);
	gm_backing_fini(&b);
	return ret ? 5 : 0;
}

/* The VMM's RLIMIT_FSIZE never raises SIGXFSZ from our own files. */
static void test_fsize_limit(void *arg)
{
	KIND(arg);

	ASSERT_EQ(in_child(fsize_limit_child, kind), 0);
}

TEST(test_kinds)
{
	struct gm_backing b;

	ASSERT_TRUE(gm_backing_available(GM_BACKING_MEMFD));
	ASSERT_FALSE(gm_backing_available((enum gm_backing_kind)7));
	ASSERT_EQ(gm_backing_init(&b, (enum gm_backing_kind)7, 1, false), -EINVAL);
}

/* Every case in the plan for every kind; require_kind() skips what the host lacks. */
#define BOTH(fn)                                                         \
	do {                                                             \
		test_add(#fn "/memfd", fn, &kind_memfd, 0);              \
		test_add(#fn "/memfd-linear", fn, &kind_memfd_linear, 0); \
		test_add(#fn "/secretmem", fn, &kind_secretmem, 0);      \
	} while (0)

/*
 * Mappings of guest_memfd backing files in /proc/self/maps.  Only those:
 * a sanitizer's runtime maps shadow memory of its own as the test runs.
 */
static long nr_mappings(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long n = 0;

	ASSERT_NOT_NULL(f);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "/memfd:guestmem-gmem") != NULL;
	fclose(f);
	return n;
}

/*
 * memfd: scattered pages of a large guest_memfd cost no host mapping each
 * (one per 2 MiB window used to: vm.max_map_count ended a guest at ~65,500
 * scattered windows), and teardown is one munmap.
 */
static void test_memfd_scattered_one_mapping(void *arg)
{
	KIND(arg);
	struct gm_backing b;
	uint64_t nr_pages = (64ULL << 30) >> 12, stride = (2ULL << 20) >> 12;
	long before;

	init_ok(&b, kind, nr_pages);
	before = nr_mappings();
	for (uint64_t i = 0; i < 3000; i++) {
		char *p = page_of(&b, (i * 7919 % (nr_pages / stride)) * stride + i % stride, true);

		ASSERT_NOT_NULL(p);
		p[0] = 1;
	}
	ASSERT_EQ(gm_backing_nr_allocated(&b), 3000);
	ASSERT_LE(nr_mappings(), before + 2);
	gm_backing_fini(&b);
}

static long long rss_shmem_kb(void)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	ASSERT_NOT_NULL(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "RssShmem:", 9))
			v = strtoll(line + 9, NULL, 10);
	fclose(f);
	return v;
}

/* Descriptors of guest_memfd backing files in this process. */
static int nr_backing_fds(void)
{
	char path[64], target[256];
	int n = 0;

	for (int fd = 0; fd < 1024; fd++) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0)
			continue;
		target[len] = '\0';
		n += strstr(target, "guestmem-gmem") != NULL;
	}
	return n;
}

/*
 * memfd: a large backing's file goes back to the host on the reaper
 * thread (fini does not wait for it); gm_reap_wait() sees it gone.  Its
 * descriptor is closed by fini itself: a VMM may reuse the number at once.
 */
static void test_memfd_large_release(void *arg)
{
	KIND(arg);
	uint64_t nr = (GM_REAP_MIN_BYTES >> 12) + 512;
	struct gm_backing b;
	long long before = rss_shmem_kb();
	char *p;

	init_ok(&b, kind, nr);
	ASSERT_EQ(gm_backing_allocate(&b, 0, nr), 0);
	for (uint64_t i = 0; i < nr; i += 512) {
		p = page_of(&b, i, false);
		ASSERT_NOT_NULL(p);
		p[0] = 1; /* mapped in this process, so RssShmem sees it */
	}
	ASSERT_GE(rss_shmem_kb() - before, (long long)(nr / 512 * 4));
	ASSERT_EQ(nr_backing_fds(), 1);
	gm_backing_fini(&b);
	ASSERT_EQ(nr_backing_fds(), 0);
	gm_reap_wait();
	ASSERT_LE(rss_shmem_kb() - before, 1024);
}

/*
 * Random allocations, lookups and punches against a model: every present
 * page keeps its own data, absent pages are absent, two present pages never
 * share memory, and the count is exact (the memfd pool's window map goes
 * through its single, small, dense and shrunk forms on the way).
 */
static void test_model(void *arg)
{
	KIND(arg);
	enum { NR = 8 * 512, OPS = 20000 };
	static char *addr[NR];
	struct gm_backing b;
	uint64_t present = 0, seed = 12345;

	init_ok(&b, kind, NR);
	memset(addr, 0, sizeof(addr));
	for (int op = 0; op < OPS; op++) {
		uint64_t r, i, n;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		r = seed >> 33;
		/* Mostly one window, so that windows fill up and empty again. */
		i = (r % 4 ? 512 * (op / 2500 % 8) + r / 8 % 512 : r / 8 % NR);
		switch (r % 7) {
		case 0:
		case 1:
		case 2: { /* a fault's allocation */
			char *p = page_of(&b, i, true);

			ASSERT_NOT_NULL(p);
			if (!addr[i]) {
				ASSERT_TRUE(page_is_zero(p));
				memcpy(p, &i, sizeof(i));
				addr[i] = p;
				present++;
			}
			ASSERT_PTR_EQ(p, addr[i]);
			break;
		}
		case 3: /* fallocate of a range */
			n = GM_MIN(r / 64 % 40 + 1, NR - i);
			ASSERT_EQ(gm_backing_allocate(&b, i, n), 0);
			for (uint64_t j = i; j < i + n; j++) {
				char *p = page_of(&b, j, false);

				ASSERT_NOT_NULL(p);
				if (!addr[j]) {
					ASSERT_TRUE(page_is_zero(p));
					memcpy(p, &j, sizeof(j));
					addr[j] = p;
					present++;
				}
				ASSERT_PTR_EQ(p, addr[j]);
			}
			break;
		case 4:
		case 5: /* punch */
			n = r % 5 ? r / 64 % 8 + 1 : r / 64 % 600 + 1;
			gm_backing_punch(&b, i, n);
			for (uint64_t j = i; j < GM_MIN(i + n, (uint64_t)NR); j++) {
				present -= addr[j] != NULL;
				addr[j] = NULL;
			}
			break;
		default: /* look */
			if (addr[i]) {
				ASSERT_PTR_EQ(page_of(&b, i, false), addr[i]);
				ASSERT_EQ(*(uint64_t *)addr[i], i);
			} else {
				ASSERT_NULL(page_of(&b, i, false));
			}
		}
		ASSERT_EQ(gm_backing_nr_allocated(&b), present);
	}
	for (uint64_t i = 0; i < NR; i++) {
		if (!addr[i]) {
			ASSERT_NULL(page_of(&b, i, false));
			continue;
		}
		ASSERT_PTR_EQ(page_of(&b, i, false), addr[i]);
		ASSERT_EQ(*(uint64_t *)addr[i], i);
	}
	gm_backing_fini(&b);
}

/* ---- held storage (gm_backing_init_held) -------------------------------- */

/*
 * A holder in this process, standing for the guest process: it keeps the
 * file (a memfd of its own, which the test may look into) and records
 * what the backing asked of it.
 */
struct fake_holder {
	int fd;
	uint64_t size, file_id;
	int creates, drops, fallocates, zeroes;
	int fail_create;
	int fail_multi; /* an errno for every fallocate of more than a page */
	int fail_zero;	/* what every zero request returns, if not 0 */
};

static int fake_create(void *ctx, enum gm_backing_kind kind, uint64_t size, uint64_t file_id,
		       uint32_t *id)
{
	struct fake_holder *h = ctx;

	if (h->fail_create)
		return h->fail_create;
	h->fd = kind == GM_BACKING_SECRETMEM ? (int)syscall(447 /* memfd_secret */, O_CLOEXEC)
					     : memfd_create("fake-holder", MFD_CLOEXEC);
	if (h->fd < 0 || ftruncate(h->fd, (off_t)size))
		return -errno;
	h->size = size;
	h->file_id = file_id;
	h->creates++;
	*id = 7;
	return 0;
}

static int fake_fallocate(void *ctx, uint32_t id, int mode, uint64_t off, uint64_t len)
{
	struct fake_holder *h = ctx;

	ASSERT_EQ(id, 7);
	h->fallocates++;
	if (h->fail_multi && !(mode & FALLOC_FL_PUNCH_HOLE) && len > PAGE)
		return -h->fail_multi;
	return fallocate(h->fd, mode, (off_t)off, (off_t)len) ? -errno : 0;
}

static int fake_zero(void *ctx, uint32_t id, uint64_t off, uint64_t len)
{
	struct fake_holder *h = ctx;
	void *p;

	ASSERT_EQ(id, 7);
	h->zeroes++;
	if (h->fail_zero)
		return h->fail_zero;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, (off_t)off);
	if (p == MAP_FAILED)
		return -errno;
	memset(p, 0, len);
	munmap(p, len);
	return 0;
}

/* One byte of the holder's file (secretmem: through a mapping, as the guest). */
static int fake_byte(struct fake_holder *h, uint64_t off, int set)
{
	char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, h->fd, (off_t)off);
	int v;

	ASSERT_TRUE(p != MAP_FAILED);
	if (set >= 0)
		*p = (char)set;
	v = *p;
	munmap(p, PAGE);
	return v;
}

static void fake_drop(void *ctx, uint32_t id)
{
	struct fake_holder *h = ctx;

	ASSERT_EQ(id, 7);
	h->drops++;
	close(h->fd);
	h->fd = -1;
}

static long fake_blocks(struct fake_holder *h)
{
	struct stat st;

	ASSERT_EQ(fstat(h->fd, &st), 0);
	return (long)st.st_blocks * 512 / PAGE;
}

/*
 * Held storage: the holder has the file and does every fallocate; this
 * process has no descriptor or mapping of it, page addresses name pages
 * but are not accessible, file_page() gives fd -1 and the slot's offset.
 */
TEST(held_storage)
{
	struct fake_holder h = { .fd = -1 };
	struct gm_backing_holder ops = { fake_create, fake_fallocate, fake_zero, fake_drop, &h };
	struct gm_backing b;
	uint64_t off, off2;
	int fd, err, fds = nr_backing_fds();
	long maps = nr_mappings();
	char *p;

	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, 4096, &ops, 99), 0);
	EXPECT_EQ(h.creates, 1);
	EXPECT_EQ(h.size, 4096 * PAGE);
	EXPECT_EQ(h.file_id, 99);
	EXPECT_EQ(nr_backing_fds(), fds);
	EXPECT_EQ(nr_mappings(), maps);
	/* a fault: allocated by the holder (with slots ahead), an address that is only a name */
	p = gm_backing_page(&b, 1000, true, &err);
	ASSERT_TRUE(p != NULL);
	EXPECT_EQ(err, 0);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 1);
	EXPECT_EQ(fake_blocks(&h), 16);
	EXPECT_EQ(mincore(p, PAGE, (unsigned char[1]){ 0 }), 0); /* reserved */
	EXPECT_EQ(madvise(p, PAGE, MADV_POPULATE_READ), -1);	/* PROT_NONE: EFAULT */
	ASSERT_EQ(gm_backing_file_page(&b, 1000, &fd, &off), 0);
	EXPECT_EQ(fd, -1);
	/* an fallocate of the guest_memfd: the same file, contiguous slots */
	ASSERT_EQ(gm_backing_allocate(&b, 2000, 16), 0);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 17);
	EXPECT_EQ(fake_blocks(&h), 16 + 32); /* 15 were ahead; 32 more ahead */
	ASSERT_EQ(gm_backing_file_page(&b, 2001, &fd, &off2), 0);
	EXPECT_NE(off2, off);
	/* what the holder's file holds at that offset is what the guest sees */
	ASSERT_EQ(pwrite(h.fd, "x", 1, (off_t)off2), 1);
	gm_backing_punch(&b, 2000, 16);
	EXPECT_EQ(fake_blocks(&h), 16 + 32 - 16);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 1);
	EXPECT_EQ(gm_backing_file_page(&b, 2001, &fd, &off2), -ENOENT);
	EXPECT_TRUE(h.fallocates >= 3);
	gm_backing_fini(&b);
	EXPECT_EQ(h.drops, 1);
	EXPECT_EQ(nr_mappings(), maps);
	/* a holder that cannot create the file: its errno, nothing left */
	h.fail_create = -EIO;
	EXPECT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, 16, &ops, 1), -EIO);
	h.fail_create = -EFBIG; /* RLIMIT_FSIZE there: the kernel's ENOMEM */
	EXPECT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, 16, &ops, 1), -ENOMEM);
	EXPECT_EQ(h.drops, 1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Held memfd: small allocations take slots the holder allocated ahead, so
 * page-by-page allocation costs a round trip per run of 16, 32, ... up to
 * 512 pages, never more than a window (2 MiB) ahead; the pages are zero
 * and distinct; where the holder cannot allocate ahead (ENOSPC), each
 * allocation is exact, as without the reserve.
 */
TEST(held_storage_reserve)
{
	struct fake_holder h = { .fd = -1 };
	struct gm_backing_holder ops = { fake_create, fake_fallocate, fake_zero, fake_drop, &h };
	const uint64_t n = 3000, pages = 8192;
	struct gm_backing b;
	uint64_t *offs = calloc(n, sizeof(*offs));
	int fd;

	ASSERT_TRUE(offs != NULL);
	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, pages, &ops, 3), 0);
	for (uint64_t i = 0; i < n; i++) {
		uint64_t idx = (i * 2654435761u) % pages;

		ASSERT_EQ(gm_backing_allocate(&b, idx, 1), 0);
		ASSERT_EQ(gm_backing_file_page(&b, idx, &fd, &offs[i]), 0);
		EXPECT_TRUE(fake_blocks(&h) - (long)(i + 1) <= 512);
	}
	EXPECT_EQ(gm_backing_nr_allocated(&b), n);
	/* 16 + 32 + 64 + 128 + 256 = 496, then 512 each: 5 + ceil(2504 / 512) */
	EXPECT_EQ(h.fallocates, 5 + 5);
	qsort(offs, n, sizeof(*offs), cmp_u64);
	for (uint64_t i = 0; i < n; i++) {
		EXPECT_TRUE(i == 0 || offs[i] != offs[i - 1]);
		if (i % 97 == 0)
			EXPECT_EQ(fake_byte(&h, offs[i], -1), 0);
	}
	gm_backing_fini(&b);
	EXPECT_EQ(h.drops, 1);

	/* No slot ahead to be had: one exact allocation each, as before. */
	h = (struct fake_holder){ .fd = -1, .fail_multi = ENOSPC };
	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, pages, &ops, 3), 0);
	for (uint64_t i = 0; i < 40; i++) {
		ASSERT_EQ(gm_backing_allocate(&b, i * 7, 1), 0);
		EXPECT_EQ(fake_blocks(&h), (long)i + 1);
	}
	/* a run the holder refuses whole is allocated page by page */
	EXPECT_EQ(gm_backing_allocate(&b, 1000, 4), 0);
	EXPECT_EQ(fake_blocks(&h), 44);
	gm_backing_fini(&b);

	/* Near the file's end the reserve is what is left of it. */
	h = (struct fake_holder){ .fd = -1 };
	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_MEMFD, 20, &ops, 3), 0);
	for (uint64_t i = 0; i < 20; i++)
		ASSERT_EQ(gm_backing_allocate(&b, 19 - i, 1), 0);
	EXPECT_EQ(fake_blocks(&h), 20);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 20);
	gm_backing_fini(&b);
	free(offs);
}

/*
 * Held secretmem: the holder's file only; fresh pages are allocated by the
 * holder (zeroed there: secretmem has no fallocate) a run ahead of their
 * first use, 16 pages, then 32, ...; a punched one is zeroed by the holder,
 * one request per run, and is reused.
 */
TEST(held_storage_secretmem)
{
	struct fake_holder h = { .fd = -1 };
	struct gm_backing_holder ops = { fake_create, fake_fallocate, fake_zero, fake_drop, &h };
	struct gm_backing b;
	uint64_t off, off2;
	long maps = nr_mappings();
	int fd, err;

	if (!gm_backing_available(GM_BACKING_SECRETMEM))
		SKIP("no memfd_secret on this host");
	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_SECRETMEM, 1024, &ops, 5), 0);
	EXPECT_EQ(h.creates, 1);
	EXPECT_EQ(h.file_id, 5);
	ASSERT_TRUE(gm_backing_page(&b, 10, true, &err) != NULL);
	EXPECT_EQ(h.zeroes, 1); /* allocated in the holder, 16 pages at once */
	ASSERT_EQ(gm_backing_allocate(&b, 100, 8), 0);
	EXPECT_EQ(h.zeroes, 1);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 9);
	EXPECT_EQ(nr_mappings(), maps);
	ASSERT_EQ(gm_backing_file_page(&b, 103, &fd, &off), 0);
	EXPECT_EQ(fd, -1);
	EXPECT_EQ(fake_byte(&h, off, 'x'), 'x'); /* the guest writes */
	gm_backing_punch(&b, 100, 8);
	EXPECT_EQ(h.zeroes, 2); /* the 8 slots are one run */
	EXPECT_EQ(gm_backing_nr_allocated(&b), 1);
	EXPECT_EQ(fake_byte(&h, off, -1), 0);
	/* reused (the 8 punched slots, of which 103's is 4th), and zero */
	ASSERT_EQ(gm_backing_allocate(&b, 500, 8), 0);
	for (uint64_t i = 500; i < 508; i++) {
		ASSERT_EQ(gm_backing_file_page(&b, i, &fd, &off2), 0);
		EXPECT_TRUE(off2 + 3 * PAGE >= off && off2 <= off + 4 * PAGE);
		EXPECT_EQ(fake_byte(&h, off2, -1), 0);
	}
	EXPECT_EQ(h.fallocates, 0);
	/* 7 more fresh pages come from the run, then a run of 32 */
	ASSERT_EQ(gm_backing_allocate(&b, 600, 8), 0);
	EXPECT_EQ(h.zeroes, 3);
	gm_backing_fini(&b);
	EXPECT_EQ(h.drops, 1);
	EXPECT_EQ(nr_mappings(), maps);

	/* A holder that cannot allocate: its errno, nothing allocated */
	h = (struct fake_holder){ .fd = -1, .fail_zero = -ENOMEM };
	ASSERT_EQ(gm_backing_init_held(&b, GM_BACKING_SECRETMEM, 64, &ops, 5), 0);
	EXPECT_EQ(gm_backing_allocate(&b, 0, 1), -ENOMEM);
	EXPECT_EQ(gm_backing_nr_allocated(&b), 0);
	gm_backing_fini(&b);
}

int main(int argc, char **argv)
{
	BOTH(test_sizes);
	BOTH(test_allocate_punch_data);
	BOTH(test_punch_clipped);
	BOTH(test_concurrent_first_use);
	BOTH(test_lookup_races_punch);
	BOTH(test_memfd_file);
	BOTH(test_blocked_signal);
	BOTH(test_eintr_no_rollback);
	test_add("test_memfd_scattered_one_mapping/memfd", test_memfd_scattered_one_mapping,
		 &kind_memfd, 0);
	test_add("test_memfd_scattered_one_mapping/memfd-linear", test_memfd_scattered_one_mapping,
		 &kind_memfd_linear, 0);
	BOTH(test_model);
	test_add("test_memfd_large_release/memfd", test_memfd_large_release, &kind_memfd, 0);
	test_add("test_memfd_large_release/memfd-linear", test_memfd_large_release,
		 &kind_memfd_linear, 0);
	BOTH(test_fsize_limit);
	test_add("test_secretmem_reuse", test_secretmem_reuse, &kind_secretmem, 0);
	test_add("test_secretmem_enomem", test_secretmem_enomem, &kind_secretmem, 0);
	/* memfd has no ENOMEM case: host tmpfs exhaustion cannot be induced safely. */
	return test_main(argc, argv);
}
