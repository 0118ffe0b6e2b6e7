/* SPDX-License-Identifier: MIT */
/*
 * decode.h - x86 decoder for the instructions a deprivileged guest traps on.
 *
 * Guest code runs natively at CPL3 (docs/design-guest-execution-and-isolation.md);
 * what the host CPU refuses (#GP, #UD) or what touches a page with no memslot
 * behind it (MMIO) arrives here as bytes at the faulting RIP.  The decoder
 * knows exactly the instructions the emulator (emulate.h) carries out, plus
 * the plain ALU/MOV forms a guest uses on device memory; anything else is
 * -ENOENT, which the backend reports as an emulation failure.
 *
 * Pure: no state, no allocation, no system calls.  Safe from a signal handler.
 */
#ifndef GM_VCPU_X86_DECODE_H
#define GM_VCPU_X86_DECODE_H

#include <stdbool.h>
#include <stdint.h>

#define X86_MAX_INSN_LEN 15

/* Segment registers in the order of their encoding (ModRM reg of MOV Sreg). */
enum x86_seg { X86_SEG_ES, X86_SEG_CS, X86_SEG_SS, X86_SEG_DS, X86_SEG_FS, X86_SEG_GS,
	       X86_NR_SEGS };

/* General registers in encoding order. */
enum x86_gpr { X86_RAX, X86_RCX, X86_RDX, X86_RBX, X86_RSP, X86_RBP, X86_RSI, X86_RDI,
	       X86_R8, X86_R9, X86_R10, X86_R11, X86_R12, X86_R13, X86_R14, X86_R15 };

/* The code segment's default operand/address size: the CPU mode to decode in. */
enum x86_mode { X86_MODE_16 = 2, X86_MODE_32 = 4, X86_MODE_64 = 8 };

/* Instruction classes the emulator knows. */
enum x86_op {
	X86_OP_NONE,
	/* port I/O */
	X86_OP_IN, X86_OP_OUT, X86_OP_INS, X86_OP_OUTS,
	/* flow, flags, interrupts */
	X86_OP_HLT, X86_OP_CLI, X86_OP_STI, X86_OP_PUSHF, X86_OP_POPF, X86_OP_IRET,
	/* control and debug registers */
	X86_OP_MOV_FROM_CR, X86_OP_MOV_TO_CR, X86_OP_MOV_FROM_DR, X86_OP_MOV_TO_DR,
	X86_OP_LMSW, X86_OP_CLTS,
	/* MSRs, TSC, CPUID, XCR0 */
	X86_OP_RDMSR, X86_OP_WRMSR, X86_OP_RDTSC, X86_OP_RDTSCP, X86_OP_CPUID, X86_OP_XSETBV,
	/* hypercalls */
	X86_OP_VMCALL, X86_OP_VMMCALL,
	/* descriptor tables, TLB, caches */
	X86_OP_LGDT, X86_OP_LIDT, X86_OP_LTR, X86_OP_LLDT, X86_OP_INVLPG, X86_OP_WBINVD,
	X86_OP_INVD,
	/* system calls */
	X86_OP_SWAPGS, X86_OP_SYSCALL, X86_OP_SYSRET,
	/* memory-operand forms (MMIO) */
	X86_OP_MOV,	/* dst <- src: 88/89/8a/8b/c6/c7/a0-a3, b0-bf (imm to reg) */
	X86_OP_MOVZX,	/* 0f b6/b7 */
	X86_OP_MOVSX,	/* 0f be/bf, 63 (MOVSXD) */
	X86_OP_ALU,	/* add/or/adc/sbb/and/sub/xor/cmp, insn.alu says which */
	X86_OP_TEST,
	X86_OP_XCHG,
	X86_OP_INC, X86_OP_DEC,
	/* software interrupts: INT3, INT n, INTO, INT1 (vector in imm) */
	X86_OP_INT,
	/* string stores and moves on memory (MMIO): one element per call */
	X86_OP_STOS, X86_OP_MOVS,
	/* segment loads the host refuses (guest selectors name the host's
	 * GDT): MOV to DS/ES/FS/GS/SS (8e, modrm_reg the segment), and the
	 * direct far JMP outside 64-bit mode (ea: imm = offset, the selector
	 * in bits 32-47) */
	X86_OP_MOV_SREG, X86_OP_JMP_FAR,
	/* code the emulator runs itself (SMM, src/vcpu/x86/smm.h): RSM, and
	 * the near JMP (eb/e9, imm = the sign-extended displacement) */
	X86_OP_RSM, X86_OP_JMP_NEAR,
	X86_OP_COUNT
};

