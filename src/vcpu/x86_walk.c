/* SPDX-License-Identifier: MIT */
/*
 * The x86 guest page-table walker (semantics in x86_walk.h), and
 * KVM_TRANSLATE on top of it (Linux 6.12: kvm_arch_vcpu_ioctl_translate()
 * walks as a supervisor read, sets accessed bits like any walk, and always
 * reports writeable = 1, usermode = 0).
 */
#include <errno.h>
#include <string.h>

#include "lib/rcu.h"
#include "mmu/fault.h"
#include "mmu/mmu.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "vcpu/x86_walk.h"

#define PTE_P (1ULL << 0)
#define PTE_RW (1ULL << 1)
#define PTE_US (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_XD (1ULL << 63)
#define CR0_WP (1ULL << 16)
#define CR0_PG (1ULL << 31)
#define CR4_PSE (1ULL << 4)
#define CR4_PAE (1ULL << 5)
#define CR4_LA57 (1ULL << 12)
#define CR4_SMEP (1ULL << 20)
#define CR4_SMAP (1ULL << 21)
#define EFER_NXE (1ULL << 11)
#define EFER_LMA (1ULL << 10)
#define RFLAGS_AC (1ULL << 18)
#define WALK_MAX_LEVELS 5

/* One walk's bookkeeping: entries seen, for the A/D update. */
struct walk {
	const struct x86_walk_mode *m;
	unsigned size;	/* entry size: 4 or 8 */
	int levels;	/* 2 (32-bit), 3 (PAE), 4, 5 */
	uint64_t pte_gpa[WALK_MAX_LEVELS];
	uint64_t pte[WALK_MAX_LEVELS];
	int n;
};

static uint64_t bit_range(int lo, int hi) /* inclusive, hi < 64 */
{
	return (hi == 63 ? ~0ULL : ((1ULL << (hi + 1)) - 1)) & ~((1ULL << lo) - 1);
}

/* Reserved bits of an entry at @level (1 = PTE) that maps or points on. */
/*
 * The entry maps a large page: PS below the top level, and in 32-bit
 * paging only with CR4.PSE (without it PS is ignored).
 */
static bool is_large(const struct walk *w, int level, uint64_t pte)
{
	if (!(pte & PTE_PS) || level == 1)
		return false;
	if (w->size == 4)
		return level == 2 && (w->m->cr4 & CR4_PSE);
	return level <= 3 && !(w->levels == 3 && level == 3);
}

static uint64_t rsvd_bits(const struct walk *w, int level, uint64_t pte)
{
	const struct x86_walk_mode *m = w->m;
	bool large = is_large(w, level, pte);
	uint64_t r;

	/* 32-bit paging: PSE-36 gives 4 MiB pages 4 more address bits, 17-21
	 * are reserved (KVM's rsvd_bits(17, 21)). */
	if (w->size == 4)
		return large ? bit_range(17, 21) : 0;
	r = m->maxphyaddr < 52 ? bit_range(m->maxphyaddr, 51) : 0;
	if (!(m->efer & EFER_NXE))
		r |= PTE_XD;
	if (w->levels == 3 && level == 3) /* PAE PDPTE */
		return r | PTE_XD | bit_range(1, 2) | bit_range(5, 8);
	if (level >= 4 || (level == 3 && !m->gbpages))
		r |= PTE_PS; /* no large page here */
	if (large)
		r |= bit_range(13, level == 3 ? 29 : 20); /* frame bits below the page */
	return r;
}

/* The physical address of @gva through the leaf @pte at @level. */
static uint64_t frame_of(const struct walk *w, int level, uint64_t pte, uint64_t gva)
{
	uint64_t mask;

	if (w->size == 4) {
		if (level == 2) /* 4 MiB, PSE-36 bits 13..16 are address bits 32..35 */
			return ((pte & bit_range(22, 31)) | ((pte & bit_range(13, 16)) << 19)) |
			       (gva & bit_range(0, 21));
		return (pte & bit_range(12, 31)) | (gva & 0xfff);
	}
	mask = level == 1 ? bit_range(12, 51) : level == 2 ? bit_range(21, 51) : bit_range(30, 51);
	return (pte & mask) | (gva & ~mask & bit_range(0, 51));
}

static unsigned index_of(const struct walk *w, int level, uint64_t gva)
{
	if (w->size == 4)
		return (unsigned)(gva >> (level == 2 ? 22 : 12)) & 0x3ff;
	if (w->levels == 3 && level == 3)
		return (unsigned)(gva >> 30) & 3;
	return (unsigned)(gva >> (12 + 9 * (level - 1))) & 0x1ff;
}

