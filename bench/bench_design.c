/* SPDX-License-Identifier: MIT */
/*
 * `guestmem bench design`: the primitives the design of issues 9 and 10
 * (docs/design-guest-execution-and-isolation.md) is built from, each a ratio
 * against a baseline measured in the same run:
 *  a. two-process round trips: eventfd (issue 10's baseline), a shared-memory
 *     futex mailbox, the same mailbox spinning before it sleeps;
 *  b. a trapped guest instruction (real x86 `in` at CPL3 from a memfd at a
 *     low address): emulated by a SIGSEGV handler in the same process, the
 *     handler forwarding to another process through the mailbox, and a
 *     ptrace supervisor (GETSIGINFO, GETREGS, SETREGS, CONT per trap);
 *  c. seccomp: a guest SYSCALL trapped to SIGSYS; a user-notification round
 *     trip for a KVM-numbered ioctl (bare, realistic, FLAG_CONTINUE,
 *     synchronous wake-up, ADDFD|SEND); the cost an ALLOW filter adds;
 *  d. shadow-paging primitives: memfd page mapped at a guest VA, munmap,
 *     mprotect, a whole shadow fault, memfd_secret, mapping-count limits;
 *  e. a compute loop with LOCK increments in a deprivileged guest process
 *     vs in the host process, and its atomicity between two vCPU threads;
 *  f. process_vm_readv of 4 KiB vs memcpy.
 * Host facts the design depends on (which instructions trap, which fd type
 * answers what, what a same-user process can reach) are printed first.
 * Everything runs in forked children: seccomp filters and odd mappings never
 * touch the `guestmem` process itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/falloc.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "bench.h"

#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif
#ifndef ARCH_GET_CPUID
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#endif

#define RUNS 5		  /* each figure: median of RUNS runs */
#define RT_N 20000	  /* round trips per run */
#define TRAP_N 20000	  /* trapped instructions per run */
#define PAGES 4096	  /* pages per paging run (16 MiB) */
#define LOOP_N 100000000ULL /* compute loop iterations */
#define GUEST_VA 0x400000UL /* where guest code sits, as in the selftests */
#define SPIN_N 5000		/* mailbox: loads before sleeping (no PAUSE: see mb_wait) */

/* KVM-numbered ioctls (type 0xAE) the seccomp filter routes to the supervisor. */
#define DESIGN_KVM_SET_MEMORY_ATTRIBUTES 0x4020aed2UL
#define DESIGN_KVM_CREATE_VCPU 0xae41UL
#define DESIGN_KVM_DONE 0xaeffUL /* bench only: ends the supervisor loop */

/*
 * Guest code, assembled by hand (one page from a memfd at GUEST_VA):
 * 0x000 trap_loop(n):    mov %edi,%ecx; mov $0x1000,%edx; 1: in (%dx),%al;
 *                        dec %ecx; jnz 1b; ret
 * 0x100 syscall_loop(n): mov %edi,%ecx; 1: mov $110,%eax; push %rcx; syscall;
 *                        pop %rcx; dec %ecx; jnz 1b; ret
 * 0x200 compute(n, p):   xor %eax,%eax; xor %ecx,%ecx; 1: add %rcx,%rax;
 *                        inc %rcx; test $63,%cl; jnz 2f; lock incq (%rsi);
 *                        2: cmp %rdi,%rcx; jne 1b; ret
 */
static const uint8_t code_trap[] = { 0x89, 0xf9, 0xba, 0x00, 0x10, 0x00, 0x00, 0xec,
				     0xff, 0xc9, 0x75, 0xfb, 0xc3 };
static const uint8_t code_syscall[] = { 0x89, 0xf9, 0xb8, 0x6e, 0x00, 0x00, 0x00, 0x51, 0x0f,
					0x05, 0x59, 0xff, 0xc9, 0x75, 0xf3, 0xc3 };
static const uint8_t code_compute[] = { 0x31, 0xc0, 0x31, 0xc9, 0x48, 0x01, 0xc8, 0x48,
					0xff, 0xc1, 0xf6, 0xc1, 0x3f, 0x75, 0x04, 0xf0,
					0x48, 0xff, 0x06, 0x48, 0x39, 0xf9, 0x75, 0xec, 0xc3 };
#define OFF_TRAP 0x000
#define OFF_SYSCALL 0x100
#define OFF_COMPUTE 0x200

typedef void (*loop_fn)(uint32_t n);
typedef uint64_t (*compute_fn)(uint64_t n, uint64_t *counter);

/* ---- small helpers ---------------------------------------------------- */

static void *shared_alloc(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static long futex_wait(uint32_t *w, uint32_t val)
{
	return syscall(SYS_futex, w, FUTEX_WAIT, val, NULL, NULL, 0);
}

static long futex_wake(uint32_t *w)
{
	return syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int wait_child(pid_t pid)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -ECHILD;
}

/* The page of guest code, written through a memfd and mapped RX at @va. */
static int map_guest_code(unsigned long va)
{
	int fd = memfd_create("guest-code", MFD_CLOEXEC);
	void *p;

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, 4096) || pwrite(fd, code_trap, sizeof(code_trap), OFF_TRAP) < 0 ||
	    pwrite(fd, code_syscall, sizeof(code_syscall), OFF_SYSCALL) < 0 ||
	    pwrite(fd, code_compute, sizeof(code_compute), OFF_COMPUTE) < 0) {
		close(fd);
		return -EIO;
	}
	p = mmap((void *)va, 4096, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
	close(fd);
	return p == (void *)va ? 0 : -EEXIST;
}

static double med(double *v, int n)
{
	return bench_median(v, n);
}

/* ---- a. the mailbox: a shared page, a sequence word per direction ------ */

struct mbox {
	uint32_t req;	     /* atomic: request sequence, written by the client */
	uint32_t resp;	     /* atomic: response sequence, written by the server */
	uint32_t req_sleep;  /* atomic: the server is going to sleep on req */
	uint32_t resp_sleep; /* atomic: the client is going to sleep on resp */
	uint32_t spin;	     /* pause iterations before sleeping (0: futex only) */
	uint32_t stop;	     /* atomic: the server leaves */
	uint64_t data;	     /* request in, answer out; ordered by req/resp */
};

/*
 * Wait until *@word leaves @old. The sleeper announces itself in *@sleep
 * (seq_cst) before re-checking the word; mb_post() stores the word (seq_cst)
 * before reading *@sleep, so one of the two sees the other: no lost wake-up.
 */
static void mb_wait(uint32_t *word, uint32_t *sleep, uint32_t old, uint32_t spin)
{
	/* Plain loads: PAUSE in a paravirtualized guest can exit to the hypervisor. */
	for (uint32_t i = 0; i < spin; i++)
		if (__atomic_load_n(word, __ATOMIC_ACQUIRE) != old)
			return;
	while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == old) {
		__atomic_store_n(sleep, 1, __ATOMIC_SEQ_CST);
		if (__atomic_load_n(word, __ATOMIC_SEQ_CST) == old)
			futex_wait(word, old);
		__atomic_store_n(sleep, 0, __ATOMIC_RELAXED);
	}
}

static void mb_post(uint32_t *word, uint32_t *sleep, uint32_t val)
{
	__atomic_store_n(word, val, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(sleep, __ATOMIC_SEQ_CST))
		futex_wake(word);
}

/* Client side; async-signal-safe (a trap handler calls it). */
static uint64_t mb_call(struct mbox *m, uint64_t data)
{
	uint32_t seq = __atomic_load_n(&m->req, __ATOMIC_RELAXED) + 1;

	m->data = data;
	mb_post(&m->req, &m->req_sleep, seq);
	mb_wait(&m->resp, &m->resp_sleep, seq - 1, m->spin);
	return m->data;
}

/* Server side: "emulates" every request until told to stop. */
static void mb_serve(struct mbox *m)
{
	uint32_t last = 0;

	for (;;) {
		mb_wait(&m->req, &m->req_sleep, last, m->spin);
		last = __atomic_load_n(&m->req, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&m->stop, __ATOMIC_ACQUIRE))
			return;
		m->data = (m->data & ~0xffULL) | 0x5a; /* the byte `in` reads */
		mb_post(&m->resp, &m->resp_sleep, last);
	}
}

static pid_t mb_server_start(struct mbox *m, uint32_t spin)
{
	pid_t pid;

	memset(m, 0, sizeof(*m));
	m->spin = spin;
	pid = fork();
	if (pid == 0) {
		mb_serve(m);
		_exit(0);
	}
	return pid;
}

