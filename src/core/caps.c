/* SPDX-License-Identifier: MIT */
/*
 * KVM_CHECK_EXTENSION and KVM_ENABLE_CAP (VM scope).
 *
 * Values are those of an x86-64 host with an in-kernel irqchip for the
 * active profile (spec: gmem §2.2, vCPU §2).  Unknown capabilities read 0.
 * KVM_CAP_BINARY_STATS_FD reads 0: guestmem has no binary stats fds, and
 * advertising it would make VMMs call KVM_GET_STATS_FD.
 */
#include <errno.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "kvm_arch.h"
#include "kvm_host.h"
#include "lib/lockdep.h"

/* The hypercalls KVM_CAP_EXIT_HYPERCALL can forward to user space (x86). */
#define BIT(n) (1ULL << (n))
#define KVM_EXIT_HYPERCALL_VALID_MASK BIT(KVM_HC_MAP_GPA_RANGE)

/* Capabilities whose value depends neither on the VM nor on the profile. */
static long kvm_cap_fixed(long cap, bool *known)
{
	static const struct { int cap; long val; } table[] = {
		{ KVM_CAP_IRQCHIP, 1 },
		{ KVM_CAP_HLT, 1 },
		{ KVM_CAP_USER_MEMORY, 1 },
		{ KVM_CAP_SET_TSS_ADDR, 1 },
		{ KVM_CAP_NR_MEMSLOTS, KVM_USER_MEM_SLOTS },
		{ KVM_CAP_PIT, 1 },
		{ KVM_CAP_MP_STATE, 1 },
		{ KVM_CAP_COALESCED_MMIO, 2 }, /* the page offset in the vCPU mmap */
		{ KVM_CAP_SYNC_MMU, 1 },
		{ KVM_CAP_USER_NMI, 1 },
		{ KVM_CAP_IRQ_ROUTING, 4096 }, /* KVM_MAX_IRQ_ROUTES */
		{ KVM_CAP_IRQ_INJECT_STATUS, 1 },
		{ KVM_CAP_IRQFD, 1 },
		{ KVM_CAP_PIT2, 1 },
		{ KVM_CAP_SET_BOOT_CPU_ID, 1 },
		{ KVM_CAP_PIT_STATE2, 1 },
		{ KVM_CAP_IOEVENTFD, 1 },
		{ KVM_CAP_SET_IDENTITY_MAP_ADDR, 1 },
		{ KVM_CAP_INTERNAL_ERROR_DATA, 1 },
		{ KVM_CAP_VCPU_EVENTS, 1 },
		{ KVM_CAP_MAX_VCPUS, KVM_MAX_VCPUS },
		{ KVM_CAP_SYNC_REGS, KVM_SYNC_X86_VALID_FIELDS },
		{ KVM_CAP_SIGNAL_MSI, 1 },
		{ KVM_CAP_READONLY_MEM, 1 },
		{ KVM_CAP_IRQFD_RESAMPLE, 1 },
		{ KVM_CAP_DEVICE_CTRL, 1 },
		{ KVM_CAP_ENABLE_CAP_VM, 1 },
		{ KVM_CAP_IOEVENTFD_NO_LENGTH, 1 },
		{ KVM_CAP_CHECK_EXTENSION_VM, 1 },
		{ KVM_CAP_SPLIT_IRQCHIP, 1 },
		{ KVM_CAP_IOEVENTFD_ANY_LENGTH, 1 },
		{ KVM_CAP_MAX_VCPU_ID, KVM_MAX_VCPU_IDS },
		{ KVM_CAP_IMMEDIATE_EXIT, 1 },
		{ KVM_CAP_HALT_POLL, 1 },
		{ KVM_CAP_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_VALID_MASK },
		{ KVM_CAP_USER_MEMORY2, 1 },
		{ KVM_CAP_MEMORY_FAULT_INFO, 1 },
	};

	for (size_t i = 0; i < ARRAY_SIZE(table); i++) {
		if (table[i].cap == cap) {
			*known = true;
			return table[i].val;
		}
	}
	*known = false;
	return 0;
}

