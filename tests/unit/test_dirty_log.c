/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging through <guestmem/sys.h>: KVM_MEM_LOG_DIRTY_PAGES,
 * KVM_GET_DIRTY_LOG, KVM_CLEAR_DIRTY_LOG and
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 (src/core/dirty_log.c), driven by a C
 * guest's writes: the log holds exactly the pages written, a harvested or
 * cleared page is tracked again on its next write, reads are never logged,
 * and the checks come in the kernel's order.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "vcpu_fixture.h"

#include <guestmem/guest.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "mmu/mmu.h"
#include "uapi/uapi.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

#define PAGE 4096
#define NPAGES 200 /* not a multiple of 64: the last word is partial */
#define BASE_GPA 0x100000ULL
#define SLOT 1
#define PORT_ASK 0x10

enum op { OP_NONE, OP_WRITE, OP_READ, OP_QUIT, OP_SPIN };

struct fx {
	struct vcpu_fixture f;
	uint8_t *mem;
	/* The guest's next job, set by the test while the guest is parked. */
	enum op op;
	uint64_t base; /* the gpa of page 0 of x->pages: BASE_GPA, or the huge slot's */
	unsigned npages;
	unsigned pages[NPAGES];
	uint64_t stamp;
	int stop;	   /* OP_SPIN: atomic; the guest exits once it is set */
	uint64_t progress; /* OP_SPIN: atomic; writes done so far */
};

/* Asks for work with an OUT, does it, asks again. */
static void guest_script(struct guestmem_guest *g)
{
	struct fx *x = guestmem_guest_opaque(g);

	for (;;) {
		guestmem_guest_outb(g, PORT_ASK, 0);
		if (x->op == OP_QUIT)
			return;
		/* Write pages round-robin, each a rising counter, until told. */
		for (uint64_t n = 1; x->op == OP_SPIN; n++) {
			guestmem_guest_write64(g, BASE_GPA + (n % NPAGES) * PAGE + 8, n);
			__atomic_store_n(&x->progress, n, __ATOMIC_RELEASE);
			if (__atomic_load_n(&x->stop, __ATOMIC_ACQUIRE))
				break;
		}
		for (unsigned i = 0; x->op != OP_SPIN && i < x->npages; i++) {
			uint64_t gpa = x->base + (uint64_t)x->pages[i] * PAGE;

			if (x->op == OP_WRITE)
				guestmem_guest_write64(g, gpa + 8, x->stamp);
			else
				(void)guestmem_guest_read64(g, gpa + 8);
		}
	}
}

static int set_slot(struct fx *x, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = SLOT, .flags = flags, .guest_phys_addr = BASE_GPA,
		.memory_size = NPAGES * PAGE, .userspace_addr = (uintptr_t)x->mem,
	};

	return guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	vcpu_fixture_open(&x->f, 0);
	x->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	ASSERT_TRUE(x->mem != MAP_FAILED);
	x->base = BASE_GPA;
	vcpu_fixture_set_guest(&x->f, guest_script, x);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	vcpu_fixture_close(&x->f);
	munmap(x->mem, NPAGES * PAGE);
	free(x);
	return 0;
}

/* Run the guest until it asks for the next job. */
static void run_to_ask(struct fx *x)
{
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(x->f.run->io.port, PORT_ASK);
}

static void guest_do(struct fx *x, enum op op, const unsigned *pages, unsigned n)
{
	x->op = op;
	x->npages = n;
	memcpy(x->pages, pages, n * sizeof(*pages));
	x->stamp++;
	run_to_ask(x);
}

static int get_log(struct fx *x, uint64_t bitmap[4])
{
	struct kvm_dirty_log log = { .slot = SLOT, .dirty_bitmap = bitmap };

	memset(bitmap, 0xa5, 4 * sizeof(uint64_t)); /* the kernel writes 4 words */
	return guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, &log);
}

