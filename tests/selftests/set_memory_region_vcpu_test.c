// SPDX-License-Identifier: MIT
/*
 * The vCPU half of the 6.8 selftest set_memory_region_test (spec
 * kvm-gmem-spec.md §5.4): memslot moves and deletions under a running
 * guest (the vCPU-less half is tests/selftests/set_memory_region_test.c).
 *
 *   move:   the guest spins on the first word of slot 10 while the VMM
 *           moves the slot 4 KiB down and back; the host's "2", written
 *           while the gpa->hva relation is shifted, must never be seen,
 *           the "1" written before moving back must be.
 *   delete: delete slot 10 (the guest sees MMIO, answered with 0xBEEF),
 *           re-create it (fresh memory reads 0), delete it again, then
 *           delete slot 0.
 *
 * Adaptation, said plainly: a real vCPU whose code and page tables (slot
 * 0) vanish stops with KVM_EXIT_SHUTDOWN or KVM_EXIT_INTERNAL_ERROR.  A C
 * guest fetches no instructions from guest memory, so its guest
 * (tests/guests/set_memory_region_guest.c) models the fetch by reading a
 * "code word" at CODE_GPA in slot 0 on every spin; with slot 0 gone that
 * read exits as MMIO at CODE_GPA, and that is the stop this test expects.
 *
 * Usage: set_memory_region_vcpu_test [-i loops] (default 10).
 */
#include <getopt.h>
#include <semaphore.h>

#include "../guests/set_memory_region.h"
#include "../guests/vcpu_util.h"

struct srm {
	int vm;
	uint8_t *slot0;
	uint8_t *heartbeat; /* HEARTBEAT_SLOT's memory */
	uint8_t *region;
	struct vcpu *v;
	sem_t ready;
	pthread_t thread;
	int stopped; /* the worker stopped running the vCPU (atomic) */
};

static int loops = 10;

