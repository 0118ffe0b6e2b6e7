/* SPDX-License-Identifier: MIT */
/*
 * System Management Mode end to end, as a VMM drives it through the uAPI:
 * SMRAM in address space 1 (memslot id 1 << 16 | n), SMBASE set with
 * KVM_SET_MSRS, an SMI raised by the guest's own x2APIC IPI (delivery mode
 * SMI, as the kernel's smm_test does) or by KVM_SMI, the handler's 16-bit
 * code run in SMM, the state-save area KVM writes, the state the VMM sees
 * while the vCPU is in SMM, and RSM back to the interrupted long-mode code.
 */
#include <sys/mman.h>

#include <guestmem/guestmem.h> /* guestmem_config_set */

#include "harness.h"
#include "x86_vm.h"

#define SMRAM_GPA 0x1000000ULL
#define SMRAM_SIZE 0x10000ULL
#define SMRAM_SLOT ((1u << 16) | 1u)
#define MSR_SMBASE 0x9e
#define SAVE 0xfe00 /* the save area, from SMBASE */
#define SMM_STAGE 0xfe

struct smm_vm {
	struct vm m;
	uint8_t *smram;
};

static uint64_t smram_u64(struct smm_vm *s, unsigned off)
{
	uint64_t v;

	memcpy(&v, s->smram + SAVE + off, 8);
	return v;
}

/* The handler: report SMM_STAGE on PORT, then RSM (16-bit code). */
static const uint8_t handler[] = {
	0xb0, SMM_STAGE, /* mov $SMM_STAGE, %al */
	0xe6, PORT,	 /* out %al, $PORT */
	0x0f, 0xaa,	 /* rsm */
};

static void smm_vm_open(struct smm_vm *s, const uint8_t *code, size_t n)
{
	struct kvm_userspace_memory_region r = { .slot = SMRAM_SLOT, .guest_phys_addr = SMRAM_GPA,
						 .memory_size = SMRAM_SIZE };

	vm_open(&s->m);
	vm_set_supported_cpuid(&s->m); /* long mode: the 64-bit save area */
	s->smram = mmap(NULL, SMRAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			-1, 0);
	ASSERT_TRUE(s->smram != MAP_FAILED);
	memcpy(s->smram + 0x8000, handler, sizeof(handler));
	r.userspace_addr = (uintptr_t)s->smram;
	ASSERT_EQ(guestmem_sys_ioctl(s->m.fd, KVM_SET_USER_MEMORY_REGION, &r), 0);
	ASSERT_EQ(vm_msr_set(&s->m, MSR_SMBASE, SMRAM_GPA), 1);
	memcpy(s->m.mem + CODE, code, n);
	vm_start(&s->m, CODE);
}

static void smm_vm_close(struct smm_vm *s)
{
	vm_close(&s->m);
	munmap(s->smram, SMRAM_SIZE);
}

static void get_events(struct smm_vm *s, struct kvm_vcpu_events *e)
{
	ASSERT_EQ(guestmem_sys_ioctl(s->m.vcpu, KVM_GET_VCPU_EVENTS, e), 0);
	ASSERT_TRUE(e->flags & KVM_VCPUEVENT_VALID_SMM);
}

/* Stopped at the handler's OUT: the vCPU's state as KVM shows it in SMM. */
static void expect_in_smm(struct smm_vm *s)
{
	struct kvm_vcpu_events e;
	struct kvm_sregs sr;
	struct kvm_regs r;

	expect_io(&s->m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pio_data(&s->m)[0], SMM_STAGE);
	get_events(s, &e);
	EXPECT_EQ(e.smi.smm, 1);
	EXPECT_EQ(e.smi.pending, 0);
	EXPECT_EQ(e.smi.smm_inside_nmi, 0);
	EXPECT_EQ(e.nmi.masked, 1); /* SMM blocks NMIs */
	ASSERT_EQ(guestmem_sys_ioctl(s->m.vcpu, KVM_GET_SREGS, &sr), 0);
	EXPECT_EQ(sr.cs.base, SMRAM_GPA);
	EXPECT_EQ(sr.cs.selector, (SMRAM_GPA >> 4) & 0xffff);
	EXPECT_EQ(sr.cs.limit, 0xffffffffu);
	EXPECT_EQ(sr.cr0 & 0x80000001u, 0u); /* no PE, no PG */
	EXPECT_EQ(sr.cr4, 0u);
	EXPECT_EQ(sr.efer, 0u);
	EXPECT_EQ(sr.idt.limit, 0u);
	ASSERT_EQ(guestmem_sys_ioctl(s->m.vcpu, KVM_GET_REGS, &r), 0);
	EXPECT_EQ(r.rflags & ~0x10000ull, 2u);
	/* The save area: KVM's 64-bit layout. */
	EXPECT_EQ((uint32_t)smram_u64(s, 0xf8) >> 0, 0u);
	EXPECT_EQ((uint32_t)(smram_u64(s, 0xf8) >> 32), 0x00020064u); /* revision */
	EXPECT_EQ((uint32_t)smram_u64(s, 0x100), SMRAM_GPA);	       /* SMBASE */
	EXPECT_EQ(smram_u64(s, 0x150), 0x1000u);		       /* CR3 */
	EXPECT_EQ(smram_u64(s, 0xd0), 0x500u);			       /* EFER: LME, LMA */
	EXPECT_EQ(smram_u64(s, 0x178) >> 16, CODE >> 16);	       /* RIP in the code */
}

