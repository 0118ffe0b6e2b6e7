/* SPDX-License-Identifier: MIT */
/*
 * `guestmem demo`: a confidential-VM memory lifecycle, end to end, through
 * the public C API only.
 *
 * Part 1 (control plane): a SW-protected VM, one guest_memfd, a memslot that
 * binds it next to shared anonymous memory; conversions and punches, with
 * the invalidation state after each step.
 *
 * Part 2 (vCPUs): each vCPU owns a chunk of the slot and runs rounds of
 *   boot shared -> convert to private (MAP_GPA_RANGE) -> private writes ->
 *   convert half back (the shared copy reappears) -> punch the rest (zeros)
 * while the VMM threads handle the exits.  Every byte the guest reads is
 * checked against what it must be, and the VMM checks the shared view.
 */
#include <errno.h>
#include <getopt.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "cli.h"

#define DEMO_GPA_BASE (4ULL << 30)
#define DEMO_PORT_CHECK 0xe0 /* ucall: VMM checks the shared view */
#define DEMO_ATTR_PUNCH_ONLY (1ULL << 8) /* demo-private bit in MAP_GPA_RANGE attrs */
#define PG 4096ULL

struct demo {
	struct guestmem_vm *vm;
	struct guestmem_gmem *gmem;
	uint8_t *shared; /* the slot's shared backing */
	uint64_t chunk;	 /* bytes per vCPU */
	int nr_vcpus, rounds;
	unsigned long long conversions, punches, host_checks, bad_bytes, converted_bytes;
	unsigned long long exits_hc, exits_io, exits_mf, done_vcpus;
	pthread_mutex_t lock; /* the counters above */
};

struct demo_vcpu {
	struct demo *d;
	struct guestmem_vcpu *vcpu;
	int id;
	int err;
};

/* Byte patterns: shared and private contents differ per vCPU and round. */
static uint8_t shared_byte(int vcpu, int round)
{
	return (uint8_t)(0x10 + vcpu * 8 + round);
}

static uint8_t private_byte(int vcpu, int round)
{
	return (uint8_t)(0x80 + vcpu * 8 + round);
}

static void demo_add(struct demo *d, unsigned long long *ctr, unsigned long long n)
{
	pthread_mutex_lock(&d->lock);
	*ctr += n;
	pthread_mutex_unlock(&d->lock);
}

/* ---- the guest program ------------------------------------------------- */

static uint64_t verify(struct guestmem_guest *g, uint64_t gpa, uint64_t len, uint8_t want)
{
	static __thread uint8_t buf[PG];
	uint64_t bad = 0;

	for (uint64_t off = 0; off < len; off += PG) {
		guestmem_guest_read(g, gpa + off, buf, PG);
		for (unsigned i = 0; i < PG; i++)
			bad += buf[i] != want;
	}
	return bad;
}

static void map_gpa(struct guestmem_guest *g, uint64_t gpa, uint64_t len, uint64_t attrs)
{
	uint64_t r = guestmem_guest_hypercall(g, KVM_HC_MAP_GPA_RANGE, gpa, len / PG, attrs, 0);

	if (r) /* the VMM refused: report it as bad bytes */
		guestmem_guest_outl(g, DEMO_PORT_CHECK + 1, (uint32_t)r);
}

