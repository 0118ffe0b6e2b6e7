/* SPDX-License-Identifier: MIT */
/*
 * gproc_abi.h - what the guest process's stub (src/gproc/stub) and its
 * VMM-side client (src/gproc/gproc.c) share: the per-vCPU mailbox layout,
 * the control-socket messages and the fixed addresses.  Freestanding (no
 * libc): the stub includes it too.  Both sides are built from the same tree,
 * so the layout needs no versioning beyond the hello message's magic.
 */
#ifndef GM_GPROC_ABI_H
#define GM_GPROC_ABI_H

#include <stdint.h>

/*
 * The guest owns the whole lower half of the guest process's address space,
 * [0, GP_USER_TOP), except one reserved window, [GP_RESV_BASE, GP_RESV_END):
 * the stub's image (text, data, bss with the control thread's stack) at
 * GP_STUB_TEXT, then the vCPU slots.  The kernel-placed initial stack, vDSO
 * and vvar are unmapped by the stub at start-up.
 */
#define GP_USER_TOP 0x7ffffffff000ull /* the kernel's TASK_SIZE with 4-level paging */
/* The stub's link address (meson passes it to the linker too). */
#define GP_STUB_TEXT 0x7e8000000000ull
#define GP_RESV_BASE GP_STUB_TEXT
/* vCPU slot i occupies [GP_SLOT_BASE + i << GP_SLOT_SHIFT, +1 << GP_SLOT_SHIFT):
 * the mailbox, the thread's stack and its signal stack.  The signal handler
 * finds its slot from its stack pointer: the stub uses no TLS, because the
 * guest owns FS and GS base.  The stub's image must end below it (checked
 * at start-up). */
#define GP_SLOT_BASE (GP_STUB_TEXT + 0x1000000ull)
/* Below the slots, above the image: where the control thread maps a
 * backing's pages to zero them (GP_OP_ZERO), GP_SCRATCH_SIZE at a time. */
#define GP_SCRATCH (GP_SLOT_BASE - 0x400000ull)
#define GP_SCRATCH_SIZE 0x200000ull
/* Above it: the pages GP_OP_ACCESS reached last, kept mapped (a walk
 * reads the same few page-table pages fault after fault). */
#define GP_ACCESS_WIN (GP_SCRATCH + GP_SCRATCH_SIZE)
#define GP_ACCESS_WIN_PAGES 64u
#define GP_SLOT_SHIFT 20
#define GP_MAX_VCPUS 4096
#define GP_SLOT_MBOX_OFF 0x0ull       /* GP_MBOX_SIZE bytes, shared with the VMM */
#define GP_SLOT_STACK_OFF 0x20000ull  /* thread stack, up to the altstack guard */
#define GP_SLOT_STACK_SIZE 0x10000ull
#define GP_SLOT_ALT_OFF 0x40000ull    /* signal stack, to the slot's end */
#define GP_SLOT_ALT_SIZE 0xc0000ull
#define GP_RESV_END (GP_SLOT_BASE + ((uint64_t)GP_MAX_VCPUS << GP_SLOT_SHIFT))

/* May [gva, gva + len) hold guest mappings: page-aligned, non-empty, below
 * GP_USER_TOP and clear of the reserved window. */
_Static_assert(!(GP_RESV_BASE & ((1ull << 30) - 1)) && !(GP_RESV_END & ((1ull << 21) - 1)),
	       "no guest large page straddles the reserved window");
_Static_assert(GP_ACCESS_WIN + GP_ACCESS_WIN_PAGES * 4096ull <= GP_SLOT_BASE,
	       "the access window ends below the vCPU slots");

static inline int gp_guest_range_ok(uint64_t gva, uint64_t len)
{
	uint64_t end = gva + len;

	return !((gva | len) & 4095) && len && end > gva && end <= GP_USER_TOP &&
	       (end <= GP_RESV_BASE || gva >= GP_RESV_END);
}

/* May the guest run or fault at @gva (any byte of a page it may own). */
static inline int gp_guest_va_ok(uint64_t gva)
{
	return gva < GP_USER_TOP && (gva < GP_RESV_BASE || gva >= GP_RESV_END);
}

#define GP_MAX_BACKINGS 1024

/* gp_vm_create_flags(): opt out of trapping CPUID / RDTSC(P) in the vCPU
 * threads (each costs a trapped MSR or CR4 write per context switch on a
 * virtualised host).  Passed to the stub as argv[1]. */
#define GP_VM_NO_CPUID_FAULT 0x1u
#define GP_VM_NO_TSC_FAULT 0x2u
/* Tests only: leave the process dumpable, so that a test can read its
 * /proc/PID/fd and maps (by default no process without CAP_SYS_PTRACE,
 * the VMM included, can inspect or trace it). */
