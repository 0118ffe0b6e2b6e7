// SPDX-License-Identifier: MIT
/*
 * The drop-in's mmu notifier (issue #4 item 5): changes a VMM makes to the
 * host memory behind a memslot with munmap, mremap, mprotect and madvise
 * must invalidate the guest's translations, exactly as the kernel's mmu
 * notifier does, so that the next guest access faults again and sees the
 * host's new state: EFAULT from KVM_RUN (no memory_fault info, spec §3.9)
 * when nothing usable is mapped, the new contents otherwise.  A stale
 * translation would instead crash this process (the guest thread would
 * touch an unmapped address) or show old data.
 *
 * Runs under `guestmem exec` (the preload's wrappers) and direct (through
 * guestmem_sys_*, which have the same hooks).
 * The guest (tests/guests/host_mapping_guest.c) loops: load, OUT.
 */
#include <sys/mman.h>

#include "../guests/vcpu_util.h"

#define HOST_MAP_GPA 0x100000ULL
#define HOST_MAP_PORT 0x80
#define HOST_MAP_SLOT 1

struct fixture {
	int vm;
	struct vcpu *v;
	uint8_t *hva; /* 2 pages: the slot's shared memory */
};

/* One KVM_RUN: the value the guest reported, or -errno. */
static long run_once(struct fixture *x)
{
	uint32_t val;

	if (__vcpu_run(x->v))
		return -errno;
	ASSERT_EQ(x->v->run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(x->v->run->io.port, HOST_MAP_PORT);
	memcpy(&val, (char *)x->v->run + x->v->run->io.data_offset, sizeof(val));
	return val;
}

static void fixture_init(struct fixture *x)
{
	require_guest();
	x->vm = vm_create(KVM_X86_DEFAULT_VM);
	x->hva = mmap(NULL, 2 * PG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	ASSERT_MSG(x->hva != MAP_FAILED, "mmap: %s", errno_name(errno));
	*(uint64_t *)x->hva = 0x1111;
	vm_set_region(x->vm, HOST_MAP_SLOT, 0, HOST_MAP_GPA, 2 * PG_SIZE, x->hva);
	x->v = vm_vcpu_add(x->vm, 0);
	ASSERT_EQ(run_once(x), 0x1111); /* translation installed */
}

/* The VM and its vCPU go; the test's own mappings are left as it made them. */
static void fixture_fini(struct fixture *x)
{
	vcpu_free(x->v);
	close(x->vm);
}

TEST_TIMEOUT(test_munmap, 60)
{
	struct fixture x;

	fixture_init(&x);
	ASSERT_EQ(munmap(x.hva, PG_SIZE), 0);
	ASSERT_EQ(run_once(&x), -EFAULT);
	ASSERT_MSG(x.v->run->exit_reason != KVM_EXIT_MEMORY_FAULT, "shared: no memory_fault");
	/* Map something new there: the retried access sees it. */
	ASSERT_MSG(mmap(x.hva, PG_SIZE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == x.hva, "remap");
	*(uint64_t *)x.hva = 0x2222;
	ASSERT_EQ(run_once(&x), 0x2222);
	fixture_fini(&x);
}

TEST_TIMEOUT(test_mprotect, 60)
{
	struct fixture x;

	fixture_init(&x);
	ASSERT_EQ(mprotect(x.hva, PG_SIZE, PROT_NONE), 0);
	ASSERT_EQ(run_once(&x), -EFAULT);
	ASSERT_EQ(mprotect(x.hva, PG_SIZE, PROT_READ), 0);
	ASSERT_EQ(run_once(&x), 0x1111); /* readable again: loads work */
	fixture_fini(&x);
}

TEST_TIMEOUT(test_mremap, 60)
{
	struct fixture x;
	uint8_t *moved, *dst;

	fixture_init(&x);
	/* A reserved destination: MREMAP_FIXED replaces whatever is mapped there. */
	dst = mmap(NULL, 2 * PG_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_MSG(dst != MAP_FAILED, "mmap: %s", errno_name(errno));
	/* Move the pages away: the slot's hva range is empty now. */
	moved = mremap(x.hva, 2 * PG_SIZE, 2 * PG_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	ASSERT_MSG(moved != MAP_FAILED, "mremap: %s", errno_name(errno));
	ASSERT_EQ(run_once(&x), -EFAULT);
	/* And back: the guest sees the same data again. */
	ASSERT_MSG(mremap(moved, 2 * PG_SIZE, 2 * PG_SIZE, MREMAP_MAYMOVE | MREMAP_FIXED,
			   x.hva) == x.hva, "mremap back: %s", errno_name(errno));
	ASSERT_EQ(run_once(&x), 0x1111);
	fixture_fini(&x);
}

TEST_TIMEOUT(test_madvise_remove, 60)
{
	struct fixture x;

	fixture_init(&x);
	/* Shared anonymous memory: MADV_REMOVE frees the page, it reads 0. */
	ASSERT_EQ(madvise(x.hva, PG_SIZE, MADV_REMOVE), 0);
	ASSERT_EQ(run_once(&x), 0);
	*(uint64_t *)x.hva = 0x3333;
	ASSERT_EQ(run_once(&x), 0x3333);
	fixture_fini(&x);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
