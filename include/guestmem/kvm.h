/* SPDX-License-Identifier: MIT */
/*
 * <guestmem/kvm.h> - the system <linux/kvm.h> plus the Linux 6.8 / 6.18
 * guest-first-memory definitions it may lack.
 *
 * Debian 12 ships the Linux 6.1 uAPI headers, which predate guest_memfd,
 * memory attributes and KVM_SET_USER_MEMORY_REGION2.  Every value and layout
 * below is a fact of the kernel ABI (see shared/spec, sections 2.1-2.4 of the
 * guest-memory spec and 1.2/5.1 of the vCPU spec); the definitions are our
 * own.  Each block is guarded so that a newer system header wins.
 *
 * One thing cannot be added from outside: struct kvm_run's exit union in a
 * pre-6.8 header has no `memory_fault` member and its hypercall exit has no
 * `flags`.  kvm_run_memory_fault() and kvm_run_hypercall_flags() give typed
 * access to those bytes whichever header is in use.
 */
#ifndef GUESTMEM_KVM_H
#define GUESTMEM_KVM_H

#include <stddef.h>
#include <linux/kvm.h>
#include <linux/kvm_para.h>

/* ---- KVM_SET_USER_MEMORY_REGION2 (6.8) ------------------------------- */
#ifndef KVM_SET_USER_MEMORY_REGION2
struct kvm_userspace_memory_region2 {
	__u32 slot;
	__u32 flags;
	__u64 guest_phys_addr;
	__u64 memory_size;
	__u64 userspace_addr;
	__u64 guest_memfd_offset;
	__u32 guest_memfd;
	__u32 pad1;
	__u64 pad2[14];
};
#define KVM_SET_USER_MEMORY_REGION2 \
	_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)
#endif

#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif

/* ---- memory attributes (6.8) ----------------------------------------- */
#ifndef KVM_SET_MEMORY_ATTRIBUTES
struct kvm_memory_attributes {
	__u64 address;
	__u64 size;
	__u64 attributes;
	__u64 flags;
};
#define KVM_SET_MEMORY_ATTRIBUTES _IOW(KVMIO, 0xd2, struct kvm_memory_attributes)
#endif
#ifndef KVM_MEMORY_ATTRIBUTE_PRIVATE
#define KVM_MEMORY_ATTRIBUTE_PRIVATE (1ULL << 3)
#endif

/* ---- guest_memfd (6.8; flags 6.18) ------------------------------------ */
#ifndef KVM_CREATE_GUEST_MEMFD
struct kvm_create_guest_memfd {
	__u64 size;
	__u64 flags;
	__u64 reserved[6];
};
#define KVM_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)
#endif
#ifndef GUEST_MEMFD_FLAG_MMAP
#define GUEST_MEMFD_FLAG_MMAP (1ULL << 0)
#endif
#ifndef GUEST_MEMFD_FLAG_INIT_SHARED
#define GUEST_MEMFD_FLAG_INIT_SHARED (1ULL << 1)
#endif

/* ---- capabilities ---------------------------------------------------- */
#ifndef KVM_CAP_EXIT_HYPERCALL
#define KVM_CAP_EXIT_HYPERCALL 201
#endif
#ifndef KVM_CAP_BINARY_STATS_FD
#define KVM_CAP_BINARY_STATS_FD 203
#endif
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_CAP_MEMORY_ATTRIBUTES
#define KVM_CAP_MEMORY_ATTRIBUTES 233
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#ifndef KVM_CAP_VM_TYPES
#define KVM_CAP_VM_TYPES 235
#endif
#ifndef KVM_CAP_PRE_FAULT_MEMORY
#define KVM_CAP_PRE_FAULT_MEMORY 236
#endif
/* Linux 6.10: KVM_PRE_FAULT_MEMORY (vCPU ioctl). */
#ifndef KVM_PRE_FAULT_MEMORY
struct kvm_pre_fault_memory {
	__u64 gpa;
	__u64 size;
	__u64 flags;
	__u64 padding[5];
};
#define KVM_PRE_FAULT_MEMORY _IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)
#endif
/* Binary stats: the kernel's name size for every VM and vCPU stat. */
#ifndef KVM_STATS_NAME_SIZE
#define KVM_STATS_NAME_SIZE 48
#endif
#ifndef KVM_CAP_GUEST_MEMFD_FLAGS
#define KVM_CAP_GUEST_MEMFD_FLAGS 244
#endif

