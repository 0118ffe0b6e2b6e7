/* SPDX-License-Identifier: MIT */
/*
 * The in-kernel LAPIC as machine-code guests and VMMs reach it: the xAPIC
 * page at APIC_BASE handled inside guestmem (no KVM_EXIT_MMIO), the timer
 * counting at the APIC bus period, and the x2APIC MSRs through
 * KVM_GET/SET_MSRS with their mode and reserved-bit checks.
 *
 * Guest physical layout as test_x86_run.c (one 2 MiB memslot at 0, 0-4 MiB
 * identity mapped), plus the 2 MiB page at 0xfee00000 identity mapped
 * through a second page directory at 0x4000 (no memslot there).
 */
#include <errno.h>
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

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, 8);
}

static void vm_open(struct vm *m)
{
	struct kvm_userspace_memory_region r = { 0 };

	m->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(m->kvm >= 0);
	m->fd = guestmem_sys_ioctl(m->kvm, KVM_CREATE_VM, 0);
	ASSERT_TRUE(m->fd >= 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_CREATE_IRQCHIP, 0), 0);
	m->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(m->mem != MAP_FAILED);
	r.memory_size = MEM_SIZE;
	r.userspace_addr = (uintptr_t)m->mem;
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	put64(m->mem, 0x1000, 0x2000 | 3);
	put64(m->mem, 0x2000, 0x3000 | 3);
	put64(m->mem, 0x2018, 0x4000 | 3); /* 3-4 GiB */
	put64(m->mem, 0x3000, 0x000000 | 0x83);
	put64(m->mem, 0x3008, 0x200000 | 0x83);
	put64(m->mem, 0x4000 + 8 * ((APIC_GPA >> 21) & 0x1ff), APIC_GPA | 0x83);
	put64(m->mem, 0x6008, 0x00af9b000000ffffULL);
	put64(m->mem, 0x6010, 0x00cf93000000ffffULL);
	m->vcpu = guestmem_sys_ioctl(m->fd, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(m->vcpu >= 0);
	m->run = guestmem_sys_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, m->vcpu, 0);
	ASSERT_TRUE(m->run != MAP_FAILED);
}

static void vm_close(struct vm *m)
{
	guestmem_sys_munmap(m->run, 3 * 4096);
	guestmem_sys_close(m->vcpu);
	guestmem_sys_close(m->fd);
	guestmem_sys_close(m->kvm);
	munmap(m->mem, MEM_SIZE);
}

static void vm_start(struct vm *m, uint64_t rip)
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
	s.cr0 = 0x80050033;
	s.cr3 = 0x1000;
	s.cr4 = 0x620;
	s.efer = 0x500;
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_SREGS, &s), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_REGS, &r), 0);
}

/* Run to the next OUT to PORT and return its 32-bit value. */
static uint32_t next_out(struct vm *m)
{
	uint32_t v;

	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(m->run->io.port, PORT);
	ASSERT_EQ(m->run->io.size, 4);
	memcpy(&v, (uint8_t *)m->run + m->run->io.data_offset, 4);
	return v;
}

TEST(xapic_page_is_the_kernels)
{
	static const uint8_t c[] = {
		0xbb, 0x00, 0x00, 0xe0, 0xfe,			    /* mov $0xfee00000, %ebx */
		0x66, 0xba, PORT, 0x00,				    /* mov $PORT, %dx */
		0x8b, 0x43, 0x30,				    /* mov 0x30(%rbx), %eax: LVR */
		0xef,						    /* out %eax, (%dx) */
		0xc7, 0x83, 0x80, 0x00, 0x00, 0x00, 0x20, 0, 0, 0, /* movl $0x20, TPR */
		0x8b, 0x83, 0xa0, 0x00, 0x00, 0x00,		    /* mov PPR, %eax */
		0xef,
		0x8b, 0x43, 0x20, /* mov ID, %eax */
		0xef,
		0xc7, 0x83, 0xe0, 0x03, 0x00, 0x00, 0x0b, 0, 0, 0,    /* TDCR: divide by 1 */
		0xc7, 0x83, 0x80, 0x03, 0x00, 0x00, 0, 0, 0, 0x10,    /* TMICT = 2^28 */
		0x8b, 0x83, 0x90, 0x03, 0x00, 0x00,		    /* mov TMCCT, %eax */
		0xef,
		0x8b, 0x83, 0x90, 0x03, 0x00, 0x00, /* again */
		0xef,
		0xeb, 0xfe, /* jmp . */
	};
	struct kvm_lapic_state l;
	uint32_t tpr, t1, t2;
	struct vm m;

	vm_open(&m);
	memcpy(m.mem + CODE, c, sizeof(c));
	vm_start(&m, CODE);
	/* Version 0x14, six LVTs; no directed EOI with the IOAPIC in the kernel. */
	ASSERT_EQ(next_out(&m), 0x50014);
	ASSERT_EQ(next_out(&m), 0x20); /* PPR follows TPR */
	ASSERT_EQ(next_out(&m), 0);    /* vCPU 0's xAPIC ID */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&tpr, l.regs + 0x80, 4);
	ASSERT_EQ(tpr, 0x20);
	/* The default bus period is 1 ns: 2^28 counts take about 268 ms. */
	t1 = next_out(&m);
	t2 = next_out(&m);
	ASSERT_TRUE(t1 > 0 && t1 < 0x10000000);
	ASSERT_TRUE(t2 <= t1);
	ASSERT_TRUE(t1 > 0x10000000 - 200000000); /* well within 200 ms */
	vm_close(&m);
}

