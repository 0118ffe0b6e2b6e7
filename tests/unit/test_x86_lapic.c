/* SPDX-License-Identifier: MIT */
/*
 * The in-kernel LAPIC as machine-code guests and VMMs reach it: the xAPIC
 * page at APIC_BASE handled inside guestmem (no KVM_EXIT_MMIO), the timer
 * counting at the APIC bus period, and the x2APIC MSRs through
 * KVM_GET/SET_MSRS with their mode and reserved-bit checks.
 * The VM: tests/unit/x86_vm.h.
 */
#include <time.h>

#include "x86_vm.h"

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
	ASSERT_TRUE(t2 < t1); /* counting down between the two reads (an exit apart) */
	ASSERT_TRUE(t1 > 0x10000000 - 200000000); /* well within 200 ms */
	vm_close(&m);
}

TEST(x2apic_msrs_follow_the_mode)
{
	struct kvm_lapic_state l;
	uint64_t v;
	uint32_t id;
	struct vm m;

	vm_open(&m);
	vm_set_supported_cpuid(&m);
	/* xAPIC mode: the x2APIC MSRs do not exist. */
	ASSERT_EQ(vm_msr_get(&m, 0x802, &v), 0);
	ASSERT_EQ(vm_msr_set(&m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	ASSERT_EQ(vm_msr_get(&m, 0x802, &v), 1);
	ASSERT_EQ(v, 0);			/* the vCPU id */
	ASSERT_EQ(vm_msr_get(&m, 0x80d, &v), 1);
	ASSERT_EQ(v, 1);			/* LDR: cluster 0, bit 0 */
	ASSERT_EQ(vm_msr_set(&m, 0x808, 0x30), 1); /* TPR */
	ASSERT_EQ(vm_msr_get(&m, 0x808, &v), 1);
	ASSERT_EQ(v, 0x30);
	ASSERT_EQ(vm_msr_set(&m, 0x808, 1ULL << 32), 0); /* 63:32 reserved */
	ASSERT_EQ(vm_msr_set(&m, 0x830, 1ULL << 13), 0); /* ICR reserved bit */
	/* A fixed self-IPI: the ICR reads back whole, 64 bits. */
	ASSERT_EQ(vm_msr_set(&m, 0x830, 0x40 | (1ULL << 18) | (5ULL << 32)), 1);
	ASSERT_EQ(vm_msr_get(&m, 0x830, &v), 1);
	ASSERT_EQ(v, 0x40 | (1ULL << 18) | (5ULL << 32));
	ASSERT_EQ(vm_msr_get(&m, 0x831, &v), 0); /* no ICR2 in x2APIC mode */
	ASSERT_EQ(vm_msr_set(&m, 0x802, 7), 0);  /* the ID is read-only */
	/* KVM_GET_LAPIC shows the x2APIC ID as id << 24 without KVM_CAP_X2APIC_API. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(&id, l.regs + 0x20, 4);
	ASSERT_EQ(id, 0);
	vm_close(&m);
}

TEST(x2apic_self_ipi_reaches_the_idt_and_eoi_ends_it)
{
	static const uint8_t c[] = {
		0xfb,			      /* sti */
		0xb9, 0x30, 0x08, 0x00, 0x00, /* mov $0x830 (ICR), %ecx */
		0xb8, 0x40, 0x00, 0x04, 0x00, /* mov $0x40040: self, fixed, vector 0x40 */
		0x31, 0xd2,		      /* xor %edx, %edx */
		0x0f, 0x30,		      /* wrmsr */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xb8, 0x01, 0x00, 0x00, 0x00, /* mov $1, %eax */
		0xef,			      /* out */
		0xeb, 0xfe,
	};
	static const uint8_t handler[] = {
		0xb9, 0x0b, 0x08, 0x00, 0x00, /* mov $0x80b (EOI), %ecx */
		0x31, 0xc0, 0x31, 0xd2,	      /* xor %eax, %eax; xor %edx, %edx */
		0x0f, 0x30,		      /* wrmsr */
		0x66, 0xba, 0x11, 0x00,	      /* mov $0x11, %dx */
		0xb8, 0x40, 0x00, 0x00, 0x00, /* mov $0x40, %eax */
		0xef,			      /* out */
		0x48, 0xcf,		      /* iretq */
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */
	uint32_t v;
	struct vm m;

	vm_open(&m);
	vm_set_supported_cpuid(&m);
	ASSERT_EQ(vm_msr_set(&m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	ASSERT_EQ(vm_msr_set(&m, 0x80f, 0x1ff), 1); /* SPIV: software-enabled */
	memcpy(m.mem + CODE, c, sizeof(c));
	memcpy(m.mem + 0x14000, handler, sizeof(handler));
	memcpy(m.mem + 0x5000 + 0x40 * 16, gate, sizeof(gate));
	vm_start(&m, CODE);
	/* The handler runs first, then the code after the WRMSR. */
	expect_io(&m, KVM_EXIT_IO_OUT, 0x11, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x40);
	ASSERT_EQ(next_out(&m), 1);
	vm_close(&m);
}

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;

	memcpy(&v, l->regs + off, 4);
	return v;
}

/* IRR, ISR and PPR are the interrupt model's: an IPI, a restore and an EOI show. */
TEST(irr_isr_ppr_are_the_models)
{
	struct kvm_lapic_state l;
	uint64_t v;
	struct vm m;

	vm_open(&m);
	vm_set_supported_cpuid(&m);
	ASSERT_EQ(vm_msr_set(&m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	ASSERT_EQ(vm_msr_set(&m, 0x80f, 0x1ff), 1); /* SPIV: software-enabled */
	/* A self-IPI nobody has taken yet: pending in IRR (vector 0x40). */
	ASSERT_EQ(vm_msr_set(&m, 0x830, 0x40 | (1ULL << 18)), 1);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	ASSERT_EQ(lapic_reg(&l, 0x220), 1);
	ASSERT_EQ(vm_msr_get(&m, 0x822, &v), 1);
	ASSERT_EQ(v, 1);
	/* A restore replaces both sets; PPR follows the vector in service. */
	memset(l.regs + 0x100, 0, 0x80);
	memset(l.regs + 0x200, 0, 0x80);
	l.regs[0x120 + 2] = 0x01; /* ISR: vector 0x50 */
	l.regs[0x230] = 0x02;	  /* IRR: vector 0x61 */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_LAPIC, &l), 0);
	memset(&l, 0, sizeof(l));
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	ASSERT_EQ(lapic_reg(&l, 0x220), 0);
	ASSERT_EQ(lapic_reg(&l, 0x230), 2);
	ASSERT_EQ(lapic_reg(&l, 0x120), 1U << 16);
	ASSERT_EQ(lapic_reg(&l, 0xa0), 0x50);
	ASSERT_EQ(vm_msr_get(&m, 0x80a, &v), 1);
	ASSERT_EQ(v, 0x50);
	/* EOI ends it: ISR empty, PPR back to TPR. */
	ASSERT_EQ(vm_msr_set(&m, 0x80b, 0), 1);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	ASSERT_EQ(lapic_reg(&l, 0x120), 0);
	ASSERT_EQ(lapic_reg(&l, 0xa0), 0);
	ASSERT_EQ(lapic_reg(&l, 0x230), 2);
	vm_close(&m);
}

TEST(timer_expiry_wakes_a_halted_guest)
{
	static const uint8_t c[] = {
		0xfb, 0xf4,		/* sti; hlt */
		0x66, 0xba, PORT, 0x00, /* mov $PORT, %dx */
		0xb8, 0x02, 0x00, 0x00, 0x00, /* mov $2, %eax */
		0xef,
		0xeb, 0xfe,
	};
	static const uint8_t handler[] = {
		0xb9, 0x0b, 0x08, 0x00, 0x00, /* mov $0x80b (EOI), %ecx */
		0x31, 0xc0, 0x31, 0xd2, 0x0f, 0x30, /* wrmsr 0 */
		0xb9, 0x39, 0x08, 0x00, 0x00, /* mov $0x839 (TMCCT), %ecx */
		0x0f, 0x32,		      /* rdmsr */
		0x66, 0xba, 0x11, 0x00, 0xef, /* out %eax to 0x11 */
		0x48, 0xcf,		      /* iretq */
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */
	struct timespec t0, t1;
	struct vm m;

	vm_open(&m);
	vm_set_supported_cpuid(&m);
	ASSERT_EQ(vm_msr_set(&m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	ASSERT_EQ(vm_msr_set(&m, 0x80f, 0x1ff), 1);  /* SPIV: software-enabled */
	ASSERT_EQ(vm_msr_set(&m, 0x832, 0x41), 1);	  /* LVTT: one-shot, vector 0x41 */
	ASSERT_EQ(vm_msr_set(&m, 0x83e, 0xb), 1);	  /* TDCR: divide by 1 */
	memcpy(m.mem + CODE, c, sizeof(c));
	memcpy(m.mem + 0x14000, handler, sizeof(handler));
	memcpy(m.mem + 0x5000 + 0x41 * 16, gate, sizeof(gate));
	vm_start(&m, CODE);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(vm_msr_set(&m, 0x838, 20000000), 1); /* TMICT: 20 ms at 1 ns a count */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_RUN, 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(m.run->io.port, 0x11);
	/* Expired: the one-shot count reads 0, and not before 20 ms passed. */
	ASSERT_EQ(*(uint32_t *)((uint8_t *)m.run + m.run->io.data_offset), 0);
	ASSERT_TRUE((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) >= 20000000L);
	ASSERT_EQ(next_out(&m), 2);
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
