/* SPDX-License-Identifier: MIT */
/*
 * emulate.h - carry out one trapped guest instruction on a register file.
 *
 * The x86 backend's stub decodes the instruction at the trapping RIP
 * (decode.h) and hands it here with the vCPU's registers.  The emulator
 * either applies the instruction (X86_EMU_DONE: registers written, RIP past
 * it), asks for an exception to be injected (registers untouched), or stops
 * at an exit the VMM must see (port I/O, MMIO, HLT, hypercall, user-space
 * MSR).  After the VMM answers, x86_emu_complete() finishes the instruction,
 * as KVM_RUN's re-entry does.
 *
 * Guest memory is reached only through struct x86_emu_ops (guest-virtual
 * reads and writes that may fail with a page fault or land on MMIO), so the
 * page-table walker plugs in from outside.  Everything is pure: no signals,
 * no system calls, no allocation.
 *
 * How an instruction with exits is finished: registers are written only once
 * every access of the instruction succeeded.  An access that exits (I/O,
 * MMIO, hypercall, MSR exit) is recorded with its sequence number; on
 * completion the instruction runs again from the start and the recorded
 * accesses answer with the VMM's data instead of exiting.  A read-modify-write
 * on MMIO therefore exits twice (read, then write), as in KVM.
 *
 * Not modelled (X86_EMU_UNHANDLED or silently flat): segment limit and type
 * checks (flat segments assumed), the alignment check, DR7.GD and TF traps
 * after an emulated instruction, task switches, IRET to CPL>0 or to
 * virtual-8086 mode, LDT descriptors, PAE PDPTR loads on CR writes in 32-bit
 * PAE paging, string I/O from or to MMIO, MMIO accesses wider than 8 bytes
 * (SSE/AVX forms), CMPXCHG/XADD/NOT/NEG/shifts/BT on MMIO, AMD's LOCK MOV CR0
 * alias of CR8.  An access that crosses a page is one callback call: the
 * walker splits it if it must.
 */
#ifndef GM_VCPU_X86_EMULATE_H
#define GM_VCPU_X86_EMULATE_H

#include "vcpu/x86/decode.h"

#include <stdbool.h>
#include <stdint.h>

/* Architectural bits the emulator uses. */
#define X86_CR0_PE (1ull << 0)
#define X86_CR0_MP (1ull << 1)
#define X86_CR0_EM (1ull << 2)
#define X86_CR0_TS (1ull << 3)
#define X86_CR0_ET (1ull << 4)
#define X86_CR0_NE (1ull << 5)
#define X86_CR0_WP (1ull << 16)
#define X86_CR0_AM (1ull << 18)
#define X86_CR0_NW (1ull << 29)
#define X86_CR0_CD (1ull << 30)
#define X86_CR0_PG (1ull << 31)
#define X86_CR4_DE (1ull << 3)
#define X86_CR4_PAE (1ull << 5)
#define X86_CR4_PGE (1ull << 7)
#define X86_CR4_PCIDE (1ull << 17)
#define X86_CR4_OSXSAVE (1ull << 18)
#define X86_CR4_SMEP (1ull << 20)
#define X86_CR4_LA57 (1ull << 12)
#define X86_CR4_TSD (1ull << 2)
#define X86_EFER_SCE (1ull << 0)
#define X86_EFER_LME (1ull << 8)
#define X86_EFER_LMA (1ull << 10)
#define X86_EFER_NXE (1ull << 11)
#define X86_RFLAGS_CF (1ull << 0)
#define X86_RFLAGS_FIXED (1ull << 1)
#define X86_RFLAGS_PF (1ull << 2)
#define X86_RFLAGS_AF (1ull << 4)
#define X86_RFLAGS_ZF (1ull << 6)
#define X86_RFLAGS_SF (1ull << 7)
#define X86_RFLAGS_TF (1ull << 8)
#define X86_RFLAGS_IF (1ull << 9)
#define X86_RFLAGS_DF (1ull << 10)
#define X86_RFLAGS_OF (1ull << 11)
#define X86_RFLAGS_IOPL (3ull << 12)
#define X86_RFLAGS_NT (1ull << 14)
#define X86_RFLAGS_RF (1ull << 16)
#define X86_RFLAGS_VM (1ull << 17)
#define X86_RFLAGS_AC (1ull << 18)
#define X86_RFLAGS_VIF (1ull << 19)
#define X86_RFLAGS_VIP (1ull << 20)
#define X86_RFLAGS_ID (1ull << 21)
#define X86_RFLAGS_ARITH (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | \
			  X86_RFLAGS_SF | X86_RFLAGS_OF)

#define X86_MSR_STAR 0xc0000081u
#define X86_MSR_LSTAR 0xc0000082u
#define X86_MSR_CSTAR 0xc0000083u
#define X86_MSR_FMASK 0xc0000084u
#define X86_MSR_TSC_AUX 0xc0000103u

