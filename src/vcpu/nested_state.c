// SPDX-License-Identifier: MIT
/*
 * KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE of a vCPU that cannot run a
 * nested hypervisor.
 *
 * KVM offers these ioctls (and a nonzero KVM_CAP_NESTED_STATE, the largest
 * state size) whatever kvm_intel.nested / kvm_amd.nested say: the vendor
 * module's nested operations are always installed (the size: caps.c).
 * guestmem's CPU model
 * has no VMX or SVM, so a vCPU is never in VMX operation nor in guest mode,
 * and EFER.SVME cannot be set; what remains is the vendor module's answer
 * for such a vCPU, in its check order.  The format follows the host's
 * vendor, as the module that would load:
 *
 * - AMD: the state is the 128-byte header, format SVM, flags GIF_SET (the
 *   global interrupt flag is always set here); a set must say exactly
 *   that (with SVME clear nothing else is valid).
 * - Intel: the header, format VMX, VMXON and VMCS12 addresses invalid (all
 *   ones); a set must keep them invalid, with no SMM state and no flag but
 *   EVMCS, which then fails as no enlightened VMCS is enabled.
 */
#include <errno.h>
#include <string.h>

#include <guestmem/kvm.h>

#include "lib/host_cpuid.h"
#include "lib/lockdep.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"

#define INVALID_GPA (~0ULL)

void kvm_vcpu_get_nested_state(struct kvm_vcpu *v, struct kvm_nested_state *s)
{
	lockdep_assert_held(&v->mutex);
	memset(s, 0, sizeof(*s));
	s->size = sizeof(*s);
	if (gm_kvm_vendor_is_intel()) {
		s->format = KVM_STATE_NESTED_FORMAT_VMX;
		s->hdr.vmx.vmxon_pa = INVALID_GPA;
		s->hdr.vmx.vmcs12_pa = INVALID_GPA;
	} else {
		s->format = KVM_STATE_NESTED_FORMAT_SVM;
		s->flags = KVM_STATE_NESTED_GIF_SET;
	}
}

/* vmx_set_nested_state() for a vCPU without VMX. */
static int vmx_set_nested_state(const struct kvm_nested_state *s)
{
	const uint16_t smm_flags = s->hdr.vmx.smm.flags;

	if (s->format != KVM_STATE_NESTED_FORMAT_VMX)
		return -EINVAL;
	if (s->hdr.vmx.vmxon_pa != INVALID_GPA)
		return -EINVAL; /* VMXON needs VMX in guest CPUID */
	if (smm_flags || s->hdr.vmx.vmcs12_pa != INVALID_GPA)
		return -EINVAL;
	if (s->flags & ~KVM_STATE_NESTED_EVMCS)
		return -EINVAL;
	if (s->hdr.vmx.flags & ~KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE)
		return -EINVAL;
	if (s->flags & KVM_STATE_NESTED_EVMCS)
		return -EINVAL; /* no VMX, no enlightened VMCS */
	return 0; /* leaving nested operation: there is none */
}

/* svm_set_nested_state() with EFER.SVME clear (the only possible state). */
static int svm_set_nested_state(const struct kvm_nested_state *s)
{
	if (s->format != KVM_STATE_NESTED_FORMAT_SVM)
		return -EINVAL;
	if (s->flags & ~(KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_RUN_PENDING |
			 KVM_STATE_NESTED_GIF_SET))
		return -EINVAL;
	if (s->flags != KVM_STATE_NESTED_GIF_SET)
		return -EINVAL; /* SVME=0: no guest mode, GIF set */
	return 0;
}

int kvm_vcpu_set_nested_state(struct kvm_vcpu *v, const struct kvm_nested_state *s)
{
	const uint32_t valid = KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_GUEST_MODE |
			       KVM_STATE_NESTED_EVMCS | KVM_STATE_NESTED_MTF_PENDING |
			       KVM_STATE_NESTED_GIF_SET;

	lockdep_assert_held(&v->mutex);
	/* The generic checks, then the vendor's. */
	if (s->size < sizeof(*s))
		return -EINVAL;
	if (s->flags & ~valid)
		return -EINVAL;
	if ((s->flags & KVM_STATE_NESTED_RUN_PENDING) && !(s->flags & KVM_STATE_NESTED_GUEST_MODE))
		return -EINVAL;
	return gm_kvm_vendor_is_intel() ? vmx_set_nested_state(s) : svm_set_nested_state(s);
}
