/* SPDX-License-Identifier: MIT */
/*
 * MSI delivery (kvm_set_msi() and kvm_irq_delivery_to_apic() of the
 * kernel) and KVM_SIGNAL_MSI.
 */
#include <errno.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

/* The x86 MSI address and data fields this model decodes. */
#define MSI_ADDR_DEST_MODE_LOGICAL (1u << 2)
#define MSI_ADDR_DEST_ID_SHIFT 12
#define MSI_ADDR_DEST_ID_MASK 0xffu
#define MSI_DATA_VECTOR_MASK 0xffu
#define MSI_DEST_BROADCAST 0xffu

/*
 * kvm_set_msi() + kvm_irq_delivery_to_apic(): destination from address bits
 * 19:12 (0xff broadcast; logical mode as a flat bitmap), vector from data.
 * Returns the number of vCPUs reached, or -1.  irq_lock held.
 */
int kvm_set_msi(struct kvm_eventfds *ev, uint32_t lo, uint32_t data, int level)
{
	uint32_t dest = (lo >> MSI_ADDR_DEST_ID_SHIFT) & MSI_ADDR_DEST_ID_MASK;
	uint32_t irq = GUESTMEM_IRQ_MSI_BASE + (data & MSI_DATA_VECTOR_MASK);
	bool logical = lo & MSI_ADDR_DEST_MODE_LOGICAL;
	int r = -1;

	lockdep_assert_held(&ev->irq_lock);
	if (!level)
		return -1;
	for (uint32_t i = 0; i < ev->nr_lapics; i++) {
		uint32_t id = ev->lapic[i]->vcpu_id;
		bool hit = dest == MSI_DEST_BROADCAST || (logical ? id < 8 && (dest & (1u << id)) : id == dest);

		if (hit)
			r = (r < 0 ? 0 : r) + kvm_apic_set_irq(ev->lapic[i], irq);
	}
	return r;
}

int kvm_send_userspace_msi(struct kvm *kvm, const struct kvm_msi *msi)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	int r;

	if (!irqchip_in_kernel(kvm) || msi->flags)
		return -EINVAL;
	kvm_irq_sync_vcpus(ev);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	r = kvm_set_msi(ev, msi->address_lo, msi->data, 1);
	gm_mutex_unlock(&ev->irq_lock);
	return r;
}
