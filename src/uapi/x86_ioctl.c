// SPDX-License-Identifier: MIT
/*
 * x86 ioctls of issue 9 on the three kinds of fd, decoded in Linux 6.12's
 * order (arch/x86/kvm/x86.c, virt/kvm/kvm_main.c): a check that needs no
 * argument (no LAPIC) comes before the copy-in (EFAULT), then the value
 * checks (src/vcpu), then the copy-out.
 *
 *  vCPU:  KVM_GET/SET_LAPIC, KVM_X86_SETUP_MCE, KVM_GET/SET_VCPU_EVENTS,
 *         KVM_GET/SET_DEBUGREGS, KVM_GET/SET_XSAVE, KVM_GET_XSAVE2,
 *         KVM_GET/SET_FPU, KVM_GET/SET_TSC_KHZ, KVM_TRANSLATE,
 *         KVM_SET_GUEST_DEBUG, KVM_HAS/GET/SET_DEVICE_ATTR (TSC offset),
 *         KVM_ENABLE_CAP (KVM_CAP_ENFORCE_PV_FEATURE_CPUID),
 *         KVM_GET/SET_NESTED_STATE
 *  VM:    KVM_GET/SET_TSC_KHZ, KVM_SET_NR_MMU_PAGES, KVM_X86_SET_MSR_FILTER,
 *         KVM_GET/SET_CLOCK,
 *         KVM_(UN)REGISTER_COALESCED_MMIO (generic in KVM; here for now)
 *  /dev/kvm: KVM_GET_MSR_FEATURE_INDEX_LIST, KVM_GET_MSRS (feature MSRs),
 *         KVM_X86_GET_MCE_CAP_SUPPORTED, KVM_HAS/GET_DEVICE_ATTR
 *
 * KVM_GET_NR_MMU_PAGES is deliberately absent: 6.12 no longer handles it
 * (the VM fd answers ENOTTY).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <guestmem/kvm.h>

#include "uapi.h"
#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "lib/lockdep.h"

#define KVM_X86_GRP_SEV 1
#define KVM_MAX_IO_MSRS 256

/* ---- vCPU --------------------------------------------------------------------- */

static long vcpu_lapic(struct kvm_vcpu *v, unsigned long arg, bool set)
{
	struct kvm_lapic_state *s;
	long r;

	if (!irqchip_in_kernel(v->kvm) || !v->arch.lapic_regs)
		return -EINVAL; /* no in-kernel LAPIC: before the copy */
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	if (set) {
		r = gm_copy_from_user(s, (const void *)arg, sizeof(*s));
		if (!r)
			r = kvm_vcpu_set_lapic(v, s);
	} else {
		r = kvm_vcpu_get_lapic(v, s);
		if (!r)
			r = gm_copy_to_user((void *)arg, s, sizeof(*s));
	}
	free(s);
	return r;
}

static long vcpu_events(struct kvm_vcpu *v, unsigned long arg, bool set)
{
	struct kvm_vcpu_events e;
	long r;

	if (!set) {
		kvm_vcpu_get_events(v, &e);
		return gm_copy_to_user((void *)arg, &e, sizeof(e));
	}
	r = gm_copy_from_user(&e, (const void *)arg, sizeof(e));
	return r ? r : kvm_vcpu_set_events(v, &e);
}

static long vcpu_debugregs(struct kvm_vcpu *v, unsigned long arg, bool set)
{
	struct kvm_debugregs d;
	long r;

	if (!set) {
		kvm_vcpu_get_debugregs(v, &d);
		return gm_copy_to_user((void *)arg, &d, sizeof(d));
	}
	r = gm_copy_from_user(&d, (const void *)arg, sizeof(d));
	return r ? r : kvm_vcpu_set_debugregs(v, &d);
}

/* The uABI XSAVE size is sizeof(struct kvm_xsave) here (no dynamic AMX). */
static long vcpu_xsave(struct kvm_vcpu *v, unsigned long arg, bool set)
{
	void *buf = malloc(KVM_XSAVE_UABI_SIZE);
	long r;

	if (!buf)
		return -ENOMEM;
	if (set) {
		r = gm_copy_from_user(buf, (const void *)arg, KVM_XSAVE_UABI_SIZE);
		if (!r)
			r = kvm_vcpu_set_xsave(v, buf);
	} else {
		kvm_vcpu_get_xsave(v, buf);
		r = gm_copy_to_user((void *)arg, buf, KVM_XSAVE_UABI_SIZE);
	}
	free(buf);
	return r;
}

