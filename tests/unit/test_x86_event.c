// SPDX-License-Identifier: MIT
/*
 * test_x86_event - exception and interrupt delivery through the guest IDT
 * and the choice of the next event (src/vcpu/x86/event.h).
 *
 * The host cannot be the reference here (a signal handler sees the host
 * kernel's frame, not the CPU's), so every expectation is the SDM's: the
 * frame is compared byte for byte with a layout written out independently
 * (slot by slot at fixed offsets from the new stack pointer), the error
 * codes are spelled vector*8+2+EXT or selector|EXT by hand.
 *
 * Where the host CPU does answer, it is asked too: a user-mode fault's
 * signal context carries the RFLAGS image the CPU pushed (RF set or not),
 * the vector, the error code and the return RIP, and Linux's IDT has DPL0
 * gates where INT n from user mode must #GP with vector*8+2.  Those rows
 * run natively and through the module on a guest laid out the same way.
 *
 * Guest memory is a flat 1 MiB array at linear address 0 (no paging
 * behind the callbacks); pages can be made to fault (#PF with CR2) or to
 * be MMIO, and every access records whether it was an implicit
 * (system-table) one.
 */
#include "harness.h"
#include "vcpu/x86/event.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

#define MEM_SIZE (1u << 20)
#define GDT 0x1000u
#define IDT 0x2000u
#define TSS 0x4000u
#define USTACK 0x8ff8u	/* not 16-byte aligned on purpose */
#define RSP0 0x9ff8u
#define IST2 0xa808u
#define IST1 0xb800u

/* GDT selectors. */
enum {
	CS64 = 0x08, DS0 = 0x10, CS32 = 0x18, DS32 = 0x20, CS64U = 0x2b, DS_U = 0x33,
	CS32U = 0x3b, DS32U = 0x43, CS64_NP = 0x48, DATA_AS_CS = 0x50, CS64_CONF = 0x58,
	DS0_NP = 0x60, CS_LD = 0x68, DS0_RO = 0x70, CS32_SMALL = 0x78, DS32_SMALL = 0x80,
	CS16 = 0x88, GDT_END = 0x90
};

struct fake {
	uint8_t mem[MEM_SIZE];
	uint64_t fault_page[4]; /* linear pages that #PF (0: unused) */
	uint64_t mmio_page;
	unsigned reads, writes, sys_reads, sys_writes, user_writes;
};

static struct fake F;

static int mem_access(uint64_t gva, unsigned len, bool write, unsigned flags, struct x86_exception *ex)
{
	for (uint64_t a = gva; a < gva + len; a = (a | 0xfff) + 1) {
		for (unsigned i = 0; i < 4; i++) {
			if (F.fault_page[i] && (a >> 12) == F.fault_page[i]) {
				*ex = (struct x86_exception){ .vector = X86_PF, .has_error_code = true,
							      .error_code = write ? 2u : 0u,
							      .cr2 = a < gva ? gva : a };
				return X86_MEM_FAULT;
			}
		}
		if (F.mmio_page && (a >> 12) == F.mmio_page)
			return X86_MEM_MMIO;
	}
	if (gva >= MEM_SIZE || gva + len > MEM_SIZE) {
		*ex = (struct x86_exception){ .vector = X86_PF, .has_error_code = true,
					      .error_code = write ? 2u : 0u, .cr2 = gva };
		return X86_MEM_FAULT;
	}
	if (write) {
		F.writes++;
		F.sys_writes += !!(flags & X86_EVENT_ACC_SYSTEM);
		F.user_writes += !!(flags & X86_EVENT_ACC_USER);
	} else {
		F.reads++;
		F.sys_reads += !!(flags & X86_EVENT_ACC_SYSTEM);
	}
	return X86_MEM_OK;
}

static int f_read(void *ctx, uint64_t gva, void *buf, unsigned len, unsigned flags,
		  struct x86_exception *ex)
{
	int r = mem_access(gva, len, false, flags, ex);

	(void)ctx;
	if (r == X86_MEM_OK)
		memcpy(buf, F.mem + gva, len);
	return r;
}

static int f_write(void *ctx, uint64_t gva, const void *buf, unsigned len, unsigned flags,
		   struct x86_exception *ex)
{
	int r = mem_access(gva, len, true, flags, ex);

	(void)ctx;
	if (r == X86_MEM_OK)
		memcpy(F.mem + gva, buf, len);
	return r;
}

static const struct x86_event_ops OPS = { f_read, f_write };

static void put(uint64_t at, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		F.mem[at + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get(uint64_t at, unsigned n)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)F.mem[at + i] << (8 * i);
	return v;
}

/* A segment descriptor: type (4 bits), S, DPL, P, L, D/B, G. */
static void desc(uint16_t sel, uint32_t base, uint32_t limit, unsigned type, unsigned s,
		 unsigned dpl, unsigned p, unsigned l, unsigned db, unsigned g)
{
	uint64_t d = (limit & 0xffff) | ((uint64_t)(base & 0xffffff) << 16) |
		     ((uint64_t)type << 40) | ((uint64_t)s << 44) | ((uint64_t)dpl << 45) |
		     ((uint64_t)p << 47) | ((uint64_t)((limit >> 16) & 0xf) << 48) |
		     ((uint64_t)l << 53) | ((uint64_t)db << 54) | ((uint64_t)g << 55) |
		     ((uint64_t)(base >> 24) << 56);

	put(GDT + (sel & ~7u), d, 8);
}

/* Long-mode gate: 16 bytes. */
static void gate64(unsigned vec, uint16_t sel, uint64_t off, unsigned type, unsigned dpl,
		   unsigned p, unsigned ist)
{
	uint64_t lo = (off & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)ist << 32) |
		      ((uint64_t)type << 40) | ((uint64_t)dpl << 45) | ((uint64_t)p << 47) |
		      ((off >> 16 & 0xffff) << 48);

	put(IDT + vec * 16, lo, 8);
	put(IDT + vec * 16 + 8, off >> 32, 8);
}

/* Protected-mode gate: 8 bytes. */
static void gate32(unsigned vec, uint16_t sel, uint32_t off, unsigned type, unsigned dpl,
		   unsigned p)
{
	uint64_t lo = (off & 0xffff) | ((uint64_t)sel << 16) | ((uint64_t)type << 40) |
		      ((uint64_t)dpl << 45) | ((uint64_t)p << 47) | ((uint64_t)(off >> 16) << 48);

	put(IDT + vec * 8, lo, 8);
}

static uint64_t handler(unsigned vec)
{
	return 0xffffffff81000000ull + vec * 0x40;
}

static void gdt_setup(void)
{
	desc(CS64, 0, 0xfffff, 0xb, 1, 0, 1, 1, 0, 1);
	desc(DS0, 0, 0xfffff, 0x3, 1, 0, 1, 0, 1, 1);
	desc(CS32, 0, 0xfffff, 0xb, 1, 0, 1, 0, 1, 1);
	desc(DS32, 0, 0xfffff, 0x3, 1, 0, 1, 0, 1, 1);
	desc(CS64U, 0, 0xfffff, 0xb, 1, 3, 1, 1, 0, 1);
	desc(DS_U, 0, 0xfffff, 0x3, 1, 3, 1, 0, 1, 1);
	desc(CS32U, 0, 0xfffff, 0xb, 1, 3, 1, 0, 1, 1);
	desc(DS32U, 0, 0xfffff, 0x3, 1, 3, 1, 0, 1, 1);
	desc(CS64_NP, 0, 0xfffff, 0xb, 1, 0, 0, 1, 0, 1);
	desc(DATA_AS_CS, 0, 0xfffff, 0x3, 1, 0, 1, 1, 0, 1);
	desc(CS64_CONF, 0, 0xfffff, 0xf, 1, 0, 1, 1, 0, 1);
	desc(DS0_NP, 0, 0xfffff, 0x3, 1, 0, 0, 0, 1, 1);
	desc(CS_LD, 0, 0xfffff, 0xb, 1, 0, 1, 1, 1, 1);
	desc(DS0_RO, 0, 0xfffff, 0x1, 1, 0, 1, 0, 1, 1);
	desc(CS32_SMALL, 0, 0xffff, 0xb, 1, 0, 1, 0, 1, 0);
	desc(DS32_SMALL, 0x10000, 0x8000, 0x3, 1, 0, 1, 0, 1, 0);
	desc(CS16, 0, 0xffff, 0xb, 1, 0, 1, 0, 0, 0);
}

static void seg(struct x86_regs *r, unsigned which, uint16_t sel, unsigned dpl, bool l, bool db)
{
	r->seg[which] = (struct x86_segment){ .selector = sel, .limit = 0xffffffff,
					      .type = which == X86_SEG_CS ? 0xb : 0x3,
					      .dpl = (uint8_t)dpl, .present = true, .s = true,
					      .l = l, .db = db, .g = true };
}

/* 64-bit kernel at CPL0, every vector an interrupt gate to CS64. */
static struct x86_regs lm_setup(void)
{
	struct x86_regs r;