static int mb_server_stop(struct mbox *m, pid_t pid)
{
	__atomic_store_n(&m->stop, 1, __ATOMIC_RELEASE);
	mb_post(&m->req, &m->req_sleep, __atomic_load_n(&m->req, __ATOMIC_RELAXED) + 1);
	return wait_child(pid);
}

static double rt_eventfd_once(void)
{
	return bench_eventfd_rt_ns(RT_N);
}

static double rt_mbox_once(struct mbox *m, uint32_t spin)
{
	pid_t pid = mb_server_start(m, spin);
	uint64_t t0, t1;

	if (pid < 0)
		return -1;
	for (int i = 0; i < 1000; i++)
		mb_call(m, 0);
	t0 = bench_now_ns();
	for (int i = 0; i < RT_N; i++)
		mb_call(m, 0);
	t1 = bench_now_ns();
	return mb_server_stop(m, pid) ? -1 : (double)(t1 - t0) / RT_N;
}

/* ---- b. trapped guest instructions -------------------------------------- */

static struct mbox *trap_mbox; /* the forwarding handler's mailbox */

/* SIGSEGV from `in (%dx),%al` at CPL3 (#GP, si_code SI_KERNEL): emulate, skip. */
static void trap_emulate(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t al = 0x5a;

	(void)sig;
	if (si->si_code != SI_KERNEL || *(const uint8_t *)g[REG_RIP] != 0xec)
		_exit(3); /* not our instruction: a real fault */
	if (trap_mbox)
		al = mb_call(trap_mbox, (uint64_t)g[REG_RDX]);
	g[REG_RAX] = (greg_t)(((uint64_t)g[REG_RAX] & ~0xffULL) | (al & 0xff));
	g[REG_RIP] += 1;
}

/* Child: @n trapped `in` per run, RUNS runs; ns per trap into @out. */
static void trap_child(double *out, struct mbox *fwd, int n)
{
	struct sigaction sa = { .sa_sigaction = trap_emulate, .sa_flags = SA_SIGINFO };

	if (map_guest_code(GUEST_VA) || sigaction(SIGSEGV, &sa, NULL))
		_exit(2);
	trap_mbox = fwd;
	((loop_fn)(GUEST_VA + OFF_TRAP))(500);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = bench_now_ns();

		((loop_fn)(GUEST_VA + OFF_TRAP))((uint32_t)n);
		out[r] = (double)(bench_now_ns() - t0) / n;
	}
	_exit(0);
}

static double trap_inprocess(double *res, struct mbox *fwd)
{
	pid_t pid = fork();

	if (pid == 0)
		trap_child(res, fwd, TRAP_N);
	if (pid < 0 || wait_child(pid))
		return -1;
	return med(res, RUNS);
}

static double trap_forwarded(double *res, struct mbox *m, uint32_t spin)
{
	pid_t srv = mb_server_start(m, spin);
	double r;

	if (srv < 0)
		return -1;
	r = trap_inprocess(res, m);
	return mb_server_stop(m, srv) ? -1 : r;
}

/* ptrace supervisor: each trap is a signal-delivery stop the tracer emulates. */
static double trap_ptrace_once(void)
{
	struct user_regs_struct regs;
	siginfo_t si;
	uint64_t t0, t1, traps = 0;
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		if (map_guest_code(GUEST_VA) || ptrace(PTRACE_TRACEME, 0, NULL, NULL))
			_exit(2);
		raise(SIGSTOP);
		((loop_fn)(GUEST_VA + OFF_TRAP))(TRAP_N / 4);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFSTOPPED(st))
		return -1;
	ptrace(PTRACE_SETOPTIONS, pid, NULL, (void *)(long)PTRACE_O_EXITKILL);
	t0 = bench_now_ns();
	ptrace(PTRACE_CONT, pid, NULL, NULL);
	for (;;) {
		if (waitpid(pid, &st, 0) != pid)
			return -1;
		if (WIFEXITED(st) || WIFSIGNALED(st))
			break;
		if (WSTOPSIG(st) != SIGSEGV || ptrace(PTRACE_GETSIGINFO, pid, NULL, &si) ||
		    ptrace(PTRACE_GETREGS, pid, NULL, &regs)) {
			kill(pid, SIGKILL);
			continue;
		}
		regs.rax = (regs.rax & ~0xffULL) | 0x5a;
		regs.rip += 1;
		ptrace(PTRACE_SETREGS, pid, NULL, &regs);
		ptrace(PTRACE_CONT, pid, NULL, NULL);
		traps++;
	}
	t1 = bench_now_ns();
	if (!WIFEXITED(st) || WEXITSTATUS(st) || traps != TRAP_N / 4)
		return -1;
	return (double)(t1 - t0) / (double)traps;
}

/* ---- c. seccomp --------------------------------------------------------- */

#define LD_ARCH BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))
#define LD_NR BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARG_LO(i) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[i]))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))

static int install_filter(struct sock_filter *f, unsigned short len, unsigned int flags)
{
	struct sock_fprog prog = { .len = len, .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static void sigsys_emulate(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	(void)si;
	uc->uc_mcontext.gregs[REG_RAX] = 42; /* the emulated result */
}

static double getppid_loop(int n)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < n; i++)
		syscall(SYS_getppid);
	return (double)(bench_now_ns() - t0) / n;
}

/*
 * Child: guest SYSCALL from guest code is turned into SIGSYS by a filter on
 * the instruction pointer (everything outside the guest range is allowed).
 * out[0..RUNS) plain syscall, out[RUNS..2*RUNS) trapped.
 */
static void sigsys_child(double *out)
{
	struct sigaction sa = { .sa_sigaction = sigsys_emulate, .sa_flags = SA_SIGINFO };
	struct sock_filter f[] = {
		LD_ARCH,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, GUEST_VA, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, GUEST_VA + 4096, 0, 1),
		RET(SECCOMP_RET_ALLOW),
		RET(SECCOMP_RET_TRAP),
	};

	if (map_guest_code(GUEST_VA) || sigaction(SIGSYS, &sa, NULL))
		_exit(2);
	getppid_loop(1000);
	for (int r = 0; r < RUNS; r++)
		out[r] = getppid_loop(TRAP_N * 5);
	if (install_filter(f, sizeof(f) / sizeof(f[0]), 0))
		_exit(4);
	((loop_fn)(GUEST_VA + OFF_SYSCALL))(500);
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = bench_now_ns();

		((loop_fn)(GUEST_VA + OFF_SYSCALL))(TRAP_N);
		out[RUNS + r] = (double)(bench_now_ns() - t0) / TRAP_N;
	}
	_exit(0);
}

/* User notification: what each phase of the child asks the supervisor to do. */
enum notif_phase {
	PH_BARE,      /* answer 0 at once */
	PH_REAL,      /* identify the fd, read the argument, ID_VALID, answer */
	PH_CONTINUE,  /* let the kernel run the call */
	PH_SYNC,      /* bare, with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP set */
	PH_ADDFD,     /* "create": install a new fd and return it atomically */
	PH_MAX
};

struct notif_shared {
	uint32_t phase; /* atomic: set by the child before each phase */
	double plain_ioctl[RUNS];
	double allow_ioctl[RUNS];
	double ph[PH_MAX][RUNS];
};

static double ioctl_loop(int fd, unsigned long cmd, void *arg, int n)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < n; i++)
		ioctl(fd, cmd, arg);
	return (double)(bench_now_ns() - t0) / n;
}

static int send_fd(int sock, int fd)
{
	char c = 0, buf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			      .msg_controllen = sizeof(buf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char c, buf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { &c, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			      .msg_controllen = sizeof(buf) };
	struct cmsghdr *cm;
	int fd = -1;

	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* The VMM's filter: every KVM-numbered ioctl (type 0xAE) goes to the supervisor. */
static struct sock_filter vmm_notif_filter[] = {
	LD_ARCH,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
	RET(SECCOMP_RET_KILL_PROCESS),
	LD_NR,
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	LD_ARG_LO(1),
	BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff00),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xae00, 1, 0),
	RET(SECCOMP_RET_ALLOW),
	RET(SECCOMP_RET_USER_NOTIF),
};

/* Install the VMM filter and hand its listener to the supervisor over @sock. */
static int vmm_filter_install(int sock)
{
	int listener = install_filter(vmm_notif_filter,
				      sizeof(vmm_notif_filter) / sizeof(vmm_notif_filter[0]),
				      SECCOMP_FILTER_FLAG_NEW_LISTENER);

	if (listener < 0 || send_fd(sock, listener))
		return -1;
	close(listener);
	return 0;
}

