/* SPDX-License-Identifier: MIT */
/*
 * KVM_CHECK_EXTENSION and KVM_ENABLE_CAP (VM scope).
 *
 * Values are those of an x86-64 host with an in-kernel irqchip for the
 * active profile (spec: gmem §2.2, vCPU §2).  Unknown capabilities read 0.
 */
#include <errno.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "kvm_arch.h"
#include "kvm_host.h"
#include "lib/host_cpuid.h"
#include "lib/lockdep.h"

/* The hypercalls KVM_CAP_EXIT_HYPERCALL can forward to user space (x86). */
#define BIT(n) (1ULL << (n))
#define KVM_EXIT_HYPERCALL_VALID_MASK BIT(KVM_HC_MAP_GPA_RANGE)
/* The KVM_SET_GUEST_DEBUG control bits x86 accepts. */
#define KVM_GUESTDBG_VALID_MASK                                                           \
	(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_SW_BP |        \
	 KVM_GUESTDBG_USE_HW_BP | KVM_GUESTDBG_INJECT_DB | KVM_GUESTDBG_INJECT_BP |      \
	 KVM_GUESTDBG_BLOCKIRQ)
/* KVM_CAP_X86_USER_SPACE_MSR's reasons: INVAL | UNKNOWN | FILTER. */
#define KVM_MSR_EXIT_REASON_VALID_MASK                                                    \
	(KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_FILTER)

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
		{ KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE |
						     KVM_DIRTY_LOG_INITIALLY_SET },
		{ KVM_CAP_HALT_POLL, 1 },
		{ KVM_CAP_EXIT_HYPERCALL, KVM_EXIT_HYPERCALL_VALID_MASK },
		{ KVM_CAP_BINARY_STATS_FD, 1 },
		{ KVM_CAP_USER_MEMORY2, 1 },
		{ KVM_CAP_MEMORY_FAULT_INFO, 1 },
		/* x86 state ioctls (src/vcpu/x86.h); the TSC_CONTROL caps below. */
		{ KVM_CAP_SET_GUEST_DEBUG, 1 },
		{ KVM_CAP_MCE, KVM_MAX_MCE_BANKS },
		{ KVM_CAP_DEBUGREGS, 1 },
		{ KVM_CAP_XSAVE, 1 },
		{ KVM_CAP_GET_TSC_KHZ, 1 },
		{ KVM_CAP_VCPU_ATTRIBUTES, 1 },
		{ KVM_CAP_GET_MSR_FEATURES, 1 },
		{ KVM_CAP_EXCEPTION_PAYLOAD, 1 },
		{ KVM_CAP_X86_USER_SPACE_MSR, 1 },
		{ KVM_CAP_X86_MSR_FILTER, 1 },
		{ KVM_CAP_SET_GUEST_DEBUG2, KVM_GUESTDBG_VALID_MASK },
		{ KVM_CAP_SYS_ATTRIBUTES, 1 },
		{ KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1 },
		{ KVM_CAP_COALESCED_PIO, 1 }, /* src/vcpu/coalesced_mmio.c */
		{ KVM_CAP_DISABLE_QUIRKS, 1 },
		{ KVM_CAP_MSR_PLATFORM_INFO, 1 },
		{ KVM_CAP_EXIT_ON_EMULATION_FAILURE, 1 },
		{ KVM_CAP_ENFORCE_PV_FEATURE_CPUID, 1 }, /* vCPU scope: src/vcpu/kvm_pv.c */
		/* KVM_GET/SET_CLOCK (src/vcpu/kvm_pv.c): TSC_STABLE, REALTIME, HOST_TSC. */
		{ KVM_CAP_ADJUST_CLOCK, KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME |
					KVM_CLOCK_HOST_TSC },
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

/*
 * The quirks KVM_CAP_DISABLE_QUIRKS2 offers.  6.8 knows bits 0-6; 6.12 as
 * Debian ships it (and 6.18) also SLOT_ZAP_ALL, STUFF_FEATURE_MSRS,
 * IGNORE_GUEST_PAT and VMCS12_ALLOW_FREEZE_IN_SMM, less IGNORE_GUEST_PAT on
 * an Intel host without self-snoop (the MMU is TDP-like: EPT/NPT on).
 */
