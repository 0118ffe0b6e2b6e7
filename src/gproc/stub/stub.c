/* SPDX-License-Identifier: MIT */
/*
 * The guest process's stub: a freestanding static binary, linked at
 * GP_STUB_TEXT in its reserved window, exec'd by gp_vm_create() with its
 * control socket on fd 3.
 *
 * The main thread serves the control socket (backings, unmap/protect,
 * vCPU threads) and ends the process when the socket reaches EOF.  Each
 * vCPU is one thread whose loop lives in its signal handler: a trap or a
 * kick copies the registers into the vCPU's mailbox, wakes the VMM, waits
 * for its answer, applies it (mmaps first, then registers into the
 * ucontext) and returns, and rt_sigreturn resumes the guest.
 *
 * Rules that keep this correct: no libc, no TLS (the guest owns FS and GS
 * base), no stack protector; the handler finds its vCPU from its stack
 * pointer (gproc_abi.h's slots).  The guest's FPU state is in the signal
 * frame while the handler runs, so the handler may use any register.
 */
#include <stddef.h>
#include <stdint.h>

/* Everything is local to this binary: RIP-relative, no GOT. */
#pragma GCC visibility push(hidden)

#include <asm/prctl.h>
#include <asm/unistd.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <linux/prctl.h>
#include <linux/seccomp.h>

#include "gproc/gproc_abi.h"
#include "lib/syscall_insn.h"

/* ---- raw system calls -------------------------------------------------- */

#define sys6 gm_syscall_insn6
#define SYS(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define SYS4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)

static __attribute__((noreturn)) void die(int code)
{
	for (;;)
		SYS(__NR_exit_group, code, 0, 0);
}

/* The compiler may emit calls to these for struct copies. */
void *memcpy(void *d, const void *s, size_t n)
{
	void *r = d;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return r;
}

void *memset(void *d, int c, size_t n)
{
	void *r = d;

	__asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return r;
}

/* ---- kernel ABI the stub needs (x86-64 layouts) ------------------------- */

#define PROT_MASK 7
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_FIXED 0x10
#define MAP_ANONYMOUS 0x20
#define MAP_FIXED_NOREPLACE 0x100000

#define SIGBUS 7
#define SIGILL 4
#define SIGTRAP 5
#define SIGFPE 8
#define SIGSEGV 11
#define SIGSYS 31
#define SIGBIT(s) (1ull << ((s) - 1))

#define SA_SIGINFO 0x4
#define SA_ONSTACK 0x08000000
#define SA_RESTORER 0x04000000
#define SA_NODEFER 0x40000000

#define SI_KERNEL 0x80
#define TRAP_PERF 6
#define SEGV_MAPERR 1
#define SEGV_ACCERR 2
#define SYS_SECCOMP 1

#define CLONE_VM 0x100
#define CLONE_FS 0x200
#define CLONE_FILES 0x400
#define CLONE_SIGHAND 0x800
#define CLONE_THREAD 0x10000
#define CLONE_SYSVSEM 0x40000
#define CLONE_PARENT_SETTID 0x100000
#define CLONE_CHILD_CLEARTID 0x200000

#define AT_HWCAP2 26
#define HWCAP2_FSGSBASE 2

#define FP_XSTATE_MAGIC1 0x46505853u

struct k_sigaction {
	void *handler;
	unsigned long flags;
	void (*restorer)(void);
	uint64_t mask;
};

struct k_siginfo {
	int signo, errno_, code, pad0;
	union {
		uint64_t addr; /* SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP */
		struct {
			uint64_t addr, data; /* TRAP_PERF: attr.sig_data */
			uint32_t type, flags;
		} perf;
		struct {
			uint64_t call_addr;
			int syscall;
			uint32_t arch;
		} sys;
		uint8_t pad[112];
	};
};

struct k_sigcontext {
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip, eflags;
	uint16_t cs, gs, fs, ss;
	uint64_t err, trapno, oldmask, cr2;
	uint8_t *fpstate;
	uint64_t reserved1[8];
};

struct k_ucontext {
	uint64_t uc_flags;
	uint64_t uc_link;
	struct {
		uint64_t sp;
		int32_t flags, pad;
		uint64_t size;
	} uc_stack;
	struct k_sigcontext mc;
	uint64_t uc_sigmask;
};

_Static_assert(offsetof(struct k_ucontext, uc_sigmask) == 296, "ucontext layout");

/* The software-reserved bytes of the frame's FXSAVE area. */
struct fx_sw {
	uint32_t magic1, extended_size;
	uint64_t xfeatures;
	uint32_t xstate_size;
};
#define FX_SW_OFF 464

struct k_iovec {
	void *base;
	size_t len;
};

struct k_msghdr {
	void *name;
	int namelen, pad;
	struct k_iovec *iov;
	size_t iovlen;
	void *control;
	size_t controllen;
	int flags, pad2;
};

struct k_cmsg {
	size_t len;
	int level, type;
	int fds[2];
};

#define USER_CS 0x33
#define USER32_CS 0x23 /* the host's compatibility-mode user code segment */
#define USER_DS 0x2b

extern char __executable_start[], etext[], _end[];
extern void gp_restorer(void);
extern long gp_clone(unsigned long flags, void *stack, int *ptid, int *ctid,
		     void (*fn)(unsigned long), unsigned long arg);
extern unsigned long gp_probe_copy(void *dst, const void *src, unsigned long n);
extern char gp_probe_load[], gp_probe_done[];

/* ---- process state (plain globals: .bss, never TLS) ----------------------- */

static int stub_pid;
static int have_fsgsbase;
static int cpuid_faulting; /* vCPU threads fault CPUID (probed, not opted out) */
static int tsc_faulting;   /* vCPU threads fault RDTSC/RDTSCP (not opted out) */
static int backing_fd[GP_MAX_BACKINGS];

struct slot {
	int tid;    /* set by clone, cleared by the kernel at thread exit */
	int evfd;   /* the VMM's eventfd: written when it sleeps */
	int used;
	/* The vCPU thread's own: its armed breakpoints (perf fds, -1: none)
	 * and whether one of them watches reads. */
	int bp_fd[GP_NR_HWBP];
	int bp_reads;
};
static struct slot slots[GP_MAX_VCPUS];

