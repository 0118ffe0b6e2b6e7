/* SPDX-License-Identifier: MIT */
/*
 * What private_mem_conversions_test's guest and VMM agree on (spec
 * kvm-gmem-spec.md §5.2): the hypercall flags, the SYNC kinds and the test
 * ranges.
 */
#ifndef GM_TESTS_GUESTS_CONVERSIONS_H
#define GM_TESTS_GUESTS_CONVERSIONS_H

#include <stdint.h>

#include <guestmem/kvm.h>

#define CONV_PAGE 4096ULL
#define CONV_SZ_2M (2ULL << 20)
/* Each vCPU's data: 2 MiB + 4 KiB, so that ranges cross a 2 MiB boundary. */
#define PER_CPU_DATA_SIZE (CONV_SZ_2M + CONV_PAGE)
#define BASE_DATA_GPA (1ULL << 32)
#define BASE_DATA_SLOT 10

/* args[2] of KVM_HC_MAP_GPA_RANGE: the test's own meaning (not KVM's). */
#define MAP_GPA_SET_ATTRIBUTES (1ULL << 0)
#define MAP_GPA_SHARED (1ULL << 1)
#define MAP_GPA_DO_FALLOCATE (1ULL << 2)

enum { SYNC_SHARED, SYNC_PRIVATE };

static const struct {
	uint64_t offset;
	uint64_t size;
} conv_test_ranges[] = {
	{ 0, CONV_PAGE },
	{ 0, CONV_SZ_2M },
	{ CONV_PAGE, CONV_PAGE },
	{ CONV_PAGE, CONV_SZ_2M },
	{ CONV_SZ_2M, CONV_PAGE },
};

#endif
