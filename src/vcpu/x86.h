/* SPDX-License-Identifier: MIT */
/*
 * x86 architectural state of a vCPU that the VMM reads and writes through
 * ioctls (issue 9): TSC frequency and offset, machine-check banks, debug
 * registers and KVM_SET_GUEST_DEBUG, pending events, the XSAVE area, the
 * LAPIC register page, and the MSRs guestmem models.  Checks and errno are
 * Linux 6.12's (arch/x86/kvm/x86.c); where a profile differs, it says so.
 *
 * There is no instruction set behind most of this yet: an execution
 * backend will consume it (single-step, injected events, the TSC offset).
 * Until then the state is validated and kept exactly as KVM keeps it, so
 * that save/restore round-trips and the VMM sees KVM's answers.
 *
 * Context of every vCPU function here: vcpu->mutex held (the guest is not
 * running), unless it says otherwise.
 */
#ifndef GM_VCPU_X86_H
#define GM_VCPU_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <guestmem/kvm.h>

#include "core/kvm_host.h" /* KVM_MAX_MCE_BANKS */

struct kvm;
struct kvm_vcpu;

#define KVM_MCG_CTL_P (1ULL << 8)
#define KVM_MCG_SER_P (1ULL << 24)
#define KVM_MCG_CMCI_P (1ULL << 10)
#define KVM_NR_DB_REGS 4
#define KVM_LAPIC_REGS_SIZE 0x400
#define KVM_XSAVE_UABI_SIZE 4096 /* sizeof(struct kvm_xsave): no AMX here */
#define KVM_MIN_ALLOC_MMU_PAGES 64

/* The architectural events of KVM_GET/SET_VCPU_EVENTS, decoded. */
struct kvm_x86_events {
	struct {
		bool injected, pending, has_error_code, has_payload;
		uint8_t nr;
		uint32_t error_code;
		uint64_t payload;
	} exception;
	struct {
		bool injected, soft;
		uint8_t nr, shadow;
	} interrupt;
	struct {
		bool injected, masked;
		uint8_t pending; /* queued NMIs, at most 2 (process_nmi) */
	} nmi;
	struct {
		bool smm, pending, smm_inside_nmi, latched_init;
	} smi;
	uint8_t sipi_vector;
	bool triple_fault_pending;
};

/* One MSR value the VMM or guest wrote (msr.c). */
struct kvm_x86_msr_val {
	uint32_t index;
	uint64_t data;
};

struct kvm_vcpu_arch {
	/* TSC: guest TSC = host TSC scaled by tsc_ratio + tsc_offset (tsc.c). */
	uint32_t virtual_tsc_khz;
	uint64_t tsc_ratio; /* fixed point, kvm_tsc_ratio_frac_bits(); under vcpu->mutex */
	int64_t tsc_offset;
	uint64_t tsc_adjust;

	/* Machine check (x86_state.c, msr.c). */
	uint64_t mcg_cap, mcg_status, mcg_ctl;
	uint64_t mce_banks[KVM_MAX_MCE_BANKS * 4]; /* CTL, STATUS, ADDR, MISC */
	uint64_t mci_ctl2_banks[KVM_MAX_MCE_BANKS];

	/* Debug registers and host-side debugging (x86_state.c). */
	uint64_t db[KVM_NR_DB_REGS];
	uint64_t dr6, dr7;
	uint32_t guest_debug; /* KVM_SET_GUEST_DEBUG control, 0 unless ENABLE */
	uint64_t guest_debug_db[KVM_NR_DB_REGS + 4]; /* debugreg[0..7] with USE_HW_BP */
	uint64_t singlestep_rip; /* linear RIP where SINGLESTEP was armed (regs.c) */

