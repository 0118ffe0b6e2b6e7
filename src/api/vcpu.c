/* SPDX-License-Identifier: MIT */
/*
 * The vCPU part of the public C API (<guestmem/guestmem.h>).  A handle is a
 * small struct that owns one VM reference, like a vCPU fd; struct
 * guestmem_vm is struct kvm (src/api/vm.c).
 */
#include <errno.h>
#include <stdlib.h>

#include <guestmem/guestmem.h>

#include "mmu/fault.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

struct guestmem_vcpu {
	struct kvm_vcpu *vcpu;
};

static int api_install(struct kvm_vcpu *vcpu, void *ctx)
{
	((struct guestmem_vcpu *)ctx)->vcpu = vcpu;
	return 0;
}

GM_API int guestmem_vcpu_create(struct guestmem_vm *vm, uint32_t id, struct guestmem_vcpu **out)
{
	struct guestmem_vcpu *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	r = kvm_vm_ioctl_create_vcpu((struct kvm *)vm, id, api_install, h);
	if (r < 0) {
		free(h);
		return r;
	}
	*out = h;
	return 0;
}

GM_API int guestmem_vcpu_set_guest(struct guestmem_vcpu *h, guestmem_vcpu_guest_fn fn,
				   void *opaque)
{
	int r;

	gm_mutex_lock(&h->vcpu->mutex, GM_LOCK_VCPU);
	r = kvm_vcpu_set_guest(h->vcpu, fn, opaque);
	gm_mutex_unlock(&h->vcpu->mutex);
	return r;
}

GM_API int guestmem_vcpu_run(struct guestmem_vcpu *h)
{
	struct kvm_vcpu *v = h->vcpu;
	int r;

	if (kvm_vm_ioctl_precheck(v->kvm))
		return -EIO;
	gm_mutex_lock(&v->mutex, GM_LOCK_VCPU);
	r = kvm_arch_vcpu_ioctl_run(v, 0);
	gm_mutex_unlock(&v->mutex);
	return r;
}

GM_API struct kvm_run *guestmem_vcpu_run_struct(struct guestmem_vcpu *h)
{
	return h->vcpu->run;
}

GM_API int guestmem_vcpu_get_regs(struct guestmem_vcpu *h, struct kvm_regs *regs)
{
	gm_mutex_lock(&h->vcpu->mutex, GM_LOCK_VCPU);
	kvm_vcpu_get_regs(h->vcpu, regs);
	gm_mutex_unlock(&h->vcpu->mutex);
	return 0;
}

GM_API int guestmem_vcpu_set_regs(struct guestmem_vcpu *h, const struct kvm_regs *regs)
{
	gm_mutex_lock(&h->vcpu->mutex, GM_LOCK_VCPU);
	kvm_vcpu_set_regs(h->vcpu, regs);
	gm_mutex_unlock(&h->vcpu->mutex);
	return 0;
}

GM_API void guestmem_vcpu_put(struct guestmem_vcpu *h)
{
	if (!h)
		return;
	kvm_vcpu_release(h->vcpu);
	free(h);
}

GM_API int guestmem_fault_precheck(int enable)
{
	if (enable < 0)
		return kvm_mmu_fault_precheck_enabled();
	return kvm_mmu_set_fault_precheck(enable != 0);
}
