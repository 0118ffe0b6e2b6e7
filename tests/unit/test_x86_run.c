/* SPDX-License-Identifier: MIT */
/*
 * The x86 backend end to end, as a VMM drives it through the uAPI
 * (<guestmem/sys.h>): small hand-assembled 64-bit guests set up with
 * KVM_SET_SREGS/KVM_SET_REGS, run natively in the guest process, and the
 * exits KVM_RUN returns for them: port I/O and its completion, MMIO and
 * its completion, a memory-fault exit for a private/shared mismatch, a
 * guest #PF delivered through the guest's IDT (the handler reads CR2 and
 * the error code), a guest that never exits interrupted by a signal, and
 * a zap (memslot deletion) while the guest is mapped.
 *
 * The VM is x86_vm.h's, without an in-kernel irqchip (HLT exits): one
 * 2 MiB memslot at 0, identity mapped with two 2 MiB pages, so 2-4 MiB
 * has page tables but no memslot (MMIO); 0x100000 is a data page.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include <guestmem/guestmem.h> /* guestmem_config_set: the backing */

#include "gproc/gproc_abi.h" /* GP_USER_TOP, the reserved window */
#include "harness.h"
#include "x86_vm.h"

#define PORT2 0x11

static void code(struct vm *m, uint64_t gpa, const uint8_t *bytes, size_t n)
{
	memcpy(m->mem + gpa, bytes, n);
}

TEST(pio_exit_and_completion)
{
	static const uint8_t c[] = {
		0x66, 0xba, PORT, 0x00, /* mov $PORT, %dx */
		0xb0, 0x42,		/* mov $0x42, %al */
		0xee,			/* out %al, (%dx) */
		0xec,			/* in (%dx), %al */
		0x04, 0x01,		/* add $1, %al */
		0xee,			/* out %al, (%dx) */
		0xf4,			/* hlt */
	};
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pio_data(&m)[0], 0x42);
	expect_io(&m, KVM_EXIT_IO_IN, PORT, 1);
	/* The IN is pending: RIP still on it. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE + 7);
	pio_data(&m)[0] = 0x77;
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pio_data(&m)[0], 0x78);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE + sizeof(c));
	ASSERT_EQ(r.rax & 0xff, 0x78);
	ASSERT_EQ(r.rdx & 0xffff, PORT);
	vm_close(&m);
}

TEST(immediate_exit_completes_in_first)
{
	static const uint8_t c[] = {
		0x66, 0xba, PORT, 0x00, /* mov $PORT, %dx */
		0xed,			/* in (%dx), %eax */
		0xf4,			/* hlt */
	};
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_IN, PORT, 4);
	memcpy(pio_data(&m), "\x44\x33\x22\x11", 4);
	m.run->immediate_exit = 1;
	ASSERT_EQ(run(&m), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rax, 0x11223344);
	ASSERT_EQ(r.rip, CODE + 5);
	m.run->immediate_exit = 0;
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	vm_close(&m);
}

TEST(mmio_exit_and_completion)
{
	static const uint8_t c[] = {
		0xc7, 0x04, 0x25, 0x00, 0x01, 0x20, 0x00, 0xef, 0xbe, 0xad, 0xde,
		/* movl $0xdeadbeef, 0x200100 */
		0x8b, 0x04, 0x25, 0x00, 0x02, 0x20, 0x00, /* mov 0x200200, %eax */
		0x66, 0xba, PORT, 0x00,			  /* mov $PORT, %dx */
		0xef,					  /* out %eax, (%dx) */
		0xf4,
	};
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(m.run->mmio.phys_addr, 0x200100);
	ASSERT_EQ(m.run->mmio.len, 4);
	ASSERT_EQ(m.run->mmio.is_write, 1);
	memcpy(&v, m.run->mmio.data, 4);
	ASSERT_EQ(v, 0xdeadbeef);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(m.run->mmio.phys_addr, 0x200200);
	ASSERT_EQ(m.run->mmio.len, 4);
	ASSERT_EQ(m.run->mmio.is_write, 0);
	memcpy(m.run->mmio.data, "\x78\x56\x34\x12", 4);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x12345678);
	vm_close(&m);
}