#define KVM_X86_QUIRKS_6_8 0x7fULL
#define KVM_X86_QUIRKS_6_12 0x7ffULL

static uint64_t kvm_supported_quirks(const struct gm_config *cfg)
{
	uint32_t r[4];
	uint64_t q;

	if (cfg->profile == GM_PROFILE_LINUX_6_8)
		return KVM_X86_QUIRKS_6_8;
	q = KVM_X86_QUIRKS_6_12;
	gm_host_cpuid(1, 0, r);
	if (gm_kvm_vendor_is_intel() && !(r[3] & (1U << 27))) /* no self-snoop */
		q &= ~(uint64_t)KVM_X86_QUIRK_IGNORE_GUEST_PAT;
	return q;
}

/*
 * The quirks a new VM starts with disabled (6.12 on): those that do not
 * apply to the host's vendor module, CD_NW_CLEARED on Intel and
 * IGNORE_GUEST_PAT on AMD.
 */
static uint64_t kvm_inapplicable_quirks(const struct gm_config *cfg)
{
	if (cfg->profile == GM_PROFILE_LINUX_6_8)
		return 0;
	return gm_kvm_vendor_is_intel() ? KVM_X86_QUIRK_CD_NW_CLEARED
				   : KVM_X86_QUIRK_IGNORE_GUEST_PAT;
}

/* KVM_CAP_X2APIC_API: the flags every profile's kernel knows. */
#define X2APIC_API_VALID_FLAGS (KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK)

/*
 * KVM_CAP_X86_DISABLE_EXITS: PAUSE always; HLT and CSTATE too with
 * kvm.mitigate_smt_rsb off (its default); MWAIT where the host has MWAIT
 * and an always-running APIC timer (kvm_can_mwait_in_guest()).
 */
static uint32_t kvm_disable_exits_supported(void)
{
	uint32_t a, b, c, d, r = KVM_X86_DISABLE_EXITS_PAUSE | KVM_X86_DISABLE_EXITS_HLT |
				    KVM_X86_DISABLE_EXITS_CSTATE;
	bool mwait;

	gm_host_cpuid_regs(1, 0, a, b, c, d);
	mwait = c & (1U << 3);
	gm_host_cpuid_regs(6, 0, a, b, c, d);
	if (mwait && (a & (1U << 2)))
		r |= KVM_X86_DISABLE_EXITS_MWAIT;
	return r;
}

/* KVM_CAP_X86_APIC_BUS_CYCLES_NS: Linux 6.11 and later, 1 ns by default. */
#define APIC_BUS_CYCLE_NS_DEFAULT 1

static bool kvm_has_apic_bus_cycles(const struct gm_config *cfg)
{
	return cfg->profile != GM_PROFILE_LINUX_6_8;
}

