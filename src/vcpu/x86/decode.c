// SPDX-License-Identifier: MIT
/*
 * decode.c - prefixes, opcode, ModRM/SIB, displacement and immediate of the
 * instructions in decode.h.  Operand-size and address-size rules follow the
 * SDM's tables; where an instruction ignores a prefix (IN/OUT and REX.W, MOV
 * CR and 66) the comment says so.
 */
#include "vcpu/x86/decode.h"

#include <string.h>

struct dec {
	const uint8_t *b;
	unsigned avail;
	unsigned pos;
	int err;
};

static uint64_t fetch(struct dec *d, unsigned n)
{
	uint64_t v = 0;

	if (d->err)
		return 0;
	if (d->pos + n > X86_MAX_INSN_LEN) {
		d->err = X86_DECODE_GP;
		return 0;
	}
	if (d->pos + n > d->avail) {
		d->err = X86_DECODE_SHORT;
		return 0;
	}
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)d->b[d->pos + i] << (8 * i);
	d->pos += n;
	return v;
}

static int64_t sext(uint64_t v, unsigned bytes)
{
	unsigned sh = 64 - 8 * bytes;

	return bytes >= 8 ? (int64_t)v : (int64_t)(v << sh) >> sh;
}

static void reg_opnd(struct x86_insn *in, struct x86_opnd *o, unsigned reg, unsigned size)
{
	o->kind = X86_OPND_REG;
	o->reg = (uint8_t)reg;
	/* Without any REX prefix, byte registers 4-7 are AH, CH, DH, BH. */
	o->high8 = size == 1 && !in->rex && reg >= 4 && reg < 8;
	if (o->high8)
		o->reg = (uint8_t)(reg - 4);
}

/* 16-bit ModRM addressing: fixed base/index pairs. */
static void modrm16(struct dec *d, struct x86_insn *in, unsigned mod, unsigned rm)
{
	static const int8_t base[8] = { X86_RBX, X86_RBX, X86_RBP, X86_RBP, -1, -1, X86_RBP, X86_RBX };
	static const int8_t index[8] = { X86_RSI, X86_RDI, X86_RSI, X86_RDI, X86_RSI, X86_RDI, -1, -1 };
	struct x86_ea *ea = &in->ea;

	ea->base = base[rm];
	ea->index = index[rm];
	ea->scale = 1;
	if (rm == 4 || rm == 5) { /* [si], [di] */
		ea->base = ea->index;
		ea->index = -1;
	}
	if (mod == 0 && rm == 6) {
		ea->base = -1;
		ea->disp = sext(fetch(d, 2), 2);
	} else if (mod == 1) {
		ea->disp = sext(fetch(d, 1), 1);
	} else if (mod == 2) {
		ea->disp = sext(fetch(d, 2), 2);
	}
	ea->seg = ea->base == X86_RBP ? X86_SEG_SS : X86_SEG_DS;
}

static void modrm32(struct dec *d, struct x86_insn *in, unsigned mod, unsigned rm)
{
	struct x86_ea *ea = &in->ea;
	unsigned rex_b = (in->rex & 1) << 3, rex_x = (in->rex & 2) << 2;

	ea->base = (int8_t)(rm | rex_b);
	ea->index = -1;
	ea->scale = 1;
	if (rm == 4) {
		unsigned sib = (unsigned)fetch(d, 1);
		unsigned idx = ((sib >> 3) & 7) | rex_x;

		ea->scale = (uint8_t)(1u << (sib >> 6));
		ea->index = idx == 4 ? -1 : (int8_t)idx; /* RSP cannot be an index */
		ea->base = (int8_t)((sib & 7) | rex_b);
		if ((sib & 7) == 5 && mod == 0) {
			ea->base = -1;
			ea->disp = sext(fetch(d, 4), 4);
		}
	} else if (rm == 5 && mod == 0) {
		ea->base = -1;
		ea->rip_rel = in->mode == X86_MODE_64;
		ea->disp = sext(fetch(d, 4), 4);
	}
	if (mod == 1)
		ea->disp = sext(fetch(d, 1), 1);
	else if (mod == 2)
		ea->disp = sext(fetch(d, 4), 4);
	ea->seg = (ea->base == X86_RSP || ea->base == X86_RBP) ? X86_SEG_SS : X86_SEG_DS;
}

