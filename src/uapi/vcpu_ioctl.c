// SPDX-License-Identifier: MIT
/*
 * vCPU file descriptors (spec kvm-vcpu-eventfd-spec.md §1.1, §3-§6):
 * KVM_CREATE_VCPU on the VM fd, the vCPU fd's ioctls and mmap, and the x86
 * system ioctls that belong with vCPUs (KVM_GET_SUPPORTED_CPUID,
 * KVM_GET_MSR_INDEX_LIST).
 *
 * vCPU ioctl order (§1.1): EIO for another process or a dead VM, EINVAL for
 * a foreign ioctl type, then vcpu->mutex (so a concurrent KVM_RUN makes
 * every other vCPU ioctl wait), then the command: copy in (EFAULT), check,
 * act, copy out.  Unknown commands: EINVAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <guestmem/kvm.h>

#include "core/config.h"
#include "core/gmemfd.h"
#include "mmu/fault.h"
#include "uapi.h"
#include "vcpu/cpuid.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

static struct kvm_vcpu *file_vcpu(struct gm_file *f)
{
	return f->obj;
}

/* ---- register ioctls ------------------------------------------------------ */

static long vcpu_get_regs(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_regs regs;

	kvm_vcpu_get_regs(v, &regs);
	return gm_copy_to_user((void *)arg, &regs, sizeof(regs));
}

static long vcpu_set_regs(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_regs regs;
	int r = gm_copy_from_user(&regs, (const void *)arg, sizeof(regs));

	if (!r)
		kvm_vcpu_set_regs(v, &regs);
	return r;
}

static long vcpu_get_sregs(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_sregs sregs;

	kvm_vcpu_get_sregs(v, &sregs);
	return gm_copy_to_user((void *)arg, &sregs, sizeof(sregs));
}

static long vcpu_set_sregs(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_sregs sregs;
	int r = gm_copy_from_user(&sregs, (const void *)arg, sizeof(sregs));

	return r ? r : kvm_vcpu_set_sregs(v, &sregs);
}

static long vcpu_get_mp_state(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_mp_state mp = { .mp_state = v->mp_state };

	return gm_copy_to_user((void *)arg, &mp, sizeof(mp));
}

static long vcpu_set_mp_state(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_mp_state mp;
	int r = gm_copy_from_user(&mp, (const void *)arg, sizeof(mp));

	return r ? r : kvm_vcpu_set_mp_state(v, mp.mp_state);
}

static long vcpu_set_xcrs(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_xcrs x;
	long r = gm_copy_from_user(&x, (const void *)arg, sizeof(x));

	return r ? r : kvm_vcpu_set_xcrs(v, &x);
}

/* ---- CPUID ------------------------------------------------------------------ */

static long vcpu_set_cpuid2(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_cpuid2 hdr, *u = (struct kvm_cpuid2 *)arg;
	struct kvm_cpuid_entry2 *e = NULL;
	int r = gm_copy_from_user(&hdr, u, sizeof(hdr));

	if (r)
		return r;
	if (hdr.nent > KVM_MAX_CPUID_ENTRIES)
		return -E2BIG;
	if (hdr.nent) {
		e = malloc(hdr.nent * sizeof(*e));
		if (!e)
			return -ENOMEM;
		r = gm_copy_from_user(e, u->entries, hdr.nent * sizeof(*e));
	}
	if (!r)
		r = kvm_vcpu_set_cpuid(v, e, hdr.nent);
	free(e);
	return r;
}

static long vcpu_get_cpuid2(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_cpuid2 hdr, *u = (struct kvm_cpuid2 *)arg;
	int r = gm_copy_from_user(&hdr, u, sizeof(hdr));

	if (r)
		return r;
	if (hdr.nent < v->cpuid_nent)
		return -E2BIG;
	r = gm_copy_to_user(u->entries, v->cpuid, v->cpuid_nent * sizeof(*v->cpuid));
	if (r)
		return r;
	hdr.nent = v->cpuid_nent;
	return gm_copy_to_user(u, &hdr, sizeof(hdr));
}

