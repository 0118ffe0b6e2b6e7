/* SPDX-License-Identifier: MIT */
/*
 * 32-bit guest code on the x86 backend (src/vcpu/x86_pm32.h), end to end
 * through the uAPI: the guest runs natively in the host's compatibility-
 * mode code segment.  Protected mode with 2-level paging (4 KiB pages and
 * a 4 MiB PSE page) doing port I/O, the guest page-table walk's accessed
 * and dirty bits in 4-byte entries, a #PF delivered through a 32-bit IDT
 * with CR2, error code and the 32-bit frame, a write-protection fault,
 * PAE paging with an NX fault, protected mode without paging (identity,
 * MMIO exit above the memslot), a memory-fault exit, long-mode
 * compatibility mode, the states that stay internal errors (16-bit code,
 * real mode, non-flat segments), segment loads and a far jump into long
 * mode that the host refuses and the emulator performs from the guest's
 * GDT, and system-call instructions (INT $0x80 in 32-bit code, and a
 * 64-bit SYSCALL), which the host refuses after the instruction.
 *
 * The VM is x86_vm.h's without an in-kernel irqchip (HLT exits), started
 * with vm_start32().  0x100000 is a data page; the #PF handler is at
 * 0x14000.
 */
#include <sys/auxv.h>

#include "harness.h"
#include "x86_vm.h"

#define PORT2 0x11
#define DATA 0x100000ULL
#define HANDLER 0x14000ULL

static void code(struct vm *m, uint64_t gpa, const uint8_t *bytes, size_t n)
{
	memcpy(m->mem + gpa, bytes, n);
}

static uint32_t get32(struct vm *m, uint64_t gpa)
{
	uint32_t v;

	memcpy(&v, m->mem + gpa, 4);
	return v;
}

static uint64_t get64(struct vm *m, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, m->mem + gpa, 8);
	return v;
}

/* Run to an OUT of 4 bytes to @port and return its value. */
static uint32_t out32(struct vm *m, uint16_t port)
{
	uint32_t v;

	expect_io(m, KVM_EXIT_IO_OUT, port, 4);
	memcpy(&v, pio_data(m), 4);
	return v;
}

static void expect_hlt(struct vm *m)
{
	ASSERT_EQ(run(m), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_HLT);
}

static void expect_internal_error(struct vm *m)
{
	ASSERT_EQ(run(m), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ(m->run->internal.suberror, KVM_INTERNAL_ERROR_EMULATION);
}

/* The #PF handler: CR2, then the error code, EIP and CS it pops, to PORT2. */
static const uint8_t pf_handler[] = {
	0x0f, 0x20, 0xd0, /* mov %cr2, %eax */
	0xe7, PORT2,	  /* out %eax, $PORT2 */
	0x58,		  /* pop %eax: error code */
	0xe7, PORT2,
	0x58, /* pop %eax: EIP */
	0xe7, PORT2,
	0x58, /* pop %eax: CS */
	0xe7, PORT2,
	0xf4,
};

TEST(paging_2level_out_and_accessed_dirty)
{
	static const uint8_t c[] = {
		0xb8, 0x2a, 0x00, 0x00, 0x00,	    /* mov $0x2a, %eax */
		0xe7, PORT,			    /* out %eax, $PORT */
		0xa3, 0x00, 0x00, 0x50, 0x00,	    /* mov %eax, 0x500000 (4 MiB alias) */
		0x8b, 0x1d, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %ebx (4 KiB page) */
		0x89, 0xd8,			    /* mov %ebx, %eax */
		0x40, /* inc %eax (a REX prefix in 64-bit mode: proves 32-bit) */
		0xe7, PORT,			    /* out %eax, $PORT */
		0xf4,				    /* hlt */
	};
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start32(&m, CODE, PM32_2LEVEL);
	ASSERT_EQ(out32(&m, PORT), 0x2a);
	ASSERT_EQ(out32(&m, PORT), 0x2b);
	expect_hlt(&m);
	ASSERT_EQ(get32(&m, DATA), 0x2a);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE + sizeof(c));
	ASSERT_EQ(r.rax, 0x2b);
	ASSERT_EQ(r.rbx, 0x2a);
	/* The walk set A on the PDE and the PTEs it used, D only on the
	 * written 4 MiB page; the untouched PTE stays as it was. */
	ASSERT_EQ(get32(&m, PM32_PD) & 0x60, 0x20);
	ASSERT_EQ(get32(&m, PM32_PD + 4) & 0x60, 0x60);
	ASSERT_EQ(get32(&m, pm32_pte(PM32_2LEVEL, CODE)) & 0x60, 0x20);
	ASSERT_EQ(get32(&m, pm32_pte(PM32_2LEVEL, DATA)) & 0x60, 0x20);
	ASSERT_EQ(get32(&m, pm32_pte(PM32_2LEVEL, DATA + 0x1000)), (uint32_t)(DATA + 0x1000) | 3);
	vm_close(&m);
}