/* Reads ModRM (+SIB, displacement); rm becomes a memory or register operand. */
static void modrm(struct dec *d, struct x86_insn *in, struct x86_opnd *rm_opnd, unsigned rm_size)
{
	unsigned m = (unsigned)fetch(d, 1);
	unsigned mod = m >> 6, rm = m & 7;

	in->has_modrm = true;
	in->modrm_mod = (uint8_t)mod;
	in->modrm_reg = (uint8_t)(((m >> 3) & 7) | ((in->rex & 4) << 1));
	in->modrm_rm = (uint8_t)(rm | ((in->rex & 1) << 3));
	if (mod == 3) {
		if (rm_opnd)
			reg_opnd(in, rm_opnd, in->modrm_rm, rm_size);
		return;
	}
	if (in->adsize == 2)
		modrm16(d, in, mod, rm);
	else
		modrm32(d, in, mod, rm);
	if (in->seg_override >= 0)
		in->ea.seg = (uint8_t)in->seg_override;
	if (rm_opnd)
		rm_opnd->kind = X86_OPND_MEM;
}

static void imm(struct dec *d, struct x86_insn *in, unsigned size, bool sign)
{
	uint64_t v = fetch(d, size);

	in->imm_size = (uint8_t)size;
	in->imm = sign ? (uint64_t)sext(v, size) : v;
	in->src.kind = X86_OPND_IMM;
}

static unsigned v_size(const struct x86_insn *in, bool prefix66)
{
	if (in->rex & 8)
		return 8;
	if (in->mode == X86_MODE_16)
		return prefix66 ? 4 : 2;
	return prefix66 ? 2 : 4;
}

/* The ALU/MOV forms with a ModRM: dir 0 r/m <- reg, dir 1 reg <- r/m. */
static void rm_reg_form(struct dec *d, struct x86_insn *in, unsigned size, bool to_reg)
{
	struct x86_opnd *rm = to_reg ? &in->src : &in->dst;
	struct x86_opnd *reg = to_reg ? &in->dst : &in->src;

	in->opsize = in->srcsize = (uint8_t)size;
	modrm(d, in, rm, size);
	reg_opnd(in, reg, in->modrm_reg, size);
}

