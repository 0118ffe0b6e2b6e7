/* SPDX-License-Identifier: MIT */
/*
 * The vCPUs' LAPIC models (the kernel's lapic.c): delivery to the LAPICs
 * a destination names, IRR/ISR/TMR and the priority that picks the next
 * vector, the EOI (and its way to the IOAPIC), and waking a halted guest.
 */
#include <stdlib.h>
#include <string.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86_run.h"
#include "lib/lockdep.h"

static bool vec_test(const uint64_t *set, uint32_t v)
{
	return (set[v / 64] >> (v % 64)) & 1;
}

static void vec_set(uint64_t *set, uint32_t v)
{
	set[v / 64] |= 1ULL << (v % 64);
}

static void vec_clear(uint64_t *set, uint32_t v)
{
	set[v / 64] &= ~(1ULL << (v % 64));
}

/* The highest vector in @set, or -1. */
static int vec_highest(const uint64_t *set)
{
	for (int i = KVM_LAPIC_WORDS - 1; i >= 0; i--)
		if (set[i])
			return i * 64 + 63 - __builtin_clzll(set[i]);
	return -1;
}

/* PPR (apic_update_ppr()): TPR, or the class of the highest vector in service. */
static uint32_t apic_ppr(const struct kvm_lapic *apic, uint32_t tpr)
{
	int isrv = vec_highest(apic->isr);
	uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

	return (tpr & 0xf0) >= isr_class ? tpr & 0xff : isr_class;
}

/* The highest IRR vector whose class is above PPR, or -1.  irq_lock held. */
static int apic_deliverable(const struct kvm_lapic *apic, uint32_t tpr)
{
	int v = vec_highest(apic->irr);

	if (v < 0 || ((uint32_t)v & 0xf0) <= apic_ppr(apic, tpr))
		return -1;
	return v;
}

static void lapic_update_pending(struct kvm_lapic *apic)
{
	/* Read locklessly by the interrupt-window and halt checks. */
	WRITE_ONCE(apic->pending, apic_deliverable(apic, apic->tpr) >= 0);
}

static void lapic_wake(struct kvm_lapic *apic)
{
	gm_mutex_lock(&apic->halt_lock, GM_LOCK_HALT);
	gm_check_pthread(pthread_cond_broadcast(&apic->halt_cv));
	gm_mutex_unlock(&apic->halt_lock);
}

/* The vector became deliverable: wake a halted guest, make a running one look. */
static void lapic_notify(struct kvm_lapic *apic)
{
	if (apic->pending) {
		lapic_wake(apic);
		/* A machine-code guest runs until it traps: make it look. */
		kvm_x86_kick(apic->vcpu);
	}
}

/* SPIV's enable bit (the register page's mirror; see struct kvm_vcpu_arch). */
static bool apic_sw_enabled(const struct kvm_lapic *apic)
{
	return READ_ONCE(apic->vcpu->arch.lapic_sw_enabled);
}

/*
 * __apic_accept_irq() for fixed and lowest-priority delivery: the vector
 * into IRR, its TMR bit as the trigger mode says.  1 if accepted, 0 if the
 * APIC is software-disabled (SPIV bit 8 clear, as after reset) or for a
 * delivery mode not modelled (INIT, SIPI, ExtINT).  An SMI or an NMI is
 * taken whatever SPIV says, as KVM's (kvm_inject_smi/nmi()).  irq_lock held.
 */
static int apic_accept_irq(struct kvm_lapic *apic, const struct kvm_lapic_irq *irq)
{
	if (irq->delivery_mode == APIC_DM_SMI)
		return kvm_inject_smi(apic->vcpu) == 0;
	if (irq->delivery_mode == APIC_DM_NMI) {
		kvm_inject_nmi(apic->vcpu);
		return 1;
	}
	if (irq->delivery_mode > APIC_DM_LOWEST || !apic_sw_enabled(apic))
		return 0;
	if (irq->trig_level)
		vec_set(apic->tmr, irq->vector);
	else
		vec_clear(apic->tmr, irq->vector);
	vec_set(apic->irr, irq->vector);
	lapic_update_pending(apic);
	lapic_notify(apic);
	return 1;
}

enum { SH_NONE, SH_SELF, SH_ALL, SH_ALL_BUT_SELF };

/*
 * kvm_apic_match_dest(), within the model's ids (see irqchip_internal.h),
 * by the target's mode, as the kernel: in x2APIC mode only 0xffffffff is
 * the broadcast, except that an IOAPIC or MSI destination of 0xff still
 * is one while the VM keeps the x2APIC broadcast quirk (the default;
 * KVM_CAP_X2APIC_API's KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK ends it).
 */