static uint64_t slot_base(unsigned i)
{
	return GP_SLOT_BASE + ((uint64_t)i << GP_SLOT_SHIFT);
}

static struct gp_mbox *slot_mbox(unsigned i)
{
	return (struct gp_mbox *)(slot_base(i) + GP_SLOT_MBOX_OFF);
}

static int futex_wait(uint32_t *w, uint32_t val)
{
	return (int)sys6(__NR_futex, (long)w, FUTEX_WAIT, val, 0, 0, 0);
}

/* ---- FS/GS base ---------------------------------------------------------- */

static uint64_t get_base(int gs)
{
	uint64_t v = 0;

	if (have_fsgsbase) {
		if (gs)
			__asm__ volatile("rdgsbase %0" : "=r"(v));
		else
			__asm__ volatile("rdfsbase %0" : "=r"(v));
	} else {
		SYS(__NR_arch_prctl, gs ? ARCH_GET_GS : ARCH_GET_FS, &v, 0);
	}
	return v;
}

static int canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

static int set_base(int gs, uint64_t v)
{
	if (!canonical(v))
		return -22; /* EINVAL */
	if (have_fsgsbase) {
		if (gs)
			__asm__ volatile("wrgsbase %0" : : "r"(v) : "memory");
		else
			__asm__ volatile("wrfsbase %0" : : "r"(v) : "memory");
		return 0;
	}
	return (int)SYS(__NR_arch_prctl, gs ? ARCH_SET_GS : ARCH_SET_FS, v, 0);
}

/* ---- registers between the ucontext and the mailbox ---------------------- */

static void save_cpu(struct gp_cpu *c, const struct k_sigcontext *mc)
{
	c->gpr[0] = mc->rax;
	c->gpr[1] = mc->rcx;
	c->gpr[2] = mc->rdx;
	c->gpr[3] = mc->rbx;
	c->gpr[4] = mc->rsp;
	c->gpr[5] = mc->rbp;
	c->gpr[6] = mc->rsi;
	c->gpr[7] = mc->rdi;
	c->gpr[8] = mc->r8;
	c->gpr[9] = mc->r9;
	c->gpr[10] = mc->r10;
	c->gpr[11] = mc->r11;
	c->gpr[12] = mc->r12;
	c->gpr[13] = mc->r13;
	c->gpr[14] = mc->r14;
	c->gpr[15] = mc->r15;
	c->rip = mc->rip;
	c->rflags = (mc->eflags & GP_RFLAGS_USER) | GP_RFLAGS_FIXED;
	c->fs_base = get_base(0);
	c->gs_base = get_base(1);
	c->mode = mc->cs == USER_CS ? GP_MODE_64 : mc->cs == USER32_CS ? GP_MODE_32 : GP_MODE_OTHER;
	c->pad = 0;
}

/*
 * Compatibility mode checks segments: a data access through a null DS, ES,
 * FS or GS raises #GP (measured), so a 32-bit guest runs with the flat
 * user data selector in all four.  Loading FS/GS zeroes their bases, so
 * this comes before set_base().  The kernel keeps the selectors across
 * context switches (and, with FSGSBASE, the bases beside them); without
 * FSGSBASE, arch_prctl(ARCH_SET_FS/GS) would reset the selector to null,
 * so only zero bases can be honoured there.
 */
static int load_flat_segments(const struct gp_cpu *c)
{
	unsigned sel = USER_DS;

	if (!have_fsgsbase && (c->fs_base || c->gs_base))
		return -95; /* EOPNOTSUPP */
	__asm__ volatile("mov %0, %%ds\n\tmov %0, %%es\n\tmov %0, %%fs\n\tmov %0, %%gs"
			 : : "r"(sel) : "memory");
	return 0;
}

static int load_cpu(struct k_ucontext *uc, const struct gp_cpu *c)
{
	struct k_sigcontext *mc = &uc->mc;
	int r;

	if (!gp_guest_va_ok(c->rip) || c->mode > GP_MODE_32)
		return -22;
	if (c->mode == GP_MODE_32) {
		if (c->rip > 0xffffffffull || c->fs_base > 0xffffffffull ||
		    c->gs_base > 0xffffffffull)
			return -22;
		r = load_flat_segments(c);
		if (r)
			return r;
	}
	/* Without FSGSBASE a 32-bit guest's bases are 0: the selectors gave them. */
	if (c->mode != GP_MODE_32 || have_fsgsbase) {
		r = set_base(0, c->fs_base);
		if (!r)
			r = set_base(1, c->gs_base);
		if (r)
			return r;
	}
	mc->rax = c->gpr[0];
	mc->rcx = c->gpr[1];
	mc->rdx = c->gpr[2];
	mc->rbx = c->gpr[3];
	mc->rsp = c->gpr[4];
	mc->rbp = c->gpr[5];
	mc->rsi = c->gpr[6];
	mc->rdi = c->gpr[7];
	mc->r8 = c->gpr[8];
	mc->r9 = c->gpr[9];
	mc->r10 = c->gpr[10];
	mc->r11 = c->gpr[11];
	mc->r12 = c->gpr[12];
	mc->r13 = c->gpr[13];
	mc->r14 = c->gpr[14];
	mc->r15 = c->gpr[15];
	mc->rip = c->rip;
	mc->eflags = (mc->eflags & ~GP_RFLAGS_USER) | (c->rflags & GP_RFLAGS_USER);
	/* The host's user code and data segments whatever the guest did to
	 * them: 64-bit, or compatibility mode for a 32-bit guest. */
	mc->cs = c->mode == GP_MODE_32 ? USER32_CS : USER_CS;
	mc->ss = USER_DS;
	mc->fs = 0;
	mc->gs = 0;
	uc->uc_sigmask = 0; /* the guest runs with every signal deliverable */
	return 0;
}

/* ---- XSAVE image between the frame and the mailbox ------------------------ */