TEST(memory_fault_on_private_mismatch)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, /* mov 0x100000, %eax */
		0xf4,
	};
	struct kvm_memory_attributes attr = { .address = 0x100000, .size = 4096,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct vm m;

	vm_create(&m, KVM_X86_SW_PROTECTED_VM, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	/* Private, but the slot has no guest_memfd: KVM exits to the VMM. */
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	expect_private_fault(&m, 0x100000);
	/* Shared again: the load completes. */
	attr.attributes = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	vm_close(&m);
}

TEST(page_fault_through_the_idt)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x00, 0x40, /* mov 0x40000000, %eax */
		0xf4,
	};
	static const uint8_t handler[] = {
		0x0f, 0x20, 0xd0,	/* mov %cr2, %rax */
		0x66, 0xba, PORT2, 0x00, /* mov $PORT2, %dx */
		0xef,			/* out %eax, (%dx) */
		0x58,			/* pop %rax: the error code */
		0xef,			/* out %eax, (%dx) */
		0xf4,
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */
	struct kvm_regs r;
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	code(&m, 0x14000, handler, sizeof(handler));
	memcpy(m.mem + 0x5000 + 14 * 16, gate, sizeof(gate));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x40000000); /* CR2 */
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0); /* not present, read, supervisor */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	/* The frame: RIP CS RFLAGS RSP SS above the popped error code. */
	ASSERT_EQ(r.rsp, STACK_TOP - 40);
	ASSERT_EQ(*(uint64_t *)(m.mem + STACK_TOP - 40), CODE);
	vm_close(&m);
}

TEST(hypercall_exit_map_gpa_range)
{
	static const uint8_t c[] = {
		0xb8, 0x0c, 0x00, 0x00, 0x00, /* mov $12 (KVM_HC_MAP_GPA_RANGE), %eax */
		0xbb, 0x00, 0x00, 0x10, 0x00, /* mov $0x100000, %ebx */
		0xb9, 0x02, 0x00, 0x00, 0x00, /* mov $2, %ecx */
		0xba, 0x10, 0x00, 0x00, 0x00, /* mov $0x10, %edx */
		0x0f, 0x01, 0xc1,	      /* vmcall */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0xf4,
	};
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL,
				      .args = { 1ULL << KVM_HC_MAP_GPA_RANGE } };
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_HYPERCALL);
	ASSERT_EQ(m.run->hypercall.nr, KVM_HC_MAP_GPA_RANGE);
	ASSERT_EQ(m.run->hypercall.args[0], 0x100000);
	ASSERT_EQ(m.run->hypercall.args[1], 2);
	ASSERT_EQ(m.run->hypercall.args[2], 0x10);
	ASSERT_EQ(*kvm_run_hypercall_flags(m.run), KVM_EXIT_HYPERCALL_LONG_MODE);
	m.run->hypercall.ret = 7;
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 7); /* the VMM's answer in RAX */
	vm_close(&m);
}

TEST(rdmsr_exit_to_user_space)
{
	static const uint8_t c[] = {
		0xb9, 0x45, 0x23, 0x01, 0x00, /* mov $0x12345, %ecx */
		0x0f, 0x32,		      /* rdmsr */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0x89, 0xd0,		      /* mov %edx, %eax */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0xf4,
	};
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args = { KVM_MSR_EXIT_REASON_UNKNOWN } };
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_X86_RDMSR);
	ASSERT_EQ(m.run->msr.index, 0x12345);
	ASSERT_EQ(m.run->msr.reason, KVM_MSR_EXIT_REASON_UNKNOWN);
	m.run->msr.data = 0x0123456789abcdefULL;
	m.run->msr.error = 0;
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x89abcdef);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x01230000 | PORT); /* EDX's high half, DX the port */
	vm_close(&m);
}

