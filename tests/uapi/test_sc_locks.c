// SPDX-License-Identifier: MIT
/*
 * test_sc_locks: the seccomp listener (src/preload/seccomp.c) must never
 * wait for a lock that a thread of the VMM can hold while it makes a call
 * the filter routes to that same listener.
 *
 * libc's allocator makes such calls from inside the library: growing a
 * thread's heap is an mprotect, trimming it an madvise, and they come
 * while the library holds a lock of its own.  This program defines
 * realloc (the library's calls bind to it, as to any allocator the VMM
 * links in) and, while armed, makes a raw mprotect of a page of its own
 * from inside it, as glibc's heap growth would.  Until session 12 the
 * library realloc'ed its record of memslot ranges (src/uapi/hva.c) under
 * the lock the listener took for every routed address-space call; that
 * record is now a fixed array, so this program makes the library realloc
 * under a lock of its own another way: a vCPU's MSRs, each new index
 * grown with realloc under the vCPU's mutex.  Run under `guestmem exec`;
 * a hang is the failure (the harness's timeout).  TAP output.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#define SLOTS 40
#define PAGE 4096UL

static void *(*next_realloc)(void *, size_t);
static void *page;
static int armed, routed_calls;

/* Exported: the build hides symbols by default. */
__attribute__((visibility("default"))) void *realloc(void *p, size_t size)
{
	if (__atomic_load_n(&armed, __ATOMIC_RELAXED) && page) {
		/* What glibc's heap growth does: a routed call, made here. */
		syscall(SYS_mprotect, page, PAGE, PROT_READ | PROT_WRITE);
		__atomic_fetch_add(&routed_calls, 1, __ATOMIC_RELAXED);
	}
	if (!next_realloc)
		next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	return next_realloc(p, size);
}

int main(void)
{
	char *ram;
	int kvm, vm, vcpu, msrs = -1, made = 0, failed = 0;

	next_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	page = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Every other page a memslot: ranges that never merge. */
	ram = mmap(NULL, 2 * SLOTS * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	if (!next_realloc || page == MAP_FAILED || ram == MAP_FAILED || vm < 0) {
		printf("Bail out! setup failed\n");
		return 1;
	}
	__atomic_store_n(&armed, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < SLOTS; i++) {
		struct kvm_userspace_memory_region r = {
			.slot = (unsigned int)i,
			.guest_phys_addr = (unsigned long)i << 20,
			.memory_size = PAGE,
			.userspace_addr = (unsigned long)(ram + 2 * i * PAGE),
		};

		if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r))
			failed++;
		else
			made++;
	}
	/*
	 * A vCPU's MSRs: each index set for the first time grows the vCPU's
	 * array with realloc under the vCPU's mutex.
	 */
	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) {
		failed++;
	} else {
		static const uint32_t idx[] = { 0xc0000102, 0xc0000082, 0xc0000083,
						0x175, 0x176, 0xc0000103 };
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e[6];
		} m = { .hdr.nmsrs = 6 };

		for (int i = 0; i < 6; i++)
			m.e[i] = (struct kvm_msr_entry){ .index = idx[i], .data = 0x1000u * (i + 1) };
		msrs = ioctl(vcpu, KVM_SET_MSRS, &m);
		if (msrs != 6)
			failed++;
	}
	__atomic_store_n(&armed, 0, __ATOMIC_RELAXED);
	printf("%s 1 - %d memslots made and %d MSRs set while the library's reallocs made "
	       "routed calls%s\n",
	       made == SLOTS && !failed ? "ok" : "not ok", made, msrs,
	       made == SLOTS && !failed ? "" : " # some failed");
	/* Proof that the hook ran where it matters, not only that nothing hung. */
	printf("%s 2 - the library reallocated while armed # %d routed calls\n",
	       routed_calls >= 2 ? "ok" : "not ok", routed_calls);
	printf("1..2\n");
	if (vcpu >= 0)
		close(vcpu);
	close(vm);
	close(kvm);
	return made == SLOTS && !failed && routed_calls >= 2 ? 0 : 1;
}