TEST(page_fault_through_a_32bit_idt)
{
	static const uint8_t c[] = {
		0xa1, 0x00, 0x00, 0x15, 0x00, /* mov 0x150000, %eax: not present */
		0xf4,
	};
	struct kvm_sregs s;
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, pf_handler, sizeof(pf_handler));
	idt32_gate(&m, 14, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	put32(m.mem, pm32_pte(PM32_2LEVEL, 0x150000), 0);
	ASSERT_EQ(out32(&m, PORT2), 0x150000); /* CR2 */
	ASSERT_EQ(out32(&m, PORT2), 0);	       /* not present, read, supervisor */
	ASSERT_EQ(out32(&m, PORT2), CODE);     /* EIP of the faulting instruction */
	ASSERT_EQ(out32(&m, PORT2), PM32_CS);
	expect_hlt(&m);
	/* A 32-bit frame: EFLAGS CS EIP error code, 4 bytes each (no stack
	 * switch at CPL 0); three popped. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rsp, STACK_TOP - 4);
	/* EFLAGS: IF clear; RF set, as for every fault-class exception. */
	ASSERT_EQ(get32(&m, STACK_TOP - 4), 0x10002);
	ASSERT_EQ(r.rip, HANDLER + sizeof(pf_handler));
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.cr2, 0x150000);
	ASSERT_EQ(s.cs.selector, PM32_CS);
	vm_close(&m);
}

/* The handler maps the page and returns with IRET: the load runs again. */
TEST(page_fault_handler_maps_and_irets)
{
	static const uint8_t c[] = {
		0xa1, 0x00, 0x00, 0x15, 0x00, /* mov 0x150000, %eax: not present */
		0xe7, PORT,		      /* out %eax, $PORT */
		0xf4,
	};
	uint8_t h[] = {
		0xc7, 0x05, 0, 0, 0, 0, 0x03, 0x00, 0x15, 0x00, /* movl $0x150003, <pte> */
		0x83, 0xc4, 0x04,			      /* add $4, %esp: error code */
		0xcf,					      /* iret */
	};
	uint32_t pte = (uint32_t)pm32_pte(PM32_2LEVEL, 0x150000);
	struct kvm_regs r;
	struct vm m;

	memcpy(h + 2, &pte, 4);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, h, sizeof(h));
	put32(m.mem, 0x150000, 0xabcd);
	idt32_gate(&m, 14, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	put32(m.mem, pte, 0);
	ASSERT_EQ(out32(&m, PORT), 0xabcd);
	expect_hlt(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rsp, STACK_TOP);
	ASSERT_EQ(get32(&m, pte), 0x150000 | 0x23); /* A set by the retried walk */
	vm_close(&m);
}

/*
 * Guest code far-jumps to a selector that, in the host's GDT, is the
 * 64-bit user code segment: the CPU takes it natively (the guest's own GDT
 * is not the one loaded).  The backend notices the changed code segment
 * at the next stop and ends KVM_RUN with an internal error.
 */
