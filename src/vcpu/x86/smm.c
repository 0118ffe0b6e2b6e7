// SPDX-License-Identifier: MIT
/*
 * The SMM state-save area (smm.h).  Offsets are from SMBASE + 0xfe00.
 */
#include <string.h>

#include "vcpu/x86/smm.h"

/* AMD64 layout: segments as {u16 selector, u16 attributes, u32 limit, u64 base}. */
enum {
	S64_ES = 0x00, /* then CS, SS, DS, FS, GS every 16 bytes */
	S64_GDTR = 0x60, S64_LDTR = 0x70, S64_IDTR = 0x80, S64_TR = 0x90,
	S64_INT_SHADOW = 0xcb, S64_EFER = 0xd0, S64_REVISION = 0xfc, S64_SMBASE = 0x100,
	S64_CR4 = 0x148, S64_CR3 = 0x150, S64_CR0 = 0x158, S64_DR7 = 0x160, S64_DR6 = 0x168,
	S64_RFLAGS = 0x170, S64_RIP = 0x178,
	S64_GPRS = 0x180, /* R15 first, RAX last */
};
#define SMM_REVISION_64 0x00020064u

/* Intel P6 layout: segments as {u32 flags, u32 limit, u32 base}, selectors apart. */
enum {
	S32_SMBASE = 0xf8, S32_REVISION = 0xfc, S32_CR4 = 0x114, S32_INT_SHADOW = 0x11a,
	S32_DS = 0x12c, S32_FS = 0x138, S32_GS = 0x144, S32_IDTR = 0x150, S32_TR = 0x15c,
	S32_GDTR = 0x16c, S32_LDTR = 0x178, S32_ES = 0x184, S32_CS = 0x190, S32_SS = 0x19c,
	S32_SEL = 0x1a8, /* ES, CS, SS, DS, FS, GS, LDTR, TR selectors, u32 each */
	S32_DR7 = 0x1c8, S32_DR6 = 0x1cc,
	S32_GPRS = 0x1d0, /* EAX first */
	S32_EIP = 0x1f0, S32_EFLAGS = 0x1f4, S32_CR3 = 0x1f8, S32_CR0 = 0x1fc,
};
#define SMM_REVISION_32 0x00020000u

static void put(uint8_t *p, unsigned off, uint64_t v, unsigned n)
{
	memcpy(p + off, &v, n); /* little-endian host */
}

static uint64_t get(const uint8_t *p, unsigned off, unsigned n)
{
	uint64_t v = 0;

	memcpy(&v, p + off, n);
	return v;
}

/* The descriptor flags word as KVM packs it (bits 8-23 of a descriptor's high half). */
static uint32_t seg_flags(const struct x86_segment *s)
{
	return (uint32_t)s->g << 23 | (uint32_t)s->db << 22 | (uint32_t)s->l << 21 |
	       (uint32_t)s->present << 15 | (uint32_t)s->dpl << 13 | (uint32_t)s->s << 12 |
	       (uint32_t)s->type << 8;
}

static void seg_unflags(struct x86_segment *s, uint32_t f)
{
	s->g = (f >> 23) & 1;
	s->db = (f >> 22) & 1;
	s->l = (f >> 21) & 1;
	s->present = (f >> 15) & 1;
	s->dpl = (f >> 13) & 3;
	s->s = (f >> 12) & 1;
	s->type = (f >> 8) & 15;
	s->unusable = !s->present;
}

static void seg64_put(uint8_t *p, unsigned off, const struct x86_segment *s)
{
	put(p, off, s->selector, 2);
	put(p, off + 2, seg_flags(s) >> 8, 2);
	put(p, off + 4, s->limit, 4);
	put(p, off + 8, s->base, 8);
}

static void seg64_get(const uint8_t *p, unsigned off, struct x86_segment *s)
{
	s->selector = (uint16_t)get(p, off, 2);
	seg_unflags(s, (uint32_t)get(p, off + 2, 2) << 8);
	s->limit = (uint32_t)get(p, off + 4, 4);
	s->base = get(p, off + 8, 8);
}

