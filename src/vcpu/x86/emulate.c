// SPDX-License-Identifier: MIT
/*
 * emulate.c - the effects of the instructions in decode.h, with the checks
 * a CPL0 guest meets on the CPU (and KVM's, where KVM is stricter or
 * defines the behaviour: CR0/CR3/CR4/XCR0/DR6/DR7 rules follow Linux 6.12's
 * order).  See emulate.h for the exit/completion model.
 */
#include "vcpu/x86/emulate.h"
#include "vcpu/x86/smm.h"

#include <string.h>

/* Kinds of recorded exits (struct x86_emu.done[].kind). */
enum { ACC_MMIO_READ = 1, ACC_MMIO_WRITE, ACC_PIO_IN, ACC_PIO_OUT, ACC_HCALL, ACC_MSR_READ,
       ACC_MSR_WRITE };

#define X86_MSR_EFER 0xc0000080u
#define X86_MSR_FS_BASE 0xc0000100u
#define X86_MSR_GS_BASE 0xc0000101u
#define X86_MSR_KERNEL_GS_BASE 0xc0000102u

#define CR0_KNOWN (X86_CR0_PE | X86_CR0_MP | X86_CR0_EM | X86_CR0_TS | X86_CR0_ET | \
		   X86_CR0_NE | X86_CR0_WP | X86_CR0_AM | X86_CR0_NW | X86_CR0_CD | X86_CR0_PG)
#define CR0_MMU_BITS (X86_CR0_PE | X86_CR0_PG | X86_CR0_WP)
/* CR4 bits that change how guest addresses translate. */
#define CR4_MMU_BITS ((1ull << 4) | X86_CR4_PAE | X86_CR4_PGE | X86_CR4_PCIDE | X86_CR4_SMEP | \
		      (1ull << 21) | X86_CR4_LA57 | (1ull << 22))
#define DR6_VOLATILE 0x0001e80full
#define DR7_VOLATILE 0xffff2bffull
#define DR7_FIXED_1 0x400ull
#define XFEATURE_FP 1ull
#define XFEATURE_SSE 2ull
#define XFEATURE_YMM 4ull
#define XFEATURE_BND (3ull << 3)
#define XFEATURE_AVX512 (7ull << 5)
#define XFEATURE_XTILE (3ull << 17)
/* KVM's hypercall error for CPL != 0 (-KVM_EPERM). */
#define KVM_EPERM 1

/* One run of the pending instruction. */
struct run {
	struct x86_emu *emu;
	const struct x86_regs *orig;
	struct x86_regs w;	/* working copy, committed on success */
	const struct x86_insn *in;
	struct x86_emu_result *res;
	bool mode64;
};

static uint64_t size_mask(unsigned size)
{
	return size >= 8 ? ~0ull : (1ull << (8 * size)) - 1;
}

static uint64_t sign_extend(uint64_t v, unsigned size)
{
	unsigned sh = 64 - 8 * size;

	return size >= 8 ? v : (uint64_t)((int64_t)(v << sh) >> sh);
}

static bool canonical(uint64_t a, uint64_t cr4)
{
	unsigned sh = (cr4 & X86_CR4_LA57) ? 7 : 16;

	return (uint64_t)((int64_t)(a << sh) >> sh) == a;
}

static int fault(struct run *rn, uint8_t vector, bool has_ec, uint32_t ec)
{
	rn->res->ex = (struct x86_exception){ .vector = vector, .has_error_code = has_ec,
					      .error_code = ec };
	return X86_EMU_EXCEPTION;
}

#define GP(rn, ec) fault(rn, X86_GP, true, ec)
#define UD(rn) fault(rn, X86_UD, false, 0)

static uint64_t get_gpr(const struct x86_regs *r, unsigned reg, bool high8, unsigned size)
{
	if (high8)
		return (r->gpr[reg] >> 8) & 0xff;
	return r->gpr[reg] & size_mask(size);
}

/* A register write: 8/16 bits merge, 32 bits zero the upper half, 64 all. */
static void set_gpr(struct x86_regs *r, unsigned reg, bool high8, unsigned size, uint64_t v)
{
	if (high8)
		r->gpr[reg] = (r->gpr[reg] & ~0xff00ull) | ((v & 0xff) << 8);
	else if (size < 4)
		r->gpr[reg] = (r->gpr[reg] & ~size_mask(size)) | (v & size_mask(size));
	else
		r->gpr[reg] = v & size_mask(size);
}

int x86_cpu_mode(const struct x86_regs *regs)
{
	if (!(regs->cr0 & X86_CR0_PE))
		return X86_MODE_16; /* real mode: 16-bit defaults, base = selector << 4 */
	if (regs->rflags & X86_RFLAGS_VM)
		return -1;
	if ((regs->efer & X86_EFER_LMA) && regs->seg[X86_SEG_CS].l)
		return X86_MODE_64;
	return regs->seg[X86_SEG_CS].db ? X86_MODE_32 : X86_MODE_16;
}

static uint64_t linear(const struct x86_regs *r, unsigned mode, unsigned seg, uint64_t off)
{
	if (mode == X86_MODE_64)
		return off + (seg == X86_SEG_FS || seg == X86_SEG_GS ? r->seg[seg].base : 0);
	return (off + r->seg[seg].base) & 0xffffffffull;
}

uint64_t x86_ea_linear(const struct x86_regs *r, const struct x86_insn *in)
{
	const struct x86_ea *ea = &in->ea;
	uint64_t a = (uint64_t)ea->disp;

	if (ea->rip_rel)
		a += r->rip + in->len;
	if (ea->base >= 0)
		a += r->gpr[ea->base];
	if (ea->index >= 0)
		a += r->gpr[ea->index] * ea->scale;
	return linear(r, in->mode, ea->seg, a & size_mask(in->adsize));
}

/* ---- accesses that may exit ------------------------------------------- */

/* Whether access number rn->emu->seq was already answered by the VMM. */
static bool replay(struct run *rn, unsigned kind, uint64_t addr, unsigned *slot)
{
	struct x86_emu *emu = rn->emu;

	*slot = emu->seq++;
	return *slot < emu->nr_done && emu->done[*slot].kind == kind &&
	       emu->done[*slot].addr == addr;
}

static int record_exit(struct run *rn, unsigned kind, uint64_t addr, int status)
{
	struct x86_emu *emu = rn->emu;

	if (emu->nr_done >= X86_EMU_MAX_EXITS || emu->seq - 1 != emu->nr_done)
		return X86_EMU_UNHANDLED; /* the instruction did not replay alike */
	emu->done[emu->nr_done].kind = (uint8_t)kind;
	emu->done[emu->nr_done].addr = addr;
	return status;
}

/*
 * What a guest memory access came to: done, a fault to deliver, or an MMIO
 * exit recorded for completion (reads and writes alike; a write's data is
 * already in the exit).
 */
static int mem_outcome(struct run *rn, int r, const struct x86_exception *ex, uint64_t gpa,
		       uint64_t gva, unsigned len, bool is_write, bool mmio_ok)
{
	if (r == X86_MEM_OK)
		return 0;
	if (r == X86_MEM_FAULT) {
		rn->res->ex = *ex;
		return X86_EMU_EXCEPTION;
	}
	if (!mmio_ok || len > 8)
		return X86_EMU_UNHANDLED;
	rn->emu->seq++;
	rn->res->mmio.gpa = gpa;
	rn->res->mmio.gva = gva;
	rn->res->mmio.len = len;
	rn->res->mmio.is_write = is_write;
	return record_exit(rn, is_write ? ACC_MMIO_WRITE : ACC_MMIO_READ, gva, X86_EMU_EXIT_MMIO);
}


static int mem_read(struct run *rn, uint64_t gva, void *buf, unsigned len, bool mmio_ok)
{
	struct x86_exception ex = { 0 };
	uint64_t gpa = 0;
	unsigned slot;
	int r;

	if (replay(rn, ACC_MMIO_READ, gva, &slot)) {
		memcpy(buf, rn->emu->done[slot].bytes, len);
		return 0;
	}
	rn->emu->seq--; /* plain memory takes no slot */
	r = rn->emu->ops->read(rn->emu->ctx, gva, buf, len, &gpa, &ex);
	return mem_outcome(rn, r, &ex, gpa, gva, len, false, mmio_ok);
}

