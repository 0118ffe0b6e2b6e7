/* SPDX-License-Identifier: MIT */
/*
 * vCPU and fault-path benchmarks (issue #4), each a ratio against a
 * baseline measured in the same run:
 *  - first-touch private fault per 4 KiB vs writing fresh anonymous memory;
 *  - a guest access that hits vs a warm plain load of the same addresses;
 *  - a MAP_GPA_RANGE conversion round trip (exit, KVM_SET_MEMORY_ATTRIBUTES,
 *    re-entry) per 4 KiB vs a plain port-I/O exit, and per 2 MiB vs 4 KiB;
 *  - an invalidation storm (large invalidations that hold and yield mmu_lock
 *    while fault threads fault inside and outside their range) with the
 *    lockless pre-check on vs off: fault latency p50/p99/p99.9, the
 *    invalidation's own duration and mmu_lock acquisitions per fault.
 * The guests are C functions reporting their timings through the opaque
 * pointer (they run in this process).
 */
#include <errno.h>
#include <unistd.h>
#include <linux/falloc.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "bench.h"
#include "core/kvm_host.h"
#include "lib/lockdep.h"
#include "lib/rcu.h"
#include "mmu/fault.h"
#include "mmu/mmu.h"

#define GPA 0x100000000ULL
#define PG 4096ULL
#define MIB (1ULL << 20)

struct bvm {
	struct guestmem_vm *vm;
	struct guestmem_gmem *gmem;
	struct guestmem_vcpu *vcpu;
	void *shared;
	uint64_t size;
};

struct bguest {
	uint64_t size, iters, ns, ns2;
	volatile uint64_t sink;
};

static int bvm_create(struct bvm *b, uint64_t size, bool private)
{
	struct kvm_userspace_memory_region2 mr = { 0 };
	struct kvm_create_guest_memfd cg = { .size = size };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL };
	struct kvm_memory_attributes ma = { GPA, size, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
	int r;

	memset(b, 0, sizeof(*b));
	b->size = size;
	cap.args[0] = 1ULL << KVM_HC_MAP_GPA_RANGE;
	r = guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &b->vm);
	if (!r)
		r = guestmem_vm_enable_cap(b->vm, &cap);
	if (!r)
		r = guestmem_gmem_create(b->vm, &cg, &b->gmem);
	if (r)
		return r;
	b->shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (b->shared == MAP_FAILED)
		return -errno;
	mr.flags = KVM_MEM_GUEST_MEMFD;
	mr.guest_phys_addr = GPA;
	mr.memory_size = size;
	mr.userspace_addr = (uint64_t)(uintptr_t)b->shared;
	r = guestmem_set_memory_region(b->vm, &mr, b->gmem);
	if (!r && private)
		r = guestmem_set_memory_attributes(b->vm, &ma);
	if (!r)
		r = guestmem_vcpu_create(b->vm, 0, &b->vcpu);
	return r;
}

static void bvm_destroy(struct bvm *b)
{
	guestmem_vcpu_put(b->vcpu);
	guestmem_gmem_put(b->gmem);
	guestmem_vm_put(b->vm);
	if (b->shared && b->shared != MAP_FAILED)
		munmap(b->shared, b->size);
}

/* bench_run_vcpu()'s exit handler here: answer MAP_GPA_RANGE, pass port I/O. */
static int convert_exit(struct kvm_run *run, void *vm)
{
	struct kvm_memory_attributes ma = { 0 };

	if (run->exit_reason == KVM_EXIT_IO)
		return 0;
	if (run->exit_reason != KVM_EXIT_HYPERCALL)
		return -EPROTO;
	ma.address = run->hypercall.args[0];
	ma.size = run->hypercall.args[1] * PG;
	if (run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED)
		ma.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	run->hypercall.ret = (uint64_t)guestmem_set_memory_attributes(vm, &ma);
	return 0;
}

/* Run until shutdown, answering MAP_GPA_RANGE with attribute changes. */
static int bvm_run(struct bvm *b)
{
	return bench_run_vcpu(b->vcpu, NULL, convert_exit, b->vm);
}

/* ---- first touch and hits --------------------------------------------- */

