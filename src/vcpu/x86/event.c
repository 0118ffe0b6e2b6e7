/* SPDX-License-Identifier: MIT */
/*
 * Exception and interrupt delivery through the guest IDT, and the choice
 * of the next event (semantics and contracts in event.h).  The check order
 * of the vectoring follows the SDM's INT n / interrupt-delivery
 * description; the choice follows Linux 6.12's event injection at guest
 * entry.
 */
#include "vcpu/x86/event.h"

#include <string.h>

#define DR6_TRAP_BITS 0xfull
#define DR6_BIT12 (1ull << 12)
#define DR6_RTM (1ull << 16)
#define DR6_ACTIVE_LOW 0xffff0ff0ull
#define DR6_FIXED_1 0xfffe0ff0ull
#define DR7_GD (1ull << 13)

/* Descriptor fields (the low 8 bytes of any descriptor). */
#define DESC_TYPE(d) ((unsigned)((d) >> 40) & 0xf)
#define DESC_S(d) (((d) >> 44) & 1)
#define DESC_DPL(d) ((unsigned)((d) >> 45) & 3)
#define DESC_P(d) (((d) >> 47) & 1)
#define DESC_L(d) (((d) >> 53) & 1)
#define DESC_DB(d) (((d) >> 54) & 1)
#define TYPE_CODE 0x8u	   /* S=1: code segment */
#define TYPE_CONFORM 0x4u  /* code: conforming */
#define TYPE_WRITE 0x2u	   /* data: writable */
#define TYPE_EXPDOWN 0x4u  /* data: expand-down */

/* Outcome of one vectoring attempt. */
enum { V_OK, V_FAULT, V_UNHANDLED };

/* One vectoring attempt: a working copy of the registers and what failed. */
struct vec {
	struct x86_regs w;
	const struct x86_event *ev;
	const struct x86_event_ops *ops;
	void *ctx;
	uint32_t ext;		/* EXT bit of error codes raised here */
	struct x86_exception fault;
	const char *why;
};

int x86_exception_class(unsigned vector)
{
	switch (vector) {
	case X86_PF:
		return 2;
	case X86_DE: case X86_TS: case X86_NP: case X86_SS: case X86_GP:
		return 1;
	default:
		return 0;
	}
}

/* Fault-class hardware exceptions (KVM's EXCPT_FAULT): RF goes in the frame. */
static bool fault_class(unsigned vector)
{
	return vector < 32 && vector != X86_DB && vector != X86_NMI && vector != X86_BP &&
	       vector != X86_OF && vector != X86_DF && vector != X86_MC;
}

static bool soft_checked(const struct x86_event *ev)
{
	return ev->type == X86_EVENT_SOFT_INT || ev->type == X86_EVENT_SOFT_EXCEPTION;
}

void x86_event_soft_int(struct x86_event *ev, uint8_t opcode, uint8_t vector, uint8_t insn_len)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = opcode == 0xcd   ? X86_EVENT_SOFT_INT
		   : opcode == 0xf1 ? X86_EVENT_PRIV_SOFT_EXCEPTION
				    : X86_EVENT_SOFT_EXCEPTION;
	ev->vector = vector;
	ev->insn_len = insn_len;
}

static bool soft_type(const struct x86_event *ev)
{
	return soft_checked(ev) || ev->type == X86_EVENT_PRIV_SOFT_EXCEPTION;
}

static int raise(struct vec *v, uint8_t vector, uint32_t error_code)
{
	v->fault = (struct x86_exception){ .vector = vector, .has_error_code = true,
					   .error_code = error_code };
	return V_FAULT;
}

static int unhandled(struct vec *v, const char *why)
{
	v->why = why;
	return V_UNHANDLED;
}

/* A callback's answer as a vectoring outcome. */
static int mem_status(struct vec *v, int r, struct x86_exception *ex)
{
	if (r == X86_MEM_OK)
		return V_OK;
	if (r == X86_MEM_FAULT) {
		v->fault = *ex;
		return V_FAULT;
	}
	return unhandled(v, "event delivery touches MMIO");
}