static void demo_guest(struct guestmem_guest *g)
{
	struct demo_vcpu *v = guestmem_guest_opaque(g);
	struct demo *d = v->d;
	uint64_t base = DEMO_GPA_BASE + (uint64_t)v->id * d->chunk, half = d->chunk / 2;
	uint64_t bad = 0;

	for (int r = 0; r < d->rounds; r++) {
		uint8_t s = shared_byte(v->id, r), p = private_byte(v->id, r);

		/* Boot shared: the VMM can see what the guest writes. */
		guestmem_guest_memset(g, base, s, d->chunk);
		guestmem_guest_outl(g, DEMO_PORT_CHECK, (uint32_t)r);
		/* Convert everything to private and overwrite it. */
		map_gpa(g, base, d->chunk, KVM_MAP_GPA_RANGE_ENCRYPTED);
		bad += verify(g, base, d->chunk, 0); /* fresh private pages are zero */
		guestmem_guest_memset(g, base, p, d->chunk);
		bad += verify(g, base, d->chunk, p);
		guestmem_guest_outl(g, DEMO_PORT_CHECK, (uint32_t)r); /* host still sees s */
		/* Back to shared: the untouched shared copy reappears. */
		map_gpa(g, base, half, KVM_MAP_GPA_RANGE_DECRYPTED);
		bad += verify(g, base, half, s);
		bad += verify(g, base + half, half, p);
		/* Punch the private half without converting it: zeros. */
		map_gpa(g, base + half, half, KVM_MAP_GPA_RANGE_ENCRYPTED | DEMO_ATTR_PUNCH_ONLY);
		bad += verify(g, base + half, half, 0);
		/* Leave the chunk shared for the next round. */
		map_gpa(g, base + half, half, KVM_MAP_GPA_RANGE_DECRYPTED);
	}
	guestmem_guest_outl(g, DEMO_PORT_CHECK + 1, (uint32_t)bad);
}

/* ---- the VMM side ------------------------------------------------------ */

static int demo_convert(struct demo *d, uint64_t gpa, uint64_t npages, uint64_t attrs)
{
	uint64_t off = gpa - DEMO_GPA_BASE, len = npages * PG;
	bool private = attrs & KVM_MAP_GPA_RANGE_ENCRYPTED;
	struct kvm_memory_attributes ma = { gpa, len, private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
					    0 };
	int r = 0;

	if (!(attrs & DEMO_ATTR_PUNCH_ONLY))
		r = guestmem_set_memory_attributes(d->vm, &ma);
	/* Private: populate now; shared or punch: give the private pages back. */
	if (!r && private && !(attrs & DEMO_ATTR_PUNCH_ONLY))
		r = guestmem_gmem_fallocate(d->gmem, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len);
	else if (!r)
		r = guestmem_gmem_fallocate(d->gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
					    (off_t)off, (off_t)len);
	demo_add(d, (attrs & DEMO_ATTR_PUNCH_ONLY) ? &d->punches : &d->conversions, 1);
	if (!(attrs & DEMO_ATTR_PUNCH_ONLY))
		demo_add(d, &d->converted_bytes, len);
	return r;
}

/* The VMM's check of the shared view: it must hold the shared pattern. */
static void demo_host_check(struct demo_vcpu *v, uint32_t round)
{
	const uint8_t *p = v->d->shared + (uint64_t)v->id * v->d->chunk;
	uint8_t want = shared_byte(v->id, (int)round);
	unsigned long long bad = 0;

	for (uint64_t i = 0; i < v->d->chunk; i++)
		bad += p[i] != want;
	demo_add(v->d, &v->d->bad_bytes, bad);
	demo_add(v->d, &v->d->host_checks, 1);
}

static int demo_handle_io(struct demo_vcpu *v, struct kvm_run *run)
{
	uint32_t val;

	memcpy(&val, (char *)run + run->io.data_offset, sizeof(val));
	demo_add(v->d, &v->d->exits_io, 1);
	if (run->io.port == DEMO_PORT_CHECK)
		demo_host_check(v, val);
	else if (run->io.port == DEMO_PORT_CHECK + 1)
		demo_add(v->d, &v->d->bad_bytes, val);
	return 0;
}

static void *demo_vmm_thread(void *arg)
{
	struct demo_vcpu *v = arg;
	struct kvm_run *run = guestmem_vcpu_run_struct(v->vcpu);

	for (;;) {
		int r = guestmem_vcpu_run(v->vcpu);

		if (r == -EINTR)
			continue;
		if (r) {
			if (run->exit_reason == KVM_EXIT_MEMORY_FAULT)
				demo_add(v->d, &v->d->exits_mf, 1);
			v->err = r;
			break;
		}
		if (run->exit_reason == KVM_EXIT_HYPERCALL) {
			demo_add(v->d, &v->d->exits_hc, 1);
			run->hypercall.ret = (uint64_t)demo_convert(v->d, run->hypercall.args[0],
								    run->hypercall.args[1],
								    run->hypercall.args[2]);
		} else if (run->exit_reason == KVM_EXIT_IO) {
			demo_handle_io(v, run);
		} else if (run->exit_reason == KVM_EXIT_SHUTDOWN) {
			break;
		} else {
			v->err = -EPROTO;
			break;
		}
	}
	demo_add(v->d, &v->d->done_vcpus, 1);
	return NULL;
}