TEST(xsave_follows_the_guest)
{
	static const uint8_t c[] = {
		0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00, /* mov $0x1234, %rax */
		0x66, 0x48, 0x0f, 0x6e, 0xc0,		  /* movq %rax, %xmm0 */
		0x66, 0xba, PORT, 0x00,			  /* mov $PORT, %dx */
		0xee,					  /* out %al, (%dx) */
		0x66, 0x48, 0x0f, 0x7e, 0xc8,		  /* movq %xmm1, %rax */
		0xef,					  /* out %eax, (%dx) */
		0xf4,
	};
	struct kvm_xsave xs;
	uint64_t x;
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 1);
	/* XMM0 is at byte 160 of the legacy region. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_XSAVE, &xs), 0);
	memcpy(&x, (uint8_t *)xs.region + 160, 8);
	ASSERT_EQ(x, 0x1234);
	/* XMM1 from the VMM reaches the guest. */
	x = 0x5678;
	memcpy((uint8_t *)xs.region + 176, &x, 8);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_XSAVE, &xs), 0);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x5678);
	vm_close(&m);
}

static void on_usr1(int sig)
{
	(void)sig;
}

struct kicker {
	pthread_t target;
};

static void *kick_later(void *arg)
{
	struct kicker *k = arg;
	struct timespec ts = { 0, 100 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

TEST(signal_interrupts_a_computing_guest)
{
	static const uint8_t c[] = {
		0x66, 0xba, PORT, 0x00, /* mov $PORT, %dx */
		0xee,			/* out %al, (%dx): the guest runs */
		0x48, 0xff, 0xc0,	/* 1: inc %rax */
		0xeb, 0xfb,		/* jmp 1b */
	};
	struct sigaction sa = { .sa_handler = on_usr1 };
	struct kicker k = { pthread_self() };
	struct kvm_regs r;
	pthread_t t;
	struct vm m;

	sigaction(SIGUSR1, &sa, NULL);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pthread_create(&t, NULL, kick_later, &k), 0);
	ASSERT_EQ(run(&m), -1);
	ASSERT_EQ(errno, EINTR);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_INTR);
	pthread_join(t, NULL);
	/* Stopped inside the loop, which it never leaves by itself. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_TRUE(r.rip >= CODE + 5 && r.rip < CODE + sizeof(c));
	/* Again, from where it stopped. */
	ASSERT_EQ(pthread_create(&t, NULL, kick_later, &k), 0);
	ASSERT_EQ(run(&m), -1);
	ASSERT_EQ(errno, EINTR);
	pthread_join(t, NULL);
	signal(SIGUSR1, SIG_DFL);
	vm_close(&m);
}

TEST(memslot_deletion_zaps_the_guest_mapping)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x10, 0x00, /* 1: mov 0x100000, %eax */
		0x66, 0xba, PORT, 0x00,			  /* mov $PORT, %dx */
		0xef,					  /* out %eax, (%dx) */
		0xeb, 0xf2,				  /* jmp 1b */
	};
	struct kvm_userspace_memory_region r = { .slot = 1, .guest_phys_addr = 0x200000,
						 .memory_size = 0x200000 };
	uint8_t *mem2 = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	uint32_t v;
	struct vm m;

	ASSERT_TRUE(mem2 != MAP_FAILED);
	vm_open_irqchip(&m, false);
	code(&m, CODE, c, sizeof(c));
	memcpy(m.mem + 0x100000, "\x01\x00\x00\x00", 4);
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 1);
	/* The VMM's store is seen through the same file. */
	memcpy(m.mem + 0x100000, "\x02\x00\x00\x00", 4);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 2);
	/* A second slot comes and goes: slot 0's mapping stays valid. */
	r.userspace_addr = (uintptr_t)mem2;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	r.memory_size = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	/* Slot 0 moves to 4 MiB: code, page tables and IDT are gone; the
	 * guest's next fetch faults, and so does delivering that fault:
	 * a triple fault (KVM: SHUTDOWN or an emulation failure). */
	r.slot = 0;
	r.guest_phys_addr = 0x400000;
	r.memory_size = MEM_SIZE;
	r.userspace_addr = (uintptr_t)m.mem;
	r.flags = 0;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	ASSERT_EQ(run(&m), 0);
	ASSERT_TRUE(m.run->exit_reason == KVM_EXIT_SHUTDOWN ||
		    m.run->exit_reason == KVM_EXIT_INTERNAL_ERROR);
	munmap(mem2, 0x200000);
	vm_close(&m);
}

