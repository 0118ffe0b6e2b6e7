/* SPDX-License-Identifier: MIT */
/*
 * KVM_CHECK_EXTENSION and KVM_ENABLE_CAP (VM scope).
 *
 * Values are those of an x86-64 host with an in-kernel irqchip for the
 * active profile (spec: gmem §2.2, vCPU §2).  Unknown capabilities read 0.
 */
#include <errno.h>
#include <unistd.h>

#include "kvm_host.h"

/* Capabilities whose value depends neither on the VM nor on the profile. */
static long kvm_cap_fixed(long cap, bool *known)
{
	static const struct { int cap; long val; } table[] = {
		{ 0, 1 },     /* IRQCHIP */	      { 1, 1 },	   /* HLT */
		{ 3, 1 },     /* USER_MEMORY */	      { 4, 1 },	   /* SET_TSS_ADDR */
		{ 10, KVM_USER_MEM_SLOTS },	      { 11, 1 },   /* PIT */
		{ 14, 1 },    /* MP_STATE */	      { 15, 2 },   /* COALESCED_MMIO page */
		{ 16, 1 },    /* SYNC_MMU */	      { 22, 1 },   /* USER_NMI */
		{ 25, 4096 }, /* IRQ_ROUTING */	      { 26, 1 },   /* IRQ_INJECT_STATUS */
		{ 32, 1 },    /* IRQFD */	      { 33, 1 },   /* PIT2 */
		{ 34, 1 },    /* SET_BOOT_CPU_ID */   { 35, 1 },   /* PIT_STATE2 */
		{ 36, 1 },    /* IOEVENTFD */	      { 37, 1 },   /* SET_IDENTITY_MAP_ADDR */
		{ 40, 1 },    /* INTERNAL_ERROR_DATA */ { 41, 1 }, /* VCPU_EVENTS */
		{ 66, KVM_MAX_VCPUS },		      { 74, 7 },   /* SYNC_REGS */
		{ 77, 1 },    /* SIGNAL_MSI */	      { 81, 1 },   /* READONLY_MEM */
		{ 82, 1 },    /* IRQFD_RESAMPLE */    { 89, 1 },   /* DEVICE_CTRL */
		{ 98, 1 },    /* ENABLE_CAP_VM */     { 100, 1 },  /* IOEVENTFD_NO_LENGTH */
		{ 105, 1 },   /* CHECK_EXTENSION_VM */ { 121, 1 }, /* SPLIT_IRQCHIP */
		{ 122, 1 },   /* IOEVENTFD_ANY_LENGTH */
		{ 128, KVM_MAX_VCPU_IDS },	      { 136, 1 },  /* IMMEDIATE_EXIT */
		{ 168, 3 },   /* MANUAL_DIRTY_LOG_PROTECT2: ENABLE | INITIALLY_SET */
		{ 182, 1 },   /* HALT_POLL */	      { 201, 1L << 12 }, /* EXIT_HYPERCALL */
		{ 203, 1 },   /* BINARY_STATS_FD */
		{ 231, 1 },   /* USER_MEMORY2 */      { 232, 1 },  /* MEMORY_FAULT_INFO */
		/* x86 state ioctls (src/vcpu/x86.h); TSC_CONTROL (60) and
		 * VM_TSC_CONTROL (214) stay 0: no TSC scaling (tsc.c). */
		{ 23, 1 },    /* SET_GUEST_DEBUG */   { 31, 32 },  /* MCE: KVM_MAX_MCE_BANKS */
		{ 50, 1 },    /* DEBUGREGS */	      { 55, 1 },   /* XSAVE */
		{ 61, 1 },    /* GET_TSC_KHZ */	      { 127, 1 },  /* VCPU_ATTRIBUTES */
		{ 153, 1 },   /* GET_MSR_FEATURES */  { 164, 1 },  /* EXCEPTION_PAYLOAD */
		{ 188, 1 },   /* X86_USER_SPACE_MSR */ { 189, 1 }, /* X86_MSR_FILTER */
		{ 195, 0x1f0003 }, /* SET_GUEST_DEBUG2: KVM_GUESTDBG_VALID_MASK */
		{ 209, 1 },   /* SYS_ATTRIBUTES */    { 218, 1 },  /* X86_TRIPLE_FAULT_EVENT */
		{ 162, 1 },   /* COALESCED_PIO: src/vcpu/coalesced_mmio.c */
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
	const long mmap = 1, init_shared = 2;

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
	case 9: /* NR_VCPUS */
		return kvm_cap_nr_vcpus();
	case 117: /* X86_SMM */
		return cfg->smm;
	case 118:
		return kvm_cap_multi_as(cfg, kvm);
	case 233: /* MEMORY_ATTRIBUTES */
		if (!gm_cfg_mem_attributes(cfg))
			return 0;
		return (!kvm || kvm_arch_has_private_mem(kvm)) ? (long)(1ULL << 3) : 0;
	case 234:
		return kvm_cap_guest_memfd(cfg, kvm);
	case 235: /* VM_TYPES */
		return 1 | (cfg->sw_protected_vm ? 2 : 0);
	case 236: /* PRE_FAULT_MEMORY: Linux 6.10 and later */
		return cfg->profile != GM_PROFILE_LINUX_6_8;
	case 244:
		return kvm_cap_guest_memfd_flags(cfg, kvm);
	case 56: /* XCRS: the host has XSAVE */
		return kvm_arch_has_xsave();
	case 208: /* XSAVE2: the uABI XSAVE size, at least struct kvm_xsave */
		return kvm_arch_xsave2_size();
	default:
		return 0;
	}
}

