/* SPDX-License-Identifier: MIT */
/*
 * What KVM does around instructions it cannot or will not run as they
 * stand, through the uAPI with small machine-code guests (x86_vm.h):
 *  - KVM_X86_QUIRK_FIX_HYPERCALL_INSN: the other vendor's hypercall
 *    instruction is rewritten in guest memory to the vendor module's; with
 *    the quirk disabled it is #UD, delivered through the guest's IDT.
 *  - An instruction the emulator does not know, met on an MMIO access:
 *    #UD and, at CPL 0, an internal-error exit without bytes; with
 *    KVM_CAP_EXIT_ON_EMULATION_FAILURE the exit carries the bytes at RIP.
 *  - The guest's WRMSR of TSC moves TSC_ADJUST too (and the reverse).
 */
#include <cpuid.h>

#include "lib/host_cpuid.h"
#include "x86_vm.h"

#define PORT2 0x11
#define UD_HANDLER 0x14000ULL

/* The #UD gate (vector 6) to a handler that reports its RIP by OUT to PORT2. */
static void install_ud_handler(struct vm *m)
{
	static const uint8_t handler[] = {
		0x48, 0x8b, 0x04, 0x24,	 /* mov (%rsp), %rax: the faulting RIP */
		0x66, 0xba, PORT2, 0x00, /* mov $PORT2, %dx */
		0xef,			 /* out %eax, (%dx) */
		0xeb, 0xfe,		 /* jmp . */
	};
	uint8_t gate[16] = { 0x00, 0x40, 0x08, 0x00, 0x00, 0x8e, 0x01, 0x00 }; /* 0x14000 */

	memcpy(m->mem + UD_HANDLER, handler, sizeof(handler));
	memcpy(m->mem + 0x5000 + 6 * 16, gate, sizeof(gate));
}

/* The presented vendor: 'I'ntel, 'A'MD or 0 (lib/host_cpuid.h): the vendor
 * module, and so the hypercall instruction KVM treats as the guest's own. */
static char host_vendor(void)
{
	switch (gm_cpu_vendor()) {
	case GM_VENDOR_INTEL:
		return 'I';
	case GM_VENDOR_AMD:
		return 'A';
	default:
		return 0;
	}
}

static bool native_is_vmcall(void)
{
	return host_vendor() == 'I';
}

/* The other vendor's hypercall must reach guestmem to be fixed up: on a
 * host that is itself a guest, its hypervisor may answer it first. */
static bool other_hypercall_traps(void)
{
	return gm_hypercall_traps(native_is_vmcall() ? GM_VENDOR_AMD : GM_VENDOR_INTEL);
}

static void hypercall_guest(struct vm *m)
{
	/* The other vendor's instruction, then OUT. */
	uint8_t c[] = {
		0xb8, 0x0b, 0x00, 0x00, 0x00, /* mov $KVM_HC_SCHED_YIELD, %eax */
		0x0f, 0x01, 0xd9,	      /* vmmcall (or vmcall, below) */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0xeb, 0xfe,
	};

	if (!native_is_vmcall())
		c[7] = 0xc1;
	memcpy(m->mem + CODE, c, sizeof(c));
	install_ud_handler(m);
}

TEST(fix_hypercall_quirk_patches_the_instruction)
{
	static const uint8_t vmcall[3] = { 0x0f, 0x01, 0xc1 }, vmmcall[3] = { 0x0f, 0x01, 0xd9 };
	struct vm m;

	if (!host_vendor())
		SKIP("the presented vendor is neither Intel nor AMD: no hypercall is native");
	if (!other_hypercall_traps())
		SKIP("the other vendor's hypercall does not trap at CPL3 on this host");
	vm_open_irqchip(&m, false);
	hypercall_guest(&m);
	vm_start(&m, CODE);
	/* Whatever the rewritten hypercall answered, the guest goes on. */
	expect_io(&m, KVM_EXIT_IO_OUT, PORT, 4);
	ASSERT_EQ(memcmp(m.mem + CODE + 5, native_is_vmcall() ? vmcall : vmmcall, 3), 0);
	vm_close(&m);
}

TEST(fix_hypercall_quirk_disabled_is_ud)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_DISABLE_QUIRKS2,
				      .args = { KVM_X86_QUIRK_FIX_HYPERCALL_INSN } };
	uint8_t before[3];
	uint32_t rip;
	struct vm m;

	if (!host_vendor())
		SKIP("the presented vendor is neither Intel nor AMD: no hypercall is native");
	if (!other_hypercall_traps())
		SKIP("the other vendor's hypercall does not trap at CPL3 on this host");
	vm_open_irqchip(&m, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	hypercall_guest(&m);
	memcpy(before, m.mem + CODE + 5, 3);
	vm_start(&m, CODE);
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&rip, pio_data(&m), 4);
	ASSERT_EQ(rip, CODE + 5); /* #UD at the hypercall, left as it was */
	ASSERT_EQ(memcmp(m.mem + CODE + 5, before, 3), 0);
	vm_close(&m);
}