	struct kvm_x86_events ev;
	/*
	 * An SMI asked for from outside the vCPU (an IPI with delivery mode
	 * SMI, KVM_SMI): KVM's KVM_REQ_SMI.  Set with a release store by any
	 * thread; taken into ev.smi.pending by the vCPU (exchange, acquire),
	 * at entry and before KVM_GET_VCPU_EVENTS (kvm_vcpu_process_smi()).
	 */
	bool smi_request;
	/* MSR_IA32_SMBASE (KVM's vcpu->arch.smbase), 0x30000 at reset; vcpu->mutex. */
	uint32_t smbase;
	/* NMIs asked for from outside (KVM_NMI, an NMI IPI): KVM's nmi_queued,
	 * added with a release increment by any thread, folded into
	 * ev.nmi.pending by the vCPU (kvm_vcpu_process_nmi()). */
	uint32_t nmi_queued;
	/* KVM_INTERRUPT with a split irqchip: the user-space PIC's ExtINT,
	 * taken through LINT0 (KVM's pending_external_vector).  vcpu->mutex. */
	bool has_extint;
	uint8_t extint_vector;

	/* XSAVE area in the uABI (standard) format, KVM_XSAVE_UABI_SIZE bytes. */
	uint8_t *xsave;

	/* The LAPIC register page (lapic_state.c); only with an in-kernel LAPIC. */
	uint8_t *lapic_regs;
	/*
	 * SPIV's APIC-software-enable bit, mirrored for the threads that
	 * deliver interrupts (which do not read the page): written by the
	 * page's writers (vCPU context), READ_ONCE by kvm_irq_delivery_to_apic.
	 */
	bool lapic_sw_enabled;
	bool lapic_x2apic; /* apic_base's x2APIC mode, mirrored the same way */
	uint64_t lapic_timer_start_ns; /* CLOCK_MONOTONIC when the count started */
	uint64_t lapic_timer_first_ns; /* length of the first period, 0: stopped */

	bool cpuid_set; /* KVM_SET_CPUID2 happened: guest CR4 reserved bits apply */

	/* MSRs without a dedicated field (msr.c). */
	struct kvm_x86_msr_val *msrs;
	uint32_t nr_msrs;

	/* Paravirtual features and steal time (kvm_pv.c), vcpu->mutex. */
	bool pv_enforce;	/* KVM_CAP_ENFORCE_PV_FEATURE_CPUID */
	uint32_t pv_features;	/* KVM leaf EAX at the last CPUID update */
	uint64_t st_msr;	/* MSR_KVM_STEAL_TIME */
	uint64_t st_last_steal; /* run_delay at the last record */
	uint64_t pv_time;	/* MSR_KVM_SYSTEM_TIME(_NEW), the last written */
	uint32_t pv_time_version; /* of the pvclock record we write */
	/*
	 * What the record was last written from (kvm_vcpu_update_pvclock()):
	 * it is written again only when one of these changed, the MSR was
	 * written (pv_time_stale) or a second has passed, as KVM writes it on
	 * KVM_REQ_CLOCK_UPDATE and its periodic sync, not at every entry.
	 */
	bool pv_time_stale;
	uint64_t pv_time_hz, pv_time_at_ns;
	int64_t pv_time_tsc_offset, pv_time_clock_offset;
};

/* ---- host facts (cpuid.c, tsc.c) -------------------------------------- */

/* The host TSC frequency in kHz (once per process; see tsc.c). */
uint32_t kvm_host_tsc_khz(void);
/* XCR0 bits a guest may enable: the host's XCR0 within KVM's set. */
uint64_t kvm_supported_xcr0(void);
/* Offset and size of XSAVE component @i in the standard format (0: none). */
void kvm_xstate_component(int i, uint32_t *offset, uint32_t *size);
/* Standard-format size needed for @xcr0 (KVM's xstate_required_size). */
uint32_t kvm_xstate_required_size(uint64_t xcr0);
/* MXCSR bits the host accepts (FXSAVE's MXCSR_MASK). */
uint32_t kvm_mxcsr_feature_mask(void);
/* The CPU model (KVM_GET_SUPPORTED_CPUID) has this bit; @reg 0 eax .. 3 edx. */
bool kvm_cpu_cap_has(uint32_t fn, uint32_t idx, int reg, int bit);
/* EFER bits no guest may set on this host (msr.c). */
uint64_t kvm_efer_reserved_bits(void);

/* ---- vCPU lifetime (x86_state.c) ---------------------------------------- */

/* Architectural reset values; -ENOMEM.  Context: vCPU creation. */
int kvm_vcpu_arch_init(struct kvm_vcpu *v);
void kvm_vcpu_arch_free(struct kvm_vcpu *v);

/* ---- TSC (tsc.c) ---------------------------------------------------------- */

