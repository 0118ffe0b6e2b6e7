/* SPDX-License-Identifier: MIT */
/*
 * vCPU file descriptors through <guestmem/sys.h> (spec
 * kvm-vcpu-eventfd-spec.md §1.1, §3, §4, §5.2, §5.7, §5.8, §6): the fd's
 * identity, mmap layout, ioctl error order, other-process EIO, KVM_RUN's
 * checks, sync regs, the signal mask, blocking of concurrent vCPU ioctls,
 * CPUID and MSR protocols.  The guest program is attached through the
 * library's internals (the fd API has no such call).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include "harness.h"
#include "vcpu_fixture.h"

#include <guestmem/guest.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "uapi/uapi.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

#define PAGE 4096

/*
 * test_other_process_eio forks a process that has threads (the fd
 * watcher); its child only makes one ioctl, which ThreadSanitizer allows.
 */
__attribute__((visibility("default"), used)) const char *__tsan_default_options(void)
{
	return "die_after_fork=0";
}

struct fx {
	struct vcpu_fixture f;
	int spin; /* relaxed: the spinning guest stops when set */
	int spinning; /* the guest counts its spins: it runs inside KVM_RUN */
};

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	vcpu_fixture_open(&x->f, 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	vcpu_fixture_close(&x->f);
	free(x);
	return 0;
}

/* -1 with @err, printing both on mismatch. */
#define assert_errno(expr, err)                 \
	do {                                    \
		errno = 0;                      \
		ASSERT_EQ((expr), -1);   \
		ASSERT_EQ(errno, (err)); \
	} while (0)

static void attach_guest(struct fx *x, guestmem_guest_fn fn)
{
	vcpu_fixture_set_guest(&x->f, fn, x);
}

/* ---- the fd -------------------------------------------------------------------- */

TEST_F(test_fd_identity, setup, teardown)
{
	struct fx *x = *state;
	char path[64], link[64];
	ssize_t n;
	int fd5;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", x->f.vcpu);
	n = guestmem_sys_readlink(path, link, sizeof(link) - 1);
	ASSERT_TRUE(n > 0);
	link[n] = '\0';
	ASSERT_STR_EQ(link, "anon_inode:kvm-vcpu:0");
	ASSERT_EQ(guestmem_sys_fcntl(x->f.vcpu, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(guestmem_sys_fcntl(x->f.vcpu, F_GETFL) & O_ACCMODE, O_RDWR);
	assert_errno(guestmem_sys_read(x->f.vcpu, link, 8), EINVAL);
	assert_errno(guestmem_sys_write(x->f.vcpu, link, 8), EINVAL);
	ASSERT_EQ(guestmem_sys_lseek(x->f.vcpu, 100, SEEK_SET), 0);
	/* The id is a u32: the upper half of the argument is dropped. */
	fd5 = guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, (1UL << 32) | 5);
	ASSERT_TRUE(fd5 >= 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd5);
	n = guestmem_sys_readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = '\0';
	ASSERT_STR_EQ(link, "anon_inode:kvm-vcpu:5");
	assert_errno(guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, 5), EEXIST);
	assert_errno(guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, 4096), EINVAL);
	guestmem_sys_close(fd5);
	/* Closing the fd does not free the id. */
	assert_errno(guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, 5), EEXIST);
}

/* Touch @p in a child; returns the signal that killed it (0: none). */
static int touch_signal(volatile uint8_t *p)
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		(void)*p;
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

/* VmLck of this process, in KiB. */
static long vm_locked_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

