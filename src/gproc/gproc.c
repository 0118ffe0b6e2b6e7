/* SPDX-License-Identifier: MIT */
/*
 * The guest process, VMM side (gproc.h).  Control requests go over a
 * SOCK_SEQPACKET socket, one at a time under vm->ctl_lock; vCPU runs go
 * through each vCPU's shared mailbox (gproc_abi.h) with a futex towards the
 * stub and an eventfd back.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>

#include "gproc/gproc.h"
#include "gproc/spawn.h"
#include "gproc/spawner.h"
#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/scm.h"
#include "lib/sys_raw.h"
#include "lib/worker.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct gp_vm {
	/* Pairs each control request with its answer and guards slot_used;
	 * a leaf: nothing else is taken under it (docs/locking.md). */
	pthread_mutex_t ctl_lock;
	int ctl;    /* our end of the control socket */
	int pidfd;  /* the process, to kill and reap it: in the library's own
		     * table (lib/worker.h) if own_table, else ours */
	int link;   /* the spawner's child (remote): its close ends the
		     * process; -1 for our own child.  With pidfd. */
	bool own_table;
	pid_t pid;
	bool cpuid_faulting;
	bool tsc_faulting;
	unsigned nr_vcpus;                  /* under ctl_lock */
	unsigned char slot_used[GP_MAX_VCPUS]; /* under ctl_lock */
};

struct gp_vcpu {
	struct gp_vm *vm;
	struct gp_mbox *mb; /* shared with the stub's vCPU thread */
	unsigned slot;
	pid_t tid;
	int evfd;           /* written by the stub when it posts and we sleep */
	/* What the vCPU thread was last asked to arm (the mailbox's copy is
	 * the guest's to scribble on); zero: nothing, as a new thread starts. */
	struct gp_hwbp hwbp[GP_NR_HWBP];
};

/* ---- control requests -------------------------------------------------------- */

static int ctl_call_locked(struct gp_vm *vm, const struct gp_req *q, const int *fds, int nfds,
			   struct gp_resp *out)
{
	struct iovec iov = { (void *)q, sizeof(*q) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;
	struct gp_resp a;
	ssize_t r;

	lockdep_assert_held(&vm->ctl_lock);
	gm_scm_attach(&mh, &cbuf, fds, (unsigned)nfds);
	do
		r = GM_RAW_SYSCALL(SYS_sendmsg, vm->ctl, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(*q))
		return r < 0 && errno == EBADF ? -EBADF : -EIO;
	do
		r = gm_raw_read(vm->ctl, &a, sizeof(a));
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(a))
		return -EIO;
	if (out)
		*out = a;
	return a.ret;
}

static int ctl_call(struct gp_vm *vm, const struct gp_req *q, const int *fds, int nfds,
		    struct gp_resp *out)
{
	int r;

	gm_mutex_lock(&vm->ctl_lock, GM_LOCK_GPROC_CTL);
	r = ctl_call_locked(vm, q, fds, nfds, out);
	gm_mutex_unlock(&vm->ctl_lock);
	return r;
}

static int ctl_request(struct gp_vm *vm, const struct gp_req *q, const int *fds, int nfds)
{
	return ctl_call(vm, q, fds, nfds, NULL);
}

static bool range_ok(uint64_t gva, uint64_t len)
{
	return gp_guest_range_ok(gva, len);
}

/* ---- the process ----------------------------------------------------------- */

/*
 * On the library's own-table worker: the process's pidfd (for the kill
 * and the reap only; death shows as the control socket's hang-up) and,
 * for the spawner's children, the link, both out of the VMM's table.
 */
struct keep_args {
	pid_t pid;
	int tid;      /* the caller's thread, whose table holds link */
	int link;     /* -1: none; replaced by the copy made here */
	unsigned long link_ino;
};

static long keep_here(void *arg)
{
	struct keep_args *k = arg;
	int fd = (int)syscall(SYS_pidfd_open, k->pid, 0);

	if (fd < 0)
		return -errno;
	if (k->link >= 0) {
		int copy = gm_fd_adopt(k->tid, k->link, k->link_ino);

		if (copy < 0) {
			gm_raw_close(fd);
			return copy;
		}
		k->link = copy;
	}
	return fd;
}

