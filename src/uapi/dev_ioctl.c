// SPDX-License-Identifier: MIT
/*
 * The system fd: open("/dev/kvm") and its ioctls (spec §2.1, vCPU spec
 * §1.1 and §4.1).  The /dev/kvm handle is a character device in the kernel:
 * opened through open(2) (so pread is "allowed" and fails later, lseek is a
 * no-op), no read/write/mmap methods, and unknown ioctls fall to the x86
 * arch handler, which answers EINVAL.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "core/config.h"
#include "core/kvm_host.h"
#include "lib/sys_raw.h"
#include "uapi.h"
#include "vcpu/vcpu.h"

#define GM_PAGE 4096L

/* KVM_CREATE_VM: the VM fd is close-on-exec and named kvm-vm. */
static long gm_dev_create_vm(unsigned long type)
{
	struct gm_file *f;
	struct kvm *kvm;
	int ret;

	/* The kernel reserves the fd first: a full table wins over a bad type. */
	ret = gm_file_create(GM_FILE_VM, &gm_vm_fops, "anon_inode:kvm-vm", O_RDWR, true, 0, &f);
	if (ret)
		return ret;
	ret = kvm_create_vm(type, &kvm);
	if (ret) {
		gm_file_abort(f);
		return ret;
	}
	/*
	 * Under `guestmem exec` without a C guest, every vCPU runs machine
	 * code in the VM's guest process: private memory is kept there only
	 * (core/backing.h, gm_backing_init_held()).
	 */
	kvm->private_held = READ_ONCE(gm_uapi_drop_in) && !kvm_guest_default_fn();
	f->obj = kvm;
	f->kvm = kvm;
	return gm_file_install(f);
}

static long gm_dev_ioctl(struct gm_file *f, unsigned int cmd, unsigned long arg)
{
	bool handled = false;
	long r;

	switch (cmd) {
	case KVM_GET_API_VERSION:
		return arg ? -EINVAL : KVM_API_VERSION_VALUE;
	case KVM_CREATE_VM:
		return gm_dev_create_vm(arg);
	case KVM_CHECK_EXTENSION:
		return kvm_check_extension(gm_config_get(), NULL, (long)arg);
	case KVM_GET_VCPU_MMAP_SIZE:
		/* kvm_run page + PIO data page + coalesced MMIO ring (x86). */
		return arg ? -EINVAL : 3 * GM_PAGE;
	}
	/*
	 * The old KVM_TRACE_* numbers lost their generic case with the 6.8
	 * uAPI clean-up (their definitions went away), so they reach the x86
	 * default like any unknown number.  x86 system ioctls (CPUID, MSR
	 * lists) live with the vCPU code.
	 */
	r = gm_dev_ioctl_vcpu(f, cmd, arg, &handled);
	return handled ? r : -EINVAL;
}

/*
 * stat of /dev/kvm: the real node's answer when the host has one (a VMM may
 * compare fstat with stat("/dev/kvm")), otherwise what devtmpfs would show.
 */
void gm_dev_stat(struct stat *st)
{
	if (gm_raw_fstatat(AT_FDCWD, "/dev/kvm", st, 0) == 0 && S_ISCHR(st->st_mode))
		return;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFCHR | 0660;
	st->st_rdev = makedev(10, 232);
	st->st_dev = makedev(0, 5);
	st->st_ino = 1;
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = gm_synthetic_file_time();
}

static void gm_dev_fill_stat(struct gm_file *f, struct stat *st)
{
	(void)f;
	gm_dev_stat(st);
}

const struct gm_file_ops gm_dev_fops = {
	.fops = GM_FOPS_NOOP_LLSEEK | GM_FOPS_PREAD | GM_FOPS_ANON_SETATTR,
	.ioctl = gm_dev_ioctl,
	.fill_stat = gm_dev_fill_stat,
};

/* Status flags an open file keeps in f_flags (the kernel drops these). */
#define GM_OPEN_ONLY_FLAGS (O_CREAT | O_EXCL | O_NOCTTY | O_TRUNC | O_CLOEXEC)

int gm_dev_open(int flags)
{
	struct gm_file *f;
	int ret, fd;

	if ((flags & O_CREAT) && (flags & O_EXCL))
		return -EEXIST;
	/*
	 * A bad GUESTMEM_* value (reported once on stderr when the
	 * configuration was read) would otherwise run the VMM on a setting
	 * it did not ask for: no /dev/kvm rather than a silent default.
	 */
	if (gm_config_env_error())
		return -EINVAL;
	if (flags & O_DIRECTORY)
		return -ENOTDIR; /* also O_TMPFILE, which includes it */
	if (flags & O_DIRECT)
		return -EINVAL; /* a character device cannot do direct I/O */
	if ((flags & O_NOATIME) && geteuid() != 0)
		return -EPERM; /* /dev/kvm belongs to root */
	/* x86-64 open(2) always adds GM_O_LARGEFILE. */
	ret = gm_file_create(GM_FILE_SYSTEM, &gm_dev_fops, "/dev/kvm",
			     (flags & ~GM_OPEN_ONLY_FLAGS) | GM_O_LARGEFILE, flags & O_CLOEXEC, 0, &f);
	if (ret)
		return ret;
	/* The settable status bits live on the socket, where F_SETFL puts them. */
	if (flags & (O_NONBLOCK | O_APPEND))
		gm_raw_fcntl(f->app_fd, F_SETFL, flags & (O_NONBLOCK | O_APPEND));
	fd = gm_file_install(f);
	return fd;
}