/* KVM_SET_SIGNAL_MASK: NULL clears; len must be the kernel's 8 bytes. */
static long vcpu_set_signal_mask(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_signal_mask hdr, *u = (struct kvm_signal_mask *)arg;
	uint8_t set[8];
	int r;

	if (!arg)
		return kvm_vcpu_set_sigmask(v, NULL, 0);
	r = gm_copy_from_user(&hdr, u, sizeof(hdr));
	if (r)
		return r;
	if (hdr.len != sizeof(set))
		return -EINVAL;
	r = gm_copy_from_user(set, u->sigset, sizeof(set));
	return r ? r : kvm_vcpu_set_sigmask(v, set, hdr.len);
}

/* KVM_GET_MSRS / KVM_SET_MSRS (gm_msr_io): the number of MSRs processed. */
static int vcpu_get_msrs(void *v, struct kvm_msr_entry *e, uint32_t n)
{
	return kvm_vcpu_msrs(v, e, n, false);
}

static int vcpu_set_msrs(void *v, struct kvm_msr_entry *e, uint32_t n)
{
	return kvm_vcpu_msrs(v, e, n, true);
}

/* KVM_PRE_FAULT_MEMORY (6.10+): the leftover range is copied back always. */
static long vcpu_pre_fault_memory(struct kvm_vcpu *v, unsigned long arg)
{
	struct kvm_pre_fault_memory range;
	uint64_t gpa, size;
	long r;

	if (v->kvm->cfg.profile == GM_PROFILE_LINUX_6_8)
		return -EINVAL; /* not in 6.8: kvm_arch_vcpu_ioctl's default */
	if (gm_copy_from_user(&range, (const void *)arg, sizeof(range)))
		return -EFAULT;
	gpa = range.gpa;
	size = range.size;
	r = kvm_vcpu_pre_fault_memory(v->kvm, &v->stat.fault, &gpa, &size, range.flags);
	range.gpa = gpa;
	range.size = size;
	if (gm_copy_to_user((void *)arg, &range, sizeof(range)))
		r = -EFAULT;
	return r;
}

/* ---- dispatch ---------------------------------------------------------------- */

/*
 * What KVM does on the way into the guest before the run loop proper:
 * the steal-time record (kvm_pv.c), and KVM_EXIT_DIRTY_RING_FULL while the
 * dirty ring is at its soft limit.  A pending I/O or MMIO completion goes
 * first (the full-ring exit would leave it for the next KVM_RUN).
 */
static long vcpu_run_entry(struct kvm_vcpu *v, unsigned long arg)
{
	if (arg || READ_ONCE(v->run->immediate_exit))
		return kvm_arch_vcpu_ioctl_run(v, arg); /* EINVAL or EINTR there */
	if (v->pending == VCPU_PENDING_NONE && kvm_dirty_ring_soft_full(&v->dirty_ring)) {
		v->run->exit_reason = KVM_EXIT_DIRTY_RING_FULL;
		return 0;
	}
	kvm_vcpu_record_steal_time(v);
	kvm_vcpu_update_pvclock(v);
	return kvm_arch_vcpu_ioctl_run(v, arg);
}

static long vcpu_ioctl_locked(struct kvm_vcpu *v, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case KVM_RUN:
		return vcpu_run_entry(v, arg);
	case KVM_GET_REGS:
		return vcpu_get_regs(v, arg);
	case KVM_SET_REGS:
		return vcpu_set_regs(v, arg);
	case KVM_GET_SREGS:
		return vcpu_get_sregs(v, arg);
	case KVM_SET_SREGS:
		return vcpu_set_sregs(v, arg);
	case KVM_GET_MP_STATE:
		return vcpu_get_mp_state(v, arg);
	case KVM_SET_MP_STATE:
		return vcpu_set_mp_state(v, arg);
	case KVM_SET_CPUID2:
		return vcpu_set_cpuid2(v, arg);
	case KVM_GET_CPUID2:
		return vcpu_get_cpuid2(v, arg);
	case KVM_SET_SIGNAL_MASK:
		return vcpu_set_signal_mask(v, arg);
	case KVM_GET_XCRS: /* kept in KVM_GET_XCRS's form (x86_state.c) */
		return gm_copy_to_user((void *)arg, &v->xcrs, sizeof(v->xcrs));
	case KVM_SET_XCRS:
		return vcpu_set_xcrs(v, arg);
	case KVM_GET_MSRS:
	case KVM_SET_MSRS:
		return gm_msr_io((struct kvm_msrs *)arg, cmd == KVM_SET_MSRS ? vcpu_set_msrs : vcpu_get_msrs,
				 v, cmd == KVM_GET_MSRS);
	case KVM_GET_STATS_FD:
		return gm_get_stats_fd(v->kvm, v);
	case KVM_PRE_FAULT_MEMORY:
		return vcpu_pre_fault_memory(v, arg);
	default: {
		/* Events, FPU/XSAVE, LAPIC, TSC, debug... (x86_ioctl.c). */
		bool handled;
		long r = gm_vcpu_ioctl_x86(v, cmd, arg, &handled);

		return handled ? r : -EINVAL; /* kvm_arch_vcpu_ioctl's default */
	}
	}
}