/*
 * Put the pidfd (@pidfd, or one opened for the pid if -1) and @link in
 * the library's own table; kept in the VMM's, marked, if that worker
 * cannot run (a fork child's first call starts one; see lib/worker.h).
 */
static int keep(struct gp_vm *vm, int pidfd, int link)
{
	struct keep_args k = { .pid = vm->pid, .tid = (int)syscall(SYS_gettid), .link = link };
	struct stat st;
	long r = -EBADF;

	if (link < 0 || !gm_raw_fstat(link, &st)) {
		k.link_ino = link < 0 ? 0 : (unsigned long)st.st_ino;
		r = gm_worker_call(&gm_own_table, keep_here, &k);
	}
	vm->own_table = r >= 0;
	if (r >= 0) {
		if (pidfd >= 0)
			gm_raw_close(pidfd);
		if (link >= 0)
			gm_raw_close(link);
		vm->pidfd = (int)r;
		vm->link = k.link;
		return 0;
	}
	if (pidfd < 0)
		pidfd = (int)syscall(SYS_pidfd_open, vm->pid, 0);
	if (pidfd < 0)
		return -errno;
	vm->pidfd = gm_fd_own(pidfd);
	vm->link = gm_fd_own(link);
	return 0;
}

/* The VMM's own child: exit signal 0, so nobody else reaps it, and the
 * pid is the child's until we do. */
static int spawn_here(struct gp_vm *vm, unsigned flags)
{
	int sv[2], pidfd, e;
	long pid;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	pid = gp_spawn_stub(sv[1], flags, NULL, getpid(), &pidfd);
	gm_raw_close(sv[1]);
	if (pid < 0) {
		gm_raw_close(sv[0]);
		return (int)pid;
	}
	vm->ctl = gm_fd_own(sv[0]);
	vm->pid = (pid_t)pid;
	/* Cannot fail: with a pidfd in hand it is kept here at worst. */
	e = keep(vm, pidfd, -1);
	gm_assert(!e);
	return e;
}

/*
 * The spawner's child (spawner.h): it stays the spawner's zombie until
 * the link closes, so the pid is the child's while we hold the link.
 */
static int spawn_remote(struct gp_vm *vm, int door, unsigned flags)
{
	int sv[2], link = -1, e;
	long pid;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	pid = gp_spawner_request(door, sv[1], flags, &link);
	gm_raw_close(sv[1]);
	if (pid < 0) {
		gm_raw_close(sv[0]);
		return (int)pid;
	}
	vm->ctl = gm_fd_own(sv[0]);
	vm->pid = (pid_t)pid;
	e = keep(vm, -1, link);
	if (e) {
		gm_raw_close(link); /* the spawner ends it */
		gm_fd_close(vm->ctl);
	}
	return e;
}

static int spawn(struct gp_vm *vm, unsigned flags, int door)
{
	return door >= 0 ? spawn_remote(vm, door, flags) : spawn_here(vm, flags);
}

/*
 * Kill the process if asked and reap it (on the table that holds the
 * pidfd).  The spawner's child is not ours to reap: closing the link has
 * the spawner kill and reap it; it may be another user's, which we cannot
 * signal.  Either way the pidfd turns readable once it exited.
 */
struct reap_args {
	int pidfd, link;
	bool kill, own_table;
};

static void link_close(const struct reap_args *r)
{
	if (r->own_table)
		gm_raw_close(r->link);
	else
		gm_fd_close(r->link);
}

static long reap_here(void *arg)
{
	const struct reap_args *r = arg;
	struct pollfd p = { .fd = r->pidfd, .events = POLLIN };
	siginfo_t si;

	if (r->link >= 0) {
		/* Ours too if it is our user's: the spawner may be gone. */
		if (r->kill) {
			syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0);
			link_close(r);
		}
		while (poll(&p, 1, -1) < 0 && errno == EINTR)
			;
		if (!r->kill)
			link_close(r);
		return 0;
	}
	if (r->kill)
		syscall(SYS_pidfd_send_signal, r->pidfd, SIGKILL, NULL, 0);
	while (syscall(SYS_waitid, P_PIDFD, r->pidfd, &si, WEXITED | __WALL, NULL) < 0 &&
	       errno == EINTR)
		;
	return 0;
}