static int mem_write(struct run *rn, uint64_t gva, const void *buf, unsigned len, bool mmio_ok)
{
	struct x86_exception ex = { 0 };
	uint64_t gpa = 0;
	unsigned slot;
	int r;

	if (replay(rn, ACC_MMIO_WRITE, gva, &slot))
		return 0;
	rn->emu->seq--;
	r = rn->emu->ops->write(rn->emu->ctx, gva, buf, len, &gpa, &ex);
	if (r == X86_MEM_MMIO && mmio_ok && len <= 8)
		memcpy(rn->res->mmio.data, buf, len);
	return mem_outcome(rn, r, &ex, gpa, gva, len, true, mmio_ok);
}

/* Port I/O: @count elements of @size at emu->pio_data. */
static int pio(struct run *rn, bool out, uint16_t port, unsigned size, unsigned count)
{
	unsigned slot;

	if (replay(rn, out ? ACC_PIO_OUT : ACC_PIO_IN, port, &slot))
		return 0;
	if (!out)
		memset(rn->emu->pio_data, 0, (size_t)size * count);
	rn->res->io.direction = out;
	rn->res->io.size = (uint8_t)size;
	rn->res->io.port = port;
	rn->res->io.count = count;
	return record_exit(rn, out ? ACC_PIO_OUT : ACC_PIO_IN, port, X86_EMU_EXIT_IO);
}

/* ---- operands ----------------------------------------------------------- */

static int opnd_read(struct run *rn, const struct x86_opnd *o, unsigned size, uint64_t *v)
{
	uint8_t buf[8] = { 0 };
	int r;

	switch (o->kind) {
	case X86_OPND_REG:
		*v = get_gpr(&rn->w, o->reg, o->high8, size);
		return 0;
	case X86_OPND_IMM:
		*v = rn->in->imm & size_mask(size);
		return 0;
	case X86_OPND_MEM:
		r = mem_read(rn, x86_ea_linear(rn->orig, rn->in), buf, size, true);
		if (r)
			return r;
		*v = 0;
		for (unsigned i = 0; i < size; i++)
			*v |= (uint64_t)buf[i] << (8 * i);
		return 0;
	}
	return X86_EMU_UNHANDLED;
}

static int opnd_write(struct run *rn, const struct x86_opnd *o, unsigned size, uint64_t v)
{
	uint8_t buf[8];

	switch (o->kind) {
	case X86_OPND_REG:
		set_gpr(&rn->w, o->reg, o->high8, size, v);
		return 0;
	case X86_OPND_MEM:
		for (unsigned i = 0; i < size; i++)
			buf[i] = (uint8_t)(v >> (8 * i));
		return mem_write(rn, x86_ea_linear(rn->orig, rn->in), buf, size, true);
	}
	return X86_EMU_UNHANDLED;
}

static void advance(struct run *rn)
{
	uint64_t rip = rn->orig->rip + rn->in->len;

	rn->w.rip = rn->mode64 ? rip : rip & 0xffffffffull;
	rn->w.rflags &= ~X86_RFLAGS_RF;
}

/* ---- arithmetic ------------------------------------------------------- */

static uint64_t szp(uint64_t r, unsigned size)
{
	uint64_t f = 0;
	uint8_t lo = (uint8_t)r;

	r &= size_mask(size);
	if (!r)
		f |= X86_RFLAGS_ZF;
	if (r >> (8 * size - 1))
		f |= X86_RFLAGS_SF;
	lo ^= lo >> 4;
	lo ^= lo >> 2;
	lo ^= lo >> 1;
	if (!(lo & 1))
		f |= X86_RFLAGS_PF;
	return f;
}

/* a op b at @size; returns the result, *flags gets the six arithmetic flags. */
static uint64_t alu(unsigned op, unsigned size, uint64_t a, uint64_t b, uint64_t in_flags,
		    uint64_t *flags)
{
	uint64_t m = size_mask(size), sign = 1ull << (8 * size - 1);
	uint64_t cin = 0, r, f = 0;

	a &= m;
	b &= m;
	switch (op) {
	case X86_ALU_ADC:
		cin = in_flags & X86_RFLAGS_CF;
		/* fall through */
	case X86_ALU_ADD:
		r = (a + b + cin) & m;
		if (r < a || (cin && r == a))
			f |= X86_RFLAGS_CF;
		if ((a ^ r) & (b ^ r) & sign)
			f |= X86_RFLAGS_OF;
		f |= (a ^ b ^ r) & X86_RFLAGS_AF;
		break;
	case X86_ALU_SBB:
		cin = in_flags & X86_RFLAGS_CF;
		/* fall through */
	case X86_ALU_SUB:
	case X86_ALU_CMP:
		r = (a - b - cin) & m;
		if (a < b || (cin && a == b))
			f |= X86_RFLAGS_CF;
		if ((a ^ b) & (a ^ r) & sign)
			f |= X86_RFLAGS_OF;
		f |= (a ^ b ^ r) & X86_RFLAGS_AF;
		break;
	case X86_ALU_AND: r = a & b; break;
	case X86_ALU_OR: r = a | b; break;
	default: r = a ^ b; break;
	}
	*flags = f | szp(r, size);
	return r;
}

static int em_alu(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	unsigned op = in->op == X86_OP_TEST ? X86_ALU_AND : in->alu;
	uint64_t a, b, f, r;
	int st;

	if ((st = opnd_read(rn, &in->dst, in->opsize, &a)) ||
	    (st = opnd_read(rn, &in->src, in->opsize, &b)))
		return st;
	r = alu(op, in->opsize, a, b, rn->w.rflags, &f);
	if (in->op == X86_OP_ALU && op != X86_ALU_CMP &&
	    (st = opnd_write(rn, &in->dst, in->opsize, r)))
		return st;
	rn->w.rflags = (rn->w.rflags & ~X86_RFLAGS_ARITH) | f;
	advance(rn);
	return X86_EMU_DONE;
}

static int em_incdec(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	uint64_t a, f, r;
	int st;

	if ((st = opnd_read(rn, &in->dst, in->opsize, &a)))
		return st;
	r = alu(in->op == X86_OP_INC ? X86_ALU_ADD : X86_ALU_SUB, in->opsize, a, 1, 0, &f);
	if ((st = opnd_write(rn, &in->dst, in->opsize, r)))
		return st;
	/* CF is left alone. */
	f = (f & ~X86_RFLAGS_CF) | (rn->w.rflags & X86_RFLAGS_CF);
	rn->w.rflags = (rn->w.rflags & ~X86_RFLAGS_ARITH) | f;
	advance(rn);
	return X86_EMU_DONE;
}

static int em_mov(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	uint64_t v;
	int st;

	if ((st = opnd_read(rn, &in->src, in->srcsize, &v)))
		return st;
	if (in->op == X86_OP_MOVSX)
		v = sign_extend(v, in->srcsize);
	if ((st = opnd_write(rn, &in->dst, in->opsize, v)))
		return st;
	advance(rn);
	return X86_EMU_DONE;
}

static int em_xchg(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	uint64_t a, b;
	int st;

	if ((st = opnd_read(rn, &in->dst, in->opsize, &a)) ||
	    (st = opnd_read(rn, &in->src, in->opsize, &b)) ||
	    (st = opnd_write(rn, &in->dst, in->opsize, b)))
		return st;
	set_gpr(&rn->w, in->src.reg, in->src.high8, in->opsize, a);
	advance(rn);
	return X86_EMU_DONE;
}

/* ---- port I/O ----------------------------------------------------------- */

static int em_inout(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	bool out = in->op == X86_OP_OUT;
	uint16_t port = in->imm_size ? (uint16_t)in->imm : (uint16_t)rn->w.gpr[X86_RDX];
	uint8_t *data = rn->emu->pio_data;
	uint64_t v = 0;
	int st;

	if (rn->w.cpl > ((rn->w.rflags & X86_RFLAGS_IOPL) >> 12))
		return GP(rn, 0); /* no I/O permission bitmap is modelled */
	if (out)
		for (unsigned i = 0; i < in->opsize; i++)
			data[i] = (uint8_t)(rn->w.gpr[X86_RAX] >> (8 * i));
	if ((st = pio(rn, out, port, in->opsize, 1)))
		return st;
	if (!out) {
		for (unsigned i = 0; i < in->opsize; i++)
			v |= (uint64_t)data[i] << (8 * i);
		set_gpr(&rn->w, X86_RAX, false, in->opsize, v);
	}
	advance(rn);
	return X86_EMU_DONE;
}

