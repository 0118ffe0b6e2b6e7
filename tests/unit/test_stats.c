/* SPDX-License-Identifier: MIT */
/*
 * Binary statistics (KVM_GET_STATS_FD, src/uapi/stats.c) and
 * KVM_PRE_FAULT_MEMORY (src/mmu/fault.c) through <guestmem/sys.h>: the
 * stats file's layout, read/pread/lseek semantics and lifetime, counters
 * that move with what a C guest does, and pre-faulting's checks and
 * partial progress.
 */
#include <errno.h>
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

#include "harness.h"
#include "vcpu_fixture.h"

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "uapi/uapi.h"
#include "vcpu/vcpu.h"
#include "lib/lockdep.h"

#define PAGE 4096
#define NPAGES 1024 /* 4 MiB: two 2 MiB blocks */
#define BASE_GPA 0x40000000ULL
#define DESC_SIZE (16 + KVM_STATS_NAME_SIZE)

struct fx {
	struct vcpu_fixture f;
	uint8_t *mem;
	unsigned touch; /* pages the guest writes before each OUT */
};

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

	ASSERT_EQ(guestmem_config_set(profile, NULL, NULL), 0);
	vcpu_fixture_open(&x->f, type);
	x->mem = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		      -1, 0);
	ASSERT_TRUE(x->mem != MAP_FAILED);
	r.userspace_addr = (uintptr_t)x->mem;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	vcpu_fixture_set_guest(&x->f, guest_touch, x);
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

	vcpu_fixture_close(&x->f);
	munmap(x->mem, NPAGES * PAGE);
	free(x);
	ASSERT_EQ(guestmem_config_set("linux-6.8", NULL, NULL), 0);
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

	ASSERT_EQ(guestmem_sys_pread(fd, &s->h, sizeof(s->h), 0), sizeof(s->h));
	ASSERT_EQ(guestmem_sys_pread(fd, s->id, sizeof(s->id), s->h.id_offset),
			 sizeof(s->id));
	dsz = (size_t)s->h.num_desc * DESC_SIZE;
	s->desc = malloc(dsz);
	s->data = calloc(s->h.num_desc, 8);
	ASSERT_EQ(guestmem_sys_pread(fd, s->desc, dsz, s->h.desc_offset), (ssize_t)dsz);
	ASSERT_EQ(guestmem_sys_pread(fd, s->data, s->h.num_desc * 8, s->h.data_offset),
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
		FAIL("no stat %s", name);
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
	ASSERT_TRUE(n > 0);
	link[n] = '\0';
	ASSERT_STR_EQ(link, want_link);
	ASSERT_EQ(guestmem_sys_fcntl(fd, F_GETFD), FD_CLOEXEC);
	ASSERT_EQ(guestmem_sys_fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	stats_read(fd, &s);
	ASSERT_EQ(s.h.flags, 0);
	ASSERT_EQ(s.h.name_size, KVM_STATS_NAME_SIZE);
	ASSERT_TRUE(s.h.num_desc > 0);
	ASSERT_EQ(s.h.id_offset, sizeof(s.h));
	ASSERT_EQ(s.h.desc_offset, s.h.id_offset + KVM_STATS_NAME_SIZE);
	ASSERT_EQ(s.h.data_offset, s.h.desc_offset + s.h.num_desc * DESC_SIZE);
	ASSERT_STR_EQ(s.id, want_id);
	for (uint32_t i = 0; i < s.h.num_desc; i++) {
		const struct kvm_stats_desc *d = stats_desc(&s, i);

		ASSERT_TRUE((d->flags & KVM_STATS_TYPE_MASK) <= KVM_STATS_TYPE_MAX);
		ASSERT_EQ(d->flags & KVM_STATS_UNIT_MASK, KVM_STATS_UNIT_NONE);
		ASSERT_EQ(d->exponent, 0);
		ASSERT_EQ(d->size, 1);
		ASSERT_EQ(d->bucket_size, 0);
		ASSERT_EQ(d->offset, i * 8);
		ASSERT_TRUE(strlen(d->name) > 0 && strlen(d->name) < KVM_STATS_NAME_SIZE);
		for (uint32_t j = 0; j < i; j++)
			ASSERT_TRUE(strcmp(d->name, stats_desc(&s, j)->name) != 0);
	}
	stats_free(&s);
}

TEST_F(test_layout, setup, teardown)
{
	struct fx *x = *state;
	char id[64];
	int fd;

	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD),
			 1);
	fd = guestmem_sys_ioctl(x->f.vm, KVM_GET_STATS_FD, 0);
	ASSERT_TRUE(fd >= 0);
	snprintf(id, sizeof(id), "kvm-%d", (int)getpid());
	check_layout(fd, id, "anon_inode:kvm-vm-stats");
	guestmem_sys_close(fd);
	fd = guestmem_sys_ioctl(x->f.vcpu, KVM_GET_STATS_FD, 0);
	ASSERT_TRUE(fd >= 0);
	snprintf(id, sizeof(id), "kvm-%d/vcpu-0", (int)getpid());
	check_layout(fd, id, "anon_inode:kvm-vcpu-stats:0");
	guestmem_sys_close(fd);
}