void kvm_caps_init_vm(struct kvm *kvm)
{
	kvm->arch.disabled_quirks = kvm_inapplicable_quirks(&kvm->cfg) &
				    kvm_supported_quirks(&kvm->cfg);
	kvm->arch.guest_can_read_msr_platform_info = true;
	kvm->arch.apic_bus_cycle_ns = APIC_BUS_CYCLE_NS_DEFAULT;
	kvm->arch.kvmclock_offset = -kvm_arch_kvmclock_base_ns();
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
	case KVM_CAP_PRE_FAULT_MEMORY: /* Linux 6.10 and later */
		return cfg->profile != GM_PROFILE_LINUX_6_8;
	case KVM_CAP_GUEST_MEMFD_FLAGS:
		return kvm_cap_guest_memfd_flags(cfg, kvm);
	case KVM_CAP_XCRS: /* the host has XSAVE */
		return kvm_arch_has_xsave();
	case KVM_CAP_XSAVE2: /* the uABI XSAVE size, at least struct kvm_xsave */
		return kvm_arch_xsave2_size();
	case KVM_CAP_STEAL_TIME: /* the host keeps run delays (schedstats) */
		return kvm_arch_sched_info_on();
	case KVM_CAP_DISABLE_QUIRKS2:
		return (long)kvm_supported_quirks(cfg);
	case KVM_CAP_X86_APIC_BUS_CYCLES_NS:
		return kvm_has_apic_bus_cycles(cfg) ? APIC_BUS_CYCLE_NS_DEFAULT : 0;
	case KVM_CAP_X2APIC_API:
		return X2APIC_API_VALID_FLAGS;
	case KVM_CAP_TSC_CONTROL: /* the guest TSC can be scaled (src/vcpu/tsc.c) */
	case KVM_CAP_VM_TSC_CONTROL:
		return kvm_arch_has_tsc_control();
	case KVM_CAP_X86_DISABLE_EXITS:
		return kvm_disable_exits_supported();
	case KVM_CAP_DIRTY_LOG_RING: /* x86 has both orderings (TSO) */
	case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
		return kvm_dirty_ring_max_bytes();
	case KVM_CAP_NESTED_STATE:
		/*
		 * The vendor module's largest state, offered even without
		 * nested virtualization (src/vcpu/nested_state.c): the header
		 * and a VMCS12 plus a shadow VMCS12, or a VMCB.
		 */
		return (long)sizeof(struct kvm_nested_state) +
		       (gm_kvm_vendor_is_intel() ? 2 * KVM_STATE_NESTED_VMX_VMCS_SIZE
					    : KVM_STATE_NESTED_SVM_VMCB_SIZE);
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
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (kvm->cfg.profile >= GM_PROFILE_LINUX_6_12 && kvm->bsp_vcpu_id > id)
		r = -EINVAL;
	else if (kvm->max_vcpu_ids == id)
		r = 0;
	else if (kvm->max_vcpu_ids || kvm->created_vcpus)
		r = -EINVAL; /* latched by an earlier set or the first vCPU */
	else
		kvm->max_vcpu_ids = (uint32_t)id;
	gm_mutex_unlock(&kvm->lock);
	return r;
}

/* A VM-wide x86 setting enabled with KVM_ENABLE_CAP, under kvm->lock. */
static void kvm_enable_cap_flag(struct kvm *kvm, bool *flag, uint64_t arg)
{
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	*flag = arg != 0;
	gm_mutex_unlock(&kvm->lock);
}

/* KVM_DIRTY_LOG_INITIALLY_SET only together with MANUAL_PROTECT_ENABLE. */
static int kvm_enable_cap_manual_dirty_log(struct kvm *kvm, uint64_t options)
{
	const uint64_t enable = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	uint64_t allowed = (options & enable) ? enable | KVM_DIRTY_LOG_INITIALLY_SET : enable;

	if (options & ~allowed)
		return -EINVAL;
	WRITE_ONCE(kvm->manual_dirty_log_protect, options);
	return 0;
}

/*
 * KVM_CAP_DISABLE_QUIRKS2 refuses an unknown bit; KVM_CAP_DISABLE_QUIRKS
 * takes anything.  6.8 replaces the disabled set with the argument as
 * given; 6.12 on adds the supported bits of it (a quirk cannot come back).
 */
static int kvm_enable_cap_disable_quirks(struct kvm *kvm, uint64_t quirks, bool v2)
{
	uint64_t supported = kvm_supported_quirks(&kvm->cfg), cur;

	if (v2 && (quirks & ~supported))
		return -EINVAL;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	cur = kvm->arch.disabled_quirks;
	if (kvm->cfg.profile == GM_PROFILE_LINUX_6_8)
		cur = quirks;
	else
		cur |= quirks & supported;
	__atomic_store_n(&kvm->arch.disabled_quirks, cur, __ATOMIC_RELAXED);
	gm_mutex_unlock(&kvm->lock);
	return 0;
}

/*
 * KVM_CAP_X86_APIC_BUS_CYCLES_NS: a period that cannot overflow the
 * longest timer count (U32_MAX counts, divide by 128), then an in-kernel
 * LAPIC (ENXIO), then no vCPU yet (EINVAL).
 */
