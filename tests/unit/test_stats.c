/* SPDX-License-Identifier: MIT */
/*
 * Binary statistics (KVM_GET_STATS_FD, src/uapi/stats.c) and
 * KVM_PRE_FAULT_MEMORY (src/mmu/fault.c) through <guestmem/sys.h>: the
 * stats file's layout, read/pread/lseek semantics and lifetime, counters
 * that move with what a C guest does, and pre-faulting's checks and
 * partial progress.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "uapi/uapi.h"
#include "vcpu/vcpu.h"

#define PAGE 4096
#define NPAGES 1024 /* 4 MiB: two 2 MiB blocks */
#define BASE_GPA 0x40000000ULL
#define DESC_SIZE (16 + KVM_STATS_NAME_SIZE)

struct fx {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	uint8_t *mem;
	unsigned touch; /* pages the guest writes before each OUT */
};

#define assert_errno(expr, err)                 \
	do {                                    \
		errno = 0;                      \
		assert_int_equal((expr), -1);   \
		assert_int_equal(errno, (err)); \
	} while (0)

static void guest_touch(struct guestmem_guest *g)
{
	struct fx *x = guestmem_guest_opaque(g);

	for (;;) {
		for (unsigned i = 0; i < x->touch; i++)
			guestmem_guest_write32(g, BASE_GPA + (uint64_t)i * PAGE, i);
		guestmem_guest_outb(g, 0x20, 1);
	}
}

static void fx_create(struct fx *x, const char *profile, unsigned long type)
{
	struct kvm_userspace_memory_region r = {
		.slot = 0, .guest_phys_addr = BASE_GPA, .memory_size = NPAGES * PAGE,
	};
	struct gm_file *f;

	assert_int_equal(guestmem_config_set(profile, NULL, NULL), 0);
	x->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(x->kvm >= 0);
	x->vm = guestmem_sys_ioctl(x->kvm, KVM_CREATE_VM, type);
	assert_true(x->vm >= 0);
	x->vcpu = guestmem_sys_ioctl(x->vm, KVM_CREATE_VCPU, 0);
	assert_true(x->vcpu >= 0);
	x->run = guestmem_sys_mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, x->vcpu, 0);
	assert_true(x->run != MAP_FAILED);
	x->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	assert_true(x->mem != MAP_FAILED);
	r.userspace_addr = (uintptr_t)x->mem;
	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	f = gm_file_lookup(x->vcpu);
	assert_non_null(f);
	assert_int_equal(kvm_vcpu_set_guest(f->obj, guest_touch, x), 0);
	gm_file_put(f);
}