TEST(far_jump_into_a_host_segment_is_an_internal_error)
{
	uint8_t c[] = {
		0xea, 0, 0, 0, 0, 0x33, 0x00, /* ljmp $0x33, $CODE + 7 */
		0xf4,			      /* hlt: #GP at CPL3, in 64-bit mode */
	};
	uint32_t target = (uint32_t)CODE + 7;
	struct kvm_regs r;
	struct vm m;

	memcpy(c + 1, &target, 4);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start32(&m, CODE, PM32_2LEVEL);
	expect_internal_error(&m);
	/* The jump itself ran natively: the stop was at the HLT. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE + 7);
	vm_close(&m);
}

/*
 * INVLPG of any address in a 4 MiB page drops the whole page's
 * translation, also the 2 MiB half that the address is not in.
 */
TEST(invlpg_covers_a_whole_4mib_page)
{
	uint8_t c[] = {
		0xa1, 0x00, 0x00, 0x50, 0x00,		/* mov 0x500000, %eax */
		0xe7, PORT,				/* out %eax, $PORT */
		0xc7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0,	/* movl $0, <PDE 1> */
		0x0f, 0x01, 0x3d, 0x00, 0x00, 0x60, 0x00, /* invlpg 0x600000: other half */
		0xa1, 0x00, 0x00, 0x50, 0x00,		/* mov 0x500000, %eax: #PF */
		0xe7, PORT,
		0xf4,
	};
	static const uint8_t h[] = {
		0x0f, 0x20, 0xd0, /* mov %cr2, %eax */
		0xe7, PORT2,
		0xf4,
	};
	uint32_t pde = (uint32_t)PM32_PD + 4;
	struct vm m;

	memcpy(c + 9, &pde, 4);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, h, sizeof(h));
	put32(m.mem, DATA, 0x1234);
	idt32_gate(&m, 14, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	ASSERT_EQ(out32(&m, PORT), 0x1234);
	ASSERT_EQ(out32(&m, PORT2), 0x500000);
	expect_hlt(&m);
	vm_close(&m);
}

/* The same for a 2 MiB page of 4-level paging: the INVLPG names a page
 * of it that was never shadowed, while another is. */
TEST(invlpg_covers_a_whole_2mib_page_64)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x40, /* mov 0x40100000, %eax */
		0xe7, PORT,
		0x48, 0xc7, 0x04, 0x25, 0x00, 0x70, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00,			  /* movq $0, 0x7000: the PDE */
		0x0f, 0x01, 0x3c, 0x25, 0x00, 0x00, 0x00, 0x40, /* invlpg 0x40000000 */
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x40, /* mov 0x40100000, %eax: #PF */
		0xe7, PORT,
		0xf4,
	};
	static const uint8_t h[] = {
		0x0f, 0x20, 0xd0, /* mov %cr2, %rax */
		0xe7, PORT2,
		0xf4,
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */
	struct vm m;

	vm_open_irqchip(&m, false);
	/* 1 GiB -> PD at 0x7000, whose first 2 MiB page is gpa 0. */
	put64(m.mem, 0x2008, 0x7000 | 3);
	put64(m.mem, 0x7000, 0x000000 | 0x83);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, h, sizeof(h));
	memcpy(m.mem + 0x5000 + 14 * 16, gate, sizeof(gate));
	put32(m.mem, DATA, 0x4321);
	vm_start(&m, CODE);
	ASSERT_EQ(out32(&m, PORT), 0x4321);
	ASSERT_EQ(out32(&m, PORT2), 0x40100000);
	expect_hlt(&m);
	vm_close(&m);
}

TEST(write_protection_fault_2level)
{
	static const uint8_t c[] = {
		0xb8, 0x07, 0x00, 0x00, 0x00, /* mov $7, %eax */
		0xa3, 0x00, 0x00, 0x10, 0x00, /* mov %eax, 0x100000: read-only page */
		0xf4,
	};
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, pf_handler, sizeof(pf_handler));
	idt32_gate(&m, 14, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	put32(m.mem, pm32_pte(PM32_2LEVEL, DATA), (uint32_t)DATA | 1);
	ASSERT_EQ(out32(&m, PORT2), DATA);
	ASSERT_EQ(out32(&m, PORT2), 3); /* present, write */
	ASSERT_EQ(out32(&m, PORT2), CODE + 5);
	ASSERT_EQ(out32(&m, PORT2), PM32_CS);
	expect_hlt(&m);
	ASSERT_EQ(get32(&m, DATA), 0);
	ASSERT_EQ(get32(&m, pm32_pte(PM32_2LEVEL, DATA)), (uint32_t)DATA | 1); /* no A, no D */
	vm_close(&m);
}