static void guest_first_touch(struct guestmem_guest *g)
{
	struct bguest *bg = guestmem_guest_opaque(g);
	uint64_t t0 = bench_now_ns();

	for (uint64_t off = 0; off < bg->size; off += PG)
		guestmem_guest_write8(g, GPA + off, 1);
	bg->ns = bench_now_ns() - t0;
	/* Now every page hits: time loads of one mapped word. */
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < bg->iters; i++)
		bg->sink += guestmem_guest_read64(g, GPA + ((i * 64) & (bg->size - 1)));
	bg->ns2 = bench_now_ns() - t0;
}

static double anon_first_touch_ns(uint64_t size)
{
	char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t t0;
	double ns;

	if (p == MAP_FAILED)
		return -1;
	t0 = bench_now_ns();
	for (uint64_t off = 0; off < size; off += PG)
		p[off] = 1;
	ns = (double)(bench_now_ns() - t0);
	munmap(p, size);
	return ns;
}

/*
 * The floor of an exact per-page allocation in user space: fallocate one
 * page of a memfd, then touch it through a shared mapping (two kernel
 * entries, where a kernel guest_memfd fault needs none of its own).
 */
static double memfd_first_touch_ns(uint64_t size)
{
	int fd = memfd_create("guestmem-bench", MFD_CLOEXEC);
	char *p = MAP_FAILED;
	uint64_t t0;
	double ns = -1;

	if (fd >= 0 && !ftruncate(fd, (off_t)size))
		p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p != MAP_FAILED) {
		t0 = bench_now_ns();
		for (uint64_t off = 0; off < size; off += PG) {
			if (fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)PG))
				break;
			p[off] = 1;
		}
		ns = (double)(bench_now_ns() - t0);
		munmap(p, size);
	}
	if (fd >= 0)
		close(fd);
	return ns;
}

/*
 * The hit's baseline: the same loads, same addresses modulo the buffer, from
 * ordinary memory that is already mapped and was just read once (a warm
 * load: no first-touch fault, the same cache behaviour as the guest's hits,
 * whose pages the first-touch loop has just written).
 */
static double plain_load_ns(uint64_t iters, uint64_t size)
{
	uint64_t *buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			     -1, 0);
	volatile uint64_t *vb = buf;
	uint64_t t0, sum = 0;
	double ns;

	if (buf == MAP_FAILED)
		return -1;
	memset(buf, 1, size); /* every page present and dirty, as the guest's are */
	for (uint64_t off = 0; off < size; off += 64)
		sum += vb[off / 8];
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < iters; i++)
		sum += vb[((i * 64) & (size - 1)) / 8];
	ns = (double)(bench_now_ns() - t0);
	munmap(buf, size);
	return sum == 1 ? -1 : ns;
}

static int bench_touch_and_hit(void)
{
	const uint64_t size = 64 * MIB, iters = 4000000;
	double ft[3], an[3], hit[3], ld[3], fl[3];
	int r = 0;

	for (int i = 0; i < 3 && !r; i++) {
		struct bguest bg = { .size = size, .iters = iters };
		struct bvm b;

		r = bvm_create(&b, size, true);
		if (!r)
			r = guestmem_vcpu_set_guest(b.vcpu, guest_first_touch, &bg);
		if (!r)
			r = bvm_run(&b);
		bvm_destroy(&b);
		ft[i] = (double)bg.ns / (double)(size / PG);
		hit[i] = (double)bg.ns2 / (double)iters;
		an[i] = anon_first_touch_ns(size) / (double)(size / PG);
		fl[i] = memfd_first_touch_ns(size) / (double)(size / PG);
		ld[i] = plain_load_ns(iters, size) / (double)iters;
	}
	if (r)
		return r;
	bench_row("first-touch private fault vs anon write (ns/4K)", bench_median(ft, 3),
		  bench_median(an, 3), "ns", "within 2x");
	bench_row("  floor: memfd fallocate+touch vs anon (ns/4K)", bench_median(fl, 3),
		  bench_median(an, 3), "ns", "what user space can reach");
	bench_row("guest access that hits vs plain load (ns)", bench_median(hit, 3),
		  bench_median(ld, 3), "ns", "no lock, no RMW");
	return 0;
}

/* ---- conversion round trips -------------------------------------------- */

