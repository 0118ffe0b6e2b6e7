/* SPDX-License-Identifier: MIT */
/*
 * The in-kernel irqchip model (see irqchip.h for what is modelled and why).
 *
 * Status values follow the kernel's chip code: kvm_set_irq() sums the
 * non-negative results of every route of a GSI (-1 if none is), the PIC
 * answers 1 for a new edge, 0 when the pin's IRR bit was already set and -1
 * when the pin is masked, the IOAPIC answers 1 for a de-assertion, 0 for an
 * edge already pending, and otherwise the number of vCPUs it delivered to
 * (-1 masked, level pin awaiting EOI, or no target).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/kvm_arch.h"
#include "vcpu/irqchip.h"
#include "vcpu/vcpu.h"

/* ---- state --------------------------------------------------------------- */

struct kvm_kpic_state {
	uint8_t last_irr; /* edge detection: the line level last seen */
	uint8_t irr;
	uint8_t imr;
	uint8_t isr;
	uint8_t elcr; /* level-triggered pins; 0 after reset */
};

struct kvm_ioapic_pin {
	bool masked;
	bool level; /* trigger mode */
	bool remote_irr;
};

struct kvm_irqchip_state {
	struct kvm_kpic_state pics[2];
	unsigned long pic_line[KVM_PIC_NUM_PINS]; /* a bit per IRQ source id */
	uint32_t ioapic_irr;
	struct kvm_ioapic_pin ioapic[KVM_IOAPIC_NUM_PINS];
	unsigned long ioapic_line[KVM_IOAPIC_NUM_PINS];
	bool guest_ready; /* kvm_irqchip_guest_setup() ran */
};

/* A route; for PIC routes pin is 0-15 (slave pins + 8), as the kernel's. */
struct kvm_kernel_irq_routing_entry {
	uint32_t gsi;
	uint32_t type;
	uint32_t irqchip;
	uint32_t pin;
	uint32_t msi_lo, msi_hi, msi_data;
};

#define KVM_ROUTES_PER_GSI 3 /* at most one per irqchip */

struct kvm_irq_routing_table {
	/* The GSI an irqchip pin acks as (last route to it wins), or -1. */
	int chip[KVM_NR_IRQCHIPS][KVM_IOAPIC_NUM_PINS];
	uint32_t nr_rt_entries; /* highest GSI + 1 */
	int16_t (*map)[KVM_ROUTES_PER_GSI]; /* per GSI: indices into e[] or -1 */
	uint32_t nr;
	struct kvm_kernel_irq_routing_entry e[];
};

/* ---- routing tables --------------------------------------------------------- */

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

static void rt_free(struct kvm_irq_routing_table *rt)
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
static int rt_build(const struct kvm_irq_routing_entry *ue, uint32_t nr, bool split,
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
			rt_free(rt);
			return r;
		}
	}
	*out = rt;
	return 0;
}

/* The x86 default table: GSI 0-15 to IOAPIC and PIC, 16-23 to the IOAPIC. */
static int rt_build_default(struct kvm_irq_routing_table **out)
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
	return rt_build(ue, n, false, out);
}

/* ---- vCPUs' LAPIC models ------------------------------------------------------- */

static bool lapic_test(const uint64_t *set, uint32_t irq)
{
	return set[irq / 64] & (1ULL << (irq % 64));
}

static void lapic_update_pending(struct kvm_lapic *apic)
{
	bool p = false;

	for (int i = 0; i < KVM_LAPIC_WORDS; i++)
		p |= (apic->irr[i] & ~apic->isr[i]) != 0;
	/* Read locklessly by the guest's interrupt-window check. */
	WRITE_ONCE(apic->pending, p);
}

static void lapic_wake(struct kvm_lapic *apic)
{
	gm_check_pthread(pthread_mutex_lock(&apic->halt_lock));
	gm_check_pthread(pthread_cond_broadcast(&apic->halt_cv));
	gm_check_pthread(pthread_mutex_unlock(&apic->halt_lock));
}

