/* SPDX-License-Identifier: MIT */
/*
 * What the eventfd/irqchip tests share (they run under tests/harness): the
 * ioctl wrappers and the eventfd_guest VM set-up.
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

#include "harness.h"
#include "../guests/eventfd_guest.h"

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
		DIAG("eventfd write failed: %s", strerror(errno));
}

/* A new eventfd (counter 0); the case ends if there is none. */
static inline int new_efd(void)
{
	int fd = eventfd(0, EFD_CLOEXEC);

	ASSERT_TRUE(fd >= 0);
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

/* KVM_IRQ_LINE_STATUS; returns the status (the ioctl must to work). */
static inline int line_status(int vm, uint32_t irq, uint32_t level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	ASSERT_TRUE(ioctl(vm, KVM_IRQ_LINE_STATUS, &l) == 0);
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
	ASSERT_TRUE(m->kvm >= 0);
	m->fd = ioctl(m->kvm, KVM_CREATE_VM, 0);
	ASSERT_TRUE(m->fd >= 0);
	if (irqchip)
		ASSERT_TRUE(ioctl(m->fd, KVM_CREATE_IRQCHIP, 0) == 0);
	m->ram = mmap(NULL, EG_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m->ram != MAP_FAILED);
	r.userspace_addr = (uint64_t)(uintptr_t)m->ram;
	ASSERT_TRUE(ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r) == 0);
	m->vcpu = ioctl(m->fd, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(m->vcpu >= 0);
	sz = ioctl(m->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	ASSERT_TRUE(sz >= (long)sizeof(struct kvm_run));
	m->run_size = (size_t)sz;
	m->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	ASSERT_TRUE(m->run != MAP_FAILED);
	ASSERT_TRUE(ioctl(m->vcpu, KVM_GET_REGS, &regs) == 0);
	regs.rdi = scenario;
	regs.rsi = a;
	regs.rdx = b;
	ASSERT_TRUE(ioctl(m->vcpu, KVM_SET_REGS, &regs) == 0);
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
