/* SPDX-License-Identifier: MIT */
/*
 * The host's CPUID, and the CPU vendor guestmem presents.
 *
 * Why a module: under `guestmem exec` on a host whose own hypercall
 * instruction does not trap at CPL3 (an AMD guest of a hypervisor that
 * intercepts VMMCALL at every privilege level, as this project's CI VMs
 * are), guest code that picks VMMCALL from the host vendor would talk to
 * the outer hypervisor instead of guestmem.  There the preload turns on
 * CPUID faulting for the VMM's process and presents the other vendor,
 * whose hypercall instruction does trap (preload/cpuid_fault.c).  Library
 * code must then read the real host CPUID through gm_host_cpuid(), which
 * steps around the faulting, and apply gm_cpu_vendor() where KVM reports
 * the host vendor (KVM_GET_SUPPORTED_CPUID, the vendor module's
 * parameters).
 */
#ifndef GM_LIB_HOST_CPUID_H
#define GM_LIB_HOST_CPUID_H

#include <stdbool.h>
#include <stdint.h>

enum gm_x86_vendor {
	GM_VENDOR_OTHER = 0,
	GM_VENDOR_INTEL,
	GM_VENDOR_AMD, /* AMD and Hygon: KVM's kvm_amd */
};

/* The real host CPUID leaf @leaf, subleaf @sub: out = eax, ebx, ecx, edx.
 * Context: any thread, async-signal-safe. */
void gm_host_cpuid(uint32_t leaf, uint32_t sub, uint32_t out[4]);

/* The same into four lvalues, like <cpuid.h>'s __cpuid_count(). */
#define gm_host_cpuid_regs(leaf, sub, a, b, c, d)         \
	do {                                               \
		uint32_t gm_r_[4];                         \
		gm_host_cpuid((leaf), (sub), gm_r_);       \
		(a) = gm_r_[0];                            \
		(b) = gm_r_[1];                            \
		(c) = gm_r_[2];                            \
		(d) = gm_r_[3];                            \
		(void)(a), (void)(b), (void)(c), (void)(d); \
	} while (0)

/* The host's highest leaf of the range starting at @base (0 or 0x80000000),
 * or 0 if the range is absent. */
uint32_t gm_host_cpuid_max(uint32_t base);

/* The host CPU's real vendor. */
enum gm_x86_vendor gm_host_vendor(void);

/*
 * The vendor guestmem presents (KVM_GET_SUPPORTED_CPUID, the vendor module,
 * which hypercall instruction is the guest's own): GUESTMEM_CPU_VENDOR, by
 * default the host's unless the host's hypercall instruction does not
 * trap at CPL3, then the other vendor's; decided once.
 * Under `guestmem exec` the VMM's own CPUID shows the same
 * (preload/cpuid_fault.c); through the C library alone it still shows the
 * host's.
 */
enum gm_x86_vendor gm_cpu_vendor(void);

/* KVM's vendor module is kvm_intel (not kvm_amd): the presented vendor's. */
static inline bool gm_kvm_vendor_is_intel(void)
{
	return gm_cpu_vendor() == GM_VENDOR_INTEL;
}
/* Whether @vendor's hypercall instruction traps at CPL3 on this host. */
bool gm_hypercall_traps(enum gm_x86_vendor vendor);

/* The 12-byte vendor string of @v in CPUID leaf 0's order (ebx, edx, ecx). */
void gm_vendor_regs(enum gm_x86_vendor v, uint32_t *ebx, uint32_t *edx, uint32_t *ecx);

/*
 * Called once by the preload before the program's main: CPUID faults in
 * every thread of this process from now on (inherited by new threads); the
 * process is shown gm_cpu_vendor().
 */
void gm_host_cpuid_faulting_on(void);
bool gm_host_cpuid_faulting(void);

#endif