static int dec_onebyte(struct dec *d, struct x86_insn *in, unsigned op, bool p66)
{
	unsigned vs = v_size(in, p66);
	/* IN/OUT/INS/OUTS: 1 or, by 66 only, 2/4 bytes; REX.W does not widen them. */
	unsigned ios = (op & 1) ? ((in->mode == X86_MODE_16) != p66 ? 2 : 4) : 1;

	if (op >= 0xb0 && op <= 0xbf) { /* MOV r, imm (b8+r with REX.W: a 64-bit imm) */
		unsigned size = op < 0xb8 ? 1 : vs;

		in->op = X86_OP_MOV;
		in->opsize = in->srcsize = (uint8_t)size;
		reg_opnd(in, &in->dst, (op & 7) | ((in->rex & 1u) << 3), size);
		imm(d, in, size, false);
		return 0;
	}
	if (op < 0x40 && (op & 7) < 6) {
		unsigned size = (op & 1) ? vs : 1;

		in->op = X86_OP_ALU;
		in->alu = (uint8_t)(op >> 3);
		if ((op & 7) < 4) {
			rm_reg_form(d, in, size, op & 2);
		} else { /* AL/eAX, imm */
			in->opsize = in->srcsize = (uint8_t)size;
			reg_opnd(in, &in->dst, X86_RAX, size);
			imm(d, in, size == 8 ? 4 : size, true);
		}
		return 0;
	}
	switch (op) {
	case 0x63:
		if (in->mode != X86_MODE_64)
			return X86_DECODE_ENOENT; /* ARPL */
		in->op = (in->rex & 8) ? X86_OP_MOVSX : X86_OP_MOV;
		rm_reg_form(d, in, vs, true);
		in->srcsize = vs == 8 ? 4 : (uint8_t)vs;
		return 0;
	case 0x80: case 0x81: case 0x83: {
		unsigned size = op == 0x80 ? 1 : vs;

		in->op = X86_OP_ALU;
		in->opsize = in->srcsize = (uint8_t)size;
		modrm(d, in, &in->dst, size);
		in->alu = in->modrm_reg & 7;
		imm(d, in, op == 0x81 ? (size == 8 ? 4 : size) : 1, true);
		return 0;
	}
	case 0x84: case 0x85:
		in->op = X86_OP_TEST;
		rm_reg_form(d, in, op == 0x84 ? 1 : vs, false);
		return 0;
	case 0x86: case 0x87:
		in->op = X86_OP_XCHG;
		rm_reg_form(d, in, op == 0x86 ? 1 : vs, false);
		return 0;
	case 0x88: case 0x89: case 0x8a: case 0x8b:
		in->op = X86_OP_MOV;
		rm_reg_form(d, in, (op & 1) ? vs : 1, op & 2);
		return 0;
	case 0x9c: case 0x9d:
		in->op = op == 0x9c ? X86_OP_PUSHF : X86_OP_POPF;
		/* In 64-bit mode the stack size is 8 unless 66 makes it 2. */
		in->opsize = in->mode == X86_MODE_64 ? (p66 ? 2 : 8) : (uint8_t)vs;
		return 0;
	case 0xa0: case 0xa1: case 0xa2: case 0xa3: { /* MOV AL/eAX <-> moffs */
		unsigned size = (op & 1) ? vs : 1;
		struct x86_opnd *mem = (op & 2) ? &in->dst : &in->src;

		in->op = X86_OP_MOV;
		in->opsize = in->srcsize = (uint8_t)size;
		reg_opnd(in, (op & 2) ? &in->src : &in->dst, X86_RAX, size);
		mem->kind = X86_OPND_MEM;
		in->ea.base = in->ea.index = -1;
		in->ea.scale = 1;
		in->ea.disp = (int64_t)fetch(d, in->adsize); /* zero-extended offset */
		in->ea.seg = in->seg_override >= 0 ? (uint8_t)in->seg_override : X86_SEG_DS;
		return 0;
	}
	case 0xa8: case 0xa9: {
		unsigned size = op == 0xa8 ? 1 : vs;

		in->op = X86_OP_TEST;
		in->opsize = in->srcsize = (uint8_t)size;
		reg_opnd(in, &in->dst, X86_RAX, size);
		imm(d, in, size == 8 ? 4 : size, true);
		return 0;
	}
	case 0x6c: case 0x6d: case 0x6e: case 0x6f:
		in->op = op < 0x6e ? X86_OP_INS : X86_OP_OUTS;
		in->opsize = (uint8_t)ios;
		/* INS always writes ES:rDI; OUTS reads DS:rSI, overridable. */
		in->ea.seg = op < 0x6e ? X86_SEG_ES
				       : (in->seg_override >= 0 ? (uint8_t)in->seg_override
								: X86_SEG_DS);
		return 0;
	case 0xeb: case 0xe9: /* JMP rel8, JMP rel16/32 (64-bit mode: 64-bit RIP) */
		in->op = X86_OP_JMP_NEAR;
		in->opsize = (uint8_t)(in->mode == X86_MODE_64 ? 8 : vs);
		imm(d, in, op == 0xeb ? 1 : (in->opsize == 2 ? 2 : 4), true);
		return 0;
	case 0xc6: case 0xc7: {
		unsigned size = op == 0xc6 ? 1 : vs;

		in->op = X86_OP_MOV;
		in->opsize = in->srcsize = (uint8_t)size;
		modrm(d, in, &in->dst, size);
		if (!d->err && (in->modrm_reg & 7) != 0)
			return X86_DECODE_ENOENT; /* XABORT/XBEGIN */
		imm(d, in, size == 8 ? 4 : size, true);
		return 0;
	}
	case 0x8e: /* MOV Sreg, r/m16 */
		modrm(d, in, &in->src, 2);
		if (d->err)
			return 0;
		/* CS is not loadable this way; 6 and 7 name no segment. */
		if ((in->modrm_reg & 7) == X86_SEG_CS || (in->modrm_reg & 7) > X86_SEG_GS)
			return X86_DECODE_UD;
		in->op = X86_OP_MOV_SREG;
		in->opsize = in->srcsize = 2;
		return 0;
	case 0xea: { /* JMP ptr16:16/32 */
		uint64_t off;

		if (in->mode == X86_MODE_64)
			return X86_DECODE_UD;
		in->op = X86_OP_JMP_FAR;
		in->opsize = (uint8_t)vs;
		off = fetch(d, vs);
		in->imm = off | (fetch(d, 2) << 32);
		in->imm_size = (uint8_t)(vs + 2);
		return 0;
	}
	case 0xcf:
		in->op = X86_OP_IRET;
		in->opsize = (uint8_t)vs; /* IRETD by default even in 64-bit mode */
		return 0;
	case 0xe4: case 0xe5: case 0xe6: case 0xe7:
		in->op = op < 0xe6 ? X86_OP_IN : X86_OP_OUT;
		in->opsize = (uint8_t)ios;
		imm(d, in, 1, false);
		return 0;
	case 0xec: case 0xed: case 0xee: case 0xef:
		in->op = op < 0xee ? X86_OP_IN : X86_OP_OUT;
		in->opsize = (uint8_t)ios;
		return 0;
	case 0xa4: case 0xa5: case 0xaa: case 0xab:
		in->op = op < 0xaa ? X86_OP_MOVS : X86_OP_STOS;
		in->opsize = in->srcsize = (uint8_t)((op & 1) ? vs : 1);
		/* The source (MOVS) is DS:rSI, overridable; the destination ES:rDI. */
		in->ea.seg = in->seg_override >= 0 ? (uint8_t)in->seg_override : X86_SEG_DS;
		return 0;
	case 0xcc: case 0xce: case 0xf1:
		if (op == 0xce && in->mode == X86_MODE_64)
			return X86_DECODE_UD; /* INTO */
		in->op = X86_OP_INT;
		in->imm = op == 0xcc ? 3 : op == 0xce ? 4 : 1;
		return 0;
	case 0xcd:
		in->op = X86_OP_INT;
		imm(d, in, 1, false);
		in->src.kind = X86_OPND_NONE;
		return 0;
	case 0xf4: in->op = X86_OP_HLT; return 0;
	case 0xfa: in->op = X86_OP_CLI; return 0;
	case 0xfb: in->op = X86_OP_STI; return 0;
	case 0xf6: case 0xf7: case 0xfe: case 0xff: {
		unsigned size = (op & 1) ? vs : 1;

		in->opsize = in->srcsize = (uint8_t)size;
		modrm(d, in, &in->dst, size);
		if (d->err)
			return 0;
		switch ((op < 0xfe ? 0 : 8) | (in->modrm_reg & 7)) {
		case 0: case 1: /* TEST r/m, imm (/1 is an alias) */
			in->op = X86_OP_TEST;
			imm(d, in, size == 8 ? 4 : size, true);
			return 0;
		case 8: in->op = X86_OP_INC; return 0;
		case 9: in->op = X86_OP_DEC; return 0;
		default: return X86_DECODE_ENOENT;
		}
	}
	}
	return X86_DECODE_ENOENT;
}