static void notif_child(struct notif_shared *s, int sock)
{
	uint8_t attrs[32] = { 0 };
	int p[2], n;

	if (pipe2(p, O_CLOEXEC))
		_exit(2);
	ioctl_loop(p[0], FIONREAD, &n, 1000);
	for (int r = 0; r < RUNS; r++)
		s->plain_ioctl[r] = ioctl_loop(p[0], FIONREAD, &n, TRAP_N * 5);
	if (vmm_filter_install(sock))
		_exit(4);
	for (int r = 0; r < RUNS; r++)
		s->allow_ioctl[r] = ioctl_loop(p[0], FIONREAD, &n, TRAP_N * 5);
	for (int ph = 0; ph < PH_MAX; ph++) {
		unsigned long cmd = ph == PH_ADDFD ? DESIGN_KVM_CREATE_VCPU :
						     DESIGN_KVM_SET_MEMORY_ATTRIBUTES;

		__atomic_store_n(&s->phase, (uint32_t)ph, __ATOMIC_RELEASE);
		for (int r = 0; r < RUNS; r++) {
			uint64_t t0 = bench_now_ns();
			int n_rt = RT_N / 4;

			for (int i = 0; i < n_rt; i++) {
				long fd = ioctl(p[0], cmd, attrs);

				if (ph == PH_ADDFD && fd >= 0)
					close((int)fd);
			}
			s->ph[ph][r] = (double)(bench_now_ns() - t0) / n_rt;
		}
	}
	ioctl(p[0], DESIGN_KVM_DONE, 0);
	_exit(0);
}

/* One answer of the supervisor, as the phase says. */
static int notif_answer(int lfd, struct notif_shared *s, struct seccomp_notif *req,
			struct seccomp_notif_resp *resp, int *sync_set)
{
	uint32_t ph = __atomic_load_n(&s->phase, __ATOMIC_ACQUIRE);

	memset(resp, 0, sizeof(*resp));
	resp->id = req->id;
	if (ph == PH_SYNC && !*sync_set) {
		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0)
			*sync_set = 1;
		else
			*sync_set = -1;
	}
	if (ph == PH_REAL) {
		char path[64];
		struct stat st;
		uint8_t arg[32];
		struct iovec l = { arg, sizeof(arg) }, rv = { (void *)req->data.args[2], sizeof(arg) };

		/* Which object is this fd? Then read the argument, then re-validate. */
		snprintf(path, sizeof(path), "/proc/%u/fd/%u", req->pid, (unsigned)req->data.args[0]);
		if (stat(path, &st) || process_vm_readv((pid_t)req->pid, &l, 1, &rv, 1, 0) != 32 ||
		    ioctl(lfd, SECCOMP_IOCTL_NOTIF_ID_VALID, &req->id))
			resp->error = -EIO;
	} else if (ph == PH_CONTINUE) {
		resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
	} else if (ph == PH_ADDFD && req->data.args[1] == DESIGN_KVM_CREATE_VCPU) {
		int efd = eventfd(0, EFD_CLOEXEC);
		struct seccomp_notif_addfd add = { .id = req->id, .flags = SECCOMP_ADDFD_FLAG_SEND,
						   .srcfd = (uint32_t)efd, .newfd_flags = O_CLOEXEC };

		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_ADDFD, &add) < 0)
			resp->error = -EIO;
		close(efd);
		if (!resp->error)
			return 0; /* ADDFD|SEND answered already */
	}
	return ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp) && errno != ENOENT ? -1 : 0;
}

static int notif_run(struct notif_shared *s, int *sync_ok)
{
	struct seccomp_notif_sizes sz;
	struct seccomp_notif *req;
	struct seccomp_notif_resp *resp;
	int sv[2], lfd, r = -1, sync_set = 0;
	pid_t pid;

	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	req = calloc(1, sz.seccomp_notif > sizeof(*req) ? sz.seccomp_notif : sizeof(*req));
	resp = calloc(1, sz.seccomp_notif_resp > sizeof(*resp) ? sz.seccomp_notif_resp :
								  sizeof(*resp));
	pid = fork();
	if (pid == 0)
		notif_child(s, sv[1]);
	lfd = pid > 0 ? recv_fd(sv[0]) : -1;
	while (lfd >= 0 && req && resp) {
		memset(req, 0, sz.seccomp_notif);
		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req)) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			break;
		}
		if (req->data.args[1] == DESIGN_KVM_DONE) {
			memset(resp, 0, sizeof(*resp));
			resp->id = req->id;
			ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, resp);
			r = 0;
			break;
		}
		if (notif_answer(lfd, s, req, resp, &sync_set))
			break;
	}
	*sync_ok = sync_set > 0;
	if (lfd >= 0)
		close(lfd);
	close(sv[0]);
	close(sv[1]);
	free(req);
	free(resp);
	if (pid > 0 && wait_child(pid))
		r = -1;
	return r;
}

/*
 * The candidate's whole PIO exit, three processes: the guest process traps
 * and posts to guestmemd's mailbox; guestmemd answers the VMM's pending
 * KVM_RUN (a seccomp notification); the VMM issues the next KVM_RUN;
 * guestmemd receives it and resumes the guest through the mailbox.
 */
#define CHAIN_N (TRAP_N / 4)
#define DESIGN_KVM_RUN 0xae80UL

static void chain_vmm(int sock)
{
	int p[2];
	long r;

	if (pipe2(p, O_CLOEXEC) || vmm_filter_install(sock))
		_exit(4);
	do
		r = ioctl(p[0], DESIGN_KVM_RUN, 0); /* 0: an exit to handle; 1: shut down */
	while (r == 0);
	_exit(r == 1 ? 0 : 5);
}

static int chain_recv(int lfd, struct seccomp_notif *req, size_t size)
{
	do
		memset(req, 0, size);
	while (ioctl(lfd, SECCOMP_IOCTL_NOTIF_RECV, req) && errno == EINTR);
	return req->data.args[1] == DESIGN_KVM_RUN ? 0 : -1;
}

static double chain_once(double *res, struct mbox *m)
{
	struct seccomp_notif_sizes sz;
	struct seccomp_notif *req = NULL;
	struct seccomp_notif_resp resp;
	int sv[2], lfd = -1, total = 500 + RUNS * CHAIN_N, ok = -1;
	pid_t vmm = -1, guest = -1;
	uint32_t last = 0;

	if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sz) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -1;
	req = calloc(1, sz.seccomp_notif > sizeof(*req) ? sz.seccomp_notif : sizeof(*req));
	memset(m, 0, sizeof(*m));
	vmm = fork();
	if (vmm == 0)
		chain_vmm(sv[1]);
	if (vmm < 0 || !req || (lfd = recv_fd(sv[0])) < 0 || chain_recv(lfd, req, sz.seccomp_notif))
		goto out;
	guest = fork();
	if (guest == 0)
		trap_child(res, m, CHAIN_N);
	for (int k = 0; guest > 0 && k < total; k++) {
		mb_wait(&m->req, &m->req_sleep, last, 0);
		last = __atomic_load_n(&m->req, __ATOMIC_ACQUIRE);
		memset(&resp, 0, sizeof(resp));
		resp.id = req->id; /* KVM_RUN returns: the VMM sees the I/O exit */
		if (ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp) ||
		    chain_recv(lfd, req, sz.seccomp_notif))
			goto out;
		m->data = 0x5a; /* the VMM's answer to the IN, completed on re-entry */
		mb_post(&m->resp, &m->resp_sleep, last);
	}
	ok = guest > 0 && wait_child(guest) == 0 ? 0 : -1;
	guest = -1;
	memset(&resp, 0, sizeof(resp));
	resp.id = req->id;
	resp.val = 1;
	ioctl(lfd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
out:
	if (guest > 0) {
		kill(guest, SIGKILL);
		waitpid(guest, NULL, 0);
	}
	if (lfd >= 0)
		close(lfd);
	close(sv[0]);
	close(sv[1]);
	free(req);
	if (vmm > 0 && wait_child(vmm))
		ok = -1;
	return ok ? -1 : med(res, RUNS);
}

/*
 * The same exit when the VMM's KVM_RUN comes through the preload: guestmemd
 * talks to the VMM through a second futex mailbox instead of a notification.
 */
