// SPDX-License-Identifier: MIT
/*
 * test_x86_emu - the trapped-instruction decoder and emulator
 * (src/vcpu/x86), checked against the host CPU wherever it can run the
 * instruction at CPL3.
 *
 * Three ways the host is the reference:
 *  - Length: the instruction's bytes are placed so they end exactly at the
 *    end of an executable page followed by an unmapped one.  The complete
 *    instruction must then trap on itself (#GP/#UD) or execute; the same
 *    bytes less the last one must fault on instruction fetch at the page
 *    boundary.  That pins the decoded length to the CPU's, for privileged
 *    instructions too.
 *  - Effects: MOV/MOVZX/MOVSX/ALU forms on memory run natively between a
 *    register-loading prologue and a register-saving epilogue; the emulator
 *    runs the same bytes on the same registers and a copy of the memory, once
 *    with the memory as RAM and once as MMIO (answering each exit like a VMM),
 *    and both must leave what the CPU left.
 *  - Fuzz: random legacy-prefix/REX runs in front of harmless load forms,
 *    length against the CPU.
 * The privileged instructions' effects are table cases against the SDM/KVM
 * rules (the host cannot run them).
 */
#include "harness.h"
#include "vcpu/x86/decode.h"
#include "vcpu/x86/emulate.h"
#include "vcpu/x86/smm.h"

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE 4096ul

/* ---- native execution ------------------------------------------------- */

struct nstate {
	uint64_t gpr[16];
	uint64_t rflags;
};

/* Prologue: save callee-saved registers and the state pointer, load RFLAGS
 * and every GPR but RSP from the state.  Epilogue: the reverse. */
__asm__(".text\n"
	"gm_tramp_pro:\n"
	"push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"push %rdi\n"
	"pushq 128(%rdi)\n popfq\n"
	"mov 0(%rdi),%rax\n mov 8(%rdi),%rcx\n mov 16(%rdi),%rdx\n mov 24(%rdi),%rbx\n"
	"mov 40(%rdi),%rbp\n mov 48(%rdi),%rsi\n"
	"mov 64(%rdi),%r8\n mov 72(%rdi),%r9\n mov 80(%rdi),%r10\n mov 88(%rdi),%r11\n"
	"mov 96(%rdi),%r12\n mov 104(%rdi),%r13\n mov 112(%rdi),%r14\n mov 120(%rdi),%r15\n"
	"mov 56(%rdi),%rdi\n"
	"gm_tramp_pro_end:\n"
	"gm_tramp_epi:\n"
	"push %rdi\n mov 8(%rsp),%rdi\n popq 56(%rdi)\n"
	"mov %rax,0(%rdi)\n mov %rcx,8(%rdi)\n mov %rdx,16(%rdi)\n mov %rbx,24(%rdi)\n"
	"mov %rbp,40(%rdi)\n mov %rsi,48(%rdi)\n"
	"mov %r8,64(%rdi)\n mov %r9,72(%rdi)\n mov %r10,80(%rdi)\n mov %r11,88(%rdi)\n"
	"mov %r12,96(%rdi)\n mov %r13,104(%rdi)\n mov %r14,112(%rdi)\n mov %r15,120(%rdi)\n"
	"pushfq\n popq 128(%rdi)\n cld\n"
	"pop %rdi\n"
	"pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"ret\n"
	"gm_tramp_epi_end:\n");
extern const uint8_t gm_tramp_pro[], gm_tramp_pro_end[], gm_tramp_epi[], gm_tramp_epi_end[];

/* Two pages: code/data (RWX) and an unmapped guard after it. */
static uint8_t *area;

static void area_init(void)
{
	if (area)
		return;
	/* Below 4 GiB so that 32-bit address-size (67) forms reach it too. */
	area = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	ASSERT_MSG(area != MAP_FAILED, "mmap rwx: %s", test_errno_name(errno));
	ASSERT_EQ(munmap(area + PAGE, PAGE), 0);
}

static sigjmp_buf trap_jmp;
static volatile int trap_sig, trap_code;
static volatile uint64_t trap_rip, trap_addr;

static void trap_handler(int sig, siginfo_t *si, void *uc_)
{
	ucontext_t *uc = uc_;

	trap_sig = sig;
	trap_code = si->si_code;
	trap_addr = (uint64_t)si->si_addr;
	trap_rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
	siglongjmp(trap_jmp, 1);
}

static void traps_install(void)
{
	struct sigaction sa = { .sa_sigaction = trap_handler, .sa_flags = SA_SIGINFO | SA_NODEFER };
	static uint8_t altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(sigaltstack(&ss, NULL), 0);
	sa.sa_flags |= SA_ONSTACK;
	ASSERT_EQ(sigaction(SIGSEGV, &sa, NULL), 0);
	ASSERT_EQ(sigaction(SIGILL, &sa, NULL), 0);
	ASSERT_EQ(sigaction(SIGTRAP, &sa, NULL), 0);
	ASSERT_EQ(sigaction(SIGBUS, &sa, NULL), 0);
}

/* Scratch memory the length runs' memory operands point into. */
static uint8_t scratch[3 * PAGE] __attribute__((aligned(4096)));

/* Outcome of running @n bytes placed to end at the guard page. */
enum outcome { O_FETCH, O_GP, O_UD, O_RAN, O_OTHER };

static enum outcome run_at_boundary(const uint8_t *bytes, unsigned n)
{
	uint8_t *start = area + PAGE - n;
	struct nstate st = { .rflags = 0x202 };
	size_t pro = (size_t)(gm_tramp_pro_end - gm_tramp_pro);

	/* The prologue jumps to the instruction: pro bytes, then a JMP rel32. */
	memcpy(area, gm_tramp_pro, pro);
	area[pro] = 0xe9;
	int32_t rel = (int32_t)(start - (area + pro + 5));
	memcpy(area + pro + 1, &rel, 4);
	memcpy(start, bytes, n);
	for (int i = 0; i < 16; i++)
		st.gpr[i] = (uint64_t)(scratch + PAGE + 64 * i);
	st.gpr[X86_RCX] = 1; /* string ops: one element */
	st.gpr[X86_RDX] = 0x80;
	__builtin___clear_cache((char *)area, (char *)area + PAGE);
	trap_sig = 0;
	if (sigsetjmp(trap_jmp, 1) == 0)
		((void (*)(struct nstate *))area)(&st);
	/* Only a trap ends the run: nothing follows the instruction. */
	if (trap_sig == SIGSEGV && trap_addr == (uint64_t)(area + PAGE) &&
	    trap_rip == (uint64_t)start)
		return O_FETCH;
	if (trap_rip == (uint64_t)(area + PAGE))
		return O_RAN;
	if (trap_rip != (uint64_t)start)
		return O_OTHER;
	if (trap_sig == SIGSEGV && trap_code == 0x80)
		return O_GP;
	if (trap_sig == SIGILL)
		return O_UD;
	return O_OTHER;
}

static const char *outcome_name(enum outcome o)
{
	static const char *const n[] = { "fetch fault", "#GP", "#UD", "ran", "other" };

	return n[o];
}

/* ---- 32-bit code: lengths checked in compatibility mode ------------------- */

/* Linux's 32-bit user code segment. */
#define USER32_CS 0x23

/* Below 4 GiB: code page plus guard, and scratch for memory operands. */
static uint8_t *area32, *scratch32;

static void area32_init(void)
{
	if (area32)
		return;
	area32 = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	ASSERT_MSG(area32 != MAP_FAILED, "mmap 32-bit: %s", test_errno_name(errno));
	ASSERT_EQ(munmap(area32 + PAGE, PAGE), 0);
	scratch32 = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
			 MAP_32BIT, -1, 0);
	ASSERT_MSG(scratch32 != MAP_FAILED, "mmap 32-bit: %s", test_errno_name(errno));
}

/* The 64-bit prologue loads the registers, then a far jump through a
 * pointer in the page enters the bytes in 32-bit compatibility mode. */
static enum outcome run_at_boundary32(const uint8_t *bytes, unsigned n)
{
	uint8_t *start = area32 + PAGE - n, *p;
	struct nstate st = { .rflags = 0x202 };
	size_t pro = (size_t)(gm_tramp_pro_end - gm_tramp_pro);
	uint32_t farptr_at, off = (uint32_t)(uintptr_t)start;
	uint16_t sel = USER32_CS;

	memcpy(area32, gm_tramp_pro, pro);
	p = area32 + pro;
	farptr_at = (uint32_t)(uintptr_t)(p + 7);
	*p++ = 0xff; /* ljmp *[disp32]: ff /5, SIB with no base */
	*p++ = 0x2c;
	*p++ = 0x25;
	memcpy(p, &farptr_at, 4);
	p += 4;
	memcpy(p, &off, 4);
	memcpy(p + 4, &sel, 2);
	memcpy(start, bytes, n);
	for (int i = 0; i < 16; i++)
		st.gpr[i] = (uint64_t)(uintptr_t)(scratch32 + PAGE + 64 * i);
	st.gpr[X86_RCX] = 1;
	st.gpr[X86_RDX] = 0x80;
	__builtin___clear_cache((char *)area32, (char *)area32 + PAGE);
	trap_sig = 0;
	if (sigsetjmp(trap_jmp, 1) == 0)
		((void (*)(struct nstate *))area32)(&st);
	if (trap_sig == SIGSEGV && trap_addr == (uint64_t)(uintptr_t)(area32 + PAGE) &&
	    trap_rip == (uint64_t)(uintptr_t)start)
		return O_FETCH;
	if (trap_rip == (uint64_t)(uintptr_t)(area32 + PAGE))
		return O_RAN;
	if (trap_rip != (uint64_t)(uintptr_t)start)
		return O_OTHER;
	if (trap_sig == SIGSEGV && trap_code == 0x80)
		return O_GP;
	if (trap_sig == SIGILL)
		return O_UD;
	return O_OTHER;
}

/* ---- decode table ------------------------------------------------------- */

enum native { N_NO, N_GP, N_UD, N_RUNS, N_ANY };

struct drow {
	const char *name;
	uint8_t bytes[15];
	uint8_t len;
	uint8_t mode;
	uint8_t op, opsize, adsize;
	uint8_t native;	/* what the CPU does with it at CPL3 */
};

#define B(...) { __VA_ARGS__ }
#define M64 X86_MODE_64
#define M32 X86_MODE_32
#define M16 X86_MODE_16