/* The #PF permission checks on the combined rights of the walk. */
static bool perm_fault(const struct x86_walk_mode *m, uint32_t access, bool rw, bool us,
		       bool xd)
{
	bool user = access & X86_PF_USER;

	if (user && !us)
		return true;
	if ((access & X86_PF_WRITE) && !rw && (user || (m->cr0 & CR0_WP)))
		return true;
	if ((access & X86_PF_FETCH) && xd && (m->efer & EFER_NXE))
		return true;
	if (!user && us) {
		if ((access & X86_PF_FETCH) && (m->cr4 & CR4_SMEP))
			return true;
		if (!(access & X86_PF_FETCH) && (m->cr4 & CR4_SMAP) &&
		    (!(m->rflags & RFLAGS_AC) || (access & X86_PF_IMPLICIT)))
			return true;
	}
	return false;
}

static uint32_t fault_code(const struct x86_walk_mode *m, uint32_t access, uint32_t extra)
{
	uint32_t ec = extra | (access & (X86_PF_WRITE | X86_PF_USER));

	if ((access & X86_PF_FETCH) && ((m->efer & EFER_NXE) || (m->cr4 & CR4_SMEP)))
		ec |= X86_PF_FETCH;
	return ec;
}

/* Set A everywhere and D on a written leaf.  1: an entry changed, walk again. */
static int walk_set_ad(const struct walk *w, uint32_t access, const struct x86_walk_ops *ops)
{
	for (int i = 0; i < w->n; i++) {
		bool leaf = i == w->n - 1;
		uint64_t want = w->pte[i] | PTE_A;
		int r;

		if (w->levels == 3 && i == 0)
			continue; /* PAE PDPTEs have no accessed bit */
		if (leaf && (access & X86_PF_WRITE))
			want |= PTE_D;
		if (want == w->pte[i])
			continue;
		r = ops->cmpxchg(ops->ctx, w->pte_gpa[i], w->size, w->pte[i], want);
		if (r)
			return r;
	}
	return 0;
}

/* One pass of the walk.  0, 1 (fault), 2 (retry: an A/D update raced), < 0. */
static int walk_once(struct walk *w, uint64_t gva, uint32_t access,
		     const struct x86_walk_ops *ops, struct x86_walk_result *res)
{
	const struct x86_walk_mode *m = w->m;
	uint64_t table = w->size == 4 ? (m->cr3 & bit_range(12, 31))
			 : w->levels == 3 ? (m->cr3 & bit_range(5, 31))
					  : (m->cr3 & bit_range(12, 51));
	bool rw = true, us = true, xd = false;
	int r;

	w->n = 0;
	for (int level = w->levels; level >= 1; level--) {
		uint64_t gpa = table + (uint64_t)index_of(w, level, gva) * w->size, pte;

		r = ops->read(ops->ctx, gpa, w->size, &pte);
		if (r < 0 || !(pte & PTE_P)) {
			res->error_code = fault_code(m, access, 0);
			return 1;
		}
		if (pte & rsvd_bits(w, level, pte)) {
			res->error_code = fault_code(m, access, X86_PF_PRESENT | X86_PF_RSVD);
			return 1;
		}
		w->pte_gpa[w->n] = gpa;
		w->pte[w->n++] = pte;
		if (!(w->levels == 3 && level == 3)) { /* PDPTEs carry no rights */
			rw &= !!(pte & PTE_RW);
			us &= !!(pte & PTE_US);
			xd |= w->size == 8 && (pte & PTE_XD);
		}
		if (level == 1 || is_large(w, level, pte)) {
			if (perm_fault(m, access, rw, us, xd)) {
				res->error_code = fault_code(m, access, X86_PF_PRESENT);
				return 1;
			}
			r = walk_set_ad(w, access, ops);
			if (r < 0) { /* the entry became unreachable: KVM faults */
				res->error_code = fault_code(m, access, 0);
				return 1;
			}
			if (r)
				return 2;
			res->gpa = frame_of(w, level, pte, gva);
			res->level = level;
			res->writable = rw || (!(access & X86_PF_USER) && !(m->cr0 & CR0_WP));
			res->executable = !(xd && (m->efer & EFER_NXE));
			res->dirty = (pte & PTE_D) || (access & X86_PF_WRITE);
			return 0;
		}
		table = w->size == 4 ? (pte & bit_range(12, 31)) : (pte & bit_range(12, 51));
	}
	return 1; /* not reached: level 1 always ends the walk */
}

