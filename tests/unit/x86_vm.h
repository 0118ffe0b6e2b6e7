/* SPDX-License-Identifier: MIT */
/*
 * A small 64-bit machine-code VM driven through the uAPI, for the x86
 * backend's unit tests: one 2 MiB memslot at 0, 0-4 MiB identity mapped
 * with 2 MiB pages, plus the 2 MiB page at 0xfee00000 (the APIC page, no
 * memslot) through a second page directory at 0x4000.  IDT at 0x5000, GDT
 * at 0x6000, code from 0x10000, stack below 0x30000.
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

/* A VM of @type; @irqchip: KVM_CREATE_IRQCHIP before the vCPU. */
static inline void vm_create(struct vm *m, unsigned long type, bool irqchip)
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
	m->vcpu = guestmem_sys_ioctl(m->fd, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(m->vcpu >= 0);
	m->run = guestmem_sys_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	ASSERT_TRUE(m->run != MAP_FAILED);
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

#endif
