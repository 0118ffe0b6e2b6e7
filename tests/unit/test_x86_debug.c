/* SPDX-License-Identifier: MIT */
/*
 * KVM_SET_GUEST_DEBUG on the x86 backend, as a debugger drives it through
 * the uAPI: small hand-assembled 64-bit guests (x86_vm.h, no in-kernel
 * irqchip, so HLT exits) and the KVM_EXIT_DEBUG each control gives, with
 * the debug.arch fields KVM fills: a software breakpoint (INT3 exits with
 * #BP on it), single-step over a native and over emulated instructions
 * (#DB, DR6.BS, RIP past the instruction), hardware instruction and data
 * breakpoints (#DB, DR6 bit i, the debugger's DR7), DR7.GD, INJECT_BP and
 * INJECT_DB, and the guest's own DR7 breakpoint (#DB in the guest).
 *
 * Hardware breakpoints are armed with perf_event_open(PERF_TYPE_BREAKPOINT)
 * in the guest process: on a host without a breakpoint PMU or where perf
 * events are refused, those cases skip.
 */
#include <linux/hw_breakpoint.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <sys/syscall.h>

#include "harness.h"
#include "x86_vm.h"

#define DATA 0x100000ULL
#define DB_VECTOR 1
#define BP_VECTOR 3
#define DR6_BS 0xffff4ff0ULL /* BS and the bits that read as 1 */
#define DR6_BD 0xffff2ff0ULL
#define DR6_B(i) (0xffff0ff0ULL | (1ULL << (i)))
#define DR7_FIXED 0x400ULL
#define DR7_G(i) (1ULL << (2 * (i) + 1))
#define DR7_RWLEN(i, rwlen) ((uint64_t)(rwlen) << (16 + 4 * (i)))
#define DR7_GD (1ULL << 13)
#define NO_DR6 (~0ULL)

struct debug_case {
	const char *name;
	uint8_t code[16];
	uint8_t len;
	uint32_t control;	/* KVM_GUESTDBG_*, ENABLE added */
	uint64_t db[8];		/* debugreg[0..7] */
	uint64_t rflags_in;	/* 0: 2 */
	bool hw;		/* needs a breakpoint PMU */
	uint32_t io_first;	/* 1: an OUT exit comes first (the step completes after it) */
	uint32_t exit_reason;
	uint8_t exception;
	uint8_t pc_off;		/* debug.arch.pc and RIP after the exit: CODE + pc_off */
	uint64_t dr6;		/* NO_DR6: not written by this exit */
};