/* Outside long mode linear addresses wrap at 4 GiB (table base + offset). */
static uint64_t lin(const struct vec *v, uint64_t a)
{
	return (v->w.efer & X86_EFER_LMA) ? a : (a & 0xffffffffull);
}

static int rd(struct vec *v, uint64_t gva, void *buf, unsigned len, unsigned flags)
{
	struct x86_exception ex = { 0 };

	gva = lin(v, gva);
	return mem_status(v, v->ops->read(v->ctx, gva, buf, len, flags, &ex), &ex);
}

static int wr(struct vec *v, uint64_t gva, const void *buf, unsigned len, unsigned flags)
{
	struct x86_exception ex = { 0 };

	gva = lin(v, gva);
	return mem_status(v, v->ops->write(v->ctx, gva, buf, len, flags, &ex), &ex);
}

static uint64_t le(const uint8_t *b, unsigned n)
{
	uint64_t x = 0;

	for (unsigned i = 0; i < n; i++)
		x |= (uint64_t)b[i] << (8 * i);
	return x;
}

static bool canonical(uint64_t a, uint64_t cr4)
{
	unsigned bits = (cr4 & X86_CR4_LA57) ? 57 : 48;

	return (uint64_t)((int64_t)(a << (64 - bits)) >> (64 - bits)) == a;
}

static void unpack_desc(uint64_t d, uint16_t sel, struct x86_segment *s)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
	s->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	s->type = (uint8_t)DESC_TYPE(d);
	s->s = DESC_S(d);
	s->dpl = (uint8_t)DESC_DPL(d);
	s->present = DESC_P(d);
	s->l = DESC_L(d);
	s->db = DESC_DB(d);
	s->g = (d >> 55) & 1;
	if (s->g)
		s->limit = (s->limit << 12) | 0xfff;
}

/*
 * The 8-byte GDT/LDT descriptor of @sel; a selector beyond the table's
 * limit (or into an unusable LDT) raises @vector(selector | EXT).
 */
static int read_desc(struct vec *v, uint16_t sel, uint8_t vector, uint64_t *d)
{
	const struct x86_regs *r = &v->w;
	uint64_t base = r->gdt.base, limit = r->gdt.limit;
	uint8_t b[8];
	int st;

	if (sel & 4) {
		if (r->ldt.unusable || !r->ldt.present)
			return raise(v, vector, (sel & 0xfffc) | v->ext);
		base = r->ldt.base;
		limit = r->ldt.limit;
	}
	if ((uint64_t)(sel & ~7u) + 7 > limit)
		return raise(v, vector, (sel & 0xfffc) | v->ext);
	if ((st = rd(v, base + (sel & ~7u), b, 8, X86_EVENT_ACC_SYSTEM)))
		return st;
	*d = le(b, 8);
	return V_OK;
}

/* The offset range [off, off+len) of @s as a stack (expand-up or down). */
static bool stack_ok(const struct x86_segment *s, uint64_t off, unsigned len)
{
	uint64_t top = s->db ? 0xffffffffull : 0xffffull, last = off + len - 1;

	if (last > top)
		return false;
	if (s->type & TYPE_EXPDOWN)
		return off > s->limit;
	return last <= s->limit;
}

/* The gate, decoded. */
struct gate {
	uint64_t offset;
	uint16_t sel;
	unsigned type, dpl, ist;
	bool present, s;
};

