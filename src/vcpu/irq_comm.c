/* SPDX-License-Identifier: MIT */
/*
 * GSI routing (the kernel's irq_comm.c and the routing half of its
 * irqchip.c): building a table from KVM_SET_GSI_ROUTING entries, the x86
 * default table, and driving one route.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

/* __kvm_irq_line_state(): each source id keeps its level; the line ORs them. */
int __kvm_irq_line_state(unsigned long *line, int source, int level)
{
	if (level)
		*line |= 1UL << source;
	else
		*line &= ~(1UL << source);
	return *line != 0;
}

static struct kvm_irq_routing_table *rt_alloc(uint32_t nr, uint32_t nr_rt_entries)
{
	struct kvm_irq_routing_table *rt = calloc(1, sizeof(*rt) + nr * sizeof(rt->e[0]));

	if (!rt)
		return NULL;
	rt->map = malloc(nr_rt_entries * sizeof(*rt->map));
	if (!rt->map) {
		free(rt);
		return NULL;
	}
	memset(rt->map, 0xff, nr_rt_entries * sizeof(*rt->map));
	memset(rt->chip, 0xff, sizeof(rt->chip));
	rt->nr_rt_entries = nr_rt_entries;
	return rt;
}

void kvm_irq_routing_free(struct kvm_irq_routing_table *rt)
{
	if (rt)
		free(rt->map);
	free(rt);
}

/*
 * setup_routing_entry() and the x86 kvm_set_routing_entry(): -EINVAL for a
 * second route of a GSI to one irqchip, any second route next to an MSI or
 * other non-irqchip one, a bad pin or chip, an unknown type.
 */
static int rt_add(struct kvm_irq_routing_table *rt, const struct kvm_irq_routing_entry *ue,
		  bool split)
{
	struct kvm_kernel_irq_routing_entry *e = &rt->e[rt->nr];
	int16_t *slot = NULL;

	for (int i = 0; i < KVM_ROUTES_PER_GSI; i++) {
		int16_t x = rt->map[ue->gsi][i];

		if (x < 0) {
			slot = slot ? slot : &rt->map[ue->gsi][i];
			continue;
		}
		if (rt->e[x].type != KVM_IRQ_ROUTING_IRQCHIP || ue->type != KVM_IRQ_ROUTING_IRQCHIP ||
		    rt->e[x].irqchip == ue->u.irqchip.irqchip)
			return -EINVAL;
	}
	memset(e, 0, sizeof(*e));
	e->gsi = ue->gsi;
	e->type = ue->type;
	switch (ue->type) {
	case KVM_IRQ_ROUTING_IRQCHIP:
		if (split)
			return -EINVAL;
		e->irqchip = ue->u.irqchip.irqchip;
		e->pin = ue->u.irqchip.pin;
		if (e->irqchip == KVM_IRQCHIP_PIC_MASTER || e->irqchip == KVM_IRQCHIP_PIC_SLAVE) {
			if (e->pin >= KVM_PIC_NUM_PINS / 2)
				return -EINVAL;
			e->pin += e->irqchip == KVM_IRQCHIP_PIC_SLAVE ? KVM_PIC_NUM_PINS / 2 : 0;
		} else if (e->irqchip != KVM_IRQCHIP_IOAPIC || e->pin >= KVM_IOAPIC_NUM_PINS) {
			return -EINVAL;
		}
		rt->chip[e->irqchip][e->pin] = (int)e->gsi;
		break;
	case KVM_IRQ_ROUTING_MSI:
		/* The x2APIC-format check needs KVM_CAP_X2APIC_API, which we lack. */
		e->msi_lo = ue->u.msi.address_lo;
		e->msi_hi = ue->u.msi.address_hi;
		e->msi_data = ue->u.msi.data;
		break;
	case KVM_IRQ_ROUTING_HV_SINT: /* CONFIG_KVM_HYPERV=y: accepted, never fires */
		break;
	default: /* S390_ADAPTER, XEN_EVTCHN (CONFIG_KVM_XEN=n), unknown */
		return -EINVAL;
	}
	if (!slot)
		return -EINVAL; /* unreachable: a fourth route repeats a chip */
	*slot = (int16_t)rt->nr++;
	return 0;
}

/* kvm_set_irq_routing(): the whole table or -EINVAL/-ENOMEM, nothing half. */
int kvm_irq_routing_build(const struct kvm_irq_routing_entry *ue, uint32_t nr, bool split,
		    struct kvm_irq_routing_table **out)
{
	struct kvm_irq_routing_table *rt;
	uint32_t max_gsi = 0;
	int r;

	for (uint32_t i = 0; i < nr; i++) {
		if (ue[i].gsi >= KVM_MAX_IRQ_ROUTES)
			return -EINVAL;
		max_gsi = GM_MAX(max_gsi, ue[i].gsi);
	}
	rt = rt_alloc(nr, max_gsi + 1);
	if (!rt)
		return -ENOMEM;
	for (uint32_t i = 0; i < nr; i++) {
		uint32_t allowed = ue[i].type == KVM_IRQ_ROUTING_MSI ? KVM_MSI_VALID_DEVID : 0;

		r = (ue[i].flags & ~allowed) ? -EINVAL : rt_add(rt, &ue[i], split);
		if (r) {
			kvm_irq_routing_free(rt);
			return r;
		}
	}
	*out = rt;
	return 0;
}

/* The x86 default table: GSI 0-15 to IOAPIC and PIC, 16-23 to the IOAPIC. */
int kvm_setup_default_irq_routing(struct kvm_irq_routing_table **out)
{
	struct kvm_irq_routing_entry ue[16 * 2 + 8];
	uint32_t n = 0;

	memset(ue, 0, sizeof(ue));
	for (uint32_t gsi = 0; gsi < KVM_IOAPIC_NUM_PINS; gsi++) {
		ue[n].gsi = gsi;
		ue[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		ue[n].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
		ue[n++].u.irqchip.pin = gsi;
		if (gsi >= KVM_PIC_NUM_PINS)
			continue;
		ue[n].gsi = gsi;
		ue[n].type = KVM_IRQ_ROUTING_IRQCHIP;
		ue[n].u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
		ue[n++].u.irqchip.pin = gsi % 8;
	}
	return kvm_irq_routing_build(ue, n, false, out);
}

int kvm_irq_route_set(struct kvm_eventfds *ev, const struct kvm_kernel_irq_routing_entry *e,
		     int source, int level)
{
	lockdep_assert_held(&ev->irq_lock);
	switch (e->type) {
	case KVM_IRQ_ROUTING_IRQCHIP:
		if (e->irqchip == KVM_IRQCHIP_IOAPIC)
			return kvm_ioapic_set_irq(ev, e->pin, source, level);
		return kvm_pic_set_irq(ev->chip, e->pin, source, level);
	case KVM_IRQ_ROUTING_MSI:
		return kvm_set_msi(ev, e->msi_lo, e->msi_hi, e->msi_data, level);
	default: /* HV_SINT: no SynIC is ever enabled */
		return -1;
	}
}