/* Exception vectors. */
enum { X86_DE = 0, X86_DB = 1, X86_BP = 3, X86_UD = 6, X86_NM = 7, X86_TS = 10, X86_NP = 11,
       X86_SS = 12, X86_GP = 13, X86_PF = 14 };

struct x86_exception {
	uint8_t vector;
	bool has_error_code;
	uint32_t error_code;
	uint64_t cr2;		/* #PF only */
};

struct x86_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, dpl;
	bool present, s, db, l, g, unusable;
};

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
};

/* The vCPU state the emulator reads and writes. */
struct x86_regs {
	uint64_t gpr[16];	/* enum x86_gpr order */
	uint64_t rip, rflags;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, xcr0;
	uint64_t dr[8];		/* dr[4], dr[5] unused (aliases of 6, 7) */
	uint64_t kernel_gs_base; /* MSR 0xc0000102, for SWAPGS */
	struct x86_segment seg[X86_NR_SEGS];
	struct x86_segment tr, ldt;
	struct x86_dtable gdt, idt;
	uint8_t cpl;
	/* System Management Mode (smm.h): in it, and MSR_IA32_SMBASE. */
	bool smm;
	uint32_t smbase;
};

/* What the guest's CPU model allows (from KVM_SET_CPUID2 / host support). */
struct x86_cpu_model {
	uint64_t cr4_reserved;	/* CR4 bits that #GP */
	uint64_t xcr0_supported; /* XCR0 bits XSETBV may set (x87 always may) */
	uint8_t maxphyaddr;	/* CR3 bits at or above it #GP in long mode */
	uint64_t dr6_fixed;	/* DR6 bits that read as 1 (0xffff0ff0 less RTM/bus lock) */
	/* The vendor module's hypercall (X86_OP_VMCALL or X86_OP_VMMCALL; 0:
	 * either is one).  The other vendor's is rewritten in guest memory to
	 * this one and run again under KVM_X86_QUIRK_FIX_HYPERCALL_INSN
	 * (fix_hypercall), and is #UD without it. */
	uint8_t hypercall_op;
	bool fix_hypercall;
	bool lm;		/* CPUID has long mode: SMM's 64-bit save area (smm.h) */
};

/* Return values of the memory callbacks. */
#define X86_MEM_OK 0
#define X86_MEM_FAULT 1	/* *ex filled (usually #PF with cr2) */
#define X86_MEM_MMIO 2	/* *gpa filled: no memslot behind it */
/* Return values of the MSR callbacks. */
#define X86_MSR_OK 0
#define X86_MSR_GP 1	/* inject #GP(0) */
#define X86_MSR_EXIT 2	/* exit to user space (KVM_CAP_X86_USER_SPACE_MSR) */

struct x86_emu_ops {
	/* Guest-virtual accesses of @len bytes (1..8, or one string chunk of
	 * at most a page not crossing a page).  @write tells the walker which
	 * permission to check. */
	int (*read)(void *ctx, uint64_t gva, void *buf, unsigned len, uint64_t *gpa,
		    struct x86_exception *ex);
	int (*write)(void *ctx, uint64_t gva, const void *buf, unsigned len, uint64_t *gpa,
		     struct x86_exception *ex);
	int (*rdmsr)(void *ctx, uint32_t index, uint64_t *val);
	int (*wrmsr)(void *ctx, uint32_t index, uint64_t val);
	void (*cpuid)(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4]);
	uint64_t (*rdtsc)(void *ctx);
	/* Optional: the VMM's MSR filter, asked before any MSR is touched,
	 * those in x86_regs included.  X86_MSR_OK, or what the refused access
	 * comes to: X86_MSR_GP or X86_MSR_EXIT (a user-space exit). */
	int (*msr_filter)(void *ctx, uint32_t index, bool write);
	/* Guest-physical read in the vCPU's current address space (RSM reads
	 * the SMM state-save area so): 0, or -1 if any byte is not RAM. */
	int (*read_phys)(void *ctx, uint64_t gpa, void *buf, unsigned len);
};

enum x86_emu_status {
	X86_EMU_DONE,		/* applied; RIP is past the instruction */
	X86_EMU_EXCEPTION,	/* inject res.ex; registers unchanged */
	X86_EMU_EXIT_IO,	/* res.io; finish with x86_emu_complete() */
	X86_EMU_EXIT_MMIO,	/* res.mmio */
	X86_EMU_EXIT_HLT,	/* RIP already past HLT (as KVM reports it) */
	X86_EMU_EXIT_HYPERCALL,	/* res.hypercall; set .ret, then complete */
	X86_EMU_EXIT_MSR,	/* res.msr; set .error/.data, then complete */
	X86_EMU_UNHANDLED,	/* cannot emulate: an emulation-failure exit */
	X86_EMU_SOFT_INT,	/* INT n/INT3/INTO/INT1: deliver res.ex.vector through
				 * the IDT; RIP is already past the instruction (the
				 * return address the frame must hold) */
	X86_EMU_SHUTDOWN,	/* a triple fault (an RSM that could not load the
				 * saved state); registers as far as it got */
};