static int msr_get(struct vm *m, uint32_t index, uint64_t *val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e.index = index };
	int r = guestmem_sys_ioctl(m->vcpu, KVM_GET_MSRS, &b);

	*val = b.e.data;
	return r;
}

static int msr_set(struct vm *m, uint32_t index, uint64_t val)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e.index = index, .e.data = val };

	return guestmem_sys_ioctl(m->vcpu, KVM_SET_MSRS, &b);
}

/* The guest's CPUID: everything supported (x2APIC included). */
static void set_supported_cpuid(struct vm *m)
{
	static struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[128];
	} c;

	c.h.nent = 128;
	ASSERT_EQ(guestmem_sys_ioctl(m->kvm, KVM_GET_SUPPORTED_CPUID, &c), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_SET_CPUID2, &c), 0);
}

TEST(x2apic_msrs_follow_the_mode)
{
	struct kvm_lapic_state l;
	uint64_t v;
	uint32_t id;
	struct vm m;

	vm_open(&m);
	set_supported_cpuid(&m);
	/* xAPIC mode: the x2APIC MSRs do not exist. */
	ASSERT_EQ(msr_get(&m, 0x802, &v), 0);
	ASSERT_EQ(msr_set(&m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	ASSERT_EQ(msr_get(&m, 0x802, &v), 1);
	ASSERT_EQ(v, 0);			/* the vCPU id */
	ASSERT_EQ(msr_get(&m, 0x80d, &v), 1);
	ASSERT_EQ(v, 1);			/* LDR: cluster 0, bit 0 */
	ASSERT_EQ(msr_set(&m, 0x808, 0x30), 1); /* TPR */
	ASSERT_EQ(msr_get(&m, 0x808, &v), 1);
	ASSERT_EQ(v, 0x30);
	ASSERT_EQ(msr_set(&m, 0x808, 1ULL << 32), 0); /* 63:32 reserved */
	ASSERT_EQ(msr_set(&m, 0x830, 1ULL << 13), 0); /* ICR reserved bit */
	/* A fixed self-IPI: the ICR reads back whole, 64 bits. */
	ASSERT_EQ(msr_set(&m, 0x830, 0x40 | (1ULL << 18) | (5ULL << 32)), 1);
	ASSERT_EQ(msr_get(&m, 0x830, &v), 1);
	ASSERT_EQ(v, 0x40 | (1ULL << 18) | (5ULL << 32));
	ASSERT_EQ(msr_get(&m, 0x831, &v), 0); /* no ICR2 in x2APIC mode */
	ASSERT_EQ(msr_set(&m, 0x802, 7), 0);  /* the ID is read-only */
	/* KVM_GET_LAPIC shows the x2APIC ID as id << 24 without KVM_CAP_X2APIC_API. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&id, l.regs + 0x20, 4);
	ASSERT_EQ(id, 0);
	vm_close(&m);
}

TEST(x2apic_api_cap)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X2APIC_API, .args = { 4 } };
	struct vm m;

	vm_open(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_CHECK_EXTENSION, KVM_CAP_X2APIC_API), 3);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), -1);
	ASSERT_EQ(errno, EINVAL);
	cap.args[0] = KVM_X2APIC_API_USE_32BIT_IDS;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