/*
 * A VM whose code @c runs at CODE with slot 1 (@flags) over @mem at
 * 2 MiB, mapped by the guest with one 2 MiB page, or with @pt4k through a
 * table of 4 KiB pages at 0x8000; run to the code's OUT, return its value.
 */
static uint32_t run_with_slot1(struct vm *m, const uint8_t *c, size_t n, uint8_t *mem,
			       uint32_t flags, bool pt4k)
{
	struct kvm_userspace_memory_region r = { .slot = 1, .flags = flags,
						 .guest_phys_addr = 0x200000,
						 .memory_size = 0x200000,
						 .userspace_addr = (uintptr_t)mem };
	uint32_t v;

	vm_open_irqchip(m, false);
	code(m, CODE, c, n);
	if (pt4k) {
		for (uint64_t i = 0; i < 512; i++)
			put64(m->mem, 0x8000 + 8 * i, (0x200000 + (i << 12)) | 3);
		put64(m->mem, 0x3008, 0x8000 | 3);
	}
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	vm_start(m, CODE);
	expect_io(m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(m), 4);
	return v;
}

/*
 * A dirty-logged slot under a 2 MiB guest page: the fault maps a run of
 * the guest page at once, but logs exactly the page written (and a read
 * logs nothing), as KVM logs the 4 KiB page of the write.
 */
TEST(dirty_log_under_a_large_guest_page)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x30, 0x00,	      /* mov 0x300000, %eax */
		0x89, 0x04, 0x25, 0x08, 0x00, 0x28, 0x00,	      /* mov %eax, 0x280008 */
		0x8b, 0x04, 0x25, 0x00, 0x10, 0x28, 0x00,	      /* mov 0x281000, %eax */
		0x66, 0xba, PORT, 0x00,				      /* mov $PORT, %dx */
		0xef,						      /* out %eax, (%dx) */
		0xf4,
	};
	uint8_t *mem2 = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	uint64_t bitmap[512 / 64] = { 0 };
	struct kvm_dirty_log log = { .slot = 1, .dirty_bitmap = bitmap };
	struct vm m;

	ASSERT_TRUE(mem2 != MAP_FAILED);
	(void)run_with_slot1(&m, c, sizeof(c), mem2, KVM_MEM_LOG_DIRTY_PAGES, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_GET_DIRTY_LOG, &log), 0);
	for (unsigned i = 0; i < 512; i++)
		EXPECT_EQ((bitmap[i / 64] >> (i % 64)) & 1, i == 0x80);
	vm_close(&m);
	munmap(mem2, 0x200000);
}