static int read_gate(struct vec *v, struct gate *g)
{
	const struct x86_regs *r = &v->w;
	bool lm = r->efer & X86_EFER_LMA;
	unsigned size = lm ? 16 : 8, vec = v->ev->vector;
	uint32_t idt_err = vec * 8 + 2 + v->ext;
	uint8_t b[16];
	uint64_t lo;
	int st;

	if ((uint64_t)vec * size + size - 1 > r->idt.limit)
		return raise(v, X86_GP, idt_err);
	if ((st = rd(v, r->idt.base + (uint64_t)vec * size, b, size, X86_EVENT_ACC_SYSTEM)))
		return st;
	lo = le(b, 8);
	g->offset = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ull);
	if (lm)
		g->offset |= le(b + 8, 4) << 32;
	g->sel = (uint16_t)(lo >> 16);
	g->type = DESC_TYPE(lo);
	g->s = DESC_S(lo);
	g->dpl = DESC_DPL(lo);
	g->present = DESC_P(lo);
	g->ist = lm ? (unsigned)(lo >> 32) & 7 : 0;
	/* Long mode: only 64-bit interrupt/trap gates; else task, 16- and 32-bit gates. */
	if (g->s || (lm ? (g->type != 0xe && g->type != 0xf)
			: (g->type != 0x5 && g->type != 0x6 && g->type != 0x7 &&
			   g->type != 0xe && g->type != 0xf)))
		return raise(v, X86_GP, idt_err);
	if (soft_checked(v->ev) && g->dpl < r->cpl)
		return raise(v, X86_GP, vec * 8 + 2);
	if (!g->present)
		return raise(v, X86_NP, idt_err);
	if (g->type == 0x5)
		return unhandled(v, "task gate");
	return V_OK;
}

/* The handler's code segment: checks of the gate's selector. */
static int read_cs(struct vec *v, const struct gate *g, uint64_t *d, unsigned *new_cpl)
{
	const struct x86_regs *r = &v->w;
	uint32_t err = (g->sel & 0xfffc) | v->ext;
	int st;

	if ((g->sel & ~3u) == 0)
		return raise(v, X86_GP, v->ext);
	if ((st = read_desc(v, g->sel, X86_GP, d)))
		return st;
	if (!DESC_S(*d) || !(DESC_TYPE(*d) & TYPE_CODE) || DESC_DPL(*d) > r->cpl)
		return raise(v, X86_GP, err);
	if ((r->efer & X86_EFER_LMA) && (!DESC_L(*d) || DESC_DB(*d)))
		return raise(v, X86_GP, err);
	if (!DESC_P(*d))
		return raise(v, X86_NP, err);
	/* A non-conforming segment runs the handler at its DPL; a conforming one
	 * at the current CPL. */
	*new_cpl = (DESC_TYPE(*d) & TYPE_CONFORM) ? r->cpl : DESC_DPL(*d);
	return V_OK;
}

/* The RFLAGS image the frame gets. */
static uint64_t pushed_flags(const struct vec *v)
{
	uint64_t f = v->w.rflags;

	if (v->ev->type == X86_EVENT_HW_EXCEPTION && fault_class(v->ev->vector))
		f |= X86_RFLAGS_RF;
	return f;
}

/*
 * The interrupt frame, highest address first: the old SS and RSP when
 * @stack (a stack switch, or always in 64-bit mode), RFLAGS, CS, RIP, the
 * error code if any.  Returns how many slots it fills (at most 6).
 */
static unsigned build_frame(const struct vec *v, bool stack, uint64_t frame[6])
{
	const struct x86_regs *r = &v->w;
	unsigned n = 0;

	if (stack) {
		frame[n++] = r->seg[X86_SEG_SS].selector;
		frame[n++] = r->gpr[X86_RSP];
	}
	frame[n++] = pushed_flags(v);
	frame[n++] = r->seg[X86_SEG_CS].selector;
	frame[n++] = r->rip;
	if (v->ev->has_error_code)
		frame[n++] = v->ev->error_code;
	return n;
}