/* ---- part 1: the control plane, step by step --------------------------- */

static const char *errno_name(int e)
{
	static const struct { int e; const char *n; } names[] = {
		{ EINVAL, "EINVAL" }, { EFAULT, "EFAULT" },	{ ENOMEM, "ENOMEM" },
		{ EEXIST, "EEXIST" }, { EBADF, "EBADF" },	{ ENOTTY, "ENOTTY" },
		{ EIO, "EIO" },	      { EOPNOTSUPP, "EOPNOTSUPP" }, { EFBIG, "EFBIG" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].e == e)
			return names[i].n;
	return "error";
}

static void demo_row(struct demo *d, const char *step, int r)
{
	struct guestmem_invalidate_state st;

	guestmem_vm_invalidate_state(d->vm, &st);
	printf("  %-52s %-8s %8lu %6ld\n", step, r ? errno_name(-r) : "ok", st.seq, st.in_progress);
}

static int demo_attr(struct demo *d, uint64_t off, uint64_t len, bool private)
{
	struct kvm_memory_attributes ma = { DEMO_GPA_BASE + off, len,
					    private ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0, 0 };

	return guestmem_set_memory_attributes(d->vm, &ma);
}

static int demo_falloc(struct demo *d, uint64_t off, uint64_t len, bool punch)
{
	int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : 0);

	return guestmem_gmem_fallocate(d->gmem, mode, (off_t)off, (off_t)len);
}

static void demo_control_plane(struct demo *d)
{
	const uint64_t M2 = 2ULL << 20;
	int r;

	printf("\nPart 1: memory attributes and guest_memfd (seq / in_progress after each step)\n");
	printf("  %-52s %-8s %8s %6s\n", "step", "result", "seq", "in_pr");
	demo_row(d, "SW-protected VM, 1 memslot bound to a guest_memfd", 0);
	demo_row(d, "convert [0, 2 MiB) to private", demo_attr(d, 0, M2, true));
	demo_row(d, "same again (no-op: no invalidation)", demo_attr(d, 0, M2, true));
	demo_row(d, "fallocate [0, 2 MiB) (private pages)", demo_falloc(d, 0, M2, false));
	demo_row(d, "punch [4 KiB, 8 KiB) (zaps, pages freed)", demo_falloc(d, PG, PG, true));
	demo_row(d, "convert 4 KiB back to shared", demo_attr(d, 0, PG, false));
	demo_row(d, "fallocate past the end of the file",
		 demo_falloc(d, d->chunk * (uint64_t)d->nr_vcpus, PG, false));
	demo_row(d, "unaligned punch", demo_falloc(d, 1, PG, true));
	r = demo_attr(d, 0, M2, false);
	demo_row(d, "convert all back to shared, punch all", r ? r : demo_falloc(d, 0, M2, true));
}

/* ---- part 2: vCPUs ----------------------------------------------------- */