static const struct drow drows[] = {
	{ "in al,imm8", B(0xe4, 0x80), 2, M64, X86_OP_IN, 1, 8, N_GP },
	{ "in eax,imm8", B(0xe5, 0x71), 2, M64, X86_OP_IN, 4, 8, N_GP },
	{ "in ax,imm8", B(0x66, 0xe5, 0x71), 3, M64, X86_OP_IN, 2, 8, N_GP },
	{ "in eax,imm8 rex.w", B(0x48, 0xe5, 0x71), 3, M64, X86_OP_IN, 4, 8, N_GP },
	{ "out imm8,al", B(0xe6, 0x80), 2, M64, X86_OP_OUT, 1, 8, N_GP },
	{ "out imm8,eax", B(0xe7, 0x80), 2, M64, X86_OP_OUT, 4, 8, N_GP },
	{ "in al,dx", B(0xec), 1, M64, X86_OP_IN, 1, 8, N_GP },
	{ "in ax,dx", B(0x66, 0xed), 2, M64, X86_OP_IN, 2, 8, N_GP },
	{ "in eax,dx", B(0xed), 1, M64, X86_OP_IN, 4, 8, N_GP },
	{ "out dx,al", B(0xee), 1, M64, X86_OP_OUT, 1, 8, N_GP },
	{ "out dx,ax", B(0x66, 0xef), 2, M64, X86_OP_OUT, 2, 8, N_GP },
	{ "out dx,eax", B(0xef), 1, M64, X86_OP_OUT, 4, 8, N_GP },
	{ "insb", B(0x6c), 1, M64, X86_OP_INS, 1, 8, N_GP },
	{ "rep insw", B(0x66, 0xf3, 0x6d), 3, M64, X86_OP_INS, 2, 8, N_GP },
	{ "rep insd a32", B(0x67, 0xf3, 0x6d), 3, M64, X86_OP_INS, 4, 4, N_GP },
	{ "outsb", B(0x6e), 1, M64, X86_OP_OUTS, 1, 8, N_GP },
	{ "rep outsd", B(0xf3, 0x6f), 2, M64, X86_OP_OUTS, 4, 8, N_GP },
	{ "rep outsw fs", B(0x64, 0xf3, 0x66, 0x6f), 4, M64, X86_OP_OUTS, 2, 8, N_GP },
	{ "hlt", B(0xf4), 1, M64, X86_OP_HLT, 0, 8, N_GP },
	{ "cli", B(0xfa), 1, M64, X86_OP_CLI, 0, 8, N_GP },
	{ "sti", B(0xfb), 1, M64, X86_OP_STI, 0, 8, N_GP },
	{ "pushfq", B(0x9c), 1, M64, X86_OP_PUSHF, 8, 8, N_RUNS },
	{ "pushfw", B(0x66, 0x9c), 2, M64, X86_OP_PUSHF, 2, 8, N_RUNS },
	{ "popfq", B(0x9d), 1, M64, X86_OP_POPF, 8, 8, N_NO },
	{ "iretd", B(0xcf), 1, M64, X86_OP_IRET, 4, 8, N_NO },
	{ "iretq", B(0x48, 0xcf), 2, M64, X86_OP_IRET, 8, 8, N_NO },
	{ "mov rax,cr0", B(0x0f, 0x20, 0xc0), 3, M64, X86_OP_MOV_FROM_CR, 8, 8, N_GP },
	{ "mov rbx,cr2", B(0x0f, 0x20, 0xd3), 3, M64, X86_OP_MOV_FROM_CR, 8, 8, N_GP },
	{ "mov cr3,rax", B(0x0f, 0x22, 0xd8), 3, M64, X86_OP_MOV_TO_CR, 8, 8, N_GP },
	{ "mov cr4,r9", B(0x41, 0x0f, 0x22, 0xe1), 4, M64, X86_OP_MOV_TO_CR, 8, 8, N_GP },
	{ "mov cr8,rax", B(0x44, 0x0f, 0x22, 0xc0), 4, M64, X86_OP_MOV_TO_CR, 8, 8, N_GP },
	{ "mov rax,cr8", B(0x44, 0x0f, 0x20, 0xc0), 4, M64, X86_OP_MOV_FROM_CR, 8, 8, N_GP },
	{ "mov cr0,rax mod0", B(0x0f, 0x22, 0x00), 3, M64, X86_OP_MOV_TO_CR, 8, 8, N_GP },
	{ "mov rax,dr7", B(0x0f, 0x21, 0xf8), 3, M64, X86_OP_MOV_FROM_DR, 8, 8, N_GP },
	{ "mov dr0,rcx", B(0x0f, 0x23, 0xc1), 3, M64, X86_OP_MOV_TO_DR, 8, 8, N_GP },
	{ "mov dr6,rdx", B(0x0f, 0x23, 0xf2), 3, M64, X86_OP_MOV_TO_DR, 8, 8, N_GP },
	{ "lmsw ax", B(0x0f, 0x01, 0xf0), 3, M64, X86_OP_LMSW, 2, 8, N_GP },
	{ "clts", B(0x0f, 0x06), 2, M64, X86_OP_CLTS, 0, 8, N_GP },
	{ "rdmsr", B(0x0f, 0x32), 2, M64, X86_OP_RDMSR, 0, 8, N_GP },
	{ "wrmsr", B(0x0f, 0x30), 2, M64, X86_OP_WRMSR, 0, 8, N_GP },
	{ "rdtsc", B(0x0f, 0x31), 2, M64, X86_OP_RDTSC, 0, 8, N_ANY },
	{ "rdtscp", B(0x0f, 0x01, 0xf9), 3, M64, X86_OP_RDTSCP, 0, 8, N_ANY },
	{ "cpuid", B(0x0f, 0xa2), 2, M64, X86_OP_CPUID, 0, 8, N_ANY },
	{ "xsetbv", B(0x0f, 0x01, 0xd1), 3, M64, X86_OP_XSETBV, 0, 8, N_GP },
	/* Under an outer KVM on AMD, VMMCALL at CPL3 is answered by that
	 * hypervisor (RAX = -1, no trap) and VMCALL raises #GP: length only. */
	{ "vmcall", B(0x0f, 0x01, 0xc1), 3, M64, X86_OP_VMCALL, 0, 8, N_ANY },
	{ "vmmcall", B(0x0f, 0x01, 0xd9), 3, M64, X86_OP_VMMCALL, 0, 8, N_ANY },
	{ "lgdt [rax]", B(0x0f, 0x01, 0x10), 3, M64, X86_OP_LGDT, 8, 8, N_GP },
	{ "lidt [rbx+disp32]", B(0x0f, 0x01, 0x9b, 0x00, 0x01, 0x00, 0x00), 7, M64, X86_OP_LIDT, 8,
	  8, N_GP },
	{ "ltr ax", B(0x0f, 0x00, 0xd8), 3, M64, X86_OP_LTR, 2, 8, N_GP },
	{ "ltr [rsp+8]", B(0x0f, 0x00, 0x5c, 0x24, 0x08), 5, M64, X86_OP_LTR, 2, 8, N_NO },
	{ "lldt cx", B(0x0f, 0x00, 0xd1), 3, M64, X86_OP_LLDT, 2, 8, N_GP },
	{ "invlpg [rdi]", B(0x0f, 0x01, 0x3f), 3, M64, X86_OP_INVLPG, 0, 8, N_GP },
	{ "invlpg [rip+x]", B(0x0f, 0x01, 0x3d, 0x00, 0x01, 0x00, 0x00), 7, M64, X86_OP_INVLPG, 0,
	  8, N_GP },
	{ "wbinvd", B(0x0f, 0x09), 2, M64, X86_OP_WBINVD, 0, 8, N_GP },
	{ "invd", B(0x0f, 0x08), 2, M64, X86_OP_INVD, 0, 8, N_GP },
	{ "swapgs", B(0x0f, 0x01, 0xf8), 3, M64, X86_OP_SWAPGS, 0, 8, N_GP },
	{ "syscall", B(0x0f, 0x05), 2, M64, X86_OP_SYSCALL, 0, 8, N_NO },
	{ "sysretq", B(0x48, 0x0f, 0x07), 3, M64, X86_OP_SYSRET, 8, 8, N_GP },
	{ "rep stosq", B(0xf3, 0x48, 0xab), 3, M64, X86_OP_STOS, 8, 8, N_RUNS },
	{ "rep movsb", B(0xf3, 0xa4), 2, M64, X86_OP_MOVS, 1, 8, N_RUNS },
	{ "movsw fs", B(0x64, 0x66, 0xa5), 3, M64, X86_OP_MOVS, 2, 8, N_ANY },
	{ "int3", B(0xcc), 1, M64, X86_OP_INT, 0, 8, N_RUNS },
	{ "int 0x41", B(0xcd, 0x41), 2, M64, X86_OP_INT, 0, 8, N_GP },
	{ "int1", B(0xf1), 1, M64, X86_OP_INT, 0, 8, N_ANY },
	/* MMIO forms */
	{ "mov [rbx],al", B(0x88, 0x03), 2, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov [rbx],ax", B(0x66, 0x89, 0x03), 3, M64, X86_OP_MOV, 2, 8, N_RUNS },
	{ "mov [rbx],eax", B(0x89, 0x03), 2, M64, X86_OP_MOV, 4, 8, N_RUNS },
	{ "mov [rbx],rax", B(0x48, 0x89, 0x03), 3, M64, X86_OP_MOV, 8, 8, N_RUNS },
	{ "mov r9d,[rbx+rsi*4+8]", B(0x44, 0x8b, 0x4c, 0xb3, 0x08), 5, M64, X86_OP_MOV, 4, 8,
	  N_ANY },
	{ "mov eax,[rbp+disp32]", B(0x8b, 0x85, 0x10, 0x00, 0x00, 0x00), 6, M64, X86_OP_MOV, 4, 8,
	  N_RUNS },
	{ "mov eax,[disp32] sib", B(0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00), 7, M64, X86_OP_MOV,
	  4, 8, N_ANY },
	{ "mov ecx,[rip-0x200]", B(0x8b, 0x0d, 0x00, 0xfe, 0xff, 0xff), 6, M64, X86_OP_MOV, 4, 8,
	  N_RUNS },
	{ "mov [r12],r13b", B(0x45, 0x88, 0x2c, 0x24), 4, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov ah,[rbx]", B(0x8a, 0x23), 2, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov byte [rbx+16],imm", B(0xc6, 0x43, 0x10, 0x7f), 4, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov word [rbx],imm", B(0x66, 0xc7, 0x03, 0x34, 0x12), 5, M64, X86_OP_MOV, 2, 8, N_RUNS },
	{ "mov qword [rbx],imm32", B(0x48, 0xc7, 0x03, 0xfb, 0xff, 0xff, 0xff), 7, M64, X86_OP_MOV,
	  8, 8, N_RUNS },
	{ "mov eax,[moffs64]", B(0xa1, 1, 2, 3, 4, 5, 6, 7, 8), 9, M64, X86_OP_MOV, 4, 8, N_ANY },
	{ "mov [moffs32],al a32", B(0x67, 0xa2, 1, 2, 3, 4), 6, M64, X86_OP_MOV, 1, 4, N_ANY },
	{ "movzx eax,byte [rbx]", B(0x0f, 0xb6, 0x03), 3, M64, X86_OP_MOVZX, 4, 8, N_RUNS },
	{ "movzx rax,word [rbx]", B(0x48, 0x0f, 0xb7, 0x03), 4, M64, X86_OP_MOVZX, 8, 8, N_RUNS },
	{ "movsx ecx,byte [rbx]", B(0x0f, 0xbe, 0x0b), 3, M64, X86_OP_MOVSX, 4, 8, N_RUNS },
	{ "movsx rdx,word [rbx]", B(0x48, 0x0f, 0xbf, 0x13), 4, M64, X86_OP_MOVSX, 8, 8, N_RUNS },
	{ "movsxd rax,[rbx]", B(0x48, 0x63, 0x03), 3, M64, X86_OP_MOVSX, 8, 8, N_RUNS },
	{ "add [rbx],eax", B(0x01, 0x03), 2, M64, X86_OP_ALU, 4, 8, N_RUNS },
	{ "lock add [rbx],eax", B(0xf0, 0x01, 0x03), 3, M64, X86_OP_ALU, 4, 8, N_RUNS },
	{ "cmp byte [rbx],imm8", B(0x80, 0x3b, 0x80), 3, M64, X86_OP_ALU, 1, 8, N_RUNS },
	{ "sub dword [rbx],imm32", B(0x81, 0x2b, 0x78, 0x56, 0x34, 0x12), 6, M64, X86_OP_ALU, 4, 8,
	  N_RUNS },
	{ "add word [rbx],imm16", B(0x66, 0x81, 0x03, 0x34, 0x12), 5, M64, X86_OP_ALU, 2, 8, N_RUNS },
	{ "test word [rbx],imm16", B(0x66, 0xf7, 0x03, 0x34, 0x12), 5, M64, X86_OP_TEST, 2, 8,
	  N_RUNS },
	{ "add qword [rbx],imm8", B(0x48, 0x83, 0x03, 0xff), 4, M64, X86_OP_ALU, 8, 8, N_RUNS },
	{ "test [rbx],eax", B(0x85, 0x03), 2, M64, X86_OP_TEST, 4, 8, N_RUNS },
	{ "test byte [rbx],imm8", B(0xf6, 0x03, 0x81), 3, M64, X86_OP_TEST, 1, 8, N_RUNS },
	{ "xchg [rbx],ecx", B(0x87, 0x0b), 2, M64, X86_OP_XCHG, 4, 8, N_RUNS },
	{ "inc dword [rbx]", B(0xff, 0x03), 2, M64, X86_OP_INC, 4, 8, N_RUNS },
	{ "dec byte [rbx]", B(0xfe, 0x0b), 2, M64, X86_OP_DEC, 1, 8, N_RUNS },
	{ "rex then 66 (rex ignored)", B(0x48, 0x66, 0x89, 0x03), 4, M64, X86_OP_MOV, 2, 8,
	  N_RUNS },
	{ "two rex, last wins", B(0x41, 0x48, 0x89, 0x03), 4, M64, X86_OP_MOV, 8, 8, N_RUNS },
	/* 32-bit protected mode (checked in compatibility mode) */
	{ "32: in eax,dx", B(0xed), 1, M32, X86_OP_IN, 4, 4, N_GP },
	{ "32: in al,imm8", B(0xe4, 0x60), 2, M32, X86_OP_IN, 1, 4, N_GP },
	{ "32: out dx,ax", B(0x66, 0xef), 2, M32, X86_OP_OUT, 2, 4, N_GP },
	{ "32: rep insd", B(0xf3, 0x6d), 2, M32, X86_OP_INS, 4, 4, N_GP },
	{ "32: rep outsb a16", B(0x67, 0xf3, 0x6e), 3, M32, X86_OP_OUTS, 1, 2, N_GP },
	{ "32: hlt", B(0xf4), 1, M32, X86_OP_HLT, 0, 4, N_GP },
	{ "32: mov [ebx],eax", B(0x89, 0x03), 2, M32, X86_OP_MOV, 4, 4, N_ANY },
	{ "32: mov eax,[disp32]", B(0x8b, 0x05, 0, 0, 0xe0, 0xfe), 6, M32, X86_OP_MOV, 4, 4,
	  N_ANY },
	{ "32: mov [ebx+esi*4+8],ecx", B(0x89, 0x4c, 0xb3, 0x08), 4, M32, X86_OP_MOV, 4, 4, N_ANY },
	{ "32: mov eax,[moffs32]", B(0xa1, 0x00, 0x10, 0x00, 0x00), 5, M32, X86_OP_MOV, 4, 4,
	  N_ANY },
	{ "32: mov al,[moffs16] a16", B(0x67, 0xa0, 0x00, 0x10), 4, M32, X86_OP_MOV, 1, 2, N_ANY },
	{ "32: mov ax,[bx+si+4] a16", B(0x67, 0x66, 0x8b, 0x40, 0x04), 5, M32, X86_OP_MOV, 2, 2,
	  N_ANY },
	{ "32: mov eax,[disp16] a16", B(0x67, 0x8b, 0x06, 0x34, 0x12), 5, M32, X86_OP_MOV, 4, 2,
	  N_ANY },
	{ "32: mov ax,[bp+disp16] a16", B(0x67, 0x66, 0x8b, 0x86, 0x34, 0x12), 6, M32, X86_OP_MOV,
	  2, 2, N_ANY },
	{ "32: movzx eax,byte [ebx]", B(0x0f, 0xb6, 0x03), 3, M32, X86_OP_MOVZX, 4, 4, N_ANY },
	{ "32: cmp dword [ebx],imm32", B(0x81, 0x3b, 1, 2, 3, 4), 6, M32, X86_OP_ALU, 4, 4,
	  N_ANY },
	{ "32: add word [ebx],imm16", B(0x66, 0x81, 0x03, 1, 2), 5, M32, X86_OP_ALU, 2, 4, N_ANY },
	{ "32: mov eax,cr0", B(0x0f, 0x20, 0xc0), 3, M32, X86_OP_MOV_FROM_CR, 4, 4, N_GP },
	{ "32: mov cr3,eax", B(0x0f, 0x22, 0xd8), 3, M32, X86_OP_MOV_TO_CR, 4, 4, N_GP },
	{ "32: lgdt [eax]", B(0x0f, 0x01, 0x10), 3, M32, X86_OP_LGDT, 4, 4, N_GP },
	{ "32: lidt [disp32] o16", B(0x66, 0x0f, 0x01, 0x1d, 0, 0x10, 0, 0), 8, M32, X86_OP_LIDT, 2,
	  4, N_GP },
	{ "32: wrmsr", B(0x0f, 0x30), 2, M32, X86_OP_WRMSR, 0, 4, N_GP },
	{ "32: vmcall", B(0x0f, 0x01, 0xc1), 3, M32, X86_OP_VMCALL, 0, 4, N_ANY },
	{ "32: iretd", B(0xcf), 1, M32, X86_OP_IRET, 4, 4, N_NO },
	{ "32: into (OF clear)", B(0xce), 1, M32, X86_OP_INT, 0, 4, N_RUNS },
	{ "into is #UD in 64-bit", B(0xce), 0, M64, X86_OP_NONE, 0, 0, N_NO },
	{ "32: dec eax is not rex", B(0x48), 0, M32, X86_OP_NONE, 0, 0, N_NO },
	{ "32: swapgs #UD", B(0x0f, 0x01, 0xf8), 0, M32, X86_OP_NONE, 0, 0, N_NO },
	/* Segment loads: the host's GDT decides natively, so only the far
	 * JMP to selector 0x10 (the host's kernel data segment) has a known
	 * outcome at CPL3, #GP. */
	{ "mov ds,ax", B(0x8e, 0xd8), 2, M64, X86_OP_MOV_SREG, 2, 8, N_NO },
	{ "32: mov ss,[eax+8]", B(0x8e, 0x50, 0x08), 3, M32, X86_OP_MOV_SREG, 2, 4, N_NO },
	{ "32: mov gs,ax", B(0x8e, 0xe8), 2, M32, X86_OP_MOV_SREG, 2, 4, N_NO },
	{ "mov cs,ax", B(0x8e, 0xc8), 0, M64, 0, 0, 0, N_NO },
	{ "mov sreg6,ax", B(0x8e, 0xf0), 0, M32, 0, 0, 0, N_NO },
	{ "32: jmp far ptr16:32", B(0xea, 0x00, 0x10, 0x40, 0x00, 0x10, 0x00), 7, M32,
	  X86_OP_JMP_FAR, 4, 4, N_GP },
	{ "32: jmp far ptr16:16", B(0x66, 0xea, 0x00, 0x10, 0x10, 0x00), 6, M32, X86_OP_JMP_FAR,
	  2, 4, N_NO },
	{ "jmp far in 64-bit mode", B(0xea, 0, 0, 0, 0, 0x10, 0), 0, M64, 0, 0, 0, N_NO },
	{ "16: mov ax,[bp+di]", B(0x8b, 0x03), 2, M16, X86_OP_MOV, 2, 2, N_NO },
	{ "16: mov ax,[disp16]", B(0x8b, 0x06, 0x34, 0x12), 4, M16, X86_OP_MOV, 2, 2, N_NO },
	{ "16: out dx,eax 66", B(0x66, 0xef), 2, M16, X86_OP_OUT, 4, 2, N_NO },
	/* What SMM code runs in the emulator (smm.h): MOV to a register of an
	 * immediate, the near JMP, RSM (#UD outside SMM, natively too). */
	{ "mov al,imm8", B(0xb0, 0x42), 2, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov bh,imm8", B(0xb7, 0x42), 2, M64, X86_OP_MOV, 1, 8, N_RUNS },
	{ "mov r9d,imm32", B(0x41, 0xb9, 1, 2, 3, 4), 6, M64, X86_OP_MOV, 4, 8, N_RUNS },
	{ "mov cx,imm16", B(0x66, 0xb9, 1, 2), 4, M64, X86_OP_MOV, 2, 8, N_RUNS },
	{ "movabs rax,imm64", B(0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8), 10, M64, X86_OP_MOV, 8, 8,
	  N_RUNS },
	{ "32: mov esi,imm32", B(0xbe, 1, 2, 3, 4), 5, M32, X86_OP_MOV, 4, 4, N_RUNS },
	{ "16: mov ax,imm16", B(0xb8, 0x34, 0x12), 3, M16, X86_OP_MOV, 2, 2, N_NO },
	{ "jmp rel8", B(0xeb, 0x00), 2, M64, X86_OP_JMP_NEAR, 8, 8, N_RUNS },
	{ "jmp rel32", B(0xe9, 0, 0, 0, 0), 5, M64, X86_OP_JMP_NEAR, 8, 8, N_RUNS },
	{ "32: jmp rel32", B(0xe9, 0, 0, 0, 0), 5, M32, X86_OP_JMP_NEAR, 4, 4, N_RUNS },
	{ "16: jmp rel16", B(0xe9, 0xfd, 0xff), 3, M16, X86_OP_JMP_NEAR, 2, 2, N_NO },
	{ "rsm", B(0x0f, 0xaa), 2, M64, X86_OP_RSM, 0, 8, N_UD },
};

TEST(decode_table)
{
	unsigned native_checked = 0;

	area_init();
	area32_init();
	traps_install();
	for (size_t i = 0; i < sizeof(drows) / sizeof(drows[0]); i++) {
		const struct drow *r = &drows[i];
		struct x86_insn in;
		int rc = x86_decode(r->bytes, 15, r->mode, &in);

		if (!r->len) {
			EXPECT_NE(rc, 0);
			continue;
		}
		ASSERT_MSG(rc == 0, "%s: decode %d", r->name, rc);
		EXPECT_MSG(in.len == r->len, "%s: len %u want %u", r->name, in.len, r->len);
		EXPECT_MSG(in.op == r->op, "%s: op %s want %s", r->name, x86_op_name(in.op),
			   x86_op_name(r->op));
		if (r->opsize)
			EXPECT_MSG(in.opsize == r->opsize, "%s: opsize %u want %u", r->name,
				   in.opsize, r->opsize);
		EXPECT_MSG(in.adsize == r->adsize, "%s: adsize %u", r->name, in.adsize);
		/* Fewer bytes than the instruction: SHORT, never a wrong length. */
		EXPECT_MSG(x86_decode(r->bytes, r->len - 1u, r->mode, &in) == X86_DECODE_SHORT,
			   "%s: truncated", r->name);
		if (r->native == N_NO || r->mode == M16)
			continue;
		enum outcome (*run)(const uint8_t *, unsigned) =
			r->mode == M64 ? run_at_boundary : run_at_boundary32;
		enum outcome full = run(r->bytes, r->len);
		enum outcome want = r->native == N_GP ? O_GP : r->native == N_UD ? O_UD : O_RAN;

		if (r->op == X86_OP_VMCALL || r->op == X86_OP_VMMCALL)
			DIAG("%s at CPL3 on this host: %s", r->name, outcome_name(full));
		if (r->native == N_ANY)
			EXPECT_MSG(full != O_FETCH, "%s: CPU fetched past %u bytes", r->name, r->len);
		else
			EXPECT_MSG(full == want, "%s: CPU says %s, want %s", r->name,
				   outcome_name(full), outcome_name(want));
		if (r->len > 1) {
			enum outcome part = run(r->bytes, r->len - 1u);

			EXPECT_MSG(part == O_FETCH, "%s: %u bytes gave %s: CPU length shorter",
				   r->name, r->len - 1u, outcome_name(part));
		}
		native_checked++;
	}
	DIAG("%zu decode rows, %u lengths checked on the CPU",
	     sizeof(drows) / sizeof(drows[0]), native_checked);
}

TEST(decode_operands)
{
	struct x86_insn in;
	static const uint8_t sib[] = { 0x44, 0x8b, 0x4c, 0xb3, 0x08 };	/* mov r9d,[rbx+rsi*4+8] */
	static const uint8_t rip[] = { 0x8b, 0x0d, 0x00, 0xfe, 0xff, 0xff };
	static const uint8_t r12[] = { 0x45, 0x88, 0x2c, 0x24 };	/* mov [r12],r13b */
	static const uint8_t bpdi[] = { 0x8b, 0x03 };			/* 16: [bp+di] */
	static const uint8_t r13[] = { 0x41, 0x8b, 0x45, 0x00 };	/* mov eax,[r13+0] */
	static const uint8_t ah[] = { 0x8a, 0x23 };
	static const uint8_t spl[] = { 0x40, 0x88, 0x23 };		/* mov [rbx],spl */
	static const uint8_t fs[] = { 0x64, 0x8b, 0x03 };
	static const uint8_t ds64[] = { 0x3e, 0x8b, 0x04, 0x24 };	/* ds ignored; ss */
	static const uint8_t outimm[] = { 0xe6, 0x80 };
	static const uint8_t lock_mov[] = { 0xf0, 0x89, 0x03 };
	static const uint8_t lock_reg[] = { 0xf0, 0x01, 0xc3 };
	static const uint8_t cr5[] = { 0x0f, 0x20, 0xe8 };
	static const uint8_t dr8[] = { 0x44, 0x0f, 0x21, 0xc0 };
	static const uint8_t long16[] = { 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
					  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x89, 0x03 };

	ASSERT_EQ(x86_decode(sib, sizeof(sib), M64, &in), 0);
	EXPECT_EQ(in.ea.base, X86_RBX);
	EXPECT_EQ(in.ea.index, X86_RSI);
	EXPECT_EQ(in.ea.scale, 4);
	EXPECT_EQ(in.ea.disp, 8);
	EXPECT_EQ(in.dst.reg, X86_R9);
	ASSERT_EQ(x86_decode(rip, sizeof(rip), M64, &in), 0);
	EXPECT_TRUE(in.ea.rip_rel);
	EXPECT_EQ(in.ea.disp, -0x200);
	ASSERT_EQ(x86_decode(r12, sizeof(r12), M64, &in), 0);
	EXPECT_EQ(in.ea.base, X86_R12);
	EXPECT_EQ(in.ea.index, -1);
	EXPECT_EQ(in.src.reg, X86_R13);
	EXPECT_FALSE(in.src.high8);
	ASSERT_EQ(x86_decode(bpdi, sizeof(bpdi), M16, &in), 0);
	EXPECT_EQ(in.ea.base, X86_RBP);
	EXPECT_EQ(in.ea.index, X86_RDI);
	EXPECT_EQ(in.ea.seg, X86_SEG_SS);
	ASSERT_EQ(x86_decode(r13, sizeof(r13), M64, &in), 0);
	EXPECT_EQ(in.ea.base, X86_R13);
	EXPECT_FALSE(in.ea.rip_rel);
	EXPECT_EQ(in.len, 4);
	ASSERT_EQ(x86_decode(ah, sizeof(ah), M64, &in), 0);
	EXPECT_TRUE(in.dst.high8);
	EXPECT_EQ(in.dst.reg, X86_RAX);
	ASSERT_EQ(x86_decode(spl, sizeof(spl), M64, &in), 0);
	EXPECT_FALSE(in.src.high8);
	EXPECT_EQ(in.src.reg, X86_RSP);
	ASSERT_EQ(x86_decode(fs, sizeof(fs), M64, &in), 0);
	EXPECT_EQ(in.ea.seg, X86_SEG_FS);
	ASSERT_EQ(x86_decode(ds64, sizeof(ds64), M64, &in), 0);
	EXPECT_EQ(in.ea.seg, X86_SEG_SS);
	ASSERT_EQ(x86_decode(outimm, sizeof(outimm), M64, &in), 0);
	EXPECT_EQ(in.imm, 0x80);
	EXPECT_EQ(x86_decode(lock_mov, sizeof(lock_mov), M64, &in), X86_DECODE_UD);
	EXPECT_EQ(x86_decode(lock_reg, sizeof(lock_reg), M64, &in), X86_DECODE_UD);
	EXPECT_EQ(x86_decode(cr5, sizeof(cr5), M64, &in), X86_DECODE_UD);
	EXPECT_EQ(x86_decode(dr8, sizeof(dr8), M64, &in), X86_DECODE_UD);
	EXPECT_EQ(x86_decode(long16, sizeof(long16), M64, &in), X86_DECODE_GP);
	EXPECT_EQ(x86_decode(long16 + 1, sizeof(long16) - 1, M64, &in), 0);
}

/* The CPU agrees on the three invalid forms above. */
TEST(decode_invalid_on_cpu)
{
	static const uint8_t lock_mov[] = { 0xf0, 0x89, 0x03 };
	static const uint8_t cr5[] = { 0x0f, 0x20, 0xe8 };
	static const uint8_t long16[] = { 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66,
					  0x66, 0x66, 0x66, 0x66, 0x66, 0x66, 0x89, 0x03 };

	area_init();
	traps_install();
	EXPECT_EQ(run_at_boundary(lock_mov, sizeof(lock_mov)), O_UD);
	/* At CPL3 #GP wins over #UD for a privileged opcode; only the length shows. */
	EXPECT_NE(run_at_boundary(cr5, sizeof(cr5)), O_FETCH);
	EXPECT_EQ(run_at_boundary(long16, sizeof(long16)), O_GP);
}

/* The 32-bit runs really execute as 32-bit code: 48 is DEC EAX there and
 * a REX prefix (which needs an opcode after it) in 64-bit mode. */
TEST(compat_mode_is_32bit)
{
	static const uint8_t dec_eax[] = { 0x48 };

	area_init();
	area32_init();
	traps_install();
	EXPECT_EQ(run_at_boundary32(dec_eax, 1), O_RAN);
	EXPECT_EQ(run_at_boundary(dec_eax, 1), O_FETCH);
}

/* ---- emulator harness ------------------------------------------------------ */

/* The guest memory of the emulator cases: a flat window onto test memory. */
struct tmem {
	uint8_t *base;		/* gva base */
	uint8_t *shadow;	/* what the emulator reads and writes */
	size_t size;
	bool mmio;		/* the whole window is MMIO */
	uint64_t fault_gva;	/* an access here raises #PF */
	uint64_t msr_val[4];
	int msr_mode;		/* X86_MSR_* answer for unknown MSRs */
	uint64_t last_wrmsr_index, last_wrmsr_val;
};

static int tmem_access(struct tmem *m, uint64_t gva, void *buf, bool write, unsigned len,
		       uint64_t *gpa, struct x86_exception *ex)
{
	if (m->fault_gva && gva <= m->fault_gva && m->fault_gva < gva + len) {
		*ex = (struct x86_exception){ .vector = X86_PF, .has_error_code = true,
					      .error_code = write ? 2 : 0, .cr2 = m->fault_gva };
		return X86_MEM_FAULT;
	}
	if (gva < (uint64_t)m->base || gva + len > (uint64_t)m->base + m->size) {
		*ex = (struct x86_exception){ .vector = X86_PF, .has_error_code = true,
					      .error_code = write ? 2 : 0, .cr2 = gva };
		return X86_MEM_FAULT;
	}
	if (m->mmio) {
		*gpa = 0xfe000000 + (gva - (uint64_t)m->base);
		return X86_MEM_MMIO;
	}
	if (write)
		memcpy(m->shadow + (gva - (uint64_t)m->base), buf, len);
	else
		memcpy(buf, m->shadow + (gva - (uint64_t)m->base), len);
	return X86_MEM_OK;
}

static int t_read(void *ctx, uint64_t gva, void *buf, unsigned len, uint64_t *gpa,
		  struct x86_exception *ex)
{
	return tmem_access(ctx, gva, buf, false, len, gpa, ex);
}

static int t_write(void *ctx, uint64_t gva, const void *buf, unsigned len, uint64_t *gpa,
		   struct x86_exception *ex)
{
	return tmem_access(ctx, gva, (void *)buf, true, len, gpa, ex);
}

static int t_rdmsr(void *ctx, uint32_t index, uint64_t *val)
{
	struct tmem *m = ctx;

	switch (index) {
	case X86_MSR_STAR: *val = m->msr_val[0]; return 0;
	case X86_MSR_LSTAR: *val = m->msr_val[1]; return 0;
	case X86_MSR_FMASK: *val = m->msr_val[2]; return 0;
	case X86_MSR_TSC_AUX: *val = m->msr_val[3]; return 0;
	case 0x10: *val = 0x1234567890ull; return 0;
	}
	return m->msr_mode;
}

static int t_wrmsr(void *ctx, uint32_t index, uint64_t val)
{
	struct tmem *m = ctx;

	if (index == 0x10 || m->msr_mode == X86_MSR_OK) {
		m->last_wrmsr_index = index;
		m->last_wrmsr_val = val;
		return 0;
	}
	return m->msr_mode;
}

static void t_cpuid(void *ctx, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	(void)ctx;
	out[0] = 0x80000000u | leaf;
	out[1] = sub;
	out[2] = 0x12345678;
	out[3] = 0xffffffff;
}

static uint64_t t_rdtsc(void *ctx)
{
	(void)ctx;
	return 0x1122334455667788ull;
}

static const struct x86_emu_ops tops = { .read = t_read, .write = t_write, .rdmsr = t_rdmsr,
					 .wrmsr = t_wrmsr, .cpuid = t_cpuid, .rdtsc = t_rdtsc };
static const struct x86_cpu_model tmodel = {
	.cr4_reserved = ~0x3727ffull & ~(1ull << 12), .xcr0_supported = 0x7,
	.maxphyaddr = 48, .dr6_fixed = 0xffff0ff0,
};
static uint8_t pio_page[PAGE];

static void regs64(struct x86_regs *r)
{
	memset(r, 0, sizeof(*r));
	r->cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_ET | X86_CR0_NE;
	r->cr4 = X86_CR4_PAE | X86_CR4_OSXSAVE;
	r->efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
	r->seg[X86_SEG_CS] = (struct x86_segment){ .selector = 8, .l = true, .present = true,
						   .s = true, .type = 0xb };
	r->seg[X86_SEG_SS] = (struct x86_segment){ .selector = 0x10, .present = true, .s = true,
						   .type = 3, .db = true };
	r->rflags = 0x2;
	r->xcr0 = 1;
}

/* Runs an instruction to its end, answering exits like a VMM whose devices
 * are the bytes of @m->shadow (MMIO) and @in_data (port input). */
static int emulate_all(struct tmem *m, struct x86_regs *r, const uint8_t *bytes, unsigned n,
		       struct x86_emu_result *res, unsigned *exits)
{
	struct x86_emu emu;
	struct x86_insn in;
	int st;

	*exits = 0;
	if (x86_decode(bytes, n, (enum x86_mode)x86_cpu_mode(r), &in))
		return -1;
	x86_emu_init(&emu, &tops, m, &tmodel, pio_page);
	st = x86_emulate(&emu, r, &in, res);
	while (st == X86_EMU_EXIT_MMIO && *exits < 8) {
		uint8_t *p = m->shadow + (res->mmio.gpa - 0xfe000000);

		(*exits)++;
		if (res->mmio.is_write)
			memcpy(p, res->mmio.data, res->mmio.len);
		else
			memcpy(res->mmio.data, p, res->mmio.len);
		st = x86_emu_complete(&emu, r, res);
	}
	return st;
}

/* ---- emulator against the CPU -------------------------------------------- */

struct erow {
	const char *name;
	uint8_t bytes[15];
	uint8_t len;
	uint64_t flags_undef;	/* flags the SDM leaves undefined */
	int8_t abs_at;		/* offset of an 8-byte absolute address to patch, -1 none,
				 * -2: a 4-byte one at offset 2 */
	bool string;		/* RDI/RSI into the data, RCX = 3 */
};

#define LOGIC_UNDEF X86_RFLAGS_AF
static const struct erow erows[] = {
	{ "mov [rbx],al", B(0x88, 0x03), 2, 0, -1 },
	{ "mov [rbx],ax", B(0x66, 0x89, 0x03), 3, 0, -1 },
	{ "mov [rbx],eax", B(0x89, 0x03), 2, 0, -1 },
	{ "mov [rbx],rax", B(0x48, 0x89, 0x03), 3, 0, -1 },
	{ "mov [rbx+1],ah", B(0x88, 0x63, 0x01), 3, 0, -1 },
	{ "mov [r12],r13b", B(0x45, 0x88, 0x2c, 0x24), 4, 0, -1 },
	{ "mov al,[rbx]", B(0x8a, 0x03), 2, 0, -1 },
	{ "mov ah,[rbx+3]", B(0x8a, 0x63, 0x03), 3, 0, -1 },
	{ "mov ax,[rbx]", B(0x66, 0x8b, 0x03), 3, 0, -1 },
	{ "mov eax,[rbx] (clears upper)", B(0x8b, 0x03), 2, 0, -1 },
	{ "mov rax,[rbx]", B(0x48, 0x8b, 0x03), 3, 0, -1 },
	{ "mov r9d,[rbx+rsi*4+8]", B(0x44, 0x8b, 0x4c, 0xb3, 0x08), 5, 0, -1 },
	{ "mov r15,[rbx+rsi*8-16]", B(0x4c, 0x8b, 0x7c, 0xf3, 0xf0), 5, 0, -1 },
	{ "mov ecx,[rip+0x780]", B(0x8b, 0x0d, 0x80, 0x07, 0x00, 0x00), 6, 0, -1 },
	{ "mov [rip+0x788],rdx", B(0x48, 0x89, 0x15, 0x88, 0x07, 0x00, 0x00), 7, 0, -1 },
	{ "mov eax,[ebx] a32", B(0x67, 0x8b, 0x03), 3, 0, -1 },
	{ "add [ebx+esi*4+8],ecx a32", B(0x67, 0x01, 0x4c, 0xb3, 0x08), 5, 0, -1 },
	{ "mov ecx,[eip+0x780] a32", B(0x67, 0x8b, 0x0d, 0x80, 0x07, 0x00, 0x00), 7, 0, -1 },
	{ "mov [moffs32],eax a32", B(0x67, 0xa3, 0, 0, 0, 0), 6, 0, -2 },
	{ "mov byte [rbx+16],imm", B(0xc6, 0x43, 0x10, 0x7f), 4, 0, -1 },
	{ "mov word [rbx],imm", B(0x66, 0xc7, 0x03, 0x34, 0x92), 5, 0, -1 },
	{ "mov dword [rbx],imm", B(0xc7, 0x03, 0x01, 0x00, 0x00, 0x80), 6, 0, -1 },
	{ "mov qword [rbx],imm32", B(0x48, 0xc7, 0x03, 0xfb, 0xff, 0xff, 0xff), 7, 0, -1 },
	{ "mov eax,[moffs64]", B(0xa1, 0, 0, 0, 0, 0, 0, 0, 0), 9, 0, 1 },
	{ "mov [moffs64],rax", B(0x48, 0xa3, 0, 0, 0, 0, 0, 0, 0, 0), 10, 0, 2 },
	{ "mov [moffs64],al", B(0xa2, 0, 0, 0, 0, 0, 0, 0, 0), 9, 0, 1 },
	{ "movzx eax,byte [rbx]", B(0x0f, 0xb6, 0x03), 3, 0, -1 },
	{ "movzx ax,byte [rbx]", B(0x66, 0x0f, 0xb6, 0x03), 4, 0, -1 },
	{ "movzx rax,word [rbx]", B(0x48, 0x0f, 0xb7, 0x03), 4, 0, -1 },
	{ "movsx ecx,byte [rbx]", B(0x0f, 0xbe, 0x0b), 3, 0, -1 },
	{ "movsx rdx,word [rbx]", B(0x48, 0x0f, 0xbf, 0x13), 4, 0, -1 },
	{ "movsx rdx,byte [rbx]", B(0x48, 0x0f, 0xbe, 0x13), 4, 0, -1 },
	{ "movsx cx,byte [rbx]", B(0x66, 0x0f, 0xbe, 0x0b), 4, 0, -1 },
	{ "movsxd rax,[rbx]", B(0x48, 0x63, 0x03), 3, 0, -1 },
	{ "add [rbx],eax", B(0x01, 0x03), 2, 0, -1 },
	{ "add eax,[rbx]", B(0x03, 0x03), 2, 0, -1 },
	{ "add [rbx],ax", B(0x66, 0x01, 0x03), 3, 0, -1 },
	{ "add [rbx],rax", B(0x48, 0x01, 0x03), 3, 0, -1 },
	{ "add byte [rbx],dl", B(0x00, 0x13), 2, 0, -1 },
	{ "adc [rbx],ecx", B(0x11, 0x0b), 2, 0, -1 },
	{ "adc al,[rbx]", B(0x12, 0x03), 2, 0, -1 },
	{ "sbb [rbx],rdx", B(0x48, 0x19, 0x13), 3, 0, -1 },
	{ "sub [rbx],cl", B(0x28, 0x0b), 2, 0, -1 },
	{ "sub rax,[rbx]", B(0x48, 0x2b, 0x03), 3, 0, -1 },
	{ "and [rbx],edx", B(0x21, 0x13), 2, LOGIC_UNDEF, -1 },
	{ "or [rbx],rax", B(0x48, 0x09, 0x03), 3, LOGIC_UNDEF, -1 },
	{ "xor ax,[rbx]", B(0x66, 0x33, 0x03), 3, LOGIC_UNDEF, -1 },
	{ "cmp [rbx],eax", B(0x39, 0x03), 2, 0, -1 },
	{ "cmp rcx,[rbx]", B(0x48, 0x3b, 0x0b), 3, 0, -1 },
	{ "cmp byte [rbx],0x80", B(0x80, 0x3b, 0x80), 3, 0, -1 },
	{ "add qword [rbx],-1", B(0x48, 0x83, 0x03, 0xff), 4, 0, -1 },
	{ "sub dword [rbx],imm32", B(0x81, 0x2b, 0x78, 0x56, 0x34, 0x12), 6, 0, -1 },
	{ "add word [rbx],imm16", B(0x66, 0x81, 0x03, 0x34, 0x92), 5, 0, -1 },
	{ "cmp qword [rbx],imm32", B(0x48, 0x81, 0x3b, 0x01, 0x00, 0x00, 0x80), 7, 0, -1 },
	{ "and qword [rbx],imm32", B(0x48, 0x81, 0x23, 0x00, 0xff, 0x00, 0x80), 7, LOGIC_UNDEF,
	  -1 },
	{ "or word [rbx],imm8", B(0x66, 0x83, 0x0b, 0x81), 4, LOGIC_UNDEF, -1 },
	{ "xor byte [rbx],imm8", B(0x80, 0x33, 0xff), 3, LOGIC_UNDEF, -1 },
	{ "adc dword [rbx],imm8", B(0x83, 0x13, 0x01), 3, 0, -1 },
	{ "sbb byte [rbx],imm8", B(0x80, 0x1b, 0x01), 3, 0, -1 },
	{ "test [rbx],eax", B(0x85, 0x03), 2, LOGIC_UNDEF, -1 },
	{ "test byte [rbx],0x81", B(0xf6, 0x03, 0x81), 3, LOGIC_UNDEF, -1 },
	{ "test qword [rbx],imm32", B(0x48, 0xf7, 0x03, 0x00, 0x00, 0x00, 0x80), 7, LOGIC_UNDEF,
	  -1 },
	{ "xchg [rbx],ecx", B(0x87, 0x0b), 2, 0, -1 },
	{ "xchg [rbx],dh", B(0x86, 0x33), 2, 0, -1 },
	{ "lock add [rbx],eax", B(0xf0, 0x01, 0x03), 3, 0, -1 },
	{ "lock sub [rbx],rax", B(0xf0, 0x48, 0x29, 0x03), 4, 0, -1 },
	{ "lock or byte [rbx],1", B(0xf0, 0x80, 0x0b, 0x01), 4, LOGIC_UNDEF, -1 },
	{ "inc dword [rbx]", B(0xff, 0x03), 2, 0, -1 },
	{ "dec byte [rbx]", B(0xfe, 0x0b), 2, 0, -1 },
	{ "lock dec qword [rbx]", B(0xf0, 0x48, 0xff, 0x0b), 4, 0, -1 },
	{ "stosb", B(0xaa), 1, 0, -1, true },
	{ "stosw", B(0x66, 0xab), 2, 0, -1, true },
	{ "rep stosb", B(0xf3, 0xaa), 2, 0, -1, true },
	{ "rep stosd", B(0xf3, 0xab), 2, 0, -1, true },
	{ "rep stosq", B(0xf3, 0x48, 0xab), 3, 0, -1, true },
	{ "movsb", B(0xa4), 1, 0, -1, true },
	{ "rep movsq", B(0xf3, 0x48, 0xa5), 3, 0, -1, true },
	{ "rep movsw", B(0x66, 0xf3, 0xa5), 3, 0, -1, true },
	{ "rep movsd a32", B(0x67, 0xf3, 0xa5), 3, 0, -1, true },
	{ "add ecx,eax (registers)", B(0x01, 0xc1), 2, 0, -1 },
	{ "sub eax,imm32 (registers)", B(0x2d, 0x01, 0x00, 0x00, 0x80), 5, 0, -1 },
	{ "test al,imm8 (registers)", B(0xa8, 0x80), 2, LOGIC_UNDEF, -1 },
};

/* Operand values for each row: memory word, RAX, RCX, RDX, carry. */
static const struct { uint64_t mem, rax, rcx, rdx; bool cf; } evals[] = {
	{ 0x0123456789abcdefull, 0xfedcba9876543210ull, 0x1111111111111111ull, 0x8000000000000000ull, false },
	{ 0xffffffffffffffffull, 1, 0xffffffffffffffffull, 0x7f, true },
	{ 0x0000000000000080ull, 0x80, 0x7f, 0xffffffff80000000ull, false },
	{ 0x000000007fffffffull, 1, 0x80000000ull, 0x00007fff, true },
	{ 0, 0, 0, 0, false },
	{ 0x8000000000000000ull, 0x8000000000000000ull, 0x8000, 0x80, true },
};

static void native_load(const uint8_t *bytes, unsigned n)
{
	size_t pro = (size_t)(gm_tramp_pro_end - gm_tramp_pro);
	size_t epi = (size_t)(gm_tramp_epi_end - gm_tramp_epi);

	memcpy(area, gm_tramp_pro, pro);
	memcpy(area + pro, bytes, n);
	memcpy(area + pro + n, gm_tramp_epi, epi);
	__builtin___clear_cache((char *)area, (char *)area + PAGE);
}

static void native_exec(struct nstate *st)
{
	trap_sig = 0;
	if (sigsetjmp(trap_jmp, 1) == 0)
		((void (*)(struct nstate *))area)(st);
}

static unsigned host_checked_runs;

/* The data lives in the upper half of the code page so RIP-relative forms
 * reach it; RBX points there, RSI=2 indexes, R12 too. */
static void check_erow(const struct erow *r, unsigned v, bool mmio)
{
	size_t pro = (size_t)(gm_tramp_pro_end - gm_tramp_pro);
	uint8_t *data = area + 2048;
	uint8_t bytes[15], before[PAGE], shadow[PAGE];
	struct nstate st = { 0 };
	struct x86_regs regs;
	struct x86_emu_result res;
	struct tmem m = { .base = area, .shadow = shadow, .size = PAGE, .mmio = mmio };
	unsigned exits;
	int rc;

	memcpy(bytes, r->bytes, r->len);
	if (r->abs_at >= 0) {
		uint64_t a = (uint64_t)(data + 8);

		memcpy(bytes + r->abs_at, &a, 8);
	} else if (r->abs_at == -2) { /* a 32-bit moffs at offset 2 */
		uint32_t a = (uint32_t)(uintptr_t)(data + 8);

		memcpy(bytes + 2, &a, 4);
	}
	for (unsigned i = 0; i < 256; i++)
		data[i] = (uint8_t)(0x5a ^ i * 37);
	memcpy(data, &evals[v].mem, 8);
	memcpy(data + 8, &evals[v].mem, 8);
	memcpy(data + 16, &evals[v].rcx, 8);
	for (int i = 0; i < 16; i++)
		st.gpr[i] = 0x0101010101010101ull * (uint64_t)(i + 1);
	st.gpr[X86_RAX] = evals[v].rax;
	st.gpr[X86_RCX] = evals[v].rcx;
	st.gpr[X86_RDX] = evals[v].rdx;
	st.gpr[X86_RBX] = st.gpr[X86_R12] = (uint64_t)data;
	st.gpr[X86_RSI] = 2;
	if (r->string) {
		st.gpr[X86_RDI] = (uint64_t)(data + 128);
		st.gpr[X86_RSI] = (uint64_t)(data + 200);
		st.gpr[X86_RCX] = 3;
	}
	if (r->bytes[0] == 0x67 && !r->string) { /* 32-bit addressing: upper halves ignored */
		st.gpr[X86_RBX] |= 0xdead000100000000ull;
		st.gpr[X86_RSI] |= 0x0000000500000000ull;
	}
	st.rflags = 0x202 | (evals[v].cf ? X86_RFLAGS_CF : 0);
	if (r->string && evals[v].cf)
		st.rflags |= X86_RFLAGS_DF; /* walk down */

	regs64(&regs);
	memcpy(regs.gpr, st.gpr, sizeof(st.gpr));
	regs.gpr[X86_RSP] = 0;
	regs.rflags = st.rflags;
	regs.rip = (uint64_t)(area + pro);

	native_load(bytes, r->len);
	memcpy(shadow, area, PAGE); /* the emulator's memory: the page before the run */
	native_exec(&st);
	ASSERT_MSG(trap_sig == 0, "%s: native run trapped with signal %d", r->name, trap_sig);
	memcpy(before, area, PAGE);

	rc = emulate_all(&m, &regs, bytes, r->len, &res, &exits);
	/* REP string forms stay on the instruction until rCX runs out. */
	for (int k = 0; k < 16 && rc == X86_EMU_DONE && regs.rip == (uint64_t)(area + pro); k++)
		rc = emulate_all(&m, &regs, bytes, r->len, &res, &exits);
	ASSERT_MSG(rc == X86_EMU_DONE, "%s (values %u, %s): status %d", r->name, v,
		   mmio ? "mmio" : "ram", rc);
	for (int i = 0; i < 16; i++) {
		if (i == X86_RSP)
			continue;
		EXPECT_MSG(regs.gpr[i] == st.gpr[i], "%s (values %u, %s): r%d 0x%llx, CPU 0x%llx",
			   r->name, v, mmio ? "mmio" : "ram", i, (unsigned long long)regs.gpr[i],
			   (unsigned long long)st.gpr[i]);
	}
	uint64_t fm = (X86_RFLAGS_ARITH | X86_RFLAGS_IF | X86_RFLAGS_DF) & ~r->flags_undef;
	EXPECT_MSG((regs.rflags & fm) == (st.rflags & fm), "%s (values %u, %s): flags 0x%llx, CPU 0x%llx",
		   r->name, v, mmio ? "mmio" : "ram", (unsigned long long)(regs.rflags & fm),
		   (unsigned long long)(st.rflags & fm));
	EXPECT_MSG(regs.rip == (uint64_t)(area + pro + r->len), "%s: rip", r->name);
	EXPECT_MSG(memcmp(shadow + 1024, before + 1024, PAGE - 1024) == 0,
		   "%s (values %u, %s): memory",
		   r->name, v, mmio ? "mmio" : "ram");
	host_checked_runs++;
}

TEST(emulate_vs_cpu)
{
	unsigned rows = sizeof(erows) / sizeof(erows[0]);

	area_init();
	traps_install();
	/* The page must be mapped back fully for RIP-relative rows; the guard
	 * page stays unmapped. */
	for (unsigned i = 0; i < rows; i++)
		for (unsigned v = 0; v < sizeof(evals) / sizeof(evals[0]); v++) {
			check_erow(&erows[i], v, false);
			check_erow(&erows[i], v, true);
		}
	DIAG("%u forms, %u emulator runs compared with the CPU", rows, host_checked_runs);
}

/* ---- prefix fuzzing of lengths against the CPU ------------------------------ */

static void fuzz(enum x86_mode mode)
{
	/* Load-only forms: whatever address the random bytes make, nothing is
	 * written. */
	/* opcode bytes, and the ModRM reg field to force (0xff: any) */
	static const struct { uint8_t op[2], n, reg; } ops[] = {
		{ { 0x8b }, 1, 0xff }, { { 0x8a }, 1, 0xff }, { { 0x3b }, 1, 0xff },
		{ { 0x39 }, 1, 0xff }, { { 0x85 }, 1, 0xff }, { { 0x84 }, 1, 0xff },
		{ { 0x03 }, 1, 0xff }, { { 0x2b }, 1, 0xff }, { { 0x63 }, 1, 0xff },
		{ { 0x80 }, 1, 7 }, { { 0x81 }, 1, 7 }, { { 0x83 }, 1, 7 },	/* cmp r/m,imm */
		{ { 0xf6 }, 1, 0 }, { { 0xf7 }, 1, 0 },				/* test r/m,imm */
		{ { 0x3c }, 1, 0xfe }, { { 0x3d }, 1, 0xfe }, { { 0xa8 }, 1, 0xfe },
		{ { 0xa9 }, 1, 0xfe }, { { 0xa0 }, 1, 0xfe }, { { 0xa1 }, 1, 0xfe },
		{ { 0x0f, 0xb6 }, 2, 0xff }, { { 0x0f, 0xb7 }, 2, 0xff },
		{ { 0x0f, 0xbe }, 2, 0xff }, { { 0x0f, 0xbf }, 2, 0xff },
	};
	static const uint8_t pfx[] = { 0x66, 0x67, 0x2e, 0x3e, 0x26, 0x36, 0xf2, 0xf3 };
	unsigned seed = 12345, checked = 0;
	enum outcome (*run)(const uint8_t *, unsigned) =
		mode == M64 ? run_at_boundary : run_at_boundary32;

	area_init();
	area32_init();
	traps_install();
	for (unsigned iter = 0; iter < 3000; iter++) {
		uint8_t b[15];
		unsigned n = 0, np;
		struct x86_insn in;

		seed = seed * 1103515245u + 12345u;
		np = (seed >> 16) % 5;
		for (unsigned i = 0; i < np; i++) {
			seed = seed * 1103515245u + 12345u;
			b[n++] = pfx[(seed >> 16) % sizeof(pfx)];
		}
		seed = seed * 1103515245u + 12345u;
		if (mode == M64 && ((seed >> 16) & 1))
			b[n++] = (uint8_t)(0x40 | ((seed >> 18) & 0xf));
		seed = seed * 1103515245u + 12345u;
		unsigned k = (seed >> 16) % (sizeof(ops) / sizeof(ops[0]));

		for (unsigned i = 0; i < ops[k].n; i++)
			b[n++] = ops[k].op[i];
		for (unsigned i = n; i < 15; i++) {
			seed = seed * 1103515245u + 12345u;
			b[i] = (uint8_t)(seed >> 16);
		}
		if (ops[k].reg <= 7)
			b[n] = (uint8_t)((b[n] & 0xc7) | ops[k].reg << 3);
		/* No RIP-relative operand: its address could be the guard page. */
		if (ops[k].reg != 0xfe && (b[n] & 0xc7) == 0x05)
			b[n] ^= 0x01;
		if (x86_decode(b, 15, mode, &in))
			continue;
		enum outcome full = run(b, in.len);

		ASSERT_MSG(full != O_FETCH, "iter %u: CPU reads past %u bytes", iter, in.len);
		if (in.len > 1)
			ASSERT_MSG(run(b, in.len - 1u) == O_FETCH,
				   "iter %u: CPU length below %u", iter, in.len);
		checked++;
	}
	DIAG("%u random prefixed %d-bit forms: lengths agree with the CPU", checked, 8 * mode);
	EXPECT_GT(checked, 2000u);
}

TEST(fuzz_lengths_64)
{
	fuzz(M64);
}

TEST(fuzz_lengths_32)
{
	fuzz(M32);
}

/* ---- privileged instructions: effects by the SDM/KVM rules ---------------- */

static uint8_t gmem[2 * PAGE] __attribute__((aligned(4096)));

struct ectx {
	struct tmem m;
	struct x86_emu emu;
	struct x86_regs r;
	struct x86_emu_result res;
};

static void ectx_init(struct ectx *e)
{
	memset(e, 0, sizeof(*e));
	e->m = (struct tmem){ .base = gmem, .shadow = gmem, .size = sizeof(gmem),
			      .msr_mode = X86_MSR_GP };
	regs64(&e->r);
	e->r.rip = 0x401000;
	x86_emu_init(&e->emu, &tops, &e->m, &tmodel, pio_page);
}

#define EMU(e, ...)                                                                        \
	({                                                                                 \
		static const uint8_t b_[] = { __VA_ARGS__ };                               \
		struct x86_insn in_;                                                       \
		ASSERT_EQ(x86_decode(b_, sizeof(b_), (enum x86_mode)x86_cpu_mode(&(e)->r), &in_), 0); \
		x86_emulate(&(e)->emu, &(e)->r, &in_, &(e)->res);                          \
	})

#define EXPECT_EXC(e, st, vec, ec)                                                         \
	do {                                                                               \
		EXPECT_EQ(st, X86_EMU_EXCEPTION);                                          \
		EXPECT_EQ((e)->res.ex.vector, vec);                                        \
		EXPECT_EQ((e)->res.ex.error_code, ec);                                     \
		EXPECT_EQ((e)->r.rip, 0x401000u);                                          \
	} while (0)

TEST(emulate_port_io)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	e.r.gpr[X86_RAX] = 0xffffffffaabbccddull;
	e.r.gpr[X86_RDX] = 0x1000;
	st = EMU(&e, 0xee); /* out dx,al */
	ASSERT_EQ(st, X86_EMU_EXIT_IO);
	EXPECT_EQ(e.res.io.direction, 1);
	EXPECT_EQ(e.res.io.size, 1);
	EXPECT_EQ(e.res.io.port, 0x1000);
	EXPECT_EQ(e.res.io.count, 1);
	EXPECT_EQ(pio_page[0], 0xdd);
	EXPECT_EQ(e.r.rip, 0x401000u); /* RIP moves on completion, as in KVM */
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x401001u);

	/* IN of 4 bytes zero-extends into RAX; 1 and 2 merge. */
	st = EMU(&e, 0xed);
	ASSERT_EQ(st, X86_EMU_EXIT_IO);
	EXPECT_EQ(e.res.io.direction, 0);
	EXPECT_EQ(pio_page[0], 0); /* zeroed before the exit */
	memcpy(pio_page, "\x11\x22\x33\x44", 4);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x44332211u);
	e.r.gpr[X86_RAX] = 0xffffffffffffffffull;
	ASSERT_EQ(EMU(&e, 0xe4, 0x71), X86_EMU_EXIT_IO); /* in al,0x71 */
	EXPECT_EQ(e.res.io.port, 0x71);
	pio_page[0] = 0x5a;
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0xffffffffffffff5aull);
	EXPECT_EQ(e.r.rip, 0x401000u + 1 + 1 + 2);
	/* A second completion has nothing to finish. */
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_UNHANDLED);
	/* CPL3 with IOPL 0: #GP(0). */
	e.r.rip = 0x401000;
	e.r.cpl = 3;
	st = EMU(&e, 0xee);
	EXPECT_EXC(&e, st, X86_GP, 0);
}