TEST_F(test_mmap_layout, setup, teardown)
{
	struct fx *x = *state;
	int v1 = guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, 1);
	uint8_t *m1, *ring, *beyond, *priv;

	ASSERT_EQ(guestmem_sys_ioctl(x->f.kvm, KVM_GET_VCPU_MMAP_SIZE, 0), 3 * PAGE);
	assert_errno(guestmem_sys_ioctl(x->f.vm, KVM_GET_VCPU_MMAP_SIZE, 0), ENOTTY);
	ASSERT_TRUE(v1 >= 0);
	m1 = guestmem_sys_mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, v1, 0);
	ASSERT_TRUE(m1 != MAP_FAILED);
	/* Page 2 is one page for the whole VM; pages 0 and 1 are per vCPU. */
	((uint8_t *)x->f.run)[2 * PAGE + 7] = 0x5a;
	ASSERT_EQ(m1[2 * PAGE + 7], 0x5a);
	((uint8_t *)x->f.run)[PAGE + 7] = 0x11;
	ASSERT_EQ(m1[PAGE + 7], 0);
	/* The ring alone, at its own offset. */
	ring = guestmem_sys_mmap(NULL, PAGE, PROT_READ, MAP_SHARED, v1, 2 * PAGE);
	ASSERT_TRUE(ring != MAP_FAILED);
	ASSERT_EQ(ring[7], 0x5a);
	/* Any offset maps; pages beyond the third SIGBUS when touched. */
	beyond = guestmem_sys_mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, x->f.vcpu, 3 * PAGE);
	ASSERT_TRUE(beyond != MAP_FAILED);
	ASSERT_EQ(touch_signal(beyond), SIGBUS);
	/* MAP_PRIVATE maps too (shared here, README). */
	priv = guestmem_sys_mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, x->f.vcpu, 0);
	ASSERT_TRUE(priv != MAP_FAILED);
	guestmem_sys_munmap(priv, PAGE);
	{
		struct rlimit old, none = { 0, 0 };

		/* MAP_LOCKED locks the pages and MAP_POPULATE makes them present
		 * (where this process may lock a page at all). */
		ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &old), 0);
		if (geteuid() == 0 || old.rlim_cur >= 2 * PAGE) {
			priv = guestmem_sys_mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
						 MAP_SHARED | MAP_LOCKED | MAP_POPULATE, x->f.vcpu,
						 0);
			ASSERT_TRUE(priv != MAP_FAILED);
			ASSERT_TRUE(vm_locked_kb() >= 4);
			guestmem_sys_munmap(priv, PAGE);
		}

		/* No right to lock at all (not root): EPERM. */
		if (geteuid() != 0) {
			none.rlim_max = old.rlim_max;
			ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &none), 0);
			ASSERT_TRUE(guestmem_sys_mmap(NULL, PAGE, PROT_READ, MAP_SHARED | MAP_LOCKED,
						      x->f.vcpu, 0) == MAP_FAILED);
			ASSERT_EQ(errno, EPERM);
			ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &old), 0);
		}
	}
	guestmem_sys_munmap(beyond, 2 * PAGE);
	guestmem_sys_munmap(ring, PAGE);
	guestmem_sys_munmap(m1, 3 * PAGE);
	guestmem_sys_close(v1);
}

TEST_F(test_ioctl_errors, setup, teardown)
{
	struct fx *x = *state;
	struct termios t;

	assert_errno(guestmem_sys_ioctl(x->f.vcpu, _IO(KVMIO, 0xff)), EINVAL);
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, TCGETS, &t), EINVAL); /* foreign type */
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 1), EINVAL);
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_REGS, (void *)8), EFAULT);
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_REGS, (void *)8), EFAULT);
	x->f.run->kvm_valid_regs = 8;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), EINVAL);
	x->f.run->kvm_valid_regs = 0;
	x->f.run->kvm_dirty_regs = 16;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), EINVAL);
	x->f.run->kvm_dirty_regs = 0;
	x->f.run->cr8 = 16; /* TPR is 4 bits without an in-kernel LAPIC */
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), EINVAL);
	x->f.run->cr8 = 0;
}