static void enter_handler(struct vec *v, const struct gate *g, uint64_t csd, unsigned new_cpl,
			  bool gate16)
{
	struct x86_regs *r = &v->w;

	unpack_desc(csd, (uint16_t)((g->sel & ~3u) | new_cpl), &r->seg[X86_SEG_CS]);
	r->cpl = (uint8_t)new_cpl;
	r->rip = gate16 ? (g->offset & 0xffff) : g->offset;
	r->rflags &= ~(X86_RFLAGS_TF | X86_RFLAGS_NT | X86_RFLAGS_RF | X86_RFLAGS_VM);
	if (!(g->type & 1)) /* interrupt gate (6, 0xe); trap gates are 7, 0xf */
		r->rflags &= ~X86_RFLAGS_IF;
	r->rflags |= X86_RFLAGS_FIXED;
}

static int deliver_long(struct vec *v, const struct gate *g, uint64_t csd, unsigned new_cpl)
{
	struct x86_regs *r = &v->w;
	uint32_t tss_err = (r->tr.selector & 0xfffc) | v->ext;
	unsigned flags = new_cpl == 3 ? X86_EVENT_ACC_USER : 0;
	uint64_t rsp = r->gpr[X86_RSP], frame[6];
	bool inner = new_cpl < r->cpl;
	unsigned n = 0;
	int st;

	if (g->ist || inner) {
		uint64_t off = g->ist ? (uint64_t)g->ist * 8 + 28 : (uint64_t)new_cpl * 8 + 4;
		uint8_t b[8];

		if (off + 7 > r->tr.limit)
			return raise(v, X86_TS, tss_err);
		if ((st = rd(v, r->tr.base + off, b, 8, X86_EVENT_ACC_SYSTEM)))
			return st;
		rsp = le(b, 8);
	}
	if (!canonical(rsp, r->cr4))
		return raise(v, X86_SS, v->ext);
	if (!canonical(g->offset, r->cr4))
		return raise(v, X86_GP, v->ext);
	rsp &= ~0xfull;

	n = build_frame(v, true, frame);
	for (unsigned i = 0; i < n; i++) {
		uint8_t b[8];

		for (unsigned k = 0; k < 8; k++)
			b[k] = (uint8_t)(frame[i] >> (8 * k));
		if ((st = wr(v, rsp - 8 * (i + 1), b, 8, flags)))
			return st;
	}
	if (inner) {
		/* The new SS is the null selector with RPL = the new CPL. */
		struct x86_segment *ss = &r->seg[X86_SEG_SS];

		memset(ss, 0, sizeof(*ss));
		ss->selector = (uint16_t)new_cpl;
		ss->dpl = (uint8_t)new_cpl;
		ss->unusable = true;
	}
	r->gpr[X86_RSP] = rsp - 8 * n;
	enter_handler(v, g, csd, new_cpl, false);
	return V_OK;
}

/* The inner stack of a 32-bit TSS for @new_cpl, checked and loaded in @ss. */
static int tss32_stack(struct vec *v, unsigned new_cpl, struct x86_segment *ss, uint64_t *esp)
{
	const struct x86_regs *r = &v->w;
	uint32_t tss_err = (r->tr.selector & 0xfffc) | v->ext;
	uint64_t off = (uint64_t)new_cpl * 8 + 4, d;
	uint16_t sel;
	uint8_t b[6];
	int st;

	if (r->tr.type != 0x9 && r->tr.type != 0xb)
		return unhandled(v, "16-bit TSS");
	if (off + 5 > r->tr.limit)
		return raise(v, X86_TS, tss_err);
	if ((st = rd(v, r->tr.base + off, b, 6, X86_EVENT_ACC_SYSTEM)))
		return st;
	*esp = le(b, 4);
	sel = (uint16_t)le(b + 4, 2);
	if ((sel & ~3u) == 0)
		return raise(v, X86_TS, v->ext);
	if ((st = read_desc(v, sel, X86_TS, &d)))
		return st;
	if ((sel & 3) != new_cpl || DESC_DPL(d) != new_cpl || !DESC_S(d) ||
	    (DESC_TYPE(d) & TYPE_CODE) || !(DESC_TYPE(d) & TYPE_WRITE))
		return raise(v, X86_TS, (sel & 0xfffc) | v->ext);
	if (!DESC_P(d))
		return raise(v, X86_SS, (sel & 0xfffc) | v->ext);
	unpack_desc(d, sel, ss);
	return V_OK;
}