static const struct debug_case cases[] = {
	/* nop; int3; hlt: the exit is on the INT3, not past it. */
	{ "sw_bp_int3_exits_on_it", { 0x90, 0xcc, 0xf4 }, 3, KVM_GUESTDBG_USE_SW_BP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = BP_VECTOR, .pc_off = 1, .dr6 = NO_DR6 },
	/* nop; int $3; hlt: two bytes back. */
	{ "sw_bp_int_imm3_exits_on_it", { 0x90, 0xcd, 0x03, 0xf4 }, 4, KVM_GUESTDBG_USE_SW_BP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = BP_VECTOR, .pc_off = 1, .dr6 = NO_DR6 },
	/* Without USE_SW_BP the guest takes its #BP: no IDT here, a triple fault. */
	{ "int3_without_sw_bp_is_the_guests", { 0x90, 0xcc, 0xf4 }, 3, 0,
	  .exit_reason = KVM_EXIT_SHUTDOWN, .dr6 = NO_DR6, .pc_off = 0xff },
	/* nop; nop; hlt: one native instruction, then the exit. */
	{ "step_native_nop", { 0x90, 0x90, 0xf4 }, 3, KVM_GUESTDBG_SINGLESTEP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 1, .dr6 = DR6_BS },
	/* mov $5,%eax: five bytes, native. */
	{ "step_native_mov", { 0xb8, 5, 0, 0, 0, 0xf4 }, 6, KVM_GUESTDBG_SINGLESTEP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 5, .dr6 = DR6_BS },
	/* cli: emulated (a #GP at CPL3 in the guest process). */
	{ "step_emulated_cli", { 0xfa, 0xf4 }, 2, KVM_GUESTDBG_SINGLESTEP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 1, .dr6 = DR6_BS },
	/* mov %cr0,%rax: emulated. */
	{ "step_emulated_mov_cr0", { 0x0f, 0x20, 0xc0, 0xf4 }, 4, KVM_GUESTDBG_SINGLESTEP,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 3, .dr6 = DR6_BS },
	/* out %al,$PORT: the I/O exit first, the step's once it completed. */
	{ "step_emulated_out_after_completion", { 0xe6, PORT, 0xf4 }, 3, KVM_GUESTDBG_SINGLESTEP,
	  .io_first = 1, .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 2,
	  .dr6 = DR6_BS },
	/* nop; nop; nop; hlt with DR2 on the third byte: before it runs. */
	{ "hw_bp_exec_dr2", { 0x90, 0x90, 0x90, 0xf4 }, 4, KVM_GUESTDBG_USE_HW_BP,
	  { 0, 0, CODE + 2, 0, 0, 0, 0, DR7_FIXED | DR7_G(2) }, .hw = true,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 2, .dr6 = DR6_B(2) },
	/* Two instruction breakpoints on one RIP: one #DB reports both. */
	{ "hw_bp_exec_two_on_one_rip", { 0x90, 0x90, 0xf4 }, 3, KVM_GUESTDBG_USE_HW_BP,
	  { CODE + 1, CODE + 1, 0, 0, 0, 0, 0, DR7_FIXED | DR7_G(0) | DR7_G(1) }, .hw = true,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 1,
	  .dr6 = DR6_B(0) | DR6_B(1) },
	/* mov %eax,DATA; hlt with DR0 watching 4-byte writes: after the store. */
	{ "hw_bp_write_dr0", { 0x89, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0xf4 }, 8,
	  KVM_GUESTDBG_USE_HW_BP, { DATA, 0, 0, 0, 0, 0, 0, DR7_FIXED | DR7_G(0) | DR7_RWLEN(0, 0xd) },
	  .hw = true, .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 7,
	  .dr6 = DR6_B(0) },
	/* mov DATA,%eax with DR3 watching reads and writes of 8 bytes at
	 * DATA + 4: the CPU ignores the low bits, the read hits. */
	{ "hw_bp_read_dr3_low_bits_ignored", { 0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0xf4 },
	  8, KVM_GUESTDBG_USE_HW_BP,
	  { 0, 0, 0, DATA + 4, 0, 0, 0, DR7_FIXED | DR7_G(3) | DR7_RWLEN(3, 0xb) }, .hw = true,
	  .exit_reason = KVM_EXIT_DEBUG, .exception = DB_VECTOR, .pc_off = 7, .dr6 = DR6_B(3) },
	/* A write watch is not hit by a read. */
	{ "hw_bp_write_watch_ignores_reads", { 0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, 0xf4 },
	  8, KVM_GUESTDBG_USE_HW_BP,
	  { DATA, 0, 0, 0, 0, 0, 0, DR7_FIXED | DR7_G(0) | DR7_RWLEN(0, 0xd) }, .hw = true,
	  .exit_reason = KVM_EXIT_HLT, .pc_off = 8, .dr6 = NO_DR6 },
	/* DR0 set but not enabled in DR7: nothing. */
	{ "hw_bp_not_enabled_runs_through", { 0x90, 0x90, 0xf4 }, 3, KVM_GUESTDBG_USE_HW_BP,
	  { CODE + 1, 0, 0, 0, 0, 0, 0, DR7_FIXED }, .exit_reason = KVM_EXIT_HLT, .pc_off = 3,
	  .dr6 = NO_DR6 },
	/* mov %dr0,%rax with the debugger's DR7.GD: #DB(BD) on the MOV. */
	{ "dr7_gd_mov_from_dr0", { 0x0f, 0x21, 0xc0, 0xf4 }, 4, KVM_GUESTDBG_USE_HW_BP,
	  { 0, 0, 0, 0, 0, 0, 0, DR7_FIXED | DR7_GD }, .exit_reason = KVM_EXIT_DEBUG,
	  .exception = DB_VECTOR, .pc_off = 0, .dr6 = DR6_BD },
};

/* Whether this host arms a sigtrap breakpoint for a thread of its own. */
static bool host_has_hw_breakpoints(void)
{
	static volatile int probe;
	struct perf_event_attr a;
	long fd;

	memset(&a, 0, sizeof(a));
	a.type = PERF_TYPE_BREAKPOINT;
	a.size = sizeof(a);
	a.bp_type = HW_BREAKPOINT_W;
	a.bp_addr = (uintptr_t)&probe;
	a.bp_len = HW_BREAKPOINT_LEN_4;
	a.sample_period = 1;
	a.sigtrap = 1;
	a.remove_on_exec = 1;
	a.exclude_kernel = 1;
	a.exclude_hv = 1;
	a.disabled = 1; /* never fires here */
	fd = syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0)
		return false;
	close((int)fd);
	return true;
}