/* The log must name exactly @pages. */
static void assert_log(struct fx *x, const unsigned *pages, unsigned n)
{
	uint64_t bitmap[4], want[4] = { 0 };

	for (unsigned i = 0; i < n; i++)
		want[pages[i] / 64] |= 1ULL << (pages[i] % 64);
	ASSERT_EQ(get_log(x, bitmap), 0);
	for (int w = 0; w < 4; w++)
		ASSERT_EQ(bitmap[w], want[w]);
}

static uint64_t vm_stat(struct fx *x, const char *name);

/* ---- checks ----------------------------------------------------------------------- */

TEST_F(test_checks, setup, teardown)
{
	struct fx *x = *state;
	uint64_t bitmap[4];
	struct kvm_dirty_log log = { .slot = SLOT, .dirty_bitmap = bitmap };
	struct kvm_clear_dirty_log clr = { .slot = SLOT, .num_pages = 64, .dirty_bitmap = bitmap };

	/* No slot, then a slot without logging: ENOENT. */
	ASSERT_ERRNO(get_log(x, bitmap), ENOENT);
	ASSERT_EQ(set_slot(x, 0), 0);
	ASSERT_ERRNO(get_log(x, bitmap), ENOENT);
	/* Slot numbers: an address space this VM lacks, an internal slot. */
	log.slot = 2U << 16 | SLOT;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, &log), EINVAL);
	log.slot = KVM_USER_MEM_SLOTS;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, &log), EINVAL);
	/* Clear: misaligned first page comes before the slot lookup. */
	clr.first_page = 1;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_CLEAR_DIRTY_LOG, &clr), EINVAL);
	clr.first_page = 0;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_CLEAR_DIRTY_LOG, &clr), ENOENT);
	/* The argument itself: EFAULT. */
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, (void *)8), EFAULT);
	/* Logging on (FLAGS_ONLY); the bitmap pointer is checked at copy-out. */
	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	log.slot = SLOT;
	log.dirty_bitmap = (void *)8;
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, &log), EFAULT);
	/* Off again: ENOENT, and the bitmap is gone. */
	ASSERT_EQ(set_slot(x, 0), 0);
	ASSERT_ERRNO(get_log(x, bitmap), ENOENT);
}

/* guest_memfd slots cannot log (6.8 and 6.12: not a valid flag with it). */
TEST_F(test_gmem_slot_refuses_logging, setup, teardown)
{
	struct fx *x = *state;
	int vm = guestmem_sys_ioctl(x->f.kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	struct kvm_create_guest_memfd cg = { .size = NPAGES * PAGE };
	struct kvm_userspace_memory_region2 r = {
		.slot = SLOT, .flags = KVM_MEM_GUEST_MEMFD | KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = BASE_GPA, .memory_size = NPAGES * PAGE,
		.userspace_addr = (uintptr_t)x->mem,
	};
	int gmem;

	ASSERT_TRUE(vm >= 0);
	gmem = guestmem_sys_ioctl(vm, KVM_CREATE_GUEST_MEMFD, &cg);
	ASSERT_TRUE(gmem >= 0);
	r.guest_memfd = (uint32_t)gmem;
	ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), EINVAL);
	r.flags = KVM_MEM_GUEST_MEMFD;
	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), 0);
	/* Nor turned on later: a guest_memfd slot's flags are immutable. */
	r.flags |= KVM_MEM_LOG_DIRTY_PAGES;
	ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_SET_USER_MEMORY_REGION2, &r), EINVAL);
	guestmem_sys_close(gmem);
	guestmem_sys_close(vm);
}

/* ---- write tracking ---------------------------------------------------------- */