/* 2 MiB of private hugetlb memory (MAP_HUGETLB), or NULL without a free huge page. */
static uint8_t *hugetlb_2m(void)
{
	uint8_t *p = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * Guest RAM in private hugetlb pages (MAP_HUGETLB, as Firecracker and the
 * selftests' VM_MEM_SRC_ANONYMOUS_HUGETLB allocate it) is converted to a
 * hugetlb memfd in place, like anonymous RAM: what the VMM wrote before
 * is there for the guest, and the guest's writes for the VMM.  Skipped
 * where the host has no free 2 MiB huge page to lend.
 */
TEST(hugetlb_ram_reaches_the_guest)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00,	      /* mov 0x200000, %eax */
		0x83, 0xc0, 0x01,				      /* add $1, %eax */
		0x89, 0x04, 0x25, 0x08, 0x00, 0x30, 0x00,	      /* mov %eax, 0x300008 */
		0x66, 0xba, PORT, 0x00,				      /* mov $PORT, %dx */
		0xef,						      /* out %eax, (%dx) */
		0xf4,
	};
	uint8_t *huge = hugetlb_2m();
	struct vm m;

	if (!huge)
		SKIP_NO_HUGEPAGE("no free 2 MiB huge page (vm.nr_hugepages): %s",
				 strerror(errno));
	memcpy(huge, "\x41\x00\x00\x00", 4); /* present before the conversion */
	EXPECT_EQ(run_with_slot1(&m, c, sizeof(c), huge, 0, false), 0x42u);
	EXPECT_EQ(*(uint32_t *)(huge + 0x100008), 0x42u); /* the guest's store, seen here */
	vm_close(&m);
	munmap(huge, 0x200000);
}

/*
 * The same memory under 4 KiB guest pages, first touched in the middle of
 * its huge page: mapped as the whole block (the guest's 512 entries map it
 * page for page); a write to a page whose entry is not dirty yet is
 * emulated, and the D bit set.
 */
TEST(hugetlb_ram_under_4k_guest_pages)
{
	static const uint8_t c[] = {
		0x8b, 0x04, 0x25, 0x08, 0x10, 0x20, 0x00,	      /* mov 0x201008, %eax */
		0x83, 0xc0, 0x01,				      /* add $1, %eax */
		0x89, 0x04, 0x25, 0x10, 0x00, 0x30, 0x00,	      /* mov %eax, 0x300010 */
		0x89, 0x04, 0x25, 0x18, 0x00, 0x30, 0x00,	      /* mov %eax, 0x300018 */
		0x66, 0xba, PORT, 0x00,				      /* mov $PORT, %dx */
		0xef,						      /* out %eax, (%dx) */
		0xf4,
	};
	uint8_t *huge = hugetlb_2m();
	uint64_t pte;
	struct vm m;

	if (!huge)
		SKIP_NO_HUGEPAGE("no free 2 MiB huge page (vm.nr_hugepages): %s",
				 strerror(errno));
	memcpy(huge + 0x1008, "\x10\x00\x00\x00", 4);
	EXPECT_EQ(run_with_slot1(&m, c, sizeof(c), huge, 0, true), 0x11u);
	EXPECT_EQ(*(uint32_t *)(huge + 0x100010), 0x11u);
	EXPECT_EQ(*(uint32_t *)(huge + 0x100018), 0x11u);
	/* The written page's entry is dirty, the others only accessed. */
	memcpy(&pte, m.mem + 0x8000 + 8 * 0x100, 8);
	EXPECT_EQ(pte & 0x60, 0x60u);
	memcpy(&pte, m.mem + 0x8000 + 8 * 0x101, 8);
	EXPECT_EQ(pte & 0x60, 0x20u);
	vm_close(&m);
	munmap(huge, 0x200000);
}

/*
 * The last 2 MiB of the user range (where the KVM selftests run their
 * guests) is the guest's: a 2 MiB guest page maps it onto gpa 0, and the
 * shadow run stops at GP_USER_TOP, one page short of the guest page's end.
 */