/* A register that a string instruction walks, at the address size. */
static uint64_t ad_reg(struct run *rn, unsigned reg)
{
	return rn->w.gpr[reg] & size_mask(rn->in->adsize);
}

static void set_ad_reg(struct run *rn, unsigned reg, uint64_t v)
{
	set_gpr(&rn->w, reg, false, rn->in->adsize, v);
}

/* INS/OUTS: one exit per chunk that fits the PIO page and the guest page,
 * as KVM does; RIP stays on the instruction until rCX reaches 0. */
static int em_string_io(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	bool out = in->op == X86_OP_OUTS, down = rn->w.rflags & X86_RFLAGS_DF;
	unsigned size = in->opsize, reg = out ? X86_RSI : X86_RDI;
	uint16_t port = (uint16_t)rn->w.gpr[X86_RDX];
	uint64_t count = in->rep ? ad_reg(rn, X86_RCX) : 1, addr, room;
	uint8_t *data = rn->emu->pio_data;
	int st;

	if (rn->w.cpl > ((rn->w.rflags & X86_RFLAGS_IOPL) >> 12))
		return GP(rn, 0);
	if (!count) {
		advance(rn);
		return X86_EMU_DONE;
	}
	addr = linear(rn->orig, in->mode, in->ea.seg, ad_reg(rn, reg));
	room = down ? (addr & 4095) / size + 1 : (4096 - (addr & 4095)) / size;
	if (room == 0)
		room = 1;
	if (count > 4096 / size)
		count = 4096 / size;
	if (count > room)
		count = room;
	for (uint64_t i = 0; out && i < count; i++) {
		uint64_t a = down ? addr - i * size : addr + i * size;

		if ((st = mem_read(rn, a, data + i * size, size, false)))
			return st;
	}
	if ((st = pio(rn, out, port, size, (unsigned)count)))
		return st;
	for (uint64_t i = 0; !out && i < count; i++) {
		uint64_t a = down ? addr - i * size : addr + i * size;

		if ((st = mem_write(rn, a, data + i * size, size, false)))
			return st;
	}
	set_ad_reg(rn, reg, down ? ad_reg(rn, reg) - count * size : ad_reg(rn, reg) + count * size);
	if (in->rep) {
		set_ad_reg(rn, X86_RCX, ad_reg(rn, X86_RCX) - count);
		if (ad_reg(rn, X86_RCX)) {
			rn->w.rip = rn->orig->rip; /* the guest runs it again */
			return X86_EMU_DONE;
		}
	}
	advance(rn);
	return X86_EMU_DONE;
}

/* STOS/MOVS: one element per call, so each MMIO element is one exit (or two
 * for MMIO to MMIO); with REP and rCX left, RIP stays and the guest runs the
 * instruction again (natively for RAM, trapping again for MMIO). */
static int em_string_mem(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	unsigned size = in->opsize;
	uint64_t step = (rn->w.rflags & X86_RFLAGS_DF) ? -(uint64_t)size : size;
	uint64_t v = rn->w.gpr[X86_RAX];
	uint8_t buf[8];
	int st;

	if (in->rep && !ad_reg(rn, X86_RCX)) {
		advance(rn);
		return X86_EMU_DONE;
	}
	if (in->op == X86_OP_MOVS) {
		uint64_t src = linear(rn->orig, in->mode, in->ea.seg, ad_reg(rn, X86_RSI));

		if ((st = mem_read(rn, src, buf, size, true)))
			return st;
		set_ad_reg(rn, X86_RSI, ad_reg(rn, X86_RSI) + step);
	} else {
		for (unsigned i = 0; i < size; i++)
			buf[i] = (uint8_t)(v >> (8 * i));
	}
	if ((st = mem_write(rn, linear(rn->orig, in->mode, X86_SEG_ES, ad_reg(rn, X86_RDI)), buf,
			    size, true)))
		return st;
	set_ad_reg(rn, X86_RDI, ad_reg(rn, X86_RDI) + step);
	if (in->rep) {
		set_ad_reg(rn, X86_RCX, ad_reg(rn, X86_RCX) - 1);
		if (ad_reg(rn, X86_RCX)) {
			rn->w.rip = rn->orig->rip;
			return X86_EMU_DONE;
		}
	}
	advance(rn);
	return X86_EMU_DONE;
}

/* ---- flags, stack, IRET ------------------------------------------------ */

static unsigned stack_size(struct run *rn)
{
	return rn->mode64 ? 8 : (rn->w.seg[X86_SEG_SS].db ? 4 : 2);
}

static int push(struct run *rn, uint64_t v, unsigned size)
{
	uint64_t sp = (rn->w.gpr[X86_RSP] - size) & size_mask(stack_size(rn));
	uint8_t buf[8];
	int st;

	for (unsigned i = 0; i < size; i++)
		buf[i] = (uint8_t)(v >> (8 * i));
	if ((st = mem_write(rn, linear(&rn->w, rn->in->mode, X86_SEG_SS, sp), buf, size, false)))
		return st;
	set_gpr(&rn->w, X86_RSP, false, stack_size(rn), sp);
	return 0;
}

static int pop(struct run *rn, uint64_t *v, unsigned size)
{
	uint64_t sp = rn->w.gpr[X86_RSP] & size_mask(stack_size(rn));
	uint8_t buf[8] = { 0 };
	int st;

	if ((st = mem_read(rn, linear(&rn->w, rn->in->mode, X86_SEG_SS, sp), buf, size, false)))
		return st;
	*v = 0;
	for (unsigned i = 0; i < size; i++)
		*v |= (uint64_t)buf[i] << (8 * i);
	set_gpr(&rn->w, X86_RSP, false, stack_size(rn), sp + size);
	return 0;
}

static bool iopl_ok(struct run *rn)
{
	return rn->w.cpl <= ((rn->w.rflags & X86_RFLAGS_IOPL) >> 12);
}

/* Loads @newf into RFLAGS under @mask (16-bit operand: low half only). */
static void load_flags(struct run *rn, uint64_t newf, uint64_t mask, unsigned size)
{
	uint64_t old = rn->w.rflags;

	if (size == 2)
		mask &= 0xffff;
	rn->w.rflags = (old & ~mask) | (newf & mask) | X86_RFLAGS_FIXED;
	if (!(old & X86_RFLAGS_IF) && (rn->w.rflags & X86_RFLAGS_IF))
		rn->res->effects |= X86_FX_IF_ON;
}

static int em_flags(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	uint64_t v;
	int st;

	switch (in->op) {
	case X86_OP_CLI:
	case X86_OP_STI:
		if (!iopl_ok(rn))
			return GP(rn, 0);
		if (in->op == X86_OP_CLI) {
			rn->w.rflags &= ~X86_RFLAGS_IF;
		} else if (!(rn->w.rflags & X86_RFLAGS_IF)) {
			rn->w.rflags |= X86_RFLAGS_IF;
			rn->res->effects |= X86_FX_IF_ON | X86_FX_STI_SHADOW;
		}
		break;
	case X86_OP_PUSHF:
		/* The pushed image has VM and RF clear. */
		v = rn->w.rflags & ~(X86_RFLAGS_VM | X86_RFLAGS_RF);
		if ((st = push(rn, v, in->opsize)))
			return st;
		break;
	case X86_OP_POPF: {
		uint64_t mask = X86_RFLAGS_ARITH | X86_RFLAGS_TF | X86_RFLAGS_DF | X86_RFLAGS_NT |
				X86_RFLAGS_AC | X86_RFLAGS_ID;

		if ((st = pop(rn, &v, in->opsize)))
			return st;
		if (rn->w.cpl == 0)
			mask |= X86_RFLAGS_IOPL;
		if (iopl_ok(rn))
			mask |= X86_RFLAGS_IF;
		load_flags(rn, v, mask, in->opsize);
		if (in->opsize > 2)
			rn->w.rflags &= ~(X86_RFLAGS_VIF | X86_RFLAGS_VIP);
		break;
	}
	}
	advance(rn);
	return X86_EMU_DONE;
}

