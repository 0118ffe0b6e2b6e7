// SPDX-License-Identifier: MIT
/*
 * vCPU stress: guests write and read tagged words while other threads punch
 * holes in the guest_memfd, flip attributes, delete and re-create memslots,
 * and drop shared pages (MADV_DONTNEED + the mmu notifier).  Built for
 * ThreadSanitizer; bounded in time (STRESS_SECONDS per backing, default 4).
 *
 * What a guest may legitimately read from word w of page p of its region:
 *   0                 fresh or punched private memory, dropped shared memory
 *   MMIO_VAL          the memslot was away (the VMM answers MMIO reads)
 *   tag(v, p, w, s)   a value this vCPU wrote to exactly this word, s <= its
 *                     last sequence number
 * Anything else - another word's or another vCPU's tag (a stale or wrong
 * translation), garbage - fails the test.  Memory-fault exits (private
 * access while the slot is away, attributes changed under a fault) are
 * re-entered; every other exit is an error.
 *
 * One case per backing (memfd, secretmem: a skip when the host refuses
 * memfd_secret(2)), under tests/harness.  Counters are printed and must show
 * that every disturber and every guest did real work.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "harness.h"

#define NR_VCPUS 4
#define REGION_PAGES 512 /* 2 MiB per vCPU */
#define REGION_SIZE (REGION_PAGES * 4096ULL)
#define BASE_GPA (1ULL << 32)
#define BASE_SLOT 10
#define MMIO_VAL 0xbeefbeefbeefbeefULL
#define PORT_DONE 0x10
#define PORT_FAIL 0x11

/* tag: 8-bit vCPU, 12-bit page, 9-bit word, 32-bit sequence, marker bits. */
#define TAG_MARK (0x5ULL << 61)
#define TAG(v, p, w, s) \
	(TAG_MARK | ((uint64_t)(v) << 53) | ((uint64_t)(p) << 41) | ((uint64_t)(w) << 32) | (s))

struct stress;

struct vcpu_ctx {
	struct stress *st;
	uint32_t id;
	struct guestmem_vcpu *vcpu;
	pthread_t thread;
	/* Guest-side results, read by the VMM after the guest parked. */
	uint32_t seq;
	uint64_t reads, writes, bad_value, bad_gpa;
	/* VMM-side counters. */
	uint64_t mmio_exits, memory_fault_exits, runs;
	int error;
};

struct stress {
	struct guestmem_vm *vm;
	struct guestmem_gmem *gmem;
	uint8_t *shared[NR_VCPUS];
	struct vcpu_ctx vcpus[NR_VCPUS];
	int stop; /* relaxed atomic: everybody winds down */
	uint64_t punches, flips, slot_cycles, dontneeds;
};

/* ---- the guest ------------------------------------------------------------------- */

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Is @val something vCPU @c may see at word (@p, @w)? */
static bool legit(const struct vcpu_ctx *c, uint32_t p, uint32_t w, uint64_t val)
{
	if (val == 0 || val == MMIO_VAL)
		return true;
	return (val & ~0xffffffffULL) == (TAG(c->id, p, w, 0) & ~0xffffffffULL) &&
	       (uint32_t)val <= c->seq;
}

static void guest_check(struct guestmem_guest *g, struct vcpu_ctx *c, uint32_t p, uint32_t w)
{
	uint64_t gpa = BASE_GPA + c->id * REGION_SIZE + p * 4096ULL + w * 8ULL;
	uint64_t val = guestmem_guest_read64(g, gpa);

	c->reads++;
	if (!legit(c, p, w, val)) {
		c->bad_value = val;
		c->bad_gpa = gpa;
		guestmem_guest_outb(g, PORT_FAIL, 1);
	}
}

static void guest_main(struct guestmem_guest *g)
{
	struct vcpu_ctx *c = guestmem_guest_opaque(g);
	uint64_t rng = 0x9e3779b97f4a7c15ULL * (c->id + 1);

	while (!__atomic_load_n(&c->st->stop, __ATOMIC_RELAXED)) {
		uint64_t r = xorshift(&rng);
		uint32_t p = (uint32_t)(r % REGION_PAGES), w = (uint32_t)((r >> 16) % 512);
		uint64_t gpa = BASE_GPA + c->id * REGION_SIZE + p * 4096ULL + w * 8ULL;

		c->seq++;
		guestmem_guest_write64(g, gpa, TAG(c->id, p, w, c->seq));
		c->writes++;
		guest_check(g, c, p, w); /* the word just written */
		guest_check(g, c, p, (w + 1 + (uint32_t)(r >> 32) % 511) % 512); /* another */
	}
	guestmem_guest_outb(g, PORT_DONE, 0);
}

/* ---- the VMM side of each vCPU ----------------------------------------------------- */