TEST(pae_paging_and_nx)
{
	static const uint8_t c[] = {
		0xb8, 0x2a, 0x00, 0x00, 0x00,	    /* mov $0x2a, %eax */
		0xa3, 0x00, 0x00, 0x30, 0x00,	    /* mov %eax, 0x300000 (2 MiB alias) */
		0x8b, 0x1d, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %ebx */
		0x89, 0xd8,			    /* mov %ebx, %eax */
		0xe7, PORT,			    /* out %eax, $PORT */
		0xb8, 0x00, 0x20, 0x01, 0x00,	    /* mov $0x12000, %eax */
		0xff, 0xe0,			    /* jmp *%eax: an NX page */
	};
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, pf_handler, sizeof(pf_handler));
	m.mem[0x12000] = 0xf4;
	idt32_gate(&m, 14, HANDLER);
	vm_start32(&m, CODE, PM32_PAE);
	put64(m.mem, pm32_pte(PM32_PAE, 0x12000), 0x12000 | 3 | (1ULL << 63));
	ASSERT_EQ(out32(&m, PORT), 0x2a);
	ASSERT_EQ(get32(&m, DATA), 0x2a);
	ASSERT_EQ(out32(&m, PORT2), 0x12000);
	ASSERT_EQ(out32(&m, PORT2), 0x11); /* present, instruction fetch */
	ASSERT_EQ(out32(&m, PORT2), 0x12000);
	ASSERT_EQ(out32(&m, PORT2), PM32_CS);
	expect_hlt(&m);
	/* 8-byte entries: A on the PDE, A and D on the written 2 MiB page,
	 * A only on the read 4 KiB page; the PDPTE has no A bit. */
	ASSERT_EQ(get64(&m, PM32_PD) & 0x60, 0x20);
	ASSERT_EQ(get64(&m, PM32_PD + 8) & 0x60, 0x60);
	ASSERT_EQ(get64(&m, pm32_pte(PM32_PAE, DATA)) & 0x60, 0x20);
	ASSERT_EQ(get64(&m, PM32_PDPT), PM32_PD | 1);
	vm_close(&m);
}

TEST(no_paging_identity_and_mmio)
{
	static const uint8_t c[] = {
		0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $0x2a, %eax */
		0xa3, 0x00, 0x00, 0x10, 0x00, /* mov %eax, 0x100000 */
		0xe7, PORT,		      /* out %eax, $PORT */
		0xa1, 0x00, 0x00, 0x30, 0x00, /* mov 0x300000, %eax: no memslot */
		0xe7, PORT,		      /* out %eax, $PORT */
		0xf4,
	};
	static const uint8_t mmio[4] = { 0x44, 0x33, 0x22, 0x11 };
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start32(&m, CODE, PM32_NONE);
	ASSERT_EQ(out32(&m, PORT), 0x2a);
	ASSERT_EQ(get32(&m, DATA), 0x2a);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(m.run->mmio.phys_addr, 0x300000);
	ASSERT_EQ(m.run->mmio.len, 4);
	ASSERT_EQ(m.run->mmio.is_write, 0);
	memcpy(m.run->mmio.data, mmio, 4);
	ASSERT_EQ(out32(&m, PORT), 0x11223344);
	expect_hlt(&m);
	vm_close(&m);
}

