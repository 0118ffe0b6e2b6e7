/* SPDX-License-Identifier: MIT */
/*
 * The guest's own page tables, walked as the hardware walks them: a module
 * shared by KVM_TRANSLATE and the x86 execution backend.
 *
 * Modes: no paging (the linear address is the physical one), 32-bit
 * paging (4-byte entries, 4 MiB pages with CR4.PSE), PAE (the four PDPTEs
 * at CR3), 4-level and 5-level (CR4.LA57) long mode with 2 MiB and 1 GiB
 * pages.
 *
 * Semantics, for an access described by X86_PF_* bits (WRITE, USER,
 * FETCH):
 *  - Present: every level must be present, else a fault without P.
 *  - Reserved bits: physical-address bits at or above the guest's
 *    MAXPHYADDR, the PS bit where no large page exists (PML5E, PML4E, and
 *    PDPTE without 1 GiB pages), the low bits of a large page's frame,
 *    the XD bit when EFER.NXE is clear, PAE PDPTE bits 1-2 and 5-8, bits
 *    17-21 of a 32-bit 4 MiB page (PSE-36): a fault with P and RSVD,
 *    found before any permission check.  In 32-bit paging PS is ignored
 *    without CR4.PSE.
 *  - R/W: a write needs R/W at every level, unless it is a supervisor
 *    write with CR0.WP clear.
 *  - U/S: a user access needs U/S at every level.  A supervisor data
 *    access to a user page faults with CR4.SMAP unless RFLAGS.AC is set
 *    (implicit supervisor accesses always do); a supervisor fetch from a
 *    user page faults with CR4.SMEP.
 *  - XD: with EFER.NXE, a fetch faults if any level has bit 63 set.
 *  - Accessed and dirty: on success every entry walked gets A set, and the
 *    leaf gets D for a write, each with a compare-exchange of the guest's
 *    entry; if the guest changed an entry meanwhile the walk starts over.
 *    Faulting walks set nothing.
 * The error code on a fault is the #PF one: P if the entry was present
 * (a protection or reserved-bit fault), W, U and I/D from the access (I/D
 * only with NXE or SMEP), RSVD for reserved bits.
 *
 * Context: any; the walker holds no lock and allocates nothing.  Guest
 * memory goes through @ops, which decides how a guest-physical address is
 * reached (for the VMM-side KVM_TRANSLATE: the stage-2 fault path).
 */
#ifndef GM_VCPU_X86_WALK_H
#define GM_VCPU_X86_WALK_H

#include <stdbool.h>
#include <stdint.h>

#define X86_PF_PRESENT (1U << 0)
#define X86_PF_WRITE (1U << 1)
#define X86_PF_USER (1U << 2)
#define X86_PF_RSVD (1U << 3)
#define X86_PF_FETCH (1U << 4)
/* Not in the error code: a supervisor access the CPU makes by itself
 * (descriptor tables), which SMAP checks regardless of RFLAGS.AC. */
#define X86_PF_IMPLICIT (1U << 31)

struct x86_walk_ops {
	/* Read the @size-byte (4 or 8) entry at @gpa: 0, or < 0 if unreachable. */
	int (*read)(void *ctx, uint64_t gpa, unsigned size, uint64_t *val);
	/* Replace @old by @new at @gpa: 0, 1 if the entry was not @old, < 0. */
	int (*cmpxchg)(void *ctx, uint64_t gpa, unsigned size, uint64_t old, uint64_t new_val);
	void *ctx;
};

/* The paging state the walk depends on. */
struct x86_walk_mode {
	uint64_t cr0, cr3, cr4, efer, rflags;
	int maxphyaddr; /* guest MAXPHYADDR (CPUID 0x80000008, else 36) */
	bool gbpages;	/* 1 GiB pages (CPUID 0x80000001 EDX.26) */
};

struct x86_walk_result {
	uint64_t gpa;	     /* on success */
	int level;	     /* 1: 4 KiB, 2: 2/4 MiB, 3: 1 GiB; 0 without paging */
	uint32_t error_code; /* on a fault: the #PF error code */
	/* On success, what the walk's entries allow together (for a shadow
	 * mapping): writes (R/W everywhere, or a supervisor write with CR0.WP
	 * clear), fetches (no XD with NXE), and the leaf's D bit after the
	 * walk.  Without paging all three are true. */
	bool writable, executable, dirty;
};

/*
 * Translate @gva for @access (X86_PF_WRITE | X86_PF_USER | X86_PF_FETCH |
 * X86_PF_IMPLICIT).  Returns 0 with res->gpa, or 1 for a page fault with
 * res->error_code (an entry @ops cannot reach faults as not present).
 */
int x86_walk(const struct x86_walk_mode *m, uint64_t gva, uint32_t access,
	     const struct x86_walk_ops *ops, struct x86_walk_result *res);

#endif