int x86_walk(const struct x86_walk_mode *m, uint64_t gva, uint32_t access,
	     const struct x86_walk_ops *ops, struct x86_walk_result *res)
{
	struct walk w = { .m = m, .size = 8 };
	int r;

	memset(res, 0, sizeof(*res));
	if (!(m->cr0 & CR0_PG)) {
		res->gpa = (m->efer & EFER_LMA) ? gva : (uint32_t)gva;
		res->writable = res->executable = res->dirty = true;
		return 0;
	}
	if (m->efer & EFER_LMA)
		w.levels = (m->cr4 & CR4_LA57) ? 5 : 4;
	else if (m->cr4 & CR4_PAE)
		w.levels = 3;
	else
		w.levels = 2, w.size = 4, gva = (uint32_t)gva;
	do
		r = walk_once(&w, gva, access, ops, res);
	while (r == 2);
	return r;
}

/* ---- guest memory from the VMM side: KVM_TRANSLATE and the x86 backend ------- */

/*
 * In SMM the vCPU sees address space 1 (KVM's kvm_vcpu_memslots()).  SMM
 * code only runs in the emulator (x86_run.c), so its accesses go to the
 * memslot directly, as KVM's emulator reaches memory with
 * kvm_vcpu_read_guest(), not through stage-2 (which maps address space 0
 * only).  No memslot, a read-only one for a write, or a host page that is
 * not there: emulated as MMIO, where KVM's emulator also ends up.  The
 * page is used without the invalidation protocol, so the backend copies
 * data through the kernel (x86_run.c's host_copy()); only a page-table
 * entry of SMM code with paging on is touched directly, and a VMM that
 * unmaps that page while its vCPU walks it races with the walk.
 */
static int smm_gpa_host(struct kvm_vcpu *v, uint64_t gpa, bool write, uint8_t **host)
{
	gfn_t gfn = gpa >> GM_PAGE_SHIFT;
	struct kvm_memory_slot *slot = v->kvm->nr_as > 1 ? gfn_to_memslot(v->kvm, 1, gfn) : NULL;
	uint64_t hva;

	if (!slot || (write && (slot->flags & KVM_MEM_READONLY)))
		return KVM_PF_EMULATE;
	hva = kvm_gfn_to_hva_memslot(slot, gfn);
	if (kvm_hva_fault_in(hva, write) < (write ? 1 : 0))
		return KVM_PF_EMULATE;
	if (write)
		mark_page_dirty_in_slot(slot, gfn);
	*host = (uint8_t *)(uintptr_t)(hva + (gpa & (GM_PAGE_SIZE - 1)));
	return KVM_PF_FIXED;
}

int kvm_vcpu_gpa_host(struct kvm_vcpu *v, uint64_t gpa, bool write, uint8_t **host,
		      struct kvm_page_fault *f)
{
	bool held = v->kvm->private_held;
	uint64_t e;
	int level, r;

	if (v->arch.ev.smi.smm)
		return smm_gpa_host(v, gpa, write, host);

	/*
	 * Private memory the guest process holds alone has no address here
	 * (a leaf names a page of a PROT_NONE reservation).  A present leaf
	 * says so itself; before a fault the attributes do, and the caller
	 * that may reach it (kvm_x86_held_rw()) faults it in there.  For
	 * the others it is an access KVM_RUN fails with EFAULT: *@f says so.
	 */
	if (!kvm_mmu_leaf_usable(v->kvm, gpa, write, &e, &level)) {
		if (held && kvm_mem_is_private(v->kvm, gpa >> GM_PAGE_SHIFT))
			goto held;
		r = kvm_mmu_fault_in(v->kvm, gpa, write, &v->stat.fault, &v->last_used_slot, &e,
				     &level, f);
		if (r != KVM_PF_FIXED)
			return r;
	}
	if (held && (e & S2_PRIVATE))
		goto held;
	*host = s2_leaf_hva(e, level, gpa);
	return KVM_PF_FIXED;
held:
	kvm_pf_error(f, -EFAULT);
	return X86_GPA_HELD;
}