static void guest_convert(struct guestmem_guest *g)
{
	struct bguest *bg = guestmem_guest_opaque(g);
	uint64_t t0, pages = bg->size / PG;

	/* Baseline: a plain port-I/O exit and re-entry. */
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < bg->iters; i++)
		guestmem_guest_outb(g, 0x80, 0);
	bg->ns2 = bench_now_ns() - t0;
	/* Conversion round trips: private, then shared again (two per pair). */
	t0 = bench_now_ns();
	for (uint64_t i = 0; i < bg->iters / 2; i++) {
		guestmem_guest_hypercall(g, KVM_HC_MAP_GPA_RANGE, GPA, pages,
					 KVM_MAP_GPA_RANGE_ENCRYPTED, 0);
		guestmem_guest_hypercall(g, KVM_HC_MAP_GPA_RANGE, GPA, pages,
					 KVM_MAP_GPA_RANGE_DECRYPTED, 0);
	}
	bg->ns = bench_now_ns() - t0;
}

static int time_convert(uint64_t size, double *conv_ns, double *io_ns)
{
	struct bguest bg = { .size = size, .iters = 2000 };
	struct bvm b;
	int r = bvm_create(&b, 2 * MIB, false);

	if (!r)
		r = guestmem_vcpu_set_guest(b.vcpu, guest_convert, &bg);
	if (!r)
		r = bvm_run(&b);
	bvm_destroy(&b);
	*conv_ns = (double)bg.ns / (double)(bg.iters / 2 * 2);
	*io_ns = (double)bg.ns2 / (double)bg.iters;
	return r;
}

static int bench_conversions(void)
{
	double c4k, c2m, io, io2;
	int r = time_convert(PG, &c4k, &io);

	if (!r)
		r = time_convert(2 * MIB, &c2m, &io2);
	if (r)
		return r;
	bench_row("MAP_GPA_RANGE round trip 4 KiB vs PIO exit (us)", c4k / 1e3, io / 1e3, "us",
		  "exit + attributes + re-entry");
	bench_row("MAP_GPA_RANGE round trip 2 MiB vs 4 KiB (us)", c2m / 1e3, c4k / 1e3, "us",
		  "cost not per page");
	return 0;
}

/* ---- invalidation storm ------------------------------------------------ */

/*
 * The seed's scenario for the lockless pre-check (spec §4.6): a host
 * invalidation of a large range that holds mmu_lock for write while it
 * zaps, yielding the lock between chunks as the kernel's TDP MMU zap does
 * (cond_resched_rwlock_write), while vCPUs fault both inside the range
 * (they must retry until the invalidation ends) and outside it (they only
 * need the lock).  The invalidation is driven with the kernel's steps:
 * begin and range_add under the lock, the zap in yielding chunks, the
 * remote flush, then end.  Each invalidation covers one half of the region,
 * alternating, so every faulter is in turn inside and outside the range.
 */
#define STORM_FAULTERS 2
#define STORM_FAULTS 10000     /* per faulter and run */
#define STORM_MAX_NS 5000000000ULL /* a run stops after 5 s whatever it measured */
#define STORM_RUNS 3	       /* per setting, interleaved */
#define STORM_REGION (32 * MIB)
#define STORM_CHUNK 512	       /* pages zapped between two yields */
#define STORM_MAX_INV 100000

struct storm {
	struct kvm *kvm;
	gfn_t gfn, npages;
	int stop;
	uint64_t *inv_ns; /* duration of each invalidation, begin to end */
	uint64_t ninv;
	uint64_t yields; /* of mmu_lock by the invalidations, to waiting faults */
};

struct storm_faulter {
	struct storm *s;
	uint64_t first, size; /* this faulter's part of the region (bytes) */
	uint64_t *lat;	      /* ns per fault, until fixed */
	uint64_t nlat;
	struct kvm_fault_stat st;
	bool failed;
	bool timed_out;
};

