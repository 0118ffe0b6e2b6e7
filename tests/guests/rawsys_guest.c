// SPDX-License-Identifier: MIT
/*
 * Guest program of tests/uapi/test_rawsys.c (GUESTMEM_GUEST=rawsys_guest.so):
 * loads the word at RDI and stores an increasing counter at RDI + 8, for
 * ever.  The VMM watches the counter move, then unmaps, frees or
 * write-protects the memory behind it; the next access must end KVM_RUN
 * with EFAULT, never a signal in the VMM.
 */
#include <stdint.h>

#include <guestmem/guest.h>

void guestmem_guest_main(struct guestmem_guest *g)
{
	uint64_t base = guestmem_guest_regs(g)->rdi;

	for (uint64_t i = 1;; i++) {
		(void)guestmem_guest_read64(g, base);
		guestmem_guest_write64(g, base + 8, i);
	}
}