TEST(memory_fault_exit_from_32bit_code)
{
	static const uint8_t c[] = {
		0xa1, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %eax */
		0xe7, PORT,
		0xf4,
	};
	struct kvm_memory_attributes attr = { .address = DATA, .size = 4096,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct vm m;

	vm_create(&m, KVM_X86_SW_PROTECTED_VM, false);
	code(&m, CODE, c, sizeof(c));
	put32(m.mem, DATA, 0x5a5a);
	vm_start32(&m, CODE, PM32_2LEVEL);
	/* Private, but the slot has no guest_memfd: KVM exits to the VMM. */
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	expect_private_fault(&m, DATA);
	attr.attributes = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	ASSERT_EQ(out32(&m, PORT), 0x5a5a);
	expect_hlt(&m);
	vm_close(&m);
}

/* Without paging the shadow maps runs of pages at once: a private page
 * inside such a run still gives its own memory-fault exit. */
TEST(no_paging_memory_fault_inside_a_run)
{
	static const uint8_t c[] = {
		0xa1, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %eax */
		0xe7, PORT,
		0xa1, 0x00, 0x20, 0x10, 0x00, /* mov 0x102000, %eax: shared, mapped */
		0xe7, PORT,
		0xa1, 0x00, 0x10, 0x10, 0x00, /* mov 0x101000, %eax: private */
		0xe7, PORT,
		0xf4,
	};
	struct kvm_memory_attributes attr = { .address = DATA + 0x1000, .size = 4096,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct vm m;

	vm_create(&m, KVM_X86_SW_PROTECTED_VM, false);
	code(&m, CODE, c, sizeof(c));
	put32(m.mem, DATA, 1);
	put32(m.mem, DATA + 0x1000, 2);
	put32(m.mem, DATA + 0x2000, 3);
	vm_start32(&m, CODE, PM32_NONE);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	ASSERT_EQ(out32(&m, PORT), 1);
	ASSERT_EQ(out32(&m, PORT), 3);
	expect_private_fault(&m, DATA + 0x1000);
	attr.attributes = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	ASSERT_EQ(out32(&m, PORT), 2);
	expect_hlt(&m);
	vm_close(&m);
}

/* EFER.LMA with a 32-bit code segment: compatibility mode on the 64-bit
 * page tables; a #PF there goes through the 64-bit IDT into 64-bit code. */
TEST(long_mode_compatibility_mode)
{
	static const uint8_t c[] = {
		0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $0x2a, %eax */
		0xe7, PORT,		      /* out %eax, $PORT */
		0xa1, 0x00, 0x00, 0x00, 0x40, /* mov 0x40000000, %eax: not mapped */
		0xf4,
	};
	static const uint8_t handler64[] = {
		0x0f, 0x20, 0xd0, /* mov %cr2, %rax */
		0xe7, PORT2,	  /* out %eax, $PORT2 */
		0xf4,
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */
	struct kvm_sregs s;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, handler64, sizeof(handler64));
	memcpy(m.mem + 0x5000 + 14 * 16, gate, sizeof(gate));
	put64(m.mem, 0x6018, 0x00cf9b000000ffffULL); /* 32-bit code */
	vm_start(&m, CODE);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	s.cs.l = 0;
	s.cs.db = 1;
	s.cs.selector = 0x18;
	s.gdt.limit = 31;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(out32(&m, PORT), 0x2a);
	ASSERT_EQ(out32(&m, PORT2), 0x40000000);
	expect_hlt(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.cs.l, 1); /* the handler's 64-bit code segment */
	vm_close(&m);
}

/* States the backend does not run: an internal error, never a crash, and
 * the vCPU runs again once the VMM fixes the state. */
TEST(unsupported_32bit_states_are_internal_errors)
{
	static const uint8_t c[] = { 0xe7, PORT, 0xf4 }; /* out %eax, $PORT; hlt */
	struct kvm_sregs s, good;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start32(&m, CODE, PM32_2LEVEL);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &good), 0);
	for (int k = 0; k < 6; k++) {
		s = good;
		switch (k) {
		case 0: /* 16-bit code */
			s.cs.db = 0;
			break;
		case 1: /* real mode */
			s.cr0 &= ~0x80000001ULL;
			break;
		case 2: /* a data segment base */
			s.ds.base = 0x1000;
			break;
		case 3: /* a code segment limit */
			s.cs.limit = 0xfffff;
			break;
		case 4: /* an expand-down stack */
			s.ss.type = 7;
			break;
		case 5: /* an FS limit */
			s.fs.limit = 0xffff;
			break;
		}
		ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &s), 0);
		expect_internal_error(&m);
	}
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &good), 0);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	expect_hlt(&m);
	vm_close(&m);
}