static int setup(void **state)
{
	struct fx *x = calloc(1, sizeof(*x));

	fx_create(x, "linux-6.8", 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct fx *x = *state;

	guestmem_sys_munmap(x->run, 3 * PAGE);
	guestmem_sys_close(x->vcpu);
	guestmem_sys_close(x->vm);
	guestmem_sys_close(x->kvm);
	munmap(x->mem, NPAGES * PAGE);
	free(x);
	assert_int_equal(guestmem_config_set("linux-6.8", NULL, NULL), 0);
	return 0;
}

/* ---- the stats file ----------------------------------------------------------- */

struct stats {
	struct kvm_stats_header h;
	char id[KVM_STATS_NAME_SIZE];
	char *desc;
	uint64_t *data;
};

static void stats_read(int fd, struct stats *s)
{
	size_t dsz;

	assert_int_equal(guestmem_sys_pread(fd, &s->h, sizeof(s->h), 0), sizeof(s->h));
	assert_int_equal(guestmem_sys_pread(fd, s->id, sizeof(s->id), s->h.id_offset),
			 sizeof(s->id));
	dsz = (size_t)s->h.num_desc * DESC_SIZE;
	s->desc = malloc(dsz);
	s->data = calloc(s->h.num_desc, 8);
	assert_int_equal(guestmem_sys_pread(fd, s->desc, dsz, s->h.desc_offset), (ssize_t)dsz);
	assert_int_equal(guestmem_sys_pread(fd, s->data, s->h.num_desc * 8, s->h.data_offset),
			 s->h.num_desc * 8);
}

static void stats_free(struct stats *s)
{
	free(s->desc);
	free(s->data);
}

static const struct kvm_stats_desc *stats_desc(const struct stats *s, uint32_t i)
{
	return (const struct kvm_stats_desc *)(s->desc + (size_t)i * DESC_SIZE);
}

static uint64_t stat_of(int fd, const char *name)
{
	struct stats s;
	uint64_t v = UINT64_MAX;

	stats_read(fd, &s);
	for (uint32_t i = 0; i < s.h.num_desc; i++)
		if (!strcmp(stats_desc(&s, i)->name, name))
			v = s.data[stats_desc(&s, i)->offset / 8];
	stats_free(&s);
	if (v == UINT64_MAX)
		fail_msg("no stat %s", name);
	return v;
}

/* The kernel's layout and the rules kvm_binary_stats_test checks. */
static void check_layout(int fd, const char *want_id, const char *want_link)
{
	char link[64], path[64];
	struct stats s;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = guestmem_sys_readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = '\0';
	assert_string_equal(link, want_link);
	assert_int_equal(guestmem_sys_fcntl(fd, F_GETFD), FD_CLOEXEC);
	assert_int_equal(guestmem_sys_fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	stats_read(fd, &s);
	assert_int_equal(s.h.flags, 0);
	assert_int_equal(s.h.name_size, KVM_STATS_NAME_SIZE);
	assert_true(s.h.num_desc > 0);
	assert_int_equal(s.h.id_offset, sizeof(s.h));
	assert_int_equal(s.h.desc_offset, s.h.id_offset + KVM_STATS_NAME_SIZE);
	assert_int_equal(s.h.data_offset, s.h.desc_offset + s.h.num_desc * DESC_SIZE);
	assert_string_equal(s.id, want_id);
	for (uint32_t i = 0; i < s.h.num_desc; i++) {
		const struct kvm_stats_desc *d = stats_desc(&s, i);

		assert_true((d->flags & KVM_STATS_TYPE_MASK) <= KVM_STATS_TYPE_MAX);
		assert_int_equal(d->flags & KVM_STATS_UNIT_MASK, KVM_STATS_UNIT_NONE);
		assert_int_equal(d->exponent, 0);
		assert_int_equal(d->size, 1);
		assert_int_equal(d->bucket_size, 0);
		assert_int_equal(d->offset, i * 8);
		assert_true(strlen(d->name) > 0 && strlen(d->name) < KVM_STATS_NAME_SIZE);
		for (uint32_t j = 0; j < i; j++)
			assert_string_not_equal(d->name, stats_desc(&s, j)->name);
	}
	stats_free(&s);
}

static void test_layout(void **state)
{
	struct fx *x = *state;
	char id[64];
	int fd;

	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD),
			 1);
	fd = guestmem_sys_ioctl(x->vm, KVM_GET_STATS_FD, 0);
	assert_true(fd >= 0);
	snprintf(id, sizeof(id), "kvm-%d", (int)getpid());
	check_layout(fd, id, "anon_inode:kvm-vm-stats");
	guestmem_sys_close(fd);
	fd = guestmem_sys_ioctl(x->vcpu, KVM_GET_STATS_FD, 0);
	assert_true(fd >= 0);
	snprintf(id, sizeof(id), "kvm-%d/vcpu-0", (int)getpid());
	check_layout(fd, id, "anon_inode:kvm-vcpu-stats:0");
	guestmem_sys_close(fd);
}