	memset(&F, 0, sizeof(F));
	memset(&r, 0, sizeof(r));
	gdt_setup();
	for (unsigned v = 0; v < 256; v++)
		gate64(v, CS64, handler(v), 0xe, 0, 1, 0);
	put(TSS + 4, RSP0, 8);	      /* RSP0 */
	put(TSS + 0x24, IST1, 8);     /* IST1 */
	put(TSS + 0x2c, IST2, 8);     /* IST2 */
	r.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_ET;
	r.cr4 = X86_CR4_PAE;
	r.efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_SCE;
	r.rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF | X86_RFLAGS_ZF;
	r.rip = 0xffffffff80123456ull;
	r.gpr[X86_RSP] = USTACK;
	r.gpr[X86_RAX] = 0x1111;
	seg(&r, X86_SEG_CS, CS64, 0, true, false);
	seg(&r, X86_SEG_SS, DS0, 0, false, true);
	r.gdt = (struct x86_dtable){ GDT, GDT_END - 1 };
	r.idt = (struct x86_dtable){ IDT, 256 * 16 - 1 };
	r.tr = (struct x86_segment){ .selector = 0x98, .base = TSS, .limit = 0x67, .type = 0xb,
				     .present = true };
	r.ldt.unusable = true;
	r.cpl = 0;
	return r;
}

/* The same guest at CPL3 (64-bit user code). */
static struct x86_regs lm_user(void)
{
	struct x86_regs r = lm_setup();

	seg(&r, X86_SEG_CS, CS64U, 3, true, false);
	seg(&r, X86_SEG_SS, DS_U, 3, false, true);
	r.cpl = 3;
	r.rip = 0x401000;
	return r;
}

/* A 64-bit frame as the SDM lays it out, compared slot by slot at @sp. */
static void check_frame64(uint64_t sp, bool has_err, uint64_t err, uint64_t rip, uint64_t cs,
			  uint64_t rflags, uint64_t rsp, uint64_t ss)
{
	unsigned o = 0;

	if (has_err) {
		EXPECT_EQ(get(sp + 0, 8), err);
		o = 8;
	}
	EXPECT_EQ(get(sp + o + 0, 8), rip);
	EXPECT_EQ(get(sp + o + 8, 8), cs);
	EXPECT_EQ(get(sp + o + 16, 8), rflags);
	EXPECT_EQ(get(sp + o + 24, 8), rsp);
	EXPECT_EQ(get(sp + o + 32, 8), ss);
}

/* ---- long mode: one row per vector ------------------------------------- */

struct lm_case {
	const char *name;
	uint8_t type, vector;
	bool has_err;
	uint32_t err;
	unsigned gate_type; /* 0xe interrupt, 0xf trap */
	bool rf;	    /* RF expected in the pushed RFLAGS */
};

static const struct lm_case LM_CASES[] = {
	{ "DE", X86_EVENT_HW_EXCEPTION, X86_DE, false, 0, 0xe, true },
	{ "DB", X86_EVENT_HW_EXCEPTION, X86_DB, false, 0, 0xe, false },
	{ "NMI", X86_EVENT_NMI, 2, false, 0, 0xe, false },
	{ "BP soft", X86_EVENT_SOFT_EXCEPTION, X86_BP, false, 0, 0xf, false },
	{ "OF soft", X86_EVENT_SOFT_EXCEPTION, X86_OF, false, 0, 0xf, false },
	{ "BR", X86_EVENT_HW_EXCEPTION, 5, false, 0, 0xe, true },
	{ "UD", X86_EVENT_HW_EXCEPTION, X86_UD, false, 0, 0xe, true },
	{ "NM", X86_EVENT_HW_EXCEPTION, X86_NM, false, 0, 0xf, true },
	{ "DF", X86_EVENT_HW_EXCEPTION, X86_DF, true, 0, 0xe, false },
	{ "TS", X86_EVENT_HW_EXCEPTION, X86_TS, true, 0x28, 0xe, true },
	{ "NP", X86_EVENT_HW_EXCEPTION, X86_NP, true, 0x51, 0xe, true },
	{ "SS", X86_EVENT_HW_EXCEPTION, X86_SS, true, 0, 0xe, true },
	{ "GP", X86_EVENT_HW_EXCEPTION, X86_GP, true, 0x1234, 0xe, true },
	{ "PF", X86_EVENT_HW_EXCEPTION, X86_PF, true, 0x7, 0xe, true },
	{ "MF", X86_EVENT_HW_EXCEPTION, 16, false, 0, 0xe, true },
	{ "AC", X86_EVENT_HW_EXCEPTION, 17, true, 0, 0xe, true },
	{ "MC", X86_EVENT_HW_EXCEPTION, X86_MC, false, 0, 0xe, false },
	{ "XM", X86_EVENT_HW_EXCEPTION, 19, false, 0, 0xe, true },
	{ "CP", X86_EVENT_HW_EXCEPTION, 21, true, 3, 0xe, true },
	{ "INT1", X86_EVENT_PRIV_SOFT_EXCEPTION, X86_DB, false, 0, 0xe, false },
	{ "ext 0x20", X86_EVENT_EXT_INTR, 0x20, false, 0, 0xe, false },
	{ "ext 0xff trap gate", X86_EVENT_EXT_INTR, 0xff, false, 0, 0xf, false },
	{ "INT 0x80", X86_EVENT_SOFT_INT, 0x80, false, 0, 0xe, false },
	{ "INT 0x0e is not a #PF", X86_EVENT_SOFT_INT, 0x0e, false, 0, 0xe, false },
};

TEST(long_mode_same_privilege_per_vector)
{
	for (size_t i = 0; i < sizeof(LM_CASES) / sizeof(LM_CASES[0]); i++) {
		const struct lm_case *c = &LM_CASES[i];
		struct x86_regs r = lm_setup(), before;
		struct x86_event ev = { .type = c->type, .vector = c->vector,
					.has_error_code = c->has_err, .error_code = c->err,
					.insn_len = 2 };
		struct x86_event_result res;
		uint64_t sp = (USTACK & ~0xfull) - (c->has_err ? 48 : 40);
		uint64_t pushed = r.rflags | (c->rf ? X86_RFLAGS_RF : 0);

		r.rflags |= X86_RFLAGS_TF | X86_RFLAGS_NT | X86_RFLAGS_AC;
		pushed |= X86_RFLAGS_TF | X86_RFLAGS_NT | X86_RFLAGS_AC;
		gate64(c->vector, CS64, handler(c->vector), c->gate_type, 0, 1, 0);
		before = r;
		DIAG("case %s", c->name);
		ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, &res), X86_EVENT_OK);
		EXPECT_FALSE(res.replaced);
		EXPECT_EQ(res.delivered.vector, c->vector);
		check_frame64(sp, c->has_err, c->err, before.rip, CS64, pushed, USTACK, DS0);
		EXPECT_EQ(r.gpr[X86_RSP], sp);
		EXPECT_EQ(r.rip, handler(c->vector));
		EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS64);
		EXPECT_TRUE(r.seg[X86_SEG_CS].l);
		EXPECT_EQ(r.seg[X86_SEG_SS].selector, DS0);
		EXPECT_EQ(r.cpl, 0);
		/* TF, NT, RF, VM clear; IF clear only through an interrupt gate;
		 * the rest (ZF, AC) as before. */
		EXPECT_EQ(r.rflags, (before.rflags & ~(X86_RFLAGS_TF | X86_RFLAGS_NT |
						       X86_RFLAGS_RF | X86_RFLAGS_VM |
						       (c->gate_type == 0xe ? X86_RFLAGS_IF : 0))));
		EXPECT_EQ(r.gpr[X86_RAX], 0x1111);
		EXPECT_EQ(r.cr2, 0);
		/* The gate and CS descriptor are implicit supervisor reads; the
		 * frame is 5 or 6 supervisor writes. */
		EXPECT_EQ(F.sys_reads, 2);
		EXPECT_EQ(F.writes, c->has_err ? 6 : 5);
		EXPECT_EQ(F.sys_writes, 0);
		EXPECT_EQ(F.user_writes, 0);
		if (test_failed())
			return;
	}
}

TEST(long_mode_pf_sets_cr2)
{
	struct x86_regs r = lm_setup();
	struct x86_event ev = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_PF,
				.has_error_code = true, .error_code = 0x15, .has_cr2 = true,
				.cr2 = 0xdead000 };

	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.cr2, 0xdead000);
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0x15);
	/* Without has_cr2, CR2 is left alone (the VMM set it). */
	r = lm_setup();
	r.cr2 = 0x77;
	ev.has_cr2 = false;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.cr2, 0x77);
}

TEST(long_mode_cpl3_to_rsp0)
{
	struct x86_regs r = lm_user(), before;
	struct x86_event ev = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_GP,
				.has_error_code = true, .error_code = 0 };
	uint64_t sp = (RSP0 & ~0xfull) - 48;

	r.gpr[X86_RSP] = 0x7ffffffde123ull; /* the user stack: never written */
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	check_frame64(sp, true, 0, before.rip, CS64U, before.rflags | X86_RFLAGS_RF,
		      0x7ffffffde123ull, DS_U);
	EXPECT_EQ(r.gpr[X86_RSP], sp);
	EXPECT_EQ(r.cpl, 0);
	EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS64);
	EXPECT_EQ(r.seg[X86_SEG_CS].dpl, 0);
	/* SS is the null selector with RPL 0. */
	EXPECT_EQ(r.seg[X86_SEG_SS].selector, 0);
	EXPECT_TRUE(r.seg[X86_SEG_SS].unusable);
	/* The TSS read is implicit too: gate, CS, RSP0. */
	EXPECT_EQ(F.sys_reads, 3);

	/* A DPL3 gate lets INT n through from CPL3 to the same ring-0 stack. */
	r = lm_user();
	gate64(0x80, CS64, handler(0x80), 0xf, 3, 1, 0);
	ev = (struct x86_event){ .type = X86_EVENT_SOFT_INT, .vector = 0x80, .insn_len = 2 };
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	check_frame64((RSP0 & ~0xfull) - 40, false, 0, before.rip, CS64U, before.rflags, USTACK,
		      DS_U);
	EXPECT_TRUE(r.rflags & X86_RFLAGS_IF); /* trap gate */
}

