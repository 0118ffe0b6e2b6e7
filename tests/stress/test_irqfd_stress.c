// SPDX-License-Identifier: MIT
/*
 * test_irqfd_stress: irqfd and ioeventfd lifetimes under concurrency, for
 * ThreadSanitizer and ASan (spec kvm-vcpu-eventfd-spec.md §8.6-§8.7, §7.3):
 *
 *  - no interrupt is lost while another thread deassigns and reassigns the
 *    irqfd: a device thread signals, waits for the guest to count the
 *    interrupt (ping-pong), N times; the guest must count exactly N;
 *  - every doorbell is either signalled or exits, never both or neither,
 *    while another thread assigns and deassigns its ioeventfd;
 *  - VMs are destroyed while threads keep signalling their eventfds and the
 *    VMM closes its own fds: nothing leaks (fd count back to the start).
 *
 * Direct build (guestmem_sys_* through tests/uapi/sysmap.h) with the guest
 * tests/guests/eventfd_guest.c from GUESTMEM_GUEST.  TAP.
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include "../uapi/sysmap.h"
#include "../uapi/test_eventfd.h"

#define PINGS 2000
#define DOORBELLS 200000
#define DESTROY_ROUNDS 40

static uint64_t guest_count(struct vm *m)
{
	return __atomic_load_n((uint64_t *)(m->ram + (EG_CNT_GPA - EG_RAM_GPA)), __ATOMIC_RELAXED);
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ASSERT_TRUE(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* ---- no interrupt lost across deassign/reassign ------------------------------- */

struct ping {
	struct vm *m;
	int efd;
	pthread_t runner;
	bool done;	/* atomic */
	long lost;	/* signals whose interrupt never came */
	long churns;
};

static void *ping_device(void *arg)
{
	struct ping *p = arg;

	for (uint64_t i = 1; i <= PINGS; i++) {
		struct timespec t0, t;

		efd_signal(p->efd, 1);
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (guest_count(p->m) < i) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			if (t.tv_sec - t0.tv_sec > 5) {
				p->lost++;
				break;
			}
			sched_yield();
		}
	}
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	/* End the KVM_RUN loop: immediate_exit if it is between runs, else the signal. */
	__atomic_store_n(&p->m->run->immediate_exit, 1, __ATOMIC_RELAXED);
	pthread_kill(p->runner, SIGUSR1);
	return NULL;
}