TEST(emulate_string_io)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	memcpy(gmem + 100, "abcdef", 6);
	e.r.gpr[X86_RSI] = (uint64_t)(gmem + 100);
	e.r.gpr[X86_RCX] = 3;
	e.r.gpr[X86_RDX] = 0x3f8;
	st = EMU(&e, 0xf3, 0x6e); /* rep outsb */
	ASSERT_EQ(st, X86_EMU_EXIT_IO);
	EXPECT_EQ(e.res.io.count, 3);
	EXPECT_EQ(memcmp(pio_page, "abc", 3), 0);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RCX], 0u);
	EXPECT_EQ(e.r.gpr[X86_RSI], (uint64_t)(gmem + 103));
	EXPECT_EQ(e.r.rip, 0x401002u);

	/* rep insw that would cross the page: the first chunk stops at it and
	 * RIP stays for the rest. */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RDI] = (uint64_t)(gmem + PAGE - 4);
	e.r.gpr[X86_RCX] = 5;
	st = EMU(&e, 0x66, 0xf3, 0x6d);
	ASSERT_EQ(st, X86_EMU_EXIT_IO);
	EXPECT_EQ(e.res.io.count, 2);
	EXPECT_EQ(e.res.io.size, 2);
	memcpy(pio_page, "\x01\x02\x03\x04", 4);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(memcmp(gmem + PAGE - 4, "\x01\x02\x03\x04", 4), 0);
	EXPECT_EQ(e.r.gpr[X86_RCX], 3u);
	EXPECT_EQ(e.r.gpr[X86_RDI], (uint64_t)(gmem + PAGE));
	EXPECT_EQ(e.r.rip, 0x401000u);

	/* DF=1 walks down; rCX=0 does nothing but advance. */
	e.r.rflags |= X86_RFLAGS_DF;
	memcpy(gmem + 200, "wxyz", 4);
	e.r.gpr[X86_RSI] = (uint64_t)(gmem + 203);
	e.r.gpr[X86_RCX] = 4;
	ASSERT_EQ(EMU(&e, 0xf3, 0x6e), X86_EMU_EXIT_IO);
	EXPECT_EQ(memcmp(pio_page, "zyxw", 4), 0);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RSI], (uint64_t)(gmem + 199));
	e.r.rip = 0x401000;
	e.r.gpr[X86_RCX] = 0;
	EXPECT_EQ(EMU(&e, 0xf3, 0x6e), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x401002u);

	/* A #PF on the source is injected before any exit. */
	e.r.rip = 0x401000;
	e.r.rflags &= ~X86_RFLAGS_DF;
	e.r.gpr[X86_RSI] = 0x1000;
	e.r.gpr[X86_RCX] = 1;
	st = EMU(&e, 0xf3, 0x6e);
	EXPECT_EXC(&e, st, X86_PF, 0);
	EXPECT_EQ(e.res.ex.cr2, 0x1000u);
}