static bool apic_match_dest(const struct kvm_lapic *apic, const struct kvm_vcpu *src,
			    const struct kvm_lapic_irq *irq)
{
	const struct kvm_vcpu *v = apic->vcpu;
	bool x2 = READ_ONCE(v->arch.lapic_x2apic), self = src && v == src;
	uint32_t id = apic->vcpu_id, d = irq->dest_id;

	switch (irq->shorthand) {
	case SH_SELF:
		return self;
	case SH_ALL:
		return true;
	case SH_ALL_BUT_SELF:
		return !self;
	}
	if (x2 && !src && d == 0xff && !READ_ONCE(v->kvm->arch.x2apic_broadcast_quirk_disabled))
		d = 0xffffffffU;
	if (d == (x2 ? 0xffffffffU : 0xffU))
		return true;
	if (!irq->dest_logical)
		return d == id;
	if (x2) /* the x2APIC LDR: cluster id >> 4, bit id & 0xf */
		return (d >> 16) == (id >> 4) && (d & (1U << (id & 0xf)));
	return id < 8 && (d & (1U << id)); /* flat */
}

int kvm_irq_delivery_to_apic(struct kvm_eventfds *ev, struct kvm_vcpu *src,
			     const struct kvm_lapic_irq *irq)
{
	struct kvm_lapic_irq i = *irq;
	int r = -1;

	lockdep_assert_held(&ev->irq_lock);
	/* A physical broadcast cannot arbitrate: it goes to all, as fixed. */
	if (i.delivery_mode == APIC_DM_LOWEST && !i.dest_logical && i.shorthand == SH_NONE &&
	    i.dest_id == 0xff)
		i.delivery_mode = APIC_DM_FIXED;
	/*
	 * As the kernel counts: every matching APIC makes the answer at least
	 * 0 (a software-disabled one accepts nothing); lowest priority goes
	 * to one software-enabled match (the first: no arbitration).
	 */
	for (uint32_t n = 0; n < ev->nr_lapics; n++) {
		struct kvm_lapic *apic = ev->lapic[n];

		if (!apic_match_dest(apic, src, &i))
			continue;
		if (i.delivery_mode != APIC_DM_LOWEST) {
			r = (r < 0 ? 0 : r) + apic_accept_irq(apic, &i);
		} else if (apic_sw_enabled(apic)) {
			r = apic_accept_irq(apic, &i);
			break;
		}
	}
	return r;
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
void kvm_irq_sync_vcpus(struct kvm_eventfds *ev)
{
	struct kvm *kvm = ev->kvm;
	struct kvm_vcpu *batch[16];
	uint32_t seen, n, added;

	do {
		/* Stale is fine: the loop below re-checks under irq_lock. */
		seen = READ_ONCE(ev->nr_lapics);
		n = 0;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		while (kvm->vcpus && seen + n < KVM_MAX_VCPUS && n < ARRAY_SIZE(batch) &&
		       kvm->vcpus[seen + n]) {
			batch[n] = kvm->vcpus[seen + n];
			n++;
		}
		gm_mutex_unlock(&kvm->lock);
		added = 0;
		gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
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
		gm_mutex_unlock(&ev->irq_lock);
	} while (n == ARRAY_SIZE(batch) && added == n);
}

static struct kvm_lapic *kvm_vcpu_lapic_peek(struct kvm_vcpu *vcpu)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	/* Pairs with the release in kvm_irq_sync_vcpus(). */
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
	kvm_irq_sync_vcpus(ev);
	return kvm_vcpu_lapic_peek(vcpu);
}

int kvm_apic_has_interrupt(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev;
	int v;

	if (!apic || !READ_ONCE(apic->pending))
		return -1;
	ev = smp_load_acquire(&vcpu->kvm->eventfds);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	v = apic_deliverable(apic, apic->tpr);
	gm_mutex_unlock(&ev->irq_lock);
	return v;
}

bool kvm_cpu_has_interrupt(struct kvm_vcpu *vcpu)
{
	return kvm_apic_has_interrupt(vcpu) >= 0;
}

int kvm_cpu_get_interrupt(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	int v;

	if (!apic)
		return -1;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	v = apic_deliverable(apic, apic->tpr);
	if (v >= 0) {
		vec_clear(apic->irr, (uint32_t)v);
		vec_set(apic->isr, (uint32_t)v);
		lapic_update_pending(apic);
	}
	gm_mutex_unlock(&ev->irq_lock);
	return v;
}

/*
 * The IOAPIC pins an EOI of @vector reaches (kvm_ioapic_send_eoi()): none
 * unless a pin with that vector is routed to @apic, else every pin with
 * it.  irq_lock held.
 */
static uint32_t ioapic_eoi_pins(struct kvm_eventfds *ev, struct kvm_lapic *apic, uint32_t vector)
{
	uint32_t pins = 0;
	bool handled = false;

	if (!ev->chip)
		return 0; /* split irqchip: KVM_EXIT_IOAPIC_EOI is not modelled */
	for (uint32_t pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
		uint64_t e = ev->chip->redirtbl[pin];
		struct kvm_lapic_irq irq = {
			.dest_logical = e & IOAPIC_RTE_DEST_LOGICAL,
			.dest_id = (uint32_t)(e >> IOAPIC_RTE_DEST_SHIFT),
		};

		if ((e & IOAPIC_RTE_VECTOR) != vector)
			continue;
		pins |= 1U << pin;
		handled |= apic_match_dest(apic, NULL, &irq);
	}
	return handled ? pins : 0;
}