/* vCPU creation: ratio 1.0, then the VM's default rate. */
void kvm_vcpu_tsc_init(struct kvm_vcpu *v);
/* vCPU KVM_SET_TSC_KHZ (0: the host's): 0 or -EINVAL, as 6.12. */
int kvm_vcpu_set_tsc_khz(struct kvm_vcpu *v, uint32_t khz);
/* VM KVM_SET_TSC_KHZ / KVM_GET_TSC_KHZ.  Context: any. */
int kvm_vm_set_tsc_khz(struct kvm *kvm, uint32_t khz);
uint32_t kvm_vm_get_tsc_khz(struct kvm *kvm);
/* The rate the guest's TSC ticks at (pvclock's scale), in kHz. */
uint32_t kvm_vcpu_tsc_rate_khz(const struct kvm_vcpu *v);
/* The guest's TSC now, and setting it (MSR_IA32_TSC, vCPU creation). */
uint64_t kvm_vcpu_read_tsc(struct kvm_vcpu *v);
void kvm_vcpu_write_tsc(struct kvm_vcpu *v, uint64_t tsc, bool from_user);
/* The guest's WRMSR of TSC / TSC_ADJUST (each moves the other). */
void kvm_vcpu_guest_write_tsc(struct kvm_vcpu *v, uint64_t tsc);
void kvm_vcpu_guest_write_tsc_adjust(struct kvm_vcpu *v, uint64_t val);
/* KVM_VCPU_TSC_OFFSET: the VMM sets the offset (a synchronising write). */
void kvm_vcpu_set_tsc_offset(struct kvm_vcpu *v, int64_t offset);

/* ---- state ioctls (x86_state.c) ---------------------------------------- */

int kvm_vcpu_x86_setup_mce(struct kvm_vcpu *v, uint64_t mcg_cap);
void kvm_vcpu_get_events(struct kvm_vcpu *v, struct kvm_vcpu_events *e);
/* @e is modified as KVM modifies its copy (payload rules). */
int kvm_vcpu_set_events(struct kvm_vcpu *v, struct kvm_vcpu_events *e);
void kvm_vcpu_get_debugregs(struct kvm_vcpu *v, struct kvm_debugregs *d);
int kvm_vcpu_set_debugregs(struct kvm_vcpu *v, const struct kvm_debugregs *d);
/* KVM_SET_XCRS: XCR0 only, checked as XSETBV is; -EINVAL as 6.12. */
int kvm_vcpu_set_xcrs(struct kvm_vcpu *v, const struct kvm_xcrs *x);
int kvm_vcpu_set_guest_debug(struct kvm_vcpu *v, const struct kvm_guest_debug *dbg);
/* RIP as a linear address: CS base added outside 64-bit mode (regs.c). */
uint64_t kvm_get_linear_rip(struct kvm_vcpu *v);
/* RFLAGS without the TF KVM_GUESTDBG_SINGLESTEP adds, and setting it with
 * that TF kept while RIP is at singlestep_rip (regs.c). */
uint64_t kvm_get_rflags(struct kvm_vcpu *v);
void kvm_set_rflags(struct kvm_vcpu *v, uint64_t rflags);
/* The XSAVE area as KVM_GET_XSAVE2 writes it: KVM_XSAVE_UABI_SIZE bytes. */
void kvm_vcpu_get_xsave(struct kvm_vcpu *v, void *buf);
int kvm_vcpu_set_xsave(struct kvm_vcpu *v, const void *buf);
/* KVM_GET/SET_FPU: the legacy region of the same XSAVE area. */
void kvm_vcpu_get_fpu(struct kvm_vcpu *v, struct kvm_fpu *fpu);
void kvm_vcpu_set_fpu(struct kvm_vcpu *v, const struct kvm_fpu *fpu);

/* ---- LAPIC state (lapic_state.c) --------------------------------------- */