static double chain_futex_once(double *res, struct mbox *g, struct mbox *v)
{
	pid_t vmm = mb_server_start(v, 0), guest;
	int total = 500 + RUNS * CHAIN_N, ok;
	uint32_t last = 0;

	if (vmm < 0)
		return -1;
	memset(g, 0, sizeof(*g));
	guest = fork();
	if (guest == 0)
		trap_child(res, g, CHAIN_N);
	for (int k = 0; guest > 0 && k < total; k++) {
		mb_wait(&g->req, &g->req_sleep, last, 0);
		last = __atomic_load_n(&g->req, __ATOMIC_ACQUIRE);
		g->data = mb_call(v, g->data); /* KVM_RUN returns; the next one comes back */
		mb_post(&g->resp, &g->resp_sleep, last);
	}
	ok = guest > 0 && wait_child(guest) == 0;
	if (mb_server_stop(v, vmm))
		ok = 0;
	return ok ? med(res, RUNS) : -1;
}

/* ALLOW-path cost: getpid and a pipe write+read, without and with a filter. */
struct allow_shared {
	/* none, VMM filter (cacheable), + filter that reads args; none, 1-insn ALLOW */
	double getpid[5][RUNS];
	double pipe[5][RUNS];
};

static double pipe_loop(int *p, int n)
{
	char c = 0;
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < n; i++)
		if (write(p[1], &c, 1) != 1 || read(p[0], &c, 1) != 1)
			return -1;
	return (double)(bench_now_ns() - t0) / n;
}

static void allow_measure(struct allow_shared *s, int k, int *p)
{
	for (int r = 0; r < RUNS; r++) {
		uint64_t t0 = bench_now_ns();

		for (int i = 0; i < TRAP_N * 5; i++)
			syscall(SYS_getpid);
		s->getpid[k][r] = (double)(bench_now_ns() - t0) / (TRAP_N * 5);
		s->pipe[k][r] = pipe_loop(p, TRAP_N * 5);
	}
}

static void allow_child(struct allow_shared *s, int trivial)
{
	struct sock_filter one[] = { RET(SECCOMP_RET_ALLOW) };
	/* The VMM's filter: KVM ioctls and memory-map changes are ours, all else ALLOW. */
	struct sock_filter vmm[] = {
		LD_ARCH,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 6, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_munmap, 9, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mremap, 8, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 7, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 6, 0),
		RET(SECCOMP_RET_ALLOW),
		LD_ARG_LO(1),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, 0xff00),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xae00, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		RET(SECCOMP_RET_ERRNO | ENOSYS), /* stand-in for USER_NOTIF: never reached */
		RET(SECCOMP_RET_ERRNO | ENOSYS),
	};
	/* Same, but every syscall's first argument is looked at: no action cache. */
	struct sock_filter argy[] = {
		LD_ARCH,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD_ARG_LO(0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x7fffff00, 0, 1),
		RET(SECCOMP_RET_ERRNO | ENOSYS),
		LD_NR,
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		RET(SECCOMP_RET_ERRNO | ENOSYS),
	};
	int p[2];

	if (pipe2(p, O_CLOEXEC))
		_exit(2);
	pipe_loop(p, 1000);
	if (trivial) {
		allow_measure(s, 3, p);
		if (install_filter(one, 1, 0))
			_exit(4);
		allow_measure(s, 4, p);
		_exit(0);
	}
	allow_measure(s, 0, p);
	if (install_filter(vmm, sizeof(vmm) / sizeof(vmm[0]), 0))
		_exit(4);
	allow_measure(s, 1, p);
	if (install_filter(argy, sizeof(argy) / sizeof(argy[0]), 0))
		_exit(4);
	allow_measure(s, 2, p);
	_exit(0);
}

/* ---- d. shadow paging ------------------------------------------------- */

static double touch_pages(volatile uint8_t *p, int pages)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < pages; i++)
		p[(size_t)i * 4096] = 1;
	return (double)(bench_now_ns() - t0) / pages;
}

static double first_touch_anon(void)
{
	uint8_t *p = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	double r;

	if (p == MAP_FAILED)
		return -1;
	madvise(p, (size_t)PAGES * 4096, MADV_NOHUGEPAGE);
	r = touch_pages(p, PAGES);
	munmap(p, (size_t)PAGES * 4096);
	return r;
}

/* First touch through one MAP_SHARED mapping of a fresh memfd or memfd_secret. */
static double first_touch_fd(int secret)
{
	int fd = secret ? (int)syscall(SYS_memfd_secret, O_CLOEXEC) :
			  memfd_create("bench", MFD_CLOEXEC);
	uint8_t *p;
	double r = -1;

	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)PAGES * 4096) == 0) {
		p = mmap(NULL, (size_t)PAGES * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			r = touch_pages(p, PAGES);
			munmap(p, (size_t)PAGES * 4096);
		}
	}
	close(fd);
	return r;
}

/*
 * The window shadow mappings go to: reserved PROT_NONE by design_paging()
 * so that MAP_FIXED never lands on someone else's mapping (a sanitizer's
 * shadow memory, say); released ranges are re-reserved, never left as holes.
 */
#define SHADOW_LEN ((size_t)30002 * 8192)
static uintptr_t shadow_va;
#define SHADOW_VA shadow_va

static void shadow_reserve(void *addr, size_t len)
{
	mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
}

struct shadow_times {
	double map_touch, map_populate, mprotect2, unmap, run64;
};

/*
 * Shadow mappings of an allocated memfd: page i of the window maps file page
 * perm(i) (scattered, so no two neighbours merge), one mmap each.
 */
static int shadow_once(int fd, struct shadow_times *t)
{
	uint8_t *w = (uint8_t *)SHADOW_VA;
	uint64_t t0;

#define SHADOW_OFF(i) ((off_t)(((size_t)(i) * 2654435761u) % PAGES) * 4096)
	t0 = bench_now_ns();
	for (int i = 0; i < PAGES; i++) {
		volatile uint8_t *p = mmap(w + (size_t)i * 4096, 4096, PROT_READ | PROT_WRITE,
					   MAP_SHARED | MAP_FIXED, fd, SHADOW_OFF(i));

		if (p == MAP_FAILED)
			return -1;
		p[0] = 1;
	}
	t->map_touch = (double)(bench_now_ns() - t0) / PAGES;
	t0 = bench_now_ns();
	for (int i = 0; i < PAGES; i++) {
		mprotect(w + (size_t)i * 4096, 4096, PROT_READ);
		mprotect(w + (size_t)i * 4096, 4096, PROT_READ | PROT_WRITE);
	}
	t->mprotect2 = (double)(bench_now_ns() - t0) / PAGES / 2;
	t0 = bench_now_ns();
	for (int i = 0; i < PAGES; i++)
		munmap(w + (size_t)i * 4096, 4096);
	t->unmap = (double)(bench_now_ns() - t0) / PAGES;
	shadow_reserve(w, (size_t)PAGES * 4096);
	t0 = bench_now_ns();
	for (int i = 0; i < PAGES; i++)
		if (mmap(w + (size_t)i * 4096, 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, SHADOW_OFF(i)) == MAP_FAILED)
			return -1;
	t->map_populate = (double)(bench_now_ns() - t0) / PAGES;
	shadow_reserve(w, (size_t)PAGES * 4096);
	/* A contiguous gfn run of 64 pages: one mapping, populated at once. */
	t0 = bench_now_ns();
	for (int i = 0; i < PAGES; i += 64)
		if (mmap(w + (size_t)i * 4096, 64 * 4096, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED | MAP_POPULATE, fd, (off_t)i * 4096) == MAP_FAILED)
			return -1;
	t->run64 = (double)(bench_now_ns() - t0) / PAGES;
	shadow_reserve(w, (size_t)PAGES * 4096);
	return 0;
}

/* A whole shadow fault in the guest process: touch -> SIGSEGV -> mmap -> retry. */
static int shadow_fd = -1;

static void shadow_fault(int sig, siginfo_t *si, void *ucv)
{
	uintptr_t va = (uintptr_t)si->si_addr & ~4095UL;

	(void)sig;
	(void)ucv;
	if (va < SHADOW_VA || va >= SHADOW_VA + (size_t)PAGES * 4096 ||
	    mmap((void *)va, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shadow_fd,
		 SHADOW_OFF((va - SHADOW_VA) / 4096)) == MAP_FAILED)
		_exit(3);
}