/* Reads the 8-byte descriptor for @sel from the GDT. */
static int read_desc(struct run *rn, uint16_t sel, uint64_t *desc, unsigned bytes)
{
	uint8_t buf[16];
	int st;

	if (sel & 4)
		return X86_EMU_UNHANDLED; /* LDT descriptors: not modelled */
	if ((uint32_t)(sel & ~7u) + bytes - 1 > rn->w.gdt.limit)
		return GP(rn, sel & 0xfffc);
	if ((st = mem_read(rn, rn->w.gdt.base + (sel & ~7u), buf, bytes, false)))
		return st;
	memcpy(desc, buf, bytes);
	return 0;
}

static void unpack_desc(const uint64_t *d, uint16_t sel, bool wide, struct x86_segment *s)
{
	uint64_t lo = d[0];

	s->selector = sel;
	s->limit = (uint32_t)((lo & 0xffff) | ((lo >> 32) & 0xf0000));
	s->base = ((lo >> 16) & 0xffffff) | ((lo >> 32) & 0xff000000);
	if (wide)
		s->base |= d[1] << 32;
	s->type = (lo >> 40) & 0xf;
	s->s = (lo >> 44) & 1;
	s->dpl = (lo >> 45) & 3;
	s->present = (lo >> 47) & 1;
	s->l = (lo >> 53) & 1;
	s->db = (lo >> 54) & 1;
	s->g = (lo >> 55) & 1;
	s->unusable = false;
	if (s->g)
		s->limit = (s->limit << 12) | 0xfff;
}

/* CS/SS for an IRET at CPL0 that stays at CPL0. */
static int load_seg(struct run *rn, unsigned seg, uint16_t sel)
{
	struct x86_segment *s = &rn->w.seg[seg];
	uint64_t d[2];
	int st;

	if (!(rn->w.cr0 & X86_CR0_PE)) {
		/* Real mode: the base follows the selector; limit and
		 * attributes stay (big real mode keeps its 4 GiB). */
		s->selector = sel;
		s->base = (uint64_t)sel << 4;
		rn->res->effects |= X86_FX_SEGMENTS;
		return 0;
	}
	if ((sel & 3) != 0)
		return X86_EMU_UNHANDLED; /* return to CPL>0: guest CPL3 is not run */
	if (sel == s->selector)
		return 0;
	if ((sel & ~3u) == 0) {
		if (seg == X86_SEG_SS && rn->mode64) {
			s->selector = sel; /* a null SS is fine in 64-bit mode at CPL0 */
			s->unusable = true;
			return 0;
		}
		return GP(rn, 0);
	}
	if ((st = read_desc(rn, sel, d, 8)))
		return st;
	if (!((d[0] >> 44) & 1) || (seg == X86_SEG_CS) != !!((d[0] >> 43) & 1))
		return GP(rn, sel & 0xfffc);
	if (!((d[0] >> 47) & 1))
		return fault(rn, seg == X86_SEG_SS ? X86_SS : X86_NP, true, sel & 0xfffc);
	unpack_desc(d, sel, false, s);
	rn->res->effects |= X86_FX_SEGMENTS;
	return 0;
}

/*
 * Guest segment loads the host refused (its selectors name the host's
 * GDT, so they #GP at CPL3): MOV to DS/ES/FS/GS/SS, and the direct far
 * JMP, at CPL 0 with RPL 0 selectors (load_seg).  The descriptor is read
 * again even for the selector already loaded, as the CPU does.
 */
static int reload_seg(struct run *rn, unsigned seg, uint16_t sel)
{
	rn->w.seg[seg].selector = (uint16_t)~sel; /* the working copy only */
	return load_seg(rn, seg, sel);
}

static int em_mov_sreg(struct run *rn)
{
	unsigned seg = rn->in->modrm_reg & 7;
	struct x86_segment *s = &rn->w.seg[seg];
	uint64_t v;
	uint16_t sel;
	int st;

	if ((st = opnd_read(rn, &rn->in->src, 2, &v)))
		return st;
	sel = (uint16_t)v;
	if ((sel & ~3u) == 0 && seg != X86_SEG_SS) {
		/* A null selector: the segment faults on use.  In 64-bit mode
		 * FS and GS keep their base (Intel's behaviour, and KVM's). */
		uint64_t base = rn->mode64 ? s->base : 0;

		memset(s, 0, sizeof(*s));
		s->selector = sel;
		s->base = (seg == X86_SEG_FS || seg == X86_SEG_GS) ? base : 0;
		s->unusable = true;
		rn->res->effects |= X86_FX_SEGMENTS;
	} else {
		if ((st = reload_seg(rn, seg, sel)))
			return st;
		/* SS: writable data at DPL = CPL (0). */
		if (seg == X86_SEG_SS && !s->unusable && (s->dpl != 0 || !(s->type & 2)))
			return GP(rn, sel & 0xfffc);
	}
	advance(rn);
	return X86_EMU_DONE;
}

static int em_jmp_far(struct run *rn)
{
	uint16_t sel = (uint16_t)(rn->in->imm >> 32);
	uint64_t off = rn->in->imm & size_mask(rn->in->opsize);
	const struct x86_segment *cs = &rn->w.seg[X86_SEG_CS];
	int st;

	if (rn->w.cpl != 0)
		return X86_EMU_UNHANDLED; /* guest CPL3 is not run */
	if ((st = reload_seg(rn, X86_SEG_CS, sel)))
		return st;
	/* A code segment at CPL 0 (conforming or not: DPL 0); not L and D
	 * together in long mode. */
	if (cs->dpl != 0 || ((rn->w.efer & X86_EFER_LMA) && cs->l && cs->db))
		return GP(rn, sel & 0xfffc);
	if (!((rn->w.efer & X86_EFER_LMA) && cs->l) && off > cs->limit)
		return GP(rn, 0);
	rn->w.rip = off;
	return X86_EMU_DONE;
}

static int em_iret(struct run *rn)
{
	unsigned size = rn->in->opsize;
	uint64_t rip, cs, fl, rsp = 0, ss = 0;
	uint64_t mask = X86_RFLAGS_ARITH | X86_RFLAGS_TF | X86_RFLAGS_IF | X86_RFLAGS_DF |
			X86_RFLAGS_IOPL | X86_RFLAGS_NT | X86_RFLAGS_RF | X86_RFLAGS_AC |
			X86_RFLAGS_VIF | X86_RFLAGS_VIP | X86_RFLAGS_ID;
	int st;

	if (!(rn->w.cr0 & X86_CR0_PE))
		return X86_EMU_UNHANDLED; /* real-mode IRET: not modelled */
	if (rn->w.rflags & X86_RFLAGS_NT)
		return rn->mode64 ? GP(rn, 0) : X86_EMU_UNHANDLED; /* task return */
	if ((st = pop(rn, &rip, size)) || (st = pop(rn, &cs, size)) || (st = pop(rn, &fl, size)))
		return st;
	if (rn->mode64 && ((st = pop(rn, &rsp, size)) || (st = pop(rn, &ss, size))))
		return st;
	if (!rn->mode64 && (fl & X86_RFLAGS_VM) && size == 4)
		return X86_EMU_UNHANDLED; /* virtual-8086 mode */
	if ((st = load_seg(rn, X86_SEG_CS, (uint16_t)cs)))
		return st;
	if (rn->mode64 && (st = load_seg(rn, X86_SEG_SS, (uint16_t)ss)))
		return st;
	if (rn->w.seg[X86_SEG_CS].l && (rn->w.efer & X86_EFER_LMA)) {
		if (!canonical(rip, rn->w.cr4))
			return GP(rn, 0);
	} else {
		rip &= 0xffffffffull;
	}
	load_flags(rn, fl, mask, size);
	if (rn->mode64)
		rn->w.gpr[X86_RSP] = rsp;
	rn->w.rip = rip;
	rn->res->effects |= X86_FX_IRET_NMI;
	return X86_EMU_DONE;
}

/* ---- control and debug registers --------------------------------------- */

static bool privileged(struct run *rn)
{
	return rn->w.cpl == 0;
}

