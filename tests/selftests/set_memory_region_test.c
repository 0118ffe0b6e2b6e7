/* SPDX-License-Identifier: MIT */
/*
 * Memslot rules, after the KVM selftest set_memory_region_test
 * (kvm-gmem-spec.md §5.4).  Our own code; TAP output, each sub-test in its
 * own forked child with a timeout.
 *
 * This file has the vCPU-less sub-tests.  The vCPU ones (zero memory
 * regions, move and delete while a guest runs) are added to the `tests`
 * table at the bottom: each entry is a name, a function taking the table
 * argument, and a timeout.
 */
#include <sys/syscall.h>

#include "common.h"

#define MEM_REGION_SIZE (2UL << 20)
#define MEM_REGION_GPA 0xc0000000ULL
#define MEM_REGION_SLOT 10

/* ---- test_invalid_memory_region_flags ------------------------------------ */

/* The VM the flag test uses: protected if the host has the type. */
static int flags_test_vm(void)
{
	if (vm_type_supported(KVM_X86_SW_PROTECTED_VM))
		return vm_create(KVM_X86_SW_PROTECTED_VM);
	return vm_create(KVM_X86_DEFAULT_VM);
}

TEST_TIMEOUT(test_invalid_memory_region_flags, 30)
{
	const uint32_t v2_only = KVM_MEM_GUEST_MEMFD;
	uint32_t supported = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;
	int vm, gmem;

	if (kvm_check_cap(KVM_CAP_MEMORY_ATTRIBUTES) & KVM_MEMORY_ATTRIBUTE_PRIVATE)
		supported |= KVM_MEM_GUEST_MEMFD;
	vm = flags_test_vm();

	for (int bit = 0; bit < 32; bit++) {
		uint32_t f = 1U << bit;

		if ((supported & f) && !(v2_only & f))
			continue;
		/* v1 never takes GUEST_MEMFD nor any unsupported bit (rule 2). */
		ASSERT_ERRNO(__vm_set_region(vm, 0, f, 0, MEM_REGION_SIZE, NULL), EINVAL);
		if (supported & f)
			continue;
		/* v2: an unsupported bit is EINVAL (rule 4); fd 0 is no guest_memfd either. */
		ASSERT_ERRNO(__vm_set_region2(vm, 0, f, 0, MEM_REGION_SIZE, NULL, 0, 0),
				  EINVAL);
	}

	if (supported & KVM_MEM_GUEST_MEMFD) {
		gmem = vm_create_guest_memfd(vm, MEM_REGION_SIZE, 0);
		ASSERT_ERRNO(__vm_set_region2(vm, 0,
						   KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_GUEST_MEMFD,
						   0, MEM_REGION_SIZE, NULL, gmem, 0),
				  EINVAL);
		ASSERT_ERRNO(__vm_set_region2(vm, 0, KVM_MEM_READONLY | KVM_MEM_GUEST_MEMFD,
						   0, MEM_REGION_SIZE, NULL, gmem, 0),
				  EINVAL);
		close(gmem);
	}
	close(vm);
}

/* ---- test_add_max_memory_regions -------------------------------------------- */

TEST_TIMEOUT(test_add_max_memory_regions, 120)
{
	long max_slots = kvm_check_cap(KVM_CAP_NR_MEMSLOTS);
	struct timespec t0, t1;
	uint8_t *mem, *aligned, *extra;
	size_t len;
	int vm;

	ASSERT_MSG(max_slots > 0, "KVM_CAP_NR_MEMSLOTS = %ld", max_slots);
	DIAG("KVM_CAP_NR_MEMSLOTS = %ld", max_slots);
	vm = vm_create(KVM_X86_DEFAULT_VM);

	/* One reservation for all slots, 2 MiB aligned; nothing is touched. */
	len = (size_t)max_slots * MEM_REGION_SIZE + MEM_REGION_SIZE;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_MSG(mem != MAP_FAILED, "mmap %zu bytes: %s", len, errno_name(errno));
	aligned = (uint8_t *)(((uintptr_t)mem + MEM_REGION_SIZE - 1) & ~(MEM_REGION_SIZE - 1));

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t slot = 0; slot < (uint32_t)max_slots; slot++)
		vm_set_region(vm, slot, 0, (uint64_t)slot * MEM_REGION_SIZE, MEM_REGION_SIZE,
			      aligned + (uint64_t)slot * MEM_REGION_SIZE);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	DIAG("created %ld slots in %.3f s", max_slots,
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);

	/* The limit is the slot-id range: id max_slots is invalid. */
	extra = mmap(NULL, MEM_REGION_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_MSG(extra != MAP_FAILED, "mmap: %s", errno_name(errno));
	ASSERT_ERRNO(__vm_set_region(vm, (uint32_t)max_slots, 0,
					  (uint64_t)max_slots * MEM_REGION_SIZE, MEM_REGION_SIZE,
					  extra),
			  EINVAL);

	close(vm);
	munmap(extra, MEM_REGION_SIZE);
	munmap(mem, len);
}