static void shadow_fault_child(double *out)
{
	struct sigaction sa = { .sa_sigaction = shadow_fault, .sa_flags = SA_SIGINFO };

	if (sigaction(SIGSEGV, &sa, NULL))
		_exit(2);
	for (int r = 0; r < RUNS; r++) {
		/* Reserve the window PROT_NONE: the guest's unmapped pages fault. */
		if (mmap((void *)SHADOW_VA, (size_t)PAGES * 4096, PROT_NONE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
			 0) == MAP_FAILED)
			_exit(4);
		out[r] = touch_pages((uint8_t *)SHADOW_VA, PAGES);
	}
	_exit(0);
}

/* VMAs in [start, start+len) as /proc/self/maps lists them. */
static int count_vmas(unsigned long start, unsigned long len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long a, b;
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a >= start && b <= start + len)
			n++;
	fclose(f);
	return n;
}

/* mmap+munmap of one page with @nvmas single-page mappings already present. */
static double map_cost_with(int fd, int nvmas)
{
	uint8_t *w = (uint8_t *)SHADOW_VA;
	uint64_t t0;
	double r;

	for (int i = 0; i < nvmas; i++)
		if (mmap(w + (size_t)i * 8192, 4096, PROT_READ, MAP_SHARED | MAP_FIXED, fd,
			 (off_t)(i % 2) * 4096) == MAP_FAILED)
			return -1;
	t0 = bench_now_ns();
	for (int i = 0; i < 2000; i++) {
		void *p = mmap(w + (size_t)(nvmas + 1) * 8192, 4096, PROT_READ,
			       MAP_SHARED | MAP_FIXED, fd, 0);

		if (p == MAP_FAILED)
			return -1;
		munmap(p, 4096);
	}
	r = (double)(bench_now_ns() - t0) / 2000;
	shadow_reserve(w, (size_t)(nvmas + 2) * 8192);
	return r;
}

/* ---- e. compute in the guest process vs the host process ---------------- */

struct compute_shared {
	uint64_t counter;      /* atomic: the vCPUs' LOCK incq target */
	double guest[2][RUNS]; /* one vCPU, two vCPUs: seconds per run */
	uint64_t guest_count[RUNS];
};

struct vcpu_arg {
	compute_fn fn;
	uint64_t *counter;
	uint64_t n;
	double cpu_s; /* out: the thread's CPU time */
};

/*
 * The thread's CPU time, by system call: in the guest process RDTSC traps,
 * and the vDSO uses it. CPU time, not wall time: the machine is shared, and
 * what is compared is how fast the CPU runs the code, not the scheduler.
 */
static double thread_cpu_s(void)
{
	struct timespec ts;

	syscall(SYS_clock_gettime, CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *vcpu_thread(void *a)
{
	struct vcpu_arg *v = a;
	double t0 = thread_cpu_s();

	v->fn(v->n, v->counter);
	v->cpu_s = thread_cpu_s() - t0;
	return NULL;
}

/* @threads threads each run @n iterations of @fn; their CPU seconds, summed. */
static double compute_run(compute_fn fn, uint64_t *counter, int threads, uint64_t n)
{
	pthread_t t[2];
	struct vcpu_arg a[2] = { { fn, counter, n, 0 }, { fn, counter, n, 0 } };

	if (threads == 1) {
		vcpu_thread(&a[0]);
		return a[0].cpu_s;
	}
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, vcpu_thread, &a[i]))
			return -1;
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	return a[0].cpu_s + a[1].cpu_s;
}

/*
 * RDTSC/RDTSCP trapped by PR_SET_TSC (#GP at CPL3): answered from the
 * monotonic clock by system call, as the stub will; the vDSO's clock and
 * anything using it (a sanitizer's allocator) run RDTSC in this process.
 */
static void rdtsc_emulate(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	const uint8_t *ip = (const uint8_t *)g[REG_RIP];
	struct timespec ts;
	uint64_t t;
	int len = ip[0] == 0x0f && ip[1] == 0x31				 ? 2 :
		  ip[0] == 0x0f && ip[1] == 0x01 && ip[2] == 0xf9 ? 3 :
								    0;

	(void)sig;
	if (si->si_code != SI_KERNEL || !len)
		_exit(3);
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
	t = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	g[REG_RAX] = (greg_t)(t & 0xffffffffULL);
	g[REG_RDX] = (greg_t)(t >> 32);
	if (len == 3)
		g[REG_RCX] = 0; /* TSC_AUX */
	g[REG_RIP] += len;
}

/*
 * The guest process as the design has it: code from a memfd at GUEST_VA,
 * no new privileges, guest SYSCALL trapped, RDTSC trapping, CPUID faulting
 * where the CPU has it.
 */
static void compute_child(struct compute_shared *s, int r)
{
	struct sigaction sa = { .sa_sigaction = sigsys_emulate, .sa_flags = SA_SIGINFO };
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, instruction_pointer)),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, GUEST_VA, 1, 0),
		RET(SECCOMP_RET_ALLOW),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, GUEST_VA + 4096, 0, 1),
		RET(SECCOMP_RET_ALLOW),
		RET(SECCOMP_RET_TRAP),
	};
	struct sigaction tsc = { .sa_sigaction = rdtsc_emulate, .sa_flags = SA_SIGINFO };
	compute_fn fn = (compute_fn)(GUEST_VA + OFF_COMPUTE);

	if (map_guest_code(GUEST_VA) || sigaction(SIGSYS, &sa, NULL) ||
	    sigaction(SIGSEGV, &tsc, NULL) ||
	    install_filter(f, sizeof(f) / sizeof(f[0]), 0))
		_exit(2);
	prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
	syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
	s->guest[0][r] = compute_run(fn, &s->counter, 1, LOOP_N);
	__atomic_store_n(&s->counter, 0, __ATOMIC_RELAXED);
	s->guest[1][r] = compute_run(fn, &s->counter, 2, LOOP_N);
	s->guest_count[r] = __atomic_load_n(&s->counter, __ATOMIC_RELAXED);
	__atomic_store_n(&s->counter, 0, __ATOMIC_RELAXED);
	_exit(0);
}

/* ---- host facts -------------------------------------------------------- */

static sigjmp_buf probe_jb;
static volatile sig_atomic_t probe_sig;

static void probe_handler(int sig)
{
	probe_sig = sig;
	siglongjmp(probe_jb, 1);
}

static const char *probe_result(void)
{
	return probe_sig == SIGSEGV ? "traps (SIGSEGV)" :
	       probe_sig == SIGILL  ? "traps (SIGILL)" :
				      "runs natively";
}

#define PROBE(label, stmt)                                   \
	do {                                                 \
		probe_sig = 0;                               \
		if (!sigsetjmp(probe_jb, 1)) {               \
			stmt;                                \
		}                                            \
		printf("    %-34s %s\n", label, probe_result()); \
	} while (0)

/* Child: what a deprivileged guest process can and cannot make trap. */
static void facts_insn_child(void)
{
	static unsigned int a, b, c, d; /* static: live across siglongjmp */
	static uint8_t dt[10];
	static unsigned long x;

	signal(SIGSEGV, probe_handler);
	signal(SIGILL, probe_handler);
	PROBE("cpuid (default)", __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d)));
	printf("    %-34s %s\n", "arch_prctl(ARCH_SET_CPUID, 0)",
	       syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) ? strerror(errno) : "ok");
	PROBE("cpuid (after ARCH_SET_CPUID 0)",
	      __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d)));
	PROBE("sgdt", __asm__ volatile("sgdt %0" : "=m"(dt)));
	memcpy(&x, dt + 2, sizeof(x));
	printf("    %-34s base %#lx (host kernel's UMIP answer if 0xfffffffffffe0000)\n", "", x);
	PROBE("smsw / str / sldt", __asm__ volatile("smsw %0; str %0; sldt %0" : "=r"(x)));
	PROBE("rdtsc (default)", __asm__ volatile("rdtsc" : "=a"(a), "=d"(d)));
	prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
	PROBE("rdtsc (after PR_SET_TSC SIGSEGV)", __asm__ volatile("rdtsc" : "=a"(a), "=d"(d)));
	PROBE("rdtscp (same)", __asm__ volatile("rdtscp" : "=a"(a), "=d"(d), "=c"(c)));
	PROBE("rdpid", __asm__ volatile("rdpid %0" : "=r"(x)));
	PROBE("xgetbv", __asm__ volatile("xgetbv" : "=a"(a), "=d"(d) : "c"(0)));
	_exit(0);
}

static const char *op_errno(long r)
{
	static char buf[8][24];
	static int k;

	k = (k + 1) % 8;
	if (r >= 0)
		snprintf(buf[k], sizeof(buf[k]), "ok(%ld)", r);
	else
		snprintf(buf[k], sizeof(buf[k]), "%s", strerrorname_np(errno));
	return buf[k];
}