/*
 * KVM_CAP_MAX_VCPU_ID.  From 6.12 on (not in 6.8) a limit that would leave
 * the boot vCPU's id (KVM_SET_BOOT_CPU_ID) out of range is refused first.
 */
static int kvm_enable_cap_max_vcpu_id(struct kvm *kvm, uint64_t id)
{
	int r = 0;

	if (id > KVM_MAX_VCPU_IDS)
		return -EINVAL;
	gm_check_pthread(pthread_mutex_lock(&kvm->lock));
	if (kvm->cfg.profile >= GM_PROFILE_LINUX_6_12 && kvm->bsp_vcpu_id > id)
		r = -EINVAL;
	else if (kvm->max_vcpu_ids == id)
		r = 0;
	else if (kvm->max_vcpu_ids || kvm->created_vcpus)
		r = -EINVAL; /* latched by an earlier set or the first vCPU */
	else
		kvm->max_vcpu_ids = (uint32_t)id;
	gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
	return r;
}

/* A VM-wide x86 setting enabled with KVM_ENABLE_CAP, under kvm->lock. */
static void kvm_enable_cap_flag(struct kvm *kvm, bool *flag, uint64_t arg)
{
	gm_check_pthread(pthread_mutex_lock(&kvm->lock));
	*flag = arg != 0;
	gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
}

/* KVM_DIRTY_LOG_INITIALLY_SET only together with MANUAL_PROTECT_ENABLE. */
static int kvm_enable_cap_manual_dirty_log(struct kvm *kvm, uint64_t options)
{
	const uint64_t enable = 1, initially_set = 2;
	uint64_t allowed = (options & enable) ? enable | initially_set : enable;

	if (options & ~allowed)
		return -EINVAL;
	WRITE_ONCE(kvm->manual_dirty_log_protect, options);
	return 0;
}

int kvm_vm_enable_cap(struct kvm *kvm, uint32_t cap, uint32_t flags, const uint64_t args[4])
{
	if (flags)
		return -EINVAL;
	switch (cap) {
	case 164: /* EXCEPTION_PAYLOAD */
		kvm_enable_cap_flag(kvm, &kvm->arch.exception_payload_enabled, args[0]);
		return 0;
	case 218: /* X86_TRIPLE_FAULT_EVENT */
		kvm_enable_cap_flag(kvm, &kvm->arch.triple_fault_event, args[0]);
		return 0;
	case 188: /* X86_USER_SPACE_MSR: INVAL | UNKNOWN | FILTER */
		if (args[0] & ~7ULL)
			return -EINVAL;
		gm_check_pthread(pthread_mutex_lock(&kvm->lock));
		kvm->arch.user_space_msr_mask = (uint32_t)args[0];
		gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
		return 0;
	case 168: /* MANUAL_DIRTY_LOG_PROTECT2 */
		return kvm_enable_cap_manual_dirty_log(kvm, args[0]);
	case 201: /* EXIT_HYPERCALL: a subset of the forwardable hypercalls */
		if (args[0] & ~(1ULL << 12))
			return -EINVAL;
		gm_check_pthread(pthread_mutex_lock(&kvm->lock));
		kvm->exit_hypercall_mask = args[0];
		gm_check_pthread(pthread_mutex_unlock(&kvm->lock));
		return 0;
	case 128: /* MAX_VCPU_ID */
		return kvm_enable_cap_max_vcpu_id(kvm, args[0]);
	case 121: /* SPLIT_IRQCHIP: src/vcpu/irqchip.c */
		return kvm_vm_enable_split_irqchip(kvm, args[0]);
	default:
		return -EINVAL;
	}
}
