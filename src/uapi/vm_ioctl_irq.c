// SPDX-License-Identifier: MIT
/*
 * VM-fd ioctls of the irqchip and the eventfds (spec kvm-vcpu-eventfd-spec.md
 * §6.3, §7, §8): argument copies in the kernel's order, then src/vcpu.
 * Called by gm_vm_ioctl() after the EIO check, for every command it does not
 * handle itself; *handled = false passes the command on.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <guestmem/kvm.h>

#include "uapi.h"
#include "vcpu/eventfd.h"
#include "vcpu/irqchip.h"

static long gm_vm_ioeventfd(struct kvm *kvm, unsigned long arg)
{
	struct kvm_ioeventfd args;
	int r = gm_copy_from_user(&args, (const void *)arg, sizeof(args));

	return r ? r : kvm_ioeventfd(kvm, &args);
}

static long gm_vm_irqfd(struct kvm *kvm, unsigned long arg)
{
	struct kvm_irqfd args;
	int r = gm_copy_from_user(&args, (const void *)arg, sizeof(args));

	return r ? r : kvm_irqfd(kvm, &args);
}

/* KVM_IRQ_LINE writes nothing back; _STATUS copies the whole struct out. */
static long gm_vm_irq_line(struct kvm *kvm, unsigned long arg, bool status)
{
	struct kvm_irq_level ev;
	int r = gm_copy_from_user(&ev, (const void *)arg, sizeof(ev));

	if (r)
		return r;
	r = kvm_vm_ioctl_irq_line(kvm, &ev);
	if (r)
		return r;
	return status ? gm_copy_to_user((void *)arg, &ev, sizeof(ev)) : 0;
}

/* Header, then the chip/nr/flags checks, then the entries (§8.5 1-5). */
static long gm_vm_set_gsi_routing(struct kvm *kvm, unsigned long arg)
{
	struct kvm_irq_routing hdr;
	struct kvm_irq_routing_entry *e = NULL;
	size_t size;
	int r = gm_copy_from_user(&hdr, (const void *)arg, sizeof(hdr));

	if (r)
		return r;
	r = kvm_irq_routing_precheck(kvm, hdr.nr, hdr.flags);
	if (r)
		return r;
	if (hdr.nr) {
		size = (size_t)hdr.nr * sizeof(*e);
		e = malloc(size);
		if (!e)
			return -ENOMEM;
		r = gm_copy_from_user(e, (const char *)arg + offsetof(struct kvm_irq_routing, entries),
				      size);
	}
	if (!r)
		r = kvm_set_irq_routing(kvm, e, hdr.nr);
	free(e);
	return r;
}

/* KVM_CREATE_PIT is KVM_CREATE_PIT2 with flags = KVM_PIT_SPEAKER_DUMMY. */
static long gm_vm_create_pit(struct kvm *kvm, unsigned long arg, bool v2)
{
	struct kvm_pit_config cfg = { .flags = KVM_PIT_SPEAKER_DUMMY };
	int r = v2 ? gm_copy_from_user(&cfg, (const void *)arg, sizeof(cfg)) : 0;

	return r ? r : kvm_vm_ioctl_create_pit(kvm, cfg.flags);
}

static long gm_vm_signal_msi(struct kvm *kvm, unsigned long arg)
{
	struct kvm_msi msi;
	int r = gm_copy_from_user(&msi, (const void *)arg, sizeof(msi));

	/* The delivery status is the ioctl's result; -1 reads as EPERM. */
	return r ? r : kvm_send_userspace_msi(kvm, &msi);
}

long gm_vm_ioctl_irq(struct kvm *kvm, unsigned int cmd, unsigned long arg, bool *handled)
{
	*handled = true;
	switch (cmd) {
	case KVM_IOEVENTFD:
		return gm_vm_ioeventfd(kvm, arg);
	case KVM_IRQFD:
		return gm_vm_irqfd(kvm, arg);
	case KVM_CREATE_IRQCHIP: /* the argument is ignored */
		return kvm_vm_ioctl_create_irqchip(kvm);
	case KVM_IRQ_LINE:
		return gm_vm_irq_line(kvm, arg, false);
	case KVM_IRQ_LINE_STATUS:
		return gm_vm_irq_line(kvm, arg, true);
	case KVM_SET_GSI_ROUTING:
		return gm_vm_set_gsi_routing(kvm, arg);
	case KVM_SIGNAL_MSI:
		return gm_vm_signal_msi(kvm, arg);
	case KVM_CREATE_PIT2:
		return gm_vm_create_pit(kvm, arg, true);
	case KVM_CREATE_PIT:
		return gm_vm_create_pit(kvm, arg, false);
	}
	*handled = false;
	return 0;
}