#define GP_VM_DUMPABLE 0x4u

/* Signals of the protocol (raw kernel numbers; the stub has no libc). */
#define GP_SIG_KICK 10  /* SIGUSR1: gp_vcpu_kick() */
#define GP_SIG_START 12 /* SIGUSR2: a new vCPU thread enters its handler */

struct gp_cpu {          /* what runs natively; everything else is VMM-side state */
	uint64_t gpr[16];    /* rax rcx rdx rbx rsp rbp rsi rdi r8..r15 (x86 encoding order) */
	uint64_t rip, rflags;  /* rflags: the user-settable bits; IF/IOPL are VMM-side */
	uint64_t fs_base, gs_base;
	uint32_t mode;       /* GP_MODE_*: the host code segment the guest runs in */
	uint32_t pad;
};

/*
 * gp_cpu.mode.  64: the host's 64-bit user code segment (__USER_CS, 0x33).
 * 32: its 32-bit one (__USER32_CS, 0x23, compatibility mode), for a guest
 * in 32-bit protected mode or long-mode compatibility mode with flat
 * segments; DS, ES, FS and GS then hold the flat user data selector
 * (__USER_DS, 0x2b), because compatibility mode faults accesses through a
 * null selector, and RIP and the FS/GS bases must lie below 4 GiB.  On a
 * stop the stub reports the segment the guest was in; OTHER: neither
 * (guest code far-jumped to a selector of the host's own).
 */
enum { GP_MODE_64 = 0, GP_MODE_32 = 1, GP_MODE_OTHER = 2 };

/* The RFLAGS bits rt_sigreturn restores from the frame: CF PF AF ZF SF TF
 * DF OF RF AC.  Bit 1 always reads as 1.  RF is the VMM's to set: the
 * kernel leaves it set in the frame of an instruction breakpoint's trap,
 * and a run must be able to hit that breakpoint again. */
#define GP_RFLAGS_USER 0x50dd5ull
#define GP_RFLAGS_FIXED 0x2ull

struct gp_map {          /* mmap(gva, len, prot, MAP_SHARED|MAP_FIXED, backing, offset) */
	uint64_t gva, len, offset;
	uint32_t backing;    /* id from gp_vm_add_backing */
	int32_t prot;        /* PROT_* */
};

enum gp_trap_kind {
	GP_TRAP_PF,      /* SIGSEGV MAPERR/ACCERR: addr = CR2, err = #PF error code */
	GP_TRAP_GP,      /* #GP (SIGSEGV SI_KERNEL): err = error code */
	GP_TRAP_UD,      /* SIGILL */
	GP_TRAP_DE,      /* SIGFPE integer divide */
	GP_TRAP_MF, GP_TRAP_XM,  /* x87 / SIMD floating point */
	GP_TRAP_BP,      /* INT3: rip already after it */
	GP_TRAP_DB,      /* single step / debug */
	GP_TRAP_AC,      /* SIGBUS alignment */
	GP_TRAP_SYSCALL, /* guest executed SYSCALL (refused by seccomp) */
	GP_TRAP_KICK,    /* gp_vcpu_kick() */
	GP_TRAP_OTHER,   /* anything else: signo/code set */
	GP_TRAP_HWBP,    /* a breakpoint armed with gp_hwbp: err = its index, addr = the
			  * address that matched; an instruction breakpoint stops
			  * before the instruction, a data one after it */
};

/* ---- hardware breakpoints (perf_event_open(PERF_TYPE_BREAKPOINT) in the vCPU
 * thread, attr.sigtrap: a synchronous SIGTRAP with si_code TRAP_PERF) ---- */

#define GP_NR_HWBP 4
enum { GP_HWBP_OFF = 0, GP_HWBP_X = 1, GP_HWBP_W = 2, GP_HWBP_RW = 3 };

struct gp_hwbp {
	uint64_t addr;       /* X: the instruction; W/RW: aligned to len */
	uint32_t type;       /* GP_HWBP_* */
	uint32_t len;        /* W/RW: 1, 2, 4 or 8; X: ignored */
};

struct gp_trap {
	uint32_t kind, signo, code, trapno;  /* trapno: the host's vector */
	uint64_t err, addr;
	uint8_t insn[16];    /* bytes at rip as the vCPU thread sees them */
	uint8_t insn_len;    /* how many of them were readable (0 if none) */
	uint8_t pad[7];
};

/* ---- the per-vCPU mailbox (one shared memfd, GP_MBOX_SIZE bytes) ---------- */

/* mbox.state: who owns the mailbox.  The stub stores POSTED (release) when
 * it has written a trap; the VMM stores GUEST (release) with a command and
 * wakes the futex.  Each side reads the other's data only after an acquire
 * load of the state that pairs with that store. */