static long vcpu_fpu(struct kvm_vcpu *v, unsigned long arg, bool set)
{
	struct kvm_fpu fpu;
	long r;

	if (!set) {
		kvm_vcpu_get_fpu(v, &fpu);
		return gm_copy_to_user((void *)arg, &fpu, sizeof(fpu));
	}
	r = gm_copy_from_user(&fpu, (const void *)arg, sizeof(fpu));
	if (!r)
		kvm_vcpu_set_fpu(v, &fpu);
	return r;
}

static long vcpu_translate(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_translation tr;
	long r = gm_copy_from_user(&tr, (const void *)arg, sizeof(tr));

	if (!r)
		r = kvm_vcpu_translate(v, &tr);
	return r ? r : gm_copy_to_user((void *)arg, &tr, sizeof(tr));
}

static long vcpu_guest_debug(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_guest_debug dbg;
	long r = gm_copy_from_user(&dbg, (const void *)arg, sizeof(dbg));

	return r ? r : kvm_vcpu_set_guest_debug(v, &dbg);
}

static long vcpu_setup_mce(struct kvm_vcpu *v, unsigned long arg)
{
	uint64_t mcg_cap;
	long r = gm_copy_from_user(&mcg_cap, (const void *)arg, sizeof(mcg_cap));

	return r ? r : kvm_vcpu_x86_setup_mce(v, mcg_cap);
}

/* Group KVM_VCPU_TSC_CTRL, attribute KVM_VCPU_TSC_OFFSET: the TSC offset. */
static long vcpu_device_attr(struct kvm_vcpu *v, unsigned int cmd, unsigned long arg)
{
	struct kvm_device_attr attr;
	uint64_t off;
	long r = gm_copy_from_user(&attr, (const void *)arg, sizeof(attr));

	if (r)
		return r;
	if (attr.group != KVM_VCPU_TSC_CTRL || attr.attr != KVM_VCPU_TSC_OFFSET)
		return -ENXIO;
	if (cmd == KVM_HAS_DEVICE_ATTR)
		return 0;
	if (cmd == KVM_GET_DEVICE_ATTR) {
		off = (uint64_t)v->arch.tsc_offset;
		return gm_copy_to_user((void *)(uintptr_t)attr.addr, &off, sizeof(off));
	}
	r = gm_copy_from_user(&off, (const void *)(uintptr_t)attr.addr, sizeof(off));
	if (!r)
		kvm_vcpu_set_tsc_offset(v, (int64_t)off);
	return r;
}

/* KVM_ENABLE_CAP on a vCPU: the copy (EFAULT), then the flags and cap. */
static long vcpu_enable_cap(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_enable_cap cap;
	long r = gm_copy_from_user(&cap, (const void *)arg, sizeof(cap));

	return r ? r : kvm_vcpu_enable_cap(v, &cap);
}

/*
 * KVM_GET_NESTED_STATE: the caller's size (EFAULT), then E2BIG with the
 * size needed written back, or the header copied out.
 */
static long vcpu_get_nested_state(struct kvm_vcpu *v, unsigned long arg)
{
	/* Plain address arithmetic: @arg may be any value, NULL included. */
	void *usize = (void *)(arg + offsetof(struct kvm_nested_state, size));
	struct kvm_nested_state s;
	uint32_t size;
	long r = gm_copy_from_user(&size, usize, sizeof(size));

	if (r)
		return r;
	kvm_vcpu_get_nested_state(v, &s);
	if (size < s.size) {
		r = gm_copy_to_user(usize, &s.size, sizeof(s.size));
		return r ? r : -E2BIG;
	}
	return gm_copy_to_user((void *)arg, &s, sizeof(s));
}

static long vcpu_set_nested_state(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_nested_state s;
	long r = gm_copy_from_user(&s, (const void *)arg, sizeof(s));

	return r ? r : kvm_vcpu_set_nested_state(v, &s);
}

/* KVM_INTERRUPT: the copy (EFAULT), then the vector and irqchip checks. */
static long vcpu_interrupt(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_interrupt irq;
	long r = gm_copy_from_user(&irq, (const void *)arg, sizeof(irq));

	return r ? r : kvm_vcpu_ioctl_interrupt(v, irq.irq);
}

static long vcpu_ioctl_x86_state(struct kvm_vcpu *v, unsigned int cmd, unsigned long arg,
				 bool *handled)
{
	switch (cmd) {
	case KVM_GET_LAPIC:
	case KVM_SET_LAPIC:
		return vcpu_lapic(v, arg, cmd == KVM_SET_LAPIC);
	case KVM_GET_VCPU_EVENTS:
	case KVM_SET_VCPU_EVENTS:
		return vcpu_events(v, arg, cmd == KVM_SET_VCPU_EVENTS);
	case KVM_GET_DEBUGREGS:
	case KVM_SET_DEBUGREGS:
		return vcpu_debugregs(v, arg, cmd == KVM_SET_DEBUGREGS);
	case KVM_GET_XSAVE:
	case KVM_GET_XSAVE2:
	case KVM_SET_XSAVE:
		return vcpu_xsave(v, arg, cmd == KVM_SET_XSAVE);
	case KVM_GET_FPU:
	case KVM_SET_FPU:
		return vcpu_fpu(v, arg, cmd == KVM_SET_FPU);
	}
	*handled = false;
	return 0;
}

