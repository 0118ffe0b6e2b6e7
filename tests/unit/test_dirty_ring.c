/* SPDX-License-Identifier: MIT */
/*
 * The dirty ring through the uAPI: KVM_CAP_DIRTY_LOG_RING(_ACQ_REL) and its
 * enable checks in the kernel's order, the ring mmap()ed from the vCPU fd
 * at KVM_DIRTY_LOG_PAGE_OFFSET, entries pushed by a guest's write faults
 * on a logged slot, KVM_RESET_DIRTY_RINGS re-protecting what was harvested,
 * and KVM_EXIT_DIRTY_RING_FULL at the soft limit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "harness.h"
#include "vcpu_fixture.h"

#include <guestmem/guestmem.h>

#define PAGE 4096
#define RING_BYTES 4096 /* 256 entries, soft limit 256 - 64 = 192 */
#define RING_ENTRIES (RING_BYTES / 16)
#define SOFT_LIMIT (RING_ENTRIES - 64)
#define SLOT_PAGES 256
#define GUEST_PORT 0x80
#ifndef KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP
#define KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP 225
#endif

static int enable_cap(int fd, uint32_t cap, uint32_t flags, uint64_t arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .flags = flags, .args = { arg0 } };

	return guestmem_sys_ioctl(fd, KVM_ENABLE_CAP, &c);
}

static int new_vm(int kvm)
{
	int vm = guestmem_sys_ioctl(kvm, KVM_CREATE_VM, 0);

	ASSERT_TRUE(vm >= 0);
	return vm;
}

TEST(check_extension)
{
	const char *const profiles[] = { "linux-6.8", "linux-6.12", "linux-6.18" };
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_TRUE(kvm >= 0);
	for (int i = 0; i < 3; i++) {
		int vm;

		ASSERT_EQ(guestmem_config_set(profiles[i], NULL, NULL), 0);
		vm = new_vm(kvm);
		EXPECT_EQ(guestmem_sys_ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING),
			  65536 * 16);
		EXPECT_EQ(guestmem_sys_ioctl(kvm, KVM_CHECK_EXTENSION,
					     KVM_CAP_DIRTY_LOG_RING_ACQ_REL), 65536 * 16);
		/* Ring plus bitmap is arm64's. */
		EXPECT_EQ(guestmem_sys_ioctl(vm, KVM_CHECK_EXTENSION,
					     KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP), 0);
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

TEST(enable_checks)
{
	static const struct {
		uint64_t size;
		int err;
	} bad[] = {
		{ 0, EINVAL },		       /* not a power of two */
		{ 3 * 4096, EINVAL },	       /* not a power of two */
		{ 512, EINVAL },	       /* below the 64 reserved entries */
		{ 2048, EINVAL },	       /* below a page */
		{ 2 * 65536 * 16, E2BIG },     /* above the maximum */
		{ 1ULL << 40, E2BIG },	       /* far above, no truncation */
	};
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC), vm, vcpu;

	ASSERT_TRUE(kvm >= 0);
	vm = new_vm(kvm);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		DIAG("size %#llx", (unsigned long long)bad[i].size);
		ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING, 0, bad[i].size), bad[i].err);
		ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 0, bad[i].size),
			     bad[i].err);
	}
	ASSERT_ERRNO(guestmem_sys_ioctl(vm, KVM_RESET_DIRTY_RINGS, 0), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, 0, 0), EINVAL);
	/* A generic cap: the flags are not looked at. */
	ASSERT_EQ(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 1, 65536 * 16), 0);
	/* Once only, even the same size; the size checks come first. */
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING, 0, 65536 * 16), EINVAL);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING, 0, 2 * 65536 * 16), E2BIG);
	ASSERT_EQ(guestmem_sys_ioctl(vm, KVM_RESET_DIRTY_RINGS, 0), 0);
	guestmem_sys_close(vm);

	/* Not after the first vCPU. */
	vm = new_vm(kvm);
	vcpu = guestmem_sys_ioctl(vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(vcpu >= 0);
	ASSERT_ERRNO(enable_cap(vm, KVM_CAP_DIRTY_LOG_RING, 0, RING_BYTES), EINVAL);
	guestmem_sys_close(vcpu);
	guestmem_sys_close(vm);
	guestmem_sys_close(kvm);
}

/* ---- a guest that writes pages of slot 0, one port write per batch ---- */

struct writer {
	uint32_t first, count; /* pages to write, then OUT */
};

static void writer_main(struct guestmem_guest *g)
{
	struct writer *w = guestmem_guest_opaque(g);

	for (uint8_t round = 0;; round++) {
		for (uint32_t i = 0; i < w->count; i++) {
			uint64_t x = round;

			guestmem_guest_write(g, (uint64_t)(w->first + i) * PAGE, &x, sizeof(x));
		}
		guestmem_guest_outb(g, GUEST_PORT, round);
	}
}

