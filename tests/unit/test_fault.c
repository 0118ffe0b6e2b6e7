/* SPDX-License-Identifier: MIT */
/*
 * The stage-2 fault path (spec kvm-gmem-spec.md §4.5, §4.6, §4.8) against
 * VMs built through the core: every outcome (install, retry, MMIO,
 * memory-fault exit, plain EFAULT), the level choice, the pre-checks and
 * the mmu_lock accounting.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "harness.h"

#include <guestmem/kvm.h>

#include "core/gmem.h"
#include "core/kvm_host.h"
#include "lib/rcu.h"
#include "mmu/fault.h"
#include "mmu/mmu.h"
#include "lib/lockdep.h"

#define MB (1ULL << 20)
#define SLOT_GPA 0x100000000ULL /* 4 GiB */
#define SLOT_SIZE (4 * MB)
#define SLOT_GFN (SLOT_GPA >> 12)

struct fx {
	struct kvm *kvm;
	struct kvm_gmem *gmem;
	uint8_t *mem;	 /* 2 MiB aligned shared backing */
	void *map;	 /* the whole reservation, for munmap */
	size_t map_len;
	struct kvm_fault_stat st;
};

/* ---- helpers ---------------------------------------------------------------- */

static uint8_t *alloc_aligned(struct fx *x, size_t size)
{
	x->map_len = size + 2 * MB;
	x->map = mmap(NULL, x->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(x->map != MAP_FAILED);
	return (uint8_t *)(((uintptr_t)x->map + 2 * MB - 1) & ~(uintptr_t)(2 * MB - 1));
}

static int set_region(struct kvm *kvm, uint32_t slot, uint32_t flags, uint64_t gpa,
		      uint64_t size, void *hva, struct kvm_gmem *gmem)
{
	struct kvm_userspace_memory_region2 m = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
	};
	struct kvm_gmem_ref ref = { .err = gmem ? 0 : -EBADF, .gmem = gmem };

	return kvm_set_memory_region(kvm, &m, true, &ref);
}

static void set_private(struct kvm *kvm, gfn_t start, gfn_t end, bool priv)
{
	ASSERT_EQ(kvm_vm_set_mem_attributes(kvm, start, end,
						   priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0), 0);
}

static int fault(struct fx *x, gpa_t gpa, bool write, struct kvm_page_fault *f)
{
	return kvm_mmu_page_fault(x->kvm, gpa, write, &x->st, f);
}

static uint64_t lookup(struct kvm *kvm, gfn_t gfn, int *level)
{
	uint64_t e;

	gm_rcu_read_lock();
	e = kvm_mmu_lookup(kvm, gfn, level);
	gm_rcu_read_unlock();
	return e;
}

/* A SW-protected VM with a 4 MiB guest_memfd slot at 4 GiB (shared view 2M-aligned). */
static int setup_private(void **state)
{
	struct kvm_create_guest_memfd args = { .size = SLOT_SIZE };
	struct fx *x = calloc(1, sizeof(*x));

	ASSERT_EQ(gm_config_set("linux-6.8", "KVM_SW_PROTECTED_VM=y", "memfd"), 0);
	ASSERT_EQ(kvm_create_vm(KVM_X86_SW_PROTECTED_VM, &x->kvm), 0);
	ASSERT_EQ(kvm_gmem_create(x->kvm, &args, &x->gmem), 0);
	x->mem = alloc_aligned(x, SLOT_SIZE);
	ASSERT_EQ(set_region(x->kvm, 10, KVM_MEM_GUEST_MEMFD, SLOT_GPA, SLOT_SIZE,
				    x->mem, x->gmem), 0);
	kvm_mmu_set_fault_precheck(true);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	if (x->gmem)
		kvm_gmem_put(x->gmem);
	kvm_put_kvm(x->kvm);
	munmap(x->map, x->map_len);
	free(x);
	return 0;
}