TEST_F(test_other_process_eio, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_regs regs;
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		errno = 0;
		int r = guestmem_sys_ioctl(x->f.vcpu, KVM_GET_REGS, &regs);

		_exit(r == -1 && errno == EIO ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* ---- KVM_RUN ------------------------------------------------------------------------ */

static void guest_report_rbx(struct guestmem_guest *g)
{
	for (;;)
		guestmem_guest_outl(g, 0x40, (uint32_t)guestmem_guest_regs(g)->rbx);
}

TEST_F(test_sync_regs, setup, teardown)
{
	struct fx *x = *state;
	uint32_t v;

	attach_guest(x, guest_report_rbx);
	x->f.run->s.regs.regs.rbx = 0x77;
	x->f.run->s.regs.regs.rflags = 0;
	x->f.run->kvm_dirty_regs = KVM_SYNC_X86_REGS;
	x->f.run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_IO);
	memcpy(&v, (uint8_t *)x->f.run + x->f.run->io.data_offset, 4);
	ASSERT_EQ(v, 0x77);
	ASSERT_EQ(x->f.run->kvm_dirty_regs, 0); /* consumed */
	/* Stored on the way out: RAX has the OUT's value; rflags bit 1 forced. */
	ASSERT_EQ(x->f.run->s.regs.regs.rax & 0xffffffff, 0x77);
	ASSERT_EQ(x->f.run->s.regs.regs.rflags, 2);
	ASSERT_EQ(x->f.run->s.regs.sregs.cs.selector, 0xf000);
	ASSERT_EQ(x->f.run->apic_base, 0xfee00900);
}

/* Computes (hypercalls: no exit, but stop points) until told, then OUTs. */
static void guest_spin(struct guestmem_guest *g)
{
	struct fx *x = guestmem_guest_opaque(g);

	for (;;) {
		while (!__atomic_load_n(&x->spin, __ATOMIC_ACQUIRE)) {
			__atomic_fetch_add(&x->spinning, 1, __ATOMIC_RELEASE);
			(void)guestmem_guest_hypercall(g, 0, 0, 0, 0, 0);
		}
		__atomic_store_n(&x->spin, 0, __ATOMIC_RELAXED);
		guestmem_guest_outb(g, 0x42, 1);
	}
}

struct thread_arg {
	struct fx *x;
	unsigned long cmd;
	int result;
	int done;
	pid_t tid; /* set before the ioctl */
};

static void *ioctl_thread(void *arg)
{
	struct thread_arg *a = arg;
	struct kvm_regs regs;

	__atomic_store_n(&a->tid, gettid(), __ATOMIC_RELEASE);
	a->result = guestmem_sys_ioctl(a->x->f.vcpu, a->cmd, a->cmd == KVM_RUN ? NULL : &regs);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
}

/* KVM_SET_SIGNAL_MASK: the mask in force during KVM_RUN only. */
TEST_F(test_signal_mask, setup, teardown)
{
	struct fx *x = *state;
	struct {
		struct kvm_signal_mask hdr;
		uint8_t set[8];
	} m = { { 8 }, { 0 } };
	struct sigaction sa = { .sa_handler = on_signal };
	sigset_t usr1, old;

	attach_guest(x, guest_spin);
	m.hdr.len = 4;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SIGNAL_MASK, &m), EINVAL);
	m.hdr.len = 8; /* an empty mask: everything unblocked while running */
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SIGNAL_MASK, &m), 0);
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &usr1, &old);
	pthread_kill(pthread_self(), SIGUSR1); /* pending: blocked outside KVM_RUN */
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), EINTR);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_INTR);
	/* NULL restores the caller's mask: the guest runs to its next exit. */
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SIGNAL_MASK, NULL), 0);
	pthread_kill(pthread_self(), SIGUSR1); /* pending again, but blocked */
	__atomic_store_n(&x->spin, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_IO);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	signal(SIGUSR1, SIG_DFL);
}

/* Another vCPU ioctl (or KVM_RUN) waits while KVM_RUN runs (spec §5.8). */
TEST_F(test_run_blocks_other_ioctls, setup, teardown)
{
	struct fx *x = *state;
	struct thread_arg run = { x, KVM_RUN, -2, 0, 0 }, regs = { x, KVM_GET_REGS, -2, 0, 0 };
	struct thread_arg run2 = { x, KVM_RUN, -2, 0, 0 };
	pthread_t t1, t2, t3;

	attach_guest(x, guest_spin);
	ASSERT_EQ(pthread_create(&t1, NULL, ioctl_thread, &run), 0);
	/* Wait until the guest spins, i.e. t1 is inside KVM_RUN (no timing guess). */
	ASSERT_WAIT(__atomic_load_n(&x->spinning, __ATOMIC_ACQUIRE) != 0, 10000);
	ASSERT_EQ(pthread_create(&t2, NULL, ioctl_thread, &regs), 0);
	ASSERT_EQ(pthread_create(&t3, NULL, ioctl_thread, &run2), 0);
	/* Both asleep (on vcpu->mutex) while the first KVM_RUN runs. */
	ASSERT_WAIT(__atomic_load_n(&regs.tid, __ATOMIC_ACQUIRE) &&
		    test_thread_blocked(regs.tid), 10000);
	ASSERT_WAIT(__atomic_load_n(&run2.tid, __ATOMIC_ACQUIRE) &&
		    test_thread_blocked(run2.tid), 10000);
	ASSERT_EQ(__atomic_load_n(&regs.done, __ATOMIC_ACQUIRE), 0);
	ASSERT_EQ(__atomic_load_n(&run2.done, __ATOMIC_ACQUIRE), 0);
	__atomic_store_n(&x->spin, 1, __ATOMIC_RELEASE); /* first run exits */
	pthread_join(t1, NULL);
	ASSERT_EQ(run.result, 0);
	/* Whichever waiter comes next, the second KVM_RUN must exit too. */
	__atomic_store_n(&x->spin, 1, __ATOMIC_RELEASE);
	pthread_join(t2, NULL);
	pthread_join(t3, NULL);
	ASSERT_EQ(regs.result, 0);
	ASSERT_EQ(run2.result, 0);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_IO);
}

/* ---- CPUID and MSRs ---------------------------------------------------------------------- */

