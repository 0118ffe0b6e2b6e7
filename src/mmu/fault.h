/* SPDX-License-Identifier: MIT */
/*
 * The stage-2 fault path (spec kvm-gmem-spec.md §4.5, §4.6, §4.8): what a
 * vCPU access runs when kvm_mmu_lookup() misses.
 *
 * One call handles one fault and tells the caller what to do next; it never
 * loops itself.  Retries are the caller's business (the guest accessor
 * simply redoes the access), exactly as KVM re-enters the guest after
 * RET_PF_RETRY.
 */
#ifndef GM_MMU_FAULT_H
#define GM_MMU_FAULT_H

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/kvm_host.h"

enum kvm_pf_result {
	KVM_PF_FIXED,	/* a translation was installed: redo the access */
	KVM_PF_RETRY,	/* raced with an invalidation or a slot update: redo it */
	KVM_PF_EMULATE, /* no memslot, or a write to a read-only one: MMIO exit */
	KVM_PF_EXIT,	/* KVM_RUN must return f->error (see memory_fault) */
};

/* One fault, as the kernel's struct kvm_page_fault (only what we need). */
struct kvm_page_fault {
	gpa_t gpa;
	gfn_t gfn;
	bool write;
	/* Classified once from the attributes, before anything else. */
	bool is_private;
	/* KVM_PF_EXIT: negative errno for KVM_RUN. */
	int error;
	/* KVM_PF_EXIT: fill KVM_EXIT_MEMORY_FAULT (false: plain -EFAULT). */
	bool memory_fault;
	/* KVM_PF_FIXED: level of the installed leaf (S2_PG_LEVEL_*). */
	int level;
};

/* KVM_PF_EXIT with @err for KVM_RUN and no memory-fault exit. */
static inline int kvm_pf_error(struct kvm_page_fault *f, int err)
{
	f->error = err;
	f->memory_fault = false;
	return KVM_PF_EXIT;
}

/*
 * Counters of one vCPU's faults.  Each is written by one thread at a time
 * (the vCPU's guest thread, or a unit test) with a relaxed load and store,
 * never an atomic read-modify-write; readers use READ_ONCE.
 */
struct kvm_fault_stat {
	uint64_t faults;	     /* calls of kvm_mmu_page_fault() */
	uint64_t retries;	     /* of which ended in KVM_PF_RETRY */
	uint64_t lock_acq;	     /* mmu_lock acquisitions (read) */
	uint64_t memory_fault_exits; /* KVM_PF_EXIT with memory_fault */
	uint64_t huge_maps;	     /* KVM_PF_FIXED at 2 MiB or 1 GiB */
	uint64_t fixed;		     /* ended in KVM_PF_FIXED */
	uint64_t emulate;	     /* ended in KVM_PF_EMULATE (MMIO) */
};

static inline void kvm_stat_inc(uint64_t *c)
{
	WRITE_ONCE(*c, READ_ONCE(*c) + 1);
}

/**
 * kvm_mmu_page_fault() - resolve a stage-2 miss on @gpa, spec §4.5.
 * @write: the access is a store.
 * @st: where to count (not NULL).
 * @f: receives the classification and, for KVM_PF_EXIT, the error.
 *
 * Context: no RCU read-side section, no VM lock held (the function takes
 * both as needed).  Returns an enum kvm_pf_result.
 */
int kvm_mmu_page_fault(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
		       struct kvm_page_fault *f);
/* The same for a vCPU: the slot is looked up through its last-used-slot cache. */
int kvm_vcpu_mmu_page_fault(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
			    struct kvm_memslot_cache *slot_cache, struct kvm_page_fault *f);

/*
 * Before redoing an access whose fault ended in KVM_PF_RETRY: spin a
 * little, then yield, while the invalidation or memslot update it raced
 * finishes.  @n counts the access's retries.
 */
static inline void kvm_mmu_retry_backoff(unsigned *n)
{
	if (++*n < 16)
		__builtin_ia32_pause();
	else
		sched_yield();
}

/*
 * Whether the host page at @hva can be accessed (@write: for writing),
 * faulting it in as the kernel's hva_to_pfn() would: 1 writable, 0
 * read-only, -EFAULT (no mapping, or not for that access).  For accesses
 * that bypass stage-2 (the SMM address space, x86_walk.c).
 */
int kvm_hva_fault_in(uint64_t hva, bool write);

/*
 * The stage-2 leaf for a @write access to @gpa if one is there and allows
 * it: *@e and *@level set, true; else false (a fault is needed).
 * Context: gm_rcu_read_lock().
 */
bool kvm_mmu_leaf_usable(struct kvm *kvm, gpa_t gpa, bool write, uint64_t *e, int *level);

/**
 * kvm_mmu_fault_in() - the stage-2 leaf for a @write access to @gpa,
 * faulting it in (kvm_vcpu_mmu_page_fault()) and looking again until it
 * is there, as a vCPU re-executes its access after a fixed or retried
 * fault.
 * @slot_cache: the vCPU's last-used slot, or NULL.
 * @e, @level: on KVM_PF_FIXED, the leaf (kvm_mmu_lookup()) and its level.
 * @f: on KVM_PF_EXIT, the fault with its error.
 *
 * Returns KVM_PF_FIXED, KVM_PF_EMULATE (no memslot, a write to a read-only
 * one) or KVM_PF_EXIT.  Context: called and returns inside
 * gm_rcu_read_lock() (*@e is valid until the section ends), which it
 * drops around each fault; no VM lock held.
 */
int kvm_mmu_fault_in(struct kvm *kvm, gpa_t gpa, bool write, struct kvm_fault_stat *st,
		     struct kvm_memslot_cache *slot_cache, uint64_t *e, int *level,
		     struct kvm_page_fault *f);

/**
 * kvm_vcpu_pre_fault_memory() - KVM_PRE_FAULT_MEMORY (Linux 6.10+): map
 * [*@gpa, *@gpa + *@size) into stage-2 as read faults would, without
 * running the guest.
 * @gpa, @size: the range; advanced past what was mapped, also on failure.
 * @flags: must be 0.
 * @st: where the faults count.
 *
 * Returns 0 if anything was mapped (the rest is left in *@gpa and *@size),
 * else -EINVAL (flags, alignment, wrap), -ENOENT (no memslot: the kernel's
 * RET_PF_EMULATE), or the fault's error (-EFAULT for a private/shared
 * mismatch or a missing host page, ...).  Context: as kvm_mmu_page_fault();
 * the vCPU's mutex held.
 */
int kvm_vcpu_pre_fault_memory(struct kvm *kvm, struct kvm_fault_stat *st, uint64_t *gpa,
			      uint64_t *size, uint64_t flags);

/*
 * The two lockless pre-checks (steps 4 and 7) can be switched off for
 * measurements; the locked check always runs.  Default: on, unless the
 * environment has GUESTMEM_NO_PRECHECK=1.  Returns the previous setting.
 */
bool kvm_mmu_set_fault_precheck(bool enable);
bool kvm_mmu_fault_precheck_enabled(void);

#endif
