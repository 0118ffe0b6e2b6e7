// SPDX-License-Identifier: MIT
/*
 * Guest of set_memory_region_vcpu_test (spec kvm-gmem-spec.md §5.4, the
 * move and delete loops).  RDI selects the scenario: 0 move, 1 delete.
 *
 * A C guest's code does not live in guest memory, so "deleting the memslot
 * that holds the guest's code" has no direct analogue.  We model the
 * instruction fetch: every spin iteration also reads the guest's "code
 * word" at CODE_GPA in memslot 0.  Once memslot 0 is gone that fetch is an
 * access without memory, which the VMM sees as KVM_EXIT_MMIO at CODE_GPA;
 * the test treats that as the stop a real vCPU reports as SHUTDOWN or
 * INTERNAL_ERROR when its page tables and code vanish.
 */
#define GM_GUEST_SIDE
#include <stdint.h>

#include <guestmem/guest.h>

#include "set_memory_region.h"
#include "ucall.h"

/* Spin while the region's first word reads @spin_val; sync; return it. */
static uint64_t spin_on_val(struct guestmem_guest *g, uint64_t spin_val)
{
	static uint64_t beats;
	uint64_t val;

	do {
		val = guestmem_guest_read64(g, MEM_REGION_GPA);
		(void)guestmem_guest_read64(g, CODE_GPA); /* "fetch the next instruction" */
		/* Our addition: count the spins, for the VMM's handshake. */
		guestmem_guest_write64(g, HEARTBEAT_GPA, ++beats);
	} while (val == spin_val);
	GUEST_SYNC(g, 0, 0, 0, 0, 0);
	return val;
}

static void guest_code_move_memory_region(struct guestmem_guest *g)
{
	uint64_t val;

	GUEST_SYNC(g, 0, 0, 0, 0, 0);
	/* The region starts moving to a misaligned gpa: MMIO or the real 1. */
	val = spin_on_val(g, 0);
	GUEST_ASSERT(g, val == 1 || val == MMIO_VAL);
	/* Until the misaligning move completes. */
	val = spin_on_val(g, MMIO_VAL);
	GUEST_ASSERT(g, val == 1 || val == 0);
	/* Until the region starts to move back. */
	val = spin_on_val(g, 0);
	GUEST_ASSERT(g, val == 1 || val == MMIO_VAL);
	/* Until the re-aligning move completes: the host's 1, never its 2. */
	val = spin_on_val(g, MMIO_VAL);
	GUEST_ASSERT_EQ(g, val, 1);
	GUEST_DONE(g);
}

static void guest_code_delete_memory_region(struct guestmem_guest *g)
{
	uint64_t val;

	GUEST_SYNC(g, 0, 0, 0, 0, 0);
	/* Until the region is deleted: then only the VMM's MMIO answer. */
	val = spin_on_val(g, 0);
	GUEST_ASSERT_EQ(g, val, MMIO_VAL);
	/* Until it is re-created: fresh memory reads 0. */
	val = spin_on_val(g, MMIO_VAL);
	GUEST_ASSERT_EQ(g, val, 0);
	/* Until it is deleted again. */
	val = spin_on_val(g, 0);
	GUEST_ASSERT_EQ(g, val, MMIO_VAL);
	/* Forever, until memslot 0 (the "code") goes away. */
	spin_on_val(g, MMIO_VAL);
	GUEST_ASSERT(g, 0);
}

void guestmem_guest_main(struct guestmem_guest *g)
{
	if (guestmem_guest_regs(g)->rdi)
		guest_code_delete_memory_region(g);
	else
		guest_code_move_memory_region(g);
}