static void seg32_put(uint8_t *p, unsigned off, unsigned sel_idx, const struct x86_segment *s)
{
	put(p, S32_SEL + 4 * sel_idx, s->selector, 4);
	put(p, off, seg_flags(s), 4);
	put(p, off + 4, s->limit, 4);
	put(p, off + 8, s->base, 4);
}

static void seg32_get(const uint8_t *p, unsigned off, unsigned sel_idx, struct x86_segment *s)
{
	s->selector = (uint16_t)get(p, S32_SEL + 4 * sel_idx, 4);
	seg_unflags(s, (uint32_t)get(p, off, 4));
	s->limit = (uint32_t)get(p, off + 4, 4);
	s->base = get(p, off + 8, 4);
}

/* The 32-bit layout's segment offsets, in enum x86_seg order. */
static const unsigned seg32_off[X86_NR_SEGS] = { S32_ES, S32_CS, S32_SS, S32_DS, S32_FS, S32_GS };

void x86_smram_save(const struct x86_regs *r, bool lm, uint32_t smbase, uint8_t int_shadow,
		    uint8_t *out)
{
	memset(out, 0, X86_SMRAM_SAVE_SIZE);
	if (!lm) {
		for (unsigned i = 0; i < 8; i++)
			put(out, S32_GPRS + 4 * i, r->gpr[i], 4);
		put(out, S32_EIP, r->rip, 4);
		put(out, S32_EFLAGS, r->rflags, 4);
		put(out, S32_CR0, r->cr0, 4);
		put(out, S32_CR3, r->cr3, 4);
		put(out, S32_CR4, r->cr4, 4);
		put(out, S32_DR6, r->dr[6], 4);
		put(out, S32_DR7, r->dr[7], 4);
		for (unsigned i = 0; i < X86_NR_SEGS; i++)
			seg32_put(out, seg32_off[i], i, &r->seg[i]);
		seg32_put(out, S32_LDTR, 6, &r->ldt);
		seg32_put(out, S32_TR, 7, &r->tr);
		put(out, S32_GDTR + 4, r->gdt.limit, 4);
		put(out, S32_GDTR + 8, r->gdt.base, 4);
		put(out, S32_IDTR + 4, r->idt.limit, 4);
		put(out, S32_IDTR + 8, r->idt.base, 4);
		put(out, S32_REVISION, SMM_REVISION_32, 4);
		put(out, S32_SMBASE, smbase, 4);
		put(out, S32_INT_SHADOW, int_shadow, 1);
		return;
	}
	for (unsigned i = 0; i < 16; i++)
		put(out, S64_GPRS + 8 * (15 - i), r->gpr[i], 8);
	put(out, S64_RIP, r->rip, 8);
	put(out, S64_RFLAGS, r->rflags, 8);
	put(out, S64_DR6, r->dr[6], 8);
	put(out, S64_DR7, r->dr[7], 8);
	put(out, S64_CR0, r->cr0, 8);
	put(out, S64_CR3, r->cr3, 8);
	put(out, S64_CR4, r->cr4, 8);
	put(out, S64_SMBASE, smbase, 4);
	put(out, S64_REVISION, SMM_REVISION_64, 4);
	put(out, S64_EFER, r->efer, 8);
	seg64_put(out, S64_TR, &r->tr);
	put(out, S64_IDTR + 4, r->idt.limit, 4);
	put(out, S64_IDTR + 8, r->idt.base, 8);
	seg64_put(out, S64_LDTR, &r->ldt);
	put(out, S64_GDTR + 4, r->gdt.limit, 4);
	put(out, S64_GDTR + 8, r->gdt.base, 8);
	for (unsigned i = 0; i < X86_NR_SEGS; i++)
		seg64_put(out, S64_ES + 16 * i, &r->seg[i]);
	put(out, S64_INT_SHADOW, int_shadow, 1);
}