/* MOV to CR0 (and LMSW/CLTS): 6.12's kvm_set_cr0 order. */
static int set_cr0(struct run *rn, uint64_t cr0)
{
	struct x86_regs *w = &rn->w;
	uint64_t old = w->cr0;

	if (cr0 >> 32)
		return GP(rn, 0);
	if ((cr0 & X86_CR0_NW) && !(cr0 & X86_CR0_CD))
		return GP(rn, 0);
	if ((cr0 & X86_CR0_PG) && !(cr0 & X86_CR0_PE))
		return GP(rn, 0);
	cr0 = (cr0 | X86_CR0_ET) & CR0_KNOWN; /* other bits are ignored */
	if ((w->efer & X86_EFER_LME) && !(old & X86_CR0_PG) && (cr0 & X86_CR0_PG)) {
		if (!(w->cr4 & X86_CR4_PAE) || w->seg[X86_SEG_CS].l)
			return GP(rn, 0);
		w->efer |= X86_EFER_LMA;
	}
	if (!(cr0 & X86_CR0_PG) && (rn->mode64 || (w->cr4 & X86_CR4_PCIDE)))
		return GP(rn, 0);
	if (!(cr0 & X86_CR0_PG))
		w->efer &= ~X86_EFER_LMA;
	w->cr0 = cr0;
	if ((cr0 ^ old) & CR0_MMU_BITS)
		rn->res->effects |= X86_FX_MMU_MODE;
	if ((cr0 ^ old) & X86_CR0_PG)
		rn->res->effects |= X86_FX_TLB_FLUSH_ALL;
	return 0;
}

static int set_cr4(struct run *rn, uint64_t cr4)
{
	struct x86_regs *w = &rn->w;
	uint64_t old = w->cr4, chg = cr4 ^ old;

	if (cr4 & rn->emu->model->cr4_reserved)
		return GP(rn, 0);
	if ((w->efer & X86_EFER_LMA) && (!(cr4 & X86_CR4_PAE) || (chg & X86_CR4_LA57)))
		return GP(rn, 0);
	if ((cr4 & X86_CR4_PCIDE) && !(old & X86_CR4_PCIDE) &&
	    ((w->cr3 & 0xfff) || !(w->efer & X86_EFER_LMA)))
		return GP(rn, 0);
	w->cr4 = cr4;
	if (chg & CR4_MMU_BITS)
		rn->res->effects |= X86_FX_MMU_MODE;
	if ((chg & X86_CR4_PGE) || ((old & X86_CR4_PCIDE) && !(cr4 & X86_CR4_PCIDE)))
		rn->res->effects |= X86_FX_TLB_FLUSH_ALL;
	else if ((chg & X86_CR4_PAE) || ((cr4 & X86_CR4_SMEP) && !(old & X86_CR4_SMEP)))
		rn->res->effects |= X86_FX_TLB_FLUSH;
	return 0;
}

static int set_cr3(struct run *rn, uint64_t cr3)
{
	bool noflush = false;

	if (rn->w.cr4 & X86_CR4_PCIDE) {
		noflush = cr3 >> 63;
		cr3 &= ~(1ull << 63);
	}
	if (rn->emu->model->maxphyaddr < 64 && (cr3 >> rn->emu->model->maxphyaddr))
		return GP(rn, 0);
	rn->w.cr3 = cr3;
	if (!noflush)
		rn->res->effects |= X86_FX_TLB_FLUSH;
	return 0;
}

static int em_cr(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	unsigned cr = in->modrm_reg, size = in->opsize;
	uint64_t v = rn->w.gpr[in->modrm_rm] & size_mask(size);
	int st = 0;

	if (!privileged(rn))
		return GP(rn, 0);
	if (cr == 8 && !rn->mode64)
		return UD(rn);
	if (in->op == X86_OP_MOV_FROM_CR) {
		const uint64_t *src[] = { [0] = &rn->w.cr0, [2] = &rn->w.cr2, [3] = &rn->w.cr3,
					  [4] = &rn->w.cr4, [8] = &rn->w.cr8 };

		set_gpr(&rn->w, in->modrm_rm, false, size, *src[cr]);
		advance(rn);
		return X86_EMU_DONE;
	}
	switch (cr) {
	case 0: st = set_cr0(rn, v); break;
	case 2: rn->w.cr2 = v; break;
	case 3: st = set_cr3(rn, v); break;
	case 4: st = set_cr4(rn, v); break;
	case 8:
		if (v & ~0xfull)
			return GP(rn, 0);
		rn->w.cr8 = v;
		rn->res->effects |= X86_FX_CR8;
		break;
	}
	if (st)
		return st;
	advance(rn);
	return X86_EMU_DONE;
}

static int em_lmsw_clts(struct run *rn)
{
	uint64_t v;
	int st;

	if (!privileged(rn))
		return GP(rn, 0);
	if (rn->in->op == X86_OP_CLTS) {
		rn->w.cr0 &= ~X86_CR0_TS;
	} else {
		if ((st = opnd_read(rn, &rn->in->src, 2, &v)))
			return st;
		/* LMSW loads MP/EM/TS and can set PE but never clear it. */
		if ((st = set_cr0(rn, (rn->w.cr0 & ~0x0eull) | (v & 0x0f))))
			return st;
	}
	advance(rn);
	return X86_EMU_DONE;
}

static int em_dr(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	unsigned dr = in->modrm_reg, size = in->opsize;
	uint64_t v = rn->w.gpr[in->modrm_rm] & size_mask(size);

	if ((dr == 4 || dr == 5) && (rn->w.cr4 & X86_CR4_DE))
		return UD(rn);
	if (!privileged(rn))
		return GP(rn, 0);
	if (dr == 4 || dr == 5)
		dr += 2;
	if (in->op == X86_OP_MOV_FROM_DR) {
		set_gpr(&rn->w, in->modrm_rm, false, size, rn->w.dr[dr]);
		advance(rn);
		return X86_EMU_DONE;
	}
	if (dr == 6 || dr == 7) {
		if (v >> 32)
			return GP(rn, 0);
		v = dr == 6 ? (v & DR6_VOLATILE) | rn->emu->model->dr6_fixed
			    : (v & DR7_VOLATILE) | DR7_FIXED_1;
	}
	rn->w.dr[dr] = v;
	rn->res->effects |= X86_FX_DEBUG;
	advance(rn);
	return X86_EMU_DONE;
}

/* ---- MSRs, TSC, CPUID, XSETBV ---------------------------------------- */

/* The MSRs that live in struct x86_regs; -1 if @index is not one of them. */
static int regs_msr(struct run *rn, uint32_t index, bool write, uint64_t *val)
{
	struct x86_regs *w = &rn->w;
	uint64_t *p;

	switch (index) {
	case X86_MSR_EFER: p = &w->efer; break;
	case X86_MSR_FS_BASE: p = &w->seg[X86_SEG_FS].base; break;
	case X86_MSR_GS_BASE: p = &w->seg[X86_SEG_GS].base; break;
	case X86_MSR_KERNEL_GS_BASE: p = &w->kernel_gs_base; break;
	default: return -1;
	}
	if (!write) {
		*val = *p;
		return 0;
	}
	if (index == X86_MSR_EFER) {
		uint64_t allowed = X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE;

		if ((*val & ~allowed) ||
		    ((w->cr0 & X86_CR0_PG) && ((*val ^ w->efer) & X86_EFER_LME)))
			return GP(rn, 0);
		/* LMA follows CR0.PG and LME; the written value is ignored. */
		*val = (*val & ~X86_EFER_LMA) | (w->efer & X86_EFER_LMA);
		rn->res->effects |= X86_FX_EFER | X86_FX_MMU_MODE;
	} else if (!canonical(*val, w->cr4)) {
		return GP(rn, 0);
	}
	*p = *val;
	return 0;
}