static int deliver_prot(struct vec *v, const struct gate *g, uint64_t csd, unsigned new_cpl)
{
	struct x86_regs *r = &v->w;
	bool gate16 = g->type == 0x6 || g->type == 0x7, inner = new_cpl < r->cpl;
	unsigned slot = gate16 ? 2 : 4, n = 0, flags = new_cpl == 3 ? X86_EVENT_ACC_USER : 0;
	struct x86_segment ss = r->seg[X86_SEG_SS], cs;
	uint64_t esp = r->gpr[X86_RSP], frame[6], mask;
	uint32_t ss_err = v->ext;
	int st;

	if (inner) {
		if ((st = tss32_stack(v, new_cpl, &ss, &esp)))
			return st;
		ss_err = (ss.selector & 0xfffc) | v->ext;
	}
	n = build_frame(v, inner, frame);

	mask = ss.db ? 0xffffffffull : 0xffffull;
	for (unsigned i = 0; i < n; i++)
		if (!stack_ok(&ss, (esp - slot * (i + 1)) & mask, slot))
			return raise(v, X86_SS, ss_err);
	unpack_desc(csd, g->sel, &cs);
	if ((gate16 ? (g->offset & 0xffff) : (g->offset & 0xffffffffull)) > cs.limit)
		return raise(v, X86_GP, v->ext);
	for (unsigned i = 0; i < n; i++) {
		uint64_t off = (esp - slot * (i + 1)) & mask;
		uint8_t b[4];

		for (unsigned k = 0; k < slot; k++)
			b[k] = (uint8_t)(frame[i] >> (8 * k));
		if ((st = wr(v, (ss.base + off) & 0xffffffffull, b, slot, flags)))
			return st;
	}
	if (inner) {
		r->seg[X86_SEG_SS] = ss;
		r->gpr[X86_RSP] = esp & 0xffffffffull;
	}
	r->gpr[X86_RSP] = (r->gpr[X86_RSP] & ~mask) | ((esp - slot * n) & mask);
	enter_handler(v, g, csd, new_cpl, gate16);
	return V_OK;
}

/* One attempt at vectoring v->ev on v->w. */
static int vector_once(struct vec *v)
{
	struct gate g;
	uint64_t csd;
	unsigned new_cpl;
	int st;

	v->ext = soft_checked(v->ev) ? 0 : 1;
	if ((st = read_gate(v, &g)) || (st = read_cs(v, &g, &csd, &new_cpl)))
		return st;
	if (v->w.efer & X86_EFER_LMA)
		return deliver_long(v, &g, csd, new_cpl);
	return deliver_prot(v, &g, csd, new_cpl);
}

