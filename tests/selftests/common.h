/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the ports of the KVM selftests (our own code, in the
 * spirit of tools/testing/selftests/kvm).
 *
 * - TAP harness: every sub-test runs in its own forked child with a timeout
 *   and prints "ok N - name", "not ok N - name" or "ok N - name # SKIP why".
 *   Each child creates its own VMs: a VM fd inherited across fork answers
 *   EIO (spec §3.2), exactly as with the kernel.
 * - Two levels of every call, as in the selftest library: __name() returns
 *   the raw result (for negative tests), name() asserts success.
 * - Assertions print both values and the errno name.
 *
 * Like the programs it serves, this compiles in "exec" mode (plain libc, run
 * under `guestmem exec --`) and with -DGM_DIRECT (sysmap.h maps the calls to
 * guestmem_sys_*).
 */
#ifndef GM_SELFTESTS_COMMON_H
#define GM_SELFTESTS_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "../uapi/sysmap.h"

#define PG_SIZE 4096UL
#define TEST_SKIP_EXIT 77 /* a child's "skipped" exit status */

/* ---- assertions ----------------------------------------------------------- */

static inline const char *errno_name(int e)
{
	const char *n = strerrorname_np(e);

	return n ? n : "E?";
}

__attribute__((format(printf, 4, 5), noreturn)) static inline void
test_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	printf("# %s:%d: assertion failed: %s\n# ", file, line, cond);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	_exit(1);
}

#define TEST_ASSERT(cond, ...)                                          \
	do {                                                            \
		if (!(cond))                                            \
			test_fail(__FILE__, __LINE__, #cond, __VA_ARGS__); \
	} while (0)

/* Both values are printed on failure. */
#define TEST_ASSERT_EQ(a, b)                                                   \
	do {                                                                   \
		long long a_ = (long long)(a), b_ = (long long)(b);            \
		TEST_ASSERT(a_ == b_, "%s = %lld (%#llx), %s = %lld (%#llx)", #a, \
			    a_, (unsigned long long)a_, #b, b_, (unsigned long long)b_); \
	} while (0)

/* @expr must fail with -1 and errno @err. */
#define TEST_ASSERT_ERRNO(expr, err)                                         \
	do {                                                                 \
		errno = 0;                                                   \
		long r_ = (long)(expr);                                      \
		int e_ = errno;                                              \
		TEST_ASSERT(r_ == -1 && e_ == (err),                         \
			    "%s returned %ld errno %s, expected -1 errno %s", \
			    #expr, r_, r_ < 0 ? errno_name(e_) : "-",         \
			    errno_name(err));                                \
	} while (0)

/* @expr must succeed (>= 0). */
#define TEST_ASSERT_OK(expr)                                                    \
	do {                                                                    \
		errno = 0;                                                      \
		long r_ = (long)(expr);                                         \
		int e_ = errno;                                                 \
		TEST_ASSERT(r_ >= 0, "%s returned %ld errno %s", #expr, r_,     \
			    errno_name(e_));                                    \
	} while (0)

/* Skip the current sub-test (in the child), with a reason for the TAP line. */
__attribute__((noreturn)) static inline void test_skip(const char *why)
{
	printf("# SKIP: %s\n", why);
	fflush(stdout);
	_exit(TEST_SKIP_EXIT);
}

/* ---- TAP harness ---------------------------------------------------------- */

struct tap_test {
	const char *name;
	void (*fn)(void *arg);
	unsigned timeout_s;
};

static int tap_count;
static int tap_failed;

/*
 * Run @fn(@arg) in a child; kill it after @timeout_s seconds.  Prints one
 * TAP result line.  Returns 0 for pass/skip, 1 for a failure.
 */
static inline int tap_run(const char *name, void (*fn)(void *), void *arg, unsigned timeout_s)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	long waited_ms = 0;
	int st = 0;
	pid_t pid, r;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		printf("not ok %d - %s # fork: %s\n", ++tap_count, name, errno_name(errno));
		return ++tap_failed, 1;
	}
	if (pid == 0) {
		fn(arg);
		fflush(stdout);
		_exit(0);
	}
	while ((r = waitpid(pid, &st, WNOHANG)) == 0 && waited_ms < (long)timeout_s * 1000) {
		nanosleep(&tick, NULL);
		waited_ms += 10;
	}
	if (r == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		printf("not ok %d - %s # timed out after %us\n", ++tap_count, name, timeout_s);
		return ++tap_failed, 1;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
		printf("ok %d - %s\n", ++tap_count, name);
		return 0;
	}
	if (WIFEXITED(st) && WEXITSTATUS(st) == TEST_SKIP_EXIT) {
		printf("ok %d - %s # SKIP\n", ++tap_count, name);
		return 0;
	}
	if (WIFSIGNALED(st))
		printf("not ok %d - %s # killed by SIG%s\n", ++tap_count, name,
		       sigabbrev_np(WTERMSIG(st)));
	else
		printf("not ok %d - %s # exit status %d\n", ++tap_count, name, WEXITSTATUS(st));
	return ++tap_failed, 1;
}

