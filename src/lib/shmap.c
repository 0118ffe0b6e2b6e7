// SPDX-License-Identifier: MIT
/* Shared memory with no descriptor (shmap.h). */
#include "shmap.h"

#include <errno.h>
#include <sys/mman.h>

#include "sys_raw.h"

void *gm_shmap_create(const char *name, size_t bytes, size_t map_len)
{
	int fd = gm_raw_memfd_create(name, MFD_CLOEXEC), e;
	void *p = MAP_FAILED;

	if (fd < 0)
		return NULL;
	if (gm_raw_ftruncate(fd, (off_t)bytes) == 0)
		p = gm_raw_mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	e = errno;
	gm_raw_close(fd); /* the mapping keeps the file */
	errno = e;
	return p == MAP_FAILED ? NULL : p;
}

int gm_shmap_alias(void *dst, const void *src, size_t len)
{
	/* old_size 0 duplicates a shared mapping instead of moving it. */
	if (gm_raw_mremap((void *)src, 0, len, MREMAP_MAYMOVE | MREMAP_FIXED, dst) == MAP_FAILED)
		return -1;
	return 0;
}