TEST(emulate_mmio_rmw_and_faults)
{
	struct ectx e;
	uint32_t dev = 0x7fffffff;
	int st;

	ectx_init(&e);
	e.m.mmio = true;
	e.r.gpr[X86_RBX] = (uint64_t)(gmem + 64);
	e.r.gpr[X86_RAX] = 1;
	st = EMU(&e, 0x01, 0x03); /* add [rbx],eax: read exit, then write exit */
	ASSERT_EQ(st, X86_EMU_EXIT_MMIO);
	EXPECT_FALSE(e.res.mmio.is_write);
	EXPECT_EQ(e.res.mmio.len, 4u);
	EXPECT_EQ(e.res.mmio.gpa, 0xfe000040u);
	memcpy(e.res.mmio.data, &dev, 4);
	st = x86_emu_complete(&e.emu, &e.r, &e.res);
	ASSERT_EQ(st, X86_EMU_EXIT_MMIO);
	EXPECT_TRUE(e.res.mmio.is_write);
	memcpy(&dev, e.res.mmio.data, 4);
	EXPECT_EQ(dev, 0x80000000u);
	EXPECT_EQ(e.r.rip, 0x401000u);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x401002u);
	EXPECT_TRUE(e.r.rflags & X86_RFLAGS_OF);
	EXPECT_TRUE(e.r.rflags & X86_RFLAGS_SF);

	/* A load that faults: #PF with the walker's CR2 and error code. */
	e.r.rip = 0x401000;
	e.m.mmio = false;
	e.m.fault_gva = (uint64_t)(gmem + 66);
	st = EMU(&e, 0x89, 0x03); /* mov [rbx],eax */
	EXPECT_EXC(&e, st, X86_PF, 2);
	EXPECT_EQ(e.res.ex.cr2, (uint64_t)(gmem + 66));
}

