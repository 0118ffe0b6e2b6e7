/* SPDX-License-Identifier: MIT */
/*
 * smm.h - System Management Mode: the state-save area KVM writes at SMI
 * and reads back at RSM, and the CPU state SMM starts in.
 *
 * KVM keeps its own layout at SMBASE + 0xfe00 (512 bytes): AMD64's for a
 * guest whose CPUID has long mode, the Intel P6 one otherwise.  A VMM or
 * firmware that inspects or edits the area (smm_test reads it, OVMF
 * patches SMBASE in it) sees the same bytes as under KVM.  The offsets
 * below are the architectural/KVM ones.
 *
 * Pure: no vCPU, no memory access.  The RSM instruction itself is in
 * emulate.c; the SMI, address space 1 and the loop in x86_run.c.
 */
#ifndef GM_VCPU_X86_SMM_H
#define GM_VCPU_X86_SMM_H

#include <stdbool.h>
#include <stdint.h>

#include "vcpu/x86/emulate.h"

#define X86_SMRAM_SAVE_OFFSET 0xfe00u /* from SMBASE */
#define X86_SMRAM_SAVE_SIZE 512u
#define X86_SMM_ENTRY_RIP 0x8000u
#define X86_SMBASE_RESET 0x30000u

/* What the save area holds, for RSM (the registers KVM reloads). */
struct x86_smram_state {
	uint64_t gpr[16];	/* 32-bit layout: the low 8 */
	uint64_t rip, rflags, cr0, cr3, cr4, efer, dr6, dr7;
	uint32_t smbase;
	uint8_t int_shadow;
	struct x86_segment seg[X86_NR_SEGS], tr, ldt;
	struct x86_dtable gdt, idt;
};

/*
 * Fill @out (X86_SMRAM_SAVE_SIZE bytes, zeroed first) with @r as KVM
 * saves it at SMI: the 64-bit layout if @lm (the guest has long mode).
 */
void x86_smram_save(const struct x86_regs *r, bool lm, uint32_t smbase, uint8_t int_shadow,
		    uint8_t *out);
/* Read the area @in back (the same layout choice). */
void x86_smram_load(const uint8_t *in, bool lm, struct x86_smram_state *s);
/*
 * The state SMM starts in at @smbase (enter_smm): real-mode-like with
 * 4 GiB limits, CS base SMBASE, RIP 0x8000, CR0's PE/EM/TS/PG and CR4
 * cleared, IDT limit 0, DR7 at reset, EFER 0 with long mode.
 */
void x86_smm_entry_regs(struct x86_regs *r, uint32_t smbase, bool lm);

#endif