/* insn.alu for X86_OP_ALU: the ModRM /digit of group 1 (80/81/83). */
enum x86_alu { X86_ALU_ADD, X86_ALU_OR, X86_ALU_ADC, X86_ALU_SBB, X86_ALU_AND, X86_ALU_SUB,
	       X86_ALU_XOR, X86_ALU_CMP };

/* Where an operand lives. */
enum x86_opnd_kind { X86_OPND_NONE, X86_OPND_REG, X86_OPND_MEM, X86_OPND_IMM };

/* Register operands: 0-15 (GPRs); byte registers without REX 4-7 are AH..BH. */
struct x86_opnd {
	uint8_t kind;	/* enum x86_opnd_kind */
	uint8_t reg;	/* X86_OPND_REG */
	bool high8;	/* AH/CH/DH/BH (legacy byte register encoding) */
};

/* Effective address inputs: seg:(base + index*scale + disp), adsize-wrapped. */
struct x86_ea {
	int8_t base;	/* GPR, -1: none */
	int8_t index;	/* GPR, -1: none */
	uint8_t scale;	/* 1, 2, 4, 8 */
	bool rip_rel;	/* base is the address of the next instruction */
	int64_t disp;	/* sign-extended (moffs: the full zero-extended offset) */
	uint8_t seg;	/* enum x86_seg after the override and the SS default */
};

struct x86_insn {
	uint8_t len;		/* bytes, prefixes included */
	uint8_t op;		/* enum x86_op */
	uint8_t alu;		/* enum x86_alu for X86_OP_ALU */
	uint8_t mode;		/* enum x86_mode it was decoded in */
	uint8_t opsize;		/* destination/operation size in bytes: 1, 2, 4, 8 */
	uint8_t srcsize;	/* MOVZX/MOVSX source size; else == opsize */
	uint8_t adsize;		/* 2, 4, 8 */
	uint8_t rep;		/* 0, 0xf2 or 0xf3 (last one given) */
	bool lock;
	int8_t seg_override;	/* enum x86_seg, -1: none */
	uint8_t rex;		/* 0 when absent (or cancelled by a later prefix) */
	uint8_t map;		/* 0: one-byte opcode, 1: 0f xx */
	uint8_t opcode;
	bool has_modrm;
	uint8_t modrm_mod, modrm_reg, modrm_rm; /* reg/rm extended by REX.R/B */
	struct x86_ea ea;	/* valid when an operand is X86_OPND_MEM */
	struct x86_opnd dst, src;
	uint64_t imm;		/* sign/zero extended to 64 bits as the CPU does */
	uint8_t imm_size;
	uint8_t nr_prefixes;
};

/* Decoder return values beyond 0 (decoded): */
#define X86_DECODE_ENOENT (-2)	/* not an instruction this module emulates */
#define X86_DECODE_UD (-3)	/* the CPU raises #UD (e.g. LOCK misuse, CR5) */
#define X86_DECODE_GP (-4)	/* longer than 15 bytes: #GP(0) */
#define X86_DECODE_SHORT (-5)	/* needs more bytes than given */

/**
 * x86_decode - decode one instruction.
 * @bytes, @avail: the instruction bytes at RIP (at most 15 are looked at);
 *	pass what could be fetched before the next unreadable page.
 * @mode: the CS default size (64-bit mode: EFER.LMA and CS.L).
 * @insn: filled on success.
 *
 * Return: 0, or one of the X86_DECODE_* values above.
 */
int x86_decode(const uint8_t *bytes, unsigned avail, enum x86_mode mode, struct x86_insn *insn);

/* A name for diagnostics ("in", "mov_to_cr", ...). */
const char *x86_op_name(unsigned op);

#endif