static int dec_0f01(struct dec *d, struct x86_insn *in, bool p66)
{
	modrm(d, in, &in->src, 2);
	if (d->err)
		return 0;
	if (in->modrm_mod == 3 && (in->modrm_reg & 7) == 6) {
		in->op = X86_OP_LMSW; /* LMSW r16 */
		in->opsize = in->srcsize = 2;
		return 0;
	}
	if (in->modrm_mod == 3) {
		static const struct { uint8_t rm, op; } regs[] = {
			{ 0xc1, X86_OP_VMCALL }, { 0xd9, X86_OP_VMMCALL }, { 0xd1, X86_OP_XSETBV },
			{ 0xf8, X86_OP_SWAPGS }, { 0xf9, X86_OP_RDTSCP },
		};
		unsigned byte = d->b[d->pos - 1];

		in->src.kind = X86_OPND_NONE;
		for (unsigned i = 0; i < sizeof(regs) / sizeof(regs[0]); i++) {
			if (regs[i].rm == byte) {
				in->op = regs[i].op;
				if (in->op == X86_OP_SWAPGS && in->mode != X86_MODE_64)
					return X86_DECODE_UD;
				return 0;
			}
		}
		return X86_DECODE_ENOENT;
	}
	switch (in->modrm_reg & 7) {
	case 2: case 3:
		in->op = (in->modrm_reg & 7) == 2 ? X86_OP_LGDT : X86_OP_LIDT;
		/* 64-bit mode: 8-byte base whatever the prefixes; else 66 => 24 bits. */
		in->opsize = in->mode == X86_MODE_64 ? 8 : (uint8_t)v_size(in, p66);
		return 0;
	case 6:
		in->op = X86_OP_LMSW;
		in->opsize = 2;
		return 0;
	case 7:
		in->op = X86_OP_INVLPG;
		in->src.kind = X86_OPND_NONE; /* address only, no access */
		return 0;
	}
	return X86_DECODE_ENOENT;
}