TEST(long_mode_ist)
{
	struct x86_regs r = lm_setup(), before;
	struct x86_event ev = { .type = X86_EVENT_NMI, .vector = 2 };

	/* IST from CPL0: the stack switches even without a CPL change; SS stays. */
	gate64(2, CS64, handler(2), 0xe, 0, 1, 2);
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	check_frame64((IST2 & ~0xfull) - 40, false, 0, before.rip, CS64, before.rflags, USTACK,
		      DS0);
	EXPECT_EQ(r.gpr[X86_RSP], (IST2 & ~0xfull) - 40);
	EXPECT_EQ(r.seg[X86_SEG_SS].selector, DS0);

	/* IST wins over RSP0 from CPL3. */
	r = lm_user();
	gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 1, 1);
	ev = (struct x86_event){ .type = X86_EVENT_HW_EXCEPTION, .vector = X86_DF,
				 .has_error_code = true };
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	check_frame64(IST1 - 48, true, 0, before.rip, CS64U, before.rflags, USTACK, DS_U);
	EXPECT_EQ(r.seg[X86_SEG_SS].selector, 0);

	/* IST7 is at TSS offset 0x54 (7*8+28): a limit of 0x5b covers it, 0x5a
	 * does not: #TS(TR|EXT), delivered on the current stack. */
	r = lm_setup();
	r.tr.limit = 0x5b;
	gate64(0x30, CS64, handler(0x30), 0xe, 0, 1, 7);
	ev = (struct x86_event){ .type = X86_EVENT_EXT_INTR, .vector = 0x30 };
	put(TSS + 0x54, 0xc008, 8);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(0x30));
	EXPECT_EQ(r.gpr[X86_RSP], 0xc000 - 40);
	r = lm_setup();
	r.tr.limit = 0x5a;
	gate64(0x30, CS64, handler(0x30), 0xe, 0, 1, 7);
	put(TSS + 0x54, 0xc008, 8);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_TS));
	EXPECT_EQ(r.gpr[X86_RSP], (USTACK & ~0xfull) - 48);
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0x98 | 1);
}

TEST(long_mode_alignment)
{
	/* Every RSP low nibble: the frame starts at the 16-byte boundary below. */
	for (unsigned lo = 0; lo < 16; lo++) {
		struct x86_regs r = lm_setup();
		struct x86_event ev = { .type = X86_EVENT_EXT_INTR, .vector = 0x41 };
		uint64_t old = 0x8f00 + lo;

		r.gpr[X86_RSP] = old;
		ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
		EXPECT_EQ(r.gpr[X86_RSP], 0x8f00 - 40);
		EXPECT_EQ(get(0x8f00 - 40 + 24, 8), old);
	}
}

/* The vector and error code a faulty delivery ends in. */
static void expect_handled(struct x86_regs *r, const struct x86_event *ev, unsigned vec,
			   int64_t err)
{
	struct x86_event_result res;
	bool soft = ev->type >= X86_EVENT_SOFT_INT;
	/* A fault while vectoring INT n is reported at the instruction. */
	uint64_t rip = r->rip - (soft && vec != ev->vector ? ev->insn_len : 0);

	ASSERT_EQ(x86_event_deliver(r, ev, &OPS, NULL, &res), X86_EVENT_OK);
	EXPECT_EQ(res.delivered.vector, vec);
	EXPECT_EQ(r->rip, handler(vec));
	if (err >= 0) {
		EXPECT_TRUE(res.delivered.has_error_code);
		EXPECT_EQ(res.delivered.error_code, err);
		EXPECT_EQ(get(r->gpr[X86_RSP], 8), err);
		EXPECT_EQ(get(r->gpr[X86_RSP] + 8, 8), rip);
	}
}

TEST(long_mode_gate_errors)
{
	struct x86_regs r;
	struct x86_event ext = { .type = X86_EVENT_EXT_INTR, .vector = 0x40 };
	struct x86_event soft = { .type = X86_EVENT_SOFT_INT, .vector = 0x40, .insn_len = 2 };
	struct x86_event ud = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_UD };

	/* Beyond the IDT limit: #GP(vector*8+2+EXT); the limit covers all 16 bytes. */
	r = lm_setup();
	r.idt.limit = 0x40 * 16 + 14;
	expect_handled(&r, &ext, X86_GP, 0x40 * 8 + 3);
	r = lm_setup();
	r.idt.limit = 0x40 * 16 + 15;
	expect_handled(&r, &ext, 0x40, -1);
	/* A software interrupt has EXT clear. */
	r = lm_setup();
	r.idt.limit = 0x40 * 16 + 14;
	expect_handled(&r, &soft, X86_GP, 0x40 * 8 + 2);
	/* Not present: #NP(vector*8+2+EXT). */
	r = lm_setup();
	gate64(0x40, CS64, handler(0x40), 0xe, 0, 0, 0);
	expect_handled(&r, &ext, X86_NP, 0x40 * 8 + 3);
	/* Wrong types in long mode: a 32-bit-style task gate, a call gate (0xc),
	 * a 16-bit interrupt gate (6), and S=1. */
	for (unsigned t = 0; t < 4; t++) {
		r = lm_setup();
		gate64(0x40, CS64, handler(0x40), t == 0 ? 0x5 : t == 1 ? 0xc : t == 2 ? 0x6 : 0xe,
		       0, 1, 0);
		if (t == 3)
			F.mem[IDT + 0x40 * 16 + 5] |= 0x10;
		expect_handled(&r, &ext, X86_GP, 0x40 * 8 + 3);
	}
	/* The type check comes before presence. */
	r = lm_setup();
	gate64(0x40, CS64, handler(0x40), 0xc, 0, 0, 0);
	expect_handled(&r, &ext, X86_GP, 0x40 * 8 + 3);
	/* A benign exception with a bad gate is replaced by the #GP. */
	r = lm_setup();
	gate64(X86_UD, CS64, handler(X86_UD), 0xe, 0, 0, 0);
	expect_handled(&r, &ud, X86_NP, X86_UD * 8 + 3);
}

TEST(long_mode_soft_int_dpl)
{
	struct x86_regs r = lm_user();
	struct x86_event ev = { .type = X86_EVENT_SOFT_INT, .vector = 0x21, .insn_len = 2 };
	uint64_t rip = r.rip;

	/* INT n at CPL3 through a DPL0 gate: #GP(vector*8+2), no EXT, reported at
	 * the INT instruction (RIP rewound by its length). */
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_GP));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0x21 * 8 + 2);
	EXPECT_EQ(get(r.gpr[X86_RSP] + 8, 8), rip - 2);
	/* INT3 (1 byte) likewise. */
	r = lm_user();
	ev = (struct x86_event){ .type = X86_EVENT_SOFT_EXCEPTION, .vector = X86_BP, .insn_len = 1 };
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_GP));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), X86_BP * 8 + 2);
	EXPECT_EQ(get(r.gpr[X86_RSP] + 8, 8), rip - 1);
	/* INT1 is not checked: it reaches the DPL0 #DB gate, RIP past it. */
	r = lm_user();
	ev = (struct x86_event){ .type = X86_EVENT_PRIV_SOFT_EXCEPTION, .vector = X86_DB,
				 .insn_len = 1 };
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_DB));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), rip);
	/* Hardware events ignore the gate DPL: an external interrupt at CPL3. */
	r = lm_user();
	ev = (struct x86_event){ .type = X86_EVENT_EXT_INTR, .vector = 0x21 };
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(0x21));
	/* At CPL0 a DPL0 gate is fine for INT n. */
	r = lm_setup();
	ev = (struct x86_event){ .type = X86_EVENT_SOFT_INT, .vector = 0x21, .insn_len = 2 };
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(0x21));
	/* The DPL check comes before presence: DPL0, not present, from CPL3. */
	r = lm_user();
	gate64(0x21, CS64, handler(0x21), 0xe, 0, 0, 0);
	ev.vector = 0x21;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_GP));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0x21 * 8 + 2);
}

TEST(long_mode_code_segment_errors)
{
	struct x86_event ext = { .type = X86_EVENT_EXT_INTR, .vector = 0x50 };
	struct x86_event soft = { .type = X86_EVENT_SOFT_INT, .vector = 0x50, .insn_len = 2 };
	static const struct {
		uint16_t sel;
		unsigned vec;
		uint32_t err; /* without EXT */
	} rows[] = {
		{ 0x0000, X86_GP, 0 },		   /* null selector: #GP(EXT) */
		{ 0x0003, X86_GP, 0 },		   /* null with an RPL */
		{ GDT_END, X86_GP, GDT_END },	   /* beyond the GDT limit */
		{ 0x0104, X86_GP, 0x0104 },	   /* LDT selector, no LDT */
		{ DATA_AS_CS, X86_GP, DATA_AS_CS }, /* not a code segment */
		{ CS32, X86_GP, CS32 },		   /* not 64-bit (L=0) */
		{ CS_LD, X86_GP, CS_LD },	   /* L=1 with D=1 */
		{ CS64U & ~3, X86_GP, CS64U & ~3 }, /* DPL3 > CPL0 */
		{ CS64_NP, X86_NP, CS64_NP },	   /* not present */
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct x86_regs r = lm_setup();

		DIAG("selector %#x", rows[i].sel);
		gate64(0x50, rows[i].sel, handler(0x50), 0xe, 0, 1, 0);
		expect_handled(&r, &ext, rows[i].vec, rows[i].err | 1);
		r = lm_setup();
		gate64(0x50, rows[i].sel, handler(0x50), 0xe, 0, 1, 0);
		expect_handled(&r, &soft, rows[i].vec, rows[i].err);
		if (test_failed())
			return;
	}
}

