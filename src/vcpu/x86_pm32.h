/* SPDX-License-Identifier: MIT */
/*
 * Which host code segment a vCPU's state runs in, for the x86 backend
 * (x86_run.c): 64-bit long mode runs in the host's 64-bit user code
 * segment, 32-bit code in its compatibility-mode one (gproc_abi.h's
 * GP_MODE_32).  The host CPU then applies the guest's 32-bit semantics
 * itself (operand and address sizes, 4 GiB wrap, the instruction set);
 * what it cannot take from the guest is segmentation, because the guest
 * process runs with the host's flat segments.
 *
 * So a 32-bit state runs only with flat segments:
 *  - CS, SS, DS, ES: base 0, limit 4 GiB - 1 (byte-granular, as KVM's
 *    kvm_segment holds it), not expand-down; DS, ES and SS writable.  DS,
 *    ES and SS may be unusable (null); the host then still lets accesses
 *    through them succeed where the CPU would raise #GP.
 *  - FS, GS: any base below 4 GiB (the stub sets it with WRFSBASE/
 *    WRGSBASE; a non-zero base needs FSGSBASE on the host), limit 4 GiB - 1,
 *    or unusable.
 *  - EIP below 4 GiB.
 * Covered: 32-bit protected mode with or without paging (CR0.PG = 0: the
 * guest-virtual address is the physical one, and the shadow maps it 1:1
 * onto stage-2), 2-level (4 KiB and, with CR4.PSE, 4 MiB pages) and PAE
 * paging, and long-mode compatibility mode (EFER.LMA, CS.L = 0, CS.D = 1).
 * Real mode, virtual-8086 mode and 16-bit code (CS.D = 0) do not run.
 */
#ifndef GM_VCPU_X86_PM32_H
#define GM_VCPU_X86_PM32_H

#include <stdbool.h>
#include <stdint.h>

#include "vcpu/x86/emulate.h"

/*
 * gp_cpu.mode for running @r natively (GP_MODE_64 or GP_MODE_32), or -1
 * when the backend cannot run that state (KVM_EXIT_INTERNAL_ERROR).
 */
int x86_pm32_run_mode(const struct x86_regs *r);

/*
 * Whether the paging state has 4 MiB pages (2-level paging with CR4.PSE).
 * The shadow maps and flushes large guest pages in runs of at most 2 MiB
 * (x86_run.c's run_pages), so an INVLPG there must also flush the other
 * 2 MiB half of a 4 MiB page: @gva ^ X86_PM32_HALF_4M.
 */
#define X86_PM32_HALF_4M (1ull << 21)
#define X86_PM32_CR4_PSE (1ull << 4)
bool x86_pm32_has_4m_pages(uint64_t cr0, uint64_t cr4, uint64_t efer);

#endif