TEST(guest_at_the_top_of_the_user_range)
{
	static const uint8_t c[] = {
		0xb8, 0x2a, 0x00, 0x00, 0x00, /* mov $0x2a, %eax */
		0x50,			      /* push %rax */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0xf4,			      /* hlt */
	};
	const uint64_t high = 0x7fffffe00000ULL;
	struct kvm_regs r;
	uint32_t v;
	struct vm m;

	vm_open_irqchip(&m, false);
	/* PML4[255] -> PDPT at 0x7000, [511] -> PD at 0x8000, [511] -> 2 MiB at gpa 0. */
	put64(m.mem, 0x1000 + 255 * 8, 0x7000 | 3);
	put64(m.mem, 0x7000 + 511 * 8, 0x8000 | 3);
	put64(m.mem, 0x8000 + 511 * 8, 0x000000 | 0x83);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, high + CODE);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	r.rsp = high + STACK_TOP;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_REGS, &r), 0);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x2a);
	ASSERT_EQ(*(uint64_t *)(m.mem + STACK_TOP - 8), 0x2a);
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_HLT);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, high + CODE + sizeof(c));
	ASSERT_EQ(r.rsp, high + STACK_TOP - 8);
	vm_close(&m);
}

static void expect_internal_error(struct vm *m)
{
	ASSERT_EQ(run(m), 0);
	ASSERT_EQ(m->run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ(m->run->internal.suberror, KVM_INTERNAL_ERROR_EMULATION);
}

/* The guest process's reserved window (the stub) is not the guest's: code
 * there, or a fault on it, ends KVM_RUN with an internal error. */
TEST(reserved_window_is_an_internal_error)
{
	static const uint8_t c[] = {
		0x48, 0xa1, 0, 0, 0, 0, 0, 0, 0, 0, /* movabs <addr>, %rax */
		0xf4,				     /* hlt */
	};
	uint8_t bytes[sizeof(c)];
	/* The window's last page: the last vCPU slot's signal stack, unused. */
	uint64_t addr = GP_RESV_END - 8;
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	memcpy(bytes, c, sizeof(c));
	memcpy(bytes + 2, &addr, 8);
	code(&m, CODE, bytes, sizeof(bytes));
	vm_start(&m, CODE);
	expect_internal_error(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE);
	/* RIP in the stub's text. */
	r.rip = GP_STUB_TEXT;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_REGS, &r), 0);
	expect_internal_error(&m);
	vm_close(&m);
}

/*
 * A software-protected VM whose 2 MiB at 0x200000 is a guest_memfd slot
 * (*@gmem) with shared view *@shared, the first @priv bytes private.
 */
static void vm_private_slot(struct vm *m, uint64_t priv, int *gmem, uint8_t **shared)
{
	struct kvm_create_guest_memfd cg = { .size = 0x200000 };
	struct kvm_memory_attributes attr = { .address = 0x200000, .size = priv,
					      .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE };
	struct kvm_userspace_memory_region2 r2 = { .slot = 1, .flags = KVM_MEM_GUEST_MEMFD,
						   .guest_phys_addr = 0x200000,
						   .memory_size = 0x200000 };

	vm_create(m, KVM_X86_SW_PROTECTED_VM, false);
	*gmem = guestmem_sys_ioctl(m->fd, KVM_CREATE_GUEST_MEMFD, &cg);
	ASSERT_TRUE(*gmem >= 0);
	*shared = mmap(NULL, 0x200000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(*shared != MAP_FAILED);
	r2.guest_memfd = (uint32_t)*gmem;
	r2.userspace_addr = (uintptr_t)*shared;
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION2, &r2), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_SET_MEMORY_ATTRIBUTES, &attr), 0);
}

/*
 * KVM's emulator reaches memory through the memslot's host mapping, so an
 * emulated instruction's operand in private memory is the shared view's
 * byte (here OUTSB's source), also where the private page is this
 * process's (the C API, no guest process holding it).
 */