static void *vcpu_thread(void *arg)
{
	struct vcpu_ctx *c = arg;
	struct kvm_run *run = guestmem_vcpu_run_struct(c->vcpu);
	const uint64_t mmio_val = MMIO_VAL;

	for (;;) {
		int r = guestmem_vcpu_run(c->vcpu);

		c->runs++;
		if (r == -EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			c->memory_fault_exits++;
			sched_yield(); /* the slot comes back soon */
			continue;
		}
		if (r) {
			c->error = r;
			return NULL;
		}
		if (run->exit_reason == KVM_EXIT_MMIO) {
			if (!run->mmio.is_write)
				memcpy(run->mmio.data, &mmio_val, 8);
			c->mmio_exits++;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_DONE)
			return NULL;
		c->error = run->exit_reason == KVM_EXIT_IO && run->io.port == PORT_FAIL ? -EBADMSG
											: -EPROTO;
		return NULL;
	}
}

/* ---- the disturbers -------------------------------------------------------------------- */

static bool stopped(struct stress *s)
{
	return __atomic_load_n(&s->stop, __ATOMIC_RELAXED);
}

static int set_slot(struct stress *s, uint32_t i, bool present)
{
	struct kvm_userspace_memory_region2 m = {
		.slot = BASE_SLOT + i, .flags = KVM_MEM_GUEST_MEMFD,
		.guest_phys_addr = BASE_GPA + i * REGION_SIZE,
		.memory_size = present ? REGION_SIZE : 0,
		.userspace_addr = (uint64_t)(uintptr_t)s->shared[i],
		.guest_memfd_offset = i * REGION_SIZE,
	};

	return guestmem_set_memory_region(s->vm, &m, s->gmem);
}

static void *puncher(void *arg)
{
	struct stress *s = arg;
	uint64_t rng = 1;

	while (!stopped(s)) {
		uint64_t r = xorshift(&rng), pages = 1 + r % 16;
		uint64_t first = (r >> 8) % (NR_VCPUS * REGION_PAGES - pages);

		if (guestmem_gmem_fallocate(s->gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
					    (off_t)(first * 4096), (off_t)(pages * 4096)) == 0)
			s->punches++;
		usleep(200);
	}
	return NULL;
}

static void *flipper(void *arg)
{
	struct stress *s = arg;
	uint64_t rng = 2;

	while (!stopped(s)) {
		uint64_t r = xorshift(&rng), pages = 1 + r % 64;
		uint64_t first = (r >> 8) % (NR_VCPUS * REGION_PAGES - pages);
		struct kvm_memory_attributes a = {
			.address = BASE_GPA + first * 4096, .size = pages * 4096,
			.attributes = (r >> 40) & 1 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
		};

		if (guestmem_set_memory_attributes(s->vm, &a) == 0)
			s->flips++;
		usleep(200);
	}
	return NULL;
}

static void *slotter(void *arg)
{
	struct stress *s = arg;
	uint64_t rng = 3;

	while (!stopped(s)) {
		uint32_t i = (uint32_t)(xorshift(&rng) % NR_VCPUS);

		if (set_slot(s, i, false) || (usleep(500), set_slot(s, i, true))) {
			DIAG("memslot %u update failed", BASE_SLOT + i);
			__atomic_store_n(&s->stop, 2, __ATOMIC_RELAXED);
			return NULL;
		}
		s->slot_cycles++;
		usleep(2000);
	}
	return NULL;
}

/* Drop shared pages as a VMM's madvise would, with the notifier around it. */
static void *dropper(void *arg)
{
	struct stress *s = arg;
	uint64_t rng = 4;

	while (!stopped(s)) {
		uint64_t r = xorshift(&rng);
		uint8_t *p = s->shared[r % NR_VCPUS] + ((r >> 8) % (REGION_PAGES - 8)) * 4096;

		guestmem_invalidate_hva_range(s->vm, p, 8 * 4096);
		madvise(p, 8 * 4096, MADV_DONTNEED);
		s->dontneeds++;
		usleep(1000);
	}
	return NULL;
}

/* ---- one run ----------------------------------------------------------------------------- */

static int setup(struct stress *s)
{
	struct kvm_create_guest_memfd args = { .size = NR_VCPUS * REGION_SIZE };
	int r;

	memset(s, 0, sizeof(*s));
	if ((r = guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &s->vm)))
		return r;
	/* A backing the host refuses (memfd_secret) fails here: -ENOSYS etc. */
	if ((r = guestmem_gmem_create(s->vm, &args, &s->gmem)))
		return r;
	for (uint32_t i = 0; i < NR_VCPUS; i++) {
		struct vcpu_ctx *c = &s->vcpus[i];

		s->shared[i] = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (s->shared[i] == MAP_FAILED)
			return -errno;
		if ((r = set_slot(s, i, true)))
			return r;
		c->st = s;
		c->id = i;
		if ((r = guestmem_vcpu_create(s->vm, i, &c->vcpu)) ||
		    (r = guestmem_vcpu_set_guest(c->vcpu, guest_main, c)))
			return r;
	}
	return 0;
}