static long gm_vcpu_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg)
{
	struct kvm_vcpu *v = file_vcpu(f);
	long r = gm_kvm_check_caller(v->kvm);
	struct kvm_dirty_ring *ring;

	if (r)
		return r;
	if (_IOC_TYPE(cmd) != KVMIO)
		return -EINVAL;
	gm_mutex_lock(&v->mutex, GM_LOCK_VCPU);
	/* vcpu_load(): pages this thread dirties go to this vCPU's ring. */
	ring = kvm_set_running_dirty_ring(&v->dirty_ring);
	r = vcpu_ioctl_locked(v, cmd, arg);
	kvm_set_running_dirty_ring(ring);
	gm_mutex_unlock(&v->mutex);
	return r;
}

/* mmap is not subject to the same-process check (§5.8). */
static int gm_vcpu_mmap(struct gm_file *f, void *addr, size_t len, int prot, int flags,
			off_t off, void **out)
{
	void *p = kvm_vcpu_mmap(file_vcpu(f), addr, len, prot, flags, off);

	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

static void gm_vcpu_release(struct gm_file *f)
{
	kvm_vcpu_release(file_vcpu(f));
}

static void gm_vcpu_fill_stat(struct gm_file *f, struct stat *st)
{
	(void)f;
	gm_anon_inode_stat(st);
}

static const struct gm_file_ops gm_vcpu_fops = {
	.fops = GM_FOPS_NOOP_LLSEEK | GM_FOPS_ANON_SETATTR,
	.ioctl = gm_vcpu_ioctl,
	.mmap = gm_vcpu_mmap,
	.fill_stat = gm_vcpu_fill_stat,
	.release = gm_vcpu_release,
};

/* ---- x86 system and VM ioctls that come with vCPUs (§6.3) ------------------- */

/*
 * KVM_GET_SUPPORTED_CPUID: nent < 1 is E2BIG; the table is built for at
 * most min(nent, 256) entries and E2BIG if it does not fit, with nothing
 * written back; otherwise the entries, then nent.
 */
static long kvm_dev_get_supported_cpuid(struct kvm_cpuid2 *u)
{
	struct kvm_cpuid2 hdr;
	struct kvm_cpuid_entry2 *e;
	int r = gm_copy_from_user(&hdr, u, sizeof(hdr));

	if (r)
		return r;
	if (hdr.nent < 1)
		return -E2BIG;
	if (hdr.nent > KVM_MAX_CPUID_ENTRIES)
		hdr.nent = KVM_MAX_CPUID_ENTRIES;
	e = calloc(hdr.nent, sizeof(*e));
	if (!e)
		return -ENOMEM;
	r = kvm_supported_cpuid(e, hdr.nent);
	if (r >= 0) {
		hdr.nent = (uint32_t)r;
		r = gm_copy_to_user(u->entries, e, hdr.nent * sizeof(*e));
		if (!r)
			r = gm_copy_to_user(u, &hdr, sizeof(hdr));
	}
	free(e);
	return r;
}

/* KVM_SET_IDENTITY_MAP_ADDR: refused once a vCPU exists, before the copy. */
static long kvm_vm_set_identity_map_addr(struct kvm *kvm, unsigned long arg)
{
	uint64_t addr;
	int r = 0;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (kvm->created_vcpus)
		r = -EINVAL;
	else
		r = gm_copy_from_user(&addr, (const void *)arg, sizeof(addr));
	gm_mutex_unlock(&kvm->lock);
	/* Nothing uses the address: there is no real-mode TSS to emulate. */
	return r;
}

/* ---- KVM_CREATE_VCPU ---------------------------------------------------------- */

/* Under kvm->lock, after the EEXIST check: the fd, anon_inode:kvm-vcpu:N. */
static int vcpu_install_fd(struct kvm_vcpu *v, void *ctx)
{
	char name[40];
	struct gm_file *f;
	int r;

	(void)ctx;
	snprintf(name, sizeof(name), "anon_inode:kvm-vcpu:%u", v->vcpu_id);
	r = gm_file_create(GM_FILE_VCPU, &gm_vcpu_fops, name, O_RDWR, true, 0, &f);
	if (r)
		return r;
	f->obj = v;
	f->kvm = v->kvm;
	return gm_file_install(f);
}

/*
 * KVM_SET_BOOT_CPU_ID: only before the first vCPU (EBUSY after); an id
 * beyond the VM's id limit is EINVAL (x86, as of 6.8; from the source as
 * remembered, not probed).
 */
static long kvm_vm_set_boot_cpu_id(struct kvm *kvm, unsigned long arg)
{
	long r = 0;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (kvm->created_vcpus)
		r = -EBUSY;
	else if (arg > KVM_MAX_VCPU_IDS || (kvm->max_vcpu_ids && arg > kvm->max_vcpu_ids))
		r = -EINVAL;
	else
		WRITE_ONCE(kvm->bsp_vcpu_id, (uint32_t)arg);
	gm_mutex_unlock(&kvm->lock);
	return r;
}

long gm_vm_ioctl_vcpu(struct gm_file *f, struct kvm *kvm, unsigned long cmd,
		      unsigned long arg, bool *handled)
{
	(void)f;
	*handled = true;
	switch (cmd) {
	case KVM_CREATE_VCPU: {
		long r = kvm_vm_ioctl_create_vcpu(kvm, arg, vcpu_install_fd, NULL);

		/*
		 * A vCPU that will run the VMM's machine code needs its memslot
		 * RAM converted (src/core/gmemfd.c).  The RAM there now is
		 * converted now, not at the first KVM_RUN: a VMM (the selftests)
		 * writes guest memory from one thread while another vCPU's
		 * thread enters the guest, and a write between the conversion's
		 * copy and its mmap is lost.  Slots added later (memslot_perf_test
		 * adds 32,763 after its vCPU) still wait for that KVM_RUN's batch.
		 */
		if (r >= 0 && READ_ONCE(gm_uapi_drop_in) && !kvm_guest_default_fn())
			kvm_shared_ram_prepare(kvm);
		return r;
	}
	case KVM_SET_TSS_ADDR:
		/* Three pages below 4 GiB; the vendor part accepts any. */
		return arg > 0xfffffffful - 3 * 4096 ? -EINVAL : 0;
	case KVM_SET_IDENTITY_MAP_ADDR:
		return kvm_vm_set_identity_map_addr(kvm, arg);
	case KVM_SET_BOOT_CPU_ID:
		return kvm_vm_set_boot_cpu_id(kvm, arg);
	case KVM_RESET_DIRTY_RINGS:
		return kvm_vm_ioctl_reset_dirty_rings(kvm);
	}
	return gm_vm_ioctl_x86(kvm, (unsigned int)cmd, arg, handled);
}

long gm_dev_ioctl_vcpu(struct gm_file *f, unsigned long cmd, unsigned long arg,
		       bool *handled)
{
	(void)f;
	*handled = true;
	switch (cmd) {
	case KVM_GET_SUPPORTED_CPUID:
		return kvm_dev_get_supported_cpuid((struct kvm_cpuid2 *)arg);
	}
	return gm_dev_ioctl_x86((unsigned int)cmd, arg, handled);
}
