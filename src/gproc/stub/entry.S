/* SPDX-License-Identifier: MIT */
/*
 * The stub's assembly: process entry, the signal restorer, a raw thread
 * clone and the fault-tolerant byte copy the trap handler reads guest
 * instruction bytes with.  No TLS anywhere: the guest owns FS/GS base.
 */
	.text

	.globl _start
	.type _start, @function
_start:
	xor %ebp, %ebp
	mov %rsp, %rdi		/* argc, argv, envp, auxv */
	and $-16, %rsp
	call gp_stub_main
	ud2

	/* sa_restorer: rt_sigreturn with the frame the kernel built. */
	.globl gp_restorer
	.type gp_restorer, @function
gp_restorer:
	mov $15, %eax
	syscall
	ud2

	/*
	 * long gp_clone(unsigned long flags, void *stack_top, int *ptid,
	 *               int *ctid, void (*fn)(unsigned long), unsigned long arg)
	 * The child starts on @stack_top, calls fn(arg) and exits the thread.
	 */
	.globl gp_clone
	.type gp_clone, @function
gp_clone:
	sub $16, %rsi
	mov %r8, (%rsi)
	mov %r9, 8(%rsi)
	mov %rcx, %r10
	xor %r8d, %r8d
	mov $56, %eax
	syscall
	test %rax, %rax
	jnz 1f
	pop %rax
	pop %rdi
	xor %ebp, %ebp
	call *%rax
	mov $60, %eax
	xor %edi, %edi
	syscall
	ud2
1:	ret

	/*
	 * unsigned long gp_probe_copy(void *dst, const void *src, unsigned long n)
	 * Copies byte by byte; a fault on the load at gp_probe_load makes the
	 * SIGSEGV/SIGBUS handler resume at gp_probe_done, so the result is the
	 * number of bytes that were readable.
	 */
	.globl gp_probe_copy, gp_probe_load, gp_probe_done
	.type gp_probe_copy, @function
gp_probe_copy:
	xor %eax, %eax
2:	cmp %rdx, %rax
	jae gp_probe_done
gp_probe_load:
	movb (%rsi,%rax), %cl
	movb %cl, (%rdi,%rax)
	inc %rax
	jmp 2b
gp_probe_done:
	ret

	.section .note.GNU-stack, "", @progbits