/* Side effects the backend must act on (res.effects). */
#define X86_FX_TLB_FLUSH (1u << 0)	/* non-global translations (CR3 write) */
#define X86_FX_TLB_FLUSH_ALL (1u << 1)	/* everything (CR4.PGE/PCIDE, CR0.PG) */
#define X86_FX_INVLPG (1u << 2)		/* res.invlpg_gva */
#define X86_FX_MMU_MODE (1u << 3)	/* CR0/CR4 paging bits changed */
#define X86_FX_IF_ON (1u << 4)		/* IF went 0 -> 1: check the interrupt window */
#define X86_FX_STI_SHADOW (1u << 5)	/* STI: no interrupt before the next insn */
#define X86_FX_DTABLES (1u << 6)	/* GDT/IDT/TR/LDT changed */
#define X86_FX_SEGMENTS (1u << 7)	/* CS/SS/CPL changed (IRET, SYSCALL, SYSRET) */
#define X86_FX_CR8 (1u << 8)
#define X86_FX_XCR0 (1u << 9)
#define X86_FX_DEBUG (1u << 10)		/* DR0-7 written */
#define X86_FX_IRET_NMI (1u << 11)	/* IRET: NMIs are unblocked */
#define X86_FX_EFER (1u << 12)		/* EFER written (WRMSR) */
#define X86_FX_SMM_LEFT (1u << 13)	/* RSM: out of SMM; smbase may have changed */

struct x86_emu_result {
	uint8_t status;		/* enum x86_emu_status */
	uint32_t effects;	/* X86_FX_* */
	struct x86_exception ex;
	uint64_t invlpg_gva;
	struct {
		uint8_t direction;	/* 0 in, 1 out (KVM_EXIT_IO_*) */
		uint8_t size;
		uint16_t port;
		uint32_t count;		/* data at the emulator's pio_data */
	} io;
	struct {
		uint64_t gpa, gva;
		uint8_t data[8];
		uint32_t len;
		bool is_write;
	} mmio;
	struct {
		uint64_t nr, args[5], ret;
		bool longmode;
	} hypercall;
	struct {
		uint32_t index;
		bool is_write;
		uint8_t error;		/* set by the VMM: non-zero injects #GP(0) */
		uint64_t data;
	} msr;
};

#define X86_EMU_MAX_EXITS 4

/* One emulation in progress; embed per vCPU, init with x86_emu_init(). */
struct x86_emu {
	const struct x86_emu_ops *ops;
	void *ctx;
	const struct x86_cpu_model *model;
	uint8_t *pio_data;	/* a page: kvm_run + io.data_offset */
	/* Pending instruction and the exits it already took (see top). */
	struct x86_insn insn;
	bool pending;
	unsigned nr_done, seq;
	struct {
		uint8_t kind;
		uint64_t addr, data;	/* MMIO/MSR: data; hypercall: ret */
		uint8_t bytes[8];
		uint8_t error;
	} done[X86_EMU_MAX_EXITS];
};

void x86_emu_init(struct x86_emu *emu, const struct x86_emu_ops *ops, void *ctx,
		  const struct x86_cpu_model *model, uint8_t *pio_data);

/* 6.12's __kvm_set_xcr rules for XCR0, @supported the guest's XCR0 bits
 * (XSETBV and KVM_SET_XCRS alike). */
bool x86_xcr0_valid(uint64_t xcr0, uint64_t supported);

/* The mode to decode in, or -1 for states the backend does not run (real
 * mode, virtual-8086). */
int x86_cpu_mode(const struct x86_regs *regs);

/**
 * x86_emulate - carry out @insn (decoded at regs->rip) on @regs.
 * Context: any thread that owns the vCPU; no locks needed.
 * Return: res->status.  An exit leaves the instruction pending: call
 * x86_emu_complete() after the VMM answered, or x86_emu_cancel().
 */
int x86_emulate(struct x86_emu *emu, struct x86_regs *regs, const struct x86_insn *insn,
		struct x86_emu_result *res);

/**
 * x86_emu_complete - finish the pending instruction with the VMM's answer
 * in @res (the one the exit returned: IN data in pio_data, MMIO read data in
 * res->mmio.data, res->hypercall.ret, res->msr.error/data).
 * Return: like x86_emulate(); may exit again (MMIO read-modify-write).
 */
int x86_emu_complete(struct x86_emu *emu, struct x86_regs *regs, struct x86_emu_result *res);

/* Drop a pending instruction (the VMM changed RIP, or a reset). */
void x86_emu_cancel(struct x86_emu *emu);

/* Linear address of a memory operand (segment base included, wrapped). */
uint64_t x86_ea_linear(const struct x86_regs *regs, const struct x86_insn *insn);

#endif
