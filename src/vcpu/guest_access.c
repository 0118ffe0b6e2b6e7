/* SPDX-License-Identifier: MIT */
/*
 * <guestmem/guest.h> accessors: memory through the stage-2 MMU, MMIO and
 * port I/O exits, hypercalls.  The model is described in guest.c.
 */
#include <errno.h>
#include <string.h>

#include "lib/rcu.h"
#include "mmu/mmu.h"
#include "vcpu/vcpu.h"

enum access_op { ACC_READ, ACC_WRITE, ACC_MEMSET };

struct access {
	enum access_op op;
	uint8_t *dst;	    /* ACC_READ */
	const uint8_t *src; /* ACC_WRITE */
	int byte;	    /* ACC_MEMSET */
};

/* ---- the hit path ----------------------------------------------------------- */

/*
 * Aligned 1/2/4/8-byte pieces: one relaxed atomic access (single-copy
 * atomic, as the hardware's); anything else is a plain copy.
 */
static void host_read(void *dst, const uint8_t *host, size_t len)
{
	uintptr_t a = (uintptr_t)host;

	if (len == 8 && !(a & 7)) {
		uint64_t x = __atomic_load_n((const uint64_t *)host, __ATOMIC_RELAXED);
		memcpy(dst, &x, 8);
	} else if (len == 4 && !(a & 3)) {
		uint32_t x = __atomic_load_n((const uint32_t *)host, __ATOMIC_RELAXED);
		memcpy(dst, &x, 4);
	} else if (len == 2 && !(a & 1)) {
		uint16_t x = __atomic_load_n((const uint16_t *)host, __ATOMIC_RELAXED);
		memcpy(dst, &x, 2);
	} else if (len == 1) {
		*(uint8_t *)dst = __atomic_load_n(host, __ATOMIC_RELAXED);
	} else {
		memcpy(dst, host, len);
	}
}

static void host_write(uint8_t *host, const void *src, size_t len)
{
	uintptr_t a = (uintptr_t)host;
	uint64_t x = 0;

	if (len <= 8)
		memcpy(&x, src, len);
	if (len == 8 && !(a & 7))
		__atomic_store_n((uint64_t *)host, x, __ATOMIC_RELAXED);
	else if (len == 4 && !(a & 3))
		__atomic_store_n((uint32_t *)host, (uint32_t)x, __ATOMIC_RELAXED);
	else if (len == 2 && !(a & 1))
		__atomic_store_n((uint16_t *)host, (uint16_t)x, __ATOMIC_RELAXED);
	else if (len == 1)
		__atomic_store_n(host, (uint8_t)x, __ATOMIC_RELAXED);
	else
		memcpy(host, src, len);
}

static void host_access(uint8_t *host, size_t len, const struct access *a)
{
	switch (a->op) {
	case ACC_READ:
		host_read(a->dst, host, len);
		break;
	case ACC_WRITE:
		host_write(host, a->src, len);
		break;
	case ACC_MEMSET:
		memset(host, a->byte, len);
		break;
	}
}

/*
 * One piece within a page, if a translation exists: returns true when done.
 * Nothing here may take a lock or do an atomic read-modify-write.
 */
static bool access_hit(struct kvm_vcpu *v, uint64_t gpa, size_t len, const struct access *a)
{
	gfn_t gfn = gpa >> GM_PAGE_SHIFT;
	uint64_t e;
	int level = S2_PG_LEVEL_4K;
	bool hit = false;

	gm_rcu_read_lock();
	e = kvm_mmu_lookup(v->kvm, gfn, &level);
	if (likely(e && (a->op == ACC_READ || (e & S2_WRITABLE)))) {
		host_access(s2_leaf_hva(e, level, gpa), len, a);
		hit = true;
	}
	/* The section ends after the access: a zap's flush waits for it. */
	gm_rcu_read_unlock();
	if (hit)
		kvm_stat_inc(&v->stat.accesses); /* guest thread only */
	return hit;
}

/* ---- exits --------------------------------------------------------------------- */

/* KVM_EXIT_MMIO per <= 8-byte fragment, ascending (spec §5.4). */
static void access_mmio(struct kvm_vcpu *v, uint64_t gpa, size_t len, const struct access *a)
{
	struct kvm_run *run = v->run;

	for (size_t off = 0; off < len; off += 8) {
		uint32_t n = (uint32_t)GM_MIN((size_t)8, len - off);

		run->exit_reason = KVM_EXIT_MMIO;
		run->mmio.phys_addr = gpa + off;
		run->mmio.len = n;
		run->mmio.is_write = a->op != ACC_READ;
		memset(run->mmio.data, 0, sizeof(run->mmio.data));
		if (a->op == ACC_WRITE)
			memcpy(run->mmio.data, a->src + off, n);
		else if (a->op == ACC_MEMSET)
			memset(run->mmio.data, a->byte, n);
		/* A matching ioeventfd completes the write inside KVM (eventfd.h). */
		if (a->op != ACC_READ &&
		    kvm_ioeventfd_write(v->kvm, false, gpa + off, n, run->mmio.data))
			continue;
		/* So does a write into a coalesced zone (coalesced_mmio.c). */
		if (a->op != ACC_READ &&
		    kvm_coalesced_write(v, false, gpa + off, n, run->mmio.data))
			continue;
		v->pending = a->op == ACC_READ ? VCPU_PENDING_MMIO_READ : VCPU_PENDING_MMIO_WRITE;
		v->pending_size = (uint8_t)n;
		kvm_guest_park(v, true, 0);
		if (a->op == ACC_READ)
			memcpy(a->dst + off, &v->mmio_data, n);
	}
}

