/* SPDX-License-Identifier: MIT */
/*
 * Shared helpers for the ports of the KVM selftests (our own code, in the
 * spirit of tools/testing/selftests/kvm).
 *
 * - Cases run under tests/harness (one forked process per case, a timeout,
 *   TAP).  Each case creates its own VMs: a VM fd inherited across fork
 *   answers EIO (spec §3.2), exactly as with the kernel.
 * - Two levels of every call, as in the selftest library: __name() returns
 *   the raw result (for negative tests), name() asserts success.
 * - Assertions (harness.h) print both values and the errno name.
 *
 * Like the programs it serves, this compiles in "exec" mode (plain libc, run
 * under `guestmem exec --`) and with -DGM_DIRECT (sysmap.h maps the calls to
 * guestmem_sys_*).
 */
#ifndef GM_SELFTESTS_COMMON_H
#define GM_SELFTESTS_COMMON_H

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "../uapi/sysmap.h"

#define PG_SIZE 4096UL

#define errno_name(e) test_errno_name(e)

/* ---- ioctl wrappers --------------------------------------------------------- */

/* Compile-time check that the argument matches the ioctl's encoded size. */
#define kvm_ioctl(fd, cmd, arg)                                                  \
	({                                                                       \
		_Static_assert(sizeof(*(arg)) == _IOC_SIZE(cmd), "ioctl size");  \
		ioctl(fd, cmd, arg);                                             \
	})

static inline int kvm_open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_MSG(fd >= 0, "open /dev/kvm: %s", errno_name(errno));
	return fd;
}

/* KVM_CHECK_EXTENSION at system scope (0 if /dev/kvm cannot be opened). */
static inline long kvm_check_cap(long cap)
{
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	long r;

	if (kvm < 0)
		return 0;
	r = ioctl(kvm, KVM_CHECK_EXTENSION, cap);
	close(kvm);
	return r;
}

static inline long vm_check_cap(int vm, long cap)
{
	long r = ioctl(vm, KVM_CHECK_EXTENSION, cap);

	ASSERT_MSG(r >= 0, "KVM_CHECK_EXTENSION(%ld): %s", cap, errno_name(errno));
	return r;
}

static inline int __vm_create(unsigned long type)
{
	int kvm = kvm_open(), vm;

	vm = ioctl(kvm, KVM_CREATE_VM, type);
	close(kvm);
	return vm;
}

static inline int vm_create(unsigned long type)
{
	int vm = __vm_create(type);

	ASSERT_MSG(vm >= 0, "KVM_CREATE_VM(%lu): %s", type, errno_name(errno));
	return vm;
}

static inline bool vm_type_supported(unsigned long type)
{
	return kvm_check_cap(KVM_CAP_VM_TYPES) & (1UL << type);
}

static inline int __vm_create_guest_memfd(int vm, uint64_t size, uint64_t flags)
{
	struct kvm_create_guest_memfd a = { .size = size, .flags = flags };

	return kvm_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);
}

static inline int vm_create_guest_memfd(int vm, uint64_t size, uint64_t flags)
{
	int fd = __vm_create_guest_memfd(vm, size, flags);

	ASSERT_MSG(fd >= 0, "KVM_CREATE_GUEST_MEMFD(size %#llx, flags %#llx): %s",
		    (unsigned long long)size, (unsigned long long)flags, errno_name(errno));
	return fd;
}

/* KVM_SET_USER_MEMORY_REGION (v1). */
static inline int __vm_set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				  uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static inline void vm_set_region(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				 uint64_t size, void *hva)
{
	int r = __vm_set_region(vm, slot, flags, gpa, size, hva);

	ASSERT_MSG(r == 0, "SET_USER_MEMORY_REGION slot %u flags %#x gpa %#llx size %#llx: %s",
		    slot, flags, (unsigned long long)gpa, (unsigned long long)size,
		    errno_name(errno));
}

/* KVM_SET_USER_MEMORY_REGION2. */
static inline int __vm_set_region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				   uint64_t size, void *hva, int gmem_fd, uint64_t gmem_off)
{
	struct kvm_userspace_memory_region2 r = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
		.guest_memfd_offset = gmem_off, .guest_memfd = (uint32_t)gmem_fd,
	};

	return kvm_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r);
}

static inline void vm_set_region2(int vm, uint32_t slot, uint32_t flags, uint64_t gpa,
				  uint64_t size, void *hva, int gmem_fd, uint64_t gmem_off)
{
	int r = __vm_set_region2(vm, slot, flags, gpa, size, hva, gmem_fd, gmem_off);

	ASSERT_MSG(r == 0,
		    "SET_USER_MEMORY_REGION2 slot %u flags %#x gpa %#llx size %#llx off %#llx: %s",
		    slot, flags, (unsigned long long)gpa, (unsigned long long)size,
		    (unsigned long long)gmem_off, errno_name(errno));
}

/* test_access_signal() (tests/harness), failing the case if no child ran. */
static inline int access_signal(volatile uint8_t *p, bool write)
{
	int sig = test_access_signal(p, write);

	ASSERT_MSG(sig >= 0, "fork/waitpid: %s", errno_name(errno));
	return sig;
}

#endif