/* read() moves the shared position; lseek cannot; pread leaves it alone. */
static void test_read_semantics(void **state)
{
	struct fx *x = *state;
	int fd = guestmem_sys_ioctl(x->vm, KVM_GET_STATS_FD, 0);
	int fd2 = dup(fd);
	struct kvm_stats_header h, h2;
	char *all, *seq, junk[8];
	size_t total;
	ssize_t n;

	assert_true(fd >= 0 && fd2 >= 0);
	assert_int_equal(guestmem_sys_pread(fd, &h, sizeof(h), 0), sizeof(h));
	total = h.data_offset + h.num_desc * 8;
	all = malloc(total + 100);
	seq = malloc(total + 100);
	/* A read past the end is cut at the end; at or past it, 0. */
	assert_int_equal(guestmem_sys_pread(fd, all, total + 100, 0), (ssize_t)total);
	assert_int_equal(guestmem_sys_pread(fd, junk, 8, (off_t)total), 0);
	assert_int_equal(guestmem_sys_pread(fd, junk, 8, (off_t)total + 4096), 0);
	assert_errno(guestmem_sys_pread(fd, junk, 8, -1), EINVAL);
	assert_int_equal(guestmem_sys_pread(fd, junk, 0, 0), 0);
	/* Sequential reads, across the pieces, through both fds (one file). */
	assert_int_equal(guestmem_sys_read(fd, seq, 10), 10);
	assert_int_equal(guestmem_sys_read(fd2, seq + 10, 50), 50);
	assert_int_equal(guestmem_sys_lseek(fd, 0, SEEK_CUR), 60);
	assert_int_equal(guestmem_sys_lseek(fd, 0, SEEK_SET), 60); /* noop_llseek */
	n = guestmem_sys_read(fd, seq + 60, total + 100);
	assert_int_equal(n, (ssize_t)(total - 60));
	assert_int_equal(guestmem_sys_read(fd, junk, 8), 0);
	/* Everything but the data (which may move) reads the same both ways. */
	assert_memory_equal(all, seq, h.data_offset);
	memcpy(&h2, seq, sizeof(h2));
	assert_memory_equal(&h, &h2, sizeof(h));
	/* Read-only: no writes. */
	assert_errno(guestmem_sys_write(fd, junk, 8), EBADF);
	/* At the end nothing is copied, so no EFAULT; elsewhere EFAULT. */
	assert_int_equal(guestmem_sys_read(fd, (void *)8, 8), 0);
	assert_errno(guestmem_sys_pread(fd, (void *)8, 8, 0), EFAULT);
	free(all);
	free(seq);
	guestmem_sys_close(fd2);
	guestmem_sys_close(fd);
}

/* Counters follow the guest: faults, mappings by level, exits, flushes. */
static void test_counters_move(void **state)
{
	struct fx *x = *state;
	int vmfd = guestmem_sys_ioctl(x->vm, KVM_GET_STATS_FD, 0);
	int vcfd = guestmem_sys_ioctl(x->vcpu, KVM_GET_STATS_FD, 0);
	uint64_t flushes;
	struct kvm_userspace_memory_region del = { .slot = 0 };

	assert_true(vmfd >= 0 && vcfd >= 0);
	assert_int_equal(stat_of(vcfd, "pf_taken"), 0);
	assert_int_equal(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m"), 0);
	x->touch = 3;
	assert_int_equal(guestmem_sys_ioctl(x->vcpu, KVM_RUN, 0), 0);
	assert_int_equal(x->run->exit_reason, KVM_EXIT_IO);
	assert_int_equal(guestmem_sys_ioctl(x->vcpu, KVM_RUN, 0), 0);
	assert_true(stat_of(vcfd, "pf_taken") >= 1);
	assert_true(stat_of(vcfd, "pf_fixed") >= 1);
	assert_true(stat_of(vcfd, "pf_taken") >= stat_of(vcfd, "pf_fixed"));
	assert_int_equal(stat_of(vcfd, "io_exits"), 2);
	assert_int_equal(stat_of(vcfd, "exits"), 2);
	assert_int_equal(stat_of(vcfd, "mmio_exits"), 0);
	/* Three pages, mapped at whatever level the host backing allowed. */
	assert_true(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m") >= 1);
	/* Deleting the slot zaps and flushes; the mappings are gone. */
	flushes = stat_of(vmfd, "remote_tlb_flush");
	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_SET_USER_MEMORY_REGION, &del), 0);
	assert_true(stat_of(vmfd, "remote_tlb_flush") > flushes);
	assert_int_equal(stat_of(vmfd, "remote_tlb_flush_requests"),
			 stat_of(vmfd, "remote_tlb_flush"));
	assert_int_equal(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m") +
				 stat_of(vmfd, "pages_1g"),
			 0);
	/* The files hold the VM: they outlive its fds. */
	guestmem_sys_close(x->vcpu);
	guestmem_sys_close(x->vm);
	x->vcpu = x->vm = -1;
	assert_int_equal(stat_of(vcfd, "io_exits"), 2);
	assert_int_equal(stat_of(vmfd, "pages_4k"), 0);
	guestmem_sys_close(vcfd);
	guestmem_sys_close(vmfd);
}

/* ---- KVM_PRE_FAULT_MEMORY -------------------------------------------------------- */

