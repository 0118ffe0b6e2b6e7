/* SPDX-License-Identifier: MIT */
/*
 * The run-mode decision for 64- and 32-bit guest states (x86_pm32.h).
 */
#include <stdbool.h>

#include "gproc/gproc_abi.h"
#include "vcpu/x86/decode.h"
#include "vcpu/x86_pm32.h"

#define SEG_TYPE_CODE 0x8
#define SEG_TYPE_EXPAND_DOWN 0x4 /* data segments */
#define SEG_TYPE_WRITABLE 0x2	 /* data segments */

/* Limit 4 GiB - 1, and not an expand-down data segment (its valid offsets
 * are the ones above the limit). */
static bool seg_flat_limit(const struct x86_segment *s)
{
	if (s->limit != 0xffffffffu)
		return false;
	return (s->type & SEG_TYPE_CODE) || !(s->type & SEG_TYPE_EXPAND_DOWN);
}

/* CS: a present code segment with base 0 and a 4 GiB limit. */
static bool cs_flat(const struct x86_segment *s)
{
	return !s->unusable && s->present && (s->type & SEG_TYPE_CODE) && s->base == 0 &&
	       seg_flat_limit(s);
}

/* DS, ES, SS: unusable, or writable data with base 0 and a 4 GiB limit. */
static bool data_flat(const struct x86_segment *s)
{
	if (s->unusable)
		return true;
	return !(s->type & SEG_TYPE_CODE) && (s->type & SEG_TYPE_WRITABLE) && s->base == 0 &&
	       seg_flat_limit(s);
}

/* FS, GS: unusable, or a 4 GiB limit with a base the stub can load. */
static bool fsgs_ok(const struct x86_segment *s)
{
	return s->unusable || (s->base <= 0xffffffffull && seg_flat_limit(s));
}

int x86_pm32_run_mode(const struct x86_regs *r)
{
	switch (x86_cpu_mode(r)) {
	case X86_MODE_64:
		/* Long mode implies paging; checked anyway (LMA set by hand). */
		if (!(r->cr0 & X86_CR0_PG) || !gp_guest_va_ok(r->rip))
			return -1;
		return GP_MODE_64;
	case X86_MODE_32:
		if (r->rip > 0xffffffffull || !cs_flat(&r->seg[X86_SEG_CS]) ||
		    !data_flat(&r->seg[X86_SEG_SS]) || !data_flat(&r->seg[X86_SEG_DS]) ||
		    !data_flat(&r->seg[X86_SEG_ES]) || !fsgs_ok(&r->seg[X86_SEG_FS]) ||
		    !fsgs_ok(&r->seg[X86_SEG_GS]))
			return -1;
		return GP_MODE_32;
	default: /* real mode, virtual-8086, 16-bit code */
		return -1;
	}
}

bool x86_pm32_has_4m_pages(uint64_t cr0, uint64_t cr4, uint64_t efer)
{
	return (cr0 & X86_CR0_PG) && !(efer & X86_EFER_LMA) && !(cr4 & X86_CR4_PAE) &&
	       (cr4 & X86_PM32_CR4_PSE);
}