static const struct fx_sw *frame_sw(const struct k_ucontext *uc)
{
	const struct fx_sw *sw;

	if (!uc->mc.fpstate)
		return NULL;
	sw = (const struct fx_sw *)(uc->mc.fpstate + FX_SW_OFF);
	if (sw->magic1 != FP_XSTATE_MAGIC1 || sw->xstate_size > GP_XSAVE_MAX)
		return NULL;
	return sw;
}

static void save_xsave(struct gp_mbox *mb, const struct k_ucontext *uc)
{
	const struct fx_sw *sw = frame_sw(uc);

	if (!sw) {
		mb->xsave_len = 0;
		return;
	}
	memcpy(mb->xsave, uc->mc.fpstate, sw->xstate_size);
	/* The software-reserved bytes are the kernel's, not guest state. */
	memset(mb->xsave + FX_SW_OFF, 0, 512 - FX_SW_OFF);
	mb->xsave_len = sw->xstate_size;
	mb->xfeatures = sw->xfeatures;
}

/* The VMM validated the image (header, MXCSR); keep the frame's sw bytes. */
static void load_xsave(struct gp_mbox *mb, struct k_ucontext *uc)
{
	const struct fx_sw *sw = frame_sw(uc);

	if (!sw)
		return;
	memcpy(uc->mc.fpstate, mb->xsave, FX_SW_OFF);
	memcpy(uc->mc.fpstate + 512, mb->xsave + 512, sw->xstate_size - 512);
}

/* ---- trap classification -------------------------------------------------- */

static uint32_t classify(int sig, const struct k_siginfo *si, const struct k_sigcontext *mc)
{
	switch (sig) {
	case SIGSEGV:
		if (mc->trapno == 14 && (si->code == SEGV_MAPERR || si->code == SEGV_ACCERR))
			return GP_TRAP_PF;
		if (mc->trapno == 13 && si->code == SI_KERNEL)
			return GP_TRAP_GP;
		return GP_TRAP_OTHER;
	case SIGILL:
		return mc->trapno == 6 ? GP_TRAP_UD : GP_TRAP_OTHER;
	case SIGFPE:
		if (mc->trapno == 0)
			return GP_TRAP_DE;
		if (mc->trapno == 16)
			return GP_TRAP_MF;
		if (mc->trapno == 19)
			return GP_TRAP_XM;
		return GP_TRAP_OTHER;
	case SIGTRAP:
		if (si->code == TRAP_PERF)
			return GP_TRAP_HWBP;
		if (mc->trapno == 3)
			return GP_TRAP_BP;
		if (mc->trapno == 1)
			return GP_TRAP_DB;
		return GP_TRAP_OTHER;
	case SIGBUS:
		return mc->trapno == 17 ? GP_TRAP_AC : GP_TRAP_OTHER;
	case SIGSYS:
		return si->code == SYS_SECCOMP ? GP_TRAP_SYSCALL : GP_TRAP_OTHER;
	case GP_SIG_KICK:
		return GP_TRAP_KICK;
	}
	return GP_TRAP_OTHER;
}

static void save_trap(struct gp_mbox *mb, int sig, const struct k_siginfo *si,
		      const struct k_sigcontext *mc, int probe)
{
	struct gp_trap *t = &mb->trap;

	memset(t, 0, sizeof(*t));
	t->kind = classify(sig, si, mc);
	t->signo = (uint32_t)sig;
	t->code = (uint32_t)si->code;
	t->trapno = (uint32_t)mc->trapno;
	t->err = mc->err;
	if (t->kind == GP_TRAP_PF)
		t->addr = mc->cr2;
	else if (sig == SIGSYS)
		t->err = si->sys.arch; /* AUDIT_ARCH_I386 for int $0x80 */
	else if (sig != GP_SIG_KICK && sig != GP_SIG_START)
		t->addr = si->addr;
	if (t->kind == GP_TRAP_HWBP)
		t->err = si->perf.data; /* the index apply_hwbp() gave it */
	/* A read watchpoint on the code would fire on the probe's load (the
	 * SIGTRAP then waits for the return to the guest): leave the bytes to
	 * the VMM's fetch then. */
	if (probe && gp_guest_va_ok(mc->rip))
		t->insn_len = (uint8_t)gp_probe_copy(t->insn, (const void *)mc->rip,
						     sizeof(t->insn));
}

/* ---- the vCPU loop ---------------------------------------------------------- */

/*
 * Post what is in the mailbox and sleep until the VMM answers.  The store
 * of POSTED (seq_cst) and the load of waiter_sleeping form a Dekker pair
 * with the VMM's store of waiter_sleeping and load of state: one of the two
 * sides sees the other, so a sleeping VMM is always woken.
 */
static void post_and_wait(struct gp_mbox *mb, int evfd)
{
	__atomic_store_n(&mb->state, GP_MB_POSTED, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&mb->waiter_sleeping, __ATOMIC_SEQ_CST)) {
		uint64_t one = 1;

		SYS(__NR_write, evfd, &one, sizeof(one));
	}
	/* Acquire: pairs with the VMM's release of GP_MB_GUEST. */
	while (__atomic_load_n(&mb->state, __ATOMIC_ACQUIRE) == GP_MB_POSTED)
		futex_wait(&mb->state, GP_MB_POSTED);
}

/*
 * Arm the breakpoints in mb->hwbp on this thread (the VMM set hwbp_in):
 * every old event goes, each wanted one is opened anew; changes are rare
 * (a debugger's KVM_SET_GUEST_DEBUG).  The data events watch user-mode
 * accesses only, so the kernel's own never trap.  0 or -errno (no
 * breakpoint PMU, no free debug register, perf_event_paranoid); the
 * request stays pending then.
 */