/* Print the plan (at the end, which TAP allows) and return the exit status. */
static inline int tap_finish(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

/* ---- ioctl wrappers --------------------------------------------------------- */

/* Compile-time check that the argument matches the ioctl's encoded size. */
#define kvm_ioctl(fd, cmd, arg)                                                  \
	({                                                                       \
		_Static_assert(sizeof(*(arg)) == _IOC_SIZE(cmd), "ioctl size");  \
		ioctl(fd, cmd, arg);                                             \
	})

static inline int kvm_open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	TEST_ASSERT(fd >= 0, "open /dev/kvm: %s", errno_name(errno));
	return fd;
}

/* KVM_CHECK_EXTENSION at system scope (0 if /dev/kvm cannot be opened). */
static inline long kvm_check_cap(long cap)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	long r;

	if (kvm < 0)
		return 0;
	r = ioctl(kvm, KVM_CHECK_EXTENSION, cap);
	close(kvm);
	return r;
}

static inline long vm_check_cap(int vm, long cap)
{
	long r = ioctl(vm, KVM_CHECK_EXTENSION, cap);

	TEST_ASSERT(r >= 0, "KVM_CHECK_EXTENSION(%ld): %s", cap, errno_name(errno));
	return r;
}

static inline int __vm_create(unsigned long type)
{
	int kvm = kvm_open(), vm;

	vm = ioctl(kvm, KVM_CREATE_VM, type);
	close(kvm);
	return vm;
}

static inline int vm_create(unsigned long type)
{
	int vm = __vm_create(type);

	TEST_ASSERT(vm >= 0, "KVM_CREATE_VM(%lu): %s", type, errno_name(errno));
	return vm;
}

static inline bool vm_type_supported(unsigned long type)
{
	return kvm_check_cap(KVM_CAP_VM_TYPES) & (1UL << type);
}

static inline int __vm_create_guest_memfd(int vm, uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd a = { .size = size, .flags = flags };

	return kvm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
}

static inline int vm_create_guest_memfd(int vm, uint64_t size, uint64_t flags)
{
	int fd = __vm_create_guest_memfd(vm, size, flags);

	TEST_ASSERT(fd >= 0, "KVM_CREATE_GUEST_MEMFD(size %#llx, flags %#llx): %s",
		    (unsigned long long)size, (unsigned long long)flags, errno_name(errno));
	return fd;
}

/* KVM_SET_USER_MEMORY_REGION (v1). */
static inline int __vm_set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				  uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static inline void vm_set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				 uint64_t size, void *hva)
{
	int r = __vm_set_region(vm, slot, flags, gpa, size, hva);

	TEST_ASSERT(r == 0, "SET_USER_MEMORY_REGION slot %u flags %#x gpa %#llx size %#llx: %s",
		    slot, flags, (unsigned long long)gpa, (unsigned long long)size,
		    errno_name(errno));
}

/* KVM_SET_USER_MEMORY_REGION2. */
static inline int __vm_set_region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				   uint64_t size, void *hva, int gmem_fd, uint64_t gmem_off)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
		.guest_memfd_offset = gmem_off, .guest_memfd = (uint32_t)gmem_fd,
	};

	return kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r);
}

static inline void vm_set_region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				  uint64_t size, void *hva, int gmem_fd, uint64_t gmem_off)
{
	int r = __vm_set_region2(vm, slot, flags, gpa, size, hva, gmem_fd, gmem_off);

	TEST_ASSERT(r == 0,
		    "SET_USER_MEMORY_REGION2 slot %u flags %#x gpa %#llx size %#llx off %#llx: %s",
		    slot, flags, (unsigned long long)gpa, (unsigned long long)size,
		    (unsigned long long)gmem_off, errno_name(errno));
}

/*
 * Read or write the byte at @p in a grandchild, so that an expected SIGBUS
 * kills only that process.  Returns the terminating signal, 0 if the access
 * completed.
 */
static inline int access_signal(volatile uint8_t *p, bool write)
{
	int st;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork: %s", errno_name(errno));
	if (pid == 0) {
		/* Sanitizer runtimes catch these; the test wants the plain signal. */
		signal(SIGBUS, SIG_DFL);
		signal(SIGSEGV, SIG_DFL);
		if (write)
			*p = 0xa5;
		else
			(void)*p;
		_exit(0);
	}
	TEST_ASSERT(waitpid(pid, &st, 0) == pid, "waitpid: %s", errno_name(errno));
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

#endif