TEST(emulate_hlt_cli_sti_flags)
{
	struct ectx e;
	uint64_t v;

	ectx_init(&e);
	EXPECT_EQ(EMU(&e, 0xf4), X86_EMU_EXIT_HLT);
	EXPECT_EQ(e.r.rip, 0x401001u); /* past HLT when the VMM sees it */
	EXPECT_EQ(EMU(&e, 0xfb), X86_EMU_DONE);
	EXPECT_TRUE(e.r.rflags & X86_RFLAGS_IF);
	EXPECT_EQ(e.res.effects & (X86_FX_IF_ON | X86_FX_STI_SHADOW),
		  X86_FX_IF_ON | X86_FX_STI_SHADOW);
	EXPECT_EQ(EMU(&e, 0xfb), X86_EMU_DONE);
	EXPECT_EQ(e.res.effects, 0u); /* already set: no new window */
	EXPECT_EQ(EMU(&e, 0xfa), X86_EMU_DONE);
	EXPECT_FALSE(e.r.rflags & X86_RFLAGS_IF);

	/* PUSHF/POPF through the stack; POPF at CPL0 loads IF and IOPL. */
	e.r.gpr[X86_RSP] = (uint64_t)(gmem + 512);
	e.r.rflags = 0x2 | X86_RFLAGS_CF | X86_RFLAGS_RF;
	EXPECT_EQ(EMU(&e, 0x9c), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RSP], (uint64_t)(gmem + 504));
	memcpy(&v, gmem + 504, 8);
	EXPECT_EQ(v, 0x3u); /* RF is not pushed */
	v = 0x2 | X86_RFLAGS_IF | X86_RFLAGS_IOPL | X86_RFLAGS_ZF | X86_RFLAGS_VM;
	memcpy(gmem + 504, &v, 8);
	EXPECT_EQ(EMU(&e, 0x9d), X86_EMU_DONE);
	EXPECT_EQ(e.r.rflags, 0x2 | X86_RFLAGS_IF | X86_RFLAGS_IOPL | X86_RFLAGS_ZF);
	EXPECT_TRUE(e.res.effects & X86_FX_IF_ON);
	EXPECT_EQ(e.r.gpr[X86_RSP], (uint64_t)(gmem + 512));
}