static int dec_twobyte(struct dec *d, struct x86_insn *in, unsigned op, bool p66)
{
	unsigned vs = v_size(in, p66);

	switch (op) {
	case 0x00:
		modrm(d, in, &in->src, 2);
		if (d->err)
			return 0;
		if ((in->modrm_reg & 7) != 2 && (in->modrm_reg & 7) != 3)
			return X86_DECODE_ENOENT;
		in->op = (in->modrm_reg & 7) == 2 ? X86_OP_LLDT : X86_OP_LTR;
		in->opsize = in->srcsize = 2;
		return 0;
	case 0x01: return dec_0f01(d, in, p66);
	case 0x05: in->op = X86_OP_SYSCALL; return 0;
	case 0x06: in->op = X86_OP_CLTS; return 0;
	case 0x07: in->op = X86_OP_SYSRET; in->opsize = (uint8_t)vs; return 0;
	case 0x08: in->op = X86_OP_INVD; return 0;
	case 0x09: in->op = X86_OP_WBINVD; return 0;
	case 0x20: case 0x21: case 0x22: case 0x23: {
		static const uint8_t ops[4] = { X86_OP_MOV_FROM_CR, X86_OP_MOV_FROM_DR,
						X86_OP_MOV_TO_CR, X86_OP_MOV_TO_DR };
		unsigned m = (unsigned)fetch(d, 1);

		if (d->err)
			return 0;
		/* The r/m is a register whatever mod says; 66 is ignored. */
		in->op = ops[op & 3];
		in->has_modrm = true;
		in->modrm_mod = 3;
		in->modrm_reg = (uint8_t)(((m >> 3) & 7) | ((in->rex & 4) << 1));
		in->modrm_rm = (uint8_t)((m & 7) | ((in->rex & 1) << 3));
		in->opsize = in->mode == X86_MODE_64 ? 8 : 4;
		if (op & 1) {
			if (in->modrm_reg > 7)
				return X86_DECODE_UD;
		} else if (in->modrm_reg != 0 && in->modrm_reg != 2 && in->modrm_reg != 3 &&
			   in->modrm_reg != 4 && in->modrm_reg != 8) {
			return X86_DECODE_UD;
		}
		return 0;
	}
	case 0x30: in->op = X86_OP_WRMSR; return 0;
	case 0x31: in->op = X86_OP_RDTSC; return 0;
	case 0x32: in->op = X86_OP_RDMSR; return 0;
	case 0xa2: in->op = X86_OP_CPUID; return 0;
	case 0xaa: in->op = X86_OP_RSM; return 0;
	case 0xb6: case 0xb7: case 0xbe: case 0xbf:
		in->op = op < 0xbe ? X86_OP_MOVZX : X86_OP_MOVSX;
		rm_reg_form(d, in, (op & 1) ? 2 : 1, true);
		in->opsize = (uint8_t)vs;
		if (in->src.kind == X86_OPND_REG)
			reg_opnd(in, &in->src, in->modrm_rm, in->srcsize);
		reg_opnd(in, &in->dst, in->modrm_reg, vs);
		return 0;
	}
	return X86_DECODE_ENOENT;
}

