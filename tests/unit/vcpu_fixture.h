/* SPDX-License-Identifier: MIT */
/*
 * The start most vCPU unit tests share, through <guestmem/sys.h> as a VMM
 * would: /dev/kvm, a VM of a type, vCPU 0 and its kvm_run mapping, and a C
 * guest on it.  Tests embed struct vcpu_fixture and add their own state.
 */
#ifndef GM_TESTS_VCPU_FIXTURE_H
#define GM_TESTS_VCPU_FIXTURE_H

#include <fcntl.h>
#include <sys/mman.h>

#include <guestmem/guest.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "harness.h"
#include "lib/lockdep.h"
#include "uapi/uapi.h"
#include "vcpu/vcpu.h"

#define VCPU_FIXTURE_RUN_BYTES (3 * 4096) /* kvm_run, PIO data, coalesced ring */

struct vcpu_fixture {
	int kvm, vm, vcpu;
	struct kvm_run *run;
};

static inline void vcpu_fixture_open(struct vcpu_fixture *f, unsigned long type)
{
	f->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(f->kvm >= 0);
	f->vm = guestmem_sys_ioctl(f->kvm, KVM_CREATE_VM, type);
	ASSERT_TRUE(f->vm >= 0);
	f->vcpu = guestmem_sys_ioctl(f->vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(f->vcpu >= 0);
	f->run = guestmem_sys_mmap(NULL, VCPU_FIXTURE_RUN_BYTES, PROT_READ | PROT_WRITE,
				   MAP_SHARED, f->vcpu, 0);
	ASSERT_TRUE(f->run != MAP_FAILED);
}

/* @fn runs as vCPU 0's guest with @opaque; set under vcpu->mutex. */
static inline void vcpu_fixture_set_guest(struct vcpu_fixture *f,
					  void (*fn)(struct guestmem_guest *), void *opaque)
{
	struct gm_file *file = gm_file_lookup(f->vcpu);
	struct kvm_vcpu *v;

	ASSERT_NOT_NULL(file);
	v = file->obj;
	gm_mutex_lock(&v->mutex, GM_LOCK_VCPU);
	ASSERT_EQ(kvm_vcpu_set_guest(v, fn, opaque), 0);
	gm_mutex_unlock(&v->mutex);
	gm_file_put(file);
}

/* Closes what is still open (a test may have closed the vCPU or VM: -1). */
static inline void vcpu_fixture_close(struct vcpu_fixture *f)
{
	guestmem_sys_munmap(f->run, VCPU_FIXTURE_RUN_BYTES);
	if (f->vcpu >= 0)
		guestmem_sys_close(f->vcpu);
	if (f->vm >= 0)
		guestmem_sys_close(f->vm);
	guestmem_sys_close(f->kvm);
}

#endif