static void set_debug(struct vm *m, uint32_t control, const uint64_t db[8])
{
	struct kvm_guest_debug d;

	memset(&d, 0, sizeof(d));
	d.control = control;
	if (db)
		memcpy(d.arch.debugreg, db, sizeof(d.arch.debugreg));
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_GUEST_DEBUG, &d), 0);
}

static void debug_case(void *arg)
{
	const struct debug_case *c = arg;
	struct kvm_regs r;
	struct vm m;

	if (c->hw && !host_has_hw_breakpoints())
		SKIP("no perf breakpoint with sigtrap on this host");
	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c->code, c->len);
	vm_start(&m, CODE);
	set_debug(&m, KVM_GUESTDBG_ENABLE | c->control, c->db);
	/* Poison what the exit must write, and what it must leave. */
	m.run->debug.arch.dr6 = 0x5a5a;
	m.run->debug.arch.dr7 = 0xa5a5;
	if (c->io_first) {
		expect_io(&m, KVM_EXIT_IO_OUT, PORT, 1);
		ASSERT_EQ(m.run->debug.arch.dr6, 0x5a5a);
	}
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, c->exit_reason);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	if (c->pc_off != 0xff)
		EXPECT_EQ(r.rip, CODE + c->pc_off);
	/* The step's TF is the debugger's: KVM_GET_REGS never shows it. */
	EXPECT_EQ(r.rflags & 0x100, 0);
	if (c->exit_reason == KVM_EXIT_DEBUG) {
		EXPECT_EQ(m.run->debug.arch.exception, c->exception);
		EXPECT_EQ(m.run->debug.arch.pc, CODE + c->pc_off);
		if (c->dr6 == NO_DR6) {
			EXPECT_EQ(m.run->debug.arch.dr6, 0x5a5a);
		} else {
			EXPECT_EQ(m.run->debug.arch.dr6, c->dr6);
			/* KVM writes the DR7 in force with DR6 (the debugger's with
			 * USE_HW_BP, else the guest's, 0x400 at reset), except
			 * after an emulated step. */
			if (!(c->control & KVM_GUESTDBG_SINGLESTEP) || c->code[0] == 0x90 ||
			    c->code[0] == 0xb8)
				EXPECT_EQ(m.run->debug.arch.dr7, (c->control & KVM_GUESTDBG_USE_HW_BP)
									 ? c->db[7]
									 : DR7_FIXED);
			else
				EXPECT_EQ(m.run->debug.arch.dr7, 0xa5a5);
		}
	}
	vm_close(&m);
}

/*
 * The step's TF stays in the vCPU's RFLAGS between native steps (each run
 * steps once more without a new KVM_SET_GUEST_DEBUG) and is hidden from
 * KVM_GET_REGS; KVM_SET_REGS that moves RIP ends the stepping, as in KVM;
 * clearing the control lets the guest run to its HLT.
 */
TEST(step_tf_hidden_sticky_and_dropped_by_set_regs)
{
	static const uint8_t c[] = { 0x90, 0x90, 0x90, 0x90, 0xf4 };
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c, sizeof(c));
	vm_start(&m, CODE);
	set_debug(&m, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, NULL);
	for (unsigned i = 1; i <= 2; i++) {
		ASSERT_EQ(run(&m), 0);
		ASSERT_EQ(m.run->exit_reason, KVM_EXIT_DEBUG);
		EXPECT_EQ(m.run->debug.arch.pc, CODE + i);
	}
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	EXPECT_EQ(r.rflags & 0x100, 0);
	/* Moved RIP: no TF any more, the guest runs to HLT. */
	r.rip = CODE + 3;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_REGS, &r), 0);
	ASSERT_EQ(run(&m), 0);
	EXPECT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	vm_close(&m);
}

/* The test of Linux's debug_regs: after an instruction breakpoint's exit,
 * the next run stops on it again (RF is not left set), and another DR on
 * the same address reports its own bit. */
TEST(hw_bp_exec_hits_again_on_rerun)
{
	static const uint8_t c[] = { 0x90, 0x90, 0xf4 };
	struct vm m;

	if (!host_has_hw_breakpoints())
		SKIP("no perf breakpoint with sigtrap on this host");
	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c, sizeof(c));
	vm_start(&m, CODE);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t db[8] = { 0 };

		db[i] = CODE + 1;
		db[7] = DR7_FIXED | DR7_G(i);
		set_debug(&m, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, db);
		ASSERT_EQ(run(&m), 0);
		ASSERT_EQ(m.run->exit_reason, KVM_EXIT_DEBUG);
		EXPECT_EQ(m.run->debug.arch.pc, CODE + 1);
		EXPECT_EQ(m.run->debug.arch.dr6, DR6_B(i));
	}
	set_debug(&m, 0, NULL);
	ASSERT_EQ(run(&m), 0);
	EXPECT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	vm_close(&m);
}