TEST_F(test_log_exactly_the_writes, setup, teardown)
{
	struct fx *x = *state;
	const unsigned w1[] = { 0, 5, 6, 63, 64, 130, NPAGES - 1 };
	const unsigned r1[] = { 1, 2, 7, 150 };
	const unsigned w2[] = { 6, 100 };

	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	run_to_ask(x);
	/* Reads map pages read-only and are not logged. */
	guest_do(x, OP_READ, r1, 4);
	assert_log(x, NULL, 0);
	guest_do(x, OP_WRITE, w1, 7);
	assert_log(x, w1, 7);
	/* Harvested: nothing until the guest writes again ... */
	assert_log(x, NULL, 0);
	/* ... then exactly the pages written, also ones mapped before. */
	guest_do(x, OP_WRITE, w2, 2);
	assert_log(x, w2, 2);
	/* The data went to the host pages. */
	ASSERT_EQ(*(uint64_t *)(x->mem + 100 * PAGE + 8), x->stamp);
	/* Dirty-logged slots map at 4 KiB only. */
	ASSERT_EQ(vm_stat(x, "pages_2m"), 0);
	ASSERT_TRUE(vm_stat(x, "pages_4k") >= 7 + 4 + 1);
}

/* Turning logging on write-protects what is already mapped writable. */
TEST_F(test_enable_logging_on_mapped_slot, setup, teardown)
{
	struct fx *x = *state;
	const unsigned w[] = { 3, 4, 70 };
	const unsigned again[] = { 4 };

	ASSERT_EQ(set_slot(x, 0), 0);
	run_to_ask(x);
	guest_do(x, OP_WRITE, w, 3); /* mapped writable, no log */
	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	assert_log(x, NULL, 0);
	guest_do(x, OP_WRITE, again, 1);
	assert_log(x, again, 1);
	/* Off and on again: a fresh, empty bitmap. */
	ASSERT_EQ(set_slot(x, 0), 0);
	guest_do(x, OP_WRITE, w, 3);
	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	assert_log(x, NULL, 0);
}

static int enable_manual(struct fx *x, uint32_t flags, uint64_t options)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, .flags = flags };

	cap.args[0] = options;
	return guestmem_sys_ioctl(x->f.vm, KVM_ENABLE_CAP, &cap);
}

TEST_F(test_manual_protect_cap, setup, teardown)
{
	struct fx *x = *state;

	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_CHECK_EXTENSION,
					    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2),
			 KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.kvm, KVM_CHECK_EXTENSION,
					    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT), 0);
	ASSERT_ERRNO(enable_manual(x, 1, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE), EINVAL);
	/* INITIALLY_SET only with ENABLE; unknown bits never. */
	ASSERT_ERRNO(enable_manual(x, 0, KVM_DIRTY_LOG_INITIALLY_SET), EINVAL);
	ASSERT_ERRNO(enable_manual(x, 0, 4), EINVAL);
	ASSERT_ERRNO(enable_manual(x, 0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | 4), EINVAL);
	ASSERT_EQ(enable_manual(x, 0, 3), 0);
	ASSERT_EQ(enable_manual(x, 0, 0), 0); /* and off again */
}

static int clear_log(struct fx *x, uint64_t first, uint32_t num, uint64_t *bits)
{
	struct kvm_clear_dirty_log clr = {
		.slot = SLOT, .first_page = first, .num_pages = num, .dirty_bitmap = bits,
	};

	return guestmem_sys_ioctl(x->f.vm, KVM_CLEAR_DIRTY_LOG, &clr);
}

TEST_F(test_manual_clear, setup, teardown)
{
	struct fx *x = *state;
	const unsigned w[] = { 1, 2, 65, 199 };
	const unsigned left[] = { 2, 199 };
	const unsigned rewrite[] = { 1, 2 };
	const unsigned after[] = { 1, 2, 199 };
	uint64_t bits[4] = { 0 };

	ASSERT_EQ(enable_manual(x, 0, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE), 0);
	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	run_to_ask(x);
	guest_do(x, OP_WRITE, w, 4);
	/* GET does not clear with manual protect. */
	assert_log(x, w, 4);
	assert_log(x, w, 4);
	/* Range checks: length not a multiple of 64 unless it reaches the end. */
	ASSERT_ERRNO(clear_log(x, 0, 65, bits), EINVAL);
	ASSERT_ERRNO(clear_log(x, 64, NPAGES, bits), EINVAL);
	ASSERT_ERRNO(clear_log(x, 256, 0, bits), EINVAL);
	ASSERT_ERRNO(clear_log(x, 0, 64, (uint64_t *)8), EFAULT);
	ASSERT_EQ(clear_log(x, 192, NPAGES - 192, bits), 0); /* the tail: ok */
	/* Clear pages 1 and 65 only (bits beyond the range are ignored). */
	bits[0] = 1ULL << 1;
	bits[1] = 1ULL << 1;
	ASSERT_EQ(clear_log(x, 0, 128, bits), 0);
	assert_log(x, left, 2);
	/* A cleared page is write-protected again; an uncleared one stays set. */
	guest_do(x, OP_WRITE, rewrite, 2);
	assert_log(x, after, 3);
}

