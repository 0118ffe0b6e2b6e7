/* SPDX-License-Identifier: MIT */
/*
 * The x86 backend's shadow: the guest process's address space mirrors the
 * guest's page tables composed with stage-2 (docs/design-guest-execution-
 * and-isolation.md).  One shadow per VM, shared by its vCPUs (one guest
 * process, one address space), so it mirrors one paging state (CR3, CR0,
 * CR4, EFER) at a time: a vCPU that runs with another one drops it whole.
 *
 * Every 4 KiB guest page mapped in the guest process is recorded in a
 * reverse map (gfn <-> guest VA).  The MMU's notifier (mmu.h) calls
 * x86_shadow's zap for every stage-2 zap and write protection, and the
 * affected guest VAs are unmapped (or made read-only) in the guest process
 * before the zapping call returns.
 *
 * Race between a vCPU mapping a translation and a concurrent zap.  The
 * vCPU resolves gva -> gpa (guest walk) -> stage-2 (fault path) with no
 * lock, after snapshotting mmu_invalidate_seq.  Then x86_shadow_map()
 * takes mmu_lock for read and, under it: mmu_invalidate_retry_gfn() with
 * the snapshot (an invalidation started or ended since: retry), the
 * stage-2 entry still present (and writable for a writable mapping), the
 * backing's (fd, offset) looked up, and the mapping entered in the reverse
 * map and in the vCPU's list of maps in flight.  Every zap notifies under
 * mmu_lock held for write, so it comes either before (the checks fail:
 * retry) or after the entry is in the reverse map (the zap finds it).
 * The mmap itself happens later, in the guest process's vCPU thread, when
 * gp_vcpu_run() applies the maps.  A zap that finds an entry still in
 * flight kicks that vCPU and waits (sh->cv) until its gp_vcpu_run() has
 * returned, so the mmap is done before the zap's munmap: a munmap that
 * overtook the mmap would leave the stale mapping.  A vCPU never waits
 * for another while its own maps are in flight, and holds no lock while
 * in gp_vcpu_run(), so the wait ends; and once it has maps in flight it
 * only try-locks mmu_lock (a zapper may hold it while waiting for them)
 * and goes running instead of retrying faults.  A vCPU that flushes or
 * changes the paging state forgets its own maps not yet applied, and
 * unmaps their guest VAs: the reverse map must not record what the guest
 * process does not map.
 *
 * Context of every function: the vCPU's mutex held for the vCPU ones; no
 * RCU read-side section, no mmu_lock, unless said otherwise.
 */
#ifndef GM_VCPU_X86_SHADOW_H
#define GM_VCPU_X86_SHADOW_H

#include <stdbool.h>
#include <stdint.h>

#include "core/kvm_host.h"
#include "gproc/gproc.h"

#define X86_SHADOW_MAX_MAPS 16 /* maps one gp_vcpu_run() applies at most */

struct kvm_x86_shadow;

/* A vCPU's view of the shadow: its maps for the next run and in flight. */
struct x86_shadow_vcpu {
	struct gp_vcpu *gp;
	/* Under sh->lock: maps registered and not yet known applied. */
	bool inflight;
	bool kicked;	   /* a zap kicked it to wait for inflight */
	unsigned nr_maps;  /* owner: the vCPU (under sh->lock when inflight) */
	struct gp_map maps[X86_SHADOW_MAX_MAPS];
	gfn_t gfns[X86_SHADOW_MAX_MAPS];    /* first gfn of each map */
	unsigned npages[X86_SHADOW_MAX_MAPS]; /* and its length in pages */
	struct x86_shadow_vcpu *next; /* sh->vcpus, under sh->lock */
};

/* Paging state the shadow mirrors. */
struct x86_shadow_mode {
	uint64_t cr0, cr3, cr4, efer;
};

/* At the first run of the VM's first x86 vCPU: registers the MMU notifier.
 * Returns 0, -ENOMEM. */
int x86_shadow_create(struct kvm *kvm, struct gp_vm *gp, struct kvm_x86_shadow **out);
/* VM destruction (no vCPU left): unregisters and frees. */
void x86_shadow_destroy(struct kvm_x86_shadow *sh);

struct gm_backing_holder;
/* The guest process as the holder of guest_memfd storage (core/backing.h). */
void x86_shadow_holder(struct kvm_x86_shadow *sh, struct gm_backing_holder *out);

/*
 * The guest process's id of the storage file @file_id that it holds
 * (kvm_gfn_backing.file_id of a held guest_memfd): 0 with *@id, or
 * -ENOENT when it holds no such file (dropped meanwhile).
 * Context: sh->lock not held.
 */
int x86_shadow_held_id(struct kvm_x86_shadow *sh, uint64_t file_id, uint32_t *id);

void x86_shadow_add_vcpu(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv);
void x86_shadow_remove_vcpu(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv);

/* Before a run: drop everything if the shadow mirrors another paging state. */
void x86_shadow_set_mode(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv,
			 const struct x86_shadow_mode *m);

/*
 * Register the mapping of up to @npages 4 KiB guest pages from @gva (in
 * one guest leaf of level @level, so contiguous in guest-physical space)
 * to @gfn.. with @prot for the vCPU's next run (see the top).  The run
 * is cut at the first page whose stage-2 entry is missing or other, or
 * where the backing file stops being contiguous; the first page must map.
 * @mmu_seq: mmu_invalidate_seq snapshotted before the stage-2 resolution.
 * PROT_EXEC is dropped where the backing file cannot be mapped executable
 * (memfd_secret, a noexec mount); @fetch (the guest is fetching code
 * there) then fails with -EPERM.
 * Returns 0; -EAGAIN (raced: resolve again); -ENOSPC (the vCPU's map list
 * is full, or mmu_lock is contended while it has maps in flight: run
 * first); -EPERM; -EXDEV (the memory is in host huge pages, which map
 * only in whole, aligned huge pages, and the run is not that);
 * -EOPNOTSUPP (no fd reaches that memory) or another -errno from the
 * backing.
 */
int x86_shadow_map(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv, struct kvm *kvm,
		   uint64_t gva, gfn_t gfn, unsigned npages, int level, int prot, bool fetch,
		   unsigned long mmu_seq);

/* Around gp_vcpu_run(): end marks the vCPU's maps applied (or dropped). */
void x86_shadow_run_end(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv);
/* Maps registered and never run (the vCPU delivers an event or leaves
 * KVM_RUN first): forget them, and unmap their guest VAs, whose old
 * translations the reverse map no longer records. */
void x86_shadow_forget(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv);

/* Guest TLB flushes: everything (CR3 write, paging-mode change), or the
 * guest page at @gva (INVLPG). */
void x86_shadow_flush_all(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv);
void x86_shadow_flush_gva(struct kvm_x86_shadow *sh, struct x86_shadow_vcpu *sv, uint64_t gva);

/* Mapped 4 KiB pages (tests, stats). */
uint64_t x86_shadow_nr_pages(struct kvm_x86_shadow *sh);

#endif