/* A vCPU stand-in: sweep its part, time every fault until it is fixed. */
static void *storm_faulter(void *arg)
{
	struct storm_faulter *f = arg;
	struct storm *s = f->s;

	uint64_t deadline = bench_now_ns() + STORM_MAX_NS;

	while (f->nlat < STORM_FAULTS) {
		if (bench_now_ns() > deadline) {
			f->timed_out = true; /* report what was measured */
			return NULL;
		}
		for (uint64_t off = f->first; off < f->first + f->size && f->nlat < STORM_FAULTS;
		     off += PG) {
			struct kvm_page_fault pf;
			uint64_t t0;
			int level, r;

			gm_rcu_read_lock();
			r = kvm_mmu_lookup(s->kvm, (GPA + off) >> 12, &level) != 0;
			gm_rcu_read_unlock();
			if (r)
				continue;
			t0 = bench_now_ns();
			for (unsigned n = 0;; n++) {
				r = kvm_mmu_page_fault(s->kvm, GPA + off, false, &f->st, &pf);
				if (r != KVM_PF_RETRY)
					break;
				/* Re-entry and the next fault, backing off as a vCPU does. */
				if (n < 16)
					__builtin_ia32_pause();
				else
					sched_yield();
			}
			if (r != KVM_PF_FIXED) {
				f->failed = true;
				return NULL;
			}
			f->lat[f->nlat++] = bench_now_ns() - t0;
		}
	}
	return NULL;
}

/* One invalidation of [start, end), as the mmu notifier drives it. */
static void storm_invalidate(struct storm *s, struct kvm *kvm, gfn_t start, gfn_t end)
{
	bool flush = false;

	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, start, end);
	for (gfn_t g = start; g < end; g += STORM_CHUNK) {
		flush |= kvm_mmu_zap_gfn_range(kvm, g, GM_MIN(g + STORM_CHUNK, end));
		/* cond_resched_rwlock_write(): yield only to waiting faults. */
		if (kvm_mmu_lock_needbreak(kvm)) {
			gm_rwlock_unlock(&kvm->mmu_lock);
			sched_yield();
			gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
			s->yields++;
		}
	}
	gm_rwlock_unlock(&kvm->mmu_lock);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
	gm_rwlock_wrlock(&kvm->mmu_lock, GM_LOCK_MMU);
	kvm_mmu_invalidate_end(kvm);
	gm_rwlock_unlock(&kvm->mmu_lock);
}

static void *storm_zapper(void *arg)
{
	struct storm *s = arg;
	gfn_t half = s->npages / 2;

	for (uint64_t i = 0; !__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE); i++) {
		gfn_t start = s->gfn + (i % 2) * half;
		uint64_t t0 = bench_now_ns();

		storm_invalidate(s, s->kvm, start, start + half);
		if (s->ninv < STORM_MAX_INV)
			s->inv_ns[s->ninv++] = bench_now_ns() - t0;
		usleep(20000); /* the vCPUs fault the range back in meanwhile */
	}
	return NULL;
}

struct storm_result {
	double p50, p99, p999, inv, yields, locks;
	bool timed_out;
};

static int storm_collect(struct storm *s, struct storm_faulter *f, struct storm_result *res)
{
	uint64_t n = 0, locks = 0;
	double *v = calloc(STORM_FAULTERS * STORM_FAULTS + STORM_MAX_INV, sizeof(*v));

	if (!v)
		return -ENOMEM;
	for (int i = 0; i < STORM_FAULTERS; i++) {
		if (f[i].failed) {
			free(v);
			return -EPROTO;
		}
		for (uint64_t k = 0; k < f[i].nlat; k++)
			v[n++] = (double)f[i].lat[k];
		locks += f[i].st.lock_acq;
	}
	if (!n) {
		free(v);
		return -ETIMEDOUT;
	}
	res->timed_out = false;
	for (int i = 0; i < STORM_FAULTERS; i++)
		res->timed_out |= f[i].timed_out;
	res->p50 = bench_percentile(v, (int)n, 50);
	res->p99 = bench_percentile(v, (int)n, 99);
	res->p999 = bench_percentile(v, (int)n, 99.9);
	res->locks = (double)locks / (double)n;
	for (uint64_t k = 0; k < s->ninv; k++)
		v[k] = (double)s->inv_ns[k];
	res->inv = s->ninv ? bench_median(v, (int)s->ninv) : 0;
	res->yields = s->ninv ? (double)s->yields / (double)s->ninv : 0;
	free(v);
	return 0;
}