int x86_event_deliver(struct x86_regs *regs, const struct x86_event *ev,
		      const struct x86_event_ops *ops, void *ctx, struct x86_event_result *res)
{
	struct x86_event cur = *ev;
	struct x86_regs base = *regs;
	struct x86_event_result dummy;
	bool replaced = false;

	if (!res)
		res = &dummy;
	memset(res, 0, sizeof(*res));
	if (!(regs->cr0 & X86_CR0_PE) || (regs->rflags & X86_RFLAGS_VM)) {
		res->why = (regs->cr0 & X86_CR0_PE) ? "virtual-8086 mode" : "real mode";
		return X86_EVENT_UNHANDLED;
	}
	/* The chain ends by #DF within a few faults (every vectoring fault is
	 * contributory or #PF); the bound only guards against a bug. */
	for (int round = 0; round < 8; round++) {
		struct vec v = { .ev = &cur, .ops = ops, .ctx = ctx };
		int st, c1, c2;

		v.w = base;
		if (cur.type == X86_EVENT_HW_EXCEPTION && cur.vector == X86_PF && cur.has_cr2)
			v.w.cr2 = cur.cr2;
		st = vector_once(&v);
		if (st == V_OK) {
			*regs = v.w;
			res->delivered = cur;
			res->replaced = replaced;
			return X86_EVENT_OK;
		}
		if (st == V_UNHANDLED) {
			res->why = v.why;
			return X86_EVENT_UNHANDLED;
		}
		/* A fault while vectoring @cur. */
		if (cur.type == X86_EVENT_HW_EXCEPTION && cur.vector == X86_DF)
			return X86_EVENT_TRIPLE_FAULT;
		c1 = cur.type == X86_EVENT_HW_EXCEPTION ? x86_exception_class(cur.vector) : 0;
		c2 = x86_exception_class(v.fault.vector);
		if (soft_type(&cur))
			base.rip -= cur.insn_len; /* the fault is at the instruction */
		if (v.fault.vector == X86_PF)
			base.cr2 = v.fault.cr2; /* a page fault loads CR2, #DF or not */
		if ((c1 == 1 && c2 == 1) || (c1 == 2 && c2 != 0))
			cur = (struct x86_event){ .type = X86_EVENT_HW_EXCEPTION, .vector = X86_DF,
						  .has_error_code = true };
		else
			cur = (struct x86_event){ .type = X86_EVENT_HW_EXCEPTION,
						  .vector = v.fault.vector,
						  .has_error_code = v.fault.has_error_code,
						  .error_code = v.fault.error_code };
		replaced = true;
	}
	return X86_EVENT_TRIPLE_FAULT;
}

/* ---- what to deliver next ------------------------------------------------ */

void x86_event_queue_exception(struct kvm_x86_events *ev, uint8_t vector, bool has_error_code,
			       uint32_t error_code, bool has_payload, uint64_t payload)
{
	if (ev->exception.pending || ev->exception.injected) {
		int c1 = x86_exception_class(ev->exception.nr), c2 = x86_exception_class(vector);

		if (ev->exception.nr == X86_DF) {
			ev->triple_fault_pending = true;
			return;
		}
		if ((c1 == 1 && c2 == 1) || (c1 == 2 && c2 != 0)) {
			vector = X86_DF;
			has_error_code = true;
			error_code = 0;
			has_payload = false;
			payload = 0;
		}
		/* Otherwise the new one replaces the old: re-executing the
		 * instruction raises the old one again if it still applies. */
	}
	ev->exception.pending = true;
	ev->exception.injected = false;
	ev->exception.nr = vector;
	ev->exception.has_error_code = has_error_code;
	ev->exception.error_code = error_code;
	ev->exception.has_payload = has_payload;
	ev->exception.payload = payload;
}

void x86_event_queue_emu_exception(struct kvm_x86_events *ev, const struct x86_exception *ex)
{
	x86_event_queue_exception(ev, ex->vector, ex->has_error_code, ex->error_code,
				  ex->vector == X86_PF, ex->vector == X86_PF ? ex->cr2 : 0);
}

void x86_event_queue_interrupt(struct kvm_x86_events *ev, uint8_t vector)
{
	ev->interrupt.injected = true;
	ev->interrupt.soft = false;
	ev->interrupt.nr = vector;
}

void x86_event_insn_retired(struct kvm_x86_events *ev, uint32_t effects)
{
	ev->interrupt.shadow = (effects & X86_FX_STI_SHADOW) ? X86_SHADOW_STI : 0;
	if (effects & X86_FX_IRET_NMI)
		ev->nmi.masked = false;
}

bool x86_event_interrupt_allowed(const struct kvm_x86_events *ev, const struct x86_regs *regs)
{
	return (regs->rflags & X86_RFLAGS_IF) && !ev->interrupt.shadow;
}