static long reap_close_here(void *arg)
{
	reap_here(arg);
	return gm_raw_close(((const struct reap_args *)arg)->pidfd);
}

/*
 * End the process: EOF on its control socket makes the stub exit; the
 * socket hangs up once it has (events 0: HUP only), then it is killed if
 * it did not within 5 s, reaped, and the socket closed.
 */
static void reap(struct gp_vm *vm)
{
	struct pollfd p = { .fd = vm->ctl, .events = 0 };
	struct reap_args r = { vm->pidfd, vm->link, false, vm->own_table };

	gm_raw_shutdown(vm->ctl, SHUT_WR);
	r.kill = poll(&p, 1, 5000) <= 0;
	gm_fd_close(vm->ctl);
	if (vm->own_table) {
		gm_worker_call(&gm_own_table, reap_close_here, &r);
	} else {
		reap_here(&r);
		gm_fd_close(vm->pidfd);
	}
}

int gp_vm_create(struct gp_vm **out)
{
	return gp_vm_create_flags(out, 0);
}

int gp_vm_create_flags(struct gp_vm **out, unsigned flags)
{
	bool strict;
	int door = gp_spawner_door(&strict), r;

	if (door < -1 && strict)
		return -EIO; /* --user asked; the spawner's door is gone */
	r = gp_vm_create_door(out, flags, door < 0 ? -1 : door);
	/* The spawner is gone (killed: it is the VMM's user's without
	 * --user): start it here, unless --user asked for its user. */
	if (r == -EIO && door >= 0 && !strict)
		r = gp_vm_create_door(out, flags, -1);
	return r;
}

int gp_vm_create_door(struct gp_vm **out, unsigned flags, int door)
{
	struct gp_vm *vm = calloc(1, sizeof(*vm));
	struct gp_hello hello;
	ssize_t r;
	int e;

	if (!vm)
		return -ENOMEM;
	gm_check_pthread(pthread_mutex_init(&vm->ctl_lock, NULL));
	if (flags & ~(GP_VM_NO_CPUID_FAULT | GP_VM_NO_TSC_FAULT | GP_VM_DUMPABLE)) {
		e = -EINVAL;
		goto fail_free;
	}
	e = spawn(vm, flags, door);
	if (e)
		goto fail_free;
	do
		r = gm_raw_read(vm->ctl, &hello, sizeof(hello));
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(hello) || hello.magic != GP_HELLO_MAGIC) {
		e = -EIO;
		goto fail_proc;
	}
	vm->cpuid_faulting = hello.cpuid_faulting;
	vm->tsc_faulting = hello.tsc_faulting;
	*out = vm;
	return 0;
fail_proc:
	reap(vm);
fail_free:
	pthread_mutex_destroy(&vm->ctl_lock);
	free(vm);
	return e;
}

void gp_vm_destroy(struct gp_vm *vm)
{
	if (!vm)
		return;
	gm_assert(vm->nr_vcpus == 0);
	reap(vm);
	pthread_mutex_destroy(&vm->ctl_lock);
	free(vm);
}

int gp_vm_pid(const struct gp_vm *vm)
{
	return vm->pid;
}

bool gp_cpuid_faulting(struct gp_vm *vm)
{
	return vm->cpuid_faulting;
}

bool gp_tsc_faulting(struct gp_vm *vm)
{
	return vm->tsc_faulting;
}

int gp_vm_add_backing(struct gp_vm *vm, int fd, uint32_t *id)
{
	struct gp_req q = { .op = GP_OP_ADD_BACKING };
	int r;

	if (fd < 0)
		return -EBADF;
	r = ctl_request(vm, &q, &fd, 1);
	if (r < 0)
		return r;
	*id = (uint32_t)r;
	return 0;
}