TEST_F(test_initially_set, setup, teardown)
{
	struct fx *x = *state;
	uint64_t bitmap[4], all[4] = { 0 };
	unsigned pages[NPAGES];

	for (unsigned i = 0; i < NPAGES; i++)
		pages[i] = i;
	ASSERT_EQ(enable_manual(x, 0, 3), 0);
	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	assert_log(x, pages, NPAGES); /* every page, no bit past the slot */
	/* Clear all; a guest write is then tracked. */
	memset(all, 0xff, sizeof(all));
	ASSERT_EQ(clear_log(x, 0, NPAGES, all), 0);
	ASSERT_EQ(get_log(x, bitmap), 0);
	ASSERT_EQ(bitmap[0] | bitmap[1] | bitmap[2] | bitmap[3], 0);
	run_to_ask(x);
	guest_do(x, OP_WRITE, pages + 9, 1);
	assert_log(x, pages + 9, 1);
}

/* Moving a logged slot keeps its log; deleting it frees it. */
TEST_F(test_move_and_delete, setup, teardown)
{
	struct fx *x = *state;
	const unsigned w[] = { 8 };
	struct kvm_userspace_memory_region r = {
		.slot = SLOT, .flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = BASE_GPA + (1ULL << 30), .memory_size = NPAGES * PAGE,
		.userspace_addr = (uintptr_t)x->mem,
	};

	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	run_to_ask(x);
	guest_do(x, OP_WRITE, w, 1);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	assert_log(x, w, 1);
	r.memory_size = 0;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	{
		uint64_t bitmap[4];

		ASSERT_ERRNO(get_log(x, bitmap), ENOENT);
	}
}

/*
 * No write is lost while the guest writes and the host harvests at the
 * same time: a page whose contents changed after a KVM_GET_DIRTY_LOG
 * returned (seen against a snapshot taken then) must be in a later log.
 * This is what the write protection and the flush before the return buy.
 */
#define ROUNDS 60

static void *run_thread(void *arg)
{
	struct fx *x = arg;

	run_to_ask(x);
	return NULL;
}

TEST_F(test_concurrent_no_lost_writes, setup, teardown)
{
	struct fx *x = *state;
	static uint64_t snap[ROUNDS][NPAGES], logs[ROUNDS + 1][4];
	pthread_t t;

	ASSERT_EQ(set_slot(x, KVM_MEM_LOG_DIRTY_PAGES), 0);
	run_to_ask(x);
	x->op = OP_SPIN;
	ASSERT_EQ(pthread_create(&t, NULL, run_thread, x), 0);
	for (int k = 0; k < ROUNDS; k++) {
		/* Let the guest write every page about twice between rounds. */
		uint64_t until = __atomic_load_n(&x->progress, __ATOMIC_ACQUIRE) + 2 * NPAGES;

		while (__atomic_load_n(&x->progress, __ATOMIC_ACQUIRE) < until)
			sched_yield();
		ASSERT_EQ(get_log(x, logs[k]), 0);
		for (unsigned p = 0; p < NPAGES; p++)
			snap[k][p] = __atomic_load_n((uint64_t *)(x->mem + p * PAGE + 8),
						     __ATOMIC_RELAXED);
	}
	__atomic_store_n(&x->stop, 1, __ATOMIC_RELEASE);
	ASSERT_EQ(pthread_join(t, NULL), 0);
	ASSERT_EQ(get_log(x, logs[ROUNDS]), 0);
	for (unsigned p = 0; p < NPAGES; p++) {
		uint64_t final = *(uint64_t *)(x->mem + p * PAGE + 8);
		bool logged_later = false;

		/* Walk back: "logged in round j or later" for each snapshot k < j. */
		for (int k = ROUNDS - 1; k >= 0; k--) {
			logged_later |= (logs[k + 1][p / 64] >> (p % 64)) & 1;
			if (snap[k][p] != final && !logged_later)
				FAIL("page %u changed after round %d (%lu -> %lu) but was not logged",
					 p, k, (unsigned long)snap[k][p], (unsigned long)final);
		}
	}
	ASSERT_TRUE(*(uint64_t *)(x->mem + 1 * PAGE + 8) > 0); /* the guest did write */
}

