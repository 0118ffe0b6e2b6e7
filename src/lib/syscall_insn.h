/* SPDX-License-Identifier: MIT */
/*
 * One x86-64 `syscall` instruction, inline in the caller's text, returning
 * the kernel's raw answer (-errno on failure).  Freestanding: no libc, so
 * that both the library (src/lib/sys_raw.h) and the guest-process stub
 * (src/gproc/stub/, built without libc) use it.
 */
#ifndef GM_LIB_SYSCALL_INSN_H
#define GM_LIB_SYSCALL_INSN_H

#if defined(__x86_64__)
static inline long gm_syscall_insn6(long nr, long a1, long a2, long a3, long a4, long a5,
				    long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

/*
 * The same through @gate, code elsewhere that makes the call and returns (its
 * address is what a seccomp filter sees).  The call pushes a return
 * address: the red zone below the stack pointer is stepped over first.
 */
static inline long gm_syscall_gate6(unsigned long gate, long nr, long a1, long a2, long a3,
				    long a4, long a5, long a6)
{
	register long r10 __asm__("r10") = a4;
	register long r8 __asm__("r8") = a5;
	register long r9 __asm__("r9") = a6;
	long ret;

	__asm__ volatile("sub $128, %%rsp\n\tcall *%[gate]\n\tadd $128, %%rsp"
			 : "=a"(ret)
			 : "a"(nr), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8), "r"(r9),
			   [gate] "r"(gate)
			 : "rcx", "r11", "memory", "cc");
	return ret;
}
#endif

#endif