/* A guest FS base below 4 GiB is honoured in compatibility mode. */
TEST(fs_base_honoured)
{
	static const uint8_t c[] = {
		0x64, 0xa1, 0x10, 0x00, 0x00, 0x00, /* mov %fs:0x10, %eax */
		0xe7, PORT,
		0xf4,
	};
	struct kvm_sregs s;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	put32(m.mem, DATA + 0x10, 0xfeedf00d);
	vm_start32(&m, CODE, PM32_2LEVEL);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	s.fs.base = DATA;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &s), 0);
	/* The stub loads a non-zero base only with FSGSBASE (x86_pm32.h). */
	if (!(getauxval(AT_HWCAP2) & 2 /* HWCAP2_FSGSBASE */)) {
		expect_internal_error(&m);
		vm_close(&m);
		return;
	}
	ASSERT_EQ(out32(&m, PORT), 0xfeedf00d);
	expect_hlt(&m);
	vm_close(&m);
}

/* MOV to DS and SS with the guest's selectors (the host's GDT refuses
 * them at CPL3): emulated from the guest's GDT, and the guest runs on. */
TEST(segment_loads_from_the_guest_gdt)
{
	static const uint8_t c[] = {
		0x66, 0xb8, 0x10, 0x00, /* mov $0x10, %ax */
		0x8e, 0xd8,		/* mov %ax, %ds */
		0x8e, 0xd0,		/* mov %ax, %ss */
		0xa1, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %eax */
		0xe7, PORT,
		0xf4,
	};
	struct kvm_sregs s;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	put32(m.mem, DATA, 0x600d);
	vm_start32(&m, CODE, PM32_2LEVEL);
	/* Start from other (still flat) selectors: the loads must show. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	s.ds.selector = s.ss.selector = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(out32(&m, PORT), 0x600d);
	expect_hlt(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.ds.selector, 0x10);
	ASSERT_EQ(s.ss.selector, 0x10);
	ASSERT_EQ(s.ds.limit, 0xffffffff);
	ASSERT_EQ(s.ds.db, 1);
	vm_close(&m);
}

/* A selector past the guest's GDT limit: #GP with the selector as the
 * error code, through the 32-bit IDT (the handler prints CR2 first). */
TEST(segment_load_past_the_gdt_limit)
{
	static const uint8_t c[] = {
		0x66, 0xb8, 0x40, 0x00, /* mov $0x40, %ax */
		0x8e, 0xd8,		/* mov %ax, %ds */
		0xf4,
	};
	struct kvm_sregs s;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, pf_handler, sizeof(pf_handler));
	idt32_gate(&m, 13, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	(void)out32(&m, PORT2);		   /* CR2: untouched */
	ASSERT_EQ(out32(&m, PORT2), 0x40); /* the error code */
	ASSERT_EQ(out32(&m, PORT2), CODE + 4);
	ASSERT_EQ(out32(&m, PORT2), PM32_CS);
	expect_hlt(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.ds.selector, 0x10);
	vm_close(&m);
}

/*
 * The boot path into long mode from 32-bit code: CR3, CR4.PAE, EFER.LME,
 * CR0.PG (compatibility mode from there on), then a far jump to the
 * guest's 64-bit code segment, which the host refuses and the emulator
 * performs: the next instruction runs in 64-bit mode.
 */
TEST(far_jump_from_32bit_into_long_mode)
{
	uint8_t c[] = {
		0xb8, 0x00, 0x10, 0x00, 0x00, /* mov $0x1000, %eax: the 4-level tables */
		0x0f, 0x22, 0xd8,	      /* mov %eax, %cr3 */
		0x0f, 0x20, 0xe0,	      /* mov %cr4, %eax */
		0x83, 0xc8, 0x20,	      /* or $0x20, %eax: PAE */
		0x0f, 0x22, 0xe0,	      /* mov %eax, %cr4 */
		0xb9, 0x80, 0x00, 0x00, 0xc0, /* mov $0xc0000080, %ecx: EFER */
		0x0f, 0x32,		      /* rdmsr */
		0x0d, 0x00, 0x01, 0x00, 0x00, /* or $0x100, %eax: LME */
		0x0f, 0x30,		      /* wrmsr */
		0x0f, 0x20, 0xc0,	      /* mov %cr0, %eax */
		0x0d, 0x00, 0x00, 0x00, 0x80, /* or $0x80000000, %eax: PG */
		0x0f, 0x22, 0xc0,	      /* mov %eax, %cr0 */
		0xb8, 0x07, 0x00, 0x00, 0x00, /* mov $7, %eax: compatibility mode */
		0xe7, PORT,		      /* out %eax, $PORT */
		0xea, 0, 0, 0, 0, 0x08, 0x00, /* ljmp $0x08, $CODE64 */
	};
	static const uint8_t c64[] = {
		0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* movabs ..., %rax */
		0x48, 0xc1, 0xe8, 0x20, /* shr $32, %rax */
		0xe7, PORT,		/* out %eax, $PORT */
		0xf4,
	};
	const uint32_t code64 = (uint32_t)CODE + 0x800;
	struct kvm_sregs s;
	struct vm m;

	memcpy(c + sizeof(c) - 6, &code64, 4);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, code64, c64, sizeof(c64));
	vm_start32(&m, CODE, PM32_NONE);
	ASSERT_EQ(out32(&m, PORT), 7);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.efer & 0x500, 0x500); /* LME and LMA */
	ASSERT_EQ(s.cs.l, 0);
	ASSERT_EQ(out32(&m, PORT), 0x11223344);
	expect_hlt(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	ASSERT_EQ(s.cs.selector, 0x08);
	ASSERT_EQ(s.cs.l, 1);
	vm_close(&m);
}