TEST(long_mode_conforming_and_canonical)
{
	struct x86_regs r = lm_user(), before = r;
	struct x86_event ev = { .type = X86_EVENT_EXT_INTR, .vector = 0x60 };

	/* A conforming handler runs at the current CPL: no stack switch. */
	gate64(0x60, CS64_CONF, handler(0x60), 0xe, 0, 1, 0);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.cpl, 3);
	EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS64_CONF | 3);
	EXPECT_EQ(r.gpr[X86_RSP], (USTACK & ~0xfull) - 40);
	EXPECT_EQ(r.seg[X86_SEG_SS].selector, DS_U);
	EXPECT_EQ(F.user_writes, 5); /* pushes at CPL3 are user accesses */
	check_frame64(r.gpr[X86_RSP], false, 0, before.rip, CS64U, before.rflags, USTACK, DS_U);

	/* A non-canonical handler: #GP(EXT). */
	r = lm_setup();
	gate64(0x60, CS64, 0x0000900000000000ull, 0xe, 0, 1, 0);
	expect_handled(&r, &ev, X86_GP, 1);
	/* Canonical with LA57. */
	r = lm_setup();
	r.cr4 |= X86_CR4_LA57;
	gate64(0x60, CS64, 0x0000900000000000ull, 0xe, 0, 1, 0);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, 0x0000900000000000ull);
	/* A non-canonical RSP0: #SS(EXT), delivered on... the same RSP0: #DF,
	 * and #DF through IST1 gets there. */
	r = lm_user();
	put(TSS + 4, 0x0000900000000000ull, 8);
	gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 1, 1);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_DF));
	EXPECT_EQ(r.gpr[X86_RSP], IST1 - 48);
	/* ... and a non-canonical RSP0 with the #SS gate on IST: #SS(EXT=1). */
	r = lm_user();
	put(TSS + 4, 0x0000900000000000ull, 8);
	gate64(X86_SS, CS64, handler(X86_SS), 0xe, 0, 1, 1);
	expect_handled(&r, &ev, X86_SS, 1);
	/* TSS limit below RSP0's last byte (offset 11): #TS(TR|EXT). */
	r = lm_user();
	r.tr.limit = 10;
	gate64(X86_TS, CS64, handler(X86_TS), 0xe, 0, 1, 0);
	gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 1, 0);
	/* #TS needs RSP0 too: that fails again -> #DF -> fails -> triple. */
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_TRIPLE_FAULT);
}

TEST(double_fault_classes)
{
	/* (first, second) -> what the handler gets, as in the SDM's table. */
	static const struct {
		uint8_t first;
		unsigned bad_vec;	/* whose gate is not present: raises #NP */
		bool stack_pf;		/* or: the stack page faults */
		unsigned want;
	} rows[] = {
		{ X86_DE, X86_DE, false, X86_DF },	/* contributory + contributory */
		{ X86_GP, X86_GP, false, X86_DF },
		{ X86_TS, X86_TS, false, X86_DF },
		{ X86_UD, X86_UD, false, X86_NP },	/* benign + contributory: serial */
		{ X86_DB, X86_DB, false, X86_NP },
		{ X86_NMI, X86_NMI, false, X86_NP },	/* NMI (type below) */
		{ X86_PF, X86_PF, false, X86_DF },	/* #PF + contributory */
		{ X86_PF, 0, true, X86_DF },		/* #PF + #PF */
		{ X86_GP, 0, true, X86_PF },		/* contributory + #PF: serial */
		{ X86_UD, 0, true, X86_PF },		/* benign + #PF */
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct x86_regs r = lm_setup();
		struct x86_event ev = { .type = rows[i].first == X86_NMI ? X86_EVENT_NMI
									 : X86_EVENT_HW_EXCEPTION,
					.vector = rows[i].first,
					.has_error_code = x86_exception_class(rows[i].first) != 0 };
		struct x86_event_result res;

		DIAG("row %zu", i);
		/* #DF and #PF have their own stacks so the stack fault stays local. */
		gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 1, 1);
		gate64(X86_PF, CS64, handler(X86_PF), 0xe, 0, 1, 2);
		if (rows[i].bad_vec || !rows[i].stack_pf)
			gate64(rows[i].bad_vec, CS64, handler(rows[i].bad_vec), 0xe, 0, 0,
			       rows[i].first == X86_PF ? 2 : 0);
		if (rows[i].stack_pf) {
			F.fault_page[0] = (USTACK - 8) >> 12;
			if (rows[i].first == X86_PF)
				F.fault_page[1] = (IST2 - 8) >> 12;
		}
		ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, &res), X86_EVENT_OK);
		EXPECT_TRUE(res.replaced);
		EXPECT_EQ(res.delivered.vector, rows[i].want);
		EXPECT_EQ(r.rip, handler(rows[i].want));
		if (rows[i].want == X86_DF)
			EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0);
		if (rows[i].want == X86_NP)
			EXPECT_EQ(get(r.gpr[X86_RSP], 8), rows[i].bad_vec * 8 + 3);
		if (rows[i].want == X86_PF) {
			EXPECT_EQ(get(r.gpr[X86_RSP], 8), 2); /* a supervisor write, not present */
			EXPECT_EQ(r.cr2, (USTACK & ~0xfull) - 8);
		}
		if (rows[i].stack_pf && rows[i].first == X86_PF)
			EXPECT_EQ(r.cr2, (IST2 & ~0xfull) - 8); /* the last #PF's address */
		if (test_failed())
			return;
	}
}

TEST(triple_fault)
{
	struct x86_regs r = lm_setup(), before = r;
	struct x86_event gp = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_GP,
				.has_error_code = true };
	struct x86_event_result res;

	/* #GP gate missing -> #NP -> #DF; #DF gate missing -> shutdown. */
	gate64(X86_GP, CS64, handler(X86_GP), 0xe, 0, 0, 0);
	gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 0, 0);
	ASSERT_EQ(x86_event_deliver(&r, &gp, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);
	EXPECT_EQ(memcmp(&r, &before, sizeof(r)), 0);

	/* The whole stack faults and nothing has an IST: #PF -> #PF -> #DF -> #PF. */
	r = lm_setup();
	F.fault_page[0] = (USTACK - 8) >> 12;
	struct x86_event ext = { .type = X86_EVENT_EXT_INTR, .vector = 0x30 };
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);
	EXPECT_EQ(r.gpr[X86_RSP], USTACK);

	/* The IDT itself on a faulting page: the gate read faults every time. */
	r = lm_setup();
	F.fault_page[0] = IDT >> 12;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);

	/* An empty IDT (limit 0): #GP, #GP -> #DF -> #GP: shutdown. */
	r = lm_setup();
	r.idt.limit = 0;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);
}

TEST(unhandled_states)
{
	struct x86_regs r = lm_setup(), before;
	struct x86_event ext = { .type = X86_EVENT_EXT_INTR, .vector = 0x30 };
	struct x86_event_result res;

	F.mmio_page = IDT >> 12;
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_UNHANDLED);
	EXPECT_TRUE(res.why != NULL);
	EXPECT_EQ(memcmp(&r, &before, sizeof(r)), 0);
	r = lm_setup();
	r.cr0 &= ~(X86_CR0_PE | X86_CR0_PG);
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_UNHANDLED);
	r = lm_setup();
	r.efer = 0;
	r.rflags |= X86_RFLAGS_VM;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_UNHANDLED);
}

/* ---- 32-bit protected mode --------------------------------------------------- */

#define KSTACK32 0x20000u

static struct x86_regs pm_setup(void)
{
	struct x86_regs r;

	memset(&F, 0, sizeof(F));
	memset(&r, 0, sizeof(r));
	gdt_setup();
	for (unsigned v = 0; v < 256; v++)
		gate32(v, CS32, (uint32_t)(0xc0100000u + v * 0x10), 0xe, 0, 1);
	put(TSS + 4, KSTACK32, 4); /* ESP0 */
	put(TSS + 8, DS32, 2);	   /* SS0 */
	r.cr0 = X86_CR0_PE | X86_CR0_ET;
	r.rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF | X86_RFLAGS_CF;
	r.rip = 0xc0001234;
	r.gpr[X86_RSP] = 0x8ff6; /* 4-byte slots need no alignment */
	seg(&r, X86_SEG_CS, CS32, 0, false, true);
	seg(&r, X86_SEG_SS, DS32, 0, false, true);
	r.gdt = (struct x86_dtable){ GDT, GDT_END - 1 };
	r.idt = (struct x86_dtable){ IDT, 256 * 8 - 1 };
	r.tr = (struct x86_segment){ .selector = 0x98, .base = TSS, .limit = 0x67, .type = 0xb,
				     .present = true };
	r.ldt.unusable = true;
	return r;
}

