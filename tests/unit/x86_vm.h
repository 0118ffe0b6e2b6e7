/* SPDX-License-Identifier: MIT */
/*
 * A small 64-bit machine-code VM driven through the uAPI, for the x86
 * backend's unit tests: one 2 MiB memslot at 0, 0-4 MiB identity mapped
 * with 2 MiB pages, plus the 2 MiB page at 0xfee00000 (the APIC page, no
 * memslot) through a second page directory at 0x4000.  IDT at 0x5000, GDT
 * at 0x6000, code from 0x10000, stack below 0x30000.  vm_start32() starts
 * the same VM in 32-bit protected mode instead (its tables at 0x9000-0xdfff).
 */
#ifndef TESTS_UNIT_X86_VM_H
#define TESTS_UNIT_X86_VM_H

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "harness.h"

#define MEM_SIZE 0x200000ULL
#define CODE 0x10000ULL
#define STACK_TOP 0x30000ULL
#define PORT 0x10
#define APIC_GPA 0xfee00000ULL
#define MSR_APIC_BASE 0x1b

struct vm {
	int kvm, fd, vcpu;
	struct kvm_run *run;
	uint8_t *mem;
};

static inline void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, 8);
}

/* vm_create() without the vCPU, for VM-wide setup that must come first
 * (a dirty ring); vm_create_vcpu() then completes it. */
static inline void vm_create_novcpu(struct vm *m, unsigned long type, bool irqchip)
{
	struct kvm_userspace_memory_region r = { 0 };

	m->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(m->kvm >= 0);
	m->fd = guestmem_sys_ioctl(m->kvm, KVM_CREATE_VM, type);
	ASSERT_TRUE(m->fd >= 0);
	if (irqchip)
		ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_CREATE_IRQCHIP, 0), 0);
	m->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m->mem != MAP_FAILED);
	r.memory_size = MEM_SIZE;
	r.userspace_addr = (uintptr_t)m->mem;
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	/* Page tables: 0-4 MiB identity with 2 MiB pages, and the APIC page. */
	put64(m->mem, 0x1000, 0x2000 | 3);
	put64(m->mem, 0x2000, 0x3000 | 3);
	put64(m->mem, 0x2018, 0x4000 | 3); /* 3-4 GiB */
	put64(m->mem, 0x3000, 0x000000 | 0x83);
	put64(m->mem, 0x3008, 0x200000 | 0x83);
	put64(m->mem, 0x4000 + 8 * ((APIC_GPA >> 21) & 0x1ff), APIC_GPA | 0x83);
	/* GDT: null, 64-bit code (0x8), data (0x10). */
	put64(m->mem, 0x6008, 0x00af9b000000ffffULL);
	put64(m->mem, 0x6010, 0x00cf93000000ffffULL);
}

static inline void vm_create_vcpu(struct vm *m)
{
	m->vcpu = guestmem_sys_ioctl(m->fd, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(m->vcpu >= 0);
	m->run = guestmem_sys_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	ASSERT_TRUE(m->run != MAP_FAILED);
}

/* A VM of @type; @irqchip: KVM_CREATE_IRQCHIP before the vCPU. */
static inline void vm_create(struct vm *m, unsigned long type, bool irqchip)
{
	vm_create_novcpu(m, type, irqchip);
	vm_create_vcpu(m);
}

static inline void vm_open_irqchip(struct vm *m, bool irqchip)
{
	vm_create(m, 0, irqchip);
}

static inline void vm_close(struct vm *m)
{
	guestmem_sys_munmap(m->run, 3 * 4096);
	guestmem_sys_close(m->vcpu);
	guestmem_sys_close(m->fd);
	guestmem_sys_close(m->kvm);
	munmap(m->mem, MEM_SIZE);
}

/* 64-bit long mode at @rip, flat segments, the IDT at 0x5000. */
static inline void vm_start(struct vm *m, uint64_t rip)
{
	struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11,
				  .present = 1, .dpl = 0, .s = 1, .l = 1, .g = 1 };
	struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3,
				  .present = 1, .dpl = 0, .s = 1, .db = 1, .g = 1 };
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = rip, .rsp = STACK_TOP, .rflags = 2 };

	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_GET_SREGS, &s), 0);
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.tr = (struct kvm_segment){ .limit = 0x67, .type = 11, .present = 1 };
	s.gdt.base = 0x6000;
	s.gdt.limit = 23;
	s.idt.base = 0x5000;
	s.idt.limit = 0xfff;
	s.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
	s.cr3 = 0x1000;
	s.cr4 = 0x620;	    /* PAE | OSFXSR | OSXMMEXCPT */
	s.efer = 0x500;	    /* LME | LMA */
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_REGS, &r), 0);
}

