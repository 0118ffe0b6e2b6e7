/* SPDX-License-Identifier: MIT */
/*
 * MSI delivery (kvm_set_msi() and kvm_irq_delivery_to_apic() of the
 * kernel) and KVM_SIGNAL_MSI.
 */
#include <errno.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

/* The x86 MSI address and data fields (SDM vol. 3, 11.11). */
#define MSI_ADDR_DEST_MODE_LOGICAL (1u << 2)
#define MSI_ADDR_DEST_ID_SHIFT 12
#define MSI_ADDR_DEST_ID_MASK 0xffu
#define MSI_DATA_VECTOR_MASK 0xffu
#define MSI_DATA_DELIVERY_MODE(d) (((d) >> 8) & 7u)
#define MSI_DATA_LEVEL_TRIGGER (1u << 15)

/*
 * kvm_set_msi() + kvm_set_msi_irq(): the destination from address bits
 * 19:12 (and address_hi bits 31:8 with KVM_CAP_X2APIC_API's 32-bit ids),
 * the vector, delivery and trigger mode from the data, then
 * kvm_irq_delivery_to_apic().  Returns the number of vCPUs reached, -1,
 * or -EINVAL for an x2APIC-format address with address_hi bits 7:0 set.
 * irq_lock held.
 */
int kvm_set_msi(struct kvm_eventfds *ev, uint32_t lo, uint32_t hi, uint32_t data, int level)
{
	bool x2apic_format = READ_ONCE(ev->kvm->arch.x2apic_format);
	struct kvm_lapic_irq irq = {
		.vector = data & MSI_DATA_VECTOR_MASK,
		.delivery_mode = MSI_DATA_DELIVERY_MODE(data),
		.dest_logical = lo & MSI_ADDR_DEST_MODE_LOGICAL,
		.trig_level = data & MSI_DATA_LEVEL_TRIGGER,
		.dest_id = (lo >> MSI_ADDR_DEST_ID_SHIFT) & MSI_ADDR_DEST_ID_MASK,
	};

	lockdep_assert_held(&ev->irq_lock);
	if (x2apic_format && (hi & 0xff))
		return -EINVAL;
	if (!level)
		return -1;
	if (x2apic_format)
		irq.dest_id |= hi & ~0xffu;
	return kvm_irq_delivery_to_apic(ev, NULL, &irq);
}

int kvm_send_userspace_msi(struct kvm *kvm, const struct kvm_msi *msi)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	int r;

	if (!irqchip_in_kernel(kvm) || msi->flags)
		return -EINVAL;
	kvm_irq_sync_vcpus(ev);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	r = kvm_set_msi(ev, msi->address_lo, msi->address_hi, msi->data, 1);
	gm_mutex_unlock(&ev->irq_lock);
	return r;
}