static uint32_t h32(unsigned v)
{
	return 0xc0100000u + v * 0x10;
}

TEST(protected_mode_same_privilege)
{
	for (int with_err = 0; with_err < 2; with_err++) {
		for (unsigned type = 0xe; type <= 0xf; type++) {
			struct x86_regs r = pm_setup(), before;
			struct x86_event ev = { .type = X86_EVENT_HW_EXCEPTION,
						.vector = with_err ? X86_GP : X86_UD,
						.has_error_code = with_err, .error_code = 0xabc };
			uint64_t sp = 0x8ff6 - (with_err ? 16 : 12);

			gate32(ev.vector, CS32, h32(ev.vector), type, 0, 1);
			r.rflags |= X86_RFLAGS_TF;
			before = r;
			ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
			/* [error code] EIP CS EFLAGS, 4 bytes each. */
			if (with_err)
				EXPECT_EQ(get(sp, 4), 0xabc);
			sp += with_err ? 4 : 0;
			EXPECT_EQ(get(sp, 4), 0xc0001234);
			EXPECT_EQ(get(sp + 4, 4), CS32);
			EXPECT_EQ(get(sp + 8, 4), before.rflags | X86_RFLAGS_RF);
			EXPECT_EQ(get(sp + 12, 4), 0); /* untouched below the old ESP */
			EXPECT_EQ(r.gpr[X86_RSP], 0x8ff6 - (with_err ? 16 : 12));
			EXPECT_EQ(r.rip, h32(ev.vector));
			EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS32);
			EXPECT_EQ(!!(r.rflags & X86_RFLAGS_IF), type == 0xf);
			EXPECT_FALSE(r.rflags & X86_RFLAGS_TF);
			EXPECT_TRUE(r.rflags & X86_RFLAGS_CF);
			EXPECT_EQ(F.writes, with_err ? 4 : 3);
		}
	}
}

TEST(protected_mode_inner_stack)
{
	struct x86_regs r = pm_setup(), before;
	struct x86_event ev = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_PF,
				.has_error_code = true, .error_code = 5, .has_cr2 = true,
				.cr2 = 0x1000 };
	uint64_t sp = KSTACK32 - 24;

	seg(&r, X86_SEG_CS, CS32U, 3, false, true);
	seg(&r, X86_SEG_SS, DS32U, 3, false, true);
	r.cpl = 3;
	r.gpr[X86_RSP] = 0xbffffe00ull;
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	/* err EIP CS EFLAGS ESP SS */
	EXPECT_EQ(get(sp, 4), 5);
	EXPECT_EQ(get(sp + 4, 4), 0xc0001234);
	EXPECT_EQ(get(sp + 8, 4), CS32U);
	EXPECT_EQ(get(sp + 12, 4), before.rflags | X86_RFLAGS_RF);
	EXPECT_EQ(get(sp + 16, 4), 0xbffffe00u);
	EXPECT_EQ(get(sp + 20, 4), DS32U);
	EXPECT_EQ(r.gpr[X86_RSP], sp);
	EXPECT_EQ(r.seg[X86_SEG_SS].selector, DS32);
	EXPECT_TRUE(r.seg[X86_SEG_SS].db);
	EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS32);
	EXPECT_EQ(r.cpl, 0);
	EXPECT_EQ(r.cr2, 0x1000);
	/* gate, CS, TSS, SS descriptor: all implicit. */
	EXPECT_EQ(F.sys_reads, 4);
}

static struct x86_regs pm_user(void)
{
	struct x86_regs r = pm_setup();

	seg(&r, X86_SEG_CS, CS32U, 3, false, true);
	seg(&r, X86_SEG_SS, DS32U, 3, false, true);
	r.cpl = 3;
	return r;
}

/* The error a protected-mode delivery ends in (handler's frame). */
static void pm_expect(struct x86_regs *r, const struct x86_event *ev, unsigned vec, int64_t err)
{
	struct x86_event_result res;
	int st = x86_event_deliver(r, ev, &OPS, NULL, &res);

	ASSERT_EQ(st, X86_EVENT_OK);
	EXPECT_EQ(res.delivered.vector, vec);
	EXPECT_EQ(r->rip, h32(vec));
	if (err >= 0)
		EXPECT_EQ(get(r->gpr[X86_RSP], 4), err);
}

TEST(protected_mode_errors)
{
	struct x86_regs r;
	struct x86_event ext = { .type = X86_EVENT_EXT_INTR, .vector = 0x30 };
	struct x86_event_result res;

	/* IDT limit: 8-byte entries. */
	r = pm_setup();
	r.idt.limit = 0x30 * 8 + 6;
	pm_expect(&r, &ext, X86_GP, 0x30 * 8 + 3);
	/* Not present. */
	r = pm_setup();
	gate32(0x30, CS32, h32(0x30), 0xe, 0, 0);
	pm_expect(&r, &ext, X86_NP, 0x30 * 8 + 3);
	/* A 64-bit-only... no: a call gate (0xc) is the wrong type. */
	r = pm_setup();
	gate32(0x30, CS32, h32(0x30), 0xc, 0, 1);
	pm_expect(&r, &ext, X86_GP, 0x30 * 8 + 3);
	/* A 64-bit code segment outside long mode is just a code segment. */
	/* EIP beyond the CS limit: #GP(EXT). */
	r = pm_setup();
	gate32(0x30, CS32_SMALL, 0x10000, 0xe, 0, 1);
	pm_expect(&r, &ext, X86_GP, 1);
	r = pm_setup();
	gate32(0x30, CS32_SMALL, 0xffff, 0xe, 0, 1);
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_OK);
	EXPECT_EQ(r.rip, 0xffff);
	EXPECT_EQ(r.seg[X86_SEG_CS].selector, CS32_SMALL);

	/* Inner stack: SS0 null -> #TS(EXT); RPL wrong, read-only, DPL wrong ->
	 * #TS(SS|EXT); not present -> #SS(SS|EXT); TSS too short -> #TS(TR|EXT).
	 * The #TS/#SS handler is reached on the same broken stack, so route it
	 * through a conforming... no: give #TS/#SS DPL3 code so they stay at CPL3. */
	static const struct {
		uint16_t ss0;
		uint32_t limit;
		unsigned vec;
		uint32_t err;
	} rows[] = {
		{ 0, 0x67, X86_TS, 1 },
		{ DS32 | 1, 0x67, X86_TS, DS32 | 1 },
		{ DS0_RO, 0x67, X86_TS, DS0_RO | 1 },
		{ DS32U & ~3, 0x67, X86_TS, (DS32U & ~3) | 1 },
		{ CS32, 0x67, X86_TS, CS32 | 1 },
		{ DS0_NP, 0x67, X86_SS, DS0_NP | 1 },
		{ GDT_END, 0x67, X86_TS, GDT_END | 1 },
		{ DS32, 0x08, X86_TS, 0x98 | 1 }, /* SS0 ends at offset 9 */
		{ DS32, 0x09, 0x30, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		r = pm_user();
		DIAG("SS0 %#x limit %#x", rows[i].ss0, rows[i].limit);
		put(TSS + 8, rows[i].ss0, 2);
		r.tr.limit = rows[i].limit;
		gate32(X86_TS, CS32U, h32(X86_TS), 0xe, 0, 1);
		gate32(X86_SS, CS32U, h32(X86_SS), 0xe, 0, 1);
		ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_OK);
		EXPECT_EQ(res.delivered.vector, rows[i].vec);
		if (rows[i].vec != 0x30) {
			EXPECT_EQ(r.cpl, 3);
			EXPECT_EQ(get(r.gpr[X86_RSP], 4), rows[i].err);
		} else {
			EXPECT_EQ(r.cpl, 0);
		}
		if (test_failed())
			return;
	}

	/* Stack room: an expand-up SS whose limit cuts the frame -> #SS(EXT),
	 * and that #SS needs the same stack: #DF needs it too: shutdown. */
	r = pm_setup();
	r.seg[X86_SEG_SS].limit = 0x8ff6 - 13; /* the top slot's last byte is out */
	r.seg[X86_SEG_SS].g = false;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);
	r = pm_setup();
	r.seg[X86_SEG_SS].limit = 0x8ff6 - 1;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_OK);
	/* An expand-down stack: offsets must be above the limit. */
	r = pm_setup();
	r.seg[X86_SEG_SS].type = 0x7;
	r.seg[X86_SEG_SS].limit = 0x8ff6 - 13;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_OK);
	r = pm_setup();
	r.seg[X86_SEG_SS].type = 0x7;
	r.seg[X86_SEG_SS].limit = 0x8ff6 - 12;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_TRIPLE_FAULT);
	/* An SS with a base: linear = base + offset. */
	r = pm_setup();
	r.seg[X86_SEG_SS].base = 0x10000;
	r.gpr[X86_RSP] = 0x100;
	ASSERT_EQ(x86_event_deliver(&r, &ext, &OPS, NULL, &res), X86_EVENT_OK);
	EXPECT_EQ(r.gpr[X86_RSP], 0x100 - 12);
	EXPECT_EQ(get(0x10000 + 0x100 - 12, 4), 0xc0001234);
}