static int apply_hwbp(struct gp_mbox *mb, struct slot *sl)
{
	sl->bp_reads = 0;
	for (unsigned i = 0; i < GP_NR_HWBP; i++) {
		struct gp_hwbp b = mb->hwbp[i]; /* one read: the guest can write the mailbox */
		struct perf_event_attr a;
		long fd;

		if (sl->bp_fd[i] >= 0)
			SYS(__NR_close, sl->bp_fd[i], 0, 0);
		sl->bp_fd[i] = -1;
		if (b.type == GP_HWBP_OFF)
			continue;
		memset(&a, 0, sizeof(a));
		a.type = PERF_TYPE_BREAKPOINT;
		a.size = sizeof(a);
		a.bp_addr = b.addr;
		a.bp_type = b.type == GP_HWBP_X ? HW_BREAKPOINT_X
			    : b.type == GP_HWBP_W ? HW_BREAKPOINT_W : HW_BREAKPOINT_RW;
		a.bp_len = b.type == GP_HWBP_X ? sizeof(long) : b.len;
		a.sample_period = 1;
		a.sigtrap = 1;
		a.remove_on_exec = 1; /* sigtrap requires it */
		a.exclude_kernel = 1;
		a.exclude_hv = 1;
		a.sig_data = i;
		fd = sys6(__NR_perf_event_open, (long)&a, 0 /* this thread */, -1, -1,
			  PERF_FLAG_FD_CLOEXEC, 0);
		if (fd < 0)
			return (int)fd;
		sl->bp_fd[i] = (int)fd;
		if (b.type == GP_HWBP_RW)
			sl->bp_reads = 1;
	}
	mb->hwbp_in = 0;
	return 0;
}

static void close_hwbp(struct slot *sl)
{
	for (unsigned i = 0; i < GP_NR_HWBP; i++) {
		if (sl->bp_fd[i] >= 0)
			SYS(__NR_close, sl->bp_fd[i], 0, 0);
		sl->bp_fd[i] = -1;
	}
}

static int apply_maps(struct gp_mbox *mb)
{
	uint32_t n = mb->nr_maps;

	if (n > GP_MBOX_MAPS)
		return mb->map_failed = 0, -22;
	for (uint32_t i = 0; i < n; i++) {
		const struct gp_map *m = &mb->maps[i];
		int fd;
		long r;

		if ((m->offset & 4095) || !gp_guest_range_ok(m->gva, m->len) ||
		    (m->prot & ~PROT_MASK)) {
			mb->map_failed = i;
			return -22;
		}
		fd = m->backing < GP_MAX_BACKINGS
			     ? __atomic_load_n(&backing_fd[m->backing], __ATOMIC_RELAXED)
			     : -1;
		if (fd < 0) {
			mb->map_failed = i;
			return -9; /* EBADF */
		}
		r = sys6(__NR_mmap, (long)m->gva, (long)m->len, m->prot, MAP_SHARED | MAP_FIXED,
			 fd, (long)m->offset);
		if (r < 0 && r > -4096) {
			mb->map_failed = i;
			return (int)r;
		}
	}
	return 0;
}

static void handler(int sig, struct k_siginfo *si, void *ucv)
{
	struct k_ucontext *uc = ucv;
	uint64_t sp = (uint64_t)__builtin_frame_address(0);
	unsigned slot = (unsigned)((sp - GP_SLOT_BASE) >> GP_SLOT_SHIFT);
	struct gp_mbox *mb;
	int evfd;

	/* A fault of the stub itself: only the instruction-byte probe may. */
	if (uc->mc.rip >= (uint64_t)__executable_start && uc->mc.rip < (uint64_t)etext &&
	    sig != GP_SIG_START && sig != GP_SIG_KICK) {
		if (uc->mc.rip == (uint64_t)gp_probe_load) {
			uc->mc.rip = (uint64_t)gp_probe_done;
			return;
		}
		die(100 + sig);
	}
	if (sp < GP_SLOT_BASE || slot >= GP_MAX_VCPUS)
		die(99); /* not a vCPU thread's signal stack */
	mb = slot_mbox(slot);
	evfd = slots[slot].evfd;

	if (sig == GP_SIG_KICK && !__atomic_exchange_n(&mb->kick_req, 0, __ATOMIC_SEQ_CST))
		return; /* the kick was consumed before its signal came: resume */
	save_cpu(&mb->cpu, &uc->mc);
	save_trap(mb, sig, si, &uc->mc, !slots[slot].bp_reads);
	save_xsave(mb, uc);
	mb->err = 0;
	for (;;) {
		post_and_wait(mb, evfd);
		if (mb->cmd == GP_CMD_EXIT) {
			close_hwbp(&slots[slot]);
			for (;;)
				SYS(__NR_exit, 0, 0, 0);
		}
		mb->err = apply_maps(mb);
		if (mb->err || mb->cmd != GP_CMD_RUN)
			continue; /* cpu and trap still describe the last stop */
		mb->err = load_cpu(uc, &mb->cpu);
		if (!mb->err && mb->hwbp_in)
			mb->err = apply_hwbp(mb, &slots[slot]);
		if (mb->err) {
			save_cpu(&mb->cpu, &uc->mc);
			continue;
		}
		if (mb->xsave_in)
			load_xsave(mb, uc);
		/*
		 * A kick that came before this run: return it without running
		 * the guest.  seq_cst: pairs with gp_vcpu_kick()'s store of
		 * kick_req and load of state (it signals only if it saw GUEST).
		 */
		if (__atomic_exchange_n(&mb->kick_req, 0, __ATOMIC_SEQ_CST)) {
			memset(&mb->trap, 0, sizeof(mb->trap));
			mb->trap.kind = GP_TRAP_KICK;
			mb->trap.signo = GP_SIG_KICK;
			save_cpu(&mb->cpu, &uc->mc);
			save_xsave(mb, uc);
			continue;
		}
		return;
	}
}

