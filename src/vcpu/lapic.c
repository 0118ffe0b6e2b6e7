/* SPDX-License-Identifier: MIT */
/*
 * The vCPUs' LAPIC models (the kernel's lapic.c): accepting interrupts,
 * taking the next one for the guest's handler, its EOI, and waking a
 * halted guest.
 */
#include <stdlib.h>
#include <string.h>

#include "vcpu/irqchip_internal.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86_run.h"
#include "lib/lockdep.h"

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
	gm_mutex_lock(&apic->halt_lock, GM_LOCK_HALT);
	gm_check_pthread(pthread_cond_broadcast(&apic->halt_cv));
	gm_mutex_unlock(&apic->halt_lock);
}

/* Accept @irq into @apic's IRR: kvm_apic_set_irq(), always 1.  irq_lock held. */
int kvm_apic_set_irq(struct kvm_lapic *apic, uint32_t irq)
{
	lockdep_assert_held(&apic->vcpu->kvm->eventfds->irq_lock);
	apic->irr[irq / 64] |= 1ULL << (irq % 64);
	lapic_update_pending(apic);
	if (apic->pending) {
		lapic_wake(apic);
		/* A machine-code guest runs until it traps: make it look. */
		kvm_x86_kick(apic->vcpu);
	}
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

/* Deliver to the vCPU with @id.  Returns 1, or -1 if there is none. */
int kvm_apic_deliver_id(struct kvm_eventfds *ev, uint32_t id, uint32_t irq)
{
	lockdep_assert_held(&ev->irq_lock);
	for (uint32_t i = 0; i < ev->nr_lapics; i++)
		if (ev->lapic[i]->vcpu_id == id)
			return kvm_apic_set_irq(ev->lapic[i], irq);
	return -1;
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
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
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
	gm_mutex_unlock(&ev->irq_lock);
	return irq;
}

void kvm_irqchip_eoi(struct kvm_vcpu *vcpu, uint32_t irq)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	bool ioapic;
	int gsi = -1;

	if (!apic || irq >= KVM_LAPIC_NR_IRQS)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	if (!lapic_test(apic->isr, irq)) {
		gm_mutex_unlock(&ev->irq_lock);
		return; /* not in service: nothing to end */
	}
	apic->isr[irq / 64] &= ~(1ULL << (irq % 64));
	lapic_update_pending(apic);
	ioapic = ev->chip && irq < KVM_IOAPIC_NUM_PINS;
	if (ioapic)
		gsi = ev->routing->chip[KVM_IRQCHIP_IOAPIC][irq];
	gm_mutex_unlock(&ev->irq_lock);

	/* Ack notifiers run before remote IRR clears, as in the kernel. */
	if (gsi >= 0)
		kvm_irqfd_notify_acked(vcpu->kvm, (uint32_t)gsi);
	if (ioapic) {
		gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
		kvm_ioapic_update_eoi(ev, irq);
		gm_mutex_unlock(&ev->irq_lock);
	}
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
#define ICR_DM_MASK 0x700U
#define ICR_DM_FIXED 0x000U
#define ICR_DM_LOWEST 0x100U
#define ICR_DEST_LOGICAL 0x800U
#define ICR_LEVEL_ASSERT 0x4000U
#define ICR_TRIG_LEVEL 0x8000U
#define ICR_SHORTHAND(icr) (((icr) >> 18) & 3U)
enum { SH_NONE, SH_SELF, SH_ALL, SH_ALL_BUT_SELF };

void kvm_apic_send_ipi(struct kvm_vcpu *vcpu, uint32_t icr, uint32_t dest, bool x2apic)
{
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	uint32_t vector = icr & ICR_VECTOR, sh = ICR_SHORTHAND(icr);
	uint32_t bcast = x2apic ? 0xffffffffU : 0xffU;
	uint32_t dm = icr & ICR_DM_MASK;

	if (!ev)
		return;
	/* A level-triggered de-assert carries no interrupt (__apic_accept_irq). */
	if ((icr & ICR_TRIG_LEVEL) && !(icr & ICR_LEVEL_ASSERT))
		return;
	if (dm != ICR_DM_FIXED && dm != ICR_DM_LOWEST)
		return; /* NMI, SMI, INIT, SIPI: not modelled (see irqchip_internal.h) */
	if (sh == SH_NONE && (icr & ICR_DEST_LOGICAL) && dest != bcast)
		return; /* logical destinations: not modelled */
	/* The models exist since vCPU creation (kvm_vm_ioctl_create_vcpu). */
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (uint32_t i = 0; i < ev->nr_lapics; i++) {
		struct kvm_lapic *apic = ev->lapic[i];
		bool self = apic->vcpu == vcpu, hit;

		switch (sh) {
		case SH_SELF:
			hit = self;
			break;
		case SH_ALL:
			hit = true;
			break;
		case SH_ALL_BUT_SELF:
			hit = !self;
			break;
		default:
			hit = dest == bcast || apic->vcpu_id == dest;
			break;
		}
		if (hit) {
			kvm_apic_set_irq(apic, vector);
			/* Lowest priority: one target is enough (no arbitration). */
			if (dm == ICR_DM_LOWEST)
				break;
		}
	}
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_apic_eoi_highest(struct kvm_vcpu *vcpu)
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);
	int irq = -1;

	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	/* Vectors only: the pin numbers above 255 belong to C guests. */
	for (int i = 256 / 64 - 1; i >= 0 && irq < 0; i--)
		if (apic->isr[i])
			irq = i * 64 + 63 - __builtin_clzll(apic->isr[i]);
	gm_mutex_unlock(&ev->irq_lock);
	if (irq >= 0)
		kvm_irqchip_eoi(vcpu, (uint32_t)irq);
}

/*
 * The model's numbers 0-255: the vectors of IPIs and the timer.  The MSI
 * numbers above (GUESTMEM_IRQ_MSI_BASE + vector) are C guests' and stay
 * out of the register page both ways.
 */
#define VEC_WORDS (256 / 64)
_Static_assert(VEC_WORDS <= KVM_LAPIC_WORDS, "vectors in the model");

void kvm_apic_get_vectors(struct kvm_vcpu *vcpu, uint32_t irr[8], uint32_t isr[8])
{
	struct kvm_lapic *apic = kvm_vcpu_lapic_peek(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	memset(irr, 0, 8 * sizeof(*irr));
	memset(isr, 0, 8 * sizeof(*isr));
	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (int i = 0; i < 8; i++) {
		int w = i / 2, sh = 32 * (i % 2);

		irr[i] = (uint32_t)(apic->irr[w] >> sh);
		isr[i] = (uint32_t)(apic->isr[w] >> sh);
	}
	gm_mutex_unlock(&ev->irq_lock);
}

void kvm_apic_set_vectors(struct kvm_vcpu *vcpu, const uint32_t irr[8], const uint32_t isr[8])
{
	/* Created with the vCPU; NULL only if that allocation failed. */
	struct kvm_lapic *apic = kvm_vcpu_lapic(vcpu);
	struct kvm_eventfds *ev = smp_load_acquire(&vcpu->kvm->eventfds);

	if (!apic)
		return;
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (int w = 0; w < VEC_WORDS; w++) {
		apic->irr[w] = irr[2 * w] | (uint64_t)irr[2 * w + 1] << 32;
		apic->isr[w] = isr[2 * w] | (uint64_t)isr[2 * w + 1] << 32;
	}
	lapic_update_pending(apic);
	if (apic->pending) {
		lapic_wake(apic);
		kvm_x86_kick(apic->vcpu);
	}
	gm_mutex_unlock(&ev->irq_lock);
}