static void *ping_churn(void *arg)
{
	struct ping *p = arg;

	while (!__atomic_load_n(&p->done, __ATOMIC_ACQUIRE)) {
		EXPECT_RET(irqfd(p->m->fd, p->efd, 5, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
		if (p->churns % 3 == 0)
			sched_yield(); /* let signals land while deassigned */
		EXPECT_RET(irqfd(p->m->fd, p->efd, 5, 0, 0), 0);
		p->churns++;
	}
	return NULL;
}

static void test_no_lost_interrupts(void)
{
	struct vm m;
	struct ping p = { .m = &m, .runner = pthread_self() };
	pthread_t dev, churn;

	sigusr1_interrupts();
	vm_setup(&m, true, EG_PINGPONG, 0, 0);
	p.efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_TRUE(p.efd >= 0);
	EXPECT_RET(irqfd(m.fd, p.efd, 5, 0, 0), 0);
	ASSERT_TRUE(ioctl(m.vcpu, KVM_RUN, 0) == 0 && m.run->exit_reason == KVM_EXIT_IO);
	ASSERT_TRUE(pthread_create(&dev, NULL, ping_device, &p) == 0);
	ASSERT_TRUE(pthread_create(&churn, NULL, ping_churn, &p) == 0);
	while (!__atomic_load_n(&p.done, __ATOMIC_ACQUIRE)) {
		int r = ioctl(m.vcpu, KVM_RUN, 0);

		/* Each exit reports one interrupt; EINTR is the end signal. */
		if (r && errno != EINTR)
			ASSERT_TRUE(!"KVM_RUN failed");
	}
	pthread_join(dev, NULL);
	pthread_join(churn, NULL);
	EXPECT_EQ(p.lost, 0);
	EXPECT_EQ(guest_count(&m), PINGS); /* one interrupt per signal */
	DIAG("%ld deassign/reassign pairs during %d signals", p.churns, PINGS);
	vm_teardown(&m);
	close(p.efd);
}

/* ---- doorbells: signalled xor exited ------------------------------------------ */

struct bell {
	struct vm *m;
	int efd;
	bool done;
	long churns;
};

static void *bell_churn(void *arg)
{
	struct bell *b = arg;

	while (!__atomic_load_n(&b->done, __ATOMIC_ACQUIRE)) {
		/* Sleep in both states: the guest must run during each of them. */
		EXPECT_RET(ioev(b->m->fd, EG_DOORBELL_GPA, 4, b->efd, 0, 0), 0);
		usleep(20);
		EXPECT_RET(ioev(b->m->fd, EG_DOORBELL_GPA, 4, b->efd, KVM_IOEVENTFD_FLAG_DEASSIGN, 0), 0);
		usleep(20);
		b->churns++;
	}
	return NULL;
}

static void test_doorbell_xor_exit(void)
{
	struct vm m;
	struct bell b = { .m = &m };
	long exits = 0;
	pthread_t t;

	vm_setup(&m, true, EG_DOORBELL_MMIO_EXIT, DOORBELLS, 0);
	b.efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_TRUE(b.efd >= 0);
	ASSERT_TRUE(pthread_create(&t, NULL, bell_churn, &b) == 0);
	for (;;) {
		ASSERT_TRUE(ioctl(m.vcpu, KVM_RUN, 0) == 0);
		if (m.run->exit_reason != KVM_EXIT_MMIO)
			break;
		EXPECT_EQ(m.run->mmio.phys_addr, EG_DOORBELL_GPA);
		exits++;
	}
	EXPECT_EQ(m.run->exit_reason, KVM_EXIT_IO); /* the guest's result */
	__atomic_store_n(&b.done, true, __ATOMIC_RELEASE);
	pthread_join(t, NULL);
	long signalled = (long)efd_take(b.efd);

	DIAG("%ld exits, %ld signalled, %ld assign/deassign pairs", exits, signalled,
	       b.churns);
	EXPECT_EQ(exits + signalled, DOORBELLS);
	/* The race was really run: both outcomes happened. */
	EXPECT_TRUE(exits > 0);
	EXPECT_TRUE(signalled > 0);
	vm_teardown(&m);
	close(b.efd);
}

/* ---- VM destruction while signalling ------------------------------------------ */

struct storm {
	int fds[4];
	bool done;
};

static void *storm_main(void *arg)
{
	struct storm *s = arg;
	uint64_t one = 1;

	while (!__atomic_load_n(&s->done, __ATOMIC_ACQUIRE))
		for (int i = 0; i < 4; i++)
			if (write(s->fds[i], &one, sizeof(one)) < 0)
				EXPECT_TRUE(!"eventfd write failed");
	return NULL;
}

static void test_destroy_while_signalling(void)
{
	struct storm s = { .done = false };
	int base;
	pthread_t t[2];

	for (int i = 0; i < 4; i++)
		s.fds[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	base = -1;
	for (int i = 0; i < 2; i++)
		ASSERT_TRUE(pthread_create(&t[i], NULL, storm_main, &s) == 0);
	for (int round = 0; round < DESTROY_ROUNDS; round++) {
		/* After round 0: the library's own long-lived fds exist by then. */
		if (round == 1)
			base = open_fds();
		int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC), vm;
		int mine = eventfd(0, EFD_CLOEXEC), r = eventfd(0, EFD_CLOEXEC);

		ASSERT_TRUE(kvm >= 0 && mine >= 0 && r >= 0);
		vm = ioctl(kvm, KVM_CREATE_VM, 0);
		ASSERT_TRUE(vm >= 0 && ioctl(vm, KVM_CREATE_IRQCHIP, 0) == 0);
		EXPECT_RET(irqfd(vm, s.fds[0], 4, 0, 0), 0);
		EXPECT_RET(irqfd(vm, s.fds[1], 10, KVM_IRQFD_FLAG_RESAMPLE, r), 0);
		EXPECT_RET(irqfd(vm, s.fds[2], 10, KVM_IRQFD_FLAG_RESAMPLE, r), 0);
		EXPECT_RET(irqfd(vm, mine, 11, 0, 0), 0);
		EXPECT_RET(ioev(vm, EG_DOORBELL_GPA, 0, s.fds[3], 0, 0), 0);
		efd_signal(mine, 1);
		close(mine); /* the VMM lets go of its fd; the irqfd stays */
		close(r);
		if (round % 2)
			EXPECT_RET(irqfd(vm, s.fds[1], 10, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
		usleep(round % 4 * 500);
		close(vm); /* destroyed while the storm goes on */
		close(kvm);
	}
	__atomic_store_n(&s.done, true, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	/*
	 * Every dup and watcher fd was closed: a leak would grow with the
	 * rounds.  Fewer is fine (the library may release an object late).
	 */
	EXPECT_WAIT(open_fds() <= base, 1000);
}

int main(int argc, char **argv)
{
	test_add_fn("no interrupt lost across deassign/reassign", test_no_lost_interrupts, 110);
	test_add_fn("doorbell signalled xor exited across (de)assign", test_doorbell_xor_exit, 110);
	test_add_fn("VM destruction while signalling", test_destroy_while_signalling, 110);
	if (!getenv("GUESTMEM_GUEST"))
		test_skip_all("GUESTMEM_GUEST is not set");
	return test_main(argc, argv);
}