TEST(emulated_operand_in_private_memory_is_the_shared_view)
{
	static const uint8_t c[] = {
		0xc7, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0x5a, 0x00, 0x00, 0x00, /* movl $0x5a, 0x200000 */
		0xbe, 0x00, 0x00, 0x20, 0x00, /* mov $0x200000, %esi */
		0xba, PORT2, 0x00, 0x00, 0x00, /* mov $PORT2, %edx */
		0xb9, 0x01, 0x00, 0x00, 0x00, /* mov $1, %ecx */
		0xf3, 0x6e,		      /* rep outsb */
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, /* mov 0x200000, %eax */
		0xef,			      /* out %eax, (%dx) */
		0xf4,
	};
	uint8_t *shared;
	uint32_t v;
	struct vm m;
	int gmem;

	vm_private_slot(&m, 0x1000, &gmem, &shared);
	shared[0] = 0xa7;
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 1);
	ASSERT_EQ(*pio_data(&m), 0xa7);	/* not the private 0x5a */
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x5a); /* the guest's own load: the private page */
	vm_close(&m);
	guestmem_sys_close(gmem);
	munmap(shared, 0x200000);
}

/*
 * memfd_secret files live on a noexec mount, so private memory of the
 * secretmem backing is mapped without PROT_EXEC: the guest's data accesses
 * to it work, and code fetched from it is an internal error (documented).
 */
TEST(secretmem_private_data_works_code_does_not)
{
	static const uint8_t c[] = {
		0xc7, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, 0x5a, 0x5a, 0x00, 0x00, /* movl $0x5a5a, 0x200000 */
		0x8b, 0x04, 0x25, 0x00, 0x00, 0x20, 0x00, /* mov 0x200000, %eax */
		0x66, 0xba, PORT2, 0x00, /* mov $PORT2, %dx */
		0xef,			 /* out %eax, (%dx) */
		0xb8, 0x00, 0x10, 0x20, 0x00, /* mov $0x201000, %eax */
		0xff, 0xe0,		 /* jmp *%rax: code in private memory */
	};
	struct kvm_regs regs;
	uint8_t *shared;
	int fd = (int)syscall(447 /* memfd_secret */, 0), gmem;
	uint32_t v;
	struct vm m;

	if (fd < 0)
		SKIP("the host refuses memfd_secret(2)");
	close(fd);
	ASSERT_EQ(guestmem_config_set(NULL, NULL, "secretmem"), 0);
	vm_private_slot(&m, 0x2000, &gmem, &shared);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&v, pio_data(&m), 4);
	ASSERT_EQ(v, 0x5a5a);
	ASSERT_EQ(*(volatile uint32_t *)shared, 0); /* the write went to private memory */
	expect_internal_error(&m);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &regs), 0);
	ASSERT_EQ(regs.rip, 0x201000);
	vm_close(&m);
	guestmem_sys_close(gmem);
	munmap(shared, 0x200000);
	ASSERT_EQ(guestmem_config_set(NULL, NULL, "memfd"), 0);
}

/*
 * A write protection must reach every page of its range in the guest
 * process.  The map of a write fault that fills the dirty ring is
 * forgotten (the vCPU exits with KVM_EXIT_DIRTY_RING_FULL before the stub
 * applied it); its reverse-map entry used to stay, with no mapping behind
 * it, and the reset's mprotect() over that hole failed and left the next
 * page writable, so the guest's next write to it went unlogged (as
 * dirty_log_test's dirty-ring mode saw with mprotect() failing at
 * vm.max_map_count).  The logged slot is mapped with 4 KiB guest pages; the guest
 * writes pages 2..191, then page 1, then page 0, whose fault pushes the
 * 192nd entry (the soft limit of a 256-entry ring).  The reset coalesces
 * pages 1 and 0 into one write protection, and page 1 must fault again.
 */