static void vcpu_main(unsigned long slot)
{
	uint64_t base = slot_base((unsigned)slot);
	struct {
		uint64_t sp;
		int32_t flags, pad;
		uint64_t size;
	} ss = { base + GP_SLOT_ALT_OFF, 0, 0, GP_SLOT_ALT_SIZE };
	uint64_t mask = ~SIGBIT(GP_SIG_START);

	if (SYS(__NR_sigaltstack, &ss, 0, 0))
		die(3);
	/*
	 * Per thread: CPUID and RDTSC raise #GP, so the VMM answers them.
	 * The price: the kernel rewrites the CPUID-faulting MSR and CR4.TSD
	 * at every context switch between this thread and one without them
	 * (the VMM's), which a hypervisor below us traps.
	 */
	if (cpuid_faulting)
		SYS(__NR_arch_prctl, ARCH_SET_CPUID, 0, 0);
	if (tsc_faulting)
		SYS(__NR_prctl, PR_SET_TSC, PR_TSC_SIGSEGV, 0);
	SYS4(__NR_rt_sigprocmask, 2 /* SIG_SETMASK */, &mask, 0, 8);
	/* First entry into the handler; it never returns here. */
	SYS(__NR_tgkill, stub_pid, SYS(__NR_gettid, 0, 0, 0), GP_SIG_START);
	die(4);
}

/* ---- set-up ---------------------------------------------------------------- */

static void install_handlers(void)
{
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGSYS,
				    GP_SIG_KICK, GP_SIG_START };
	/* SIGSEGV/SIGBUS stay deliverable inside the handler (the probe). */
	uint64_t mask = ~(SIGBIT(SIGSEGV) | SIGBIT(SIGBUS));

	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		struct k_sigaction sa = {
			.handler = (void *)handler,
			.flags = SA_SIGINFO | SA_ONSTACK | SA_RESTORER,
			.restorer = gp_restorer,
			.mask = mask,
		};

		if (sigs[i] == SIGSEGV || sigs[i] == SIGBUS)
			sa.flags |= SA_NODEFER;
		if (SYS4(__NR_rt_sigaction, sigs[i], &sa, 0, 8))
			die(5);
	}
}

/*
 * System calls only from the stub's text, and only the ones it makes; a
 * guest's SYSCALL (or int $0x80) is trapped: SIGSYS, GP_TRAP_SYSCALL.
 * seccomp_data: nr at 0, arch at 4, instruction_pointer at 8.
 */
static void install_seccomp(void)
{
	static const int allowed[] = {
		__NR_read, __NR_write, __NR_close, __NR_mmap, __NR_mprotect, __NR_munmap,
		__NR_rt_sigaction, __NR_rt_sigprocmask, __NR_rt_sigreturn, __NR_sendmsg,
		__NR_recvmsg, __NR_clone, __NR_exit, __NR_exit_group, __NR_arch_prctl,
		__NR_sigaltstack, __NR_gettid, __NR_futex, __NR_tgkill,
		__NR_perf_event_open, __NR_fallocate, __NR_memfd_create, __NR_ftruncate,
		__NR_memfd_secret,
	};
	enum { NA = sizeof(allowed) / sizeof(allowed[0]) };
	uint64_t lo = (uint64_t)__executable_start, hi = (uint64_t)etext;
	struct sock_filter f[8 + NA + 6];
	unsigned n = 0, trap, allow;

	if ((lo >> 32) != (hi >> 32))
		die(6);
	trap = 8 + NA + 4;
	allow = trap + 1;
#define STMT(c, k) f[n] = (struct sock_filter)BPF_STMT((c), (k)), n++
#define JUMP(c, k, t, e) \
	f[n] = (struct sock_filter)BPF_JUMP((c), (k), (uint8_t)(t), (uint8_t)(e)), n++
	STMT(BPF_LD | BPF_W | BPF_ABS, 4);                                   /* 0 */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, trap - 2);     /* 1 */
	STMT(BPF_LD | BPF_W | BPF_ABS, 12);                                  /* 2 */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(lo >> 32), 0, trap - 4);  /* 3 */
	STMT(BPF_LD | BPF_W | BPF_ABS, 8);                                   /* 4 */
	JUMP(BPF_JMP | BPF_JGE | BPF_K, (uint32_t)lo, 0, trap - 6);          /* 5 */
	JUMP(BPF_JMP | BPF_JGT | BPF_K, (uint32_t)hi, trap - 7, 0);          /* 6 */
	STMT(BPF_LD | BPF_W | BPF_ABS, 0);                                   /* 7 */
	for (unsigned i = 0; i < NA; i++)                                    /* 8.. */
		JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)allowed[i], allow - n - 1, 0);
	/*
	 * prctl: only PR_SET_TSC (a vCPU thread's RDTSC faulting).  The
	 * others were made before this filter; guest code that jumps to a
	 * SYSCALL in our text must not make this process dumpable again
	 * (PR_SET_DUMPABLE) or rename it.
	 */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_prctl, 0, 2);                   /* 8+NA */
	STMT(BPF_LD | BPF_W | BPF_ABS, 16);                                  /* args[0] */
	JUMP(BPF_JMP | BPF_JEQ | BPF_K, PR_SET_TSC, allow - n - 1, 0);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
	STMT(BPF_RET | BPF_K, SECCOMP_RET_TRAP);                             /* trap */
	STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);                            /* allow */