/* What a file operation the interception misses answers on each fd type. */
static void fd_answers(const char *name, int fd)
{
	char b[8] = { 0 }, link[64], path[32];
	void *m;
	ssize_t n;

	if (fd < 0) {
		printf("    %-22s (not available: %s)\n", name, strerror(errno));
		return;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); /* no probe may hang */
	m = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	printf("    %-22s read %-7s write %-7s pread %-7s lseek %-7s send %-9s mmap %-7s %s\n",
	       name, op_errno(read(fd, b, 1)), op_errno(write(fd, b, 1)),
	       op_errno(pread(fd, b, 1, 0)), op_errno(lseek(fd, 0, SEEK_SET)),
	       op_errno(send(fd, b, 1, MSG_NOSIGNAL)),
	       m == MAP_FAILED ? strerrorname_np(errno) : "maps", link);
	if (m != MAP_FAILED)
		munmap(m, 4096);
	close(fd);
}

static void facts_fd_types(void)
{
	int sv[2] = { -1, -1 }, p[2] = { -1, -1 }, kvm;
	void (*old_pipe)(int) = signal(SIGPIPE, SIG_IGN); /* the pipe probe's write */

	printf("  fact: what unintercepted file operations answer, per fd type "
	       "(a guest_memfd: EINVAL EINVAL ESPIPE ESPIPE ENOTSOCK ENODEV)\n");
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	fd_answers("real KVM VM fd", kvm >= 0 ? ioctl(kvm, 0xae01 /* KVM_CREATE_VM */, 0) : -1);
	if (kvm >= 0)
		close(kvm);
	fd_answers("epoll", epoll_create1(EPOLL_CLOEXEC));
	fd_answers("pidfd", (int)syscall(SYS_pidfd_open, getpid(), 0));
	fd_answers("eventfd", eventfd(0, EFD_CLOEXEC));
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0)
		shutdown(sv[1], SHUT_WR); /* the peer (guestmemd) never writes */
	fd_answers("socketpair end", sv[0]);
	if (sv[1] >= 0)
		close(sv[1]);
	if (pipe2(p, O_CLOEXEC) == 0)
		close(p[0]);
	fd_answers("pipe write end", p[1]);
	fd_answers("memfd (sealed, empty)", memfd_create("obj", MFD_CLOEXEC | MFD_ALLOW_SEALING));
	fd_answers("memfd_secret", (int)syscall(SYS_memfd_secret, O_CLOEXEC));
	signal(SIGPIPE, old_pipe);
}

/*
 * What a VMM running as the same non-root user reaches in a non-dumpable
 * guestmemd, and what root reaches; private memory in memfd_secret.
 */
static void facts_reach(void)
{
	struct { uint32_t ready; uintptr_t addr; int pid; } *s = shared_alloc(4096);
	pid_t outer;

	if (!s)
		return;
	if (geteuid() != 0) {
		printf("  fact: reachability probe needs root to switch users; skipped\n");
		return;
	}
	outer = fork();
	if (outer == 0) {
		pid_t target;
		int fd = (int)syscall(SYS_memfd_secret, O_CLOEXEC);
		uint8_t *p = NULL;

		if (fd >= 0 && ftruncate(fd, 4096) == 0)
			p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (!p || p == MAP_FAILED)
			p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		memset(p, 0x77, 4096);
		target = fork();
		if (target == 0) { /* guestmemd: uid 65534, not dumpable */
			if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
				_exit(2);
			prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
			s->addr = (uintptr_t)p;
			__atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
			pause();
			_exit(0);
		}
		while (!__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE))
			usleep(1000);
		for (int as_root = 0; as_root < 2; as_root++) {
			pid_t v = fork();

			if (v == 0) { /* the VMM */
				char path[64], b[8];
				struct iovec l = { b, 8 }, r = { (void *)s->addr, 8 };
				int pfd, mfd;
				long t;

				if (!as_root && (setresgid(65534, 65534, 65534) ||
						 setresuid(65534, 65534, 65534)))
					_exit(2);
				snprintf(path, sizeof(path), "/proc/%d/mem", target);
				mfd = open(path, O_RDONLY);
				pfd = (int)syscall(SYS_pidfd_open, target, 0);
				printf("    VMM as %-10s /proc/PID/mem open %-7s process_vm_readv %-7s",
				       as_root ? "root" : "same uid", op_errno(mfd),
				       op_errno(process_vm_readv(target, &l, 1, &r, 1, 0)));
				if (mfd >= 0)
					printf(" pread %s", op_errno(pread(mfd, b, 8, (off_t)s->addr)));
				printf(" pidfd_getfd %s", op_errno(syscall(SYS_pidfd_getfd, pfd, 0, 0)));
				t = ptrace(PTRACE_ATTACH, target, NULL, NULL);
				printf(" ptrace attach %s", op_errno(t));
				if (t == 0) {
					waitpid(target, NULL, __WALL);
					errno = 0;
					t = ptrace(PTRACE_PEEKDATA, target, (void *)s->addr, NULL);
					printf(" peek %s", errno ? strerrorname_np(errno) : "reads");
					ptrace(PTRACE_DETACH, target, NULL, NULL);
				}
				printf(" kill(0) %s\n", op_errno(kill(target, 0)));
				_exit(0);
			}
			waitpid(v, NULL, 0);
		}
		kill(target, SIGKILL);
		waitpid(target, NULL, 0);
		_exit(0);
	}
	waitpid(outer, NULL, 0);
	munmap(s, 4096);
}

static void design_facts(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	long maxmap = 0;
	pid_t pid;

	if (f) {
		if (fscanf(f, "%ld", &maxmap) != 1)
			maxmap = 0;
		fclose(f);
	}
	printf("  fact: vm.max_map_count %ld; 1 TiB of scattered 4 KiB pages needs %llu "
	       "mappings (%.0fx the limit)\n",
	       maxmap, (1ULL << 40) / 4096, maxmap ? (double)((1ULL << 40) / 4096) / maxmap : 0);
	printf("  fact: guest instructions at CPL3 in a process of this host:\n");
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		facts_insn_child();
	wait_child(pid);
	facts_fd_types();
	printf("  fact: a non-dumpable guestmemd (uid 65534) holding a memfd_secret page, "
	       "reached from a VMM:\n");
	fflush(stdout);
	facts_reach();
}

/* ---- the rows ---------------------------------------------------------- */

static double median_of(double (*fn)(void))
{
	double v[RUNS];

	for (int r = 0; r < RUNS; r++)
		v[r] = fn();
	return med(v, RUNS);
}

static double rt_futex(void)
{
	static struct mbox *m;

	if (!m)
		m = shared_alloc(4096);
	return m ? rt_mbox_once(m, 0) : -1;
}

static double rt_spin(void)
{
	static struct mbox *m;

	if (!m)
		m = shared_alloc(4096);
	return m ? rt_mbox_once(m, SPIN_N) : -1;
}

/*
 * CPU seconds (user + system) used so far by this process and its reaped
 * children. Per operation it is the work a round trip costs, which a busy
 * machine leaves almost unchanged while it stretches the wall-clock latency.
 */
static double cpu_total_s(void)
{
	struct rusage a, b;

	getrusage(RUSAGE_SELF, &a);
	getrusage(RUSAGE_CHILDREN, &b);
	return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec +
			b.ru_stime.tv_sec) +
	       (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
			b.ru_stime.tv_usec) / 1e6;
}

/* ns of CPU per operation since @t0 (a cpu_total_s() reading) over @ops. */
static double cpu_per_op(double t0, double ops)
{
	return (cpu_total_s() - t0) * 1e9 / ops;
}

static int design_roundtrips(double *efd, double *efd_cpu)
{
	double c0 = cpu_total_s(), futex, futex_cpu, spin, spin_cpu, ops = RUNS * (RT_N + 1000.0);

	*efd = median_of(rt_eventfd_once);
	*efd_cpu = cpu_per_op(c0, ops);
	c0 = cpu_total_s();
	futex = median_of(rt_futex);
	futex_cpu = cpu_per_op(c0, ops);
	c0 = cpu_total_s();
	spin = median_of(rt_spin);
	spin_cpu = cpu_per_op(c0, ops);
	printf("  -- a. two-process round trips (median of %d runs of %d)\n", RUNS, RT_N);
	bench_row("eventfd round trip (baseline of issue 10)", *efd, *efd, "ns", "");
	bench_row("shared-memory futex mailbox round trip", futex, *efd, "ns", "");
	bench_row("mailbox, spin 5000 loads then futex", spin, *efd, "ns", "");
	bench_row("cpu/op: eventfd round trip", *efd_cpu, *efd_cpu, "ns", "both sides");
	bench_row("cpu/op: futex mailbox round trip", futex_cpu, *efd_cpu, "ns", "");
	bench_row("cpu/op: mailbox, spin then futex", spin_cpu, *efd_cpu, "ns", "");
	return *efd > 0 ? 0 : -EIO;
}