/* read() moves the shared position; lseek cannot; pread leaves it alone. */
TEST_F(test_read_semantics, setup, teardown)
{
	struct fx *x = *state;
	int fd = guestmem_sys_ioctl(x->f.vm, KVM_GET_STATS_FD, 0);
	int fd2 = dup(fd);
	struct kvm_stats_header h, h2;
	char *all, *seq, junk[8];
	size_t total;
	ssize_t n;

	ASSERT_TRUE(fd >= 0 && fd2 >= 0);
	ASSERT_EQ(guestmem_sys_pread(fd, &h, sizeof(h), 0), sizeof(h));
	total = h.data_offset + h.num_desc * 8;
	all = malloc(total + 100);
	seq = malloc(total + 100);
	/* A read past the end is cut at the end; at or past it, 0. */
	ASSERT_EQ(guestmem_sys_pread(fd, all, total + 100, 0), (ssize_t)total);
	ASSERT_EQ(guestmem_sys_pread(fd, junk, 8, (off_t)total), 0);
	ASSERT_EQ(guestmem_sys_pread(fd, junk, 8, (off_t)total + 4096), 0);
	ASSERT_ERRNO(guestmem_sys_pread(fd, junk, 8, -1), EINVAL);
	ASSERT_EQ(guestmem_sys_pread(fd, junk, 0, 0), 0);
	/* Sequential reads, across the pieces, through both fds (one file). */
	ASSERT_EQ(guestmem_sys_read(fd, seq, 10), 10);
	ASSERT_EQ(guestmem_sys_read(fd2, seq + 10, 50), 50);
	ASSERT_EQ(guestmem_sys_lseek(fd, 0, SEEK_CUR), 60);
	ASSERT_EQ(guestmem_sys_lseek(fd, 0, SEEK_SET), 60); /* noop_llseek */
	n = guestmem_sys_read(fd, seq + 60, total + 100);
	ASSERT_EQ(n, (ssize_t)(total - 60));
	ASSERT_EQ(guestmem_sys_read(fd, junk, 8), 0);
	/* Everything but the data (which may move) reads the same both ways. */
	ASSERT_MEM_EQ(all, seq, h.data_offset);
	memcpy(&h2, seq, sizeof(h2));
	ASSERT_MEM_EQ(&h, &h2, sizeof(h));
	/* Read-only: no writes. */
	ASSERT_ERRNO(guestmem_sys_write(fd, junk, 8), EBADF);
	/* At the end nothing is copied, so no EFAULT; elsewhere EFAULT. */
	ASSERT_EQ(guestmem_sys_read(fd, (void *)8, 8), 0);
	ASSERT_ERRNO(guestmem_sys_pread(fd, (void *)8, 8, 0), EFAULT);
	free(all);
	free(seq);
	guestmem_sys_close(fd2);
	guestmem_sys_close(fd);
}

/* Counters follow the guest: faults, mappings by level, exits, flushes. */
TEST_F(test_counters_move, setup, teardown)
{
	struct fx *x = *state;
	int vmfd = guestmem_sys_ioctl(x->f.vm, KVM_GET_STATS_FD, 0);
	int vcfd = guestmem_sys_ioctl(x->f.vcpu, KVM_GET_STATS_FD, 0);
	uint64_t flushes;
	struct kvm_userspace_memory_region del = { .slot = 0 };

	ASSERT_TRUE(vmfd >= 0 && vcfd >= 0);
	ASSERT_EQ(stat_of(vcfd, "pf_taken"), 0);
	ASSERT_EQ(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m"), 0);
	x->touch = 3;
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(x->f.run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
	ASSERT_TRUE(stat_of(vcfd, "pf_taken") >= 1);
	ASSERT_TRUE(stat_of(vcfd, "pf_fixed") >= 1);
	ASSERT_TRUE(stat_of(vcfd, "pf_taken") >= stat_of(vcfd, "pf_fixed"));
	ASSERT_EQ(stat_of(vcfd, "io_exits"), 2);
	ASSERT_EQ(stat_of(vcfd, "exits"), 2);
	ASSERT_EQ(stat_of(vcfd, "mmio_exits"), 0);
	/* Three pages, mapped at whatever level the host backing allowed. */
	ASSERT_TRUE(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m") >= 1);
	/* Deleting the slot zaps and flushes; the mappings are gone. */
	flushes = stat_of(vmfd, "remote_tlb_flush");
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_USER_MEMORY_REGION, &del), 0);
	ASSERT_TRUE(stat_of(vmfd, "remote_tlb_flush") > flushes);
	ASSERT_EQ(stat_of(vmfd, "remote_tlb_flush_requests"),
			 stat_of(vmfd, "remote_tlb_flush"));
	ASSERT_EQ(stat_of(vmfd, "pages_4k") + stat_of(vmfd, "pages_2m") +
				 stat_of(vmfd, "pages_1g"),
			 0);
	/* The files hold the VM: they outlive its fds. */
	guestmem_sys_close(x->f.vcpu);
	guestmem_sys_close(x->f.vm);
	x->f.vcpu = x->f.vm = -1;
	ASSERT_EQ(stat_of(vcfd, "io_exits"), 2);
	ASSERT_EQ(stat_of(vmfd, "pages_4k"), 0);
	guestmem_sys_close(vcfd);
	guestmem_sys_close(vmfd);
}

/* ---- KVM_PRE_FAULT_MEMORY -------------------------------------------------------- */

static int pre_fault(struct fx *x, uint64_t gpa, uint64_t size, uint64_t flags,
		     struct kvm_pre_fault_memory *out)
{
	struct kvm_pre_fault_memory r = { .gpa = gpa, .size = size, .flags = flags };
	int ret = guestmem_sys_ioctl(x->f.vcpu, KVM_PRE_FAULT_MEMORY, &r);

	if (out)
		*out = r;
	return ret;
}

TEST_F(test_pre_fault_not_in_6_8, setup, teardown)
{
	struct fx *x = *state;

	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY),
			 0);
	ASSERT_ERRNO(pre_fault(x, BASE_GPA, PAGE, 0, NULL), EINVAL);
}