void x86_smram_load(const uint8_t *in, bool lm, struct x86_smram_state *s)
{
	memset(s, 0, sizeof(*s));
	if (!lm) {
		for (unsigned i = 0; i < 8; i++)
			s->gpr[i] = get(in, S32_GPRS + 4 * i, 4);
		s->rip = get(in, S32_EIP, 4);
		s->rflags = get(in, S32_EFLAGS, 4);
		s->cr0 = get(in, S32_CR0, 4);
		s->cr3 = get(in, S32_CR3, 4);
		s->cr4 = get(in, S32_CR4, 4);
		s->dr6 = get(in, S32_DR6, 4);
		s->dr7 = get(in, S32_DR7, 4);
		for (unsigned i = 0; i < X86_NR_SEGS; i++)
			seg32_get(in, seg32_off[i], i, &s->seg[i]);
		seg32_get(in, S32_LDTR, 6, &s->ldt);
		seg32_get(in, S32_TR, 7, &s->tr);
		s->gdt = (struct x86_dtable){ get(in, S32_GDTR + 8, 4),
					      (uint16_t)get(in, S32_GDTR + 4, 4) };
		s->idt = (struct x86_dtable){ get(in, S32_IDTR + 8, 4),
					      (uint16_t)get(in, S32_IDTR + 4, 4) };
		s->smbase = (uint32_t)get(in, S32_SMBASE, 4);
		s->int_shadow = (uint8_t)get(in, S32_INT_SHADOW, 1);
		return;
	}
	for (unsigned i = 0; i < 16; i++)
		s->gpr[i] = get(in, S64_GPRS + 8 * (15 - i), 8);
	s->rip = get(in, S64_RIP, 8);
	s->rflags = get(in, S64_RFLAGS, 8);
	s->dr6 = get(in, S64_DR6, 8);
	s->dr7 = get(in, S64_DR7, 8);
	s->cr0 = get(in, S64_CR0, 8);
	s->cr3 = get(in, S64_CR3, 8);
	s->cr4 = get(in, S64_CR4, 8);
	s->efer = get(in, S64_EFER, 8);
	s->smbase = (uint32_t)get(in, S64_SMBASE, 4);
	seg64_get(in, S64_TR, &s->tr);
	seg64_get(in, S64_LDTR, &s->ldt);
	s->gdt = (struct x86_dtable){ get(in, S64_GDTR + 8, 8), (uint16_t)get(in, S64_GDTR + 4, 4) };
	s->idt = (struct x86_dtable){ get(in, S64_IDTR + 8, 8), (uint16_t)get(in, S64_IDTR + 4, 4) };
	for (unsigned i = 0; i < X86_NR_SEGS; i++)
		seg64_get(in, S64_ES + 16 * i, &s->seg[i]);
	s->int_shadow = (uint8_t)get(in, S64_INT_SHADOW, 1);
}

void x86_smm_entry_regs(struct x86_regs *r, uint32_t smbase, bool lm)
{
	const struct x86_segment flat = { .limit = 0xffffffffu, .type = 3, .s = true,
					  .present = true, .g = true };

	r->rflags = X86_RFLAGS_FIXED;
	r->rip = X86_SMM_ENTRY_RIP;
	r->cr0 &= ~(X86_CR0_PE | X86_CR0_EM | X86_CR0_TS | X86_CR0_PG);
	r->cr4 = 0;
	r->idt = (struct x86_dtable){ 0, 0 };
	r->dr[7] = 0x400;
	for (unsigned i = 0; i < X86_NR_SEGS; i++)
		r->seg[i] = flat;
	r->seg[X86_SEG_CS].selector = (uint16_t)(smbase >> 4);
	r->seg[X86_SEG_CS].base = smbase;
	if (lm)
		r->efer = 0;
	r->cpl = 0;
	r->smm = true;
}
