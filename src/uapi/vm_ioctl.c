// SPDX-License-Identifier: MIT
/*
 * VM-fd ioctls (spec §3.2-§3.7), in the kernel's check order: the caller
 * must be the creating process and the VM alive (EIO), then the argument is
 * copied in (EFAULT), then the core validates it.  Commands that are not
 * compiled into the active Kconfig fall through to the x86 default, ENOTTY,
 * before anything is copied.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "core/config.h"
#include "core/gmem.h"
#include "core/kvm_host.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "uapi.h"

/*
 * Resolve region2.guest_memfd the way kvm_gmem_bind()'s fget does: a closed
 * fd is EBADF, an open fd that is no guest_memfd is EINVAL.  On success the
 * caller owns a file reference in gref->gmem.
 */
static void gm_resolve_gmem(unsigned int fd, struct kvm_gmem_ref *gref)
{
	struct gm_file *f;

	gref->err = 0;
	gref->gmem = NULL;
	/* guestmem's own descriptors are not open to the VMM (lib/ownfd.h). */
	if (fd > INT_MAX || gm_fd_is_own((int)fd) || gm_raw_fcntl((int)fd, F_GETFD, 0) < 0) {
		gref->err = -EBADF;
		return;
	}
	f = gm_file_lookup((int)fd);
	if (!f || f->type != GM_FILE_GMEM) {
		gref->err = -EINVAL;
	} else if (kvm_gmem_tryget(f->obj)) {
		gref->gmem = f->obj;
	} else {
		gref->err = -EBADF; /* its last reference is going away */
	}
	if (f)
		gm_file_put(f);
}

static long gm_vm_set_region(struct kvm *kvm, unsigned long arg, bool v2)
{
	struct kvm_userspace_memory_region2 mem;
	struct kvm_gmem_ref gref = { 0 };
	int ret;

	/* v1 is the first 32 bytes of v2; the tail reads as zero. */
	memset(&mem, 0, sizeof(mem));
	ret = gm_copy_from_user(&mem, (const void *)arg,
				v2 ? sizeof(mem) : sizeof(struct kvm_userspace_memory_region));
	if (ret)
		return ret;
	if (mem.flags & KVM_MEM_GUEST_MEMFD)
		gm_resolve_gmem(mem.guest_memfd, &gref);
	ret = kvm_set_memory_region(kvm, &mem, v2, &gref);
	if (gref.gmem)
		kvm_gmem_put(gref.gmem); /* a memslot keeps no file reference */
	if (!ret && mem.memory_size)
		gm_uapi_hva_note(mem.userspace_addr, mem.userspace_addr + mem.memory_size);
	return ret;
}

static long gm_vm_enable_cap(struct kvm *kvm, unsigned long arg)
{
	struct kvm_enable_cap cap;
	int ret = gm_copy_from_user(&cap, (const void *)arg, sizeof(cap));

	if (ret)
		return ret;
	return kvm_vm_enable_cap(kvm, cap.cap, cap.flags, (const uint64_t *)cap.args);
}

static long gm_vm_set_attributes(struct kvm *kvm, unsigned long arg)
{
	struct kvm_memory_attributes attrs;
	int ret;

	if (!gm_cfg_mem_attributes(&kvm->cfg))
		return -ENOTTY; /* not compiled in: the arch default */
	ret = gm_copy_from_user(&attrs, (const void *)arg, sizeof(attrs));
	if (ret)
		return ret;
	return kvm_vm_ioctl_set_mem_attributes(kvm, &attrs);
}

static long gm_vm_create_gmem(struct kvm *kvm, unsigned long arg)
{
	struct kvm_create_guest_memfd args;
	struct kvm_gmem *gmem;
	struct gm_file *f;
	int ret;

	if (!gm_cfg_private_mem(&kvm->cfg))
		return -ENOTTY;
	ret = gm_copy_from_user(&args, (const void *)arg, sizeof(args));
	if (ret)
		return ret;
	/* Not close-on-exec; O_RDWR|GM_O_LARGEFILE (spec §3.3). */
	ret = gm_file_create(GM_FILE_GMEM, &gm_gmem_fops, "anon_inode:[kvm-gmem]",
			     O_RDWR | GM_O_LARGEFILE, false, args.size, &f);
	if (ret)
		return ret;
	ret = kvm_gmem_create(kvm, &args, &gmem);
	if (ret) {
		gm_file_abort(f);
		return ret;
	}
	f->obj = gmem;
	f->kvm = kvm;
	return gm_file_install(f);
}

static long gm_vm_get_dirty_log(struct kvm *kvm, unsigned long arg)
{
	struct kvm_dirty_log log;
	int ret = gm_copy_from_user(&log, (const void *)arg, sizeof(log));

	if (ret)
		return ret;
	return kvm_vm_ioctl_get_dirty_log(kvm, log.slot, log.dirty_bitmap, gm_copy_to_user);
}

static long gm_vm_clear_dirty_log(struct kvm *kvm, unsigned long arg)
{
	struct kvm_clear_dirty_log log;
	int ret = gm_copy_from_user(&log, (const void *)arg, sizeof(log));

	if (ret)
		return ret;
	return kvm_vm_ioctl_clear_dirty_log(kvm, log.slot, log.first_page, log.num_pages,
					    log.dirty_bitmap, gm_copy_from_user);
}

static long gm_vm_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg)
{
	struct kvm *kvm = f->obj;
	bool handled = false;
	long r;

	r = gm_kvm_check_caller(kvm);
	if (r)
		return r;
	switch (cmd) {
	case KVM_CHECK_EXTENSION:
		return kvm_check_extension(&kvm->cfg, kvm, (long)arg);
	case KVM_ENABLE_CAP:
		return gm_vm_enable_cap(kvm, arg);
	case KVM_SET_USER_MEMORY_REGION:
		return gm_vm_set_region(kvm, arg, false);
	case KVM_SET_USER_MEMORY_REGION2:
		return gm_vm_set_region(kvm, arg, true);
	case KVM_SET_MEMORY_ATTRIBUTES:
		return gm_vm_set_attributes(kvm, arg);
	case KVM_CREATE_GUEST_MEMFD:
		return gm_vm_create_gmem(kvm, arg);
	case KVM_GET_DIRTY_LOG:
		return gm_vm_get_dirty_log(kvm, arg);
	case KVM_CLEAR_DIRTY_LOG:
		return gm_vm_clear_dirty_log(kvm, arg);
	case KVM_GET_STATS_FD:
		return gm_get_stats_fd(kvm, NULL);
	}
	r = gm_vm_ioctl_irq(kvm, cmd, arg, &handled); /* src/uapi/vm_ioctl_irq.c */
	if (handled)
		return r;
	r = gm_vm_ioctl_vcpu(f, kvm, cmd, arg, &handled);
	return handled ? r : -ENOTTY;
}

static void gm_vm_release(struct gm_file *f)
{
	kvm_put_kvm(f->obj);
}

static void gm_vm_fill_stat(struct gm_file *f, struct stat *st)
{
	(void)f;
	gm_anon_inode_stat(st);
}

const struct gm_file_ops gm_vm_fops = {
	.fops = GM_FOPS_NOOP_LLSEEK | GM_FOPS_ANON_SETATTR,
	.ioctl = gm_vm_ioctl,
	.fill_stat = gm_vm_fill_stat,
	.release = gm_vm_release,
};