static long kvm_cap_nr_vcpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : (n > KVM_MAX_VCPUS ? KVM_MAX_VCPUS : n);
}

/* KVM_CAP_MULTI_ADDRESS_SPACE: only compiled in with SMM. */
static long kvm_cap_multi_as(const struct gm_config *cfg, struct kvm *kvm)
{
	if (!cfg->smm)
		return 0;
	return kvm ? kvm->nr_as : KVM_MAX_NR_ADDRESS_SPACES;
}

static long kvm_cap_guest_memfd(const struct gm_config *cfg, struct kvm *kvm)
{
	if (!gm_cfg_private_mem(cfg))
		return 0;
	if (cfg->profile == GM_PROFILE_LINUX_6_18 || !kvm)
		return 1;
	return kvm_arch_has_private_mem(kvm);
}

static long kvm_cap_guest_memfd_flags(const struct gm_config *cfg, struct kvm *kvm)
{
	const long mmap = GUEST_MEMFD_FLAG_MMAP, init_shared = GUEST_MEMFD_FLAG_INIT_SHARED;

	if (cfg->profile != GM_PROFILE_LINUX_6_18)
		return 0;
	/* INIT_SHARED only for VMs without private memory. */
	if (kvm && kvm_arch_has_private_mem(kvm))
		return mmap;
	return mmap | init_shared;
}

long kvm_check_extension(const struct gm_config *cfg, struct kvm *kvm, long cap)
{
	bool known;
	long v = kvm_cap_fixed(cap, &known);

	if (kvm)
		cfg = &kvm->cfg;
	if (known)
		return v;
	switch (cap) {
	case KVM_CAP_NR_VCPUS:
		return kvm_cap_nr_vcpus();
	case KVM_CAP_X86_SMM:
		return cfg->smm;
	case KVM_CAP_MULTI_ADDRESS_SPACE:
		return kvm_cap_multi_as(cfg, kvm);
	case KVM_CAP_MEMORY_ATTRIBUTES:
		if (!gm_cfg_mem_attributes(cfg))
			return 0;
		return (!kvm || kvm_arch_has_private_mem(kvm)) ? (long)KVM_MEMORY_ATTRIBUTE_PRIVATE : 0;
	case KVM_CAP_GUEST_MEMFD:
		return kvm_cap_guest_memfd(cfg, kvm);
	case KVM_CAP_VM_TYPES:
		return BIT(KVM_X86_DEFAULT_VM) |
		       (cfg->sw_protected_vm ? BIT(KVM_X86_SW_PROTECTED_VM) : 0);
	case KVM_CAP_GUEST_MEMFD_FLAGS:
		return kvm_cap_guest_memfd_flags(cfg, kvm);
	default:
		return 0;
	}
}

static int kvm_enable_cap_max_vcpu_id(struct kvm *kvm, uint64_t id)
{
	int r = 0;

	if (id > KVM_MAX_VCPU_IDS)
		return -EINVAL;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (kvm->max_vcpu_ids == id)
		r = 0;
	else if (kvm->max_vcpu_ids || kvm->created_vcpus)
		r = -EINVAL; /* latched by an earlier set or the first vCPU */
	else
		kvm->max_vcpu_ids = (uint32_t)id;
	gm_mutex_unlock(&kvm->lock);
	return r;
}

int kvm_vm_enable_cap(struct kvm *kvm, uint32_t cap, uint32_t flags, const uint64_t args[4])
{
	if (flags)
		return -EINVAL;
	switch (cap) {
	case KVM_CAP_EXIT_HYPERCALL: /* a subset of the forwardable hypercalls */
		if (args[0] & ~KVM_EXIT_HYPERCALL_VALID_MASK)
			return -EINVAL;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		kvm->exit_hypercall_mask = args[0];
		gm_mutex_unlock(&kvm->lock);
		return 0;
	case KVM_CAP_MAX_VCPU_ID:
		return kvm_enable_cap_max_vcpu_id(kvm, args[0]);
	case KVM_CAP_SPLIT_IRQCHIP: /* src/vcpu/irqchip.c */
		return kvm_arch_enable_split_irqchip(kvm, args[0]);
	default:
		return -EINVAL;
	}
}