static int storm_run(bool precheck, struct storm_result *res)
{
	struct storm_faulter f[STORM_FAULTERS] = { 0 };
	pthread_t ft[STORM_FAULTERS], z;
	struct storm s = { 0 };
	struct bvm b;
	bool old;
	int r = bvm_create(&b, STORM_REGION, false);

	if (r)
		return r;
	s.inv_ns = calloc(STORM_MAX_INV, sizeof(*s.inv_ns));
	if (!s.inv_ns)
		r = -ENOMEM;
	/* Faulter i sweeps its own part of both halves. */
	for (int i = 0; i < STORM_FAULTERS && !r; i++) {
		f[i] = (struct storm_faulter){ .s = &s, .first = i * (b.size / STORM_FAULTERS),
					       .size = b.size / STORM_FAULTERS };
		f[i].lat = calloc(STORM_FAULTS, sizeof(*f[i].lat));
		if (!f[i].lat)
			r = -ENOMEM;
	}
	if (!r) {
		memset(b.shared, 1, b.size); /* host pages present: faults resolve */
		s.kvm = (struct kvm *)b.vm;
		s.gfn = GPA >> 12;
		s.npages = b.size / PG;
		old = kvm_mmu_set_fault_precheck(precheck);
		pthread_create(&z, NULL, storm_zapper, &s);
		for (int i = 0; i < STORM_FAULTERS; i++)
			pthread_create(&ft[i], NULL, storm_faulter, &f[i]);
		for (int i = 0; i < STORM_FAULTERS; i++)
			pthread_join(ft[i], NULL);
		__atomic_store_n(&s.stop, 1, __ATOMIC_RELEASE);
		pthread_join(z, NULL);
		kvm_mmu_set_fault_precheck(old);
		r = storm_collect(&s, f, res);
	}
	for (int i = 0; i < STORM_FAULTERS; i++)
		free(f[i].lat);
	free(s.inv_ns);
	bvm_destroy(&b);
	return r;
}

/* Median over the runs of one field (doubles at @off in each result). */
static double storm_median(struct storm_result *runs, size_t off)
{
	double v[STORM_RUNS];

	for (int i = 0; i < STORM_RUNS; i++)
		v[i] = *(double *)((char *)&runs[i] + off);
	return bench_median(v, STORM_RUNS);
}

static int bench_storm(void)
{
	struct storm_result on[STORM_RUNS], off[STORM_RUNS];
	static const struct {
		const char *name;
		size_t off;
		double scale;
		const char *unit;
	} rows[] = {
		{ "storm: fault p50, pre-check on vs off (us)", offsetof(struct storm_result, p50),
		  1e3, "us" },
		{ "storm: fault p99, pre-check on vs off (us)", offsetof(struct storm_result, p99),
		  1e3, "us" },
		{ "storm: fault p99.9, pre-check on vs off (us)",
		  offsetof(struct storm_result, p999), 1e3, "us" },
		{ "storm: invalidation, pre-check on vs off (us)",
		  offsetof(struct storm_result, inv), 1e3, "us" },
		{ "storm: yields per invalidation, on vs off", offsetof(struct storm_result, yields),
		  1, "" },
		{ "storm: mmu_lock per fault, on vs off", offsetof(struct storm_result, locks), 1,
		  "" },
	};
	int r = 0;

	/* Interleaved, so that a change in the machine's load hits both. */
	for (int i = 0; i < STORM_RUNS && !r; i++) {
		bench_progress("run %d/%d, pre-check on", i + 1, STORM_RUNS);
		r = storm_run(true, &on[i]);
		bench_progress("run %d/%d, pre-check off", i + 1, STORM_RUNS);
		if (!r)
			r = storm_run(false, &off[i]);
	}
	if (r)
		return r;
	for (size_t k = 0; k < ARRAY_SIZE(rows); k++) {
		bench_row(rows[k].name, storm_median(on, rows[k].off) / rows[k].scale,
			  storm_median(off, rows[k].off) / rows[k].scale, rows[k].unit,
			  "median of runs");
		printf("    runs, on/off:");
		for (int i = 0; i < STORM_RUNS; i++)
			printf(" %.2f/%.2f", *(double *)((char *)&on[i] + rows[k].off) / rows[k].scale,
			       *(double *)((char *)&off[i] + rows[k].off) / rows[k].scale);
		printf("\n");
	}
	for (int i = 0; i < STORM_RUNS; i++)
		if (on[i].timed_out || off[i].timed_out)
			printf("    run %d stopped after %llu s with fewer faults\n", i,
			       STORM_MAX_NS / 1000000000ULL);
	return 0;
}

const struct bench_item bench_vcpu_items[] = {
	{ "touch-hit", bench_touch_and_hit },
	{ "conversions", bench_conversions },
	{ "storm", bench_storm },
	{ NULL, NULL },
};