TEST(protected_mode_16bit_gate_and_unhandled)
{
	struct x86_regs r = pm_setup(), before;
	struct x86_event ev = { .type = X86_EVENT_HW_EXCEPTION, .vector = X86_GP,
				.has_error_code = true, .error_code = 0x1238 };
	struct x86_event_result res;

	/* A 16-bit interrupt gate: 2-byte slots, IP = low 16 bits of the offset. */
	gate32(X86_GP, CS16, 0x12345678, 0x6, 0, 1);
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.gpr[X86_RSP], 0x8ff6 - 8);
	EXPECT_EQ(get(0x8ff6 - 8, 2), 0x1238);
	EXPECT_EQ(get(0x8ff6 - 6, 2), 0x1234); /* IP: low half of EIP */
	EXPECT_EQ(get(0x8ff6 - 4, 2), CS32);
	EXPECT_EQ(get(0x8ff6 - 2, 2), (before.rflags | X86_RFLAGS_RF) & 0xffff);
	EXPECT_EQ(r.rip, 0x5678);
	EXPECT_FALSE(r.rflags & X86_RFLAGS_IF);

	/* Task gates and a 16-bit TSS are not modelled. */
	r = pm_setup();
	gate32(0x30, 0x98, 0, 0x5, 0, 1);
	ev = (struct x86_event){ .type = X86_EVENT_EXT_INTR, .vector = 0x30 };
	before = r;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, &res), X86_EVENT_UNHANDLED);
	EXPECT_EQ(memcmp(&r, &before, sizeof(r)), 0);
	r = pm_user();
	r.tr.type = 0x3;
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, &res), X86_EVENT_UNHANDLED);
	/* A task gate in long mode is just a wrong type: #GP. */
	r = lm_setup();
	gate64(0x30, 0x98, 0, 0x5, 0, 1, 0);
	expect_handled(&r, &ev, X86_GP, 0x30 * 8 + 3);
}

/* ---- the choice of the next event --------------------------------------- */

TEST(queue_exception_classes)
{
	static const struct {
		uint8_t prev, next, want;
		bool triple;
	} rows[] = {
		{ X86_DE, X86_GP, X86_DF, false }, { X86_GP, X86_NP, X86_DF, false },
		{ X86_TS, X86_SS, X86_DF, false }, { X86_PF, X86_PF, X86_DF, false },
		{ X86_PF, X86_GP, X86_DF, false }, { X86_PF, X86_UD, X86_UD, false },
		{ X86_GP, X86_PF, X86_PF, false }, { X86_UD, X86_GP, X86_GP, false },
		{ X86_DB, X86_PF, X86_PF, false }, { X86_GP, X86_UD, X86_UD, false },
		{ X86_DF, X86_UD, X86_DF, true },  { X86_DF, X86_GP, X86_DF, true },
	};

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		for (int injected = 0; injected < 2; injected++) {
			struct kvm_x86_events ev = { 0 };

			x86_event_queue_exception(&ev, rows[i].prev, true, 0x55, rows[i].prev == X86_PF,
						  rows[i].prev == X86_PF ? 0x1000 : 0);
			if (injected) {
				ev.exception.pending = false;
				ev.exception.injected = true;
			}
			x86_event_queue_exception(&ev, rows[i].next, rows[i].next != X86_UD, 0x66,
						  rows[i].next == X86_PF,
						  rows[i].next == X86_PF ? 0x2000 : 0);
			DIAG("%u then %u", rows[i].prev, rows[i].next);
			EXPECT_EQ(ev.exception.nr, rows[i].want);
			EXPECT_EQ(ev.triple_fault_pending, rows[i].triple);
			if (rows[i].triple)
				continue;
			EXPECT_TRUE(ev.exception.pending);
			EXPECT_FALSE(ev.exception.injected);
			if (rows[i].want == X86_DF) {
				EXPECT_TRUE(ev.exception.has_error_code);
				EXPECT_EQ(ev.exception.error_code, 0);
				EXPECT_FALSE(ev.exception.has_payload);
			} else {
				EXPECT_EQ(ev.exception.has_payload, rows[i].next == X86_PF);
				EXPECT_EQ(ev.exception.payload, rows[i].next == X86_PF ? 0x2000 : 0);
			}
		}
	}
}

/* A fake in-kernel LAPIC: a stack of pending vectors. */
struct fake_apic {
	int pending[8];
	unsigned n, acked;
	bool accept;
};

static int apic_peek(void *ctx)
{
	struct fake_apic *a = ctx;

	return a->n ? a->pending[a->n - 1] : -1;
}

static int apic_ack(void *ctx)
{
	struct fake_apic *a = ctx;

	if (!a->n)
		return -1;
	a->acked++;
	return a->pending[--a->n];
}

static bool apic_accept(void *ctx)
{
	return ((struct fake_apic *)ctx)->accept;
}

TEST(inject_pending_exception_payload)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct x86_event_env env = { 0 };
	struct x86_inject_result out;

	x86_event_queue_exception(&ev, X86_PF, true, 0x6, true, 0xfeed000);
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(out.last.vector, X86_PF);
	EXPECT_EQ(r.cr2, 0xfeed000);
	EXPECT_EQ(r.rip, handler(X86_PF));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 6);
	/* RF in the pushed RFLAGS: a fault. */
	EXPECT_TRUE(get(r.gpr[X86_RSP] + 24, 8) & X86_RFLAGS_RF);
	EXPECT_FALSE(ev.exception.pending || ev.exception.injected || ev.exception.has_payload);

	/* #DB: the payload lands in DR6 (B1 and BS), DR7.GD is cleared, no RF. */
	r = lm_setup();
	r.dr[6] = 0xffff0ff0ull | 0x1; /* a stale B0 */
	r.dr[7] = 0x2400 | 0x400;
	memset(&ev, 0, sizeof(ev));
	x86_event_queue_exception(&ev, X86_DB, false, 0, true, 0x4002);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(r.dr[6], 0xffff4ff2ull);
	EXPECT_EQ(r.dr[7], 0x400);
	EXPECT_FALSE(get(r.gpr[X86_RSP] + 16, 8) & X86_RFLAGS_RF);
	/* An RTM payload bit (16) clears the active-low DR6.RTM. */
	r = lm_setup();
	r.dr[6] = 0xffff0ff0ull;
	x86_event_queue_exception(&ev, X86_DB, false, 0, true, 0x10000);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(r.dr[6], 0xfffe0ff0ull);
	/* An injected exception (from KVM_SET_VCPU_EVENTS) goes as is. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	ev.exception.injected = true;
	ev.exception.nr = X86_GP;
	ev.exception.has_error_code = true;
	ev.exception.error_code = 0x18;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 0x18);
	EXPECT_FALSE(ev.exception.injected);
}

TEST(inject_nmi_blocking)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct x86_event_env env = { 0 };
	struct x86_inject_result out;

	ev.nmi.pending = 2;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	/* One NMI, then masking holds the second until IRET. */
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(out.last.type, X86_EVENT_NMI);
	EXPECT_EQ(r.rip, handler(2));
	EXPECT_TRUE(ev.nmi.masked);
	EXPECT_EQ(ev.nmi.pending, 1);
	EXPECT_FALSE(ev.nmi.injected);
	EXPECT_TRUE(out.want_nmi_window);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 0);
	ev.nmi.masked = false; /* IRET */
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(ev.nmi.pending, 0);
	EXPECT_FALSE(out.want_nmi_window);

	/* The STI and MOV SS shadows block NMIs too; delivery ends the shadow. */
	for (unsigned sh = X86_SHADOW_MOV_SS; sh <= X86_SHADOW_STI; sh++) {
		r = lm_setup();
		memset(&ev, 0, sizeof(ev));
		ev.nmi.pending = 1;
		ev.interrupt.shadow = (uint8_t)sh;
		ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
		EXPECT_EQ(out.delivered, 0);
		EXPECT_TRUE(out.want_nmi_window);
		ev.interrupt.shadow = 0; /* one instruction later */
		ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
		EXPECT_EQ(out.delivered, 1);
	}
	/* IF does not block an NMI; KVM_GUESTDBG_BLOCKIRQ does. */
	r = lm_setup();
	r.rflags &= ~X86_RFLAGS_IF;
	memset(&ev, 0, sizeof(ev));
	ev.nmi.pending = 1;
	env.block_irq = true;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 0);
	env.block_irq = false;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	/* An NMI whose gate is missing: #NP is delivered, NMIs stay masked. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	ev.nmi.pending = 1;
	gate64(2, CS64, handler(2), 0xe, 0, 0, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.last.vector, X86_NP);
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), 2 * 8 + 3);
	EXPECT_TRUE(ev.nmi.masked);
	EXPECT_FALSE(ev.nmi.injected);
	/* An injected NMI is re-delivered even while masked. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	ev.nmi.injected = true;
	ev.nmi.masked = true;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_FALSE(ev.nmi.injected);
}

TEST(inject_userspace_irqchip)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct x86_event_env env = { .request_interrupt_window = true };
	struct x86_inject_result out;

	/* IF=1, nothing pending: the window is open, exit at once. */
	EXPECT_TRUE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 0);
	EXPECT_TRUE(out.irq_window_open);
	/* The STI shadow closes it; so does IF=0 (and then a window is wanted). */
	ev.interrupt.shadow = X86_SHADOW_STI;
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_FALSE(out.irq_window_open);
	EXPECT_TRUE(out.want_irq_window);
	ev.interrupt.shadow = 0;
	r.rflags &= ~X86_RFLAGS_IF;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_FALSE(out.irq_window_open);
	EXPECT_TRUE(out.want_irq_window);

	/* KVM_INTERRUPT: delivered at the next entry even with IF=0 (the VMM
	 * owns that decision); not ready while it is queued. */
	x86_event_queue_interrupt(&ev, 0x31);
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	r.rflags |= X86_RFLAGS_IF;
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	r.rflags &= ~X86_RFLAGS_IF;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(out.last.type, X86_EVENT_EXT_INTR);
	EXPECT_EQ(r.rip, handler(0x31));
	EXPECT_FALSE(ev.interrupt.injected);
	/* Through an interrupt gate IF is now 0: no window. */
	EXPECT_FALSE(out.irq_window_open);
	/* Through a trap gate with IF=1: the window opens right after. */
	r = lm_setup();
	gate64(0x32, CS64, handler(0x32), 0xf, 0, 1, 0);
	x86_event_queue_interrupt(&ev, 0x32);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_TRUE(out.irq_window_open);
	/* A pending exception first, then the injected interrupt on top of it
	 * (an exception never waits behind an interrupt). */
	r = lm_setup();
	x86_event_queue_interrupt(&ev, 0x33);
	x86_event_queue_exception(&ev, X86_UD, false, 0, false, 0);
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 2);
	EXPECT_EQ(out.last.vector, 0x33);
	EXPECT_EQ(r.rip, handler(0x33));
	/* The interrupt frame's return address is the #UD handler. */
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), handler(X86_UD));
	/* Without request_interrupt_window there is no window exit. */
	r = lm_setup();
	env.request_interrupt_window = false;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_FALSE(out.irq_window_open);
	EXPECT_TRUE(x86_event_ready_for_injection(&ev, &r, &env));
}

