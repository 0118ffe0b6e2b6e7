// SPDX-License-Identifier: MIT
/*
 * Port of the 6.8 selftest x86_64/private_mem_kvm_exits_test (spec
 * kvm-gmem-spec.md §5.3): a private access must end KVM_RUN with EFAULT and
 * KVM_EXIT_MEMORY_FAULT (PRIVATE, page gpa, 4096 bytes) when the memslot is
 * deleted under the running guest, and when the memslot cannot supply
 * private memory (no guest_memfd).  The guest
 * (tests/guests/private_mem_kvm_exits_guest.c) reads 0xC0000000 forever.
 */
#include "../guests/vcpu_util.h"

#define EXITS_TEST_GPA 0xc0000000ULL
#define EXITS_TEST_SIZE 4096
#define EXITS_TEST_SLOT 10

/* One KVM_RUN; a failure must be EFAULT with a memory-fault exit. */
static uint32_t run_vcpu_get_exit_reason(struct vcpu *v)
{
	int r = __vcpu_run(v);

	if (r) {
		ASSERT_MSG(errno == EFAULT, "KVM_RUN: %d errno %s, expected EFAULT", r,
			    errno_name(errno));
		ASSERT_EQ(v->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	}
	return v->run->exit_reason;
}

static void assert_private_fault(struct vcpu *v)
{
	struct kvm_run_memory_fault *mf = kvm_run_memory_fault(v->run);

	ASSERT_EQ(mf->flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(mf->gpa, EXITS_TEST_GPA);
	ASSERT_EQ(mf->size, EXITS_TEST_SIZE);
}

struct runner {
	struct vcpu *v;
	pid_t tid; /* set before KVM_RUN */
};

static void *run_vcpu_thread(void *arg)
{
	struct runner *r = arg;

	__atomic_store_n(&r->tid, gettid(), __ATOMIC_RELEASE);
	return (void *)(uintptr_t)run_vcpu_get_exit_reason(r->v);
}

static int protected_vm(void)
{
	require_guest();
	if (!vm_type_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP("KVM_X86_SW_PROTECTED_VM is not supported");
	return vm_create(KVM_X86_SW_PROTECTED_VM);
}

TEST_TIMEOUT(test_private_access_memslot_deleted, 60)
{
	int vm = protected_vm(), gmem;
	uint8_t *shared = backing_alloc(BACKING_ANON, SZ_2M);
	struct runner r = { 0 };
	struct vcpu *v;
	pthread_t t;
	void *reason;

	gmem = vm_create_guest_memfd(vm, EXITS_TEST_SIZE, 0);
	vm_set_region2(vm, EXITS_TEST_SLOT, KVM_MEM_GUEST_MEMFD, EXITS_TEST_GPA,
		       EXITS_TEST_SIZE, shared, gmem, 0);
	vm_set_memory_attributes(vm, EXITS_TEST_GPA, EXITS_TEST_SIZE,
				 KVM_MEMORY_ATTRIBUTE_PRIVATE);
	v = vm_vcpu_add(vm, 0);
	/* The guest maps the private page and reports it with an OUT. */
	ASSERT_EQ(run_vcpu_get_exit_reason(v), KVM_EXIT_IO);
	r.v = v;
	ASSERT_EQ(pthread_create(&t, NULL, run_vcpu_thread, &r), 0);
	/*
	 * Delete once the runner sleeps inside KVM_RUN: the guest spins on the
	 * mapped page (the delete must zap it either way).
	 */
	ASSERT_WAIT(__atomic_load_n(&r.tid, __ATOMIC_ACQUIRE) && test_thread_blocked(r.tid),
		    10000);
	vm_set_region2(vm, EXITS_TEST_SLOT, KVM_MEM_GUEST_MEMFD, EXITS_TEST_GPA, 0, shared,
		       gmem, 0);
	pthread_join(t, &reason);
	ASSERT_EQ((uintptr_t)reason, KVM_EXIT_MEMORY_FAULT);
	assert_private_fault(v);
	vcpu_free(v);
	close(gmem);
	close(vm);
}

TEST_TIMEOUT(test_private_access_memslot_not_private, 60)
{
	int vm = protected_vm();
	uint8_t *shared = backing_alloc(BACKING_ANON, SZ_2M);
	struct vcpu *v;

	/* A plain memslot: it cannot supply private memory. */
	vm_set_region(vm, EXITS_TEST_SLOT, 0, EXITS_TEST_GPA, EXITS_TEST_SIZE, shared);
	vm_set_memory_attributes(vm, EXITS_TEST_GPA, EXITS_TEST_SIZE,
				 KVM_MEMORY_ATTRIBUTE_PRIVATE);
	v = vm_vcpu_add(vm, 0);
	ASSERT_EQ(run_vcpu_get_exit_reason(v), KVM_EXIT_MEMORY_FAULT);
	assert_private_fault(v);
	vcpu_free(v);
	close(vm);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