static int pre_fault(struct fx *x, uint64_t gpa, uint64_t size, uint64_t flags,
		     struct kvm_pre_fault_memory *out)
{
	struct kvm_pre_fault_memory r = { .gpa = gpa, .size = size, .flags = flags };
	int ret = guestmem_sys_ioctl(x->vcpu, KVM_PRE_FAULT_MEMORY, &r);

	if (out)
		*out = r;
	return ret;
}

static void test_pre_fault_not_in_6_8(void **state)
{
	struct fx *x = *state;

	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY),
			 0);
	assert_errno(pre_fault(x, BASE_GPA, PAGE, 0, NULL), EINVAL);
}

static void test_pre_fault(void **state)
{
	struct fx *x = *state;
	struct kvm_pre_fault_memory r;
	int vcfd;

	teardown(state);
	x = calloc(1, sizeof(*x));
	*state = x;
	fx_create(x, "linux-6.18", 0);
	vcfd = guestmem_sys_ioctl(x->vcpu, KVM_GET_STATS_FD, 0);
	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY),
			 1);
	/* Checks: flags, alignment of both, empty or wrapping range. */
	assert_errno(pre_fault(x, BASE_GPA, PAGE, 1, NULL), EINVAL);
	assert_errno(pre_fault(x, BASE_GPA + 1, PAGE, 0, NULL), EINVAL);
	assert_errno(pre_fault(x, BASE_GPA, PAGE + 1, 0, NULL), EINVAL);
	assert_errno(pre_fault(x, BASE_GPA, 0, 0, NULL), EINVAL);
	assert_errno(pre_fault(x, ~0xfffULL, PAGE, 0, NULL), EINVAL);
	assert_errno(guestmem_sys_ioctl(x->vcpu, KVM_PRE_FAULT_MEMORY, (void *)8), EFAULT);
	/* No memslot: the kernel's RET_PF_EMULATE is ENOENT, nothing done. */
	assert_errno(pre_fault(x, BASE_GPA - 2 * PAGE, PAGE, 0, &r), ENOENT);
	assert_int_equal(r.size, PAGE);
	assert_int_equal(r.gpa, BASE_GPA - 2 * PAGE);
	/* All mapped: size 0, gpa at the end. */
	assert_int_equal(pre_fault(x, BASE_GPA, 4 * PAGE, 0, &r), 0);
	assert_int_equal(r.size, 0);
	assert_int_equal(r.gpa, BASE_GPA + 4 * PAGE);
	/* Partial: the part past the slot is left, and the call succeeds. */
	assert_int_equal(pre_fault(x, BASE_GPA + (NPAGES - 1) * PAGE, 3 * PAGE, 0, &r), 0);
	assert_int_equal(r.size, 2 * PAGE);
	assert_int_equal(r.gpa, BASE_GPA + NPAGES * PAGE);
	/* The guest then finds its pages mapped: no fault on them. */
	{
		uint64_t faults = stat_of(vcfd, "pf_taken");

		x->touch = 4;
		assert_int_equal(guestmem_sys_ioctl(x->vcpu, KVM_RUN, 0), 0);
		assert_int_equal(stat_of(vcfd, "pf_taken"), faults);
	}
	guestmem_sys_close(vcfd);
}

/* Private memory: without guest_memfd backing, the fault's EFAULT. */
static void test_pre_fault_private(void **state)
{
	struct fx *x = *state;
	struct kvm_memory_attributes a = {
		.address = BASE_GPA, .size = 2 * PAGE, .attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE,
	};
	struct kvm_pre_fault_memory r;

	teardown(state);
	x = calloc(1, sizeof(*x));
	*state = x;
	fx_create(x, "linux-6.18", KVM_X86_SW_PROTECTED_VM);
	assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_SET_MEMORY_ATTRIBUTES, &a), 0);
	assert_errno(pre_fault(x, BASE_GPA, PAGE, 0, &r), EFAULT);
	assert_int_equal(r.size, PAGE);
	/* Shared pages after the private ones map; stop at the first error. */
	assert_int_equal(pre_fault(x, BASE_GPA + 2 * PAGE, 2 * PAGE, 0, &r), 0);
	assert_int_equal(r.size, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_layout),
		T(test_read_semantics),
		T(test_counters_move),
		T(test_pre_fault_not_in_6_8),
		T(test_pre_fault),
		T(test_pre_fault_private),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