/* Power-on register page.  Context: vCPU creation. */
void kvm_lapic_reset(struct kvm_vcpu *v);
/* A C guest's APIC setup: software-enable it as a guest kernel does. */
void kvm_lapic_guest_enable(struct kvm_vcpu *v);
/* -EINVAL without an in-kernel LAPIC. */
int kvm_vcpu_get_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s);
int kvm_vcpu_set_lapic(struct kvm_vcpu *v, struct kvm_lapic_state *s);
/*
 * The guest's own LAPIC accesses, handled inside "the kernel" as lapic.c
 * does.  Context: the vCPU's thread under vcpu->mutex (KVM_RUN, or
 * KVM_GET/SET_MSRS for the x2APIC MSRs).
 *  - kvm_lapic_mmio: an access to the xAPIC page at APIC_BASE; false if
 *    the address is not the LAPIC's (it goes to the VMM as MMIO).  Reads
 *    fill @data.
 *  - kvm_x2apic_msr: MSR 0x800-0x8ff; 0, or 1 for #GP.
 *  - kvm_lapic_set_base: APIC_BASE changed from @old (the ID and LDR
 *    follow the mode).
 */
bool kvm_lapic_mmio(struct kvm_vcpu *v, uint64_t gpa, unsigned len, bool write, uint8_t *data);
int kvm_x2apic_msr(struct kvm_vcpu *v, uint32_t index, bool write, uint64_t *data);
void kvm_lapic_set_base(struct kvm_vcpu *v, uint64_t old);
/*
 * The one-shot/periodic timer's expiry, looked for at each guest entry and
 * while halted (no timer thread: a guest that computes without trapping
 * takes the interrupt at its next exit).  Raises LVTT's vector unless
 * masked.  Context: the vCPU's thread under vcpu->mutex.
 */
void kvm_lapic_timer_check(struct kvm_vcpu *v);

/* ---- guest memory from the VMM side, KVM_TRANSLATE (x86_walk.c) --------------- */

struct x86_walk_result;
struct kvm_page_fault;
/*
 * The host address of @gpa for a vCPU's @write access through stage-2,
 * resolving misses with the vCPU's fault path (private/shared routing,
 * retries).  Returns KVM_PF_FIXED with *@host (valid inside the caller's
 * RCU read-side section), KVM_PF_EMULATE (MMIO), or KVM_PF_EXIT with *@f.
 * Context: vcpu->mutex (the fault uses vcpu->last_used_slot); called and
 * returns inside gm_rcu_read_lock(), dropped around a fault.
 */
int kvm_vcpu_gpa_host(struct kvm_vcpu *v, uint64_t gpa, bool write, uint8_t **host,
		      struct kvm_page_fault *f);
/*
 * kvm_vcpu_gpa_host()'s answer for private memory the guest process holds
 * alone (kvm->private_held): no host address; *@f is filled as for a
 * KVM_PF_EXIT with -EFAULT, which is what an access KVM's own software
 * makes there gets.  The CPU's own accesses use kvm_x86_held_rw().
 */
#define X86_GPA_HELD 64
/*
 * The CPU's own accesses to held private memory, which KVM leaves to the
 * hardware and the hardware makes through stage-2: page-table walks
 * (entries read, A/D bits set) and event delivery (descriptor tables,
 * the frame on the stack).  Made by the guest process, the only one that
 * maps that memory, while mmu_lock is held for read over a present
 * private leaf, so no invalidation can free the page meanwhile.  @len
 * bytes within one page.  Returns KVM_PF_FIXED (done), KVM_PF_EMULATE
 * (no memslot), KVM_PF_EXIT with *@f (the fault's error, -EIO if the
 * guest process is gone), or KVM_PF_RETRY: the page is not held private
 * any more, the caller's usual path applies.
 * Context: vcpu->mutex, no RCU section.
 */
int kvm_x86_held_rw(struct kvm_vcpu *v, uint64_t gpa, void *buf, unsigned len, bool write,
		    struct kvm_page_fault *f);
/* The same for a compare-exchange of the @size-byte (4 or 8) entry at
 * @gpa; *@swapped: whether it held @old. */
int kvm_x86_held_cmpxchg(struct kvm_vcpu *v, uint64_t gpa, unsigned size, uint64_t old,
			 uint64_t new_val, bool *swapped, struct kvm_page_fault *f);
/*
 * x86_walk() of @gva for @access in the vCPU's paging state, its page
 * tables reached through kvm_vcpu_gpa_host() (an entry it cannot reach
 * faults as not present), as the CPU walks them: entries in private
 * memory the guest process holds are read and updated there
 * (kvm_x86_held_rw()).  KVM_TRANSLATE's software walk does not reach
 * those (kvm_vcpu_translate()).  Context: vcpu->mutex, no RCU section.
 */