enum { GP_MB_GUEST = 0, GP_MB_POSTED = 1 };

/* mbox.cmd, read by the stub when it sees GP_MB_GUEST. */
enum {
	GP_CMD_RUN = 1,   /* apply maps, load cpu (and xsave if xsave_in), run */
	GP_CMD_MAPS = 2,  /* apply maps, post back at once (more maps follow) */
	GP_CMD_EXIT = 3,  /* the thread exits (gp_vcpu_destroy) */
};

#define GP_MBOX_MAPS 256
#define GP_XSAVE_MAX 16384
#define GP_MBOX_SIZE 0x8000u

struct gp_mbox {
	uint32_t state;           /* futex word (shared, not private) */
	uint32_t waiter_sleeping; /* VMM: set before it sleeps (Dekker with state) */
	uint32_t kick_req;        /* gp_vcpu_kick(): consumed by the stub */
	uint32_t cmd;
	int32_t err;              /* answer: 0 or -errno (a map, a register load) */
	uint32_t map_failed;      /* index of the failed map in this command */
	uint32_t nr_maps;
	uint32_t xsave_in;        /* VMM: load xsave[] into the guest on this run */
	uint32_t xsave_len;       /* stub: bytes of the guest's image in xsave[] */
	uint32_t hwbp_in;         /* VMM: arm hwbp[] on this run; the stub clears it
				   * once armed (an error stops the run, it stays set) */
	struct gp_hwbp hwbp[GP_NR_HWBP];
	uint64_t xfeatures;       /* stub: the frame's XSAVE features (XCR0 & user) */
	struct gp_cpu cpu;
	struct gp_trap trap;
	struct gp_map maps[GP_MBOX_MAPS];
	uint8_t xsave[GP_XSAVE_MAX] __attribute__((aligned(64)));
};

_Static_assert(sizeof(struct gp_mbox) <= GP_MBOX_SIZE, "mailbox too big");

/* ---- control socket (SOCK_SEQPACKET, fd 3 in the stub) -------------------- */

#define GP_HELLO_MAGIC 0x67707231u /* "gpr1" */

/* The stub's first message. */
struct gp_hello {
	uint32_t magic;
	uint32_t cpuid_faulting; /* ARCH_SET_CPUID(0) took */
	uint32_t tsc_faulting;   /* PR_SET_TSC(PR_TSC_SIGSEGV) took */
	uint32_t pad;
};

enum {
	GP_OP_ADD_BACKING = 1, /* fd by SCM_RIGHTS; ret = id */
	GP_OP_REMOVE_BACKING,  /* arg = id */
	GP_OP_UNMAP,           /* gva, len */
	GP_OP_PROTECT,         /* gva, len, prot */
	GP_OP_VCPU_CREATE,     /* arg = slot; fds mailbox memfd, eventfd; ret = tid */
	GP_OP_VCPU_REAP,       /* arg = slot: wait for its thread's exit, free the slot */
	GP_OP_FALLOCATE,       /* arg = backing id, prot = mode, gva = offset, len */
	GP_OP_CREATE_BACKING,  /* len = size, arg = GP_BACKING_*: a new file only the process
				  holds; ret = id */
	GP_OP_ZERO,            /* arg = backing id, gva = offset, len: write zeroes there */
	GP_OP_ACCESS,          /* arg = backing id, gva = offset, len, prot = GP_ACC_*: the
				  CPU's own access to a page it holds (gp_vm_access()) */
};

/*
 * GP_OP_ACCESS: at most GP_ACCESS_MAX bytes within one page.  READ: the
 * answer's data; WRITE: the request's data; CMPXCHG: len 4 or 8, aligned,
 * data[0] the expected value, data[1] the new one; ret 0 if it was
 * swapped, 1 if not, and the answer's data[0] is what was there.
 */
enum { GP_ACC_READ = 0, GP_ACC_WRITE = 1, GP_ACC_CMPXCHG = 2 };
#define GP_ACCESS_MAX 64u

/* GP_OP_CREATE_BACKING's kinds of file. */
#define GP_BACKING_MEMFD 0u
#define GP_BACKING_SECRETMEM 1u /* memfd_secret(2): out of the kernel's direct map */

struct gp_req {
	uint32_t op, arg;
	uint64_t gva, len;
	int32_t prot;
	uint32_t pad;
	uint64_t data[GP_ACCESS_MAX / 8]; /* GP_OP_ACCESS */
};

struct gp_resp {
	int32_t ret; /* >= 0 or -errno */
	uint32_t pad;
	uint64_t data[GP_ACCESS_MAX / 8]; /* GP_OP_ACCESS */
};

#endif