/* INT n in 32-bit code through a 32-bit interrupt gate. */
TEST(software_interrupt_through_a_32bit_idt)
{
	static const uint8_t c[] = {
		0xcd, 0x80, /* int $0x80 */
		0xe7, PORT, /* out %eax, $PORT */
		0xf4,
	};
	static const uint8_t h[] = {
		0x8b, 0x04, 0x24, /* mov (%esp), %eax: the return EIP */
		0xe7, PORT2,
		0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $0x2a, %eax */
		0xcf,			      /* iret */
	};
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, h, sizeof(h));
	idt32_gate(&m, 0x80, HANDLER);
	vm_start32(&m, CODE, PM32_2LEVEL);
	ASSERT_EQ(out32(&m, PORT2), CODE + 2);
	ASSERT_EQ(out32(&m, PORT), 0x2a);
	expect_hlt(&m);
	vm_close(&m);
}

/*
 * The host reports a guest's system-call instruction after it has been
 * refused (seccomp): the backend goes back to it.  Here a 64-bit SYSCALL,
 * beside the 32-bit INT $0x80 above: it must reach LSTAR with RCX the
 * address after it, not skip to the next instruction.
 */
TEST(syscall_64_reaches_lstar)
{
	static const uint8_t c[] = {
		0x0f, 0x05, /* syscall */
		0xe7, PORT, /* out %eax, $PORT: not reached */
		0xf4,
	};
	static const uint8_t h[] = {
		0x48, 0x89, 0xc8, /* mov %rcx, %rax */
		0xe7, PORT2,	  /* out %eax, $PORT2 */
		0xf4,
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[3];
	} msrs = { .hdr.nmsrs = 3,
		   .e = { { .index = 0xc0000081, .data = 0x8ULL << 32 }, /* STAR */
			  { .index = 0xc0000082, .data = HANDLER },	 /* LSTAR */
			  { .index = 0xc0000084, .data = 0 } } };	 /* FMASK */
	struct kvm_sregs s;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, HANDLER, h, sizeof(h));
	vm_start(&m, CODE);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_SREGS, &s), 0);
	s.efer |= 1; /* SCE */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_MSRS, &msrs), 3);
	ASSERT_EQ(out32(&m, PORT2), CODE + 2);
	expect_hlt(&m);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