/* Accept @irq into @apic's IRR: kvm_apic_set_irq(), always 1.  irq_lock held. */
static int lapic_set_irq(struct kvm_lapic *apic, uint32_t irq)
{
	apic->irr[irq / 64] |= 1ULL << (irq % 64);
	lapic_update_pending(apic);
	if (apic->pending)
		lapic_wake(apic);
	return 1;
}

static struct kvm_lapic *lapic_create(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = calloc(1, sizeof(*apic));

	if (!apic)
		return NULL;
	apic->vcpu = vcpu;
	apic->vcpu_id = vcpu->vcpu_id;
	gm_check_pthread(pthread_mutex_init(&apic->halt_lock, NULL));
	gm_check_pthread(pthread_cond_init(&apic->halt_cv, NULL));
	return apic;
}

/*
 * Give every published vCPU its LAPIC model, so that interrupts reach
 * vCPUs whose guest has not started yet.  kvm->vcpus fills from index 0 in
 * creation order and entries never go away before the VM.
 * Context: no eventfd lock but irqfds_lock held (takes kvm->lock, then
 * irq_lock, never both).
 */
static void irq_sync_vcpus(struct kvm_eventfds *ev)
{
	struct kvm *kvm = ev->kvm;
	struct kvm_vcpu *batch[16];
	uint32_t seen, n, added;

	do {
		/* Stale is fine: the loop below re-checks under irq_lock. */
		seen = READ_ONCE(ev->nr_lapics);
		n = 0;
		gm_check_pthread(pthread_mutex_lock(&kvm->lock));
		while (kvm->vcpus && seen + n < KVM_MAX_VCPUS && n < ARRAY_SIZE(batch) &&
		       kvm->vcpus[seen + n]) {
			batch[n] = kvm->vcpus[seen + n];
			n++;
		}
		gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
		added = 0;
		gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
		for (uint32_t i = 0; i < n; i++) {
			uint32_t idx = batch[i]->vcpu_idx;
			struct kvm_lapic *apic;

			if (idx < ev->nr_lapics) {
				added++; /* another thread added it meanwhile */
				continue;
			}
			apic = lapic_create(batch[i]);
			if (!apic)
				break; /* ENOMEM: that vCPU gets no interrupts yet */
			/* Pairs with the acquire in kvm_vcpu_lapic_peek(). */
			smp_store_release(&ev->lapic[idx], apic);
			WRITE_ONCE(ev->nr_lapics, idx + 1);
			added++;
		}
		gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	} while (n == ARRAY_SIZE(batch) && added == n);
}

/* Deliver to the vCPU with @id.  Returns 1, or -1 if there is none. */
static int lapic_deliver_id(struct kvm_eventfds *ev, uint32_t id, uint32_t irq)
{
	for (uint32_t i = 0; i < ev->nr_lapics; i++)
		if (ev->lapic[i]->vcpu_id == id)
			return lapic_set_irq(ev->lapic[i], irq);
	return -1;
}

/*
 * kvm_set_msi() + kvm_irq_delivery_to_apic(): destination from address bits
 * 19:12 (0xff broadcast; logical mode as a flat bitmap), vector from data.
 * Returns the number of vCPUs reached, or -1.  irq_lock held.
 */
static int msi_deliver(struct kvm_eventfds *ev, uint32_t lo, uint32_t data, int level)
{
	uint32_t dest = (lo >> 12) & 0xff, irq = GUESTMEM_IRQ_MSI_BASE + (data & 0xff);
	bool logical = lo & (1u << 2);
	int r = -1;

	if (!level)
		return -1;
	for (uint32_t i = 0; i < ev->nr_lapics; i++) {
		uint32_t id = ev->lapic[i]->vcpu_id;
		bool hit = dest == 0xff || (logical ? id < 8 && (dest & (1u << id)) : id == dest);

		if (hit)
			r = (r < 0 ? 0 : r) + lapic_set_irq(ev->lapic[i], irq);
	}
	return r;
}

