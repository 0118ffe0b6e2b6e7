/* SPDX-License-Identifier: MIT */
/*
 * A small TAP harness for the eventfd/irqchip tests: one function per case,
 * each run in a forked child with an alarm(), checks that print both values;
 * plus the ioctl wrappers and the eventfd_guest VM set-up they share.
 * Include after the system headers and tests/uapi/sysmap.h (the helpers
 * below then call guestmem_sys_* in the direct build).
 */
#ifndef GM_TESTS_TEST_EVENTFD_H
#define GM_TESTS_TEST_EVENTFD_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../guests/eventfd_guest.h"

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

/* main() of a program whose cases run tests/guests/eventfd_guest.c: skips without it. */
static inline int tap_main_guest(const char *prog, const struct tap_case *cases, int n,
				 unsigned timeout)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("# %s (%s)\n", prog, GM_MODE_NAME);
	if (!getenv("GUESTMEM_GUEST")) {
		printf("1..0 # SKIP GUESTMEM_GUEST is not set\n");
		return 0;
	}
	return tap_run(cases, n, timeout);
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

/* A new eventfd (counter 0); the case ends if there is none. */
static inline int new_efd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC);

	REQUIRE(fd >= 0);
	return fd;
}

/* KVM_IOEVENTFD with the struct's fields as arguments; the ioctl's return. */
static inline int ioev(int vm, uint64_t addr, uint32_t len, int fd, uint32_t flags, uint64_t dm)
{
	struct kvm_ioeventfd a = { .datamatch = dm, .addr = addr, .len = len, .fd = fd,
				   .flags = flags };

	return ioctl(vm, KVM_IOEVENTFD, &a);
}

/* KVM_IRQFD with the struct's fields as arguments; the ioctl's return. */
static inline int irqfd(int vm, int fd, uint32_t gsi, uint32_t flags, int resamplefd)
{
	struct kvm_irqfd a = { .fd = (uint32_t)fd, .gsi = gsi, .flags = flags,
			       .resamplefd = (uint32_t)resamplefd };

	return ioctl(vm, KVM_IRQFD, &a);
}

/* KVM_IRQ_LINE_STATUS; returns the status (REQUIREs the ioctl to work). */
static inline int line_status(int vm, uint32_t irq, uint32_t level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	REQUIRE(ioctl(vm, KVM_IRQ_LINE_STATUS, &l) == 0);
	return l.status;
}

static inline void on_sigusr1(int sig)
{
	(void)sig;
}

/* A no-op SIGUSR1 handler (not SIG_IGN): pthread_kill() then ends a KVM_RUN with EINTR. */
static inline void sigusr1_interrupts(void)
{
	struct sigaction sa = { .sa_handler = on_sigusr1 };

	sigaction(SIGUSR1, &sa, NULL);
}

/* A VM running tests/guests/eventfd_guest.c: one vCPU, EG_RAM_SIZE of RAM in slot 0. */
struct vm {
	int kvm, fd, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *ram;
};

/* Create it (with an irqchip if @irqchip); the guest's scenario in RDI, @a/@b in RSI/RDX. */
static inline void vm_setup(struct vm *m, bool irqchip, uint64_t scenario, uint64_t a, uint64_t b)
{
	struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = EG_RAM_GPA,
						   .memory_size = EG_RAM_SIZE };
	struct kvm_regs regs;
	long sz;

	m->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	REQUIRE(m->kvm >= 0);
	m->fd = ioctl(m->kvm, KVM_CREATE_VM, 0);
	REQUIRE(m->fd >= 0);
	if (irqchip)
		REQUIRE(ioctl(m->fd, KVM_CREATE_IRQCHIP, 0) == 0);
	m->ram = mmap(NULL, EG_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	REQUIRE(m->ram != MAP_FAILED);
	r.userspace_addr = (uint64_t)(uintptr_t)m->ram;
	REQUIRE(ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r) == 0);
	m->vcpu = ioctl(m->fd, KVM_CREATE_VCPU, 0);
	REQUIRE(m->vcpu >= 0);
	sz = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	REQUIRE(sz >= (long)sizeof(struct kvm_run));
	m->run_size = (size_t)sz;
	m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	REQUIRE(m->run != MAP_FAILED);
	REQUIRE(ioctl(m->vcpu, KVM_GET_REGS, &regs) == 0);
	regs.rdi = scenario;
	regs.rsi = a;
	regs.rdx = b;
	REQUIRE(ioctl(m->vcpu, KVM_SET_REGS, &regs) == 0);
}

/* Close everything: the VM is destroyed and its guest thread joined. */
static inline void vm_teardown(struct vm *m)
{
	munmap(m->run, m->run_size);
	close(m->vcpu);
	close(m->fd);
	close(m->kvm);
	munmap(m->ram, EG_RAM_SIZE);
}

#endif