TEST(inject_in_kernel_lapic)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct fake_apic apic = { .pending = { 0x40, 0x41 }, .n = 2, .accept = true };
	struct x86_irq_source src = { apic_peek, apic_ack, apic_accept, &apic };
	struct x86_event_env env = { .irq = &src };
	struct x86_inject_result out;

	/* IF=0: nothing taken, a window wanted. */
	r.rflags &= ~X86_RFLAGS_IF;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 0);
	EXPECT_EQ(apic.acked, 0);
	EXPECT_TRUE(out.want_irq_window);
	/* IF=1: one interrupt through the interrupt gate; IF is 0 after it. */
	r.rflags |= X86_RFLAGS_IF;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(apic.acked, 1);
	EXPECT_EQ(r.rip, handler(0x41));
	EXPECT_TRUE(out.want_irq_window);
	/* Trap gates: both go, nested, before any handler instruction. */
	r = lm_setup();
	apic = (struct fake_apic){ .pending = { 0x40, 0x41 }, .n = 2, .accept = true };
	gate64(0x40, CS64, handler(0x40), 0xf, 0, 1, 0);
	gate64(0x41, CS64, handler(0x41), 0xf, 0, 1, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 2);
	EXPECT_EQ(r.rip, handler(0x40));
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), handler(0x41));
	EXPECT_FALSE(out.want_irq_window);
	/* NMI before the interrupt. */
	r = lm_setup();
	apic = (struct fake_apic){ .pending = { 0x40 }, .n = 1, .accept = true };
	ev.nmi.pending = 1;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1); /* the NMI's interrupt gate cleared IF */
	EXPECT_EQ(r.rip, handler(2));
	EXPECT_EQ(apic.acked, 0);
	/* The split irqchip: ready only when an ExtINT could be stored. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	apic = (struct fake_apic){ .accept = false };
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	apic.accept = true;
	EXPECT_TRUE(x86_event_ready_for_injection(&ev, &r, &env));
	/* The kernel PIC: always ready, never a window exit. */
	env.pic_in_kernel = true;
	env.request_interrupt_window = true;
	r.rflags &= ~X86_RFLAGS_IF;
	EXPECT_TRUE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_FALSE(out.irq_window_open);
}

TEST(inject_triple_fault_and_unhandled)
{
	struct x86_regs r = lm_setup(), before = r;
	struct kvm_x86_events ev = { 0 };
	struct x86_event_env env = { 0 };
	struct x86_inject_result out;

	/* A pending triple fault (e.g. queued on top of #DF) comes first. */
	x86_event_queue_exception(&ev, X86_DF, true, 0, false, 0);
	x86_event_queue_exception(&ev, X86_GP, true, 0, false, 0);
	EXPECT_TRUE(ev.triple_fault_pending);
	EXPECT_FALSE(x86_event_ready_for_injection(&ev, &r, &env));
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_TRIPLE_FAULT);
	EXPECT_FALSE(ev.triple_fault_pending);
	EXPECT_EQ(memcmp(&r, &before, sizeof(r)), 0);

	/* A delivery that shuts down drops the event. */
	memset(&ev, 0, sizeof(ev));
	gate64(X86_GP, CS64, handler(X86_GP), 0xe, 0, 0, 0);
	gate64(X86_DF, CS64, handler(X86_DF), 0xe, 0, 0, 0);
	x86_event_queue_exception(&ev, X86_GP, true, 0, false, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_TRIPLE_FAULT);
	EXPECT_FALSE(ev.exception.pending || ev.exception.injected);

	/* Unhandled (IDT on MMIO): the event stays queued, as injected. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	F.mmio_page = IDT >> 12;
	x86_event_queue_exception(&ev, X86_UD, false, 0, false, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_UNHANDLED);
	EXPECT_TRUE(out.why != NULL);
	EXPECT_TRUE(ev.exception.pending);
	EXPECT_EQ(ev.exception.nr, X86_UD);
	F.mmio_page = 0;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(r.rip, handler(X86_UD));
	/* A #PF's payload is not consumed by an unhandled attempt. */
	r = lm_setup();
	memset(&ev, 0, sizeof(ev));
	F.mmio_page = IDT >> 12;
	x86_event_queue_exception(&ev, X86_PF, true, 2, true, 0xabc000);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_UNHANDLED);
	EXPECT_EQ(r.cr2, 0);
	EXPECT_TRUE(ev.exception.pending && ev.exception.has_payload);
	F.mmio_page = 0;
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(r.cr2, 0xabc000);
	/* An acknowledged LAPIC interrupt stays queued as injected. */
	{
		struct fake_apic apic = { .pending = { 0x44 }, .n = 1, .accept = true };
		struct x86_irq_source src = { apic_peek, apic_ack, apic_accept, &apic };
		struct x86_event_env kenv = { .irq = &src };

		r = lm_setup();
		memset(&ev, 0, sizeof(ev));
		F.mmio_page = IDT >> 12;
		ASSERT_EQ(x86_event_inject(&ev, &r, &kenv, &OPS, NULL, &out),
			  X86_EVENT_UNHANDLED);
		EXPECT_EQ(apic.acked, 1);
		EXPECT_TRUE(ev.interrupt.injected);
		EXPECT_EQ(ev.interrupt.nr, 0x44);
		F.mmio_page = 0;
		r.rflags &= ~X86_RFLAGS_IF; /* injected: goes regardless */
		ASSERT_EQ(x86_event_inject(&ev, &r, &kenv, &OPS, NULL, &out), X86_EVENT_OK);
		EXPECT_EQ(r.rip, handler(0x44));
		EXPECT_EQ(apic.acked, 1);
	}

	/* A queued #BP (KVM_SET_GUEST_DEBUG) is a software exception: DPL checked. */
	r = lm_user();
	memset(&ev, 0, sizeof(ev));
	x86_event_queue_exception(&ev, X86_BP, false, 0, false, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.last.vector, X86_GP);
	EXPECT_EQ(get(r.gpr[X86_RSP], 8), X86_BP * 8 + 2);
}

TEST(inject_ends_shadow_and_stops_at_window)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct fake_apic apic = { .pending = { 0x40, 0x41 }, .n = 2, .accept = true };
	struct x86_irq_source src = { apic_peek, apic_ack, apic_accept, &apic };
	struct x86_event_env env = { .irq = &src, .request_interrupt_window = true };
	struct x86_inject_result out;

	/* An exception delivered inside the STI shadow ends it. */
	ev.interrupt.shadow = X86_SHADOW_STI;
	r.rflags &= ~X86_RFLAGS_IF;
	x86_event_queue_exception(&ev, X86_GP, true, 0, false, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(ev.interrupt.shadow, 0);
	EXPECT_EQ(apic.acked, 0);

	/* Split irqchip with request_interrupt_window: after the first interrupt
	 * (trap gate, IF stays 1) the window is open, so KVM_RUN exits to the
	 * VMM before taking the second one. */
	r = lm_setup();
	gate64(0x40, CS64, handler(0x40), 0xf, 0, 1, 0);
	gate64(0x41, CS64, handler(0x41), 0xf, 0, 1, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_EQ(out.delivered, 1);
	EXPECT_EQ(apic.acked, 1);
	EXPECT_TRUE(out.irq_window_open);
}

TEST(insn_retired_shadow_and_iret)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct x86_event_env env = { .request_interrupt_window = true };
	struct x86_inject_result out;

	/* STI; the next instruction; then the window opens. */
	r.rflags |= X86_RFLAGS_IF;
	x86_event_insn_retired(&ev, X86_FX_IF_ON | X86_FX_STI_SHADOW);
	EXPECT_EQ(ev.interrupt.shadow, X86_SHADOW_STI);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_FALSE(out.irq_window_open);
	EXPECT_TRUE(out.want_irq_window);
	x86_event_insn_retired(&ev, 0);
	EXPECT_EQ(ev.interrupt.shadow, 0);
	ASSERT_EQ(x86_event_inject(&ev, &r, &env, &OPS, NULL, &out), X86_EVENT_OK);
	EXPECT_TRUE(out.irq_window_open);
	/* A MOV SS shadow (set through KVM_SET_VCPU_EVENTS) ends the same way. */
	ev.interrupt.shadow = X86_SHADOW_MOV_SS;
	x86_event_insn_retired(&ev, X86_FX_IF_ON);
	EXPECT_EQ(ev.interrupt.shadow, 0);
	/* IRET unblocks NMIs. */
	ev.nmi.masked = true;
	x86_event_insn_retired(&ev, X86_FX_SEGMENTS);
	EXPECT_TRUE(ev.nmi.masked);
	x86_event_insn_retired(&ev, X86_FX_IRET_NMI | X86_FX_SEGMENTS);
	EXPECT_FALSE(ev.nmi.masked);
}