/* ---- PIC and IOAPIC ---------------------------------------------------------------- */

/* __kvm_irq_line_state(): each source id keeps its level; the line ORs them. */
static int irq_line_state(unsigned long *line, int source, int level)
{
	if (level)
		*line |= 1UL << source;
	else
		*line &= ~(1UL << source);
	return *line != 0;
}

/* pic_set_irq1(): 1 new request, 0 already requested, -1 masked. */
static int pic_set_irq1(struct kvm_kpic_state *s, int irq, int level)
{
	uint8_t mask = (uint8_t)(1u << irq);
	int ret = 1;

	if (s->elcr & mask) {
		if (level) {
			ret = !(s->irr & mask);
			s->irr |= mask;
			s->last_irr |= mask;
		} else {
			s->irr &= (uint8_t)~mask;
			s->last_irr &= (uint8_t)~mask;
		}
	} else if (level) {
		if (!(s->last_irr & mask)) {
			ret = !(s->irr & mask);
			s->irr |= mask;
		}
		s->last_irr |= mask;
	} else {
		s->last_irr &= (uint8_t)~mask;
	}
	return (s->imr & mask) ? -1 : ret;
}

/* The slave's output is master pin 2; the PIC's own output reaches no vCPU. */
static void pic_update_irq(struct kvm_irqchip_state *c)
{
	struct kvm_kpic_state *slave = &c->pics[1];

	if (slave->irr & ~slave->imr & ~slave->isr) {
		pic_set_irq1(&c->pics[0], 2, 1);
		pic_set_irq1(&c->pics[0], 2, 0);
	}
}

static int pic_set_irq(struct kvm_irqchip_state *c, uint32_t pin, int source, int level)
{
	int line = irq_line_state(&c->pic_line[pin], source, level);
	int ret = pic_set_irq1(&c->pics[pin >> 3], (int)(pin & 7), line);

	pic_update_irq(c);
	return ret;
}

/* ioapic_service(): deliver a pin to the boot vCPU. */
static int ioapic_service(struct kvm_eventfds *ev, uint32_t pin)
{
	struct kvm_ioapic_pin *p = &ev->chip->ioapic[pin];
	int ret;

	if (p->masked || (p->level && p->remote_irr))
		return -1;
	if (!p->level)
		ev->chip->ioapic_irr &= ~(1u << pin);
	ret = lapic_deliver_id(ev, 0, pin);
	if (ret && p->level)
		p->remote_irr = true;
	return ret;
}

static int ioapic_set_irq(struct kvm_eventfds *ev, uint32_t pin, int source, int level)
{
	struct kvm_irqchip_state *c = ev->chip;
	uint32_t mask = 1u << pin, old = c->ioapic_irr;

	if (!irq_line_state(&c->ioapic_line[pin], source, level)) {
		c->ioapic_irr &= ~mask;
		return 1;
	}
	c->ioapic_irr |= mask;
	if (!c->ioapic[pin].level && old == c->ioapic_irr)
		return 0; /* an edge still pending behind the mask */
	return ioapic_service(ev, pin);
}

static int route_set(struct kvm_eventfds *ev, const struct kvm_kernel_irq_routing_entry *e,
		     int source, int level)
{
	switch (e->type) {
	case KVM_IRQ_ROUTING_IRQCHIP:
		if (e->irqchip == KVM_IRQCHIP_IOAPIC)
			return ioapic_set_irq(ev, e->pin, source, level);
		return pic_set_irq(ev->chip, e->pin, source, level);
	case KVM_IRQ_ROUTING_MSI:
		return msi_deliver(ev, e->msi_lo, e->msi_data, level);
	default: /* HV_SINT: no SynIC is ever enabled */
		return -1;
	}
}

/* ---- VM-level entry points ------------------------------------------------------- */