bool x86_event_nmi_allowed(const struct kvm_x86_events *ev)
{
	return !ev->nmi.masked && !ev->nmi.injected && !ev->interrupt.shadow;
}

/* KVM_INTERRUPT has somewhere to put its vector (kvm_cpu_accept_dm_intr). */
static bool accept_dm_intr(const struct kvm_x86_events *ev, const struct x86_event_env *env)
{
	if (!env->irq)
		return !ev->interrupt.injected;
	return !env->irq->accept_dm_intr || env->irq->accept_dm_intr(env->irq->ctx);
}

bool x86_event_ready_for_injection(const struct kvm_x86_events *ev, const struct x86_regs *regs,
				   const struct x86_event_env *env)
{
	if (env->pic_in_kernel)
		return true;
	return x86_event_interrupt_allowed(ev, regs) && accept_dm_intr(ev, env) &&
	       !ev->exception.injected && !ev->interrupt.injected && !ev->nmi.injected &&
	       !ev->exception.pending && !ev->triple_fault_pending;
}

bool x86_event_wakes_halt(const struct kvm_x86_events *ev, const struct x86_regs *regs,
			  const struct x86_event_env *env)
{
	bool irq;

	if (ev->exception.pending || ev->triple_fault_pending)
		return true;
	if (ev->nmi.pending && x86_event_nmi_allowed(ev))
		return true;
	irq = env->irq ? env->irq->peek(env->irq->ctx) >= 0 : ev->interrupt.injected;
	return irq && x86_event_interrupt_allowed(ev, regs);
}

static bool window_exit_due(const struct kvm_x86_events *ev, const struct x86_regs *regs,
			    const struct x86_event_env *env)
{
	return env->request_interrupt_window && !env->pic_in_kernel &&
	       x86_event_ready_for_injection(ev, regs, env);
}

/* A pending exception's payload reaches CR2 / DR6 when it is injected. */
static void deliver_payload(struct kvm_x86_events *ev, struct x86_regs *regs)
{
	uint64_t p = ev->exception.payload;

	if (ev->exception.has_payload) {
		if (ev->exception.nr == X86_PF) {
			regs->cr2 = p;
		} else if (ev->exception.nr == X86_DB) {
			/* The payload is in the "pending debug exceptions" format:
			 * positive bits, where DR6 has active-low ones (RTM). */
			uint64_t dr6 = (regs->dr[6] & ~DR6_TRAP_BITS) | DR6_RTM;

			dr6 &= ~(p & DR6_ACTIVE_LOW);
			dr6 |= p & ~DR6_ACTIVE_LOW;
			regs->dr[6] = (dr6 & ~DR6_BIT12) | DR6_FIXED_1;
		}
	}
	ev->exception.has_payload = false;
	ev->exception.payload = 0;
}

enum pick { PICK_NONE, PICK_EXCEPTION, PICK_NMI, PICK_IRQ };

/* The next event in KVM's order, marked "injected" (so that an unhandled
 * delivery leaves it queued), or PICK_NONE. */