TEST(emulate_iretq)
{
	struct ectx e;
	uint64_t frame[5] = { 0x402000, 8, 0x202, 0x7000, 0x10 };

	ectx_init(&e);
	memcpy(gmem + 256, frame, sizeof(frame));
	e.r.gpr[X86_RSP] = (uint64_t)(gmem + 256);
	EXPECT_EQ(EMU(&e, 0x48, 0xcf), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x402000u);
	EXPECT_EQ(e.r.gpr[X86_RSP], 0x7000u);
	EXPECT_EQ(e.r.rflags, 0x202u);
	EXPECT_TRUE(e.res.effects & X86_FX_IF_ON);
	EXPECT_TRUE(e.res.effects & X86_FX_IRET_NMI);
	/* Non-canonical return RIP: #GP(0), nothing changed. */
	frame[0] = 0x0000800000000000ull;
	memcpy(gmem + 256, frame, sizeof(frame));
	e.r.rip = 0x401000;
	e.r.gpr[X86_RSP] = (uint64_t)(gmem + 256);
	int st = EMU(&e, 0x48, 0xcf);
	EXPECT_EXC(&e, st, X86_GP, 0);
	EXPECT_EQ(e.r.gpr[X86_RSP], (uint64_t)(gmem + 256));
}

TEST(emulate_control_registers)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	e.r.cr3 = 0x1000;
	EXPECT_EQ(EMU(&e, 0x0f, 0x20, 0xd8), X86_EMU_DONE); /* mov rax,cr3 */
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x1000u);
	e.r.gpr[X86_RAX] = 0x5000;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xd8), X86_EMU_DONE); /* mov cr3,rax */
	EXPECT_EQ(e.r.cr3, 0x5000u);
	EXPECT_TRUE(e.res.effects & X86_FX_TLB_FLUSH);
	/* CR3 beyond MAXPHYADDR: #GP(0). */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RAX] = 1ull << 50;
	st = EMU(&e, 0x0f, 0x22, 0xd8);
	EXPECT_EXC(&e, st, X86_GP, 0);
	/* CR4: a reserved bit, clearing PAE in long mode, LA57 toggled: #GP. */
	e.r.gpr[X86_RAX] = e.r.cr4 | (1ull << 30);
	st = EMU(&e, 0x0f, 0x22, 0xe0);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RAX] = e.r.cr4 & ~X86_CR4_PAE;
	st = EMU(&e, 0x0f, 0x22, 0xe0);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RAX] = e.r.cr4 | X86_CR4_LA57;
	st = EMU(&e, 0x0f, 0x22, 0xe0);
	EXPECT_EXC(&e, st, X86_GP, 0);
	/* PCIDE needs CR3[11:0] = 0. */
	e.r.cr3 = 0x5001;
	e.r.gpr[X86_RAX] = e.r.cr4 | X86_CR4_PCIDE;
	st = EMU(&e, 0x0f, 0x22, 0xe0);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.cr3 = 0x5000;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xe0), X86_EMU_DONE);
	EXPECT_TRUE(e.r.cr4 & X86_CR4_PCIDE);
	/* With PCIDE, CR3 bit 63 means "no flush" and is not stored. */
	e.r.gpr[X86_RAX] = (1ull << 63) | 0x6000;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xd8), X86_EMU_DONE);
	EXPECT_EQ(e.r.cr3, 0x6000u);
	EXPECT_FALSE(e.res.effects & X86_FX_TLB_FLUSH);
	/* PGE toggled: full flush. */
	e.r.gpr[X86_RAX] = e.r.cr4 | X86_CR4_PGE;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xe0), X86_EMU_DONE);
	EXPECT_TRUE(e.res.effects & X86_FX_TLB_FLUSH_ALL);

	/* CR0: upper bits, NW without CD, PG without PE, clearing PG in 64-bit mode. */
	e.r.rip = 0x401000;
	uint64_t bad[] = { e.r.cr0 | (1ull << 32), e.r.cr0 | X86_CR0_NW,
			   (e.r.cr0 & ~X86_CR0_PE), e.r.cr0 & ~X86_CR0_PG };
	for (unsigned i = 0; i < 4; i++) {
		e.r.gpr[X86_RAX] = bad[i];
		st = EMU(&e, 0x0f, 0x22, 0xc0);
		EXPECT_EXC(&e, st, X86_GP, 0);
	}
	e.r.gpr[X86_RAX] = (e.r.cr0 | X86_CR0_WP | (1ull << 20)) & ~X86_CR0_ET;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xc0), X86_EMU_DONE);
	EXPECT_EQ(e.r.cr0, X86_CR0_PE | X86_CR0_PG | X86_CR0_ET | X86_CR0_NE | X86_CR0_WP);
	EXPECT_TRUE(e.res.effects & X86_FX_MMU_MODE);
	EXPECT_EQ(EMU(&e, 0x0f, 0x06), X86_EMU_DONE); /* clts */
	e.r.gpr[X86_RAX] = 0xe; /* lmsw: TS|EM|MP set, PE cannot be cleared */
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0xf0), X86_EMU_DONE);
	EXPECT_EQ(e.r.cr0 & 0xf, 0xfu);

	/* CR8: 4 bits. */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RAX] = 16;
	st = EMU(&e, 0x44, 0x0f, 0x22, 0xc0);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RAX] = 9;
	EXPECT_EQ(EMU(&e, 0x44, 0x0f, 0x22, 0xc0), X86_EMU_DONE);
	EXPECT_EQ(e.r.cr8, 9u);
	EXPECT_EQ(EMU(&e, 0x44, 0x0f, 0x20, 0xc1), X86_EMU_DONE); /* mov rcx,cr8 */
	EXPECT_EQ(e.r.gpr[X86_RCX], 9u);

	/* Paging switched on with LME set activates long mode (32-bit code). */
	ectx_init(&e);
	e.r.cr0 = X86_CR0_PE | X86_CR0_ET;
	e.r.cr4 = 0;
	e.r.efer = X86_EFER_LME;
	e.r.seg[X86_SEG_CS] = (struct x86_segment){ .selector = 8, .db = true, .present = true };
	e.r.gpr[X86_RAX] = X86_CR0_PE | X86_CR0_PG;
	st = EMU(&e, 0x0f, 0x22, 0xc0);
	EXPECT_EXC(&e, st, X86_GP, 0); /* CR4.PAE clear */
	e.r.cr4 = X86_CR4_PAE;
	EXPECT_EQ(EMU(&e, 0x0f, 0x22, 0xc0), X86_EMU_DONE);
	EXPECT_TRUE(e.r.efer & X86_EFER_LMA);
	EXPECT_TRUE(e.res.effects & X86_FX_TLB_FLUSH_ALL);
	EXPECT_EQ(e.r.rip, 0x401003u);
}

TEST(emulate_debug_registers)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	e.r.gpr[X86_RDX] = 0xffffffffull;
	EXPECT_EQ(EMU(&e, 0x0f, 0x23, 0xf2), X86_EMU_DONE); /* mov dr6,rdx */
	EXPECT_EQ(e.r.dr[6], 0xffff0ff0u | 0x0001e80fu);
	e.r.gpr[X86_RDX] = 1ull << 32;
	st = EMU(&e, 0x0f, 0x23, 0xfa); /* mov dr7,rdx */
	e.r.rip = 0x401000;
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RDX] = 0x1;
	EXPECT_EQ(EMU(&e, 0x0f, 0x23, 0xfa), X86_EMU_DONE);
	EXPECT_EQ(e.r.dr[7], 0x401u);
	EXPECT_EQ(EMU(&e, 0x0f, 0x21, 0xe8), X86_EMU_DONE); /* mov rax,dr5 = dr7 */
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x401u);
	e.r.rip = 0x401000;
	e.r.cr4 |= X86_CR4_DE;
	st = EMU(&e, 0x0f, 0x21, 0xe8);
	EXPECT_EXC(&e, st, X86_UD, 0);
}

TEST(emulate_msr_cpuid_tsc)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	e.r.gpr[X86_RCX] = 0x10;
	e.r.gpr[X86_RAX] = e.r.gpr[X86_RDX] = ~0ull;
	EXPECT_EQ(EMU(&e, 0x0f, 0x32), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x34567890u);
	EXPECT_EQ(e.r.gpr[X86_RDX], 0x12u);
	/* Unknown MSR: #GP(0). */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RCX] = 0x12345;
	st = EMU(&e, 0x0f, 0x32);
	EXPECT_EXC(&e, st, X86_GP, 0);
	/* User-space MSR exit, answered with an error: #GP(0) at completion. */
	e.m.msr_mode = X86_MSR_EXIT;
	ASSERT_EQ(EMU(&e, 0x0f, 0x32), X86_EMU_EXIT_MSR);
	EXPECT_EQ(e.res.msr.index, 0x12345u);
	e.res.msr.error = 1;
	st = x86_emu_complete(&e.emu, &e.r, &e.res);
	EXPECT_EXC(&e, st, X86_GP, 0);
	ASSERT_EQ(EMU(&e, 0x0f, 0x32), X86_EMU_EXIT_MSR);
	e.res.msr.error = 0;
	e.res.msr.data = 0xaabbccdd11223344ull;
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x11223344u);
	EXPECT_EQ(e.r.gpr[X86_RDX], 0xaabbccddu);
	/* WRMSR of EFER: LME cannot change with paging on; LMA is kept. */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RCX] = 0xc0000080;
	e.r.gpr[X86_RAX] = X86_EFER_SCE | X86_EFER_NXE;
	e.r.gpr[X86_RDX] = 0;
	st = EMU(&e, 0x0f, 0x30);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RAX] = X86_EFER_LME | X86_EFER_NXE;
	EXPECT_EQ(EMU(&e, 0x0f, 0x30), X86_EMU_DONE);
	EXPECT_EQ(e.r.efer, X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE);
	/* WRMSR of a non-canonical GS base: #GP. */
	e.r.rip = 0x401000;
	e.r.gpr[X86_RCX] = 0xc0000101;
	e.r.gpr[X86_RDX] = 0x8000;
	st = EMU(&e, 0x0f, 0x30);
	EXPECT_EXC(&e, st, X86_GP, 0);
	/* CPUID: leaf in EAX, subleaf in ECX, results zero-extended. */
	e.r.gpr[X86_RAX] = 0xffffffff00000007ull;
	e.r.gpr[X86_RCX] = 1;
	e.r.gpr[X86_RBX] = ~0ull;
	EXPECT_EQ(EMU(&e, 0x0f, 0xa2), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x80000007u);
	EXPECT_EQ(e.r.gpr[X86_RBX], 1u);
	EXPECT_EQ(e.r.gpr[X86_RDX], 0xffffffffu);
	/* RDTSC and RDTSCP. */
	EXPECT_EQ(EMU(&e, 0x0f, 0x31), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x55667788u);
	EXPECT_EQ(e.r.gpr[X86_RDX], 0x11223344u);
	e.m.msr_val[3] = 0x7;
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0xf9), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RCX], 7u);
	EXPECT_EQ(e.r.rip, 0x401000u + 2 + 2 + 3);
}