/* kvm_set_irq() proper: every route of @gsi, summing.  irq_lock held. */
static int set_irq_locked(struct kvm_eventfds *ev, int irq_source_id, uint32_t gsi, int level)
{
	struct kvm_irq_routing_table *rt = ev->routing;
	int ret = -1;

	for (int i = 0; gsi < rt->nr_rt_entries && i < KVM_ROUTES_PER_GSI; i++) {
		int16_t x = rt->map[gsi][i];
		int r;

		if (x < 0)
			continue;
		r = route_set(ev, &rt->e[x], irq_source_id, level);
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
	irq_sync_vcpus(ev);
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	ret = set_irq_locked(ev, irq_source_id, gsi, level);
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	return ret;
}

void kvm_set_irq_pulse(struct kvm *kvm, int irq_source_id, uint32_t gsi)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);

	if (!ev || smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_NONE)
		return;
	irq_sync_vcpus(ev);
	/* One critical section: the woken guest does not wait for the 0. */
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	set_irq_locked(ev, irq_source_id, gsi, 1);
	set_irq_locked(ev, irq_source_id, gsi, 0);
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
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

	gm_check_pthread(pthread_mutex_lock(&kvm->lock));
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
		chip->ioapic[pin].masked = true;
	r = rt_build_default(&rt);
	if (r)
		goto out;
	irqchip_publish(ev, chip, rt, KVM_IRQCHIP_KERNEL);
	chip = NULL;
out:
	gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
	free(chip);
	return r;
}

int kvm_arch_enable_split_irqchip(struct kvm *kvm, uint64_t nr_reserved_ioapic_pins)
{
	struct kvm_irq_routing_table *rt = NULL;
	struct kvm_eventfds *ev;
	int r;

	gm_check_pthread(pthread_mutex_lock(&kvm->lock));
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
	r = rt_build(NULL, 0, true, &rt); /* an empty table */
	if (!r)
		irqchip_publish(ev, NULL, rt, KVM_IRQCHIP_SPLIT);
out:
	gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
	return r;
}

int kvm_vm_ioctl_create_pit(struct kvm *kvm, uint32_t flags)
{
	struct kvm_eventfds *ev;
	int r = 0;

	gm_check_pthread(pthread_mutex_lock(&kvm->lock));
	ev = __kvm_eventfds_get_locked(kvm);
	if (!ev) {
		r = -ENOMEM;
	} else if (ev->pit) {
		r = -EEXIST;
	} else {
		ev->pit = true;
		ev->pit_flags = flags;
	}
	gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
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
	r = rt_build(ue, nr, smp_load_acquire(&ev->irqchip_mode) == KVM_IRQCHIP_SPLIT, &rt);
	if (r)
		return r;
	/* Every reader holds irq_lock: irqfds resolve their GSI at injection. */
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	old = ev->routing;
	ev->routing = rt;
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	rt_free(old);
	return 0;
}

int kvm_send_userspace_msi(struct kvm *kvm, const struct kvm_msi *msi)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	int r;

	if (!irqchip_in_kernel(kvm) || msi->flags)
		return -EINVAL;
	irq_sync_vcpus(ev);
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	r = msi_deliver(ev, msi->address_lo, msi->data, 1);
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	return r;
}

void kvm_irqchip_destroy(struct kvm_eventfds *ev)
{
	for (uint32_t i = 0; i < ev->nr_lapics; i++) {
		pthread_cond_destroy(&ev->lapic[i]->halt_cv);
		pthread_mutex_destroy(&ev->lapic[i]->halt_lock);
		free(ev->lapic[i]);
		ev->lapic[i] = NULL;
	}
	rt_free(ev->routing);
	free(ev->chip);
	ev->routing = NULL;
	ev->chip = NULL;
}

/* ---- the vCPU side ----------------------------------------------------------------- */

static struct kvm_lapic *kvm_vcpu_lapic_peek(struct kvm_vcpu *vcpu)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	/* Pairs with the release in irq_sync_vcpus(). */
	return ev ? smp_load_acquire(&ev->lapic[vcpu->vcpu_idx]) : NULL;
}