/*
 * apic_set_eoi(): end @vector (-1: the highest in service) on @vcpu's
 * LAPIC, then the IOAPIC's part, all under irq_lock: the resamplers the
 * ack notifiers signal are listed under it (eventfd.h), so the EOI of a
 * vCPU ioctl (KVM_RUN) takes no lock above vcpu->mutex.
 */
static void apic_eoi(struct kvm_vcpu *vcpu, int vector)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	uint32_t pins;
	bool level;

	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	if (vector < 0)
		vector = vec_highest(apic->isr);
	if (vector < 0 || vector > 255 || !vec_test(apic->isr, (uint32_t)vector)) {
		gm_mutex_unlock(&ev->irq_lock);
		return; /* nothing in service */
	}
	vec_clear(apic->isr, (uint32_t)vector);
	level = vec_test(apic->tmr, (uint32_t)vector);
	lapic_update_pending(apic);
	pins = ioapic_eoi_pins(ev, apic, (uint32_t)vector);
	/* Each pin's ack notifiers (irqfd resample) run before its remote IRR clears. */
	for (uint32_t pin = 0; pin < KVM_IOAPIC_NUM_PINS; pin++) {
		int gsi = ev->routing->chip[KVM_IRQCHIP_IOAPIC][pin];

		if (!((pins >> pin) & 1))
			continue;
		if (gsi >= 0)
			kvm_irqfd_notify_acked_locked(ev, (uint32_t)gsi);
		kvm_ioapic_update_eoi(ev, pin, level);
	}
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_irqchip_eoi(struct kvm_vcpu *vcpu, uint32_t vector)
{
	if (vector <= 255)
		apic_eoi(vcpu, (int)vector);
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
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	apic = ev->lapic[vcpu->vcpu_idx];
	gm_mutex_unlock(&ev->irq_lock);
	if (apic)
		lapic_wake(apic);
}

/* ICR fields (SDM vol. 3, 11.6.1). */
#define ICR_VECTOR 0xffU
#define ICR_DM_SHIFT 8
#define ICR_DEST_LOGICAL 0x800U
#define ICR_LEVEL_ASSERT 0x4000U
#define ICR_TRIG_LEVEL 0x8000U
#define ICR_SHORTHAND(icr) (((icr) >> 18) & 3U)

void kvm_apic_send_ipi(struct kvm_vcpu *vcpu, uint32_t icr, uint32_t dest)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	struct kvm_lapic_irq irq = {
		.vector = icr & ICR_VECTOR,
		.delivery_mode = (icr >> ICR_DM_SHIFT) & 7,
		.dest_logical = icr & ICR_DEST_LOGICAL,
		.trig_level = icr & ICR_TRIG_LEVEL,
		.shorthand = ICR_SHORTHAND(icr),
		.dest_id = dest,
	};

	if (!ev)
		return;
	/* A level-triggered de-assert carries no interrupt. */
	if ((icr & ICR_TRIG_LEVEL) && !(icr & ICR_LEVEL_ASSERT))
		return;
	/* The models exist since vCPU creation (kvm_vm_ioctl_create_vcpu). */
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	kvm_irq_delivery_to_apic(ev, vcpu, &irq);
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_apic_eoi_highest(struct kvm_vcpu *vcpu)
{
	apic_eoi(vcpu, -1);
}

void kvm_apic_set_tpr(struct kvm_vcpu *vcpu, uint32_t tpr)
{
	/* Created with the vCPU; NULL only if that allocation failed. */
	struct kvm_lapic *apic = kvm_vcpu_lapic(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	apic->tpr = tpr & 0xff;
	lapic_update_pending(apic);
	lapic_notify(apic); /* a lower TPR may let one through */
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_apic_get_vectors(struct kvm_vcpu *vcpu, uint32_t irr[8], uint32_t isr[8],
			  uint32_t tmr[8])
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	memset(irr, 0, 8 * sizeof(*irr));
	memset(isr, 0, 8 * sizeof(*isr));
	memset(tmr, 0, 8 * sizeof(*tmr));
	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (int i = 0; i < 8; i++) {
		int w = i / 2, sh = 32 * (i % 2);

		irr[i] = (uint32_t)(apic->irr[w] >> sh);
		isr[i] = (uint32_t)(apic->isr[w] >> sh);
		tmr[i] = (uint32_t)(apic->tmr[w] >> sh);
	}
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_apic_set_vectors(struct kvm_vcpu *vcpu, const uint32_t irr[8], const uint32_t isr[8],
			  const uint32_t tmr[8])
{
	/* Created with the vCPU; NULL only if that allocation failed. */
	struct kvm_lapic *apic = kvm_vcpu_lapic(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (int w = 0; w < KVM_LAPIC_WORDS; w++) {
		apic->irr[w] = irr[2 * w] | (uint64_t)irr[2 * w + 1] << 32;
		apic->isr[w] = isr[2 * w] | (uint64_t)isr[2 * w + 1] << 32;
		apic->tmr[w] = tmr[2 * w] | (uint64_t)tmr[2 * w + 1] << 32;
	}
	lapic_update_pending(apic);
	lapic_notify(apic);
	gm_mutex_unlock(&ev->irq_lock);
}
