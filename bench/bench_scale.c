/* SPDX-License-Identifier: MIT */
/*
 * Scale benchmarks (issue #11 item 3), on request: a C guest touches
 * scattered private pages of a guest_memfd of at least 1 TiB, each page in
 * a 2 MiB region of its own (the worst case for page tables), then the VM
 * is destroyed.  Printed against the bound the issue states, computed in
 * the same run from what was touched: the pages themselves, one 4 KiB
 * page-table page per touched 2 MiB region (what the kernel's stage-2
 * tables need) and 64 bytes of bookkeeping per page.  Host memory is the
 * process's growth in anonymous memory, shared memory (the pages, mapped
 * or only allocated in the backing file) and host page tables.
 *
 * The touch time is compared with the same scattered first touches of
 * anonymous memory (a sample), and the teardown with the goal of 1 s.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "bench.h"
#include "core/gmem.h"
#include "lib/compiler.h"
#include "lib/reap.h"

#define PG 4096ULL
#define REGION (2ULL << 20)
#define REGION_PAGES (REGION / PG)
#define TIB (1ULL << 40)
#define GPA (4ULL << 30)
#define ANON_SAMPLE 100000ULL

unsigned long bench_scale_pages = 1000000;

/* ---- what the process uses ---------------------------------------------- */

struct memuse {
	long long anon, shmem, file, pte; /* bytes: RssAnon, RssShmem, RssFile, VmPTE */
	long long vmas;			  /* lines of /proc/self/maps */
};

static long long status_kb(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);

	return p ? strtoll(p + strlen(key), NULL, 10) : 0;
}

static int memuse_get(struct memuse *u)
{
	static char buf[8192];
	FILE *f = fopen("/proc/self/status", "r");
	size_t n;
	int c;

	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	u->anon = status_kb(buf, "RssAnon:") << 10;
	u->shmem = status_kb(buf, "RssShmem:") << 10;
	u->file = status_kb(buf, "RssFile:") << 10;
	u->pte = status_kb(buf, "VmPTE:") << 10;
	f = fopen("/proc/self/maps", "r");
	if (!f)
		return -errno;
	u->vmas = 0;
	while ((c = getc(f)) != EOF)
		u->vmas += c == '\n';
	fclose(f);
	return 0;
}

static long long smaps_rollup_kb(const char *key)
{
	char line[256];
	long long v = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key)))
			v = strtoll(line + strlen(key), NULL, 10);
	fclose(f);
	return v;
}

static long max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* ---- the scattered pattern ---------------------------------------------- */

/*
 * Page @i of the pattern over @regions 2 MiB regions (a power of two): a
 * permutation of the regions (odd multiplier), from the last region down,
 * and a pseudo-random page inside; i = 0 is the file's last page.
 */
static uint64_t scatter_page(uint64_t i, uint64_t regions)
{
	uint64_t region = (regions - 1 - i * 0x9e3779b97f4a7c15ULL) & (regions - 1);
	uint64_t page = i ? (i * 2654435761ULL >> 7) % REGION_PAGES : REGION_PAGES - 1;

	return region * REGION_PAGES + page;
}

struct scale_guest {
	uint64_t pages, regions, touched, ns;
};

static void guest_scatter(struct guestmem_guest *g)
{
	struct scale_guest *s = guestmem_guest_opaque(g);
	uint64_t t0 = bench_now_ns();

	for (uint64_t i = 0; i < s->pages; i++) {
		guestmem_guest_write8(g, GPA + scatter_page(i, s->regions) * PG, 1);
		s->touched = i + 1;
		if ((i + 1) % 100000 == 0)
			bench_progress("%llu pages touched, %.1f s", (unsigned long long)(i + 1),
				       (double)(bench_now_ns() - t0) / 1e9);
	}
	s->ns = bench_now_ns() - t0;
}

static int no_exit(struct kvm_run *run, void *opaque)
{
	(void)run, (void)opaque;
	return -EPROTO;
}

