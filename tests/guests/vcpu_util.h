/* SPDX-License-Identifier: MIT */
/*
 * VMM-side helpers for the vCPU selftest ports: vCPU creation and mmap,
 * KVM_RUN, registers, attributes, shared-memory backings, and ucall
 * dispatch.  Plain <linux/kvm.h> ioctls; like tests/selftests/common.h
 * (which this builds on) it compiles for `guestmem exec` and, with
 * -DGM_DIRECT, against guestmem_sys_*.
 *
 * The guest program is named by GUESTMEM_GUEST (the test's meson entry
 * sets it to the matching tests/guests module).
 */
#ifndef GM_TESTS_GUESTS_VCPU_UTIL_H
#define GM_TESTS_GUESTS_VCPU_UTIL_H

#include <pthread.h>

#include "../selftests/common.h"
#include "ucall.h"

#define SZ_2M (2UL << 20)

struct vcpu {
	int fd;
	uint32_t id;
	struct kvm_run *run;
	size_t map_size;
};

static inline int __vm_create_vcpu(int vm, uint32_t id)
{
	return ioctl(vm, KVM_CREATE_VCPU, (unsigned long)id);
}

/* KVM_CREATE_VCPU, then the kvm_run mapping of KVM_GET_VCPU_MMAP_SIZE bytes. */
static inline struct vcpu *vm_vcpu_add(int vm, uint32_t id)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int kvm = kvm_open();
	long size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	close(kvm);
	ASSERT_MSG(v && size >= (long)sizeof(struct kvm_run), "mmap size %ld", size);
	v->id = id;
	v->fd = __vm_create_vcpu(vm, id);
	ASSERT_MSG(v->fd >= 0, "KVM_CREATE_VCPU(%u): %s", id, errno_name(errno));
	v->map_size = (size_t)size;
	v->run = mmap(NULL, v->map_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	ASSERT_MSG(v->run != MAP_FAILED, "mmap(vcpu %u): %s", id, errno_name(errno));
	return v;
}

static inline void vcpu_free(struct vcpu *v)
{
	munmap(v->run, v->map_size);
	close(v->fd);
	free(v);
}

static inline int __vcpu_run(struct vcpu *v)
{
	return ioctl(v->fd, KVM_RUN, 0);
}

/* KVM_RUN until it does not fail with EINTR; it must then succeed. */
static inline void vcpu_run(struct vcpu *v)
{
	int r;

	do
		r = __vcpu_run(v);
	while (r == -1 && errno == EINTR);
	ASSERT_MSG(r == 0, "KVM_RUN(vcpu %u): %d %s, exit_reason %u", v->id, r,
		    errno_name(errno), v->run->exit_reason);
}

static inline void vcpu_regs_get(struct vcpu *v, struct kvm_regs *regs)
{
	ASSERT_OK(kvm_ioctl(v->fd, KVM_GET_REGS, regs));
}

static inline void vcpu_regs_set(struct vcpu *v, struct kvm_regs *regs)
{
	ASSERT_OK(kvm_ioctl(v->fd, KVM_SET_REGS, regs));
}

/* The guest's first argument, as the selftests' vcpu_args_set (RDI). */
static inline void vcpu_set_arg(struct vcpu *v, uint64_t arg)
{
	struct kvm_regs regs;

	vcpu_regs_get(v, &regs);
	regs.rdi = arg;
	vcpu_regs_set(v, &regs);
}

static inline void vm_enable_cap(int vm, uint32_t cap, uint64_t arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg0 } };

	ASSERT_OK(kvm_ioctl(vm, KVM_ENABLE_CAP, &c));
}

static inline void vm_set_memory_attributes(int vm, uint64_t gpa, uint64_t size, uint64_t attr)
{
	struct kvm_memory_attributes a = { .address = gpa, .size = size, .attributes = attr };

	ASSERT_MSG(kvm_ioctl(vm, KVM_SET_MEMORY_ATTRIBUTES, &a) == 0,
		    "SET_MEMORY_ATTRIBUTES gpa %#llx size %#llx attr %#llx: %s",
		    (unsigned long long)gpa, (unsigned long long)size, (unsigned long long)attr,
		    errno_name(errno));
}

/* ---- shared memory backings (the selftests' -s) ------------------------------------- */

enum backing {
	BACKING_ANON,
	BACKING_ANON_THP,
	BACKING_SHMEM,
};

static inline int backing_parse(const char *s, enum backing *b)
{
	static const char *names[] = { "anonymous", "anonymous_thp", "shmem" };

	for (int i = 0; i < 3; i++)
		if (!strcmp(s, names[i])) {
			*b = (enum backing)i;
			return 0;
		}
	return -1;
}

/* @size bytes aligned to 2 MiB (so that huge stage-2 mappings are possible). */
static inline void *backing_alloc(enum backing b, size_t size)
{
	int flags = b == BACKING_SHMEM ? MAP_SHARED | MAP_ANONYMOUS : MAP_PRIVATE | MAP_ANONYMOUS;
	uint8_t *p = mmap(NULL, size + SZ_2M, PROT_READ | PROT_WRITE, flags, -1, 0);
	uint8_t *a;

	ASSERT_MSG(p != MAP_FAILED, "mmap %zu: %s", size, errno_name(errno));
	a = (uint8_t *)(((uintptr_t)p + SZ_2M - 1) & ~(uintptr_t)(SZ_2M - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	munmap(a + size, (size_t)(p + SZ_2M - a));
	if (b == BACKING_ANON_THP)
		madvise(a, size, MADV_HUGEPAGE);
	return a;
}

/* ---- ucalls ---------------------------------------------------------------------------- */

/* The exit must be a ucall; an abort fails the test with the guest's message. */
static inline uint64_t vcpu_get_ucall(struct vcpu *v, const void *slot0, struct ucall *uc)
{
	uint64_t cmd = ucall_get(v->run, slot0, uc);

	ASSERT_MSG(cmd != UCALL_NONE, "vcpu %u: exit_reason %u is no ucall (io port %#x)",
		    v->id, v->run->exit_reason, v->run->io.port);
	ASSERT_MSG(cmd != UCALL_ABORT, "vcpu %u: guest assertion: %s", v->id, uc->msg);
	return cmd;
}

/* A guest program must be configured, as the tests cannot run without one. */
static inline void require_guest(void)
{
	const char *g = getenv("GUESTMEM_GUEST");

	if (!g || !*g)
		SKIP("GUESTMEM_GUEST is not set");
}

#endif