static void teardown(struct stress *s)
{
	for (uint32_t i = 0; i < NR_VCPUS; i++) {
		guestmem_vcpu_put(s->vcpus[i].vcpu);
		munmap(s->shared[i], REGION_SIZE);
	}
	guestmem_gmem_put(s->gmem);
	guestmem_vm_put(s->vm);
}

/* Every check of a finished run; counters as diagnostics. */
static void report(struct stress *s)
{
	struct guestmem_vm_stats vs;
	uint64_t reads = 0, mmio = 0, mf = 0;

	guestmem_vm_stats(s->vm, &vs);
	/* 1: stopped by the clock; 2: stopped early by an error */
	EXPECT_EQ(__atomic_load_n(&s->stop, __ATOMIC_RELAXED), 1);
	for (uint32_t i = 0; i < NR_VCPUS; i++) {
		struct vcpu_ctx *c = &s->vcpus[i];

		if (c->error)
			DIAG("vCPU %u: error %d; bad value %#llx at gpa %#llx", i, c->error,
			     (unsigned long long)c->bad_value, (unsigned long long)c->bad_gpa);
		EXPECT_EQ(c->error, 0);
		EXPECT_NE(c->writes, 0);
		EXPECT_NE(c->reads, 0);
		reads += c->reads;
		mmio += c->mmio_exits;
		mf += c->memory_fault_exits;
	}
	DIAG("reads %llu, MMIO exits %llu, memory-fault exits %llu", (unsigned long long)reads,
	     (unsigned long long)mmio, (unsigned long long)mf);
	DIAG("punches %llu, flips %llu, slot cycles %llu, dropped ranges %llu",
	     (unsigned long long)s->punches, (unsigned long long)s->flips,
	     (unsigned long long)s->slot_cycles, (unsigned long long)s->dontneeds);
	DIAG("faults %llu, retries %llu, mmu_lock %llu, zapped ranges %llu",
	     (unsigned long long)vs.faults, (unsigned long long)vs.fault_retries,
	     (unsigned long long)vs.mmu_lock_acquisitions, (unsigned long long)vs.zapped_ranges);
	/* Every disturber must have done its work, or the test proves nothing. */
	EXPECT_NE(s->punches, 0);
	EXPECT_NE(s->flips, 0);
	EXPECT_NE(s->slot_cycles, 0);
	EXPECT_NE(s->dontneeds, 0);
	EXPECT_NE(vs.faults, 0);
}

static unsigned stress_seconds(void)
{
	const char *env = getenv("STRESS_SECONDS");

	return env ? (unsigned)atoi(env) : 4;
}

/* One run over backing @arg ("memfd" or "secretmem"). */
static void run_stress(void *arg)
{
	const char *backing = arg;
	void *(*fns[])(void *) = { puncher, flipper, slotter, dropper };
	unsigned seconds = stress_seconds();
	pthread_t dist[4];
	struct stress *s = calloc(1, sizeof(*s));
	long fd;
	int r;

	ASSERT_NOT_NULL(s);
	if (!strcmp(backing, "secretmem")) {
		fd = syscall(SYS_memfd_secret, 0);
		if (fd < 0)
			SKIP("secretmem: the host refuses memfd_secret(2): %s", test_errno_name(errno));
		close((int)fd);
	}
	ASSERT_EQ(guestmem_config_set("linux-6.8", "KVM_SW_PROTECTED_VM=y", backing), 0);
	r = setup(s);
	ASSERT_MSG(r == 0, "%s: setup failed: %s", backing, strerror(-r));
	DIAG("%d vCPUs, %u s", NR_VCPUS, seconds);
	for (uint32_t i = 0; i < NR_VCPUS; i++)
		ASSERT_EQ(pthread_create(&s->vcpus[i].thread, NULL, vcpu_thread, &s->vcpus[i]), 0);
	for (int i = 0; i < 4; i++)
		ASSERT_EQ(pthread_create(&dist[i], NULL, fns[i], s), 0);
	/* The run's length (not a synchronisation): until the clock or an error. */
	for (unsigned t = 0; t < seconds * 10 && !stopped(s); t++)
		usleep(100 * 1000);
	__atomic_store_n(&s->stop, stopped(s) ? 2 : 1, __ATOMIC_RELAXED);
	for (int i = 0; i < 4; i++)
		pthread_join(dist[i], NULL);
	/* The slot may be away at the stop: bring every slot back. */
	for (uint32_t i = 0; i < NR_VCPUS; i++)
		set_slot(s, i, true);
	for (uint32_t i = 0; i < NR_VCPUS; i++)
		pthread_join(s->vcpus[i].thread, NULL);
	report(s);
	teardown(s);
	free(s);
}

int main(int argc, char **argv)
{
	unsigned timeout = stress_seconds() + 60;

	test_add("stress, memfd backing", run_stress, "memfd", timeout);
	test_add("stress, secretmem backing", run_stress, "secretmem", timeout);
	return test_main(argc, argv);
}
