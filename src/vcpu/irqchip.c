/* SPDX-License-Identifier: MIT */
/*
 * The in-kernel irqchip's VM-level entry points (see irqchip.h for what is
 * modelled and why, irqchip_internal.h for how the model is split):
 * KVM_CREATE_IRQCHIP, the split irqchip, KVM_CREATE_PIT2, KVM_IRQ_LINE,
 * KVM_SET_GSI_ROUTING, kvm_set_irq() and the guest's boot-time setup.
 */
#include <errno.h>
#include <stdlib.h>

#include "core/kvm_arch.h"
#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

int __kvm_set_irq(struct kvm_eventfds *ev, int irq_source_id, uint32_t gsi, int level)
{
	struct kvm_irq_routing_table *rt = ev->routing;
	int ret = -1;

	lockdep_assert_held(&ev->irq_lock);
	for (int i = 0; gsi < rt->nr_rt_entries && i < KVM_ROUTES_PER_GSI; i++) {
		int16_t x = rt->map[gsi][i];
		int r;

		if (x < 0)
			continue;
		r = kvm_irq_route_set(ev, &rt->e[x], irq_source_id, level);
		if (r >= 0)
			ret = r + (ret < 0 ? 0 : ret);
	}
	return ret;
}

int kvm_set_irq(struct kvm *kvm, int irq_source_id, uint32_t gsi, int level)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	int ret;

	if (!ev || smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_NONE)
		return -1;
	kvm_irq_sync_vcpus(ev);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	ret = __kvm_set_irq(ev, irq_source_id, gsi, level);
	gm_mutex_unlock(&ev->irq_lock);
	return ret;
}

void kvm_set_irq_pulse(struct kvm *kvm, int irq_source_id, uint32_t gsi)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);

	if (!ev || smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_NONE)
		return;
	kvm_irq_sync_vcpus(ev);
	/* One critical section: the woken guest does not wait for the 0. */
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	__kvm_set_irq(ev, irq_source_id, gsi, 1);
	__kvm_set_irq(ev, irq_source_id, gsi, 0);
	gm_mutex_unlock(&ev->irq_lock);
}

int kvm_vm_ioctl_irq_line(struct kvm *kvm, struct kvm_irq_level *irq_event)
{
	if (!irqchip_in_kernel(kvm))
		return -ENXIO;
	irq_event->status = kvm_set_irq(kvm, KVM_USERSPACE_IRQ_SOURCE_ID, irq_event->irq,
					irq_event->level != 0);
	return 0;
}

/* Publish a new irqchip: chip and routing first, the mode last (release). */
static void irqchip_publish(struct kvm_eventfds *ev, struct kvm_irqchip_state *chip,
			    struct kvm_irq_routing_table *rt, int mode)
{
	smp_store_release(&ev->chip, chip);
	smp_store_release(&ev->routing, rt);
	/* Pairs with the acquire in kvm_irqchip_mode(). */
	smp_store_release(&ev->irqchip_mode, mode);
}

int kvm_vm_ioctl_create_irqchip(struct kvm *kvm)
{
	struct kvm_irq_routing_table *rt = NULL;
	struct kvm_irqchip_state *chip = NULL;
	struct kvm_eventfds *ev;
	int r;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	r = -EEXIST;
	if (irqchip_in_kernel(kvm))
		goto out;
	r = -EINVAL;
	if (kvm->created_vcpus)
		goto out;
	r = -ENOMEM;
	ev = __kvm_eventfds_get_locked(kvm);
	chip = calloc(1, sizeof(*chip));
	if (!ev || !chip)
		goto out;
	/* Reset state: PIC unmasked and edge, IOAPIC pins masked and edge. */
	for (int pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++)
		chip->redirtbl[pin] = IOAPIC_RTE_MASKED;
	r = kvm_setup_default_irq_routing(&rt);
	if (r)
		goto out;
	irqchip_publish(ev, chip, rt, KVM_IRQCHIP_KERNEL);
	chip = NULL;
out:
	gm_mutex_unlock(&kvm->lock);
	free(chip);
	return r;
}

