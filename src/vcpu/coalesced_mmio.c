/* SPDX-License-Identifier: MIT */
/*
 * Coalesced MMIO and PIO (Linux 6.12, virt/kvm/coalesced_mmio.c):
 * KVM_REGISTER/UNREGISTER_COALESCED_MMIO and the ring in page 2 of every
 * vCPU mapping (KVM_COALESCED_MMIO_PAGE_OFFSET).
 *
 * A guest write that lies wholly inside a registered zone of its bus does
 * not exit: it is appended to the VM's ring and the guest continues.  The
 * ring keeps one entry free so that the VMM can tell full from empty; a
 * full ring, or a `last` the VMM corrupted, makes the write exit as usual.
 * Reads always exit.
 *
 * Zones are an array published with RCU: registration and removal copy it
 * under kvm->slots_lock, as KVM changes its I/O buses; the guest's write
 * path reads it in a read-side section.  ring_lock orders the writers of
 * the ring (vCPUs), as KVM's kvm->ring_lock.
 *
 * The bus limit (NR_IOBUS_DEVS, 1000 devices besides ioeventfds) counts
 * the zones and the in-kernel irqchip's devices (IOAPIC on the MMIO bus,
 * the two PICs and ELCR on the PIO bus); the PIT's two are not counted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/rcu.h"
#include "vcpu/irqchip.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "lib/lockdep.h"

#define NR_IOBUS_DEVS 1000
#define COALESCED_MAX ((4096 - 8) / 24) /* KVM_COALESCED_MMIO_MAX */

struct kvm_coalesced_zones {
	uint32_t nr;
	struct kvm_coalesced_mmio_zone z[];
};

/* Per-VM state, created by the first registration. */
struct kvm_coalesced {
	pthread_mutex_t ring_lock; /* ring insertions; a leaf lock */
	struct kvm_coalesced_zones *zones; /* RCU; replaced under slots_lock */
};

/* (addr, len) lies wholly inside @z; a negative int length never does. */
static bool zone_in_range(const struct kvm_coalesced_mmio_zone *z, uint64_t addr, uint32_t len)
{
	if ((int32_t)len < 0 || addr + len < addr)
		return false;
	return addr >= z->addr && addr + len <= z->addr + z->size;
}

static struct kvm_coalesced *coalesced_get(struct kvm *kvm)
{
	struct kvm_coalesced *c = kvm->arch.coalesced;

	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	gm_check_pthread(pthread_mutex_init(&c->ring_lock, NULL));
	smp_store_release(&kvm->arch.coalesced, c); /* pairs with the write path */
	return c;
}

/* Install @next (may be NULL) and free the old array after a grace period. */
static void zones_replace(struct kvm_coalesced *c, struct kvm_coalesced_zones *next)
{
	struct kvm_coalesced_zones *old = c->zones;

	smp_store_release(&c->zones, next); /* pairs with kvm_coalesced_write() */
	gm_synchronize_rcu();
	free(old);
}

static uint32_t bus_devices(struct kvm *kvm, const struct kvm_coalesced_zones *zs, bool pio)
{
	uint32_t n = irqchip_kernel(kvm) ? (pio ? 3 : 1) : 0;

	for (uint32_t i = 0; zs && i < zs->nr; i++)
		n += zs->z[i].pio == pio;
	return n;
}

int kvm_vm_register_coalesced_mmio(struct kvm *kvm, const struct kvm_coalesced_mmio_zone *zone)
{
	struct kvm_coalesced *c;
	struct kvm_coalesced_zones *zs, *next;
	uint32_t nr;
	int r = 0;

	if (zone->pio != 1 && zone->pio != 0)
		return -EINVAL;
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	c = coalesced_get(kvm);
	if (!c) {
		r = -ENOMEM;
		goto out;
	}
	zs = c->zones;
	if (bus_devices(kvm, zs, zone->pio) > NR_IOBUS_DEVS - 1) {
		r = -ENOSPC;
		goto out;
	}
	nr = zs ? zs->nr : 0;
	next = malloc(sizeof(*next) + (nr + 1) * sizeof(next->z[0]));
	if (!next) {
		r = -ENOMEM;
		goto out;
	}
	next->nr = nr + 1;
	if (nr)
		memcpy(next->z, zs->z, nr * sizeof(next->z[0]));
	next->z[nr] = *zone;
	zones_replace(c, next);
out:
	gm_mutex_unlock(&kvm->slots_lock);
	return r;
}

