/* SPDX-License-Identifier: MIT */
/*
 * Port I/O and hypercalls of <guestmem/guest.h>, with the register effects
 * of the instructions they stand for:
 *
 *   out dx, al/ax/eax   RDX = port, RAX = value; KVM_EXIT_IO (OUT), data at
 *                       kvm_run + 4096; RIP advances on re-entry
 *   in al/ax/eax, dx    RDX = port; the data page is zeroed before the exit;
 *                       on re-entry the VMM's bytes are merged into RAX
 *                       (1, 2 bytes) or zero-extended (4); RIP advances
 *   vmcall              RAX = nr, RBX/RCX/RDX/RSI = a0..a3; result in RAX
 *
 * (spec kvm-vcpu-eventfd-spec.md §5.3, §5.5; kvm-gmem-spec.md §3.8)
 */
#include <errno.h>
#include <string.h>

#include "vcpu/vcpu.h"

#define KVM_ENOSYS 1000
#define KVM_HC_VAPIC_POLL_IRQ_NR 1
#define KVM_PIO_PORT_0X7E 0x7e

static uint64_t low_mask(unsigned size)
{
	return size == 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

/* One IN or OUT of @size bytes at @port; returns the IN data. */
static uint32_t guest_pio(struct kvm_vcpu *v, uint16_t port, unsigned size, bool in,
			  uint32_t value)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + KVM_PIO_DATA_OFFSET;

	kvm_guest_stop_point(v);
	v->regs.rdx = (v->regs.rdx & ~0xffffULL) | port;
	if (in) {
		memset(data, 0, size);
	} else {
		v->regs.rax = (v->regs.rax & ~low_mask(size)) | value;
		memcpy(data, &value, size);
	}
	/* A matching ioeventfd or coalesced zone completes an OUT inside KVM. */
	if (!in && (kvm_ioeventfd_write(v->kvm, true, port, size, &value) ||
		    kvm_coalesced_write(v, true, port, size, &value))) {
		v->regs.rip += size == 2 ? 2 : 1;
		return 0;
	}
	run->exit_reason = KVM_EXIT_IO;
	run->io.direction = in ? KVM_EXIT_IO_IN : KVM_EXIT_IO_OUT;
	run->io.size = (uint8_t)size;
	run->io.port = port;
	run->io.count = 1;
	run->io.data_offset = KVM_PIO_DATA_OFFSET;
	v->pending = in ? VCPU_PENDING_PIO_IN : VCPU_PENDING_PIO_OUT;
	v->pending_size = (uint8_t)size;
	v->pending_rip = v->regs.rip;
	if (!in && port == KVM_PIO_PORT_0X7E) {
		/* KVM_X86_QUIRK_OUT_7E_INC_RIP: RIP moves before the exit. */
		v->regs.rip += size == 2 ? 2 : 1;
		v->pending = VCPU_PENDING_NONE;
	}
	kvm_guest_park(v, true, 0);
	return in ? (uint32_t)(v->regs.rax & low_mask(size)) : 0;
}

GM_API void guestmem_guest_outb(struct guestmem_guest *g, uint16_t port, uint8_t value)
{
	guest_pio(guest_to_vcpu(g), port, 1, false, value);
}

GM_API void guestmem_guest_outw(struct guestmem_guest *g, uint16_t port, uint16_t value)
{
	guest_pio(guest_to_vcpu(g), port, 2, false, value);
}

GM_API void guestmem_guest_outl(struct guestmem_guest *g, uint16_t port, uint32_t value)
{
	guest_pio(guest_to_vcpu(g), port, 4, false, value);
}

GM_API uint8_t guestmem_guest_inb(struct guestmem_guest *g, uint16_t port)
{
	return (uint8_t)guest_pio(guest_to_vcpu(g), port, 1, true, 0);
}

GM_API uint16_t guestmem_guest_inw(struct guestmem_guest *g, uint16_t port)
{
	return (uint16_t)guest_pio(guest_to_vcpu(g), port, 2, true, 0);
}

GM_API uint32_t guestmem_guest_inl(struct guestmem_guest *g, uint16_t port)
{
	return guest_pio(guest_to_vcpu(g), port, 4, true, 0);
}

/* ---- hypercalls ----------------------------------------------------------- */

bool kvm_hypercall(struct kvm_vcpu *v, uint64_t nr, const uint64_t args[3], bool longmode,
		   uint64_t *ret)
{
	struct kvm_run *run = v->run;
	uint64_t gpa = args[0], npages = args[1], gfn = gpa >> GM_PAGE_SHIFT;
	/* Written under kvm->lock, which ranks above vcpu->mutex: READ_ONCE. */
	uint64_t exits = READ_ONCE(v->kvm->exit_hypercall_mask);

	if (nr == KVM_HC_VAPIC_POLL_IRQ_NR) {
		*ret = 0;
	} else if (nr != KVM_HC_MAP_GPA_RANGE || !(exits & (1ULL << KVM_HC_MAP_GPA_RANGE))) {
		*ret = (uint64_t)-KVM_ENOSYS;
	} else if ((gpa & (GM_PAGE_SIZE - 1)) || !npages || gfn + npages <= gfn) {
		*ret = (uint64_t)-KVM_EINVAL;
	} else {
		/* ret and args[3..5] are left as they were, as KVM does. */
		run->exit_reason = KVM_EXIT_HYPERCALL;
		run->hypercall.nr = nr;
		run->hypercall.args[0] = gpa;
		run->hypercall.args[1] = npages;
		run->hypercall.args[2] = args[2];
		*kvm_run_hypercall_flags(run) = longmode ? KVM_EXIT_HYPERCALL_LONG_MODE : 0;
		return true;
	}
	return false;
}

GM_API uint64_t guestmem_guest_hypercall(struct guestmem_guest *g, uint64_t nr, uint64_t a0,
					 uint64_t a1, uint64_t a2, uint64_t a3)
{
	struct kvm_vcpu *v = guest_to_vcpu(g);
	uint64_t ret;

	kvm_guest_stop_point(v);
	v->regs.rax = nr;
	v->regs.rbx = a0;
	v->regs.rcx = a1;
	v->regs.rdx = a2;
	v->regs.rsi = a3;
	if (kvm_hypercall(v, nr, (const uint64_t[3]){ a0, a1, a2 }, true, &ret)) {
		v->pending = VCPU_PENDING_HYPERCALL;
		kvm_guest_park(v, true, 0);
		return v->regs.rax; /* the completion wrote RAX and advanced RIP */
	}
	v->regs.rax = ret; /* answered in KVM, no exit */
	v->regs.rip += 3;
	return v->regs.rax;
}