static void demo_progress(struct demo *d, double secs, bool tty)
{
	struct guestmem_vm_stats st;

	guestmem_vm_stats(d->vm, &st);
	pthread_mutex_lock(&d->lock);
	printf("%s  %5.1fs  conversions %6llu  punches %5llu  faults %8llu  retries %6llu  "
	       "vCPUs done %llu/%d %s",
	       tty ? "\r" : "", secs, d->conversions, d->punches, (unsigned long long)st.faults,
	       (unsigned long long)st.fault_retries, d->done_vcpus, d->nr_vcpus, tty ? "" : "\n");
	pthread_mutex_unlock(&d->lock);
	fflush(stdout);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int demo_run_vcpus(struct demo *d, struct demo_vcpu *v, double *secs)
{
	pthread_t *t = calloc((size_t)d->nr_vcpus, sizeof(*t));
	double t0 = now_s(), last = 0;
	bool tty = isatty(STDOUT_FILENO);
	int r = 0;

	if (!t)
		return -ENOMEM;
	for (int i = 0; i < d->nr_vcpus; i++)
		pthread_create(&t[i], NULL, demo_vmm_thread, &v[i]);
	for (;;) {
		unsigned long long done;

		pthread_mutex_lock(&d->lock);
		done = d->done_vcpus;
		pthread_mutex_unlock(&d->lock);
		if (done == (unsigned long long)d->nr_vcpus)
			break;
		if (tty || now_s() - t0 - last >= 1.0) {
			last = now_s() - t0;
			demo_progress(d, last, tty);
		}
		usleep(100000);
	}
	for (int i = 0; i < d->nr_vcpus; i++) {
		pthread_join(t[i], NULL);
		if (!r)
			r = v[i].err;
	}
	*secs = now_s() - t0;
	demo_progress(d, *secs, tty);
	if (tty)
		printf("\n");
	free(t);
	return r;
}

static void demo_summary(struct demo *d, double secs, int err)
{
	struct guestmem_vm_stats st;
	double mib = (double)d->converted_bytes / (1 << 20);

	guestmem_vm_stats(d->vm, &st);
	printf("\nSummary\n");
	printf("  %-40s %12llu\n", "KVM_EXIT_HYPERCALL (MAP_GPA_RANGE)", d->exits_hc);
	printf("  %-40s %12llu\n", "KVM_EXIT_IO (host checks, reports)", d->exits_io);
	printf("  %-40s %12llu\n", "KVM_EXIT_MEMORY_FAULT", d->exits_mf);
	printf("  %-40s %12llu\n", "KVM_EXIT_SHUTDOWN", d->done_vcpus);
	printf("  %-40s %12llu\n", "conversions (attributes + fallocate)", d->conversions);
	printf("  %-40s %12llu\n", "punches (private stays private)", d->punches);
	printf("  %-40s %12llu\n", "stage-2 faults", (unsigned long long)st.faults);
	printf("  %-40s %12llu\n", "fault retries (invalidation raced)",
	       (unsigned long long)st.fault_retries);
	printf("  %-40s %12llu\n", "mmu_lock acquisitions by faults",
	       (unsigned long long)st.mmu_lock_acquisitions);
	printf("  %-40s %12llu\n", "invalidations (begin..end)", (unsigned long long)st.invalidations);
	printf("  %-40s %12llu\n", "ranges zapped", (unsigned long long)st.zapped_ranges);
	printf("  %-40s %12llu\n", "remote TLB flushes", (unsigned long long)st.remote_flushes);
	printf("  %-40s %12.1f\n", "MiB converted", mib);
	printf("  %-40s %12.1f\n", "converted MiB/s (with exits)", secs > 0 ? mib / secs : 0.0);
	printf("  %-40s %12llu\n", "host checks of the shared view", d->host_checks);
	printf("  %-40s %12llu\n", "bytes that were wrong", d->bad_bytes);
	printf("\nResult: %s\n", err ? strerror(-err)
			      : d->bad_bytes ? "FAILED: some bytes were wrong"
					     : "every byte verified");
}

/* ---- setup and teardown ----------------------------------------------- */

static int demo_setup(struct demo *d)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL };
	uint64_t size = d->chunk * (uint64_t)d->nr_vcpus;
	struct kvm_create_guest_memfd cg = { .size = size };
	struct kvm_userspace_memory_region2 mr = { 0 };
	int r;

	cap.args[0] = 1ULL << KVM_HC_MAP_GPA_RANGE;
	r = guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &d->vm);
	if (r)
		return r;
	r = guestmem_vm_enable_cap(d->vm, &cap);
	if (!r)
		r = guestmem_gmem_create(d->vm, &cg, &d->gmem);
	if (r)
		return r;
	d->shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->shared == MAP_FAILED)
		return -errno;
	mr.flags = KVM_MEM_GUEST_MEMFD;
	mr.guest_phys_addr = DEMO_GPA_BASE;
	mr.memory_size = size;
	mr.userspace_addr = (uint64_t)(uintptr_t)d->shared;
	return guestmem_set_memory_region(d->vm, &mr, d->gmem);
}

