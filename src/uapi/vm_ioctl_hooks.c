// SPDX-License-Identifier: MIT
/*
 * Default hooks for the ioctls that src/uapi/vcpu_ioctl.c provides: none.
 * Built only while that file does not exist (src/uapi/meson.build), so
 * that exactly one strong definition is in the library; a weak default
 * would lose against nothing when vcpu_ioctl.o sits unreferenced in the
 * static archive.
 */
#include "uapi.h"

long gm_vm_ioctl_vcpu(struct gm_file *f, struct kvm *kvm, unsigned long cmd,
		      unsigned long arg, bool *handled)
{
	(void)f;
	(void)kvm;
	(void)cmd;
	(void)arg;
	*handled = false;
	return 0;
}

long gm_dev_ioctl_vcpu(struct gm_file *f, unsigned long cmd, unsigned long arg,
		       bool *handled)
{
	(void)f;
	(void)cmd;
	(void)arg;
	*handled = false;
	return 0;
}