int gp_vm_remove_backing(struct gp_vm *vm, uint32_t id)
{
	struct gp_req q = { .op = GP_OP_REMOVE_BACKING, .arg = id };

	return ctl_request(vm, &q, NULL, 0);
}

int gp_vm_zero(struct gp_vm *vm, uint32_t id, uint64_t off, uint64_t len)
{
	struct gp_req q = { .op = GP_OP_ZERO, .arg = id, .gva = off, .len = len };

	return ctl_request(vm, &q, NULL, 0);
}

static bool access_ok(uint64_t off, unsigned len)
{
	return len && len <= GP_ACCESS_MAX && (off & 4095) + len <= 4096;
}

int gp_vm_access(struct gp_vm *vm, uint32_t id, uint64_t off, void *buf, unsigned len, bool write)
{
	struct gp_req q = { .op = GP_OP_ACCESS, .arg = id, .gva = off, .len = len,
			    .prot = write ? GP_ACC_WRITE : GP_ACC_READ };
	struct gp_resp a;
	int r;

	if (!access_ok(off, len))
		return -EINVAL;
	if (write)
		memcpy(q.data, buf, len);
	r = ctl_call(vm, &q, NULL, 0, &a);
	if (!r && !write)
		memcpy(buf, a.data, len);
	return r;
}

int gp_vm_cmpxchg(struct gp_vm *vm, uint32_t id, uint64_t off, unsigned size, uint64_t *old,
		  uint64_t new_val)
{
	struct gp_req q = { .op = GP_OP_ACCESS, .arg = id, .gva = off, .len = size,
			    .prot = GP_ACC_CMPXCHG, .data = { *old, new_val } };
	struct gp_resp a;
	int r;

	if (!access_ok(off, size) || (size != 4 && size != 8) || off % size)
		return -EINVAL;
	r = ctl_call(vm, &q, NULL, 0, &a);
	if (r >= 0)
		*old = a.data[0];
	return r;
}

int gp_vm_create_backing(struct gp_vm *vm, uint32_t kind, uint64_t size, uint32_t *id)
{
	struct gp_req q = { .op = GP_OP_CREATE_BACKING, .arg = kind, .len = size };
	int r = ctl_request(vm, &q, NULL, 0);

	if (r < 0)
		return r;
	*id = (uint32_t)r;
	return 0;
}

int gp_vm_fallocate(struct gp_vm *vm, uint32_t id, int mode, uint64_t off, uint64_t len)
{
	struct gp_req q = { .op = GP_OP_FALLOCATE, .arg = id, .gva = off, .len = len,
			    .prot = mode };

	return ctl_request(vm, &q, NULL, 0);
}

int gp_vm_unmap(struct gp_vm *vm, uint64_t gva, uint64_t len)
{
	struct gp_req q = { .op = GP_OP_UNMAP, .gva = gva, .len = len };

	if (!range_ok(gva, len))
		return -EINVAL;
	return ctl_request(vm, &q, NULL, 0);
}

int gp_vm_protect(struct gp_vm *vm, uint64_t gva, uint64_t len, int prot)
{
	struct gp_req q = { .op = GP_OP_PROTECT, .gva = gva, .len = len, .prot = prot };

	if (!range_ok(gva, len) || (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)))
		return -EINVAL;
	return ctl_request(vm, &q, NULL, 0);
}

/* ---- the mailbox --------------------------------------------------------------- */

/* Gone: its end of the control socket closed (events 0: HUP only). */
static bool proc_dead(struct gp_vm *vm)
{
	struct pollfd p = { .fd = vm->ctl, .events = 0 };

	return poll(&p, 1, 0) > 0;
}

static void drain(int evfd)
{
	uint64_t cnt;

	(void)!gm_raw_read(evfd, &cnt, sizeof(cnt)); /* non-blocking */
}