static int demo_make_vcpus(struct demo *d, struct demo_vcpu *v)
{
	for (int i = 0; i < d->nr_vcpus; i++) {
		int r;

		v[i] = (struct demo_vcpu){ .d = d, .id = i };
		r = guestmem_vcpu_create(d->vm, (uint32_t)i, &v[i].vcpu);
		if (!r)
			r = guestmem_vcpu_set_guest(v[i].vcpu, demo_guest, &v[i]);
		if (r)
			return r;
	}
	return 0;
}

static int demo_usage(const char *arg, const char *why)
{
	fprintf(stderr, "guestmem: demo: '%s': %s (see guestmem demo --help)\n", arg, why);
	return 2;
}

/* The value of "-n 4": a whole number in [lo, hi], or -1. */
static int demo_num(const char *s, int lo, int hi)
{
	char *end;
	long v = strtol(s, &end, 10);

	return *s && !*end && v >= lo && v <= hi ? (int)v : -1;
}

static int demo_parse(int argc, char **argv, struct demo *d, struct gm_cli_config *c)
{
	static const struct {
		const char *opt;
		int lo, hi;
		const char *why;
	} nums[] = {
		{ "-n", 1, 64, "vCPUs: 1 to 64" },
		{ "-m", 2, 4096, "MiB per vCPU: 2 to 4096" },
		{ "-r", 1, 1000000, "rounds: 1 to 1000000" },
	};

	for (int i = 1; i < argc; i++) {
		size_t k;
		int v;

		v = gm_cli_parse_config_one(argc, argv, &i, c);
		if (v == 2)
			return 2;
		if (c->help)
			return 0;
		if (v)
			continue;
		for (k = 0; k < sizeof(nums) / sizeof(nums[0]); k++)
			if (!strcmp(argv[i], nums[k].opt))
				break;
		if (k == sizeof(nums) / sizeof(nums[0]))
			return demo_usage(argv[i], "unknown argument");
		if (i + 1 >= argc)
			return demo_usage(argv[i], "needs a value");
		v = demo_num(argv[++i], nums[k].lo, nums[k].hi);
		if (v < 0)
			return demo_usage(argv[i], nums[k].why);
		if (k == 0)
			d->nr_vcpus = v;
		else if (k == 1)
			d->chunk = (uint64_t)v << 20;
		else
			d->rounds = v;
	}
	return 0;
}

static void demo_teardown(struct demo *d, struct demo_vcpu *v)
{
	for (int i = 0; v && i < d->nr_vcpus; i++)
		guestmem_vcpu_put(v[i].vcpu);
	guestmem_gmem_put(d->gmem);
	guestmem_vm_put(d->vm);
	if (d->shared && d->shared != MAP_FAILED)
		munmap(d->shared, d->chunk * (uint64_t)d->nr_vcpus);
}

int gm_cli_demo(int argc, char **argv)
{
	struct demo d = { .nr_vcpus = 4, .chunk = 8ULL << 20, .rounds = 4 };
	struct gm_cli_config c = { 0 };
	struct demo_vcpu *v = NULL;
	double secs = 0;
	int r = demo_parse(argc, argv, &d, &c);

	if (r)
		return r;
	if (c.help) {
		gm_cli_help("demo", stdout);
		return 0;
	}
	r = gm_cli_apply_config("demo", &c);
	if (r)
		return r;
	pthread_mutex_init(&d.lock, NULL);
	printf("guestmem demo: %d vCPUs x %llu MiB, %d rounds\n", d.nr_vcpus,
	       (unsigned long long)(d.chunk >> 20), d.rounds);
	r = demo_setup(&d);
	if (!r) {
		demo_control_plane(&d);
		v = calloc((size_t)d.nr_vcpus, sizeof(*v));
		r = v ? demo_make_vcpus(&d, v) : -ENOMEM;
	}
	if (!r) {
		printf("\nPart 2: %d vCPUs: boot shared, convert to private, write, convert back, punch\n",
		       d.nr_vcpus);
		r = demo_run_vcpus(&d, v, &secs);
		demo_summary(&d, secs, r);
	} else {
		fprintf(stderr, "guestmem demo: setup failed: %s\n", strerror(-r));
	}
	demo_teardown(&d, v);
	free(v);
	return r || d.bad_bytes ? 1 : 0;
}