/* RDMSR/WRMSR through the callbacks, or a user-space exit. */
static int msr_access(struct run *rn, uint32_t index, bool write, uint64_t *val)
{
	struct x86_emu *emu = rn->emu;
	bool filtered = false;
	unsigned slot;
	int r;

	/* The filter comes first (kvm_msr_allowed()), even for x86_regs' MSRs. */
	if (emu->ops->msr_filter) {
		r = emu->ops->msr_filter(emu->ctx, index, write);
		if (r == X86_MSR_GP)
			return GP(rn, 0);
		filtered = r == X86_MSR_EXIT;
	}
	if (!filtered && (r = regs_msr(rn, index, write, val)) != -1)
		return r;
	if (replay(rn, write ? ACC_MSR_WRITE : ACC_MSR_READ, index, &slot)) {
		if (emu->done[slot].error)
			return GP(rn, 0);
		if (!write)
			*val = emu->done[slot].data;
		return 0;
	}
	emu->seq--;
	if (filtered)
		r = X86_MSR_EXIT;
	else
		r = write ? emu->ops->wrmsr(emu->ctx, index, *val)
			  : emu->ops->rdmsr(emu->ctx, index, val);
	if (r == X86_MSR_OK)
		return 0;
	if (r != X86_MSR_EXIT)
		return GP(rn, 0);
	emu->seq++;
	rn->res->msr.index = index;
	rn->res->msr.is_write = write;
	rn->res->msr.data = write ? *val : 0;
	return record_exit(rn, write ? ACC_MSR_WRITE : ACC_MSR_READ, index, X86_EMU_EXIT_MSR);
}

static void set_edx_eax(struct run *rn, uint64_t v)
{
	set_gpr(&rn->w, X86_RAX, false, 4, v);
	set_gpr(&rn->w, X86_RDX, false, 4, v >> 32);
}

static uint64_t edx_eax(struct run *rn)
{
	return (rn->w.gpr[X86_RDX] << 32) | (rn->w.gpr[X86_RAX] & 0xffffffffull);
}

static int em_msr(struct run *rn)
{
	uint32_t index = (uint32_t)rn->w.gpr[X86_RCX];
	uint64_t v = edx_eax(rn);
	int st;

	if (!privileged(rn))
		return GP(rn, 0);
	if ((st = msr_access(rn, index, rn->in->op == X86_OP_WRMSR, &v)))
		return st;
	if (rn->in->op == X86_OP_RDMSR)
		set_edx_eax(rn, v);
	advance(rn);
	return X86_EMU_DONE;
}

static int em_tsc(struct run *rn)
{
	uint64_t aux = 0;
	int st;

	if ((rn->w.cr4 & X86_CR4_TSD) && !privileged(rn))
		return GP(rn, 0);
	if (rn->in->op == X86_OP_RDTSCP) {
		st = rn->emu->ops->rdmsr(rn->emu->ctx, X86_MSR_TSC_AUX, &aux);
		if (st != X86_MSR_OK)
			return UD(rn); /* no RDTSCP in the guest's CPU model */
		set_gpr(&rn->w, X86_RCX, false, 4, aux);
	}
	set_edx_eax(rn, rn->emu->ops->rdtsc(rn->emu->ctx));
	advance(rn);
	return X86_EMU_DONE;
}

static int em_cpuid(struct run *rn)
{
	uint32_t out[4] = { 0 };
	static const uint8_t regs[4] = { X86_RAX, X86_RBX, X86_RCX, X86_RDX };

	rn->emu->ops->cpuid(rn->emu->ctx, (uint32_t)rn->w.gpr[X86_RAX],
			    (uint32_t)rn->w.gpr[X86_RCX], out);
	for (unsigned i = 0; i < 4; i++)
		set_gpr(&rn->w, regs[i], false, 4, out[i]);
	advance(rn);
	return X86_EMU_DONE;
}

bool x86_xcr0_valid(uint64_t x, uint64_t supported)
{
	if (!(x & XFEATURE_FP))
		return false;
	if ((x & XFEATURE_YMM) && !(x & XFEATURE_SSE))
		return false;
	if (x & ~(supported | XFEATURE_FP))
		return false;
	if (!(x & (1ull << 3)) != !(x & (1ull << 4)))
		return false;
	if ((x & XFEATURE_AVX512) &&
	    (!(x & XFEATURE_YMM) || (x & XFEATURE_AVX512) != XFEATURE_AVX512))
		return false;
	if ((x & XFEATURE_XTILE) && (x & XFEATURE_XTILE) != XFEATURE_XTILE)
		return false;
	return true;
}

static int em_xsetbv(struct run *rn)
{
	uint64_t v = edx_eax(rn);

	if (!(rn->w.cr4 & X86_CR4_OSXSAVE))
		return UD(rn); /* before the CPL check, as on the CPU */
	if (!privileged(rn) || (uint32_t)rn->w.gpr[X86_RCX] != 0 || !x86_xcr0_valid(v, rn->emu->model->xcr0_supported))
		return GP(rn, 0);
	rn->w.xcr0 = v;
	rn->res->effects |= X86_FX_XCR0;
	advance(rn);
	return X86_EMU_DONE;
}

/*
 * The other vendor's hypercall instruction (emulator_fix_hypercall()):
 * with the quirk, the three bytes at RIP become the native instruction and
 * the guest runs them again (RIP unchanged, at any CPL); without, #UD.
 */
static int fix_hypercall(struct run *rn)
{
	static const uint8_t vmcall[3] = { 0x0f, 0x01, 0xc1 }, vmmcall[3] = { 0x0f, 0x01, 0xd9 };
	const struct x86_cpu_model *m = rn->emu->model;
	int st;

	if (!m->fix_hypercall)
		return UD(rn);
	st = mem_write(rn, linear(rn->orig, rn->in->mode, X86_SEG_CS, rn->orig->rip),
		       m->hypercall_op == X86_OP_VMCALL ? vmcall : vmmcall, 3, false);
	if (st)
		return st;
	rn->w.rip = rn->orig->rip;
	return X86_EMU_DONE;
}

/* VMCALL/VMMCALL: KVM's calling convention; the backend decides which
 * calls it answers itself (it completes at once) and which exit. */
static int em_hypercall(struct run *rn)
{
	struct x86_regs *w = &rn->w;
	uint64_t m = rn->mode64 ? ~0ull : 0xffffffffull;
	static const uint8_t args[5] = { X86_RBX, X86_RCX, X86_RDX, X86_RSI, X86_RDI };
	uint8_t native = rn->emu->model->hypercall_op;
	unsigned slot;
	uint64_t ret;

	if (native && rn->in->op != native)
		return fix_hypercall(rn);
	if (!privileged(rn)) {
		ret = (uint64_t)-KVM_EPERM;
	} else if (replay(rn, ACC_HCALL, 0, &slot)) {
		ret = rn->emu->done[slot].data;
	} else {
		rn->res->hypercall.nr = w->gpr[X86_RAX] & m;
		for (unsigned i = 0; i < 5; i++)
			rn->res->hypercall.args[i] = w->gpr[args[i]] & m;
		rn->res->hypercall.longmode = rn->mode64;
		return record_exit(rn, ACC_HCALL, 0, X86_EMU_EXIT_HYPERCALL);
	}
	set_gpr(w, X86_RAX, false, rn->mode64 ? 8 : 4, ret);
	advance(rn);
	return X86_EMU_DONE;
}

/* ---- descriptor tables, TLB, caches -------------------------------------- */

static int em_lgdt(struct run *rn)
{
	const struct x86_insn *in = rn->in;
	uint64_t addr = x86_ea_linear(rn->orig, in), base = 0;
	unsigned bsize = rn->mode64 ? 8 : 4;
	uint8_t buf[10] = { 0 };
	struct x86_dtable *t = in->op == X86_OP_LGDT ? &rn->w.gdt : &rn->w.idt;
	int st;

	if (!privileged(rn))
		return GP(rn, 0);
	if ((st = mem_read(rn, addr, buf, 2 + bsize, false)))
		return st;
	for (unsigned i = 0; i < bsize; i++)
		base |= (uint64_t)buf[2 + i] << (8 * i);
	if (!rn->mode64 && in->opsize == 2)
		base &= 0xffffff;
	if (rn->mode64 && !canonical(base, rn->w.cr4))
		return GP(rn, 0);
	t->limit = (uint16_t)(buf[0] | buf[1] << 8);
	t->base = base;
	rn->res->effects |= X86_FX_DTABLES;
	advance(rn);
	return X86_EMU_DONE;
}