/* LOCK is legal only on read-modify-write forms with a memory destination. */
static bool lock_ok(const struct x86_insn *in)
{
	if (in->dst.kind != X86_OPND_MEM)
		return false;
	switch (in->op) {
	case X86_OP_ALU: return in->alu != X86_ALU_CMP;
	case X86_OP_XCHG: case X86_OP_INC: case X86_OP_DEC: return true;
	default: return false;
	}
}

int x86_decode(const uint8_t *bytes, unsigned avail, enum x86_mode mode, struct x86_insn *in)
{
	struct dec d = { .b = bytes, .avail = avail };
	bool p66 = false, p67 = false;
	unsigned op;
	int r;

	memset(in, 0, sizeof(*in));
	in->mode = (uint8_t)mode;
	in->seg_override = -1;
	in->ea.base = in->ea.index = -1;
	for (;;) {
		unsigned b = (unsigned)fetch(&d, 1);

		if (d.err)
			return d.err;
		switch (b) {
		case 0x66: p66 = true; break;
		case 0x67: p67 = true; break;
		case 0xf0: in->lock = true; break;
		case 0xf2: case 0xf3: in->rep = (uint8_t)b; break;
		case 0x26: in->seg_override = X86_SEG_ES; break;
		case 0x2e: in->seg_override = X86_SEG_CS; break;
		case 0x36: in->seg_override = X86_SEG_SS; break;
		case 0x3e: in->seg_override = X86_SEG_DS; break;
		case 0x64: in->seg_override = X86_SEG_FS; break;
		case 0x65: in->seg_override = X86_SEG_GS; break;
		default:
			if (mode == X86_MODE_64 && (b & 0xf0) == 0x40) {
				in->rex = (uint8_t)b; /* the last REX wins */
				continue;
			}
			op = b;
			goto opcode;
		}
		in->rex = 0; /* a REX followed by a legacy prefix is ignored */
	}
opcode:
	/* In 64-bit mode ES/CS/SS/DS overrides are ignored for addressing. */
	if (mode == X86_MODE_64 && in->seg_override >= 0 && in->seg_override < X86_SEG_FS)
		in->seg_override = -1;
	in->nr_prefixes = (uint8_t)(d.pos - 1);
	if (mode == X86_MODE_64)
		in->adsize = p67 ? 4 : 8;
	else
		in->adsize = (mode == X86_MODE_16) != p67 ? 2 : 4;
	if (op == 0x0f) {
		in->map = 1;
		op = (unsigned)fetch(&d, 1);
		if (d.err)
			return d.err;
		in->opcode = (uint8_t)op;
		r = dec_twobyte(&d, in, op, p66);
	} else {
		in->opcode = (uint8_t)op;
		r = dec_onebyte(&d, in, op, p66);
	}
	if (d.err)
		return d.err;
	if (r)
		return r;
	if (in->lock && !lock_ok(in))
		return X86_DECODE_UD;
	if (!in->srcsize)
		in->srcsize = in->opsize;
	in->len = (uint8_t)d.pos;
	return 0;
}

const char *x86_op_name(unsigned op)
{
	static const char *const names[X86_OP_COUNT] = {
		"none", "in", "out", "ins", "outs", "hlt", "cli", "sti", "pushf", "popf", "iret",
		"mov_from_cr", "mov_to_cr", "mov_from_dr", "mov_to_dr", "lmsw", "clts", "rdmsr",
		"wrmsr", "rdtsc", "rdtscp", "cpuid", "xsetbv", "vmcall", "vmmcall", "lgdt", "lidt",
		"ltr", "lldt", "invlpg", "wbinvd", "invd", "swapgs", "syscall", "sysret", "mov",
		"movzx", "movsx", "alu", "test", "xchg", "inc", "dec", "int",
		"stos", "movs", "mov_sreg", "jmp_far", "rsm", "jmp_near",
	};

	return op < X86_OP_COUNT ? names[op] : "?";
}