enum trap_kind { TK_LOCAL, TK_FWD, TK_FWD_SPIN, TK_PTRACE, TK_CHAIN_NOTIF, TK_CHAIN_FUTEX, TK_MAX };

static int design_traps(double efd, double efd_cpu)
{
	static const char *const name[TK_MAX] = {
		"trap emulated in-process (SIGSEGV handler)",
		"PIO exit, guest->VMM mailbox (preload path)",
		"PIO exit, guest->VMM, spin then futex",
		"trap via ptrace supervisor",
		"PIO exit via guestmemd, VMM by notification",
		"PIO exit via guestmemd, VMM by futex",
	};
	static const char *const cpu_name[TK_MAX] = {
		"cpu/op: trap emulated in-process",
		"cpu/op: PIO exit, guest->VMM mailbox",
		"cpu/op: PIO exit, guest->VMM, spin",
		"cpu/op: trap via ptrace supervisor",
		"cpu/op: PIO exit via guestmemd, notification",
		"cpu/op: PIO exit via guestmemd, futex",
	};
	static const char *const goal[TK_MAX] = { "", "issue 10: <= 3x", "", "", "issue 10: <= 3x",
						  "issue 10: <= 3x" };
	double *res = shared_alloc(4096), wall[TK_MAX], cpu[TK_MAX], v[RUNS], c0;
	double traps = 500.0 + RUNS * TRAP_N, chain_traps = 500.0 + RUNS * CHAIN_N;
	struct mbox *m = shared_alloc(4096), *m2 = shared_alloc(4096);
	int r = 0;

	if (!res || !m || !m2)
		return -ENOMEM;
	printf("  -- b. trapped guest `in` at CPL3 (median of %d runs of %d)\n", RUNS, TRAP_N);
	c0 = cpu_total_s();
	wall[TK_LOCAL] = trap_inprocess(res, NULL);
	cpu[TK_LOCAL] = cpu_per_op(c0, traps);
	c0 = cpu_total_s();
	wall[TK_FWD] = trap_forwarded(res, m, 0);
	cpu[TK_FWD] = cpu_per_op(c0, traps);
	c0 = cpu_total_s();
	wall[TK_FWD_SPIN] = trap_forwarded(res, m, SPIN_N);
	cpu[TK_FWD_SPIN] = cpu_per_op(c0, traps);
	c0 = cpu_total_s();
	for (int k = 0; k < RUNS; k++)
		v[k] = trap_ptrace_once();
	wall[TK_PTRACE] = med(v, RUNS);
	cpu[TK_PTRACE] = cpu_per_op(c0, RUNS * (TRAP_N / 4.0));
	c0 = cpu_total_s();
	wall[TK_CHAIN_NOTIF] = chain_once(res, m);
	cpu[TK_CHAIN_NOTIF] = cpu_per_op(c0, chain_traps);
	c0 = cpu_total_s();
	wall[TK_CHAIN_FUTEX] = chain_futex_once(res, m, m2);
	cpu[TK_CHAIN_FUTEX] = cpu_per_op(c0, chain_traps);
	for (int k = 0; k < TK_MAX; k++) {
		bench_row(name[k], wall[k], efd, "ns", goal[k]);
		if (wall[k] <= 0)
			r = -EIO;
	}
	bench_row("ptrace vs forwarded trap", wall[TK_PTRACE], wall[TK_FWD], "ns", "");
	for (int k = 0; k < TK_MAX; k++)
		bench_row(cpu_name[k], cpu[k], efd_cpu, "ns", "vs cpu/op eventfd RT");
	munmap(res, 4096);
	munmap(m, 4096);
	munmap(m2, 4096);
	return r;
}

static int design_seccomp(double efd)
{
	double *res = shared_alloc(4096);
	struct notif_shared *ns = shared_alloc(4096);
	struct allow_shared *as = shared_alloc(4096);
	double plain, trap;
	int sync_ok = 0, r = 0;
	pid_t pid;

	if (!res || !ns || !as)
		return -ENOMEM;
	printf("  -- c. seccomp (median of %d runs)\n", RUNS);
	pid = fork();
	if (pid == 0)
		sigsys_child(res);
	if (pid < 0 || wait_child(pid))
		r = -EIO;
	plain = med(res, RUNS);
	trap = med(res + RUNS, RUNS);
	bench_row("guest SYSCALL -> SIGSYS handler (RET_TRAP)", trap, plain, "ns",
		  "vs plain getppid");
	if (notif_run(ns, &sync_ok))
		r = -EIO;
	plain = med(ns->plain_ioctl, RUNS);
	bench_row("ioctl, ALLOW filter (non-KVM cmd)", med(ns->allow_ioctl, RUNS), plain, "ns",
		  "vs plain ioctl");
	bench_row("KVM ioctl user-notif RT, bare answer", med(ns->ph[PH_BARE], RUNS), efd, "ns",
		  "vs eventfd RT");
	bench_row("KVM ioctl user-notif RT, realistic", med(ns->ph[PH_REAL], RUNS), efd, "ns",
		  "stat fd+readv+ID_VALID");
	bench_row("KVM ioctl user-notif, FLAG_CONTINUE", med(ns->ph[PH_CONTINUE], RUNS), plain,
		  "ns", "vs plain ioctl");
	bench_row(sync_ok ? "KVM ioctl user-notif RT, SYNC_WAKE_UP" :
			    "(SYNC_WAKE_UP unavailable) bare again",
		  med(ns->ph[PH_SYNC], RUNS), med(ns->ph[PH_BARE], RUNS), "ns", "vs bare");
	bench_row("create ioctl: ADDFD|SEND (+ close)", med(ns->ph[PH_ADDFD], RUNS),
		  med(ns->ph[PH_BARE], RUNS), "ns", "vs bare");
	for (int trivial = 0; trivial < 2; trivial++) {
		pid = fork();
		if (pid == 0)
			allow_child(as, trivial);
		if (pid < 0 || wait_child(pid))
			r = -EIO;
	}
	bench_row("getpid, 1-instruction ALLOW filter", med(as->getpid[4], RUNS),
		  med(as->getpid[3], RUNS), "ns", "");
	bench_row("getpid, VMM filter (action-cached ALLOW)", med(as->getpid[1], RUNS),
		  med(as->getpid[0], RUNS), "ns", "issue 10: <= 1.5x");
	bench_row("getpid, + filter reading args (no cache)", med(as->getpid[2], RUNS),
		  med(as->getpid[0], RUNS), "ns", "");
	bench_row("pipe write+read, VMM filter", med(as->pipe[1], RUNS), med(as->pipe[0], RUNS),
		  "ns", "issue 10: <= 1.5x");
	bench_row("pipe write+read, + filter reading args", med(as->pipe[2], RUNS),
		  med(as->pipe[0], RUNS), "ns", "");
	munmap(res, 4096);
	munmap(ns, 4096);
	munmap(as, 4096);
	return r;
}