static int kvm_enable_cap_apic_bus_cycles(struct kvm *kvm, uint64_t ns)
{
	int r = 0;

	if (!kvm_has_apic_bus_cycles(&kvm->cfg))
		return -EINVAL; /* unknown to 6.8 */
	if (!ns || ns > UINT64_MAX / (0xffffffffULL * 128))
		return -EINVAL;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (!kvm_arch_irqchip_in_kernel(kvm))
		r = -ENXIO;
	else if (kvm->created_vcpus)
		r = -EINVAL;
	else
		kvm->arch.apic_bus_cycle_ns = ns;
	gm_mutex_unlock(&kvm->lock);
	return r;
}

int kvm_vm_enable_cap(struct kvm *kvm, uint32_t cap, uint32_t flags, const uint64_t args[4])
{
	/* A generic cap that never looks at the flags (src/core/dirty_ring.c). */
	if (cap == KVM_CAP_DIRTY_LOG_RING || cap == KVM_CAP_DIRTY_LOG_RING_ACQ_REL)
		return kvm_vm_enable_dirty_log_ring(kvm, args[0]);
	if (flags)
		return -EINVAL;
	switch (cap) {
	case KVM_CAP_DISABLE_QUIRKS2:
	case KVM_CAP_DISABLE_QUIRKS:
		return kvm_enable_cap_disable_quirks(kvm, args[0], cap == KVM_CAP_DISABLE_QUIRKS2);
	case KVM_CAP_MSR_PLATFORM_INFO:
		kvm_enable_cap_flag(kvm, &kvm->arch.guest_can_read_msr_platform_info, args[0]);
		return 0;
	case KVM_CAP_EXIT_ON_EMULATION_FAILURE:
		if (args[0] & ~1ULL)
			return -EINVAL;
		kvm_enable_cap_flag(kvm, &kvm->arch.exit_on_emulation_error, args[0]);
		return 0;
	case KVM_CAP_X86_APIC_BUS_CYCLES_NS:
		return kvm_enable_cap_apic_bus_cycles(kvm, args[0]);
	case KVM_CAP_X86_DISABLE_EXITS: /* bits add up; MWAIT only where offered */
		if (args[0] & ~(uint64_t)KVM_X86_DISABLE_VALID_EXITS)
			return -EINVAL;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		kvm->arch.disabled_exits |= (uint32_t)args[0] & kvm_disable_exits_supported();
		gm_mutex_unlock(&kvm->lock);
		return 0;
	case KVM_CAP_X2APIC_API: /* flags add up; none can be taken back */
		if (args[0] & ~(uint64_t)X2APIC_API_VALID_FLAGS)
			return -EINVAL;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		if (args[0] & KVM_X2APIC_API_USE_32BIT_IDS)
			WRITE_ONCE(kvm->arch.x2apic_format, true);
		if (args[0] & KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK)
			WRITE_ONCE(kvm->arch.x2apic_broadcast_quirk_disabled, true);
		gm_mutex_unlock(&kvm->lock);
		return 0;
	case KVM_CAP_EXCEPTION_PAYLOAD:
		kvm_enable_cap_flag(kvm, &kvm->arch.exception_payload_enabled, args[0]);
		return 0;
	case KVM_CAP_X86_TRIPLE_FAULT_EVENT:
		kvm_enable_cap_flag(kvm, &kvm->arch.triple_fault_event, args[0]);
		return 0;
	case KVM_CAP_X86_USER_SPACE_MSR:
		if (args[0] & ~KVM_MSR_EXIT_REASON_VALID_MASK)
			return -EINVAL;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		kvm->arch.user_space_msr_mask = (uint32_t)args[0];
		gm_mutex_unlock(&kvm->lock);
		return 0;
	case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
		return kvm_enable_cap_manual_dirty_log(kvm, args[0]);
	case KVM_CAP_EXIT_HYPERCALL: /* a subset of the forwardable hypercalls */
		if (args[0] & ~KVM_EXIT_HYPERCALL_VALID_MASK)
			return -EINVAL;
		gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
		WRITE_ONCE(kvm->exit_hypercall_mask, args[0]);
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
