// SPDX-License-Identifier: MIT
/*
 * A tiny VMM built against an installed guestmem with nothing but
 * pkg-config (tests/install/check-install.sh): a SW-protected VM, a
 * guest_memfd, a memslot binding it next to shared memory, attribute
 * conversions, fallocate and punch, through the public C API only.
 */
#include <errno.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include <guestmem/guestmem.h>

#define GPA (1ULL << 32)
#define SIZE (4ULL << 20)

static int failures;

static void expect(const char *what, long got, long want)
{
	printf("%-52s %4ld %s\n", what, got, got == want ? "ok" : "WRONG");
	if (got != want) {
		fprintf(stderr, "vmm: %s: got %ld, want %ld\n", what, got, want);
		failures++;
	}
}

int main(void)
{
	struct kvm_create_guest_memfd cg = { .size = SIZE };
	struct kvm_userspace_memory_region2 mr = {
		.slot = 0, .flags = KVM_MEM_GUEST_MEMFD, .guest_phys_addr = GPA,
		.memory_size = SIZE,
	};
	struct kvm_memory_attributes to_private = { GPA, 2 << 20, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
	struct kvm_memory_attributes to_shared = { GPA, 4096, 0, 0 };
	struct kvm_memory_attributes bad_flags = { GPA, 4096, 0, 1 };
	struct guestmem_invalidate_state st;
	struct guestmem_vm *vm = NULL;
	struct guestmem_gmem *gmem = NULL;
	void *shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (shared == MAP_FAILED)
		return 1;
	mr.userspace_addr = (unsigned long)shared;
	expect("config_set(bad profile) = -EINVAL", guestmem_config_set("linux-0.1", NULL, NULL),
	       -EINVAL);
	expect("config_set(linux-6.8, both switches =y)",
	       guestmem_config_set("linux-6.8", "KVM_SW_PROTECTED_VM=y KVM_SMM=y", "memfd"), 0);
	expect("vm_create(KVM_X86_SW_PROTECTED_VM)",
	       guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &vm), 0);
	if (!vm)
		return 1;
	expect("KVM_CAP_GUEST_MEMFD", guestmem_check_extension(vm, KVM_CAP_GUEST_MEMFD), 1);
	expect("gmem_create(4 MiB)", guestmem_gmem_create(vm, &cg, &gmem), 0);
	expect("set_memory_region (guest_memfd slot)", guestmem_set_memory_region(vm, &mr, gmem),
	       0);
	expect("set_memory_attributes(2 MiB private)",
	       guestmem_set_memory_attributes(vm, &to_private), 0);
	expect("fallocate(2 MiB)", guestmem_gmem_fallocate(gmem, FALLOC_FL_KEEP_SIZE, 0, 2 << 20),
	       0);
	expect("set_memory_attributes(4 KiB shared)", guestmem_set_memory_attributes(vm, &to_shared),
	       0);
	expect("punch(4 KiB)", guestmem_gmem_fallocate(gmem, FALLOC_FL_KEEP_SIZE |
						       FALLOC_FL_PUNCH_HOLE, 0, 4096), 0);
	expect("set_memory_attributes(flags=1) = -EINVAL",
	       guestmem_set_memory_attributes(vm, &bad_flags), -EINVAL);
	guestmem_vm_invalidate_state(vm, &st);
	expect("invalidations ended (in_progress)", st.in_progress, 0);
	guestmem_gmem_put(gmem);
	guestmem_vm_put(vm);
	munmap(shared, SIZE);
	printf("%s\n", failures ? "FAILED" : "all ok");
	return failures ? 1 : 0;
}