TEST(emulate_xsetbv)
{
	static const struct { uint64_t xcr0; uint32_t ecx; bool ok; } rows[] = {
		{ 0x1, 0, true }, { 0x3, 0, true }, { 0x7, 0, true }, { 0x0, 0, false },
		{ 0x5, 0, false }, { 0x2, 0, false }, { 0xf, 0, false }, { 0x3, 1, false },
		{ 0xe7, 0, false },
	};
	struct ectx e;
	int st;

	ectx_init(&e);
	for (unsigned i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		e.r.rip = 0x401000;
		e.r.gpr[X86_RAX] = rows[i].xcr0;
		e.r.gpr[X86_RDX] = 0;
		e.r.gpr[X86_RCX] = rows[i].ecx;
		st = EMU(&e, 0x0f, 0x01, 0xd1);
		if (rows[i].ok) {
			EXPECT_EQ(st, X86_EMU_DONE);
			EXPECT_EQ(e.r.xcr0, rows[i].xcr0);
		} else {
			EXPECT_EXC(&e, st, X86_GP, 0);
		}
	}
	e.r.cr4 &= ~X86_CR4_OSXSAVE;
	e.r.gpr[X86_RAX] = 1;
	e.r.gpr[X86_RCX] = 0;
	st = EMU(&e, 0x0f, 0x01, 0xd1);
	EXPECT_EXC(&e, st, X86_UD, 0);
}

TEST(emulate_hypercall)
{
	struct ectx e;

	ectx_init(&e);
	e.r.gpr[X86_RAX] = 12;
	e.r.gpr[X86_RBX] = 0x100000;
	e.r.gpr[X86_RCX] = 4;
	e.r.gpr[X86_RDX] = 8;
	ASSERT_EQ(EMU(&e, 0x0f, 0x01, 0xd9), X86_EMU_EXIT_HYPERCALL);
	EXPECT_EQ(e.res.hypercall.nr, 12u);
	EXPECT_EQ(e.res.hypercall.args[0], 0x100000u);
	EXPECT_EQ(e.res.hypercall.args[1], 4u);
	EXPECT_EQ(e.res.hypercall.args[2], 8u);
	EXPECT_TRUE(e.res.hypercall.longmode);
	e.res.hypercall.ret = 0;
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0u);
	EXPECT_EQ(e.r.rip, 0x401003u);
	ASSERT_EQ(EMU(&e, 0x0f, 0x01, 0xc1), X86_EMU_EXIT_HYPERCALL);
	e.res.hypercall.ret = (uint64_t)-1000;
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], (uint64_t)-1000);
}

TEST(emulate_descriptor_tables)
{
	struct ectx e;
	uint64_t gdt[8] = { 0 };
	uint8_t desc[10];
	uint64_t tss_base = 0x12345678abcdull;
	int st;

	ectx_init(&e);
	/* LGDT from memory: limit then 8-byte base in 64-bit mode. */
	uint64_t gdt_gva = (uint64_t)(gmem + 1024);
	desc[0] = sizeof(gdt) - 1;
	desc[1] = 0;
	memcpy(desc + 2, &gdt_gva, 8);
	memcpy(gmem + 16, desc, 10);
	e.r.gpr[X86_RAX] = (uint64_t)(gmem + 16);
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0x10), X86_EMU_DONE);
	EXPECT_EQ(e.r.gdt.base, gdt_gva);
	EXPECT_EQ(e.r.gdt.limit, sizeof(gdt) - 1);
	EXPECT_TRUE(e.res.effects & X86_FX_DTABLES);
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0x18), X86_EMU_DONE); /* lidt [rax] */
	EXPECT_EQ(e.r.idt.base, gdt_gva);

	/* A 64-bit available TSS at selector 0x18 (16 bytes). */
	gdt[3] = 0x67 | (tss_base & 0xffffff) << 16 | (0x89ull << 40) |
		 ((tss_base >> 24) & 0xff) << 56;
	gdt[4] = tss_base >> 32;
	memcpy(gmem + 1024, gdt, sizeof(gdt));
	e.r.gpr[X86_RAX] = 0x18;
	EXPECT_EQ(EMU(&e, 0x0f, 0x00, 0xd8), X86_EMU_DONE); /* ltr ax */
	EXPECT_EQ(e.r.tr.selector, 0x18);
	EXPECT_EQ(e.r.tr.base, tss_base);
	EXPECT_EQ(e.r.tr.limit, 0x67u);
	EXPECT_EQ(e.r.tr.type, 0xb);
	EXPECT_EQ(gmem[1024 + 0x18 + 5], 0x8b); /* busy in the GDT */
	/* Loading it again: busy is not available: #GP(sel). */
	e.r.rip = 0x401000;
	st = EMU(&e, 0x0f, 0x00, 0xd8);
	EXPECT_EXC(&e, st, X86_GP, 0x18);
	/* Null selector: #GP(0); beyond the limit: #GP(sel); not present: #NP. */
	e.r.gpr[X86_RAX] = 0;
	st = EMU(&e, 0x0f, 0x00, 0xd8);
	EXPECT_EXC(&e, st, X86_GP, 0);
	e.r.gpr[X86_RAX] = 0x40;
	st = EMU(&e, 0x0f, 0x00, 0xd8);
	EXPECT_EXC(&e, st, X86_GP, 0x40);
	gmem[1024 + 0x18 + 5] = 0x09;
	e.r.gpr[X86_RAX] = 0x18;
	st = EMU(&e, 0x0f, 0x00, 0xd8);
	EXPECT_EXC(&e, st, X86_NP, 0x18);
	/* LLDT with a null selector leaves the LDT unusable. */
	e.r.gpr[X86_RCX] = 0;
	EXPECT_EQ(EMU(&e, 0x0f, 0x00, 0xd1), X86_EMU_DONE);
	EXPECT_TRUE(e.r.ldt.unusable);
	/* INVLPG reports the linear address; no access is made. */
	e.r.gpr[X86_RDI] = 0x7000123;
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0x3f), X86_EMU_DONE);
	EXPECT_TRUE(e.res.effects & X86_FX_INVLPG);
	EXPECT_EQ(e.res.invlpg_gva, 0x7000123u);
}

TEST(emulate_swapgs_syscall_sysret)
{
	struct ectx e;
	int st;

	ectx_init(&e);
	e.r.seg[X86_SEG_GS].base = 0x1000;
	e.r.kernel_gs_base = 0x2000;
	EXPECT_EQ(EMU(&e, 0x0f, 0x01, 0xf8), X86_EMU_DONE);
	EXPECT_EQ(e.r.seg[X86_SEG_GS].base, 0x2000u);
	EXPECT_EQ(e.r.kernel_gs_base, 0x1000u);

	e.m.msr_val[0] = (0x23ull << 48) | (0x8ull << 32); /* STAR */
	e.m.msr_val[1] = 0x405000;			    /* LSTAR */
	e.m.msr_val[2] = X86_RFLAGS_IF;			    /* FMASK */
	e.r.rip = 0x401000;
	e.r.rflags = 0x202;
	EXPECT_EQ(EMU(&e, 0x0f, 0x05), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x405000u);
	EXPECT_EQ(e.r.gpr[X86_RCX], 0x401002u);
	EXPECT_EQ(e.r.gpr[X86_R11], 0x202u);
	EXPECT_EQ(e.r.rflags, 0x2u);
	EXPECT_EQ(e.r.seg[X86_SEG_CS].selector, 8);
	EXPECT_EQ(e.r.seg[X86_SEG_SS].selector, 0x10);

	e.r.gpr[X86_RCX] = 0x403000;
	e.r.gpr[X86_R11] = 0x246;
	EXPECT_EQ(EMU(&e, 0x48, 0x0f, 0x07), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x403000u);
	EXPECT_EQ(e.r.seg[X86_SEG_CS].selector, 0x33);
	EXPECT_EQ(e.r.seg[X86_SEG_SS].selector, 0x2b);
	EXPECT_EQ(e.r.cpl, 3);
	EXPECT_EQ(e.r.rflags, 0x246u);
	/* At CPL3 the privileged ones #GP. */
	e.r.rip = 0x401000;
	st = EMU(&e, 0x0f, 0x01, 0xf8);
	EXPECT_EXC(&e, st, X86_GP, 0);
	st = EMU(&e, 0xf4);
	EXPECT_EXC(&e, st, X86_GP, 0);
	/* EFER.SCE clear: SYSCALL is #UD. */
	e.r.cpl = 0;
	e.r.seg[X86_SEG_CS].l = true;
	e.r.efer &= ~X86_EFER_SCE;
	st = EMU(&e, 0x0f, 0x05);
	EXPECT_EXC(&e, st, X86_UD, 0);
}

TEST(emulate_soft_int)
{
	struct ectx e;

	ectx_init(&e);
	EXPECT_EQ(EMU(&e, 0xcd, 0x80), X86_EMU_SOFT_INT);
	EXPECT_EQ(e.res.ex.vector, 0x80);
	EXPECT_FALSE(e.res.ex.has_error_code);
	EXPECT_EQ(e.r.rip, 0x401002u); /* the frame returns after INT */
	EXPECT_EQ(EMU(&e, 0xcc), X86_EMU_SOFT_INT);
	EXPECT_EQ(e.res.ex.vector, X86_BP);
	EXPECT_EQ(e.r.rip, 0x401003u);
	/* INTO in 32-bit code raises #OF only with OF set. */
	e.r.efer = 0;
	e.r.seg[X86_SEG_CS].l = false;
	e.r.seg[X86_SEG_CS].db = true;
	EXPECT_EQ(EMU(&e, 0xce), X86_EMU_DONE);
	e.r.rflags |= X86_RFLAGS_OF;
	EXPECT_EQ(EMU(&e, 0xce), X86_EMU_SOFT_INT);
	EXPECT_EQ(e.res.ex.vector, 4);
}

TEST(emulate_protected_mode_32)
{
	struct ectx e;

	ectx_init(&e);
	e.r.efer = 0;
	e.r.cr0 = X86_CR0_PE | X86_CR0_ET;
	e.r.cr4 = 0;
	e.r.seg[X86_SEG_CS] = (struct x86_segment){ .selector = 8, .db = true, .present = true };
	e.r.seg[X86_SEG_DS].base = (uint64_t)gmem & 0xffffffffu;
	ASSERT_EQ(x86_cpu_mode(&e.r), X86_MODE_32);
	/* 32-bit MMIO: [ebx] relative to the DS base; the write reports the gva. */
	e.m.mmio = true;
	e.m.base = (uint8_t *)(uintptr_t)0;
	e.m.size = ~(size_t)0 >> 1;
	e.r.gpr[X86_RBX] = 0x40;
	e.r.gpr[X86_RAX] = 0xdeadbeef;
	ASSERT_EQ(EMU(&e, 0x89, 0x03), X86_EMU_EXIT_MMIO);
	EXPECT_EQ(e.res.mmio.gva, ((uint64_t)gmem + 0x40) & 0xffffffffu);
	EXPECT_EQ(e.res.mmio.len, 4u);
	EXPECT_EQ(x86_emu_complete(&e.emu, &e.r, &e.res), X86_EMU_DONE);
	/* Hypercall outside long mode: 32-bit arguments and result. */
	e.r.gpr[X86_RAX] = 0x100000001ull;
	ASSERT_EQ(EMU(&e, 0x0f, 0x01, 0xc1), X86_EMU_EXIT_HYPERCALL);
	EXPECT_EQ(e.res.hypercall.nr, 1u);
	EXPECT_FALSE(e.res.hypercall.longmode);
	/* Real mode decodes with 16-bit defaults (SMM runs there); virtual-8086
	 * mode is not run at all. */
	e.r.cr0 = 0;
	EXPECT_EQ(x86_cpu_mode(&e.r), X86_MODE_16);
	e.r.cr0 = X86_CR0_PE;
	e.r.rflags |= X86_RFLAGS_VM;
	EXPECT_EQ(x86_cpu_mode(&e.r), -1);
}

/* ---- SMM: the save area and RSM --------------------------------------------- */

#define SMBASE 0x30000u
static uint8_t smram_area[X86_SMRAM_SAVE_SIZE];
static bool smram_fail;

static int t_read_phys(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	(void)ctx;
	if (smram_fail || gpa != SMBASE + X86_SMRAM_SAVE_OFFSET || len != sizeof(smram_area))
		return -1;
	memcpy(buf, smram_area, len);
	return 0;
}

static const struct x86_emu_ops smm_ops = { .read = t_read, .write = t_write,
					    .rdmsr = t_rdmsr, .wrmsr = t_wrmsr,
					    .cpuid = t_cpuid, .rdtsc = t_rdtsc,
					    .read_phys = t_read_phys };

static uint64_t area_u64(unsigned off)
{
	uint64_t v = 0;

	memcpy(&v, smram_area + off, 8);
	return v;
}

static uint32_t area_u32(unsigned off)
{
	uint32_t v = 0;

	memcpy(&v, smram_area + off, 4);
	return v;
}

/* A long-mode state with something distinct in every register RSM restores. */
static void smm_regs64(struct x86_regs *r)
{
	regs64(r);
	for (unsigned i = 0; i < 16; i++)
		r->gpr[i] = 0x1111111111111111ull * (i + 1);
	r->rip = 0x401234;
	r->rflags = 0x2 | X86_RFLAGS_IF | X86_RFLAGS_CF;
	r->cr3 = 0x5000;
	r->dr[6] = 0xffff0ff0;
	r->dr[7] = 0x401;
	r->gdt = (struct x86_dtable){ 0x6000, 23 };
	r->idt = (struct x86_dtable){ 0x7000, 0xfff };
	r->tr = (struct x86_segment){ .selector = 0x18, .base = 0x8000, .limit = 0x67,
				      .type = 11, .present = true };
	r->seg[X86_SEG_CS].limit = 0xffffffff;
	r->seg[X86_SEG_CS].g = true;
	r->seg[X86_SEG_DS] = r->seg[X86_SEG_ES] = r->seg[X86_SEG_SS];
	r->seg[X86_SEG_FS] = (struct x86_segment){ .base = 0x7f0000001000ull, .unusable = true };
	r->seg[X86_SEG_GS] = (struct x86_segment){ .base = 0x7f0000002000ull, .unusable = true };
	r->smbase = SMBASE;
}