long gm_vcpu_ioctl_x86(struct kvm_vcpu *v, unsigned int cmd, unsigned long arg, bool *handled)
{
	long r;

	lockdep_assert_held(&v->mutex); /* every vCPU ioctl */
	*handled = true;
	r = vcpu_ioctl_x86_state(v, cmd, arg, handled);
	if (*handled)
		return r;
	*handled = true;
	switch (cmd) {
	case KVM_X86_SETUP_MCE:
		return vcpu_setup_mce(v, arg);
	case KVM_SMI:
		return kvm_inject_smi(v);
	case KVM_NMI:
		kvm_inject_nmi(v);
		return 0;
	case KVM_INTERRUPT:
		return vcpu_interrupt(v, arg);
	case KVM_SET_TSC_KHZ:
		return kvm_vcpu_set_tsc_khz(v, (uint32_t)arg);
	case KVM_GET_TSC_KHZ:
		return v->arch.virtual_tsc_khz;
	case KVM_TRANSLATE:
		return vcpu_translate(v, arg);
	case KVM_SET_GUEST_DEBUG:
		return vcpu_guest_debug(v, arg);
	case KVM_HAS_DEVICE_ATTR:
	case KVM_GET_DEVICE_ATTR:
	case KVM_SET_DEVICE_ATTR:
		return vcpu_device_attr(v, cmd, arg);
	case KVM_ENABLE_CAP:
		return vcpu_enable_cap(v, arg);
	case KVM_GET_NESTED_STATE:
		return vcpu_get_nested_state(v, arg);
	case KVM_SET_NESTED_STATE:
		return vcpu_set_nested_state(v, arg);
	}
	*handled = false;
	return 0;
}

/* ---- VM ------------------------------------------------------------------------- */

static long vm_set_nr_mmu_pages(struct kvm *kvm, unsigned long n)
{
	if (n < KVM_MIN_ALLOC_MMU_PAGES)
		return -EINVAL;
	/* The software stage-2 has no shadow-page budget; the request is kept. */
	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	kvm->arch.n_requested_mmu_pages = n;
	gm_mutex_unlock(&kvm->slots_lock);
	return 0;
}

static long vm_set_msr_filter(struct kvm *kvm, unsigned long arg)
{
	struct kvm_msr_filter f;
	long r = gm_copy_from_user(&f, (const void *)arg, sizeof(f));

	return r ? r : kvm_vm_set_msr_filter(kvm, &f, gm_copy_from_user);
}

/* KVM_(UN)REGISTER_COALESCED_MMIO: copy-in, then the zone checks. */
static long vm_coalesced(struct kvm *kvm, unsigned long arg, bool reg)
{
	struct kvm_coalesced_mmio_zone z;
	long r = gm_copy_from_user(&z, (const void *)arg, sizeof(z));

	if (r)
		return r;
	return reg ? kvm_vm_register_coalesced_mmio(kvm, &z)
		   : kvm_vm_unregister_coalesced_mmio(kvm, &z);
}

/* KVM_GET_CLOCK: nothing to check, the copy-out.  KVM_SET_CLOCK: copy, flags. */
static long vm_clock(struct kvm *kvm, unsigned long arg, bool set)
{
	struct kvm_clock_data data;
	long r;

	if (!set) {
		kvm_vm_get_clock(kvm, &data);
		return gm_copy_to_user((void *)arg, &data, sizeof(data));
	}
	r = gm_copy_from_user(&data, (const void *)arg, sizeof(data));
	return r ? r : kvm_vm_set_clock(kvm, &data);
}

long gm_vm_ioctl_x86(struct kvm *kvm, unsigned int cmd, unsigned long arg, bool *handled)
{
	*handled = true;
	switch (cmd) {
	case KVM_REGISTER_COALESCED_MMIO:
	case KVM_UNREGISTER_COALESCED_MMIO:
		return vm_coalesced(kvm, arg, cmd == KVM_REGISTER_COALESCED_MMIO);
	case KVM_SET_TSC_KHZ:
		return kvm_vm_set_tsc_khz(kvm, (uint32_t)arg);
	case KVM_GET_TSC_KHZ:
		return kvm_vm_get_tsc_khz(kvm);
	case KVM_SET_NR_MMU_PAGES:
		return vm_set_nr_mmu_pages(kvm, arg);
	case KVM_X86_SET_MSR_FILTER:
		return vm_set_msr_filter(kvm, arg);
	case KVM_GET_CLOCK:
	case KVM_SET_CLOCK:
		return vm_clock(kvm, arg, cmd == KVM_SET_CLOCK);
	}
	*handled = false;
	return 0;
}

