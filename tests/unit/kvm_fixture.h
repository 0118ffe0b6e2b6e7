/* SPDX-License-Identifier: MIT */
/*
 * The start the core-level unit tests share: a VM made through the core
 * (no fds), under the 6.8 profile with KVM_SW_PROTECTED_VM and KVM_SMM,
 * and memslots set the way KVM_SET_USER_MEMORY_REGION2 would.
 */
#ifndef GM_TESTS_KVM_FIXTURE_H
#define GM_TESTS_KVM_FIXTURE_H

#include <errno.h>
#include <stdint.h>

#include <guestmem/kvm.h>

#include "harness.h"
#include "core/config.h"
#include "core/kvm_host.h"

static inline int kvm_fixture_setup_type(void **state, unsigned long type)
{
	struct kvm *kvm;

	ASSERT_EQ(gm_config_set("linux-6.8", "KVM_SW_PROTECTED_VM=y KVM_SMM=y", NULL), 0);
	ASSERT_EQ(kvm_create_vm(type, &kvm), 0);
	*state = kvm;
	return 0;
}

/* TEST_F fixtures: a default VM, a KVM_X86_SW_PROTECTED_VM, and teardown. */
static inline int kvm_fixture_setup(void **state)
{
	return kvm_fixture_setup_type(state, 0);
}

static inline int kvm_fixture_setup_private(void **state)
{
	return kvm_fixture_setup_type(state, 1);
}

static inline int kvm_fixture_teardown(void **state)
{
	kvm_put_kvm(*state);
	return 0;
}

/* KVM_SET_USER_MEMORY_REGION2 without a guest_memfd; 0 or -errno. */
static inline int kvm_fixture_set_slot(struct kvm *kvm, uint32_t slot, uint32_t flags,
				       uint64_t gpa, uint64_t size, uint64_t hva)
{
	struct kvm_userspace_memory_region2 r = { 0 };
	struct kvm_gmem_ref ref = { -EBADF, NULL };

	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = hva;
	return kvm_set_memory_region(kvm, &r, true, &ref);
}

#endif