static void smm_enter(struct ectx *e, bool lm)
{
	static struct x86_cpu_model model;

	model = tmodel;
	model.lm = lm;
	x86_emu_init(&e->emu, &smm_ops, &e->m, &model, pio_page);
	x86_smram_save(&e->r, lm, e->r.smbase, 0, smram_area);
	x86_smm_entry_regs(&e->r, e->r.smbase, lm);
}

TEST(smm_save_area_layout)
{
	struct x86_regs r, pm;

	smm_regs64(&r);
	x86_smram_save(&r, true, SMBASE, 2, smram_area);
	/* KVM's AMD64-style layout, offsets from SMBASE + 0xfe00. */
	EXPECT_EQ(area_u32(0xfc), 0x00020064u); /* revision */
	EXPECT_EQ(area_u32(0x100), SMBASE);
	EXPECT_EQ(area_u64(0x178), r.rip);
	EXPECT_EQ(area_u64(0x170), r.rflags);
	EXPECT_EQ(area_u64(0x1f8), r.gpr[X86_RAX]); /* RAX last */
	EXPECT_EQ(area_u64(0x180), r.gpr[X86_R15]); /* R15 first */
	EXPECT_EQ(area_u64(0x158), r.cr0);
	EXPECT_EQ(area_u64(0x150), r.cr3);
	EXPECT_EQ(area_u64(0x148), r.cr4);
	EXPECT_EQ(area_u64(0xd0), r.efer);
	EXPECT_EQ(area_u64(0x160), r.dr[7]);
	EXPECT_EQ(smram_area[0xcb], 2); /* the interrupt shadow */
	/* CS at 0x10: selector, attributes (type 11, S, P, L), limit, base. */
	EXPECT_EQ(area_u32(0x10) & 0xffff, 8u);
	EXPECT_EQ(area_u32(0x10) >> 16, 0x209bu | 0x8000u);
	EXPECT_EQ(area_u64(0x68), 0x6000u); /* GDTR base */
	EXPECT_EQ(area_u32(0x64), 23u);	    /* GDTR limit */
	EXPECT_EQ(area_u64(0x88), 0x7000u); /* IDTR base */
	EXPECT_EQ(area_u64(0x98), 0x8000u); /* TR base */
	/* The 32-bit (P6) layout of a 32-bit state. */
	pm = r;
	pm.cr0 = X86_CR0_PE | X86_CR0_ET;
	pm.efer = 0;
	x86_smram_save(&pm, false, SMBASE, 0, smram_area);
	EXPECT_EQ(area_u32(0xfc), 0x00020000u);
	EXPECT_EQ(area_u32(0xf8), SMBASE);
	EXPECT_EQ(area_u32(0x1f0), (uint32_t)pm.rip);
	EXPECT_EQ(area_u32(0x1d0), (uint32_t)pm.gpr[X86_RAX]); /* EAX first */
	EXPECT_EQ(area_u32(0x1ec), (uint32_t)pm.gpr[X86_RDI]);
	EXPECT_EQ(area_u32(0x1fc), (uint32_t)pm.cr0);
	EXPECT_EQ(area_u32(0x1ac), 8u); /* CS selector */
}

TEST(smm_entry_state)
{
	struct x86_regs r;

	smm_regs64(&r);
	x86_smm_entry_regs(&r, 0x1000000, true);
	EXPECT_TRUE(r.smm);
	EXPECT_EQ(r.rip, 0x8000u);
	EXPECT_EQ(r.rflags, 2u);
	EXPECT_EQ(r.cr0 & (X86_CR0_PE | X86_CR0_PG), 0u);
	EXPECT_EQ(r.cr4, 0u);
	EXPECT_EQ(r.efer, 0u);
	EXPECT_EQ(r.idt.limit, 0u);
	EXPECT_EQ(r.dr[7], 0x400u);
	EXPECT_EQ(r.seg[X86_SEG_CS].base, 0x1000000u);
	EXPECT_EQ(r.seg[X86_SEG_CS].selector, 0u); /* (SMBASE >> 4) & 0xffff */
	EXPECT_EQ(r.seg[X86_SEG_DS].limit, 0xffffffffu);
	EXPECT_EQ(x86_cpu_mode(&r), X86_MODE_16);
}

TEST(emulate_rsm)
{
	struct x86_regs orig;
	struct ectx e;
	int st;

	/* Outside SMM RSM is #UD. */
	ectx_init(&e);
	e.emu.ops = &smm_ops;
	EXPECT_EXC(&e, EMU(&e, 0x0f, 0xaa), X86_UD, 0u);
	/* In: back to the long-mode state saved at SMI, register for register. */
	ectx_init(&e);
	smm_regs64(&e.r);
	orig = e.r;
	smm_enter(&e, true);
	e.r.gpr[X86_RAX] = 0xfe;
	st = EMU(&e, 0x0f, 0xaa);
	ASSERT_EQ(st, X86_EMU_DONE);
	EXPECT_FALSE(e.r.smm);
	EXPECT_TRUE(e.res.effects & X86_FX_SMM_LEFT);
	for (unsigned i = 0; i < 16; i++)
		EXPECT_EQ(e.r.gpr[i], orig.gpr[i]);
	EXPECT_EQ(e.r.rip, orig.rip);
	EXPECT_EQ(e.r.rflags, orig.rflags);
	EXPECT_EQ(e.r.cr0, orig.cr0);
	EXPECT_EQ(e.r.cr3, orig.cr3);
	EXPECT_EQ(e.r.cr4, orig.cr4);
	EXPECT_EQ(e.r.efer, orig.efer); /* LMA again: CR0.PG with LME */
	EXPECT_EQ(e.r.dr[7], orig.dr[7]);
	EXPECT_EQ(e.r.gdt.base, orig.gdt.base);
	EXPECT_EQ(e.r.idt.limit, orig.idt.limit);
	EXPECT_EQ(e.r.tr.base, orig.tr.base);
	EXPECT_TRUE(e.r.seg[X86_SEG_CS].l);
	EXPECT_EQ(e.r.seg[X86_SEG_FS].base, orig.seg[X86_SEG_FS].base);
	EXPECT_EQ(x86_cpu_mode(&e.r), X86_MODE_64);
	/* SMBASE as the area says (firmware relocates it so). */
	smm_regs64(&e.r);
	smm_enter(&e, true);
	memcpy(smram_area + 0x100, &(uint32_t){ 0xa0000 }, 4);
	ASSERT_EQ(EMU(&e, 0x0f, 0xaa), X86_EMU_DONE);
	EXPECT_EQ(e.r.smbase, 0xa0000u);
	/* A saved state the control-register checks refuse: a triple fault. */
	smm_regs64(&e.r);
	smm_enter(&e, true);
	memcpy(smram_area + 0x148, &(uint64_t){ X86_CR4_PAE | (1ull << 31) }, 8);
	EXPECT_EQ(EMU(&e, 0x0f, 0xaa), X86_EMU_SHUTDOWN);
	smm_regs64(&e.r);
	smm_enter(&e, true);
	memcpy(smram_area + 0x158, &(uint64_t){ X86_CR0_PG }, 8); /* PG without PE */
	EXPECT_EQ(EMU(&e, 0x0f, 0xaa), X86_EMU_SHUTDOWN);
	/* An area that is not RAM: the emulator cannot go on. */
	smm_regs64(&e.r);
	smm_enter(&e, true);
	smram_fail = true;
	EXPECT_EQ(EMU(&e, 0x0f, 0xaa), X86_EMU_UNHANDLED);
	EXPECT_TRUE(e.r.smm); /* nothing changed */
	smram_fail = false;
}

TEST(emulate_rsm_32bit_layout)
{
	struct x86_regs orig;
	struct ectx e;

	/* Without long mode in CPUID: the P6 layout, a 32-bit protected-mode state. */
	ectx_init(&e);
	smm_regs64(&e.r);
	e.r.cr0 = X86_CR0_PE | X86_CR0_ET;
	e.r.cr4 = 0;
	e.r.efer = 0;
	e.r.rip = 0x1234;
	for (unsigned i = 0; i < 8; i++)
		e.r.gpr[i] &= 0xffffffffu;
	e.r.seg[X86_SEG_CS] = (struct x86_segment){ .selector = 8, .limit = 0xffffffff,
						    .type = 0xb, .s = true, .present = true,
						    .db = true, .g = true };
	orig = e.r;
	smm_enter(&e, false);
	ASSERT_EQ(EMU(&e, 0x0f, 0xaa), X86_EMU_DONE);
	for (unsigned i = 0; i < 8; i++)
		EXPECT_EQ(e.r.gpr[i], orig.gpr[i]);
	EXPECT_EQ(e.r.rip, 0x1234u);
	EXPECT_EQ(e.r.cr0, orig.cr0);
	EXPECT_EQ(x86_cpu_mode(&e.r), X86_MODE_32);
	EXPECT_EQ(e.r.seg[X86_SEG_CS].selector, 8u);
}

TEST(emulate_real_mode)
{
	struct ectx e;

	ectx_init(&e);
	e.r.cr0 = X86_CR0_ET;
	e.r.efer = 0;
	e.r.cr4 = 0;
	e.r.rip = 0x100;
	e.r.seg[X86_SEG_CS] = (struct x86_segment){ .selector = 0x1000, .base = 0x10000,
						    .limit = 0xffff, .type = 0xb, .s = true,
						    .present = true };
	ASSERT_EQ(x86_cpu_mode(&e.r), X86_MODE_16);
	/* mov al,0xfe: AL only. */
	e.r.gpr[X86_RAX] = 0x1234;
	ASSERT_EQ(EMU(&e, 0xb0, 0xfe), X86_EMU_DONE);
	EXPECT_EQ(e.r.gpr[X86_RAX], 0x12feu);
	EXPECT_EQ(e.r.rip, 0x102u);
	/* jmp $-2 (to itself); a 16-bit jump wraps IP within the segment. */
	ASSERT_EQ(EMU(&e, 0xeb, 0xfe), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x102u);
	e.r.rip = 0xfffe;
	ASSERT_EQ(EMU(&e, 0xe9, 0x10, 0x00), X86_EMU_DONE);
	EXPECT_EQ(e.r.rip, 0x11u);
	/* A far JMP and MOV to a segment register: base = selector << 4. */
	ASSERT_EQ(EMU(&e, 0xea, 0x00, 0x10, 0x00, 0x20), X86_EMU_DONE);
	EXPECT_EQ(e.r.seg[X86_SEG_CS].base, 0x20000u);
	EXPECT_EQ(e.r.seg[X86_SEG_CS].selector, 0x2000u);
	EXPECT_EQ(e.r.rip, 0x1000u);
	e.r.gpr[X86_RAX] = 0x3456;
	ASSERT_EQ(EMU(&e, 0x8e, 0xd8), X86_EMU_DONE); /* mov ds,ax */
	EXPECT_EQ(e.r.seg[X86_SEG_DS].base, 0x34560u);
	/* A real-mode IRET is not modelled: an emulation failure, not a guess. */
	EXPECT_EQ(EMU(&e, 0xcf), X86_EMU_UNHANDLED);
}

/* Random bytes in every mode: the decoder never reads past what it was
 * given (ASan sees the exact-size heap copy), and the emulator, on random
 * registers, never writes registers unless it reports DONE or HLT. */
TEST(fuzz_robustness)
{
	static const uint8_t favour[] = { 0x0f, 0x01, 0x22, 0x20, 0x66, 0x67, 0xf3, 0xf0, 0x48,
					  0x6c, 0x6f, 0xcf, 0x9d, 0x00, 0x8b, 0x89 };
	unsigned seed = 777, decoded = 0, done = 0;
	struct tmem m = { .base = gmem, .shadow = gmem, .size = sizeof(gmem),
			  .msr_mode = X86_MSR_EXIT };

	for (unsigned iter = 0; iter < 200000; iter++) {
		uint8_t b[15];
		unsigned avail, mode;
		struct x86_insn in;

		for (unsigned i = 0; i < 15; i++) {
			seed = seed * 1103515245u + 12345u;
			b[i] = (seed >> 20) & 1 ? favour[(seed >> 16) % sizeof(favour)]
						: (uint8_t)(seed >> 8);
		}
		seed = seed * 1103515245u + 12345u;
		avail = 1 + (seed >> 16) % 15;
		mode = (seed >> 24) % 3;
		uint8_t *copy = malloc(avail);

		ASSERT_NOT_NULL(copy);
		memcpy(copy, b, avail);
		int rc = x86_decode(copy, avail, mode == 0 ? M16 : mode == 1 ? M32 : M64, &in);

		free(copy);
		if (rc)
			continue;
		ASSERT_LE(in.len, avail);
		decoded++;
		struct x86_regs r, before;
		struct x86_emu emu;
		struct x86_emu_result res;

		regs64(&r);
		if (mode != 2) {
			r.efer = 0;
			r.cr4 = X86_CR4_OSXSAVE;
			r.seg[X86_SEG_CS].l = false;
			r.seg[X86_SEG_CS].db = mode == 1;
		}
		for (int i = 0; i < 16; i++) {
			seed = seed * 1103515245u + 12345u;
			r.gpr[i] = (seed >> 12) & 1 ? (uint64_t)(gmem + (seed >> 16) % sizeof(gmem))
						    : (uint64_t)seed * 0x9e3779b97f4a7c15ull;
		}
		r.rflags = 0x2 | ((uint64_t)seed & 0x8d5);
		r.gdt = (struct x86_dtable){ .base = (uint64_t)gmem, .limit = 0xfff };
		before = r;
		x86_emu_init(&emu, &tops, &m, &tmodel, pio_page);
		int st = x86_emulate(&emu, &r, &in, &res);

		for (int k = 0; k < 3 && (st == X86_EMU_EXIT_IO || st == X86_EMU_EXIT_MMIO ||
					  st == X86_EMU_EXIT_MSR || st == X86_EMU_EXIT_HYPERCALL);
		     k++) {
			ASSERT_EQ(memcmp(&r, &before, sizeof(r)), 0);
			st = x86_emu_complete(&emu, &r, &res);
		}
		if (st == X86_EMU_EXCEPTION || st == X86_EMU_UNHANDLED)
			ASSERT_MSG(memcmp(&r, &before, sizeof(r)) == 0, "%s: status %d wrote registers",
				   x86_op_name(in.op), st);
		if (st == X86_EMU_DONE)
			done++;
	}
	DIAG("%u random decodes, %u emulated to completion", decoded, done);
	EXPECT_GT(done, 1000u);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