TEST(wakes_halt_and_soft_int_types)
{
	struct x86_regs r = lm_setup();
	struct kvm_x86_events ev = { 0 };
	struct fake_apic apic = { .accept = true };
	struct x86_irq_source src = { apic_peek, apic_ack, apic_accept, &apic };
	struct x86_event_env env = { .irq = &src };
	struct x86_event e;

	EXPECT_FALSE(x86_event_wakes_halt(&ev, &r, &env));
	apic.pending[apic.n++] = 0x30;
	EXPECT_TRUE(x86_event_wakes_halt(&ev, &r, &env));
	r.rflags &= ~X86_RFLAGS_IF;
	EXPECT_FALSE(x86_event_wakes_halt(&ev, &r, &env));
	ev.nmi.pending = 1;
	EXPECT_TRUE(x86_event_wakes_halt(&ev, &r, &env));
	ev.nmi.masked = true;
	EXPECT_FALSE(x86_event_wakes_halt(&ev, &r, &env));
	x86_event_queue_exception(&ev, X86_UD, false, 0, false, 0);
	EXPECT_TRUE(x86_event_wakes_halt(&ev, &r, &env));

	x86_event_soft_int(&e, 0xcd, 0x80, 2);
	EXPECT_EQ(e.type, X86_EVENT_SOFT_INT);
	EXPECT_EQ(e.vector, 0x80);
	EXPECT_EQ(e.insn_len, 2);
	x86_event_soft_int(&e, 0xcc, X86_BP, 1);
	EXPECT_EQ(e.type, X86_EVENT_SOFT_EXCEPTION);
	x86_event_soft_int(&e, 0xce, X86_OF, 1);
	EXPECT_EQ(e.type, X86_EVENT_SOFT_EXCEPTION);
	x86_event_soft_int(&e, 0xf1, X86_DB, 1);
	EXPECT_EQ(e.type, X86_EVENT_PRIV_SOFT_EXCEPTION);
}

TEST(protected_mode_linear_wrap)
{
	/* Outside long mode the IDT base + offset wraps at 4 GiB. */
	struct x86_regs r = pm_setup();
	struct x86_event ev = { .type = X86_EVENT_EXT_INTR, .vector = 0x30 };

	r.idt.base = 0x100000000ull - 0x80; /* vector 0x30 at +0x180: 0x100 */
	put(0x100, (h32(0x30) & 0xffff) | ((uint64_t)CS32 << 16) | (0xeull << 40) |
			   (1ull << 47) | ((uint64_t)(h32(0x30) >> 16) << 48), 8);
	ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, NULL), X86_EVENT_OK);
	EXPECT_EQ(r.rip, h32(0x30));
}

/* ---- the host CPU as a reference ----------------------------------------- */

/* Each instruction sits between two labels: its start and its end. */
__asm__(".text\n"
	"xev_ud2: ud2\n xev_ud2_end: ret\n"
	"xev_hlt: hlt\n xev_hlt_end: ret\n"
	"xev_int3: int3\n xev_int3_end: ret\n"
	"xev_int41: int $0x41\n xev_int41_end: ret\n"
	"xev_int1: .byte 0xf1\n xev_int1_end: ret\n"
	"xev_div0: xor %ecx, %ecx\n xev_div0_insn: div %ecx\n xev_div0_end: ret\n"
	"xev_pf: xor %eax, %eax\n xev_pf_insn: movl $1, 8(%rax)\n xev_pf_end: ret\n");
extern const uint8_t xev_ud2[], xev_ud2_end[], xev_hlt[], xev_hlt_end[], xev_int3[],
	xev_int3_end[], xev_int41[], xev_int41_end[], xev_int1[], xev_int1_end[], xev_div0[],
	xev_div0_insn[], xev_div0_end[], xev_pf[], xev_pf_insn[], xev_pf_end[];

static sigjmp_buf host_jmp;
static volatile uint64_t host_efl, host_trapno, host_err, host_rip;

static void host_trap(int sig, siginfo_t *si, void *ucv)
{
	ucontext_t *uc = ucv;

	(void)sig;
	(void)si;
	host_efl = (uint64_t)uc->uc_mcontext.gregs[REG_EFL];
	host_trapno = (uint64_t)uc->uc_mcontext.gregs[REG_TRAPNO];
	host_err = (uint64_t)uc->uc_mcontext.gregs[REG_ERR];
	host_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	siglongjmp(host_jmp, 1);
}

TEST(host_cpu_rf_error_code_and_return_rip)
{
	static const struct {
		const char *name;
		const uint8_t *fn, *insn, *end;
		uint8_t type, vector, want_trapno;
		bool has_err;
	} rows[] = {
		{ "ud2", xev_ud2, xev_ud2, xev_ud2_end, X86_EVENT_HW_EXCEPTION, X86_UD, X86_UD, false },
		{ "hlt", xev_hlt, xev_hlt, xev_hlt_end, X86_EVENT_HW_EXCEPTION, X86_GP, X86_GP, true },
		{ "div", xev_div0, xev_div0_insn, xev_div0_end, X86_EVENT_HW_EXCEPTION, X86_DE, X86_DE,
		  false },
		{ "store to 8", xev_pf, xev_pf_insn, xev_pf_end, X86_EVENT_HW_EXCEPTION, X86_PF, X86_PF,
		  true },
		{ "int3", xev_int3, xev_int3, xev_int3_end, X86_EVENT_SOFT_EXCEPTION, X86_BP, X86_BP,
		  false },
		{ "int $0x41", xev_int41, xev_int41, xev_int41_end, X86_EVENT_SOFT_INT, 0x41, X86_GP,
		  false },
		{ "int1", xev_int1, xev_int1, xev_int1_end, X86_EVENT_PRIV_SOFT_EXCEPTION, X86_DB, X86_DB,
		  false },
	};
	struct sigaction sa = { .sa_sigaction = host_trap, .sa_flags = SA_SIGINFO | SA_NODEFER };
	int sigs[] = { SIGSEGV, SIGILL, SIGTRAP, SIGFPE, SIGBUS };

	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		ASSERT_EQ(sigaction(sigs[i], &sa, NULL), 0);
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		bool soft = rows[i].type >= X86_EVENT_SOFT_INT;
		unsigned len = (unsigned)(rows[i].end - rows[i].insn);
		struct x86_regs r = lm_user();
		struct x86_event ev = { .type = rows[i].type, .vector = rows[i].vector,
					.has_error_code = rows[i].has_err, .insn_len = (uint8_t)len };
		struct x86_event_result res;
		uint64_t start, pushed_rip, pushed_flags, err = 0;

		host_trapno = ~0ull;
		if (!sigsetjmp(host_jmp, 1))
			((void (*)(void))(uintptr_t)rows[i].fn)();
		DIAG("%s: host trapno %llu err %#llx rflags %#llx rip +%lld", rows[i].name,
		     (unsigned long long)host_trapno, (unsigned long long)host_err,
		     (unsigned long long)host_efl,
		     (long long)(host_rip - (uint64_t)(uintptr_t)rows[i].insn));
		if (host_trapno != rows[i].want_trapno)
			SKIP("%s: the host reported vector %llu, not %u (a hypervisor or kernel "
			     "in between)", rows[i].name, (unsigned long long)host_trapno,
			     rows[i].want_trapno);

		/* The same event in a guest whose IDT is Linux's: DPL3 only for #BP. */
		gate64(X86_BP, CS64, handler(X86_BP), 0xe, 3, 1, 0);
		start = r.rip;
		if (soft)
			r.rip += len; /* as the emulator leaves it */
		if (rows[i].has_err) {
			ev.error_code = (uint32_t)host_err;
			err = host_err;
		}
		ASSERT_EQ(x86_event_deliver(&r, &ev, &OPS, NULL, &res), X86_EVENT_OK);
		EXPECT_EQ(res.delivered.vector, rows[i].want_trapno);
		if (res.delivered.has_error_code) {
			err = get(r.gpr[X86_RSP], 8);
			EXPECT_EQ(err, host_err);
		}
		pushed_rip = get(r.gpr[X86_RSP] + (res.delivered.has_error_code ? 8 : 0), 8);
		pushed_flags = get(r.gpr[X86_RSP] + (res.delivered.has_error_code ? 24 : 16), 8);
		/* The return address relative to the instruction, and RF. */
		EXPECT_EQ(pushed_rip - start, host_rip - (uint64_t)(uintptr_t)rows[i].insn);
		EXPECT_EQ(!!(pushed_flags & X86_RFLAGS_RF), !!(host_efl & X86_RFLAGS_RF));
		(void)err;
		if (test_failed())
			return;
	}
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
