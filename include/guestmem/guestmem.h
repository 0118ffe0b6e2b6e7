/* SPDX-License-Identifier: MIT */
/*
 * <guestmem/guestmem.h> - the guestmem C library.
 *
 * guestmem is KVM's guest-first memory subsystem (guest_memfd, memory
 * attributes, private/shared faults, the MMU invalidation protocol) in user
 * space.  Objects are opaque and reference counted; functions return 0 or a
 * negative errno, exactly the errno the kernel's ioctl would give, in the
 * kernel's check order.  Arguments use the kernel's own uAPI structs from
 * <guestmem/kvm.h>.
 *
 * The same objects are reachable as file descriptors through
 * <guestmem/sys.h> (the drop-in /dev/kvm).
 */
#ifndef GUESTMEM_GUESTMEM_H
#define GUESTMEM_GUESTMEM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <guestmem/kvm.h>

#ifdef __cplusplus
extern "C" {
#endif

struct guestmem_vm;
struct guestmem_gmem;
struct guestmem_vcpu;

/**
 * guestmem_config_set() - select the kernel profile, Kconfig and backing.
 * @profile: "linux-6.8" (default), "linux-6.12" or "linux-6.18"; NULL keeps
 *            the current.
 * @kconfig: e.g. "KVM_SW_PROTECTED_VM=n KVM_SMM=n"; NULL keeps the current.
 * @backing: "memfd" (default) or "secretmem"; NULL keeps the current.
 *
 * Same syntax as GUESTMEM_PROFILE / GUESTMEM_CONFIG / GUESTMEM_BACKING.
 * Applies to VMs created afterwards.  Return: 0 or -EINVAL (nothing changed).
 */
int guestmem_config_set(const char *profile, const char *kconfig, const char *backing);

/** guestmem_check_extension() - KVM_CHECK_EXTENSION; @vm NULL: system scope. */
long guestmem_check_extension(struct guestmem_vm *vm, long cap);

/**
 * guestmem_vm_create() - KVM_CREATE_VM.
 * Return: 0 and a VM with one reference in *@vm, -EINVAL for an unsupported
 * @type, -ENOMEM.
 */
int guestmem_vm_create(unsigned long type, struct guestmem_vm **vm);
/** guestmem_vm_put() - drop a reference; guest_memfds keep the VM alive. */
void guestmem_vm_put(struct guestmem_vm *vm);

/** guestmem_vm_enable_cap() - KVM_ENABLE_CAP on the VM. */
int guestmem_vm_enable_cap(struct guestmem_vm *vm, const struct kvm_enable_cap *cap);

/**
 * guestmem_set_memory_region() - KVM_SET_USER_MEMORY_REGION2.
 * @gmem: the guest_memfd to bind when @region has KVM_MEM_GUEST_MEMFD (its
 *        guest_memfd field is then ignored); NULL fails that case with
 *        -EBADF, like a closed fd.
 */
int guestmem_set_memory_region(struct guestmem_vm *vm,
			       const struct kvm_userspace_memory_region2 *region,
			       struct guestmem_gmem *gmem);

/** guestmem_set_memory_attributes() - KVM_SET_MEMORY_ATTRIBUTES. */
int guestmem_set_memory_attributes(struct guestmem_vm *vm,
				   const struct kvm_memory_attributes *attrs);

/**
 * guestmem_gmem_create() - KVM_CREATE_GUEST_MEMFD.
 * Return: 0 and a guest_memfd holding one reference (and one on @vm).
 */
int guestmem_gmem_create(struct guestmem_vm *vm, const struct kvm_create_guest_memfd *args,
			 struct guestmem_gmem **gmem);
/** guestmem_gmem_fallocate() - fallocate(2) on the guest_memfd. */
int guestmem_gmem_fallocate(struct guestmem_gmem *gmem, int mode, off_t offset, off_t len);
/** guestmem_gmem_put() - drop a reference; the last one releases the file. */
void guestmem_gmem_put(struct guestmem_gmem *gmem);

/**
 * guestmem_invalidate_hva_range() - the VMM changed [@hva, @hva + @len)
 * of its own address space (what the kernel's mmu notifier reports).
 * Zaps every guest translation derived from it.  Under `guestmem exec`,
 * munmap/mremap/madvise/mprotect call this automatically.
 */
void guestmem_invalidate_hva_range(struct guestmem_vm *vm, void *hva, size_t len);

/** Test-only view of the MMU invalidation state (spec §4.4). */
struct guestmem_invalidate_state {
	unsigned long seq;
	long in_progress;
	uint64_t range_start; /* gfn; ~0 when unset */
	uint64_t range_end;
};
void guestmem_vm_invalidate_state(struct guestmem_vm *vm, struct guestmem_invalidate_state *st);

/** Counters for demos and tests. */
struct guestmem_vm_stats {
	uint64_t invalidations;
	uint64_t attr_updates;
	uint64_t zapped_ranges;
	uint64_t remote_flushes;
	uint64_t faults;
	uint64_t fault_retries;
	uint64_t mmu_lock_acquisitions;
	uint64_t memory_fault_exits;
};
void guestmem_vm_stats(struct guestmem_vm *vm, struct guestmem_vm_stats *st);

/* ---- vCPUs (src/vcpu) ------------------------------------------------- */

/* The guest program type of <guestmem/guest.h>. */
struct guestmem_guest;
typedef void (*guestmem_vcpu_guest_fn)(struct guestmem_guest *g);

/**
 * guestmem_vcpu_create() - KVM_CREATE_VCPU with id @id.
 * Return: 0 and a handle holding one VM reference in *@vcpu; -EINVAL for
 * an id or count beyond the limits, -EEXIST for an id in use, -ENOMEM.
 */
int guestmem_vcpu_create(struct guestmem_vm *vm, uint32_t id, struct guestmem_vcpu **vcpu);

/**
 * guestmem_vcpu_set_guest() - the guest program @fn, which reads @opaque
 * with guestmem_guest_opaque().  Before the first run only (-EBUSY after).
 * Without one, the first run loads GUESTMEM_GUEST like `guestmem exec`.
 */
int guestmem_vcpu_set_guest(struct guestmem_vcpu *vcpu, guestmem_vcpu_guest_fn fn,
			    void *opaque);

/**
 * guestmem_vcpu_run() - KVM_RUN.
 * Return: 0 with the exit in guestmem_vcpu_run_struct(), or -EINTR,
 * -EFAULT/-EHWPOISON (KVM_EXIT_MEMORY_FAULT), ... as the ioctl's errno.
 */
int guestmem_vcpu_run(struct guestmem_vcpu *vcpu);
/** guestmem_vcpu_run_struct() - the vCPU's struct kvm_run (page 0 of its mmap). */
struct kvm_run *guestmem_vcpu_run_struct(struct guestmem_vcpu *vcpu);

/** KVM_GET_REGS / KVM_SET_REGS.  Return: 0. */
int guestmem_vcpu_get_regs(struct guestmem_vcpu *vcpu, struct kvm_regs *regs);
int guestmem_vcpu_set_regs(struct guestmem_vcpu *vcpu, const struct kvm_regs *regs);

/** guestmem_vcpu_put() - drop the handle (the vCPU lives as long as its VM). */
void guestmem_vcpu_put(struct guestmem_vcpu *vcpu);

/**
 * guestmem_fault_precheck() - the fault path's two lockless pre-checks
 * (spec §4.6), for measurements: @enable 1 on, 0 off, -1 query only.
 * Default on, or off with GUESTMEM_NO_PRECHECK=1.  Return: the previous
 * setting.
 */
int guestmem_fault_precheck(int enable);

#ifdef __cplusplus
}
#endif
#endif