int kvm_arch_enable_split_irqchip(struct kvm *kvm, uint64_t nr_reserved_ioapic_pins)
{
	struct kvm_irq_routing_table *rt = NULL;
	struct kvm_eventfds *ev;
	int r;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	r = -EINVAL;
	if (nr_reserved_ioapic_pins > KVM_MAX_RESERVED_IOAPIC_PINS)
		goto out;
	r = -EEXIST;
	if (irqchip_in_kernel(kvm) || kvm->created_vcpus)
		goto out;
	r = -ENOMEM;
	ev = __kvm_eventfds_get_locked(kvm);
	if (!ev)
		goto out;
	r = kvm_irq_routing_build(NULL, 0, true, &rt); /* an empty table */
	if (!r)
		irqchip_publish(ev, NULL, rt, KVM_IRQCHIP_SPLIT);
out:
	gm_mutex_unlock(&kvm->lock);
	return r;
}

bool kvm_arch_irqchip_in_kernel(struct kvm *kvm)
{
	return irqchip_in_kernel(kvm);
}

int kvm_vm_ioctl_create_pit(struct kvm *kvm, uint32_t flags)
{
	struct kvm_eventfds *ev;
	int r = 0;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	ev = __kvm_eventfds_get_locked(kvm);
	if (!ev) {
		r = -ENOMEM;
	} else if (ev->pit) {
		r = -EEXIST;
	} else {
		ev->pit = true;
		ev->pit_flags = flags;
	}
	gm_mutex_unlock(&kvm->lock);
	return r;
}

int kvm_irq_routing_precheck(struct kvm *kvm, uint32_t nr, uint32_t flags)
{
	if (!irqchip_in_kernel(kvm) || nr > KVM_MAX_IRQ_ROUTES || flags)
		return -EINVAL;
	return 0;
}

int kvm_set_irq_routing(struct kvm *kvm, const struct kvm_irq_routing_entry *ue, uint32_t nr)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	struct kvm_irq_routing_table *rt, *old;
	int r;

	if (!ev || smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_NONE)
		return -EINVAL;
	r = kvm_irq_routing_build(ue, nr, smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_SPLIT, &rt);
	if (r)
		return r;
	/* Every reader holds irq_lock: irqfds resolve their GSI at injection. */
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	old = ev->routing;
	ev->routing = rt;
	gm_mutex_unlock(&ev->irq_lock);
	kvm_irq_routing_free(old);
	return 0;
}

void kvm_irqchip_destroy(struct kvm_eventfds *ev)
{
	for (uint32_t i = 0; i < ev->nr_lapics; i++) {
		pthread_cond_destroy(&ev->lapic[i]->halt_cv);
		pthread_mutex_destroy(&ev->lapic[i]->halt_lock);
		free(ev->lapic[i]);
		ev->lapic[i] = NULL;
	}
	kvm_irq_routing_free(ev->routing);
	free(ev->chip);
	ev->routing = NULL;
	ev->chip = NULL;
}

void kvm_irqchip_guest_setup(struct kvm_vcpu *vcpu)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	struct kvm_irqchip_state *c;

	if (!ev || vcpu->vcpu_id != READ_ONCE(vcpu->kvm->bsp_vcpu_id) ||
	    kvm_irqchip_mode(vcpu->kvm) != KVM_IRQCHIP_KERNEL)
		return;
	kvm_irq_sync_vcpus(ev);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	c = ev->chip;
	if (!c->guest_ready) {
		c->guest_ready = true;
		c->pics[0].imr = c->pics[1].imr = 0xff;
		for (uint32_t pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
			bool level = pin >= KVM_PIC_NUM_PINS;

			/* Fixed, physical destination: this vCPU's APIC id. */
			c->redirtbl[pin] = GUESTMEM_IRQ_PIN_VECTOR(pin) |
					   (level ? IOAPIC_RTE_LEVEL : 0) |
					   (uint64_t)vcpu->vcpu_id << IOAPIC_RTE_DEST_SHIFT;
			/* Unmasking a level pin whose line is high delivers it. */
			if (level && (c->ioapic_irr & (1u << pin)))
				kvm_ioapic_service(ev, pin);
		}
	}
	gm_mutex_unlock(&ev->irq_lock);
}
