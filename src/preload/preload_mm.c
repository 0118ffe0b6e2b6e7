// SPDX-License-Identifier: MIT
/*
 * Address-space wrappers: mmap of guestmem fds (guest_memfd in 6.18, the
 * vCPU's kvm_run area) and the mmu-notifier hooks.  The hooks bracket the
 * real call like invalidate_range_start/end: the kernel zaps secondary MMUs
 * inside the system call, before the old pages can go away, and keeps
 * faults on the range retrying until the change is complete; so do we.
 */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS /* define both the plain and the 64 names */
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/types.h>

#include "preload.h"

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	void *ret, *token;

	if (gm_uapi_mmap(addr, len, prot, flags, fd, off, &ret, &token))
		return ret;
	ret = NEXT(mmap)(addr, len, prot, flags, fd, off);
	gm_uapi_mm_post(token);
	return ret;
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	void *ret, *token;

	if (gm_uapi_mmap(addr, len, prot, flags, fd, off, &ret, &token))
		return ret;
	ret = NEXT(mmap64)(addr, len, prot, flags, fd, off);
	gm_uapi_mm_post(token);
	return ret;
}

EXPORT int munmap(void *addr, size_t len)
{
	void *token = gm_uapi_munmap_pre(addr, len);
	int ret = NEXT(munmap)(addr, len);

	gm_uapi_mm_post(token);
	return ret;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	void *new_addr = NULL;

	if (flags & MREMAP_FIXED) {
		va_list ap;

		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	void *token = gm_uapi_mremap_pre(old, old_len, new_len, flags, new_addr);
	void *ret = NEXT(mremap)(old, old_len, new_len, flags, new_addr);

	gm_uapi_mm_post(token);
	return ret;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	void *token = gm_uapi_madvise_pre(addr, len, advice);
	int ret = NEXT(madvise)(addr, len, advice);

	gm_uapi_mm_post(token);
	return ret;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	void *token = gm_uapi_mprotect_pre(addr, len);
	int ret = NEXT(mprotect)(addr, len, prot);

	gm_uapi_mm_post(token);
	return ret;
}