struct ring_fx {
	struct vcpu_fixture f;
	struct writer w;
	void *mem;
	struct kvm_dirty_gfn *ring;
};

/* A VM with a ring of RING_BYTES, a logged slot 0 and the writer guest. */
static void ring_fx_open(struct ring_fx *x)
{
	struct kvm_userspace_memory_region r;

	x->f.kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	ASSERT_TRUE(x->f.kvm >= 0);
	x->f.vm = new_vm(x->f.kvm);
	ASSERT_EQ(enable_cap(x->f.vm, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 0, RING_BYTES), 0);
	x->f.vcpu = guestmem_sys_ioctl(x->f.vm, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(x->f.vcpu >= 0);
	x->f.run = guestmem_sys_mmap(NULL, VCPU_FIXTURE_RUN_BYTES, PROT_READ | PROT_WRITE,
				     MAP_SHARED, x->f.vcpu, 0);
	ASSERT_TRUE(x->f.run != MAP_FAILED);
	x->ring = guestmem_sys_mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
				    x->f.vcpu, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE);
	ASSERT_TRUE(x->ring != MAP_FAILED);
	x->mem = mmap(NULL, SLOT_PAGES * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(x->mem != MAP_FAILED);
	r = (struct kvm_userspace_memory_region){ .slot = 0,
						  .flags = KVM_MEM_LOG_DIRTY_PAGES,
						  .memory_size = SLOT_PAGES * PAGE,
						  .userspace_addr = (uintptr_t)x->mem };
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	vcpu_fixture_set_guest(&x->f, writer_main, &x->w);
}

static void ring_fx_close(struct ring_fx *x)
{
	guestmem_sys_munmap(x->ring, RING_BYTES);
	vcpu_fixture_close(&x->f);
	munmap(x->mem, SLOT_PAGES * PAGE);
}

static uint32_t entry_flags(struct ring_fx *x, uint32_t i)
{
	return __atomic_load_n(&x->ring[i % RING_ENTRIES].flags, __ATOMIC_ACQUIRE);
}

/* Mark entries [from, to) harvested, as a VMM does. */
static void harvest(struct ring_fx *x, uint32_t from, uint32_t to)
{
	for (uint32_t i = from; i < to; i++)
		__atomic_store_n(&x->ring[i % RING_ENTRIES].flags, KVM_DIRTY_GFN_F_RESET,
				 __ATOMIC_RELEASE);
}

static void run_expect(struct ring_fx *x, uint32_t reason)
{
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(x->f.run->exit_reason, reason);
}

TEST(mmap_rules)
{
	struct ring_fx x = { .w = { 0, 0 } };
	void *p;

	ring_fx_open(&x);
	/* Private or executable mappings touching the ring: EINVAL. */
	ASSERT_TRUE(guestmem_sys_mmap(NULL, RING_BYTES, PROT_READ, MAP_PRIVATE, x.f.vcpu,
				      KVM_DIRTY_LOG_PAGE_OFFSET * PAGE) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_TRUE(guestmem_sys_mmap(NULL, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, x.f.vcpu,
				      KVM_DIRTY_LOG_PAGE_OFFSET * PAGE) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	/* Its last page decides too. */
	ASSERT_TRUE(guestmem_sys_mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, x.f.vcpu,
				      (KVM_DIRTY_LOG_PAGE_OFFSET - 1) * PAGE) == MAP_FAILED);
	ASSERT_EQ(errno, EINVAL);
	/* Below the ring a private mapping is fine. */
	p = guestmem_sys_mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, x.f.vcpu, 0);
	ASSERT_TRUE(p != MAP_FAILED);
	guestmem_sys_munmap(p, PAGE);
	/* The bitmap ioctls are gone with a ring. */
	{
		uint64_t bitmap[SLOT_PAGES / 64];
		struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = bitmap };
		struct kvm_clear_dirty_log clr = { .slot = 0, .num_pages = 64,
						   .dirty_bitmap = bitmap };

		ASSERT_ERRNO(guestmem_sys_ioctl(x.f.vm, KVM_GET_DIRTY_LOG, &log), ENXIO);
		ASSERT_ERRNO(guestmem_sys_ioctl(x.f.vm, KVM_CLEAR_DIRTY_LOG, &clr), ENXIO);
	}
	/* A fresh ring is all zeros. */
	for (uint32_t i = 0; i < RING_ENTRIES; i++)
		ASSERT_EQ(entry_flags(&x, i), 0);
	ring_fx_close(&x);
}

