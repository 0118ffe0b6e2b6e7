/* SPDX-License-Identifier: MIT */
/* What set_memory_region_vcpu_test's guest and VMM agree on (spec §5.4). */
#ifndef GM_TESTS_GUESTS_SET_MEMORY_REGION_H
#define GM_TESTS_GUESTS_SET_MEMORY_REGION_H

#define MEM_REGION_GPA 0xc0000000ULL
#define MEM_REGION_SIZE (2ULL << 20)
#define MEM_REGION_SLOT 10
#define MMIO_VAL 0xbeefULL
/* The guest's "code": a word in memslot 0, below the ucall pages. */
#define CODE_GPA 0x1000ULL
/*
 * The guest's spin count, in a memslot of its own that no scenario deletes
 * (a write into memslot 0 could become an MMIO write once the "code" goes):
 * the VMM waits for spins, not for time.
 */
#define HEARTBEAT_GPA 0x80000000ULL
#define HEARTBEAT_SLOT 1
#define HEARTBEAT_SIZE 4096ULL

#endif