/*
 * Page-table entries: one in MMIO or behind a memory fault is unreachable.
 * One in private memory the guest process holds is read there for the
 * CPU's walks (@cpu), which the hardware makes through stage-2.  KVM's
 * software walker (KVM_TRANSLATE) reads the memslot's host mapping, the
 * shared view, and so never a private entry: for it such an entry is
 * unreachable, which is the answer KVM gives while the VMM has written
 * nothing there.
 */
struct pte_ctx {
	struct kvm_vcpu *v;
	bool cpu;
};

static int vcpu_pte_read(void *ctx, uint64_t gpa, unsigned size, uint64_t *val)
{
	const struct pte_ctx *c = ctx;
	struct kvm_page_fault f;
	uint8_t *p;
	int r = -EFAULT, pf;

	for (;;) {
		gm_rcu_read_lock();
		pf = kvm_vcpu_gpa_host(c->v, gpa, false, &p, &f);
		if (pf == KVM_PF_FIXED) {
			*val = size == 8 ? __atomic_load_n((uint64_t *)p, __ATOMIC_RELAXED)
					 : __atomic_load_n((uint32_t *)p, __ATOMIC_RELAXED);
			r = 0;
		}
		gm_rcu_read_unlock();
		if (pf != X86_GPA_HELD || !c->cpu)
			return r;
		*val = 0;
		pf = kvm_x86_held_rw(c->v, gpa, val, size, false, &f);
		if (pf != KVM_PF_RETRY) /* else: shared now, look again */
			return pf == KVM_PF_FIXED ? 0 : -EFAULT;
	}
}

static int vcpu_pte_cmpxchg(void *ctx, uint64_t gpa, unsigned size, uint64_t old, uint64_t new_val)
{
	const struct pte_ctx *c = ctx;
	struct kvm_page_fault f;
	uint8_t *p;
	int r = -EFAULT, pf;

	gm_rcu_read_lock();
	pf = kvm_vcpu_gpa_host(c->v, gpa, true, &p, &f);
	if (pf == X86_GPA_HELD && c->cpu) {
		bool swapped;

		gm_rcu_read_unlock();
		pf = kvm_x86_held_cmpxchg(c->v, gpa, size, old, new_val, &swapped, &f);
		if (pf == KVM_PF_FIXED)
			return swapped ? 0 : 1;
		/* Shared now (KVM_PF_RETRY): the walk starts over, as after a change. */
		return pf == KVM_PF_RETRY ? 1 : -EFAULT;
	}
	if (pf == KVM_PF_FIXED) {
		bool ok;

		if (size == 8) {
			ok = __atomic_compare_exchange_n((uint64_t *)p, &old, new_val, false,
							 __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
		} else {
			uint32_t o = (uint32_t)old;

			ok = __atomic_compare_exchange_n((uint32_t *)p, &o, (uint32_t)new_val,
							 false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED);
		}
		r = ok ? 0 : 1;
	}
	gm_rcu_read_unlock();
	return r;
}

static void vcpu_walk_mode(struct kvm_vcpu *v, struct x86_walk_mode *m)
{
	m->cr0 = v->sregs.cr0;
	m->cr3 = v->sregs.cr3;
	m->cr4 = v->sregs.cr4;
	m->efer = v->sregs.efer;
	m->rflags = v->regs.rflags;
	m->maxphyaddr = kvm_guest_maxphyaddr(v);
	m->gbpages = kvm_guest_cpuid_has(v, 0x80000001, 0, 3, 26);
}

static int vcpu_walk(struct kvm_vcpu *v, bool cpu, uint64_t gva, uint32_t access,
		     struct x86_walk_result *res)
{
	struct pte_ctx c = { v, cpu };
	const struct x86_walk_ops ops = { vcpu_pte_read, vcpu_pte_cmpxchg, &c };
	struct x86_walk_mode m;

	vcpu_walk_mode(v, &m);
	return x86_walk(&m, gva, access, &ops, res);
}

int kvm_vcpu_walk(struct kvm_vcpu *v, uint64_t gva, uint32_t access, struct x86_walk_result *res)
{
	return vcpu_walk(v, true, gva, access, res);
}

int kvm_vcpu_translate(struct kvm_vcpu *v, struct kvm_translation *tr)
{
	struct x86_walk_result res;
	int r = vcpu_walk(v, false, tr->linear_address, 0, &res);

	if (r < 0)
		return r;
	tr->physical_address = r ? ~0ULL : res.gpa; /* INVALID_GPA */
	tr->valid = !r;
	tr->writeable = 1;
	tr->usermode = 0;
	return 0;
}
