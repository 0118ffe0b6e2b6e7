/* SPDX-License-Identifier: MIT */
/*
 * The public C API (<guestmem/guestmem.h>), VMs and guest_memfd: thin,
 * typed entry points onto the core.  struct guestmem_vm is struct kvm and
 * struct guestmem_gmem is struct kvm_gmem; the public names keep them
 * opaque.  This layer sits on top of core, mmu and vcpu (its statistics
 * read the vCPUs' counters); nothing below calls into it.
 */
#include <errno.h>

#include <guestmem/guestmem.h>

#include "core/gmem.h"
#include "core/kvm_host.h"
#include "vcpu/vcpu.h"

static inline struct kvm *to_kvm(struct guestmem_vm *vm)
{
	return (struct kvm *)vm;
}

static inline struct kvm_gmem *to_gmem(struct guestmem_gmem *g)
{
	return (struct kvm_gmem *)g;
}

GM_API int guestmem_config_set(const char *profile, const char *kconfig, const char *backing)
{
	return gm_config_set(profile, kconfig, backing);
}

GM_API long guestmem_check_extension(struct guestmem_vm *vm, long cap)
{
	return kvm_check_extension(gm_config_get(), vm ? to_kvm(vm) : NULL, cap);
}

GM_API int guestmem_vm_create(unsigned long type, struct guestmem_vm **vm)
{
	struct kvm *kvm;
	int r = kvm_create_vm(type, &kvm);

	if (!r)
		*vm = (struct guestmem_vm *)kvm;
	return r;
}

GM_API void guestmem_vm_put(struct guestmem_vm *vm)
{
	if (vm)
		kvm_put_kvm(to_kvm(vm));
}

GM_API int guestmem_vm_enable_cap(struct guestmem_vm *vm, const struct kvm_enable_cap *cap)
{
	return kvm_vm_enable_cap(to_kvm(vm), cap->cap, cap->flags, (const uint64_t *)cap->args);
}

GM_API int guestmem_set_memory_region(struct guestmem_vm *vm,
				      const struct kvm_userspace_memory_region2 *region,
				      struct guestmem_gmem *gmem)
{
	struct kvm_gmem_ref ref = { .err = gmem ? 0 : -EBADF, .gmem = to_gmem(gmem) };

	return kvm_set_memory_region(to_kvm(vm), region, true, &ref);
}

GM_API int guestmem_set_memory_attributes(struct guestmem_vm *vm,
					  const struct kvm_memory_attributes *attrs)
{
	if (!gm_cfg_mem_attributes(&to_kvm(vm)->cfg))
		return -ENOTTY;
	return kvm_vm_ioctl_set_mem_attributes(to_kvm(vm), attrs);
}

GM_API int guestmem_gmem_create(struct guestmem_vm *vm,
				const struct kvm_create_guest_memfd *args,
				struct guestmem_gmem **gmem)
{
	struct kvm_gmem *g;
	int r;

	if (!gm_cfg_private_mem(&to_kvm(vm)->cfg))
		return -ENOTTY;
	r = kvm_gmem_create(to_kvm(vm), args, &g);
	if (!r)
		*gmem = (struct guestmem_gmem *)g;
	return r;
}

GM_API int guestmem_gmem_fallocate(struct guestmem_gmem *gmem, int mode, off_t offset,
				   off_t len)
{
	return kvm_gmem_fallocate(to_gmem(gmem), mode, offset, len);
}

GM_API void guestmem_gmem_put(struct guestmem_gmem *gmem)
{
	if (gmem)
		kvm_gmem_put(to_gmem(gmem));
}

GM_API void guestmem_invalidate_hva_range(struct guestmem_vm *vm, void *hva, size_t len)
{
	uint64_t s = (uint64_t)(uintptr_t)hva;

	kvm_mmu_notifier_invalidate_range(to_kvm(vm), s & ~(GM_PAGE_SIZE - 1), s + len);
}

GM_API void guestmem_vm_invalidate_state(struct guestmem_vm *vm,
					 struct guestmem_invalidate_state *st)
{
	struct kvm_invalidate_state s;

	kvm_mmu_invalidate_state(to_kvm(vm), &s);
	st->seq = s.seq;
	st->in_progress = s.in_progress;
	st->range_start = s.range_start;
	st->range_end = s.range_end;
}

GM_API void guestmem_vm_stats(struct guestmem_vm *vm, struct guestmem_vm_stats *st)
{
	struct kvm *kvm = to_kvm(vm);
	struct kvm_vcpu_stat vs;

	st->invalidations = __atomic_load_n(&kvm->stat.invalidations, __ATOMIC_RELAXED);
	st->attr_updates = __atomic_load_n(&kvm->stat.attr_updates, __ATOMIC_RELAXED);
	st->zapped_ranges = __atomic_load_n(&kvm->stat.zapped_ranges, __ATOMIC_RELAXED);
	st->remote_flushes = __atomic_load_n(&kvm->stat.remote_flushes, __ATOMIC_RELAXED);
	kvm_vcpu_stats_sum(kvm, &vs);
	st->faults = vs.fault.faults;
	st->fault_retries = vs.fault.retries;
	st->mmu_lock_acquisitions = vs.fault.lock_acq;
	st->memory_fault_exits = vs.fault.memory_fault_exits;
}
