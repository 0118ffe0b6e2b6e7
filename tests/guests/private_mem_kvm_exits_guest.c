// SPDX-License-Identifier: MIT
/*
 * Guest of private_mem_kvm_exits_test (spec kvm-gmem-spec.md §5.3): read
 * one address forever, as the selftest's guest_repeatedly_read().  The VMM
 * expects KVM_RUN to fail with a memory-fault exit.
 */
#include <stdint.h>

#include <guestmem/guest.h>

#define EXITS_TEST_GPA 0xc0000000ULL

void guestmem_guest_main(struct guestmem_guest *g)
{
	/*
	 * Tell the VMM once the page is mapped (our addition: it makes "the
	 * memslot is deleted under a running guest" certain, not a race).
	 */
	(void)guestmem_guest_read64(g, EXITS_TEST_GPA);
	guestmem_guest_outb(g, 0x80, 1);
	for (;;)
		(void)guestmem_guest_read64(g, EXITS_TEST_GPA);
}
