// SPDX-License-Identifier: MIT
/*
 * Guest of host_mapping_test: read the first word of gpa HOST_MAP_GPA and
 * report it with an OUT to port 0x80, forever.  Every report is a fresh
 * guest load, so it sees whatever translation the stage-2 MMU has.
 */
#include <stdint.h>

#include <guestmem/guest.h>

#define HOST_MAP_GPA 0x100000ULL
#define HOST_MAP_PORT 0x80

void guestmem_guest_main(struct guestmem_guest *g)
{
	for (;;)
		guestmem_guest_outl(g, HOST_MAP_PORT,
				    (uint32_t)guestmem_guest_read64(g, HOST_MAP_GPA));
}