/* After RSM: long mode again, NMIs unblocked, out of SMM. */
static void expect_left_smm(struct smm_vm *s)
{
	struct kvm_vcpu_events e;
	struct kvm_sregs sr;

	get_events(s, &e);
	EXPECT_EQ(e.smi.smm, 0);
	EXPECT_EQ(e.nmi.masked, 0);
	ASSERT_EQ(guestmem_sys_ioctl(s->m.vcpu, KVM_GET_SREGS, &sr), 0);
	EXPECT_EQ(sr.efer, 0x500u);
	EXPECT_EQ(sr.cr3, 0x1000u);
	EXPECT_EQ(sr.cs.selector, 8u);
	EXPECT_EQ(sr.cs.l, 1);
	EXPECT_EQ(sr.cr0 & 0x80000001u, 0x80000001u);
}

TEST(smi_by_self_ipi)
{
	static const uint8_t c[] = {
		0xb9, 0x30, 0x08, 0x00, 0x00, /* mov $0x830 (x2APIC ICR), %ecx */
		0xb8, 0x00, 0x42, 0x04, 0x00, /* mov $0x44200 (self, assert, SMI), %eax */
		0x31, 0xd2,		      /* xor %edx, %edx */
		0x0f, 0x30,		      /* wrmsr */
		0xb0, 0x01,		      /* mov $1, %al */
		0xe6, PORT,		      /* out %al, $PORT */
		0xf4,
	};
	struct smm_vm s;
	struct kvm_regs r;

	smm_vm_open(&s, c, sizeof(c));
	/* x2APIC on, as the guest of smm_test turns it on; SPIV stays 0:
	 * an SMI IPI is accepted by a software-disabled APIC. */
	ASSERT_EQ(vm_msr_set(&s.m, MSR_APIC_BASE, APIC_GPA | 0x100 | 0x800 | 0x400), 1);
	expect_in_smm(&s);
	EXPECT_EQ(smram_u64(&s, 0x178), CODE + 14); /* saved RIP: after the WRMSR */
	EXPECT_EQ(smram_u64(&s, 0x1f0), 0x830u);    /* saved RCX (gprs[14]) */
	/* RSM: back after the WRMSR, registers as they were. */
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	EXPECT_EQ(pio_data(&s.m)[0], 1);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_GET_REGS, &r), 0);
	EXPECT_EQ(r.rcx, 0x830u);
	EXPECT_EQ(r.rsp, STACK_TOP);
	expect_left_smm(&s);
	smm_vm_close(&s);
}

TEST(smi_by_ioctl)
{
	static const uint8_t c[] = {
		0xb0, 0x01, 0xe6, PORT, /* out $1 */
		0xb0, 0x02, 0xe6, PORT, /* out $2 */
		0xf4,
	};
	struct kvm_vcpu_events e;
	struct smm_vm s;
	uint64_t count;

	smm_vm_open(&s, c, sizeof(c));
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pio_data(&s.m)[0], 1);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	get_events(&s, &e);
	EXPECT_EQ(e.smi.pending, 1);
	EXPECT_EQ(e.smi.smm, 0);
	/* Taken at the next entry, before the guest's next instruction. */
	expect_in_smm(&s);
	EXPECT_EQ(smram_u64(&s, 0x178), CODE + 4);
	ASSERT_EQ(vm_msr_get(&s.m, 0x34 /* MSR_SMI_COUNT */, &count), 1);
	EXPECT_EQ(count, 1u);
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	EXPECT_EQ(pio_data(&s.m)[0], 2);
	expect_left_smm(&s);
	smm_vm_close(&s);
}