struct kvm_lapic *kvm_vcpu_lapic(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev;

	if (likely(apic))
		return apic;
	ev = kvm_eventfds_get(vcpu->kvm);
	if (!ev)
		return NULL;
	irq_sync_vcpus(ev);
	return kvm_vcpu_lapic_peek(vcpu);
}

bool kvm_cpu_has_interrupt(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);

	return apic && READ_ONCE(apic->pending);
}

int kvm_cpu_get_interrupt(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	int irq = -1;

	if (!apic)
		return -1;
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	for (int i = 0; i < KVM_LAPIC_WORDS && irq < 0; i++) {
		uint64_t ready = apic->irr[i] & ~apic->isr[i];

		if (ready) {
			/* The lowest number first: a fixed, documented priority. */
			uint64_t bit = ready & -ready;

			apic->irr[i] &= ~bit;
			apic->isr[i] |= bit;
			irq = i * 64 + __builtin_ctzll(ready);
		}
	}
	lapic_update_pending(apic);
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	return irq;
}

/* __kvm_ioapic_update_eoi()'s second half: a level pin may fire again. */
static void ioapic_eoi_level(struct kvm_eventfds *ev, uint32_t pin)
{
	struct kvm_ioapic_pin *p = &ev->chip->ioapic[pin];

	if (!p->level)
		return;
	p->remote_irr = false;
	if (!p->masked && (ev->chip->ioapic_irr & (1u << pin)))
		ioapic_service(ev, pin);
}

void kvm_irqchip_eoi(struct kvm_vcpu *vcpu, uint32_t irq)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	bool ioapic;
	int gsi = -1;

	if (!apic || irq >= KVM_LAPIC_NR_IRQS)
		return;
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	if (!lapic_test(apic->isr, irq)) {
		gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
		return; /* not in service: nothing to end */
	}
	apic->isr[irq / 64] &= ~(1ULL << (irq % 64));
	lapic_update_pending(apic);
	ioapic = ev->chip && irq < KVM_IOAPIC_NUM_PINS;
	if (ioapic)
		gsi = ev->routing->chip[KVM_IRQCHIP_IOAPIC][irq];
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));

	/* Ack notifiers run before remote IRR clears, as in the kernel. */
	if (gsi >= 0)
		kvm_irqfd_notify_acked(vcpu->kvm, (uint32_t)gsi);
	if (ioapic) {
		gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
		ioapic_eoi_level(ev, irq);
		gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	}
}

void kvm_irqchip_guest_setup(struct kvm_vcpu *vcpu)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	struct kvm_irqchip_state *c;

	if (!ev || vcpu->vcpu_id != READ_ONCE(vcpu->kvm->bsp_vcpu_id) ||
	    kvm_irqchip_mode(vcpu->kvm) != KVM_IRQCHIP_KERNEL)
		return;
	irq_sync_vcpus(ev);
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	c = ev->chip;
	if (!c->guest_ready) {
		c->guest_ready = true;
		c->pics[0].imr = c->pics[1].imr = 0xff;
		for (uint32_t pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
			c->ioapic[pin].masked = false;
			c->ioapic[pin].level = pin >= KVM_PIC_NUM_PINS;
			/* Unmasking a level pin whose line is high delivers it. */
			if (c->ioapic[pin].level && (c->ioapic_irr & (1u << pin)))
				ioapic_service(ev, pin);
		}
	}
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
}

void kvm_vcpu_wake_up(struct kvm_vcpu *vcpu)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	struct kvm_lapic *apic;

	if (!ev)
		return;
	/*
	 * Under irq_lock, so that a guest creating its LAPIC model right now
	 * (also under irq_lock) either is seen here or sees vcpu->kick.
	 */
	gm_check_pthread(pthread_mutex_lock(&ev->irq_lock));
	apic = ev->lapic[vcpu->vcpu_idx];
	gm_check_pthread(pthread_mutex_unlock(&ev->irq_lock));
	if (apic)
		lapic_wake(apic);
}