static inline void put32(uint8_t *mem, uint64_t gpa, uint32_t v)
{
	memcpy(mem + gpa, &v, 4);
}

/*
 * 32-bit protected mode (x86_pm32.h).  Paging:
 *  - PM32_NONE: CR0.PG = 0, guest-virtual = guest-physical;
 *  - PM32_2LEVEL: 4-byte entries with CR4.PSE, PD at PM32_PD: 0-4 MiB
 *    identity through a page table of 4 KiB pages at PM32_PT, 4-8 MiB an
 *    alias of 0-4 MiB as one 4 MiB page, and the 4 MiB page holding the
 *    APIC page;
 *  - PM32_PAE: PDPT at PM32_PDPT, 8-byte entries, EFER.NXE: 0-2 MiB
 *    identity through a page table at PM32_PT, 2-4 MiB an alias of 0-2 MiB
 *    as one 2 MiB page, and the 2 MiB APIC page.
 * GDT: 0x10 flat data, 0x18 flat 32-bit code; PM32_IDT holds 8-byte gates
 * (idt32_gate()).
 */
enum pm32_paging { PM32_NONE, PM32_2LEVEL, PM32_PAE };
#define PM32_PD 0x9000ULL
#define PM32_PT 0xa000ULL
#define PM32_PDPT 0xb000ULL
#define PM32_PD_APIC 0xc000ULL
#define PM32_IDT 0xd000ULL
#define PM32_CS 0x18
#define PM32_ALIAS_2LEVEL 0x400000ULL
#define PM32_ALIAS_PAE 0x200000ULL

/* The gpa of the page-table entry mapping the 4 KiB page @gva in 0-2 MiB. */
static inline uint64_t pm32_pte(enum pm32_paging p, uint64_t gva)
{
	return PM32_PT + (gva >> 12) * (p == PM32_PAE ? 8 : 4);
}

/* A 32-bit interrupt gate for @vec to PM32_CS:@handler. */
static inline void idt32_gate(struct vm *m, unsigned vec, uint32_t handler)
{
	put64(m->mem, PM32_IDT + 8 * vec,
	      (handler & 0xffffULL) | ((uint64_t)PM32_CS << 16) | (0x8eULL << 40) |
		      ((uint64_t)(handler >> 16) << 48));
}