/* KVM_RUN returns f->error; with memory_fault, exit 39 as spec §4.5. */
static void access_fault_exit(struct kvm_vcpu *v, const struct kvm_page_fault *f)
{
	struct kvm_run *run = v->run;

	if (f->memory_fault) {
		struct kvm_run_memory_fault *mf = kvm_run_memory_fault(run);

		run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf->flags = f->is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
		mf->gpa = f->gfn << GM_PAGE_SHIFT; /* the page, not the byte */
		mf->size = GM_PAGE_SIZE;
	}
	/* Otherwise exit_reason stays as KVM_RUN set it (stale by the ABI). */
	v->pending = VCPU_PENDING_NONE;
	kvm_guest_park(v, true, f->error);
}

/* KVM_EXIT_DIRTY_RING_FULL; re-entry while still full exits again. */
static void access_ring_full_exit(struct kvm_vcpu *v)
{
	v->run->exit_reason = KVM_EXIT_DIRTY_RING_FULL;
	v->pending = VCPU_PENDING_NONE;
	kvm_guest_park(v, true, 0);
}

/* One piece within one page: hit, or fault and act on the outcome. */
static void access_page(struct kvm_vcpu *v, uint64_t gpa, size_t len, const struct access *a)
{
	struct kvm_page_fault f;
	unsigned retries = 0;

	for (;;) {
		kvm_guest_stop_point(v);
		if (access_hit(v, gpa, len, a))
			return;
		switch (kvm_vcpu_mmu_page_fault(v->kvm, gpa, a->op != ACC_READ, &v->stat.fault,
						&v->last_used_slot, &f)) {
		case KVM_PF_FIXED:
			/* A full dirty ring stops the vCPU before it goes on. */
			if (kvm_dirty_ring_soft_full(&v->dirty_ring))
				access_ring_full_exit(v);
			break;
		case KVM_PF_RETRY:
			kvm_mmu_retry_backoff(&retries);
			break;
		case KVM_PF_EMULATE:
			access_mmio(v, gpa, len, a);
			return;
		case KVM_PF_EXIT:
			/* Re-entry retries the access, as KVM re-executes it. */
			access_fault_exit(v, &f);
			break;
		}
	}
}

static void guest_access(struct guestmem_guest *g, uint64_t gpa, size_t len, struct access *a)
{
	struct kvm_vcpu *v = guest_to_vcpu(g);

	while (len) {
		size_t n = GM_MIN(len, GM_PAGE_SIZE - (gpa & (GM_PAGE_SIZE - 1)));

		access_page(v, gpa, n, a);
		gpa += n;
		len -= n;
		if (a->dst)
			a->dst += n;
		if (a->src)
			a->src += n;
	}
}

/* ---- the public accessors ----------------------------------------------------- */

GM_API void guestmem_guest_read(struct guestmem_guest *g, uint64_t gpa, void *buf, size_t len)
{
	struct access a = { .op = ACC_READ, .dst = buf };

	guest_access(g, gpa, len, &a);
}

GM_API void guestmem_guest_write(struct guestmem_guest *g, uint64_t gpa, const void *buf,
				 size_t len)
{
	struct access a = { .op = ACC_WRITE, .src = buf };

	guest_access(g, gpa, len, &a);
}

GM_API void guestmem_guest_memset(struct guestmem_guest *g, uint64_t gpa, int byte, size_t len)
{
	struct access a = { .op = ACC_MEMSET, .byte = byte };

	guest_access(g, gpa, len, &a);
}

#define GUEST_RW(bits)                                                                   \
	GM_API uint##bits##_t guestmem_guest_read##bits(struct guestmem_guest *g, uint64_t gpa) \
	{                                                                                \
		uint##bits##_t x;                                                        \
		guestmem_guest_read(g, gpa, &x, sizeof(x));                              \
		return x;                                                                \
	}                                                                                \
	GM_API void guestmem_guest_write##bits(struct guestmem_guest *g, uint64_t gpa,   \
					       uint##bits##_t x)                         \
	{                                                                                \
		guestmem_guest_write(g, gpa, &x, sizeof(x));                             \
	}
GUEST_RW(8)
GUEST_RW(16)
GUEST_RW(32)
GUEST_RW(64)

GM_API const struct kvm_regs *guestmem_guest_regs(struct guestmem_guest *g)
{
	return &guest_to_vcpu(g)->regs;
}

GM_API uint32_t guestmem_guest_vcpu_id(struct guestmem_guest *g)
{
	return guest_to_vcpu(g)->vcpu_id;
}

GM_API void *guestmem_guest_opaque(struct guestmem_guest *g)
{
	return guest_to_vcpu(g)->guest_opaque;
}