/* ---- eager page splitting ----------------------------------------------------------- */

#define HUGE (2ULL << 20)
#define HUGE_GPA 0x40000000ULL /* 1 GiB: 2 MiB aligned */
#define HUGE_SLOT 2

/* A 4 MiB slot at a 2 MiB-aligned gpa and hva, every page resident, so
 * that the guest's first writes map it with two 2 MiB leaves. */
static uint8_t *huge_slot(struct fx *x, uint32_t flags, uint8_t *mem)
{
	struct kvm_userspace_memory_region r = {
		.slot = HUGE_SLOT, .flags = flags, .guest_phys_addr = HUGE_GPA,
		.memory_size = 2 * HUGE,
	};

	if (!mem) {
		uint8_t *raw = mmap(NULL, 3 * HUGE, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		ASSERT_TRUE(raw != MAP_FAILED);
		mem = (uint8_t *)(((uintptr_t)raw + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
		memset(mem, 1, 2 * HUGE);
	}
	r.userspace_addr = (uintptr_t)mem;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	return mem;
}

/* The fixture's guest, on the huge slot's pages. */
static void huge_open(struct fx *x)
{
	vcpu_fixture_open(&x->f, 0);
	x->base = HUGE_GPA;
	vcpu_fixture_set_guest(&x->f, guest_script, x);
}

static void huge_write(struct fx *x, const unsigned *pages, unsigned n)
{
	x->op = OP_WRITE;
	x->npages = n;
	memcpy(x->pages, pages, n * sizeof(*pages));
	x->stamp++;
	run_to_ask(x);
}

static int huge_log(struct fx *x, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { .slot = HUGE_SLOT, .dirty_bitmap = bitmap };

	memset(bitmap, 0, 2 * HUGE / PAGE / 8);
	return guestmem_sys_ioctl(x->f.vm, KVM_GET_DIRTY_LOG, &log);
}

/*
 * Turning logging on splits the huge mappings to 4 KiB, read-only, as the
 * kernel's eager split does (pages_2m to pages_4k); turning it off drops
 * them, and the next writes map huge pages again.
 */
TEST(test_eager_split_on_enable)
{
	const unsigned both[] = { 0, 512 }, one[] = { 700 };
	uint64_t bitmap[2 * HUGE / PAGE / 64];
	struct fx x = { 0 };
	uint8_t *mem;

	huge_open(&x);
	mem = huge_slot(&x, 0, NULL);
	run_to_ask(&x);
	huge_write(&x, both, 2);
	ASSERT_EQ(vm_stat(&x, "pages_2m"), 2);
	ASSERT_EQ(vm_stat(&x, "pages_4k"), 0);
	huge_slot(&x, KVM_MEM_LOG_DIRTY_PAGES, mem);
	EXPECT_EQ(vm_stat(&x, "pages_2m"), 0);
	EXPECT_EQ(vm_stat(&x, "pages_4k"), 1024);
	/* Every split page is write-protected: one write, one bit. */
	huge_write(&x, one, 1);
	ASSERT_EQ(huge_log(&x, bitmap), 0);
	for (unsigned i = 0; i < 2 * HUGE / PAGE; i++)
		EXPECT_EQ((bitmap[i / 64] >> (i % 64)) & 1, i == 700);
	EXPECT_EQ(vm_stat(&x, "pages_4k"), 1024);
	/* Off: the slot's 4 KiB translations go; writes map 2 MiB again. */
	huge_slot(&x, 0, mem);
	EXPECT_EQ(vm_stat(&x, "pages_4k"), 0);
	huge_write(&x, both, 2);
	EXPECT_EQ(vm_stat(&x, "pages_2m"), 2);
	EXPECT_EQ(*(uint64_t *)(mem + 700 * PAGE + 8), 2u); /* the logged write landed */
	x.op = OP_QUIT;
	vcpu_fixture_close(&x.f);
}

/* With KVM_DIRTY_LOG_INITIALLY_SET the huge mappings stay until a
 * KVM_CLEAR_DIRTY_LOG reaches them; then only that 2 MiB is split. */
TEST(test_eager_split_on_clear)
{
	const unsigned both[] = { 0, 512 }, cleared[] = { 5 };
	uint64_t bits[1] = { 1ULL << 5 }, bitmap[2 * HUGE / PAGE / 64];
	struct kvm_clear_dirty_log clr = { .slot = HUGE_SLOT, .first_page = 0, .num_pages = 64,
					   .dirty_bitmap = bits };
	struct fx x = { 0 };
	uint8_t *mem;

	huge_open(&x);
	ASSERT_EQ(enable_manual(&x, 0, 3), 0);
	mem = huge_slot(&x, 0, NULL);
	run_to_ask(&x);
	huge_write(&x, both, 2);
	ASSERT_EQ(vm_stat(&x, "pages_2m"), 2);
	huge_slot(&x, KVM_MEM_LOG_DIRTY_PAGES, mem);
	EXPECT_EQ(vm_stat(&x, "pages_2m"), 2); /* every bit is set: nothing to protect */
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_CLEAR_DIRTY_LOG, &clr), 0);
	EXPECT_EQ(vm_stat(&x, "pages_2m"), 1);
	EXPECT_EQ(vm_stat(&x, "pages_4k"), 512);
	/* The cleared page is tracked again. */
	huge_write(&x, cleared, 1);
	ASSERT_EQ(huge_log(&x, bitmap), 0);
	EXPECT_EQ(bitmap[0] & (1ULL << 5), 1ULL << 5);
	x.op = OP_QUIT;
	vcpu_fixture_close(&x.f);
}

/* ---- a stat from the VM's binary stats fd ---------------------------------------- */

static uint64_t vm_stat(struct fx *x, const char *name)
{
	int fd = guestmem_sys_ioctl(x->f.vm, KVM_GET_STATS_FD, 0);
	struct kvm_stats_header h;
	uint64_t v = UINT64_MAX;
	char buf[64 * 64];

	ASSERT_TRUE(fd >= 0);
	ASSERT_EQ(guestmem_sys_pread(fd, &h, sizeof(h), 0), sizeof(h));
	ASSERT_TRUE(h.num_desc * 64 <= sizeof(buf));
	ASSERT_EQ(guestmem_sys_pread(fd, buf, h.num_desc * 64, h.desc_offset),
			 h.num_desc * 64);
	for (uint32_t i = 0; i < h.num_desc; i++) {
		struct kvm_stats_desc *d = (struct kvm_stats_desc *)(buf + i * 64);

		if (!strcmp((char *)(d + 1), name))
			ASSERT_EQ(guestmem_sys_pread(fd, &v, 8, h.data_offset + d->offset),
					 8);
	}
	guestmem_sys_close(fd);
	ASSERT_TRUE(v != UINT64_MAX);
	return v;
}


int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