/* FLDS (%rbx) on an MMIO address: no emulator knows x87 loads. */
static void flds_guest(struct vm *m)
{
	static const uint8_t c[] = {
		0xbb, 0x00, 0x00, 0x20, 0x00, /* mov $0x200000, %ebx: no memslot */
		0xd9, 0x03,		      /* flds (%rbx) */
		0x66, 0xba, PORT, 0x00,	      /* mov $PORT, %dx */
		0xef,			      /* out %eax, (%dx) */
		0xeb, 0xfe,
	};

	memcpy(m->mem + CODE, c, sizeof(c));
	/* 2-4 MiB is mapped by vm_open's page tables but has no memslot. */
}

TEST(emulation_failure_exit_with_bytes)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = { 1 } };
	struct kvm_regs r;
	struct vm m;

	vm_open_irqchip(&m, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	flds_guest(&m);
	vm_start(&m, CODE);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ(m.run->emulation_failure.suberror, KVM_INTERNAL_ERROR_EMULATION);
	ASSERT_TRUE(m.run->emulation_failure.flags &
		    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
	ASSERT_EQ(m.run->emulation_failure.ndata, 8);
	ASSERT_TRUE(m.run->emulation_failure.insn_size >= 2);
	ASSERT_EQ(m.run->emulation_failure.insn_bytes[0], 0xd9);
	ASSERT_EQ(m.run->emulation_failure.insn_bytes[1], 0x03);
	/* Skipping it, as a VMM would, runs on to the OUT. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_REGS, &r), 0);
	ASSERT_EQ(r.rip, CODE + 5);
	r.rip += 2;
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_REGS, &r), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_IO);
	vm_close(&m);
}

TEST(emulation_failure_without_cap_is_ud_and_exit_at_cpl0)
{
	uint32_t rip;
	struct vm m;

	vm_open_irqchip(&m, false);
	flds_guest(&m);
	install_ud_handler(&m);
	vm_start(&m, CODE);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ(m.run->emulation_failure.flags, 0);
	ASSERT_EQ(m.run->emulation_failure.ndata, 6);
	/* The #UD is queued: the next run delivers it. */
	expect_io(&m, KVM_EXIT_IO_OUT, PORT2, 4);
	memcpy(&rip, pio_data(&m), 4);
	ASSERT_EQ(rip, CODE + 5);
	vm_close(&m);
}

static uint64_t msr_get(struct vm *m, uint32_t index)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e.index = index };

	ASSERT_EQ(guestmem_sys_ioctl(m->vcpu, KVM_GET_MSRS, &b), 1);
	return b.e.data;
}

TEST(guest_tsc_writes_move_tsc_adjust)
{
	static struct {
		struct kvm_cpuid2 h;
		struct kvm_cpuid_entry2 e[128];
	} cpuid = { .h.nent = 128 };
	static const uint8_t c[] = {
		0xb9, 0x10, 0x00, 0x00, 0x00, /* mov $MSR_IA32_TSC, %ecx */
		0x31, 0xc0,		      /* xor %eax, %eax */
		0xba, 0x00, 0x01, 0x00, 0x00, /* mov $0x100, %edx */
		0x0f, 0x30,		      /* wrmsr: TSC = 2^40 */
		0x66, 0xba, PORT, 0x00, 0xef, /* out */
		0xb9, 0x3b, 0x00, 0x00, 0x00, /* mov $MSR_IA32_TSC_ADJUST, %ecx */
		0x31, 0xc0, 0x31, 0xd2,	      /* xor %eax, %eax; xor %edx, %edx */
		0x0f, 0x30,		      /* wrmsr: TSC_ADJUST = 0 */
		0xb9, 0x10, 0x00, 0x00, 0x00, /* mov $MSR_IA32_TSC, %ecx */
		0x0f, 0x32,		      /* rdmsr */
		0x89, 0xd0,		      /* mov %edx, %eax */
		0x66, 0xba, PORT, 0x00, 0xef, /* out */
		0xeb, 0xfe,
	};
	uint64_t adj;
	struct vm m;

	vm_open_irqchip(&m, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.kvm, KVM_GET_SUPPORTED_CPUID, &cpuid), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_CPUID2, &cpuid), 0);
	memcpy(m.mem + CODE, c, sizeof(c));
	vm_start(&m, CODE);
	ASSERT_EQ(next_out(&m), 0);
	/* The TSC jumped to 2^40 from near 0: TSC_ADJUST took the same step. */
	ASSERT_TRUE(msr_get(&m, 0x10) >= 1ULL << 40);
	adj = msr_get(&m, 0x3b);
	ASSERT_TRUE(adj <= 1ULL << 40 && adj > (1ULL << 40) - (1ULL << 38));
	/* TSC_ADJUST back to 0 took the TSC back near 0: high half 0. */
	ASSERT_EQ(next_out(&m), 0);
	ASSERT_EQ(msr_get(&m, 0x3b), 0);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
