// SPDX-License-Identifier: MIT
/*
 * Guest of private_mem_conversions_test (spec kvm-gmem-spec.md §5.2), for
 * GUESTMEM_GUEST.  Each vCPU works on its own chunk, whose gpa the VMM puts
 * in RDI: explicit shared<->private conversions with and without
 * fallocate, then punch-hole checks, with patterns that tell every backing
 * apart.
 */
#define GM_GUEST_SIDE
#include <stdbool.h>
#include <stdint.h>

#include <guestmem/guest.h>

#include "conversions.h"
#include "ucall.h"

/* Every byte of [gpa, gpa + size) must be @pattern. */
static void memcmp_g(struct guestmem_guest *g, uint64_t gpa, uint8_t pattern, uint64_t size)
{
	uint8_t buf[4096];

	for (uint64_t off = 0; off < size; off += sizeof(buf)) {
		uint64_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);

		guestmem_guest_read(g, gpa + off, buf, n);
		for (uint64_t i = 0; i < n; i++)
			if (buf[i] != pattern)
				ucall_abort(g, __FILE__, __LINE__,
					    "gpa %#llx reads %#x, expected %#x",
					    (unsigned long long)(gpa + off + i), buf[i], pattern);
	}
}

static void map_gpa_range(struct guestmem_guest *g, uint64_t gpa, uint64_t size, uint64_t flags)
{
	uint64_t ret = guestmem_guest_hypercall(g, KVM_HC_MAP_GPA_RANGE, gpa, size / CONV_PAGE,
						flags, 0);

	GUEST_ASSERT_EQ(g, ret, 0);
}

static void map_private(struct guestmem_guest *g, uint64_t gpa, uint64_t size, bool falloc)
{
	map_gpa_range(g, gpa, size, MAP_GPA_SET_ATTRIBUTES | (falloc ? MAP_GPA_DO_FALLOCATE : 0));
}

static void map_shared(struct guestmem_guest *g, uint64_t gpa, uint64_t size, bool falloc)
{
	map_gpa_range(g, gpa, size,
		      MAP_GPA_SET_ATTRIBUTES | MAP_GPA_SHARED | (falloc ? MAP_GPA_DO_FALLOCATE : 0));
}

/* "Map shared" by fallocate only: frees the private pages, attributes stay. */
static void punch_hole(struct guestmem_guest *g, uint64_t gpa, uint64_t size)
{
	map_gpa_range(g, gpa, size, MAP_GPA_SHARED | MAP_GPA_DO_FALLOCATE);
}

static void sync_shared(struct guestmem_guest *g, uint64_t gpa, uint64_t size, uint8_t expect,
			uint8_t next)
{
	GUEST_SYNC(g, SYNC_SHARED, gpa, size, expect, next);
}

static void sync_private(struct guestmem_guest *g, uint64_t gpa, uint64_t size, uint8_t expect)
{
	GUEST_SYNC(g, SYNC_PRIVATE, gpa, size, expect, 0);
}

/* Steps d-f of one range that fits the private checks (one page). */
static void check_private_range(struct guestmem_guest *g, uint64_t base, uint64_t gpa,
				uint64_t size, bool falloc)
{
	const uint8_t init_p = 0xcc, p1 = 0x11, p2 = 0x22, p3 = 0x33;

	guestmem_guest_memset(g, gpa, p2, size);
	sync_private(g, gpa, size, p1); /* the host still sees the shared data */
	memcmp_g(g, gpa, p2, size);
	if (gpa > base)
		memcmp_g(g, base, init_p, gpa - base);
	if (gpa + size < base + PER_CPU_DATA_SIZE)
		memcmp_g(g, gpa + size, init_p, base + PER_CPU_DATA_SIZE - (gpa + size));
	/* Odd pages back to shared: holes in a private range. */
	for (uint64_t j = 0; j < size; j += CONV_PAGE) {
		if ((j / CONV_PAGE) & 1) {
			map_shared(g, gpa + j, CONV_PAGE, falloc);
			sync_shared(g, gpa + j, CONV_PAGE, p1, p3);
			memcmp_g(g, gpa + j, p3, CONV_PAGE);
		} else {
			sync_private(g, gpa + j, CONV_PAGE, p1);
		}
	}
}

static void test_explicit_conversion(struct guestmem_guest *g, uint64_t base, bool falloc)
{
	const uint8_t def_p = 0xaa, init_p = 0xcc, p1 = 0x11, p2 = 0x22, p3 = 0x33, p4 = 0x44;

	/* Memory is shared by default. */
	guestmem_guest_memset(g, base, def_p, PER_CPU_DATA_SIZE);
	memcmp_g(g, base, def_p, PER_CPU_DATA_SIZE);
	sync_shared(g, base, PER_CPU_DATA_SIZE, def_p, init_p);
	memcmp_g(g, base, init_p, PER_CPU_DATA_SIZE);

	for (unsigned i = 0; i < sizeof(conv_test_ranges) / sizeof(conv_test_ranges[0]); i++) {
		uint64_t gpa = base + conv_test_ranges[i].offset, size = conv_test_ranges[i].size;

		guestmem_guest_memset(g, gpa, p1, size);
		map_private(g, gpa, size, falloc);
		if (size > CONV_PAGE)
			guestmem_guest_memset(g, gpa, p2, CONV_PAGE);
		else
			check_private_range(g, base, gpa, size, falloc);
		/* Everything back to shared; fill the even pages, let the host check. */
		map_shared(g, gpa, size, falloc);
		guestmem_guest_memset(g, gpa, p3, size);
		sync_shared(g, gpa, size, p3, p4);
		memcmp_g(g, gpa, p4, size);
		guestmem_guest_memset(g, gpa, init_p, size);
		/* Free every private page: the next range starts from nothing. */
		map_shared(g, base, PER_CPU_DATA_SIZE, true);
	}
}

static void test_punch_hole(struct guestmem_guest *g, uint64_t base, bool precise)
{
	const uint8_t init_p = 0xcc;

	map_private(g, base, PER_CPU_DATA_SIZE, false);
	for (unsigned i = 0; i < sizeof(conv_test_ranges) / sizeof(conv_test_ranges[0]); i++) {
		uint64_t gpa = base + conv_test_ranges[i].offset, size = conv_test_ranges[i].size;

		punch_hole(g, base, PER_CPU_DATA_SIZE);
		if (precise) {
			guestmem_guest_memset(g, gpa, init_p, size);
			memcmp_g(g, gpa, init_p, size);
		} else {
			guestmem_guest_memset(g, base, init_p, PER_CPU_DATA_SIZE);
			memcmp_g(g, base, init_p, PER_CPU_DATA_SIZE);
		}
		/* Punched private pages read as zeros. */
		punch_hole(g, gpa, size);
		memcmp_g(g, gpa, 0, size);
	}
}

void guestmem_guest_main(struct guestmem_guest *g)
{
	uint64_t base = guestmem_guest_regs(g)->rdi;

	test_explicit_conversion(g, base, false);
	test_explicit_conversion(g, base, true);
	test_punch_hole(g, base, false);
	test_punch_hole(g, base, true);
	GUEST_DONE(g);
}