static int design_paging(void)
{
	double anon[RUNS], mfd[RUNS], sec[RUNS], mt[RUNS], mp[RUNS], pr[RUNS], un[RUNS], rn[RUNS];
	double *flt = shared_alloc(4096), few, many, a;
	struct shadow_times t = { 0 };
	int fd = memfd_create("shadow", MFD_CLOEXEC), merged, r = 0;
	void *win = mmap(NULL, SHADOW_LEN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			 -1, 0);
	pid_t pid;

	if (fd < 0 || !flt || win == MAP_FAILED || ftruncate(fd, (off_t)PAGES * 4096) ||
	    fallocate(fd, 0, 0, (off_t)PAGES * 4096)) {
		r = -EIO;
		goto out;
	}
	shadow_va = (uintptr_t)win;
	printf("  -- d. shadow paging primitives (%d pages, median of %d runs)\n", PAGES, RUNS);
	for (int i = 0; i < RUNS; i++) {
		anon[i] = first_touch_anon();
		mfd[i] = first_touch_fd(0);
		sec[i] = first_touch_fd(1);
		if (shadow_once(fd, &t))
			r = -EIO;
		mt[i] = t.map_touch;
		mp[i] = t.map_populate;
		pr[i] = t.mprotect2;
		un[i] = t.unmap;
		rn[i] = t.run64;
	}
	a = med(anon, RUNS);
	bench_row("first touch, memfd (allocates)", med(mfd, RUNS), a, "ns", "vs anon touch");
	bench_row("first touch, memfd_secret (allocates)", med(sec, RUNS), med(mfd, RUNS), "ns",
		  "vs memfd");
	bench_row("shadow map: mmap FIXED memfd page + touch", med(mt, RUNS), a, "ns",
		  "vs anon touch");
	bench_row("shadow map: mmap FIXED|POPULATE", med(mp, RUNS), a, "ns", "vs anon touch");
	bench_row("shadow map: 64-page gfn run, POPULATE, /page", med(rn, RUNS), a, "ns",
		  "vs anon touch");
	bench_row("shadow mprotect of one page", med(pr, RUNS), a, "ns", "vs anon touch");
	bench_row("shadow munmap of one page", med(un, RUNS), a, "ns", "vs anon touch");
	shadow_fd = fd;
	pid = fork();
	if (pid == 0)
		shadow_fault_child(flt);
	if (pid < 0 || wait_child(pid))
		r = -EIO;
	bench_row("shadow fault: SIGSEGV+mmap+retry", med(flt, RUNS), a, "ns", "vs anon touch");
	few = map_cost_with(fd, 16);
	many = map_cost_with(fd, 30000);
	bench_row("mmap+munmap with 30000 VMAs present", many, few, "ns", "vs with 16");
	/* Contiguous gfn runs: 64 neighbouring pages at neighbouring offsets. */
	for (int i = 0; i < 64; i++)
		mmap((uint8_t *)SHADOW_VA + (size_t)i * 4096, 4096, PROT_READ,
		     MAP_SHARED | MAP_FIXED, fd, (off_t)i * 4096);
	merged = count_vmas(SHADOW_VA, 64 * 4096);
	shadow_reserve((void *)SHADOW_VA, 64 * 4096);
	printf("  fact: 64 single-page mmaps of consecutive file pages at consecutive VAs "
	       "leave %d VMA(s)\n", merged);
out:
	if (fd >= 0)
		close(fd);
	if (flt)
		munmap(flt, 4096);
	if (win != MAP_FAILED)
		munmap(win, SHADOW_LEN);
	return r;
}

static int design_compute(void)
{
	struct compute_shared *s = shared_alloc(4096);
	double host1[RUNS], host2[RUNS];
	uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t want = 2 * (LOOP_N / 64);
	uint64_t counter = 0;
	compute_fn fn;
	int lost = 0;
	pid_t pid;

	if (!s || code == MAP_FAILED)
		return -ENOMEM;
	memcpy(code, code_compute, sizeof(code_compute));
	mprotect(code, 4096, PROT_READ | PROT_EXEC);
	fn = (compute_fn)(void *)code;
	printf("  -- e. compute loop: %llu adds, LOCK incq every 64, CPU time (median of %d runs)\n",
	       LOOP_N, RUNS);
	/* Guest and host runs alternate: a busy neighbour then hits both alike. */
	for (int r = 0; r < RUNS; r++) {
		pid = fork();
		if (pid == 0)
			compute_child(s, r);
		if (pid < 0 || wait_child(pid))
			return -EIO;
		host1[r] = compute_run(fn, &counter, 1, LOOP_N);
		host2[r] = compute_run(fn, &counter, 2, LOOP_N);
		if (s->guest_count[r] != want)
			lost++;
	}
	/* Rows are speeds (runs per CPU second): 1.0x is the host process's speed. */
	bench_row("guest process, 1 vCPU (speed vs host)", 1.0 / med(s->guest[0], RUNS),
		  1.0 / med(host1, RUNS), "1/s", "issue 9: >= 0.5x");
	bench_row("guest process, 2 vCPUs (speed vs host)", 1.0 / med(s->guest[1], RUNS),
		  1.0 / med(host2, RUNS), "1/s", "issue 9: >= 0.5x");
	printf("  fact: LOCK incq between 2 vCPU threads: %d of %d runs lost increments "
	       "(expected %llu each)\n",
	       lost, RUNS, (unsigned long long)want);
	munmap(code, 4096);
	munmap(s, 4096);
	return lost ? -EIO : 0;
}

#define TIME_LOOP(out, n, stmt)                                   \
	do {                                                      \
		uint64_t t0_ = bench_now_ns();                    \
		for (int i_ = 0; i_ < (n); i_++) {                \
			stmt;                                     \
		}                                                 \
		(out) = (double)(bench_now_ns() - t0_) / (n);     \
	} while (0)

/* What the supervisor pays to learn about a notification, each vs a getpid. */
static int design_lookup(pid_t pid)
{
	static uint8_t arg[32], got[32];
	double gp[RUNS], rv[RUNS], st[RUNS], kc[RUNS], gf[RUNS];
	struct iovec l = { got, 32 }, r = { arg, 32 }; /* same address in the child */
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0), me = getpid();
	char path[64];
	struct stat sb;

	if (pfd < 0)
		return -EIO;
	snprintf(path, sizeof(path), "/proc/%d/fd/1", pid);
	for (int k = 0; k < RUNS; k++) {
		TIME_LOOP(gp[k], 5000, syscall(SYS_getpid));
		TIME_LOOP(rv[k], 5000, process_vm_readv(pid, &l, 1, &r, 1, 0));
		TIME_LOOP(st[k], 5000, stat(path, &sb));
		TIME_LOOP(kc[k], 5000, syscall(SYS_kcmp, me, pid, 0 /* KCMP_FILE */, 1, 1));
		TIME_LOOP(gf[k], 5000, {
			int fd = (int)syscall(SYS_pidfd_getfd, pfd, 1, 0);

			if (fd >= 0) {
				fstat(fd, &sb);
				close(fd);
			}
		});
	}
	close(pfd);
	bench_row("process_vm_readv 32 B (an ioctl argument)", med(rv, RUNS), med(gp, RUNS), "ns",
		  "vs getpid");
	bench_row("stat /proc/PID/fd/N (which object?)", med(st, RUNS), med(gp, RUNS), "ns",
		  "vs getpid");
	bench_row("kcmp KCMP_FILE (is it object X?)", med(kc, RUNS), med(gp, RUNS), "ns",
		  "vs getpid");
	bench_row("pidfd_getfd + fstat + close", med(gf, RUNS), med(gp, RUNS), "ns", "vs getpid");
	return 0;
}

static int design_readv(void)
{
	static uint8_t src[4096], dst[4096];
	double rv[RUNS], mc[RUNS];
	struct iovec l = { dst, 4096 }, r = { src, 4096 };
	pid_t pid;
	int rc = 0;

	memset(src, 0x5a, sizeof(src));
	pid = fork();
	if (pid == 0) {
		pause();
		_exit(0);
	}
	if (pid < 0)
		return -EIO;
	printf("  -- f. reading 4 KiB of another process (median of %d runs)\n", RUNS);
	for (int k = 0; k < RUNS; k++) {
		uint64_t t0 = bench_now_ns();

		for (int i = 0; i < 20000; i++)
			if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 4096)
				rc = -EIO;
		rv[k] = (double)(bench_now_ns() - t0) / 20000;
		t0 = bench_now_ns();
		for (int i = 0; i < 20000; i++) {
			memcpy(dst, src, 4096);
			__asm__ volatile("" : : "r"(dst) : "memory");
		}
		mc[k] = (double)(bench_now_ns() - t0) / 20000;
	}
	bench_row("process_vm_readv 4 KiB", med(rv, RUNS), med(mc, RUNS), "ns", "vs memcpy");
	rc |= design_lookup(pid);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return rc;
}

static int bench_design(void)
{
	double efd = 0, efd_cpu = 0;
	int r = 0;

	printf("design (issues 9 and 10): host primitives\n");
	fflush(stdout);
	design_facts();
	r |= design_roundtrips(&efd, &efd_cpu);
	r |= design_traps(efd, efd_cpu);
	r |= design_seccomp(efd);
	r |= design_paging();
	r |= design_compute();
	r |= design_readv();
	return r;
}

const struct bench_item bench_design_items[] = {
	{ "primitives", bench_design },
	{ NULL, NULL },
};
