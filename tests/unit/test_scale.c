/* SPDX-License-Identifier: MIT */
/*
 * No per-process mapping cliff (issue #11 item 3), at a size CI affords: a
 * C guest writes private pages scattered one per 2 MiB block over more
 * blocks than vm.max_map_count allows mappings (each private 2 MiB window
 * used to be a host mapping: KVM_RUN failed with ENOMEM after ~65,500, i.e.
 * 128 GiB of blocks), and reads them back.  The host must not pay per
 * block: no mapping, and no host page-table page, per touched block.
 * `guestmem bench scale` runs the full-size case (1,000,000 pages).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "harness.h"

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "core/gmem.h"
#include "lib/reap.h"

#define PG 4096ULL
#define BLOCK (2ULL << 20)
#define GPA (4ULL << 30)
#define GMEM_SIZE (256ULL << 30) /* 131,072 blocks */

struct usage {
	long long anon, shmem, pte, vmas; /* bytes; VMAs: lines of /proc/self/maps */
};

static long long status_kb(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	ASSERT_NOT_NULL(p);
	return strtoll(p + strlen(key), NULL, 10);
}

static void usage_get(struct usage *u)
{
	static char buf[8192];
	FILE *f = fopen("/proc/self/status", "r");
	size_t n;
	int c;

	ASSERT_NOT_NULL(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	u->anon = status_kb(buf, "RssAnon:") << 10;
	u->shmem = status_kb(buf, "RssShmem:") << 10;
	u->pte = status_kb(buf, "VmPTE:") << 10;
	f = fopen("/proc/self/maps", "r");
	ASSERT_NOT_NULL(f);
	u->vmas = 0;
	while ((c = getc(f)) != EOF)
		u->vmas += c == '\n';
	fclose(f);
}

static long max_map_count(void)
{
	return test_read_long("/proc/sys/vm/max_map_count", 65530);
}

struct scatter {
	uint64_t pages, blocks, done, bad;
};

/* Page @i: block i * odd (a permutation of the blocks), a page inside. */
static uint64_t scatter_gpa(uint64_t i, uint64_t blocks)
{
	uint64_t block = (blocks - 1 - i * 0x9e3779b97f4a7c15ULL) & (blocks - 1);

	return GPA + block * BLOCK + ((i * 2654435761ULL >> 7) % (BLOCK / PG)) * PG;
}

static void guest_scatter(struct guestmem_guest *g)
{
	struct scatter *s = guestmem_guest_opaque(g);

	for (uint64_t i = 0; i < s->pages; i++) {
		guestmem_guest_write64(g, scatter_gpa(i, s->blocks), i ^ 0x5a5a);
		s->done = i + 1;
	}
	for (uint64_t i = 0; i < s->pages; i++)
		s->bad += guestmem_guest_read64(g, scatter_gpa(i, s->blocks)) != (i ^ 0x5a5a);
}

TEST(test_scattered_blocks_beyond_map_count)
{
	/* More blocks than mappings allowed, and more than 128 GiB of them. */
	long limit = max_map_count();
	uint64_t pages = (uint64_t)(limit < 65536 ? 65536 : limit) + 4096;
	struct kvm_create_guest_memfd cg = { .size = GMEM_SIZE };
	struct kvm_userspace_memory_region2 mr = { 0 };
	struct kvm_memory_attributes ma = { GPA, GMEM_SIZE, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
	struct scatter s = { .pages = pages, .blocks = GMEM_SIZE / BLOCK };
	struct guestmem_vm *vm;
	struct guestmem_gmem *gmem;
	struct guestmem_vcpu *vcpu;
	struct usage before, during, after;
	struct kvm_run *run;
	long long bound;
	void *hva;

	if (pages > s.blocks)
		SKIP("vm.max_map_count %ld: more blocks than a 256 GiB guest_memfd has", limit);
	hva = mmap(NULL, GMEM_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_TRUE(hva != MAP_FAILED);
	usage_get(&before);
	ASSERT_EQ(guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &vm), 0);
	ASSERT_EQ(guestmem_gmem_create(vm, &cg, &gmem), 0);
	mr.flags = KVM_MEM_GUEST_MEMFD;
	mr.guest_phys_addr = GPA;
	mr.memory_size = GMEM_SIZE;
	mr.userspace_addr = (uint64_t)(uintptr_t)hva;
	ASSERT_EQ(guestmem_set_memory_region(vm, &mr, gmem), 0);
	ASSERT_EQ(guestmem_set_memory_attributes(vm, &ma), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 0, &vcpu), 0);
	ASSERT_EQ(guestmem_vcpu_set_guest(vcpu, guest_scatter, &s), 0);
	run = guestmem_vcpu_run_struct(vcpu);

	/* No ENOMEM from the host's mapping limit: the guest finishes. */
	ASSERT_EQ(guestmem_vcpu_run(vcpu), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_SHUTDOWN);
	ASSERT_EQ(s.done, pages);
	ASSERT_EQ(s.bad, 0);
	ASSERT_EQ(kvm_gmem_nr_allocated((struct kvm_gmem *)gmem), pages);

	usage_get(&during);
	/* A handful of mappings, not one per block. */
	ASSERT_LE(during.vmas - before.vmas, 64);
	/* Host page tables: dense (~8 bytes a page), not 4 KiB per block. */
	ASSERT_LE(during.pte - before.pte, (long long)(pages * 64));
	/*
	 * Everything: the pages, a stage-2 table page per block, 64 bytes a
	 * page; 1/8 more for a sanitizer's shadow of what its code touched.
	 */
	bound = (long long)(pages * (PG + PG + 64));
	ASSERT_LE((during.anon - before.anon) + (during.shmem - before.shmem) +
			  (during.pte - before.pte), bound + bound / 8);

	guestmem_vcpu_put(vcpu);
	guestmem_gmem_put(gmem);
	guestmem_vm_put(vm);
	gm_reap_wait();
	usage_get(&after);
	/* All of it went back to the host (the page tables with it). */
	ASSERT_LE(after.shmem - before.shmem, 1 << 20);
	ASSERT_LE(after.pte - before.pte, 1 << 20);
	munmap(hva, GMEM_SIZE);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