static int pick(struct kvm_x86_events *ev, struct x86_regs *regs,
		const struct x86_event_env *env, struct x86_event *e)
{
	memset(e, 0, sizeof(*e));
	if (ev->exception.injected || ev->exception.pending) {
		uint8_t nr = ev->exception.nr;

		if (ev->exception.pending && nr == X86_DB)
			regs->dr[7] &= ~DR7_GD;
		deliver_payload(ev, regs);
		ev->exception.pending = false;
		ev->exception.injected = true;
		/* #BP/#OF queued by the VMM go as the software exceptions they are
		 * (gate DPL checked), returning to the current RIP. */
		e->type = (nr == X86_BP || nr == X86_OF) ? X86_EVENT_SOFT_EXCEPTION
							 : X86_EVENT_HW_EXCEPTION;
		e->vector = nr;
		e->has_error_code = ev->exception.has_error_code;
		e->error_code = ev->exception.error_code;
		return PICK_EXCEPTION;
	}
	if (ev->nmi.injected) {
		e->type = X86_EVENT_NMI;
		e->vector = X86_NMI;
		return PICK_NMI;
	}
	if (ev->interrupt.injected) {
		e->type = ev->interrupt.soft ? X86_EVENT_SOFT_INT : X86_EVENT_EXT_INTR;
		e->vector = ev->interrupt.nr;
		return PICK_IRQ;
	}
	if (env->block_irq)
		return PICK_NONE;
	if (ev->nmi.pending && x86_event_nmi_allowed(ev)) {
		ev->nmi.pending--;
		ev->nmi.injected = true;
		e->type = X86_EVENT_NMI;
		e->vector = X86_NMI;
		return PICK_NMI;
	}
	if (env->irq && x86_event_interrupt_allowed(ev, regs) && env->irq->peek(env->irq->ctx) >= 0) {
		int vec = env->irq->ack(env->irq->ctx);

		if (vec < 0) /* went away meanwhile (TPR, KVM_SET_LAPIC) */
			return PICK_NONE;
		x86_event_queue_interrupt(ev, (uint8_t)vec);
		e->type = X86_EVENT_EXT_INTR;
		e->vector = (uint8_t)vec;
		return PICK_IRQ;
	}
	return PICK_NONE;
}

/* The event of kind @k is no longer in flight. */
static void retire(struct kvm_x86_events *ev, int k)
{
	if (k == PICK_EXCEPTION)
		ev->exception.injected = false;
	else if (k == PICK_NMI)
		ev->nmi.injected = false;
	else
		ev->interrupt.injected = false;
}

/* Bound on rounds: an exception, an NMI and one interrupt per vector. */
#define INJECT_MAX_ROUNDS 260

int x86_event_inject(struct kvm_x86_events *ev, struct x86_regs *regs,
		     const struct x86_event_env *env, const struct x86_event_ops *ops, void *ctx,
		     struct x86_inject_result *out)
{
	memset(out, 0, sizeof(*out));
	for (int round = 0; round < INJECT_MAX_ROUNDS; round++) {
		struct kvm_x86_events before = *ev;
		struct x86_regs w = *regs;
		struct x86_event_result res;
		struct x86_event e;
		int k, st;

		if (ev->triple_fault_pending) {
			ev->triple_fault_pending = false;
			return X86_EVENT_TRIPLE_FAULT;
		}
		/* On a working copy: an unhandled delivery leaves @regs (CR2 and
		 * DR6 from a payload too) and the queued event as they were. */
		k = pick(ev, &w, env, &e);
		if (k == PICK_NONE)
			break;
		st = x86_event_deliver(&w, &e, ops, ctx, &res);
		if (st == X86_EVENT_UNHANDLED) {
			/* An interrupt acknowledged from the LAPIC cannot go back:
			 * it stays queued as injected. */
			if (!(k == PICK_IRQ && !before.interrupt.injected))
				*ev = before;
			out->why = res.why;
			return st;
		}
		*regs = w;
		retire(ev, k);
		if (k == PICK_NMI)
			ev->nmi.masked = true;
		if (st == X86_EVENT_TRIPLE_FAULT)
			return st;
		ev->interrupt.shadow = 0;
		out->delivered++;
		out->last = res.delivered;
		if (window_exit_due(ev, regs, env))
			break;
	}
	out->irq_window_open = window_exit_due(ev, regs, env);
	if (!env->block_irq) {
		bool irq_waits = (env->irq && env->irq->peek(env->irq->ctx) >= 0) ||
				 (env->request_interrupt_window && !env->pic_in_kernel &&
				  accept_dm_intr(ev, env));

		out->want_nmi_window = ev->nmi.pending && !x86_event_nmi_allowed(ev);
		out->want_irq_window = irq_waits && !x86_event_interrupt_allowed(ev, regs);
	}
	return X86_EVENT_OK;
}