/* ---- VM types (x86) --------------------------------------------------- */
#ifndef KVM_X86_DEFAULT_VM
#define KVM_X86_DEFAULT_VM 0
#endif
#ifndef KVM_X86_SW_PROTECTED_VM
#define KVM_X86_SW_PROTECTED_VM 1
#endif

/* ---- exits ------------------------------------------------------------ */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_MEMORY_EXIT_FLAG_PRIVATE
#define KVM_MEMORY_EXIT_FLAG_PRIVATE (1ULL << 3)
#endif
/* The 6.8 header spells this with the kernel-only BIT() macro. */
#ifndef KVM_EXIT_HYPERCALL_LONG_MODE
#define KVM_EXIT_HYPERCALL_LONG_MODE (1ULL << 0)
#endif

/* ---- KVM_HC_MAP_GPA_RANGE arguments (x86 kvm_para.h) ------------------ */
#ifndef KVM_HC_MAP_GPA_RANGE
#define KVM_HC_MAP_GPA_RANGE 12
#endif
#ifndef KVM_MAP_GPA_RANGE_PAGE_SZ_4K
#define KVM_MAP_GPA_RANGE_PAGE_SZ_4K 0
#define KVM_MAP_GPA_RANGE_PAGE_SZ_2M 1
#define KVM_MAP_GPA_RANGE_PAGE_SZ_1G 2
#endif
#ifndef KVM_MAP_GPA_RANGE_ENCRYPTED
#define KVM_MAP_GPA_RANGE_ENCRYPTED (1 << 4)
#define KVM_MAP_GPA_RANGE_DECRYPTED (0 << 4)
#endif
#ifndef KVM_EINVAL
#define KVM_EINVAL 22
#endif

/* ---- x86 capabilities newer than the 6.1 headers (6.11, 6.12) -------- */
#ifndef KVM_CAP_X86_APIC_BUS_CYCLES_NS
#define KVM_CAP_X86_APIC_BUS_CYCLES_NS 237
#endif
#ifndef KVM_X86_QUIRK_SLOT_ZAP_ALL
#define KVM_X86_QUIRK_SLOT_ZAP_ALL (1 << 7)
#endif
#ifndef KVM_X86_QUIRK_STUFF_FEATURE_MSRS
#define KVM_X86_QUIRK_STUFF_FEATURE_MSRS (1 << 8)
#endif
#ifndef KVM_X86_QUIRK_IGNORE_GUEST_PAT
#define KVM_X86_QUIRK_IGNORE_GUEST_PAT (1 << 9)
#endif
#ifndef KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM
#define KVM_X86_QUIRK_VMCS12_ALLOW_FREEZE_IN_SMM (1 << 10)
#endif

/* ---- typed access to the 6.8 exit-union members ----------------------- */
struct kvm_run_memory_fault {
	__u64 flags;
	__u64 gpa;
	__u64 size;
};

/* Byte 32 of struct kvm_run is the start of the exit union in every ABI. */
static inline struct kvm_run_memory_fault *kvm_run_memory_fault(struct kvm_run *run)
{
	return (struct kvm_run_memory_fault *)((char *)run + 32);
}

/* hypercall.flags (6.8) overlays the legacy u32 longmode and its pad @96. */
static inline __u64 *kvm_run_hypercall_flags(struct kvm_run *run)
{
	return (__u64 *)((char *)run + 96);
}

_Static_assert(sizeof(struct kvm_userspace_memory_region2) == 160,
	       "kvm_userspace_memory_region2 is 160 bytes");
_Static_assert(offsetof(struct kvm_userspace_memory_region2, guest_memfd) == 40,
	       "guest_memfd @40");
_Static_assert(sizeof(struct kvm_memory_attributes) == 32, "attributes: 32 bytes");
_Static_assert(sizeof(struct kvm_create_guest_memfd) == 64, "create_guest_memfd: 64 bytes");
_Static_assert(sizeof(struct kvm_run) == 2352, "x86-64 kvm_run is 2352 bytes");

#endif /* GUESTMEM_KVM_H */