int kvm_vcpu_walk(struct kvm_vcpu *v, uint64_t gva, uint32_t access, struct x86_walk_result *res);
/* Fills tr's outputs; 0 (an untranslatable address is valid = 0). */
int kvm_vcpu_translate(struct kvm_vcpu *v, struct kvm_translation *tr);

/* ---- MSRs (msr.c) ------------------------------------------------------------ */

/*
 * One MSR access as the VMM makes it (host-initiated): 0, or 1 when KVM
 * would fail it (unknown MSR, bad value), which stops a KVM_GET/SET_MSRS
 * array there.
 */
int kvm_vcpu_get_msr(struct kvm_vcpu *v, uint32_t index, uint64_t *data);
int kvm_vcpu_set_msr(struct kvm_vcpu *v, uint32_t index, uint64_t data);
/* CPUID.1:ECX.MONITOR from MISC_ENABLE when the NO_MWAIT quirk is off. */
void kvm_update_misc_enable_cpuid(struct kvm_vcpu *v);
/*
 * One MSR access by the guest (RDMSR/WRMSR of the x86 backend): 0, 1 when
 * the value is refused (#GP), -1 for an MSR guestmem does not know (a
 * failed read leaves 0 in *data).  The MSR filter is the caller's business.
 */
int kvm_vcpu_guest_msr(struct kvm_vcpu *v, uint32_t index, bool write, uint64_t *data);
/* KVM_GET_MSRS on /dev/kvm: the feature MSRs.  Same convention. */
int kvm_get_feature_msr(uint32_t index, uint64_t *data);
const uint32_t *kvm_msr_feature_index_list(uint32_t *n);
/* Guest MAXPHYADDR: CPUID 0x80000008 if the guest has it, else 36 (regs.c). */
int kvm_guest_maxphyaddr(struct kvm_vcpu *v);
/* CR4 bits the guest may not set: the CPU model's and, after
 * KVM_SET_CPUID2, the guest CPUID's (regs.c). */
uint64_t kvm_vcpu_cr4_reserved(struct kvm_vcpu *v);
/* kvm_set_apic_base()'s host-initiated checks (regs.c). */
bool kvm_valid_apic_base(struct kvm_vcpu *v, uint64_t base);
/* Guest CPUID says the vendor is Intel-compatible (TSC_AUX rules). */
bool kvm_guest_cpuid_is_intel(struct kvm_vcpu *v);
/* Guest CPUID bit: @reg 0 eax, 1 ebx, 2 ecx, 3 edx.  False without CPUID. */
bool kvm_guest_cpuid_has(struct kvm_vcpu *v, uint32_t fn, uint32_t idx, int reg, int bit);
/* The XCR0 bits the guest's CPUID allows (guest_supported_xcr0). */
uint64_t kvm_guest_supported_xcr0(struct kvm_vcpu *v);

/* ---- events from outside the vCPU (x86_state.c; SMM's save area: x86/smm.h) ---------- */

/* Ask @v for an SMI (any thread) and kick it; -ENOTTY without CONFIG_KVM_SMM. */
int kvm_inject_smi(struct kvm_vcpu *v);
/* Move a requested SMI into ev.smi.pending (process_smi()).  Context: vcpu->mutex. */
void kvm_vcpu_process_smi(struct kvm_vcpu *v);
/* Queue an NMI for @v (KVM_NMI, an NMI IPI; any thread) and kick it. */
void kvm_inject_nmi(struct kvm_vcpu *v);
/* Fold queued NMIs into ev.nmi.pending, at most 2, 1 while NMIs are
 * blocked or one is being injected (process_nmi()).  Context: vcpu->mutex. */
void kvm_vcpu_process_nmi(struct kvm_vcpu *v);
/* KVM_INTERRUPT: 0, -EINVAL (vector), -ENXIO (the PIC is in the kernel),
 * -EEXIST (an ExtINT is still pending).  Context: vcpu->mutex. */