/* Every zone of that bus inside [addr, addr + size) goes; always 0. */
int kvm_vm_unregister_coalesced_mmio(struct kvm *kvm, const struct kvm_coalesced_mmio_zone *zone)
{
	struct kvm_coalesced *c;
	struct kvm_coalesced_zones *zs, *next;

	if (zone->pio != 1 && zone->pio != 0)
		return -EINVAL;
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	c = kvm->arch.coalesced;
	zs = c ? c->zones : NULL;
	if (zs) {
		next = malloc(sizeof(*next) + zs->nr * sizeof(next->z[0]));
		if (next) {
			next->nr = 0;
			for (uint32_t i = 0; i < zs->nr; i++) {
				const struct kvm_coalesced_mmio_zone *z = &zs->z[i];

				/* KVM tests the device's zone against the request. */
				if (z->pio == zone->pio && zone_in_range(z, zone->addr, zone->size))
					continue;
				next->z[next->nr++] = *z;
			}
			zones_replace(c, next);
		}
		/* Without memory the zones stay: KVM's unregister cannot fail. */
	}
	gm_mutex_unlock(&kvm->slots_lock);
	return 0;
}

static bool ring_append(struct kvm_vcpu *v, struct kvm_coalesced *c, bool pio, uint64_t addr,
			uint32_t len, const void *data)
{
	struct kvm_coalesced_mmio_ring *ring = v->shared->ring;
	uint32_t insert;
	bool ok = false;

	gm_mutex_lock(&c->ring_lock, GM_LOCK_COALESCED);
	/* The VMM owns `first` and may scribble on `last`: read both once. */
	insert = __atomic_load_n(&ring->last, __ATOMIC_RELAXED);
	if (insert < COALESCED_MAX &&
	    (insert + 1) % COALESCED_MAX != __atomic_load_n(&ring->first, __ATOMIC_ACQUIRE)) {
		struct kvm_coalesced_mmio *e = &ring->coalesced_mmio[insert];

		e->phys_addr = addr;
		e->len = len;
		memcpy(e->data, data, len);
		e->pio = pio;
		/* The entry before the index that publishes it (KVM's smp_wmb). */
		__atomic_store_n(&ring->last, (insert + 1) % COALESCED_MAX, __ATOMIC_RELEASE);
		ok = true;
	}
	gm_mutex_unlock(&c->ring_lock);
	return ok;
}

bool kvm_coalesced_write(struct kvm_vcpu *v, bool pio, uint64_t addr, uint32_t len,
			 const void *data)
{
	struct kvm_coalesced *c = smp_load_acquire(&v->kvm->arch.coalesced);
	const struct kvm_coalesced_zones *zs;
	bool in_zone = false;

	if (!c || len > 8 || !v->shared || !v->shared->ring)
		return false;
	gm_rcu_read_lock();
	zs = smp_load_acquire(&c->zones);
	for (uint32_t i = 0; zs && i < zs->nr && !in_zone; i++)
		in_zone = zs->z[i].pio == pio && zone_in_range(&zs->z[i], addr, len);
	gm_rcu_read_unlock();
	return in_zone && ring_append(v, c, pio, addr, len, data);
}

void kvm_coalesced_destroy(struct kvm *kvm)
{
	struct kvm_coalesced *c = kvm->arch.coalesced;

	if (!c)
		return;
	free(c->zones);
	pthread_mutex_destroy(&c->ring_lock);
	free(c);
	kvm->arch.coalesced = NULL;
}