TEST(ring_reset_protects_past_a_forgotten_map)
{
	static const uint8_t c[] = {
		0x48, 0xc7, 0xc0, 0x00, 0x20, 0x20, 0x00, /* mov $0x202000, %rax */
		0xb9, 0xbe, 0x00, 0x00, 0x00,		  /* mov $190, %ecx */
		0x48, 0x89, 0x00,			  /* 1: mov %rax, (%rax) */
		0x48, 0x05, 0x00, 0x10, 0x00, 0x00,	  /* add $0x1000, %rax */
		0xff, 0xc9,				  /* dec %ecx */
		0x75, 0xf3,				  /* jnz 1b */
		0x48, 0xc7, 0xc0, 0x00, 0x10, 0x20, 0x00, /* mov $0x201000, %rax */
		0x48, 0x89, 0x00,			  /* mov %rax, (%rax) */
		0x48, 0xc7, 0xc0, 0x00, 0x00, 0x20, 0x00, /* mov $0x200000, %rax */
		0x48, 0x89, 0x00,			  /* mov %rax, (%rax): ring full */
		0xe7, PORT,				  /* out %eax, $PORT */
		0x48, 0xc7, 0xc0, 0x00, 0x10, 0x20, 0x00, /* mov $0x201000, %rax */
		0x48, 0x89, 0x00,			  /* mov %rax, (%rax): logged again */
		0xe7, PORT,				  /* out %eax, $PORT */
		0xf4,					  /* hlt */
	};
	enum { RING_BYTES = 4096, ENTRIES = RING_BYTES / 16, SOFT = ENTRIES - 64, PAGES = 256 };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
				      .args = { RING_BYTES } };
	struct kvm_userspace_memory_region r = { .slot = 1, .flags = KVM_MEM_LOG_DIRTY_PAGES,
						 .guest_phys_addr = 0x200000,
						 .memory_size = PAGES * 4096 };
	uint8_t *mem2 = mmap(NULL, PAGES * 4096, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_dirty_gfn *ring;
	struct vm m;

	ASSERT_TRUE(mem2 != MAP_FAILED);
	vm_create_novcpu(&m, 0, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	vm_create_vcpu(&m);
	ring = guestmem_sys_mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, m.vcpu,
				 KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
	ASSERT_TRUE(ring != MAP_FAILED);
	r.userspace_addr = (uintptr_t)mem2;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	/* 2-3 MiB through a page table at 0x8000: 4 KiB guest pages. */
	put64(m.mem, 0x3008, 0x8000 | 3);
	for (unsigned i = 0; i < PAGES; i++)
		put64(m.mem, 0x8000 + 8 * i, (0x200000 + i * 4096ULL) | 0x63);
	code(&m, CODE, c, sizeof(c));
	vm_start(&m, CODE);

	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_DIRTY_RING_FULL);
	for (unsigned i = 0; i < SOFT; i++) {
		ASSERT_EQ(__atomic_load_n(&ring[i].flags, __ATOMIC_ACQUIRE),
			  KVM_DIRTY_GFN_F_DIRTY);
		ASSERT_EQ(ring[i].slot, 1);
		ASSERT_EQ(ring[i].offset, i < SOFT - 2 ? i + 2 : SOFT - 1 - i);
		__atomic_store_n(&ring[i].flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
	}
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_RESET_DIRTY_RINGS, 0), SOFT);
	/* Page 0's write faults again and is logged, then page 1's. */
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	ASSERT_EQ(__atomic_load_n(&ring[SOFT].flags, __ATOMIC_ACQUIRE), KVM_DIRTY_GFN_F_DIRTY);
	ASSERT_EQ(ring[SOFT].offset, 0);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	ASSERT_EQ(__atomic_load_n(&ring[SOFT + 1].flags, __ATOMIC_ACQUIRE),
		  KVM_DIRTY_GFN_F_DIRTY);
	ASSERT_EQ(ring[SOFT + 1].slot, 1);
	ASSERT_EQ(ring[SOFT + 1].offset, 1);
	ASSERT_EQ(*(uint64_t *)(mem2 + 4096), 0x201000);
	guestmem_sys_munmap(ring, RING_BYTES);
	vm_close(&m);
	munmap(mem2, PAGES * 4096);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