int kvm_vcpu_ioctl_interrupt(struct kvm_vcpu *v, uint32_t irq);
/* The LAPIC takes the PIC's ExtINT: it is hardware-disabled, or LVT0 is
 * unmasked in ExtINT mode (kvm_apic_accept_pic_intr()). */
bool kvm_apic_accept_pic_intr(struct kvm_vcpu *v);

/* ---- paravirtual interfaces (kvm_pv.c) ------------------------------------------ */

/* vCPU KVM_ENABLE_CAP after the copy-in: -EINVAL for an unknown cap. */
int kvm_vcpu_enable_cap(struct kvm_vcpu *v, const struct kvm_enable_cap *cap);
/* Re-read the KVM leaf's features from guest CPUID (KVM_SET_CPUID2). */
void kvm_update_pv_runtime(struct kvm_vcpu *v);
/* KVM_SET_CPUID2's fix-ups of the KVM leaves (PV_UNHALT with HLT exits off). */
void kvm_pv_cpuid_fixup(struct kvm_vcpu *v);
/* The guest may use KVM_FEATURE_@bit: always, unless enforcement is on. */
bool kvm_guest_pv_has(struct kvm_vcpu *v, unsigned bit);
/* The host keeps per-thread scheduling delays (KVM's sched_info_on()). */
bool kvm_sched_info_on(void);
/* MSR_KVM_STEAL_TIME write checks and store: 0, 1 refused. */
int kvm_set_steal_time_msr(struct kvm_vcpu *v, uint64_t data);
/* The steal-time record at vCPU entry.  Context: the thread doing KVM_RUN. */
void kvm_vcpu_record_steal_time(struct kvm_vcpu *v);
/* Write the kvm-clock record at MSR_KVM_SYSTEM_TIME(_NEW) if enabled.
 * Context: vcpu->mutex (the MSR write, every KVM_RUN). */
void kvm_vcpu_update_pvclock(struct kvm_vcpu *v);
/* KVM_GET_CLOCK / KVM_SET_CLOCK after the copy-in (-EINVAL: flags). */
void kvm_vm_get_clock(struct kvm *kvm, struct kvm_clock_data *data);
int kvm_vm_set_clock(struct kvm *kvm, struct kvm_clock_data *data);

/* ---- nested state without nested virtualization (nested_state.c) ------------- */

/* KVM_GET_NESTED_STATE: the 128-byte header of the host vendor's format. */
void kvm_vcpu_get_nested_state(struct kvm_vcpu *v, struct kvm_nested_state *s);
/* KVM_SET_NESTED_STATE after the copy-in: 0 or -EINVAL. */
int kvm_vcpu_set_nested_state(struct kvm_vcpu *v, const struct kvm_nested_state *s);

/* ---- coalesced MMIO/PIO (coalesced_mmio.c) ---------------------------------- */

/* KVM_(UN)REGISTER_COALESCED_MMIO after the copy-in.  Context: no VM lock. */
int kvm_vm_register_coalesced_mmio(struct kvm *kvm, const struct kvm_coalesced_mmio_zone *zone);
int kvm_vm_unregister_coalesced_mmio(struct kvm *kvm,
				     const struct kvm_coalesced_mmio_zone *zone);
/*
 * A guest write of @len <= 8 bytes: true if a zone of that bus took it into
 * the ring (no exit).  Context: the vCPU's guest thread, no lock held.
 */
bool kvm_coalesced_write(struct kvm_vcpu *v, bool pio, uint64_t addr, uint32_t len,
			 const void *data);
void kvm_coalesced_destroy(struct kvm *kvm);

/* ---- VM scope (msr.c) ------------------------------------------------------ */

/*
 * KVM_X86_SET_MSR_FILTER after the copy-in of @filter; each range's bitmap
 * is still VMM memory, copied with @copy_in (the uAPI layer's copy from the
 * VMM: 0 or -EFAULT) in the kernel's order.
 */
int kvm_vm_set_msr_filter(struct kvm *kvm, const struct kvm_msr_filter *filter,
			  kvm_copy_fn copy_in);
/* Whether the filter lets the guest access @index (@write: a WRMSR). */
bool kvm_msr_allowed(struct kvm *kvm, uint32_t index, bool write);
/* VM destruction frees the x86 state: kvm_arch_destroy_vm() of core/kvm_arch.h. */

#endif