#undef STMT
#undef JUMP
	struct sock_fprog prog = { .len = (unsigned short)n, .filter = f };

	if (SYS(__NR_prctl, PR_SET_NO_NEW_PRIVS, 1, 0))
		die(7);
	if (SYS(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog) &&
	    SYS(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		die(8);
}

/* ---- control requests -------------------------------------------------------- */

static int range_ok(uint64_t gva, uint64_t len)
{
	return gp_guest_range_ok(gva, len);
}

static void close_fds(const int *fds, int n)
{
	for (int i = 0; i < n; i++)
		SYS(__NR_close, fds[i], 0, 0);
}

static int op_add_backing(const int *fds, int nfds)
{
	if (nfds != 1)
		return -22;
	for (int i = 0; i < GP_MAX_BACKINGS; i++) {
		if (backing_fd[i] < 0) {
			__atomic_store_n(&backing_fd[i], fds[0], __ATOMIC_RELAXED);
			return i;
		}
	}
	return -24; /* EMFILE */
}

#ifndef __NR_memfd_secret
#define __NR_memfd_secret 447
#endif

/* A file for private memory that never exists outside this process. */
static int op_create_backing(uint64_t size, uint32_t kind)
{
	long fd;
	int r;

	if (kind > GP_BACKING_SECRETMEM)
		return -22;
	fd = kind == GP_BACKING_SECRETMEM
		     ? SYS(__NR_memfd_secret, 02000000 /* O_CLOEXEC */, 0, 0)
		     : SYS(__NR_memfd_create, "guestmem-gmem", 1 /* MFD_CLOEXEC */, 0);

	if (fd < 0)
		return (int)fd;
	r = (int)SYS(__NR_ftruncate, fd, size, 0);
	if (!r)
		r = op_add_backing((int[]){ (int)fd }, 1);
	if (r < 0)
		SYS(__NR_close, fd, 0, 0);
	return r;
}

/*
 * Zeroes over [off, off + len) of backing @id, through the scratch window
 * (a file that cannot be punched: secretmem reuses pages).  Page aligned.
 */
static int op_zero(uint32_t id, uint64_t off, uint64_t len)
{
	if (id >= GP_MAX_BACKINGS || backing_fd[id] < 0)
		return -9;
	if ((off | len) & 4095 || off + len < off)
		return -22;
	while (len) {
		uint64_t n = len < GP_SCRATCH_SIZE ? len : GP_SCRATCH_SIZE;
		long r = sys6(__NR_mmap, (long)GP_SCRATCH, (long)n, 3 /* RW */,
			      MAP_SHARED | MAP_FIXED, backing_fd[id], (long)off);

		if (r < 0 && r > -4096)
			return (int)r;
		memset((void *)GP_SCRATCH, 0, n);
		SYS(__NR_munmap, GP_SCRATCH, n, 0);
		off += n;
		len -= n;
	}
	return 0;
}

/*
 * GP_OP_ACCESS's window: which page of which backing each of its slots
 * maps (MAP_SHARED, so it stays the file's page whatever a punch does;
 * the VMM side asks only while the page is allocated), read-write: the
 * backings it reaches are the ones this process created (held storage).
 * Replaced in turn; a removed backing's slots are unmapped with it.
 */
static struct {
	uint32_t id, used;
	uint64_t page;
} acc_win[GP_ACCESS_WIN_PAGES];
static unsigned acc_hand;

static long acc_map(unsigned i, uint32_t id, uint64_t page)
{
	return sys6(__NR_mmap, (long)(GP_ACCESS_WIN + i * 4096ull), 4096, 3 /* RW */,
		    MAP_SHARED | MAP_FIXED, backing_fd[id], (long)page);
}

static uint8_t *acc_page(uint32_t id, uint64_t page, int *err)
{
	unsigned i;
	long m;

	for (i = 0; i < GP_ACCESS_WIN_PAGES; i++)
		if (acc_win[i].used && acc_win[i].id == id && acc_win[i].page == page)
			return (uint8_t *)(GP_ACCESS_WIN + i * 4096ull);
	i = acc_hand++ % GP_ACCESS_WIN_PAGES;
	acc_win[i].used = 0;
	m = acc_map(i, id, page);
	if (m == -11 || m == -12) {
		/* Over RLIMIT_MEMLOCK (secretmem counts each mapping): the
		 * window is a cache, give its pages back first. */
		SYS(__NR_munmap, GP_ACCESS_WIN, GP_ACCESS_WIN_PAGES * 4096ull, 0);
		for (unsigned k = 0; k < GP_ACCESS_WIN_PAGES; k++)
			acc_win[k].used = 0;
		m = acc_map(i, id, page);
	}
	if (m < 0 && m > -4096) {
		*err = (int)m;
		return 0;
	}
	acc_win[i].id = id;
	acc_win[i].page = page;
	acc_win[i].used = 1;
	return (uint8_t *)m;
}

static void acc_forget(uint32_t id)
{
	for (unsigned i = 0; i < GP_ACCESS_WIN_PAGES; i++) {
		if (acc_win[i].used && acc_win[i].id == id) {
			SYS(__NR_munmap, GP_ACCESS_WIN + i * 4096ull, 4096, 0);
			acc_win[i].used = 0;
		}
	}
}

/*
 * The CPU's own access to a page of backing @id (GP_OP_ACCESS): the VMM
 * side walks page tables and delivers events into memory only this
 * process holds.  An aligned 4- or 8-byte access is one access, as the
 * CPU's to an entry is.
 */
static int op_access(const struct gp_req *q, struct gp_resp *a)
{
	uint64_t in = q->gva & 4095;
	int write = q->prot != GP_ACC_READ, word = (q->len == 4 || q->len == 8) && !(in % q->len);
	int err = 0;
	uint8_t *p;

	if (q->arg >= GP_MAX_BACKINGS || backing_fd[q->arg] < 0)
		return -9;
	if (!q->len || q->len > GP_ACCESS_MAX || in + q->len > 4096 || q->prot < GP_ACC_READ ||
	    q->prot > GP_ACC_CMPXCHG || (q->prot == GP_ACC_CMPXCHG && !word))
		return -22;
	p = acc_page(q->arg, q->gva - in, &err);
	if (!p)
		return err;
	p += in;
	if (q->prot == GP_ACC_CMPXCHG && q->len == 8) {
		uint64_t old = q->data[0];
		int r = !__atomic_compare_exchange_n((uint64_t *)p, &old, q->data[1], 0,
						     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);

		a->data[0] = old;
		return r;
	}
	if (q->prot == GP_ACC_CMPXCHG) {
		uint32_t old = (uint32_t)q->data[0];
		int r = !__atomic_compare_exchange_n((uint32_t *)p, &old, (uint32_t)q->data[1], 0,
						     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);

		a->data[0] = old;
		return r;
	}
	if (word && q->len == 8) {
		if (write)
			__atomic_store_n((uint64_t *)p, q->data[0], __ATOMIC_RELAXED);
		else
			a->data[0] = __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED);
	} else if (word) {
		if (write)
			__atomic_store_n((uint32_t *)p, (uint32_t)q->data[0], __ATOMIC_RELAXED);
		else
			a->data[0] = __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
	} else if (write) {
		memcpy(p, q->data, q->len);
	} else {
		memcpy(a->data, p, q->len);
	}
	return 0;
}