TEST(push_and_reset)
{
	struct ring_fx x = { .w = { 10, 3 } };

	ring_fx_open(&x);
	run_expect(&x, KVM_EXIT_IO);
	/* Pages 10, 11, 12 of slot 0, in the order written. */
	for (uint32_t i = 0; i < 3; i++) {
		EXPECT_EQ(entry_flags(&x, i), KVM_DIRTY_GFN_F_DIRTY);
		EXPECT_EQ(x.ring[i].slot, 0);
		EXPECT_EQ(x.ring[i].offset, 10 + i);
	}
	EXPECT_EQ(entry_flags(&x, 3), 0);
	/* Writing them again logs nothing: they are writable now. */
	run_expect(&x, KVM_EXIT_IO);
	EXPECT_EQ(entry_flags(&x, 3), 0);
	/* Nothing harvested: nothing reset. */
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 0);
	/* Two harvested: reset stops at the first not marked. */
	harvest(&x, 0, 2);
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 2);
	EXPECT_EQ(entry_flags(&x, 0), 0);
	EXPECT_EQ(entry_flags(&x, 1), 0);
	EXPECT_EQ(entry_flags(&x, 2), KVM_DIRTY_GFN_F_DIRTY);
	/* Pages 10 and 11 are write-protected again: the next writes log them. */
	run_expect(&x, KVM_EXIT_IO);
	EXPECT_EQ(x.ring[3].offset, 10);
	EXPECT_EQ(x.ring[4].offset, 11);
	EXPECT_EQ(entry_flags(&x, 5), 0);
	harvest(&x, 2, 5);
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 3);
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 0);
	ring_fx_close(&x);
}

/* Entries the VMM corrupted are reset and counted, but protect nothing. */
TEST(reset_bad_entries)
{
	struct ring_fx x = { .w = { 0, 1 } };

	ring_fx_open(&x);
	run_expect(&x, KVM_EXIT_IO);
	x.ring[0].slot = 77;	       /* no such slot */
	x.ring[0].offset = 1ULL << 40; /* nor such page */
	harvest(&x, 0, 1);
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 1);
	/* Page 0 was not re-protected: writing it again logs nothing. */
	run_expect(&x, KVM_EXIT_IO);
	EXPECT_EQ(entry_flags(&x, 1), 0);
	ring_fx_close(&x);
}

TEST(full_ring_exit)
{
	struct ring_fx x = { .w = { 0, SOFT_LIMIT + 20 } };
	uint32_t n;

	ring_fx_open(&x);
	/* The vCPU stops at the soft limit, with the reserve untouched. */
	run_expect(&x, KVM_EXIT_DIRTY_RING_FULL);
	for (n = 0; n < RING_ENTRIES && entry_flags(&x, n) == KVM_DIRTY_GFN_F_DIRTY; n++)
		EXPECT_EQ(x.ring[n].offset, n);
	EXPECT_EQ(n, SOFT_LIMIT);
	/* Still full: every entry exits again, without running. */
	run_expect(&x, KVM_EXIT_DIRTY_RING_FULL);
	EXPECT_EQ(entry_flags(&x, SOFT_LIMIT), 0);
	/* Harvest and reset: the guest goes on to its port write. */
	harvest(&x, 0, SOFT_LIMIT);
	ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), SOFT_LIMIT);
	run_expect(&x, KVM_EXIT_IO);
	/*
	 * The write that filled the ring had not happened when the vCPU
	 * exited; the reset protected its page again, so it faults and is
	 * logged once more (as under KVM), then the remaining 20 follow.
	 */
	EXPECT_EQ(entry_flags(&x, SOFT_LIMIT), KVM_DIRTY_GFN_F_DIRTY);
	EXPECT_EQ(x.ring[SOFT_LIMIT].offset, SOFT_LIMIT - 1);
	for (n = SOFT_LIMIT + 1; n <= SOFT_LIMIT + 20; n++) {
		EXPECT_EQ(entry_flags(&x, n), KVM_DIRTY_GFN_F_DIRTY);
		EXPECT_EQ(x.ring[n % RING_ENTRIES].offset, n - 1);
	}
	EXPECT_EQ(entry_flags(&x, n), 0);
	ring_fx_close(&x);
}

/* Rounds of write, harvest, reset: the indices wrap around the ring. */
TEST(wrap_around)
{
	struct ring_fx x = { .w = { 5, 100 } };
	uint32_t next = 0;

	ring_fx_open(&x);
	for (int round = 0; round < 6; round++) {
		run_expect(&x, KVM_EXIT_IO);
		for (uint32_t i = 0; i < 100; i++) {
			ASSERT_EQ(entry_flags(&x, next + i), KVM_DIRTY_GFN_F_DIRTY);
			ASSERT_EQ(x.ring[(next + i) % RING_ENTRIES].offset, 5 + i);
		}
		ASSERT_EQ(entry_flags(&x, next + 100), 0);
		harvest(&x, next, next + 100);
		ASSERT_EQ(guestmem_sys_ioctl(x.f.vm, KVM_RESET_DIRTY_RINGS, 0), 100);
		next += 100;
	}
	EXPECT_GT(next, 2 * RING_ENTRIES);
	ring_fx_close(&x);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