/* LTR and LLDT: system descriptors are 16 bytes in long mode. */
static int em_ltr_lldt(struct run *rn)
{
	bool ltr = rn->in->op == X86_OP_LTR, lm = rn->w.efer & X86_EFER_LMA;
	struct x86_segment *s = ltr ? &rn->w.tr : &rn->w.ldt;
	uint64_t sel64, d[2] = { 0, 0 };
	uint16_t sel;
	unsigned type;
	int st;

	if (!privileged(rn))
		return GP(rn, 0);
	if ((st = opnd_read(rn, &rn->in->src, 2, &sel64)))
		return st;
	sel = (uint16_t)sel64;
	if ((sel & ~3u) == 0) {
		if (ltr)
			return GP(rn, 0);
		memset(s, 0, sizeof(*s));
		s->unusable = true;
		goto out;
	}
	if (sel & 4)
		return GP(rn, sel & 0xfffc);
	if ((st = read_desc(rn, sel, d, lm ? 16 : 8)))
		return st;
	type = (d[0] >> 40) & 0xf;
	if (((d[0] >> 44) & 1) || (ltr ? (type != 9 && (lm || type != 1)) : type != 2))
		return GP(rn, sel & 0xfffc);
	if (!((d[0] >> 47) & 1))
		return fault(rn, X86_NP, true, sel & 0xfffc);
	if (lm && (((d[1] >> 40) & 0x1f) || !canonical((d[0] >> 16 & 0xffffff) |
						      (d[0] >> 32 & 0xff000000) | d[1] << 32,
						      rn->w.cr4)))
		return GP(rn, sel & 0xfffc);
	if (ltr) {
		/* Mark the TSS busy in the GDT, as the CPU does. */
		uint8_t b = (uint8_t)(d[0] >> 40) | 2;

		if ((st = mem_write(rn, rn->w.gdt.base + (sel & ~7u) + 5, &b, 1, false)))
			return st;
		d[0] |= 2ull << 40;
	}
	unpack_desc(d, sel, lm, s);
out:
	rn->res->effects |= X86_FX_DTABLES;
	advance(rn);
	return X86_EMU_DONE;
}

static int em_misc(struct run *rn)
{
	struct x86_regs *w = &rn->w;
	uint64_t t;

	if (!privileged(rn))
		return GP(rn, 0);
	switch (rn->in->op) {
	case X86_OP_INVLPG:
		rn->res->invlpg_gva = x86_ea_linear(rn->orig, rn->in);
		rn->res->effects |= X86_FX_INVLPG;
		break;
	case X86_OP_SWAPGS:
		t = w->seg[X86_SEG_GS].base;
		w->seg[X86_SEG_GS].base = w->kernel_gs_base;
		w->kernel_gs_base = t;
		break;
	case X86_OP_HLT:
		advance(rn);
		return X86_EMU_EXIT_HLT;
	default: /* WBINVD, INVD: no cache to write back */
		break;
	}
	advance(rn);
	return X86_EMU_DONE;
}

/* ---- SYSCALL / SYSRET -------------------------------------------------- */

static void flat_seg(struct x86_segment *s, uint16_t sel, bool code, bool l, unsigned dpl)
{
	*s = (struct x86_segment){ .base = 0, .limit = 0xffffffff, .selector = sel,
				   .type = code ? 0xb : 0x3, .dpl = (uint8_t)dpl, .present = true,
				   .s = true, .db = !l, .l = l, .g = true };
}

static uint64_t msr_or_zero(struct run *rn, uint32_t index)
{
	uint64_t v = 0;

	if (rn->emu->ops->rdmsr(rn->emu->ctx, index, &v) != X86_MSR_OK)
		v = 0;
	return v;
}

static int em_syscall(struct run *rn)
{
	struct x86_regs *w = &rn->w;
	uint64_t star, next = rn->orig->rip + rn->in->len;
	bool lma = w->efer & X86_EFER_LMA;

	if (!(w->efer & X86_EFER_SCE))
		return UD(rn);
	star = msr_or_zero(rn, X86_MSR_STAR);
	if (rn->in->op == X86_OP_SYSCALL) {
		flat_seg(&w->seg[X86_SEG_CS], (star >> 32) & 0xfffc, true, lma, 0);
		flat_seg(&w->seg[X86_SEG_SS], ((star >> 32) & 0xfffc) + 8, false, false, 0);
		if (lma) {
			w->gpr[X86_RCX] = rn->mode64 ? next : next & 0xffffffffull;
			w->gpr[X86_R11] = w->rflags & ~X86_RFLAGS_RF;
			w->rip = msr_or_zero(rn, rn->mode64 ? X86_MSR_LSTAR : X86_MSR_CSTAR);
			w->rflags &= ~(msr_or_zero(rn, X86_MSR_FMASK) | X86_RFLAGS_RF);
		} else {
			set_gpr(w, X86_RCX, false, 4, next);
			w->rip = star & 0xffffffffull;
			w->rflags &= ~(X86_RFLAGS_VM | X86_RFLAGS_IF | X86_RFLAGS_RF);
		}
		w->cpl = 0;
	} else {
		bool w64 = rn->in->rex & 8;
		uint16_t base = (uint16_t)(star >> 48);

		if (!rn->mode64)
			return UD(rn);
		if (!privileged(rn))
			return GP(rn, 0);
		if (w64 && !canonical(w->gpr[X86_RCX], w->cr4))
			return GP(rn, 0);
		flat_seg(&w->seg[X86_SEG_CS], (uint16_t)((w64 ? base + 16 : base) | 3), true, w64,
			 3);
		flat_seg(&w->seg[X86_SEG_SS], (uint16_t)((base + 8) | 3), false, false, 3);
		w->rip = w64 ? w->gpr[X86_RCX] : w->gpr[X86_RCX] & 0xffffffffull;
		load_flags(rn, w->gpr[X86_R11], 0x3c7fd7, 8);
		w->cpl = 3;
	}
	rn->res->effects |= X86_FX_SEGMENTS;
	return X86_EMU_DONE;
}

/* Software interrupts are delivered by the backend (IDT, gate DPL); here
 * only INTO's condition and the return address. */
static int em_int(struct run *rn)
{
	if (rn->in->opcode == 0xce && !(rn->w.rflags & X86_RFLAGS_OF)) {
		advance(rn);
		return X86_EMU_DONE;
	}
	rn->res->ex = (struct x86_exception){ .vector = (uint8_t)rn->in->imm };
	advance(rn);
	return X86_EMU_SOFT_INT;
}

/* ---- code the emulator runs itself (SMM) --------------------------------- */

static int em_jmp_near(struct run *rn)
{
	uint64_t rip = (rn->orig->rip + rn->in->len + rn->in->imm) & size_mask(rn->in->opsize);
	const struct x86_segment *cs = &rn->w.seg[X86_SEG_CS];

	if (rn->mode64 ? !canonical(rip, rn->w.cr4) : rip > cs->limit)
		return GP(rn, 0);
	rn->w.rip = rip;
	rn->w.rflags &= ~X86_RFLAGS_RF;
	return X86_EMU_DONE;
}

/*
 * RSM (6.12's emulator_leave_smm): out of SMM, back through real mode to
 * the state saved at SMI (smm.h), each control register through the
 * checks a MOV would make.  A state that fails them is a triple fault.
 */
static int rsm_shutdown(struct run *rn)
{
	rn->res->effects |= X86_FX_SMM_LEFT | X86_FX_MMU_MODE | X86_FX_TLB_FLUSH_ALL |
			    X86_FX_SEGMENTS | X86_FX_DTABLES | X86_FX_DEBUG | X86_FX_EFER;
	return X86_EMU_SHUTDOWN;
}