/* An SMI taken with NMIs blocked: smm_inside_nmi, and RSM leaves them blocked. */
TEST(smi_inside_nmi)
{
	static const uint8_t c[] = { 0xb0, 0x01, 0xe6, PORT, 0xb0, 0x02, 0xe6, PORT, 0xf4 };
	struct kvm_vcpu_events e;
	struct smm_vm s;

	smm_vm_open(&s, c, sizeof(c));
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	get_events(&s, &e);
	e.nmi.masked = 1;
	e.flags = 0;
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SET_VCPU_EVENTS, &e), 0);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	ASSERT_EQ(pio_data(&s.m)[0], SMM_STAGE);
	get_events(&s, &e);
	EXPECT_EQ(e.smi.smm, 1);
	EXPECT_EQ(e.smi.smm_inside_nmi, 1);
	EXPECT_EQ(e.nmi.masked, 1);
	expect_io(&s.m, KVM_EXIT_IO_OUT, PORT, 1);
	EXPECT_EQ(pio_data(&s.m)[0], 2);
	get_events(&s, &e);
	EXPECT_EQ(e.smi.smm, 0);
	EXPECT_EQ(e.smi.smm_inside_nmi, 0);
	EXPECT_EQ(e.nmi.masked, 1); /* still the NMI handler's */
	smm_vm_close(&s);
}

/* A halted vCPU is woken by an SMI (kvm_vcpu_has_events()). */
TEST(smi_wakes_a_halted_vcpu)
{
	static const uint8_t c[] = { 0xf4, 0xb0, 0x03, 0xe6, PORT, 0xf4 };
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_HALTED };
	struct smm_vm s;

	smm_vm_open(&s, c, sizeof(c));
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SET_MP_STATE, &mp), 0);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	expect_in_smm(&s);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_GET_MP_STATE, &mp), 0);
	EXPECT_EQ(mp.mp_state, KVM_MP_STATE_RUNNABLE);
	smm_vm_close(&s);
}

TEST(rsm_of_a_bad_state_shuts_down)
{
	static const uint8_t c[] = { 0xb0, 0x01, 0xe6, PORT, 0xf4 };
	uint64_t cr0 = 0x80000000; /* PG without PE */
	struct smm_vm s;

	smm_vm_open(&s, c, sizeof(c));
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	expect_in_smm(&s);
	/* The VMM (or the handler) edits the saved CR0: RSM cannot load it. */
	memcpy(s.smram + SAVE + 0x158, &cr0, 8);
	ASSERT_EQ(run(&s.m), 0);
	EXPECT_EQ(s.m.run->exit_reason, KVM_EXIT_SHUTDOWN);
	smm_vm_close(&s);
}

TEST(smi_without_smram_kills_the_vm)
{
	static const uint8_t c[] = { 0xb0, 0x01, 0xe6, PORT, 0xf4 };
	struct smm_vm s;

	smm_vm_open(&s, c, sizeof(c));
	/* No memory at SMBASE + 0xfe00 in address space 1: the save fails. */
	ASSERT_EQ(vm_msr_set(&s.m, MSR_SMBASE, 0x30000), 1);
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	ASSERT_EQ(run(&s.m), -1);
	EXPECT_EQ(errno, EIO);
	smm_vm_close(&s);
}

/* SMRAM unmapped by the VMM while its vCPU is in SMM: an error, not a crash. */
TEST(smram_unmapped_in_smm)
{
	static const uint8_t c[] = { 0xb0, 0x01, 0xe6, PORT, 0xf4 };
	struct smm_vm s;

	smm_vm_open(&s, c, sizeof(c));
	ASSERT_EQ(guestmem_sys_ioctl(s.m.vcpu, KVM_SMI, 0), 0);
	expect_in_smm(&s);
	ASSERT_EQ(munmap(s.smram, SMRAM_SIZE), 0);
	/* The RSM cannot be fetched: KVM's emulator fails there too. */
	ASSERT_EQ(run(&s.m), 0);
	EXPECT_EQ(s.m.run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	EXPECT_EQ(s.m.run->internal.suberror, KVM_INTERNAL_ERROR_EMULATION);
	s.smram = mmap(NULL, SMRAM_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	smm_vm_close(&s);
}

TEST(smi_needs_config_smm)
{
	struct vm m;

	/* Without CONFIG_KVM_SMM, KVM_SMI is ENOTTY (and SMBASE is no MSR). */
	ASSERT_EQ(guestmem_config_set(NULL, "KVM_SMM=n", NULL), 0);
	vm_open(&m);
	EXPECT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SMI, 0), -1);
	EXPECT_EQ(errno, ENOTTY);
	EXPECT_EQ(vm_msr_set(&m, MSR_SMBASE, SMRAM_GPA), 0);
	vm_close(&m);
	ASSERT_EQ(guestmem_config_set(NULL, "KVM_SMM=y", NULL), 0);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