/* Hand the mailbox to the stub.  Release: pairs with its acquire load. */
static void mbox_send(struct gp_mbox *mb, uint32_t cmd)
{
	mb->cmd = cmd;
	__atomic_store_n(&mb->state, GP_MB_GUEST, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &mb->state, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/*
 * Whether the stub posted.  Acquire: pairs with its store of POSTED.  With
 * @arm, announce a sleep first (Dekker with the stub's post_and_wait()).
 * The eventfd is drained before arming, not after a post: the stub may
 * write it after we saw POSTED (it read waiter_sleeping set by an earlier
 * arm), and a count left behind would make every later ppoll() return at
 * once.  So the count always belongs to the current wait, or is at most
 * one spurious wake-up.
 */
static bool mbox_posted(struct gp_vcpu *v, bool arm)
{
	struct gp_mbox *mb = v->mb;

	if (__atomic_load_n(&mb->state, __ATOMIC_ACQUIRE) == GP_MB_POSTED)
		goto posted;
	if (!arm)
		return false;
	drain(v->evfd);
	__atomic_store_n(&mb->waiter_sleeping, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&mb->state, __ATOMIC_SEQ_CST) != GP_MB_POSTED)
		return false;
posted:
	__atomic_store_n(&mb->waiter_sleeping, 0, __ATOMIC_RELAXED);
	return true;
}

/* Block until the stub posts, ignoring signals.  0 or -EIO. */
static int mbox_wait(struct gp_vcpu *v)
{
	struct pollfd pfd[GP_NR_POLLFDS];

	gp_vcpu_pollfds(v, pfd);
	while (!mbox_posted(v, true)) {
		if (proc_dead(v->vm))
			return -EIO;
		poll(pfd, GP_NR_POLLFDS, -1);
	}
	return 0;
}

void gp_vcpu_pollfds(struct gp_vcpu *v, struct pollfd pfd[GP_NR_POLLFDS])
{
	pfd[0] = (struct pollfd){ .fd = v->evfd, .events = POLLIN };
	pfd[1] = (struct pollfd){ .fd = v->vm->ctl, .events = 0 }; /* HUP: it died */
}

/* ---- vCPUs ------------------------------------------------------------------------ */

static int vcpu_slot_get(struct gp_vm *vm)
{
	lockdep_assert_held(&vm->ctl_lock);
	for (unsigned i = 0; i < GP_MAX_VCPUS; i++) {
		if (!vm->slot_used[i]) {
			vm->slot_used[i] = 1;
			vm->nr_vcpus++;
			return (int)i;
		}
	}
	return -ENOSPC;
}

static void vcpu_slot_put(struct gp_vm *vm, unsigned slot)
{
	gm_mutex_lock(&vm->ctl_lock, GM_LOCK_GPROC_CTL);
	vm->slot_used[slot] = 0;
	vm->nr_vcpus--;
	gm_mutex_unlock(&vm->ctl_lock);
}

static int vcpu_mailbox(struct gp_vcpu *v, int *memfd)
{
	void *p;

	*memfd = gm_raw_memfd_create("guestmem-gproc-vcpu", MFD_CLOEXEC);
	if (*memfd < 0)
		return -errno;
	if (gm_raw_ftruncate(*memfd, GP_MBOX_SIZE))
		return -errno;
	p = gm_raw_mmap(NULL, GP_MBOX_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, *memfd, 0);
	if (p == MAP_FAILED)
		return -errno;
	v->mb = p;
	v->evfd = gm_fd_own(gm_raw_eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
	return v->evfd < 0 ? -errno : 0;
}

int gp_vcpu_create(struct gp_vm *vm, struct gp_vcpu **out)
{
	struct gp_vcpu *v = calloc(1, sizeof(*v));
	struct gp_req q = { .op = GP_OP_VCPU_CREATE };
	int memfd = -1, r, slot, fds[2];

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->evfd = -1;
	r = vcpu_mailbox(v, &memfd);
	if (r)
		goto fail;
	fds[0] = memfd;
	fds[1] = v->evfd;
	gm_mutex_lock(&vm->ctl_lock, GM_LOCK_GPROC_CTL);
	slot = vcpu_slot_get(vm);
	if (slot >= 0) {
		q.arg = (uint32_t)slot;
		r = ctl_call_locked(vm, &q, fds, 2, NULL);
		if (r < 0) {
			vm->slot_used[slot] = 0;
			vm->nr_vcpus--;
		}
	} else {
		r = slot;
	}
	gm_mutex_unlock(&vm->ctl_lock);
	if (r < 0)
		goto fail;
	v->slot = (unsigned)slot;
	v->tid = r;
	gm_raw_close(memfd);
	memfd = -1;
	/* The thread's first entry posts its start-up state (and XSAVE image). */
	r = mbox_wait(v);
	if (r) {
		vcpu_slot_put(vm, v->slot);
		goto fail;
	}
	*out = v;
	return 0;
fail:
	if (memfd >= 0)
		gm_raw_close(memfd);
	gm_fd_close(v->evfd);
	if (v->mb)
		gm_raw_munmap(v->mb, GP_MBOX_SIZE);
	free(v);
	return r;
}

void gp_vcpu_destroy(struct gp_vcpu *v)
{
	struct gp_req q = { .op = GP_OP_VCPU_REAP };

	if (!v)
		return;
	if (!mbox_posted(v, false)) {
		gp_vcpu_kick(v);
		mbox_wait(v);
	}
	if (!proc_dead(v->vm)) {
		mbox_send(v->mb, GP_CMD_EXIT);
		q.arg = v->slot;
		ctl_request(v->vm, &q, NULL, 0);
	}
	vcpu_slot_put(v->vm, v->slot);
	gm_raw_munmap(v->mb, GP_MBOX_SIZE);
	gm_fd_close(v->evfd);
	free(v);
}

int gp_vcpu_tid(const struct gp_vcpu *v)
{
	return v->tid;
}

static bool canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

int gp_vcpu_enter(struct gp_vcpu *v, const struct gp_cpu *cpu, const struct gp_map *maps,
		  unsigned nr_maps)
{
	struct gp_mbox *mb = v->mb;
	int r;

	if (!gp_guest_va_ok(cpu->rip) || !canonical(cpu->fs_base) ||
	    !canonical(cpu->gs_base) || cpu->mode > GP_MODE_32)
		return -EINVAL;
	if (cpu->mode == GP_MODE_32 &&
	    (cpu->rip > UINT32_MAX || cpu->fs_base > UINT32_MAX || cpu->gs_base > UINT32_MAX))
		return -EINVAL;
	if (__atomic_load_n(&mb->state, __ATOMIC_ACQUIRE) != GP_MB_POSTED)
		return proc_dead(v->vm) ? -EIO : -EBUSY;
	/* Every chunk but the last: maps only, answered at once. */
	while (nr_maps > GP_MBOX_MAPS) {
		memcpy(mb->maps, maps, GP_MBOX_MAPS * sizeof(*maps));
		mb->nr_maps = GP_MBOX_MAPS;
		mbox_send(mb, GP_CMD_MAPS);
		r = mbox_wait(v);
		if (!r)
			r = mb->err;
		if (r)
			return r;
		maps += GP_MBOX_MAPS;
		nr_maps -= GP_MBOX_MAPS;
	}
	if (nr_maps)
		memcpy(mb->maps, maps, nr_maps * sizeof(*maps));
	mb->nr_maps = nr_maps;
	mb->cpu = *cpu;
	mbox_send(mb, GP_CMD_RUN);
	return 0;
}

int gp_vcpu_finish(struct gp_vcpu *v, struct gp_cpu *cpu, struct gp_trap *trap)
{
	struct gp_mbox *mb = v->mb;

	if (!mbox_posted(v, true))
		return proc_dead(v->vm) ? -EIO : -EAGAIN;
	if (mb->err) {
		int32_t err = READ_ONCE(mb->err);

		memset(trap, 0, sizeof(*trap));
		trap->kind = GP_TRAP_OTHER;
		/* The mailbox is writable by guest code: never trust it further
		 * than "some errno". */
		return err < 0 && err > -4096 ? err : -EIO;
	}
	mb->xsave_in = 0; /* loaded into the guest by this run */
	*cpu = mb->cpu;
	*trap = mb->trap;
	return 0;
}

int gp_vcpu_run(struct gp_vcpu *v, struct gp_cpu *cpu, const struct gp_map *maps,
		unsigned nr_maps, struct gp_trap *trap)
{
	struct pollfd pfd[GP_NR_POLLFDS];
	int r = gp_vcpu_enter(v, cpu, maps, nr_maps);

	if (r) {
		memset(trap, 0, sizeof(*trap));
		trap->kind = GP_TRAP_OTHER;
		return r;
	}
	gp_vcpu_pollfds(v, pfd);
	while ((r = gp_vcpu_finish(v, cpu, trap)) == -EAGAIN)
		poll(pfd, GP_NR_POLLFDS, -1);
	return r;
}

void gp_vcpu_kick(struct gp_vcpu *v)
{
	int saved = errno;

	/* seq_cst pair with the stub's exchange of kick_req after it sees
	 * GUEST: either it consumes the request or we see GUEST and signal. */
	__atomic_store_n(&v->mb->kick_req, 1, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&v->mb->state, __ATOMIC_SEQ_CST) == GP_MB_GUEST)
		syscall(SYS_tgkill, v->vm->pid, v->tid, GP_SIG_KICK);
	errno = saved;
}

int gp_vcpu_set_hwbp(struct gp_vcpu *v, const struct gp_hwbp bp[GP_NR_HWBP])
{
	struct gp_mbox *mb = v->mb;

	if (!mbox_posted(v, false))
		return -EBUSY;
	for (unsigned i = 0; i < GP_NR_HWBP; i++) {
		uint32_t len = bp[i].len;

		if (bp[i].type > GP_HWBP_RW ||
		    (bp[i].type > GP_HWBP_X &&
		     ((len != 1 && len != 2 && len != 4 && len != 8) || (bp[i].addr & (len - 1)))))
			return -EINVAL;
	}
	if (!memcmp(v->hwbp, bp, sizeof(v->hwbp)))
		return 0;
	memcpy(v->hwbp, bp, sizeof(v->hwbp));
	memcpy(mb->hwbp, bp, sizeof(mb->hwbp));
	mb->hwbp_in = 1; /* the stub clears it once armed */
	return 0;
}

/* ---- XSAVE ------------------------------------------------------------------------ */

#define XSAVE_HDR 512
#define XSAVE_MIN (XSAVE_HDR + 64)

/* The image's size, bounded by the mailbox (the guest can write it). */
static size_t xsave_len(struct gp_vcpu *v)
{
	return GM_MIN((size_t)READ_ONCE(v->mb->xsave_len), (size_t)GP_XSAVE_MAX);
}

size_t gp_vcpu_xsave_size(struct gp_vcpu *v)
{
	return xsave_len(v);
}

int gp_vcpu_get_xsave(struct gp_vcpu *v, void *buf, size_t len)
{
	size_t n;

	if (!mbox_posted(v, false))
		return -EBUSY;
	n = GM_MIN(len, xsave_len(v));
	memcpy(buf, v->mb->xsave, n);
	memset((char *)buf + n, 0, len - n);
	return 0;
}

int gp_vcpu_set_xsave(struct gp_vcpu *v, const void *buf, size_t len)
{
	struct gp_mbox *mb = v->mb;
	const unsigned char *b = buf;
	uint64_t bv, comp;
	uint32_t mxcsr, mask;
	size_t n = GM_MIN(len, xsave_len(v));

	if (!mbox_posted(v, false))
		return -EBUSY;
	if (n < XSAVE_MIN)
		return -EINVAL;
	memcpy(&bv, b + XSAVE_HDR, 8);
	memcpy(&comp, b + XSAVE_HDR + 8, 8);
	memcpy(&mxcsr, b + 24, 4);
	memcpy(&mask, mb->xsave + 28, 4);
	if (!mask)
		mask = 0xffbf; /* the architectural default MXCSR_MASK */
	/* What XRSTOR in rt_sigreturn would refuse (and kill the thread). */
	if ((bv & ~mb->xfeatures) || comp || (mxcsr & ~mask))
		return -EINVAL;
	for (unsigned i = 16; i < 64; i++)
		if (b[XSAVE_HDR + i])
			return -EINVAL;
	memcpy(mb->xsave, b, n);
	mb->xsave_in = 1;
	return 0;
}