static int em_rsm(struct run *rn)
{
	struct x86_regs *w = &rn->w;
	uint8_t area[X86_SMRAM_SAVE_SIZE];
	struct x86_smram_state st;
	uint64_t pcid = 0, cr3;
	bool lm = rn->emu->model->lm;

	if (!w->smm)
		return UD(rn);
	if (!rn->emu->ops->read_phys ||
	    rn->emu->ops->read_phys(rn->emu->ctx, (uint64_t)w->smbase + X86_SMRAM_SAVE_OFFSET, area,
				    sizeof(area)))
		return X86_EMU_UNHANDLED;
	x86_smram_load(area, lm, &st);
	w->smm = false;
	/* Through real mode: PCIDE off, a 32-bit CS, PE/PG off, PAE off, EFER 0. */
	if (lm) {
		w->cr4 &= ~X86_CR4_PCIDE;
		w->seg[X86_SEG_CS] = (struct x86_segment){ .type = 0xb, .s = true, .g = true,
							   .present = true };
	}
	if (w->cr0 & X86_CR0_PE)
		w->cr0 &= ~(X86_CR0_PG | X86_CR0_PE);
	w->efer &= ~X86_EFER_LMA; /* LMA follows PG */
	if (lm) {
		w->cr4 &= ~X86_CR4_PAE;
		w->efer = 0;
	}
	rn->mode64 = false;
	for (unsigned i = 0; i < (lm ? 16u : 8u); i++)
		w->gpr[i] = st.gpr[i];
	w->rip = st.rip;
	w->rflags = st.rflags | X86_RFLAGS_FIXED;
	/* kvm_set_dr(): the upper halves of DR6 and DR7 are reserved. */
	if ((st.dr6 >> 32) || (st.dr7 >> 32))
		return rsm_shutdown(rn);
	w->dr[6] = (st.dr6 & DR6_VOLATILE) | rn->emu->model->dr6_fixed;
	w->dr[7] = (st.dr7 & DR7_VOLATILE) | DR7_FIXED_1;
	w->smbase = st.smbase;
	if (lm) {
		uint64_t v = st.efer & ~X86_EFER_LMA;

		if (regs_msr(rn, X86_MSR_EFER, true, &v))
			return rsm_shutdown(rn);
	}
	w->tr = st.tr;
	w->idt = st.idt;
	w->ldt = st.ldt;
	w->gdt = st.gdt;
	/* rsm_enter_protected_mode(): CR3, then CR4 without PCIDE, CR0, PCIDE. */
	cr3 = st.cr3;
	if (st.cr4 & X86_CR4_PCIDE) {
		pcid = cr3 & 0xfff;
		cr3 &= ~0xfffull;
	}
	if (set_cr3(rn, cr3) || set_cr4(rn, st.cr4 & ~X86_CR4_PCIDE) || set_cr0(rn, st.cr0))
		return rsm_shutdown(rn);
	if ((st.cr4 & X86_CR4_PCIDE) &&
	    (set_cr4(rn, st.cr4) || (pcid && set_cr3(rn, cr3 | pcid))))
		return rsm_shutdown(rn);
	for (unsigned i = 0; i < X86_NR_SEGS; i++)
		w->seg[i] = st.seg[i];
	w->cpl = w->seg[X86_SEG_SS].dpl;
	rn->res->effects |= X86_FX_SMM_LEFT | X86_FX_MMU_MODE | X86_FX_TLB_FLUSH_ALL |
			    X86_FX_SEGMENTS | X86_FX_DTABLES | X86_FX_DEBUG | X86_FX_EFER;
	if (st.int_shadow)
		rn->res->effects |= X86_FX_STI_SHADOW;
	return X86_EMU_DONE;
}

/* ---- dispatch and the public API ------------------------------------------ */

static int dispatch(struct run *rn)
{
	switch (rn->in->op) {
	case X86_OP_IN: case X86_OP_OUT: return em_inout(rn);
	case X86_OP_INS: case X86_OP_OUTS: return em_string_io(rn);
	case X86_OP_CLI: case X86_OP_STI: case X86_OP_PUSHF: case X86_OP_POPF:
		return em_flags(rn);
	case X86_OP_IRET: return privileged(rn) ? em_iret(rn) : X86_EMU_UNHANDLED;
	case X86_OP_MOV_FROM_CR: case X86_OP_MOV_TO_CR: return em_cr(rn);
	case X86_OP_MOV_FROM_DR: case X86_OP_MOV_TO_DR: return em_dr(rn);
	case X86_OP_LMSW: case X86_OP_CLTS: return em_lmsw_clts(rn);
	case X86_OP_RDMSR: case X86_OP_WRMSR: return em_msr(rn);
	case X86_OP_RDTSC: case X86_OP_RDTSCP: return em_tsc(rn);
	case X86_OP_CPUID: return em_cpuid(rn);
	case X86_OP_XSETBV: return em_xsetbv(rn);
	case X86_OP_VMCALL: case X86_OP_VMMCALL: return em_hypercall(rn);
	case X86_OP_LGDT: case X86_OP_LIDT: return em_lgdt(rn);
	case X86_OP_LTR: case X86_OP_LLDT: return em_ltr_lldt(rn);
	case X86_OP_HLT: case X86_OP_INVLPG: case X86_OP_WBINVD: case X86_OP_INVD:
	case X86_OP_SWAPGS:
		return em_misc(rn);
	case X86_OP_SYSCALL: case X86_OP_SYSRET: return em_syscall(rn);
	case X86_OP_MOV: case X86_OP_MOVZX: case X86_OP_MOVSX: return em_mov(rn);
	case X86_OP_ALU: case X86_OP_TEST: return em_alu(rn);
	case X86_OP_XCHG: return em_xchg(rn);
	case X86_OP_INC: case X86_OP_DEC: return em_incdec(rn);
	case X86_OP_INT: return em_int(rn);
	case X86_OP_STOS: case X86_OP_MOVS: return em_string_mem(rn);
	case X86_OP_MOV_SREG: return em_mov_sreg(rn);
	case X86_OP_JMP_FAR: return em_jmp_far(rn);
	case X86_OP_JMP_NEAR: return em_jmp_near(rn);
	case X86_OP_RSM: return em_rsm(rn);
	}
	return X86_EMU_UNHANDLED;
}

static int run_pending(struct x86_emu *emu, struct x86_regs *regs, struct x86_emu_result *res)
{
	struct run rn = { .emu = emu, .orig = regs, .w = *regs, .in = &emu->insn, .res = res };
	int st;

	memset(res, 0, sizeof(*res));
	rn.mode64 = emu->insn.mode == X86_MODE_64;
	emu->seq = 0;
	if (x86_cpu_mode(regs) != (int)emu->insn.mode)
		st = X86_EMU_UNHANDLED; /* decoded for another mode */
	else
		st = dispatch(&rn);
	if (st == X86_EMU_DONE || st == X86_EMU_EXIT_HLT || st == X86_EMU_SOFT_INT ||
	    st == X86_EMU_SHUTDOWN)
		*regs = rn.w;
	else
		res->effects = 0; /* nothing happened (yet) */
	emu->pending = st == X86_EMU_EXIT_IO || st == X86_EMU_EXIT_MMIO ||
		       st == X86_EMU_EXIT_HYPERCALL || st == X86_EMU_EXIT_MSR;
	res->status = (uint8_t)st;
	return st;
}

void x86_emu_init(struct x86_emu *emu, const struct x86_emu_ops *ops, void *ctx,
		  const struct x86_cpu_model *model, uint8_t *pio_data)
{
	memset(emu, 0, sizeof(*emu));
	emu->ops = ops;
	emu->ctx = ctx;
	emu->model = model;
	emu->pio_data = pio_data;
}

int x86_emulate(struct x86_emu *emu, struct x86_regs *regs, const struct x86_insn *insn,
		struct x86_emu_result *res)
{
	emu->insn = *insn;
	emu->nr_done = 0;
	return run_pending(emu, regs, res);
}

int x86_emu_complete(struct x86_emu *emu, struct x86_regs *regs, struct x86_emu_result *res)
{
	unsigned i = emu->nr_done;

	if (!emu->pending || i >= X86_EMU_MAX_EXITS) {
		memset(res, 0, sizeof(*res));
		res->status = X86_EMU_UNHANDLED;
		return X86_EMU_UNHANDLED;
	}
	switch (emu->done[i].kind) {
	case ACC_MMIO_READ:
		memcpy(emu->done[i].bytes, res->mmio.data, sizeof(emu->done[i].bytes));
		break;
	case ACC_HCALL:
		emu->done[i].data = res->hypercall.ret;
		break;
	case ACC_MSR_READ:
	case ACC_MSR_WRITE:
		emu->done[i].error = res->msr.error;
		emu->done[i].data = res->msr.data;
		break;
	default: /* MMIO writes and port I/O: the data is where it belongs */
		break;
	}
	emu->nr_done = i + 1;
	return run_pending(emu, regs, res);
}

void x86_emu_cancel(struct x86_emu *emu)
{
	emu->pending = false;
	emu->nr_done = 0;
}