/* Re-enter on every sync and every MMIO read of the region; stop otherwise. */
static void *vcpu_worker(void *arg)
{
	struct srm *s = arg;
	struct kvm_run *run = s->v->run;
	const uint64_t mmio_val = MMIO_VAL;
	struct ucall uc;

	for (;;) {
		vcpu_run(s->v);
		if (run->exit_reason == KVM_EXIT_IO) {
			if (vcpu_get_ucall(s->v, s->slot0, &uc) != UCALL_SYNC)
				break;
			sem_post(&s->ready);
			continue;
		}
		if (run->exit_reason != KVM_EXIT_MMIO || run->mmio.phys_addr == CODE_GPA)
			break;
		ASSERT_MSG(!run->mmio.is_write, "unexpected MMIO write");
		ASSERT_EQ(run->mmio.len, 8);
		ASSERT_EQ(run->mmio.phys_addr, MEM_REGION_GPA);
		memcpy(run->mmio.data, &mmio_val, 8);
	}
	__atomic_store_n(&s->stopped, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* The guest's spin count (HEARTBEAT_GPA, in HEARTBEAT_SLOT). */
static uint64_t beats(struct srm *s)
{
	return __atomic_load_n((uint64_t *)s->heartbeat, __ATOMIC_RELAXED);
}

/* Wait until the guest has spun @n more times - it runs, and it has read the
 * region since the call - or has finished (the original sleeps 100 ms). */
static void wait_for_spins(struct srm *s, uint64_t n)
{
	uint64_t b = beats(s);

	ASSERT_WAIT(beats(s) - b >= n || __atomic_load_n(&s->stopped, __ATOMIC_ACQUIRE), 10000);
}

static void wait_for_vcpu(struct srm *s)
{
	struct timespec ts;

	ASSERT_OK(clock_gettime(CLOCK_REALTIME, &ts));
	ts.tv_sec += 10;
	ASSERT_MSG(!sem_timedwait(&s->ready, &ts), "timed out waiting for the vCPU");
	/* The vCPU re-entered the guest and spins again. */
	wait_for_spins(s, 2);
}

static void region_add(struct srm *s)
{
	s->region = backing_alloc(BACKING_ANON_THP, MEM_REGION_SIZE);
	vm_set_region(s->vm, MEM_REGION_SLOT, 0, MEM_REGION_GPA, MEM_REGION_SIZE, s->region);
}

static void region_move(struct srm *s, uint64_t gpa)
{
	vm_set_region(s->vm, MEM_REGION_SLOT, 0, gpa, MEM_REGION_SIZE, s->region);
}

static void region_delete(struct srm *s, uint32_t slot)
{
	vm_set_region(s->vm, slot, 0, 0, 0, NULL);
}

/* A default VM, slot 0 (ucalls, "code"), slot 1 (heartbeat), slot 10, one vCPU running
 * @scenario. */
static void spawn_vm(struct srm *s, uint64_t scenario)
{
	require_guest();
	memset(s, 0, sizeof(*s));
	ASSERT_OK(sem_init(&s->ready, 0, 0));
	s->vm = vm_create(0);
	s->slot0 = backing_alloc(BACKING_ANON, UCALL_SLOT0_SIZE);
	vm_set_region(s->vm, 0, 0, 0, UCALL_SLOT0_SIZE, s->slot0);
	s->heartbeat = backing_alloc(BACKING_ANON, HEARTBEAT_SIZE);
	vm_set_region(s->vm, HEARTBEAT_SLOT, 0, HEARTBEAT_GPA, HEARTBEAT_SIZE, s->heartbeat);
	region_add(s);
	s->v = vm_vcpu_add(s->vm, 0);
	vcpu_set_arg(s->v, scenario);
	ASSERT_EQ(pthread_create(&s->thread, NULL, vcpu_worker, s), 0);
	wait_for_vcpu(s);
}

static void teardown(struct srm *s)
{
	vcpu_free(s->v);
	close(s->vm);
	sem_destroy(&s->ready);
}

static void move_once(void)
{
	struct srm s;
	uint64_t *word;

	spawn_vm(&s, 0);
	word = (uint64_t *)s.region;
	/* Misaligned: gpa MEM_REGION_GPA now reads the region's second page. */
	region_move(&s, MEM_REGION_GPA - 4096);
	__atomic_store_n(word, 2, __ATOMIC_RELAXED);
	wait_for_spins(&s, 2); /* the guest reads on the misaligned mapping */
	/* Written before restoring, so the guest can only ever see 1. */
	__atomic_store_n(word, 1, __ATOMIC_RELAXED);
	region_move(&s, MEM_REGION_GPA);
	wait_for_vcpu(&s);
	wait_for_vcpu(&s); /* the sync deferred while misaligned */
	pthread_join(s.thread, NULL);
	ASSERT_EQ(s.v->run->exit_reason, KVM_EXIT_IO); /* UCALL_DONE */
	teardown(&s);
}

static void delete_once(void)
{
	struct srm s;
	struct kvm_run *run;

	spawn_vm(&s, 1);
	region_delete(&s, MEM_REGION_SLOT);
	wait_for_vcpu(&s);
	region_add(&s); /* fresh memory: the guest reads 0 */
	wait_for_vcpu(&s);
	region_delete(&s, MEM_REGION_SLOT);
	wait_for_vcpu(&s);
	/* The "code" goes: the vCPU must stop (see the adaptation above). */
	region_delete(&s, 0);
	pthread_join(s.thread, NULL);
	run = s.v->run;
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(run->mmio.phys_addr, CODE_GPA);
	ASSERT_EQ(run->mmio.is_write, 0);
	teardown(&s);
}

static void test_move_memory_region(void *arg)
{
	(void)arg;
	for (int i = 0; i < loops; i++)
		move_once();
}

static void test_delete_memory_region(void *arg)
{
	(void)arg;
	for (int i = 0; i < loops; i++)
		delete_once();
}

int main(int argc, char **argv)
{
	int opt;

	while ((opt = getopt(argc, argv, "i:")) != -1) {
		if (opt != 'i' || (loops = atoi(optarg)) < 1) {
			fprintf(stderr, "usage: %s [-i loops] [case...]\n", argv[0]);
			return 2;
		}
	}
	test_add("move memory region under a running vCPU", test_move_memory_region, NULL,
		 30 + 5 * (unsigned)loops);
	test_add("delete memory region under a running vCPU", test_delete_memory_region, NULL,
		 30 + 5 * (unsigned)loops);
	/* The operands left after the options select cases (harness.h). */
	argv[optind - 1] = argv[0];
	return test_main(argc - optind + 1, argv + optind - 1);
}