TEST_F(test_pre_fault, setup, teardown)
{
	struct fx *x = *state;
	struct kvm_pre_fault_memory r;
	int vcfd;

	teardown(state);
	x = calloc(1, sizeof(*x));
	*state = x;
	fx_create(x, "linux-6.18", 0);
	vcfd = guestmem_sys_ioctl(x->f.vcpu, KVM_GET_STATS_FD, 0);
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_CHECK_EXTENSION, KVM_CAP_PRE_FAULT_MEMORY),
			 1);
	/* Checks: flags, alignment of both, empty or wrapping range. */
	ASSERT_ERRNO(pre_fault(x, BASE_GPA, PAGE, 1, NULL), EINVAL);
	ASSERT_ERRNO(pre_fault(x, BASE_GPA + 1, PAGE, 0, NULL), EINVAL);
	ASSERT_ERRNO(pre_fault(x, BASE_GPA, PAGE + 1, 0, NULL), EINVAL);
	ASSERT_ERRNO(pre_fault(x, BASE_GPA, 0, 0, NULL), EINVAL);
	ASSERT_ERRNO(pre_fault(x, ~0xfffULL, PAGE, 0, NULL), EINVAL);
	ASSERT_ERRNO(guestmem_sys_ioctl(x->f.vcpu, KVM_PRE_FAULT_MEMORY, (void *)8), EFAULT);
	/* No memslot: the kernel's RET_PF_EMULATE is ENOENT, nothing done. */
	ASSERT_ERRNO(pre_fault(x, BASE_GPA - 2 * PAGE, PAGE, 0, &r), ENOENT);
	ASSERT_EQ(r.size, PAGE);
	ASSERT_EQ(r.gpa, BASE_GPA - 2 * PAGE);
	/* All mapped: size 0, gpa at the end. */
	ASSERT_EQ(pre_fault(x, BASE_GPA, 4 * PAGE, 0, &r), 0);
	ASSERT_EQ(r.size, 0);
	ASSERT_EQ(r.gpa, BASE_GPA + 4 * PAGE);
	/* Partial: the part past the slot is left, and the call succeeds. */
	ASSERT_EQ(pre_fault(x, BASE_GPA + (NPAGES - 1) * PAGE, 3 * PAGE, 0, &r), 0);
	ASSERT_EQ(r.size, 2 * PAGE);
	ASSERT_EQ(r.gpa, BASE_GPA + NPAGES * PAGE);
	/* The guest then finds its pages mapped: no fault on them. */
	{
		uint64_t faults = stat_of(vcfd, "pf_taken");

		x->touch = 4;
		ASSERT_EQ(guestmem_sys_ioctl(x->f.vcpu, KVM_RUN, 0), 0);
		ASSERT_EQ(stat_of(vcfd, "pf_taken"), faults);
	}
	guestmem_sys_close(vcfd);
}

/* Private memory: without guest_memfd backing, the fault's EFAULT. */
TEST_F(test_pre_fault_private, setup, teardown)
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
	ASSERT_EQ(guestmem_sys_ioctl(x->f.vm, KVM_SET_MEMORY_ATTRIBUTES, &a), 0);
	ASSERT_ERRNO(pre_fault(x, BASE_GPA, PAGE, 0, &r), EFAULT);
	ASSERT_EQ(r.size, PAGE);
	/* Shared pages after the private ones map; stop at the first error. */
	ASSERT_EQ(pre_fault(x, BASE_GPA + 2 * PAGE, 2 * PAGE, 0, &r), 0);
	ASSERT_EQ(r.size, 0);
}


int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