TEST_F(test_cpuid, setup, teardown)
{
	struct fx *x = *state;
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[256];
	} c;
	bool kvm_leaf = false;

	memset(&c, 0, sizeof(c));
	c.hdr.nent = 0;
	assert_errno(guestmem_sys_ioctl(x->f.kvm, KVM_GET_SUPPORTED_CPUID, &c), E2BIG);
	c.hdr.nent = 1;
	assert_errno(guestmem_sys_ioctl(x->f.kvm, KVM_GET_SUPPORTED_CPUID, &c), E2BIG);
	c.hdr.nent = 256;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.kvm, KVM_GET_SUPPORTED_CPUID, &c), 0);
	ASSERT_TRUE(c.hdr.nent > 10 && c.hdr.nent < 100);
	for (uint32_t i = 0; i < c.hdr.nent; i++)
		kvm_leaf |= c.e[i].function == 0x40000000 && !memcmp(&c.e[i].ebx, "KVMK", 4);
	ASSERT_TRUE(kvm_leaf);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_CPUID2, &c), 0);
	c.hdr.nent = 1;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_CPUID2, &c), E2BIG);
	c.hdr.nent = 256;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_CPUID2, &c), 0);
	c.hdr.nent = 257;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_CPUID2, &c), E2BIG);
}

TEST_F(test_cpuid_frozen_after_run, setup, teardown)
{
	struct fx *x = *state;
	struct {
		struct kvm_cpuid2 hdr;
		struct kvm_cpuid_entry2 e[2];
	} c = { { 1 }, { { .function = 0, .eax = 0xd } } };

	attach_guest(x, guest_report_rbx);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_CPUID2, &c), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_CPUID2, &c), 0); /* identical */
	c.e[0].eax = 0xe;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_CPUID2, &c), EINVAL);
}

TEST_F(test_msr_index_list, setup, teardown)
{
	struct fx *x = *state;
	struct {
		struct kvm_msr_list hdr;
		uint32_t idx[256];
	} l = { { 0 } };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[2];
	} m = { { 2 }, { { .index = 0x174, .data = 0x10 }, { .index = 0x1b } } };

	assert_errno(guestmem_sys_ioctl(x->f.kvm, KVM_GET_MSR_INDEX_LIST, &l), E2BIG);
	ASSERT_TRUE(l.hdr.nmsrs > 10); /* written back before E2BIG */
	ASSERT_EQ(guestmem_sys_ioctl(x->f.kvm, KVM_GET_MSR_INDEX_LIST, &l), 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_MSRS, &m), 1 /* first only */ + 1);
	m.e[0].data = 0;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_MSRS, &m), 2);
	ASSERT_EQ(m.e[0].data, 0x10);
	m.hdr.nmsrs = 256;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_MSRS, &m), E2BIG);
}

TEST_F(test_sregs_and_mp_state, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_sregs s;
	struct kvm_mp_state mp = { 3 };

	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.cs.selector, 0xf000);
	ASSERT_EQ(s.cr0, 0x60000010);
	/* Long mode active without long-mode paging. */
	s.efer = 1 << 10;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SREGS, &s), EINVAL);
	/* A 64-bit set-up as the selftests make it. */
	s.efer = (1 << 8) | (1 << 10);
	s.cr0 = 0x80000011;
	s.cr4 = 1 << 5;
	s.cr3 = 0x100000;
	s.cs.l = 1;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SREGS, &s), 0);
	s.cr3 = 1ULL << 40; /* beyond the default 36-bit MAXPHYADDR */
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_SREGS, &s), EINVAL);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_GET_MP_STATE, &mp), 0);
	ASSERT_EQ(mp.mp_state, KVM_MP_STATE_RUNNABLE);
	mp.mp_state = 99;
	assert_errno(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_MP_STATE, &mp), EINVAL);
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_SET_MP_STATE, &mp), 0);
}

/* KVM_SET_BOOT_CPU_ID: before any vCPU only; the BSP flag follows it. */
TEST_F(test_boot_cpu_id, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_sregs sregs;
	int vm = guestmem_sys_ioctl(x->f.kvm, KVM_CREATE_VM, 0), v1, v0;

	ASSERT_TRUE(vm >= 0);
	assert_errno(guestmem_sys_ioctl(vm, KVM_SET_BOOT_CPU_ID, 4097), EINVAL);
	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_BOOT_CPU_ID, 1), 0);
	v1 = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 1);
	v0 = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(v1 >= 0 && v0 >= 0);
	assert_errno(guestmem_sys_ioctl(vm, KVM_SET_BOOT_CPU_ID, 0), EBUSY);
	ASSERT_EQ(guestmem_sys_ioctl(v1, KVM_GET_SREGS, &sregs), 0);
	ASSERT_EQ(sregs.apic_base & 0x100, 0x100);
	ASSERT_EQ(guestmem_sys_ioctl(v0, KVM_GET_SREGS, &sregs), 0);
	ASSERT_EQ(sregs.apic_base & 0x100, 0);
	guestmem_sys_close(v0);
	guestmem_sys_close(v1);
	guestmem_sys_close(vm);
}


int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