/* ---- shared faults ------------------------------------------------------------ */

TEST_F(test_shared_fault_maps_2m, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;
	int level = 0;
	uint64_t e;

	/* The host backs the first block wholly (resident, as a THP would be). */
	memset(x->mem, 0x5a, 2 * MB);
	ASSERT_EQ(fault(x, SLOT_GPA + 5 * 4096 + 17, true, &f), KVM_PF_FIXED);
	ASSERT_FALSE(f.is_private);
	ASSERT_EQ(f.level, S2_PG_LEVEL_2M);
	e = lookup(x->kvm, SLOT_GFN + 300, &level);
	ASSERT_EQ(level, S2_PG_LEVEL_2M);
	ASSERT_EQ(e & S2_ADDR_MASK, (uint64_t)(uintptr_t)x->mem);
	ASSERT_TRUE(e & S2_WRITABLE);
	ASSERT_FALSE(e & S2_PRIVATE);
	/* The second 2 MiB block is still unmapped. */
	ASSERT_EQ(lookup(x->kvm, SLOT_GFN + 512, &level), 0);
	ASSERT_EQ(x->st.faults, 1);
	ASSERT_EQ(x->st.lock_acq, 1);
	ASSERT_EQ(x->st.huge_maps, 1);
	/* Untouched host memory is not backed huge: 4 KiB there. */
	ASSERT_EQ(fault(x, SLOT_GPA + 2 * MB, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
}

TEST_F(test_shared_partial_host_block, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	/* A hole in the host mapping: 4 KiB there, EFAULT (no info) on the hole. */
	ASSERT_EQ(munmap(x->mem + 4096, 4096), 0);
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
	ASSERT_EQ(fault(x, SLOT_GPA + 4096, false, &f), KVM_PF_EXIT);
	ASSERT_EQ(f.error, -EFAULT);
	ASSERT_FALSE(f.memory_fault);
	ASSERT_EQ(x->st.memory_fault_exits, 0);
}

/* The host's protection decides like hva_to_pfn: read-only maps, no write. */
TEST_F(test_shared_host_protection, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;
	int level;

	ASSERT_EQ(mprotect(x->mem, 4096, PROT_READ), 0);
	ASSERT_EQ(mprotect(x->mem + 4096, 4096, PROT_NONE), 0);
	ASSERT_EQ(fault(x, SLOT_GPA, true, &f), KVM_PF_EXIT);
	ASSERT_EQ(f.error, -EFAULT);
	ASSERT_FALSE(f.memory_fault);
	/* A read maps it, read-only: a later write faults again and fails. */
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_FIXED);
	ASSERT_FALSE(lookup(x->kvm, SLOT_GFN, &level) & S2_WRITABLE);
	ASSERT_EQ(fault(x, SLOT_GPA + 4096, false, &f), KVM_PF_EXIT);
	ASSERT_EQ(f.error, -EFAULT);
	/* A writable page is mapped writable even for a read (as KVM does). */
	ASSERT_EQ(fault(x, SLOT_GPA + 8192, false, &f), KVM_PF_FIXED);
	ASSERT_TRUE(lookup(x->kvm, SLOT_GFN + 2, &level) & S2_WRITABLE);
}

TEST_F(test_no_slot_is_mmio, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	ASSERT_EQ(fault(x, 0xd0000000, false, &f), KVM_PF_EMULATE);
	ASSERT_EQ(fault(x, 0xd0000000, true, &f), KVM_PF_EMULATE);
	/* No slot: no lock taken, nothing installed. */
	ASSERT_EQ(x->st.lock_acq, 0);
	ASSERT_EQ(kvm_mmu_nr_leaves(x->kvm), 0);
}

TEST_F(test_readonly_slot, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;
	int level;

	ASSERT_EQ(set_region(x->kvm, 11, KVM_MEM_READONLY, 0x200000, 2 * MB,
				    x->mem + 2 * MB, NULL), 0);
	ASSERT_EQ(fault(x, 0x200000, true, &f), KVM_PF_EMULATE);
	ASSERT_EQ(fault(x, 0x200000, false, &f), KVM_PF_FIXED);
	ASSERT_FALSE(lookup(x->kvm, 0x200, &level) & S2_WRITABLE);
}

TEST_F(test_mixed_block_maps_4k, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	memset(x->mem, 0, SLOT_SIZE); /* host-resident: only the attributes decide */
	set_private(x->kvm, SLOT_GFN + 7, SLOT_GFN + 8, true);
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
	/* The other 2 MiB block is uniform: huge again. */
	ASSERT_EQ(fault(x, SLOT_GPA + 2 * MB, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_2M);
}

/* A block that held small leaves once keeps its table: map 4 KiB pages in it. */
TEST_F(test_block_with_table_maps_4k, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;
	int level;

	set_private(x->kvm, SLOT_GFN, SLOT_GFN + 1, true);
	ASSERT_EQ(fault(x, SLOT_GPA, true, &f), KVM_PF_FIXED);
	set_private(x->kvm, SLOT_GFN, SLOT_GFN + 1, false); /* zaps the leaf only */
	ASSERT_EQ(fault(x, SLOT_GPA + 4096, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
	ASSERT_EQ(lookup(x->kvm, SLOT_GFN + 1, &level) & S2_ADDR_MASK,
			 (uint64_t)(uintptr_t)(x->mem + 4096));
	ASSERT_EQ(lookup(x->kvm, SLOT_GFN, &level), 0);
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(lookup(x->kvm, SLOT_GFN, &level) & S2_ADDR_MASK,
			 (uint64_t)(uintptr_t)x->mem);
	ASSERT_EQ(x->st.retries, 0);
}

TEST_F(test_misaligned_hva_maps_4k, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	/* gfn and hva not congruent modulo 2 MiB: never huge (§4.8). */
	ASSERT_EQ(set_region(x->kvm, 11, 0, 0x400000, 2 * MB, x->mem + 4096, NULL), 0);
	ASSERT_EQ(fault(x, 0x400000 + 8192, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
}

/* ---- private faults ------------------------------------------------------------ */

TEST_F(test_private_fault, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;
	int level = 0;
	uint64_t e;

	x->mem[3 * 4096] = 0xcc; /* the shared view must not show through */
	set_private(x->kvm, SLOT_GFN + 3, SLOT_GFN + 4, true);
	ASSERT_EQ(fault(x, SLOT_GPA + 3 * 4096, true, &f), KVM_PF_FIXED);
	ASSERT_TRUE(f.is_private);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
	e = lookup(x->kvm, SLOT_GFN + 3, &level);
	ASSERT_EQ(level, S2_PG_LEVEL_4K);
	ASSERT_TRUE(e & S2_PRIVATE);
	ASSERT_NE(e & S2_ADDR_MASK, (uint64_t)(uintptr_t)(x->mem + 3 * 4096));
	ASSERT_EQ(*(uint8_t *)(uintptr_t)(e & S2_ADDR_MASK), 0); /* zeroed */
	ASSERT_EQ(kvm_gmem_nr_allocated(x->gmem), 1);
}

static void assert_memory_fault(const struct kvm_page_fault *f, int err, bool priv)
{
	ASSERT_TRUE(f->memory_fault);
	ASSERT_EQ(f->error, err);
	ASSERT_EQ(f->is_private, priv);
}

TEST_F(test_private_without_guest_memfd, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	ASSERT_EQ(set_region(x->kvm, 11, 0, 0xc0000000, 2 * MB, x->mem + 2 * MB, NULL), 0);
	set_private(x->kvm, 0xc0000, 0xc0001, true);
	ASSERT_EQ(fault(x, 0xc0000123, false, &f), KVM_PF_EXIT);
	assert_memory_fault(&f, -EFAULT, true);
	ASSERT_EQ(f.gfn, 0xc0000);
	ASSERT_EQ(x->st.memory_fault_exits, 1);
}

TEST_F(test_private_without_slot, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	set_private(x->kvm, 0xe0000, 0xe0001, true);
	ASSERT_EQ(fault(x, 0xe0000000, true, &f), KVM_PF_EXIT);
	assert_memory_fault(&f, -EFAULT, true);
	/* Shared again: an ordinary MMIO access. */
	set_private(x->kvm, 0xe0000, 0xe0001, false);
	ASSERT_EQ(fault(x, 0xe0000000, true, &f), KVM_PF_EMULATE);
}

TEST_F(test_private_gmem_released, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	set_private(x->kvm, SLOT_GFN, SLOT_GFN + 1, true);
	kvm_gmem_put(x->gmem); /* the last file reference: release */
	x->gmem = NULL;
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_EXIT);
	assert_memory_fault(&f, -EFAULT, true);
}

TEST_F(test_private_poisoned, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	set_private(x->kvm, SLOT_GFN, SLOT_GFN + 8, true);
	ASSERT_EQ(kvm_gmem_error_page(x->gmem, 5), 0);
	ASSERT_EQ(fault(x, SLOT_GPA + 5 * 4096, false, &f), KVM_PF_EXIT);
	assert_memory_fault(&f, -EHWPOISON, true);
	ASSERT_EQ(fault(x, SLOT_GPA + 4 * 4096, false, &f), KVM_PF_FIXED);
}

/* 6.18: a slot bound to an MMAP guest_memfd takes even shared pages from it. */
TEST(test_gmem_only_slot_618)
{
	struct kvm_create_guest_memfd args = {
		.size = 2 * MB, .flags = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED,
	};
	struct kvm_page_fault f;
	struct kvm_gmem *gmem;
	struct kvm_fault_stat st = { 0 };
	struct kvm *kvm;
	int level;
	uint64_t e;

	ASSERT_EQ(gm_config_set("linux-6.18", "KVM_SW_PROTECTED_VM=y", "memfd"), 0);
	ASSERT_EQ(kvm_create_vm(KVM_X86_DEFAULT_VM, &kvm), 0);
	ASSERT_EQ(kvm_gmem_create(kvm, &args, &gmem), 0);
	ASSERT_EQ(set_region(kvm, 1, KVM_MEM_GUEST_MEMFD, SLOT_GPA, 2 * MB, NULL, gmem), 0);
	ASSERT_EQ(kvm_mmu_page_fault(kvm, SLOT_GPA + 4096, true, &st, &f), KVM_PF_FIXED);
	ASSERT_FALSE(f.is_private);
	ASSERT_EQ(f.level, S2_PG_LEVEL_4K);
	e = lookup(kvm, SLOT_GFN + 1, &level);
	ASSERT_TRUE(e & S2_PRIVATE); /* "from guest_memfd" */
	ASSERT_TRUE(e & S2_WRITABLE);
	ASSERT_EQ(kvm_gmem_nr_allocated(gmem), 1);
	kvm_gmem_put(gmem);
	kvm_put_kvm(kvm);
	ASSERT_EQ(gm_config_set("linux-6.8", NULL, NULL), 0);
}

/* ---- the invalidation protocol ------------------------------------------------------- */

static void invalidate_begin(struct kvm *kvm, gfn_t start, gfn_t end)
{
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, start, end);
	gm_rwlock_unlock(&kvm->mmu_lock);
}

static void invalidate_end(struct kvm *kvm)
{
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_end(kvm);
	gm_rwlock_unlock(&kvm->mmu_lock);
}

TEST_F(test_retry_in_range, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_page_fault f;

	invalidate_begin(x->kvm, SLOT_GFN, SLOT_GFN + 1);
	/* Pre-check on: retried before the lock. */
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_RETRY);
	ASSERT_EQ(x->st.lock_acq, 0);
	/* Off: the locked check catches it, at the cost of the lock. */
	kvm_mmu_set_fault_precheck(false);
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_RETRY);
	ASSERT_EQ(x->st.lock_acq, 1);
	kvm_mmu_set_fault_precheck(true);
	/* Outside the range nothing stops a fault (4 KiB: gfn 0 is in its block). */
	ASSERT_EQ(fault(x, SLOT_GPA + 2 * MB, false, &f), KVM_PF_FIXED);
	invalidate_end(x->kvm);
	ASSERT_EQ(fault(x, SLOT_GPA, false, &f), KVM_PF_FIXED);
	ASSERT_EQ(x->st.retries, 2);
	ASSERT_EQ(x->st.faults, 4);
}

struct bg_fault {
	struct fx *x;
	gpa_t gpa;
	int result;
	pid_t tid;
};

static void *bg_fault_fn(void *arg)
{
	struct bg_fault *b = arg;
	struct kvm_page_fault f;

	__atomic_store_n(&b->tid, gettid(), __ATOMIC_RELEASE);
	b->result = fault(b->x, b->gpa, false, &f);
	return NULL;
}

/* A writer holds mmu_lock: the fault waits outside RCU and retries. */
TEST_F(test_lock_busy_waits_and_retries, setup_private, teardown)
{
	struct fx *x = *state;
	struct bg_fault b = { x, SLOT_GPA, -1, 0 };
	pthread_t t;

	gm_rwlock_wrlock(&x->kvm->mmu_lock, GM_LOCK_MMU);
	ASSERT_EQ(pthread_create(&t, NULL, bg_fault_fn, &b), 0);
	/* Wait until it blocks on mmu_lock (no timing guess). */
	ASSERT_WAIT(__atomic_load_n(&b.tid, __ATOMIC_ACQUIRE) && READ_ONCE(x->st.faults) &&
		    test_thread_blocked(b.tid), 10000);
	/* A whole invalidation while the fault waits: seq moves. */
	kvm_mmu_invalidate_begin(x->kvm);
	kvm_mmu_invalidate_range_add(x->kvm, SLOT_GFN + 512, SLOT_GFN + 513);
	kvm_mmu_invalidate_end(x->kvm);
	/* A grace period with mmu_lock held must not deadlock with the fault. */
	gm_synchronize_rcu();
	gm_rwlock_unlock(&x->kvm->mmu_lock);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(b.result, KVM_PF_RETRY);
	ASSERT_EQ(x->st.retries, 1);
	ASSERT_EQ(x->st.lock_acq, 1); /* the wait, not an install */
	ASSERT_EQ(kvm_mmu_nr_leaves(x->kvm), 0);
}

/* The pre-check is a hint: a moved seq alone makes it retry too. */
TEST_F(test_stale_seq, setup_private, teardown)
{
	struct fx *x = *state;
	struct kvm_invalidate_state st;

	kvm_mmu_invalidate_state(x->kvm, &st);
	ASSERT_FALSE(mmu_invalidate_retry_gfn_unsafe(x->kvm, st.seq, SLOT_GFN));
	invalidate_begin(x->kvm, SLOT_GFN + 100, SLOT_GFN + 101);
	invalidate_end(x->kvm);
	ASSERT_TRUE(mmu_invalidate_retry_gfn_unsafe(x->kvm, st.seq, SLOT_GFN));
}

TEST_F(test_precheck_switch, setup_private, teardown)
{
	(void)state;
	ASSERT_TRUE(kvm_mmu_set_fault_precheck(false));
	ASSERT_FALSE(kvm_mmu_fault_precheck_enabled());
	ASSERT_FALSE(kvm_mmu_set_fault_precheck(true));
	ASSERT_TRUE(kvm_mmu_fault_precheck_enabled());
}


int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