/* Scattered first touches of anonymous memory: ns per page; teardown in *unmap_ns. */
static double anon_scatter_ns(uint64_t pages, uint64_t regions, double *unmap_ns)
{
	uint64_t size = regions * REGION, t0;
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	double ns;

	if (p == MAP_FAILED)
		return -1;
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < pages; i++)
		p[scatter_page(i, regions) * PG] = 1;
	ns = (double)(bench_now_ns() - t0) / (double)pages;
	t0 = bench_now_ns();
	munmap(p, size);
	*unmap_ns = (double)(bench_now_ns() - t0);
	return ns;
}

static double mib(long long bytes)
{
	return (double)bytes / (1 << 20);
}

static int bench_scatter(void)
{
	uint64_t pages = bench_scale_pages, size = TIB, regions, touched_regions = 0, tables;
	struct kvm_create_guest_memfd cg = { 0 };
	struct kvm_userspace_memory_region2 mr = { 0 };
	struct kvm_memory_attributes ma = { 0 };
	struct scale_guest sg = { 0 };
	struct guestmem_vm *vm = NULL;
	struct guestmem_gmem *gmem = NULL;
	struct guestmem_vcpu *vcpu = NULL;
	struct memuse before, during, after;
	long long grown, pages_bytes, bound, allocated, smaps_before, smaps_during;
	double anon_ns, anon_unmap_ns = 0, teardown_ns, returned_ns;
	uint8_t *seen;
	void *hva;
	uint64_t t0, t_vcpu = 0, t_gmem = 0;
	int r;

	while (size / REGION < pages)
		size *= 2;
	regions = size / REGION;
	/*
	 * The bound's table pages, counted from the pattern: what stage-2
	 * tables need is a table page per touched 2 MiB region of guest
	 * physical memory, one above them per touched 1 GiB and 512 GiB
	 * region, and the two top levels.
	 */
	seen = calloc((size + GPA) / REGION / 8 + 1, 1);
	if (!seen)
		return -ENOMEM;
	tables = 2;
	for (int shift = 21; shift <= 39; shift += 9) {
		memset(seen, 0, (size + GPA) / REGION / 8 + 1);
		for (uint64_t i = 0; i < pages; i++) {
			uint64_t reg = (GPA + scatter_page(i, regions) * PG) >> shift;

			if (!(seen[reg / 8] & (1u << (reg % 8)))) {
				tables++;
				touched_regions += shift == 21;
			}
			seen[reg / 8] |= (uint8_t)(1u << (reg % 8));
		}
	}
	free(seen);

	/* The memslot's userspace_addr is never used for private memory. */
	hva = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (hva == MAP_FAILED)
		return -errno;
	r = memuse_get(&before);
	smaps_before = smaps_rollup_kb("Rss:");
	if (!r)
		r = guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &vm);
	cg.size = size;
	if (!r)
		r = guestmem_gmem_create(vm, &cg, &gmem);
	mr.flags = KVM_MEM_GUEST_MEMFD;
	mr.guest_phys_addr = GPA;
	mr.memory_size = size;
	mr.userspace_addr = (uint64_t)(uintptr_t)hva;
	if (!r)
		r = guestmem_set_memory_region(vm, &mr, gmem);
	ma = (struct kvm_memory_attributes){ GPA, size, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
	if (!r)
		r = guestmem_set_memory_attributes(vm, &ma);
	if (!r)
		r = guestmem_vcpu_create(vm, 0, &vcpu);
	sg.pages = pages;
	sg.regions = regions;
	if (!r)
		r = guestmem_vcpu_set_guest(vcpu, guest_scatter, &sg);
	bench_progress("%llu GiB guest_memfd, all private; touching %llu pages, one per 2 MiB "
		       "region", (unsigned long long)(size >> 30), (unsigned long long)pages);
	if (!r)
		r = bench_run_vcpu(vcpu, NULL, no_exit, NULL);
	/* struct guestmem_gmem is struct kvm_gmem (src/api/vm.c). */
	allocated = gmem ? (long long)kvm_gmem_nr_allocated((struct kvm_gmem *)gmem) : 0;
	if (!r)
		r = memuse_get(&during);
	smaps_during = smaps_rollup_kb("Rss:");
	bench_progress("touched %llu pages; tearing down", (unsigned long long)sg.touched);
	t0 = bench_now_ns();
	guestmem_vcpu_put(vcpu);
	t_vcpu = bench_now_ns();
	guestmem_gmem_put(gmem);
	t_gmem = bench_now_ns();
	guestmem_vm_put(vm);
	teardown_ns = (double)(bench_now_ns() - t0);
	/* The host gets the memory back when the deferred releases ran. */
	gm_reap_wait();
	returned_ns = (double)(bench_now_ns() - t0);
	munmap(hva, size);
	if (r) {
		printf("  scatter: stopped after %llu of %llu pages: %s\n",
		       (unsigned long long)sg.touched, (unsigned long long)pages, strerror(-r));
		return r;
	}
	memuse_get(&after);
	bench_progress("baseline: %llu scattered anonymous first touches", ANON_SAMPLE);
	anon_ns = anon_scatter_ns(GM_MIN(pages, ANON_SAMPLE), regions, &anon_unmap_ns);

	/* The pages: mapped ones are in RssShmem, allocated-only ones are not. */
	pages_bytes = GM_MAX(during.shmem - before.shmem, allocated * (long long)PG);
	grown = (during.anon - before.anon) + pages_bytes + (during.pte - before.pte);
	bound = (long long)(pages * PG + tables * PG + pages * 64);
	bench_row("scatter: host memory per page vs bound (B)", (double)grown / (double)pages,
		  (double)bound / (double)pages, "B", "<= 1x (pages + stage-2 tables + 64 B)");
	bench_row("  pages (RssShmem or allocated) vs 4 KiB", (double)pages_bytes / (double)pages,
		  (double)PG, "B", "");
	bench_row("  host page tables (VmPTE) vs stage-2 tables",
		  (double)(during.pte - before.pte) / (double)pages,
		  (double)(tables * PG) / (double)pages, "B", "");
	bench_row("  anonymous (tables, bookkeeping) vs tables + 64",
		  (double)(during.anon - before.anon) / (double)pages,
		  (double)(tables * PG + pages * 64) / (double)pages, "B", "");
	bench_row("scatter: VMAs added vs vm.max_map_count", (double)(during.vmas - before.vmas),
		  (double)max_map_count(), "", "no cliff: O(1)");
	bench_row("scatter: touch per page vs anon scattered touch", (double)sg.ns / (double)pages / 1e3,
		  anon_ns / 1e3, "us", "");
	bench_row("scatter: VM teardown vs goal (s)", teardown_ns / 1e9, 1.0, "s", "< 1 s");
	bench_row("  memory back to the host vs anon munmap (ns/page)", returned_ns / (double)pages,
		  anon_unmap_ns / (double)GM_MIN(pages, ANON_SAMPLE), "ns",
		  "deferred: see teardown");
	bench_note("scatter: %llu pages in %llu regions of a %llu GiB guest_memfd; grew %.0f MiB "
		   "(anon %.0f, pages %.0f, page tables %.0f) against a bound of %.0f MiB; "
		   "smaps_rollup Rss %+.0f MiB; after teardown anon %+.0f MiB, shmem %+.0f MiB, "
		   "page tables %+.0f MiB, VMAs %+lld; anon sample %llu pages, its munmap %.0f ms; "
		   "teardown: vCPU %.0f ms, guest_memfd %.0f ms, VM %.0f ms",
		   (unsigned long long)pages, (unsigned long long)touched_regions,
		   (unsigned long long)(size >> 30), mib(grown), mib(during.anon - before.anon),
		   mib(pages_bytes), mib(during.pte - before.pte), mib(bound),
		   (double)(smaps_during - smaps_before) / 1024, mib(after.anon - before.anon),
		   mib(after.shmem - before.shmem), mib(after.pte - before.pte),
		   after.vmas - before.vmas, (unsigned long long)GM_MIN(pages, ANON_SAMPLE),
		   anon_unmap_ns / 1e6, (double)(t_vcpu - t0) / 1e6, (double)(t_gmem - t_vcpu) / 1e6,
		   teardown_ns / 1e6 - (double)(t_gmem - t0) / 1e6);
	return 0;
}

const struct bench_item bench_scale_items[] = {
	{ "scatter", bench_scatter },
	{ NULL, NULL },
};