static inline void vm_start32(struct vm *m, uint64_t rip, enum pm32_paging p)
{
	struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = PM32_CS,
				  .type = 11, .present = 1, .s = 1, .db = 1, .g = 1 };
	struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 3,
				  .present = 1, .s = 1, .db = 1, .g = 1 };
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = rip, .rsp = STACK_TOP, .rflags = 2 };

	put64(m->mem, 0x6018, 0x00cf9b000000ffffULL);
	if (p == PM32_2LEVEL) {
		for (uint32_t i = 0; i < 1024; i++)
			put32(m->mem, PM32_PT + 4 * i, (i << 12) | 3);
		put32(m->mem, PM32_PD, (uint32_t)PM32_PT | 3);
		put32(m->mem, PM32_PD + 4, 0x000000 | 0x83);
		put32(m->mem, PM32_PD + 4 * (APIC_GPA >> 22),
		      (uint32_t)(APIC_GPA & ~0x3fffffULL) | 0x83);
	} else if (p == PM32_PAE) {
		for (uint64_t i = 0; i < 512; i++)
			put64(m->mem, PM32_PT + 8 * i, (i << 12) | 3);
		put64(m->mem, PM32_PDPT, PM32_PD | 1);
		put64(m->mem, PM32_PDPT + 24, PM32_PD_APIC | 1);
		put64(m->mem, PM32_PD, PM32_PT | 3);
		put64(m->mem, PM32_PD + 8, 0x000000 | 0x83);
		put64(m->mem, PM32_PD_APIC + 8 * ((APIC_GPA >> 21) & 0x1ff), APIC_GPA | 0x83);
	}
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_GET_SREGS, &s), 0);
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.tr = (struct kvm_segment){ .limit = 0x67, .type = 11, .present = 1 };
	s.gdt.base = 0x6000;
	s.gdt.limit = 31;
	s.idt.base = PM32_IDT;
	s.idt.limit = 0x7ff;
	s.cr0 = 0x00050033; /* AM | WP | NE | ET | MP | PE */
	s.cr4 = 0x600;	    /* OSFXSR | OSXMMEXCPT */
	s.efer = 0;
	if (p == PM32_2LEVEL) {
		s.cr0 |= 0x80000000;
		s.cr3 = PM32_PD;
		s.cr4 |= 0x10; /* PSE */
	} else if (p == PM32_PAE) {
		s.cr0 |= 0x80000000;
		s.cr3 = PM32_PDPT;
		s.cr4 |= 0x20; /* PAE */
		s.efer = 0x800; /* NXE */
	}
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_REGS, &r), 0);
}

static inline int run(struct vm *m)
{
	return guestmem_sys_ioctl(m->vcpu, KVM_RUN, 0);
}

static inline uint8_t *pio_data(struct vm *m)
{
	return (uint8_t *)m->run + m->run->io.data_offset;
}

/* Run to a single port-I/O exit of @dir, @port and @size. */
static inline void expect_io(struct vm *m, int dir, uint16_t port, uint8_t size)
{
	ASSERT_EQ(run(m), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(m->run->io.direction, dir);
	ASSERT_EQ(m->run->io.port, port);
	ASSERT_EQ(m->run->io.size, size);
	ASSERT_EQ(m->run->io.count, 1);
	ASSERT_EQ(m->run->io.data_offset, 4096);
}

/* Run to a KVM_EXIT_MEMORY_FAULT (KVM_RUN: -1 EFAULT) for one private page at @gpa. */
static inline void expect_private_fault(struct vm *m, uint64_t gpa)
{
	struct kvm_run_memory_fault *mf;

	ASSERT_EQ(run(m), -1);
	ASSERT_EQ(errno, EFAULT);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	mf = kvm_run_memory_fault(m->run);
	ASSERT_EQ(mf->gpa, gpa);
	ASSERT_EQ(mf->size, 4096);
	ASSERT_EQ(mf->flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
}

/* Run to the next OUT to PORT and return its 32-bit value. */
static inline uint32_t next_out(struct vm *m)
{
	uint32_t v;

	expect_io(m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(m), 4);
	return v;
}

static inline void vm_open(struct vm *m)
{
	vm_open_irqchip(m, true);
}

/* One MSR through KVM_GET_MSRS/KVM_SET_MSRS: the ioctl's result (1 done). */
static inline int vm_msr_get(struct vm *m, uint32_t index, uint64_t *val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e.index = index };
	int r = guestmem_sys_ioctl(m->vcpu, KVM_GET_MSRS, &b);

	*val = b.e.data;
	return r;
}

static inline int vm_msr_set(struct vm *m, uint32_t index, uint64_t val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e.index = index, .e.data = val };

	return guestmem_sys_ioctl(m->vcpu, KVM_SET_MSRS, &b);
}

/* The guest's CPUID: everything supported (x2APIC and long mode included). */
static inline void vm_set_supported_cpuid(struct vm *m)
{
	static struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[128];
	} c;

	c.h.nent = 128;
	ASSERT_EQ(guestmem_sys_ioctl(m->kvm, KVM_GET_SUPPORTED_CPUID, &c), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_CPUID2, &c), 0);
}

#endif