static int op_remove_backing(uint32_t id)
{
	int fd;

	if (id >= GP_MAX_BACKINGS || backing_fd[id] < 0)
		return -9;
	fd = backing_fd[id];
	acc_forget(id); /* its pages mapped there would keep the file */
	__atomic_store_n(&backing_fd[id], -1, __ATOMIC_RELAXED);
	SYS(__NR_close, fd, 0, 0);
	return 0;
}

static int map_slot_part(uint64_t addr, uint64_t len, int flags, int fd)
{
	long r = sys6(__NR_mmap, (long)addr, (long)len, 3, flags | MAP_FIXED_NOREPLACE, fd, 0);

	return (r < 0 && r > -4096) ? (int)r : 0;
}

static int op_vcpu_create(uint32_t s, const int *fds, int nfds)
{
	uint64_t base = slot_base(s);
	long tid;
	int r;

	if (nfds != 2 || s >= GP_MAX_VCPUS)
		return close_fds(fds, nfds), -22;
	if (slots[s].used)
		return close_fds(fds, nfds), -17; /* EEXIST */
	r = map_slot_part(base + GP_SLOT_MBOX_OFF, GP_MBOX_SIZE, MAP_SHARED, fds[0]);
	SYS(__NR_close, fds[0], 0, 0);
	if (r)
		return SYS(__NR_close, fds[1], 0, 0), r;
	r = map_slot_part(base + GP_SLOT_STACK_OFF, GP_SLOT_STACK_SIZE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (!r)
		r = map_slot_part(base + GP_SLOT_ALT_OFF, GP_SLOT_ALT_SIZE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1);
	if (r)
		goto fail;
	slots[s].evfd = fds[1];
	slots[s].used = 1;
	slots[s].bp_reads = 0;
	for (unsigned i = 0; i < GP_NR_HWBP; i++)
		slots[s].bp_fd[i] = -1;
	tid = gp_clone(CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
			       CLONE_SYSVSEM | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID,
		       (void *)(base + GP_SLOT_STACK_OFF + GP_SLOT_STACK_SIZE), &slots[s].tid,
		       &slots[s].tid, vcpu_main, s);
	if (tid < 0) {
		slots[s].used = 0;
		r = (int)tid;
		goto fail;
	}
	return (int)tid;
fail:
	SYS(__NR_munmap, base, 1ull << GP_SLOT_SHIFT, 0);
	SYS(__NR_close, fds[1], 0, 0);
	return r;
}

/* The VMM told the thread to exit (GP_CMD_EXIT); wait for it, free its slot. */
static int op_vcpu_reap(uint32_t s)
{
	int t;

	if (s >= GP_MAX_VCPUS || !slots[s].used)
		return -22;
	/* The kernel clears tid and wakes it (a shared futex) at thread exit. */
	while ((t = __atomic_load_n(&slots[s].tid, __ATOMIC_ACQUIRE)) != 0)
		futex_wait((uint32_t *)&slots[s].tid, (uint32_t)t);
	SYS(__NR_munmap, slot_base(s), 1ull << GP_SLOT_SHIFT, 0);
	SYS(__NR_close, slots[s].evfd, 0, 0);
	slots[s].used = 0;
	return 0;
}

static int dispatch(const struct gp_req *q, struct gp_resp *a, const int *fds, int nfds)
{
	switch (q->op) {
	case GP_OP_ADD_BACKING:
		return op_add_backing(fds, nfds);
	case GP_OP_VCPU_CREATE:
		return op_vcpu_create(q->arg, fds, nfds);
	}
	close_fds(fds, nfds);
	switch (q->op) {
	case GP_OP_REMOVE_BACKING:
		return op_remove_backing(q->arg);
	case GP_OP_UNMAP:
		if (!range_ok(q->gva, q->len))
			return -22;
		return (int)SYS(__NR_munmap, q->gva, q->len, 0);
	case GP_OP_PROTECT:
		if (!range_ok(q->gva, q->len) || (q->prot & ~PROT_MASK))
			return -22;
		return (int)SYS(__NR_mprotect, q->gva, q->len, q->prot);
	case GP_OP_VCPU_REAP:
		return op_vcpu_reap(q->arg);
	case GP_OP_CREATE_BACKING:
		return op_create_backing(q->len, q->arg);
	case GP_OP_ZERO:
		return op_zero(q->arg, q->gva, q->len);
	case GP_OP_ACCESS:
		return op_access(q, a);
	case GP_OP_FALLOCATE:
		/* The only way to a backing's storage it holds alone (gp_vm_fallocate). */
		if (q->arg >= GP_MAX_BACKINGS || backing_fd[q->arg] < 0)
			return -9; /* EBADF */
		return (int)SYS4(__NR_fallocate, backing_fd[q->arg], q->prot, q->gva, q->len);
	}
	return -38; /* ENOSYS */
}

static __attribute__((noreturn)) void serve(int ctl)
{
	for (;;) {
		struct gp_req q;
		struct gp_resp a = { 0 };
		struct k_iovec iov = { &q, sizeof(q) };
		union {
			struct k_cmsg c;
			uint64_t align[4];
		} cbuf;
		struct k_msghdr mh = { .iov = &iov, .iovlen = 1, .control = &cbuf,
				       .controllen = sizeof(cbuf) };
		int fds[2], nfds = 0;
		long r;

		memset(&q, 0, sizeof(q));
		r = SYS(__NR_recvmsg, ctl, &mh, 0);
		if (r <= 0)
			die(0); /* EOF: the VMM closed the VM or died */
		if (mh.controllen >= sizeof(size_t) + 8 && cbuf.c.level == 1 /* SOL_SOCKET */ &&
		    cbuf.c.type == 1 /* SCM_RIGHTS */) {
			nfds = (int)((cbuf.c.len - (sizeof(size_t) + 8)) / sizeof(int));
			nfds = nfds > 2 ? 2 : nfds;
			for (int i = 0; i < nfds; i++)
				fds[i] = cbuf.c.fds[i];
		}
		a.ret = r == sizeof(q) ? dispatch(&q, &a, fds, nfds) : (close_fds(fds, nfds), -22);
		if (SYS(__NR_write, ctl, &a, sizeof(a)) != sizeof(a))
			die(0);
	}
}

/*
 * Whether a tracer is attached (TracerPid in /proc/self/status is not 0).
 * Run after PR_SET_DUMPABLE 0, which stops new attaches: a tracer that
 * attached between fork and here would still see everything, so the stub
 * refuses to run under one.  0 if /proc cannot tell.
 */
static int traced(void)
{
	static const char key[] = "TracerPid:";
	char buf[4096];
	long n, fd = SYS(__NR_open, "/proc/self/status", 0 /* O_RDONLY */, 0);

	if (fd < 0)
		return 0;
	n = SYS(__NR_read, fd, buf, sizeof(buf) - 1);
	SYS(__NR_close, fd, 0, 0);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	for (long i = 0; i + (long)sizeof(key) - 1 < n; i++) {
		long j = 0;

		while (key[j] && buf[i + j] == key[j])
			j++;
		if (key[j])
			continue;
		for (i += j; buf[i] == ' ' || buf[i] == '\t'; i++)
			;
		return buf[i] != '0';
	}
	return 0;
}

__attribute__((noreturn, used)) void gp_stub_main(uint64_t *sp)
{
	uint64_t argc = sp[0], *p = sp + 1 + argc + 1;
	uint64_t all = ~0ull;
	struct gp_hello hello = { .magic = GP_HELLO_MAGIC };
	unsigned flags = 0;
	int ctl = 3;

	/* argv[1]: GP_VM_* flags in decimal. */
	if (argc > 1)
		for (const char *a = (const char *)sp[2]; *a >= '0' && *a <= '9'; a++)
			flags = flags * 10 + (unsigned)(*a - '0');
	/*
	 * argv[2]: "vmm=PID", the process this one serves.  Named after it
	 * ("gproc:PID"), since /proc/PID/cmdline reads the stack we unmap
	 * below and its parent may be the spawner: the name is what ps and
	 * tests have.
	 */
	if (argc > 2) {
		const char *a = (const char *)sp[3];
		char name[16] = "gproc:";
		unsigned i = 6;

		if (a[0] == 'v' && a[1] == 'm' && a[2] == 'm' && a[3] == '=')
			for (a += 4; *a >= '0' && *a <= '9' && i < sizeof(name) - 1; a++)
				name[i++] = *a;
		if (i > 6)
			SYS(__NR_prctl, PR_SET_NAME, (long)name, 0);
	}

	/*
	 * First of all: no process without CAP_SYS_PTRACE (the VMM, our
	 * parent, included) may trace this one, read its memory through
	 * /proc or process_vm_readv, or take its descriptors (pidfd_getfd,
	 * /proc/PID/fd): guest memory, private pages too, is mapped here.
	 */
	if (!(flags & GP_VM_DUMPABLE)) {
		if (SYS(__NR_prctl, PR_SET_DUMPABLE, 0, 0))
			die(11);
		if (traced())
			die(12);
	}
	while (*p)
		p++; /* environment */
	for (p++; p[0]; p += 2)
		if (p[0] == AT_HWCAP2 && (p[1] & HWCAP2_FSGSBASE))
			have_fsgsbase = 1;
	/*
	 * The guest's range must hold nothing of ours: the image must fit below
	 * the slots, and the kernel's initial stack (argv and auxv, read above;
	 * entry.S already left it), vDSO and vvar go.  Signals return through
	 * gp_restorer, never the vDSO.
	 */
	if ((uint64_t)__executable_start < GP_RESV_BASE || (uint64_t)_end > GP_SCRATCH)
		die(9);
	if (SYS(__NR_munmap, 0, GP_RESV_BASE, 0) ||
	    SYS(__NR_munmap, GP_RESV_END, GP_USER_TOP - GP_RESV_END, 0))
		die(10);
	for (int i = 0; i < GP_MAX_BACKINGS; i++)
		backing_fd[i] = -1;
	stub_pid = (int)SYS(__NR_getpid, 0, 0, 0);
	/*
	 * The kernel sizes a guest_memfd without looking at RLIMIT_FSIZE; the
	 * backing files made here (GP_OP_CREATE_BACKING) are sized by
	 * ftruncate, which does.  Take the hard limit: a VMM that lowered only
	 * its soft limit still gets its guest_memfd.
	 */
	{
		struct { uint64_t cur, max; } lim;

		if (!SYS4(__NR_prlimit64, 0, 1 /* RLIMIT_FSIZE */, 0, &lim) && lim.cur < lim.max) {
			lim.cur = lim.max;
			SYS4(__NR_prlimit64, 0, 1, &lim, 0);
		}
	}
	/* The control thread takes no signal; vCPU threads open their masks. */
	SYS4(__NR_rt_sigprocmask, 2, &all, 0, 8);
	/* Probe: does the CPU fault CPUID at CPL3 (set per thread, inherited)? */
	if (!(flags & GP_VM_NO_CPUID_FAULT)) {
		cpuid_faulting = SYS(__NR_arch_prctl, ARCH_SET_CPUID, 0, 0) == 0;
		if (cpuid_faulting) /* the control thread keeps CPUID */
			SYS(__NR_arch_prctl, ARCH_SET_CPUID, 1, 0);
	}
	/* Probed the same way; the control thread keeps RDTSC. */
	if (!(flags & GP_VM_NO_TSC_FAULT))
		tsc_faulting = SYS(__NR_prctl, PR_SET_TSC, PR_TSC_SIGSEGV, 0) == 0 &&
			       SYS(__NR_prctl, PR_SET_TSC, PR_TSC_ENABLE, 0) == 0;
	hello.cpuid_faulting = (uint32_t)cpuid_faulting;
	hello.tsc_faulting = (uint32_t)tsc_faulting;
	install_handlers();
	install_seccomp();
	if (SYS(__NR_write, ctl, &hello, sizeof(hello)) != sizeof(hello))
		die(1);
	serve(ctl);
}