/* ---- /dev/kvm ------------------------------------------------------------------- */

/* KVM_GET_MSR_INDEX_LIST and _FEATURE_: the count is written back first. */
static long dev_get_msr_list(struct kvm_msr_list *u, const uint32_t *list, uint32_t n)
{
	struct kvm_msr_list hdr;
	uint32_t want;
	long r = gm_copy_from_user(&hdr, u, sizeof(hdr));

	if (r)
		return r;
	want = hdr.nmsrs;
	hdr.nmsrs = n; /* written back before the E2BIG check */
	r = gm_copy_to_user(u, &hdr, sizeof(hdr));
	if (r)
		return r;
	if (want < n)
		return -E2BIG;
	return gm_copy_to_user(u->indices, list, n * sizeof(*list));
}

long gm_msr_io(struct kvm_msrs *u, gm_do_msrs_fn do_msrs, void *ctx, bool writeback)
{
	struct kvm_msrs hdr;
	struct kvm_msr_entry *e;
	long r = gm_copy_from_user(&hdr, u, sizeof(hdr));

	if (r)
		return r;
	if (hdr.nmsrs >= KVM_MAX_IO_MSRS)
		return -E2BIG;
	e = malloc((hdr.nmsrs ? hdr.nmsrs : 1) * sizeof(*e));
	if (!e)
		return -ENOMEM;
	r = gm_copy_from_user(e, u->entries, hdr.nmsrs * sizeof(*e));
	if (!r)
		r = do_msrs(ctx, e, hdr.nmsrs);
	if (r >= 0 && writeback && gm_copy_to_user(u->entries, e, hdr.nmsrs * sizeof(*e)))
		r = -EFAULT;
	free(e);
	return r;
}

/* do_get_feature_msr over the entries: the count processed. */
static int dev_get_msrs(void *ctx, struct kvm_msr_entry *e, uint32_t n)
{
	uint32_t i;

	(void)ctx;
	for (i = 0; i < n; i++) {
		uint64_t data;
		int fail = kvm_get_feature_msr(e[i].index, &data);

		e[i].data = data; /* 0 after a failure */
		if (fail)
			break;
	}
	return (int)i;
}

static long dev_mce_cap_supported(unsigned long arg)
{
	uint64_t cap = KVM_MCG_CTL_P | KVM_MCG_SER_P;

	return gm_copy_to_user((void *)arg, &cap, sizeof(cap));
}

/*
 * Group KVM_X86_GRP_SYSTEM: KVM_X86_XCOMP_GUEST_SUPP, the XCR0 bits a
 * guest may use.  Group KVM_X86_GRP_SEV (kvm_amd): VMSA features, 0 on a
 * host without SEV-ES.  Anything else ENXIO.
 */
static long dev_device_attr(unsigned int cmd, unsigned long arg)
{
	struct kvm_device_attr attr;
	uint64_t val;
	long r = gm_copy_from_user(&attr, (const void *)arg, sizeof(attr));

	if (r)
		return r;
	if (attr.group == 0 && attr.attr == KVM_X86_XCOMP_GUEST_SUPP)
		val = kvm_supported_xcr0();
	else if (attr.group == KVM_X86_GRP_SEV && attr.attr == 0)
		val = 0;
	else
		return -ENXIO;
	if (cmd == KVM_HAS_DEVICE_ATTR)
		return 0;
	return gm_copy_to_user((void *)(uintptr_t)attr.addr, &val, sizeof(val));
}

long gm_dev_ioctl_x86(unsigned int cmd, unsigned long arg, bool *handled)
{
	const uint32_t *list;
	uint32_t n;

	*handled = true;
	switch (cmd) {
	case KVM_GET_MSR_INDEX_LIST:
		list = kvm_msr_index_list(&n);
		return dev_get_msr_list((struct kvm_msr_list *)arg, list, n);
	case KVM_GET_MSR_FEATURE_INDEX_LIST:
		list = kvm_msr_feature_index_list(&n);
		return dev_get_msr_list((struct kvm_msr_list *)arg, list, n);
	case KVM_GET_MSRS:
		return gm_msr_io((struct kvm_msrs *)arg, dev_get_msrs, NULL, true);
	case KVM_X86_GET_MCE_CAP_SUPPORTED:
		return dev_mce_cap_supported(arg);
	case KVM_HAS_DEVICE_ATTR:
	case KVM_GET_DEVICE_ATTR:
		return dev_device_attr(cmd, arg);
	}
	*handled = false;
	return 0;
}