/* ---- private memory regions (x86, SW_PROTECTED) ------------------------------ */

static void require_private_vm(void)
{
	if (!kvm_check_cap(KVM_CAP_GUEST_MEMFD))
		SKIP("KVM_CAP_GUEST_MEMFD not available");
	if (!vm_type_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP("KVM_X86_SW_PROTECTED_VM not supported");
}

static void bind_must_fail(int vm, int fd, uint64_t off, int err)
{
	ASSERT_ERRNO(__vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD,
					   MEM_REGION_GPA, MEM_REGION_SIZE, NULL, fd, off),
			  err);
}

TEST_TIMEOUT(test_add_private_memory_region, 30)
{
	int vm, vm2, kvm, memfd, gmem;

	require_private_vm();
	vm = vm_create(KVM_X86_SW_PROTECTED_VM);

	/* Descriptors that are not guest_memfds (rule 19). */
	kvm = kvm_open();
	bind_must_fail(vm, kvm, 0, EINVAL);
	close(kvm);
	bind_must_fail(vm, vm, 0, EINVAL);
	memfd = (int)syscall(SYS_memfd_create, "set_memory_region_test", 0);
	ASSERT_MSG(memfd >= 0, "memfd_create: %s", errno_name(errno));
	ASSERT_OK(ftruncate(memfd, MEM_REGION_SIZE));
	bind_must_fail(vm, memfd, 0, EINVAL);
	close(memfd);

	/* Another VM's guest_memfd (rule 20); that VM itself may bind it. */
	vm2 = vm_create(KVM_X86_SW_PROTECTED_VM);
	gmem = vm_create_guest_memfd(vm2, MEM_REGION_SIZE, 0);
	bind_must_fail(vm, gmem, 0, EINVAL);
	vm_set_region2(vm2, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD, MEM_REGION_GPA,
		       MEM_REGION_SIZE, NULL, gmem, 0);
	close(gmem);
	close(vm2);

	/* Every unaligned offset (rule 8/21), then the aligned one works. */
	gmem = vm_create_guest_memfd(vm, MEM_REGION_SIZE, 0);
	for (uint64_t off = 1; off < PG_SIZE; off++)
		bind_must_fail(vm, gmem, off, EINVAL);
	vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD, MEM_REGION_GPA,
		       MEM_REGION_SIZE, NULL, gmem, 0);
	close(gmem);
	close(vm);
}

TEST_TIMEOUT(test_add_overlapping_private_memory_regions, 30)
{
	const uint64_t sz = MEM_REGION_SIZE;
	const char *profile;
	int vm, gmem;

	require_private_vm();
	vm = vm_create(KVM_X86_SW_PROTECTED_VM);
	gmem = vm_create_guest_memfd(vm, 4 * sz, 0);

	vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD, MEM_REGION_GPA, 2 * sz, NULL,
		       gmem, 0);
	vm_set_region2(vm, MEM_REGION_SLOT + 1, KVM_MEM_GUEST_MEMFD, 2 * MEM_REGION_GPA, 2 * sz,
		       NULL, gmem, 2 * sz);

	/* Delete the first slot; re-creating it over the second one's gpas is EEXIST. */
	vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD, MEM_REGION_GPA, 0, NULL, -1, 0);
	ASSERT_ERRNO(__vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD,
					   2 * MEM_REGION_GPA - sz, 2 * sz, NULL, gmem, 0),
			  EEXIST);
	ASSERT_ERRNO(__vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD,
					   2 * MEM_REGION_GPA + sz, 2 * sz, NULL, gmem, 0),
			  EEXIST);

	/*
	 * Not in the original: at free gpas, a genuinely overlapping
	 * guest_memfd range is EINVAL in 6.8 and 6.18.44 (rule 22), EEXIST in
	 * 6.12.118 (its binding commit step), and the freed range can be
	 * bound again.
	 */
	profile = getenv("GUESTMEM_PROFILE");
	ASSERT_ERRNO(__vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD,
					   MEM_REGION_GPA, 2 * sz, NULL, gmem, sz),
			  profile && strstr(profile, "6.12") ? EEXIST : EINVAL);
	vm_set_region2(vm, MEM_REGION_SLOT, KVM_MEM_GUEST_MEMFD, MEM_REGION_GPA, 2 * sz, NULL,
		       gmem, 0);
	close(gmem);
	close(vm);
}

/* Cases run in the original's order (their order in this file). */
int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