/* A 64-bit interrupt gate for @vector in x86_vm.h's IDT (0x5000). */
static void idt_gate(struct vm *m, uint8_t vector, uint64_t handler)
{
	uint64_t lo = (handler & 0xffff) | (8ULL << 16) | (0x8eULL << 40) |
		      ((handler >> 16 & 0xffff) << 48);

	put64(m->mem, 0x5000 + 16 * vector, lo);
	put64(m->mem, 0x5000 + 16 * vector + 8, handler >> 32);
}

/*
 * KVM_GUESTDBG_INJECT_BP after a software-breakpoint exit hands the INT3
 * back to the guest: its handler sees the return RIP past the INT3, as
 * KVM injects it.  INJECT_DB delivers #DB at the current RIP.
 */
TEST(inject_bp_after_sw_bp_and_inject_db)
{
	static const uint8_t c[] = { 0x90, 0xcc, 0xf4 };
	/* #BP: mov (%rsp),%rax; out %eax,$PORT; hlt */
	static const uint8_t bp_handler[] = { 0x48, 0x8b, 0x04, 0x24, 0xe7, PORT, 0xf4 };
	/* #DB: mov $0xdb,%eax; out %eax,$PORT; hlt */
	static const uint8_t db_handler[] = { 0xb8, 0xdb, 0, 0, 0, 0xe7, PORT, 0xf4 };
	struct kvm_guest_debug d;
	struct vm m;

	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c, sizeof(c));
	memcpy(m.mem + CODE + 0x100, bp_handler, sizeof(bp_handler));
	memcpy(m.mem + CODE + 0x200, db_handler, sizeof(db_handler));
	idt_gate(&m, BP_VECTOR, CODE + 0x100);
	idt_gate(&m, DB_VECTOR, CODE + 0x200);
	vm_start(&m, CODE);
	set_debug(&m, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, NULL);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_DEBUG);
	ASSERT_EQ(m.run->debug.arch.pc, CODE + 1);
	set_debug(&m, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_INJECT_BP, NULL);
	/* One exception at a time: a second injection is refused meanwhile. */
	memset(&d, 0, sizeof(d));
	d.control = KVM_GUESTDBG_INJECT_DB;
	EXPECT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_GUEST_DEBUG, &d), -1);
	EXPECT_EQ(errno, EBUSY);
	EXPECT_EQ(next_out(&m), CODE + 2);

	vm_start(&m, CODE);
	set_debug(&m, KVM_GUESTDBG_INJECT_DB, NULL); /* without ENABLE too */
	EXPECT_EQ(next_out(&m), 0xdb);
	vm_close(&m);
}

/*
 * The guest's own breakpoint (no KVM_SET_GUEST_DEBUG): it loads DR0 and
 * DR7 with MOV DR; the instruction breakpoint raises #DB in the guest
 * before the instruction, DR6 holds B0, the frame's RIP is the breakpoint.
 */
TEST(guest_own_instruction_breakpoint)
{
	static const uint8_t c[] = {
		0x48, 0xc7, 0xc0, 0x15, 0x00, 0x01, 0x00, /* mov $CODE+0x15,%rax */
		0x0f, 0x23, 0xc0,			  /* mov %rax,%dr0 */
		0xb8, 0x02, 0x04, 0x00, 0x00,		  /* mov $0x402,%eax (G0) */
		0x0f, 0x23, 0xf8,			  /* mov %rax,%dr7 */
		0x90, 0x90, 0x90,			  /* nop x3: CODE+0x12..0x14 */
		0x90, 0xf4,				  /* CODE+0x15: nop; hlt */
	};
	/* #DB: mov %dr6,%rax; out %eax,$PORT; mov (%rsp),%rax; out %eax,$PORT; hlt */
	static const uint8_t db_handler[] = { 0x0f, 0x21, 0xf0, 0xe7, PORT, 0x48, 0x8b,
					      0x04, 0x24, 0xe7, PORT, 0xf4 };
	struct vm m;

	if (!host_has_hw_breakpoints())
		SKIP("no perf breakpoint with sigtrap on this host");
	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c, sizeof(c));
	memcpy(m.mem + CODE + 0x200, db_handler, sizeof(db_handler));
	idt_gate(&m, DB_VECTOR, CODE + 0x200);
	vm_start(&m, CODE);
	EXPECT_EQ(next_out(&m), (uint32_t)DR6_B(0));
	EXPECT_EQ(next_out(&m), CODE + 0x15);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	char name[96];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "%s", cases[i].name);
		test_add(name, debug_case, (void *)&cases[i], 0);
	}
	return test_main(argc, argv);
}
