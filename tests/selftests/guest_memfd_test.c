/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd file semantics, after the KVM selftest of the same name
 * (kvm-gmem-spec.md §5.1 for 6.8, §5.5 for the 6.18 additions).  Our own
 * code; TAP output, one forked child per sub-test.
 *
 * The suite runs once per VM type in KVM_CAP_VM_TYPES and, per type, once
 * per combination of the creation flags that type reports in
 * KVM_CAP_GUEST_MEMFD_FLAGS (none in 6.8; MMAP and INIT_SHARED in 6.18), so
 * the 6.18 cases appear exactly when GUESTMEM_PROFILE=linux-6.18.
 *
 * Beyond the original: the flag loop really runs (the 6.8 test's loop
 * started at 0 and never executed), errno values are checked, and mmap is
 * checked for its errno as well as for failing.
 */
#include <linux/falloc.h>

#include "common.h"

#define TOTAL (4 * PG_SIZE) /* the test file: four pages */
#define PUNCH (FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)

struct gmem_case {
	unsigned long vm_type;
	uint64_t flags; /* creation flags of the file under test */
};

/* A fresh VM and a TOTAL-byte guest_memfd with the case's flags. */
static int case_setup(const struct gmem_case *c, int *vm)
{
	*vm = vm_create(c->vm_type);
	return vm_create_guest_memfd(*vm, TOTAL, c->flags);
}

static void test_create_guest_memfd_invalid(void *arg)
{
	const struct gmem_case *c = arg;
	int vm = vm_create(c->vm_type);
	/* 0 in 6.8: the capability does not exist there, and no flag is valid. */
	uint64_t valid = (uint64_t)vm_check_cap(vm, KVM_CAP_GUEST_MEMFD_FLAGS);

	for (uint64_t size = 1; size < PG_SIZE; size++)
		ASSERT_ERRNO(__vm_create_guest_memfd(vm, size, 0), EINVAL);

	for (int bit = 0; bit < 64; bit++) {
		uint64_t flag = 1ULL << bit;
		int fd;

		if (!(valid & flag)) {
			ASSERT_ERRNO(__vm_create_guest_memfd(vm, PG_SIZE, flag), EINVAL);
			continue;
		}
		fd = __vm_create_guest_memfd(vm, PG_SIZE, flag);
		ASSERT_MSG(fd >= 0, "flag %#llx is in GUEST_MEMFD_FLAGS %#llx but fails: %s",
			    (unsigned long long)flag, (unsigned long long)valid,
			    errno_name(errno));
		close(fd);
	}
	close(vm);
}

static void test_create_guest_memfd_multiple(void *arg)
{
	const struct gmem_case *c = arg;
	int vm = vm_create(c->vm_type), fd1, fd2;
	struct stat st1, st2;

	fd1 = vm_create_guest_memfd(vm, PG_SIZE, 0);
	ASSERT_OK(fstat(fd1, &st1));
	ASSERT_EQ(st1.st_size, PG_SIZE);

	fd2 = vm_create_guest_memfd(vm, 2 * PG_SIZE, 0);
	ASSERT_OK(fstat(fd2, &st2));
	ASSERT_EQ(st2.st_size, 2 * PG_SIZE);

	/* The first file is unaffected by the second. */
	ASSERT_OK(fstat(fd1, &st1));
	ASSERT_EQ(st1.st_size, PG_SIZE);
	ASSERT_MSG(st1.st_ino != st2.st_ino, "both guest_memfds have inode %llu",
		    (unsigned long long)st1.st_ino);
	ASSERT_EQ(st1.st_dev, st2.st_dev);
	close(fd2);
	close(fd1);
	close(vm);
}

static void test_file_read_write(void *arg)
{
	char buf[64] = { 0 };
	int vm, fd = case_setup(arg, &vm);

	ASSERT_ERRNO(read(fd, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(write(fd, buf, sizeof(buf)), EINVAL);
	ASSERT_ERRNO(pread(fd, buf, sizeof(buf), 0), ESPIPE);
	ASSERT_ERRNO(pwrite(fd, buf, sizeof(buf), 0), ESPIPE);
	close(fd);
	close(vm);
}

static void test_file_size(void *arg)
{
	struct stat st;
	int vm, fd = case_setup(arg, &vm);

	ASSERT_OK(fstat(fd, &st));
	ASSERT_EQ(st.st_size, TOTAL);
	ASSERT_EQ(st.st_blksize, PG_SIZE);
	close(fd);
	close(vm);
}

/* MMAP|INIT_SHARED: host writes read back; a punched page reads as zeros. */
static void mmap_shared_rw(int fd)
{
	uint8_t *p = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ASSERT_MSG(p != MAP_FAILED, "mmap MAP_SHARED: %s", errno_name(errno));
	for (size_t i = 0; i < TOTAL; i++)
		ASSERT_EQ(p[i], 0); /* faulted pages start zeroed */
	memset(p, 0xaa, TOTAL);
	for (size_t i = 0; i < TOTAL; i++)
		ASSERT_EQ(p[i], 0xaa);

	ASSERT_OK(fallocate(fd, PUNCH, 0, PG_SIZE));
	for (size_t i = 0; i < PG_SIZE; i++)
		ASSERT_EQ(p[i], 0);
	for (size_t i = PG_SIZE; i < TOTAL; i++)
		ASSERT_EQ(p[i], 0xaa);
	ASSERT_OK(munmap(p, TOTAL));
}

/* MMAP|INIT_SHARED: a mapping longer than the file SIGBUSes beyond EOF. */
static void mmap_fault_overflow(int fd)
{
	uint8_t *p = mmap(NULL, 2 * TOTAL, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ASSERT_MSG(p != MAP_FAILED, "mmap 2x size: %s", errno_name(errno));
	ASSERT_EQ(access_signal(p + TOTAL - 1, true), 0);
	ASSERT_EQ(access_signal(p + TOTAL, false), SIGBUS);
	ASSERT_EQ(access_signal(p + 2 * TOTAL - 1, true), SIGBUS);
	ASSERT_OK(munmap(p, 2 * TOTAL));
}

/* MMAP without INIT_SHARED: memory is private, every user access SIGBUSes. */
static void mmap_fault_private(int fd)
{
	uint8_t *p = mmap(NULL, TOTAL, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	ASSERT_MSG(p != MAP_FAILED, "mmap MAP_SHARED: %s", errno_name(errno));
	for (size_t off = 0; off < TOTAL; off += PG_SIZE) {
		ASSERT_EQ(access_signal(p + off, false), SIGBUS);
		ASSERT_EQ(access_signal(p + off, true), SIGBUS);
	}
	ASSERT_OK(munmap(p, TOTAL));
}

static void test_mmap(void *arg)
{
	const struct gmem_case *c = arg;
	int vm, fd = case_setup(c, &vm);
	void *p;

	if (!(c->flags & GUEST_MEMFD_FLAG_MMAP)) {
		/* 6.8, and 6.18 without MMAP: no mmap at all. */
		p = mmap(NULL, PG_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		ASSERT_MSG(p == MAP_FAILED && errno == ENODEV, "mmap MAP_SHARED: %p %s", p,
			    errno_name(errno));
		p = mmap(NULL, PG_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
		ASSERT_MSG(p == MAP_FAILED && errno == ENODEV, "mmap MAP_PRIVATE: %p %s", p,
			    errno_name(errno));
	} else {
		p = mmap(NULL, PG_SIZE, PROT_READ, MAP_PRIVATE, fd, 0);
		ASSERT_MSG(p == MAP_FAILED && errno == EINVAL, "mmap MAP_PRIVATE: %p %s", p,
			    errno_name(errno));
		if (c->flags & GUEST_MEMFD_FLAG_INIT_SHARED) {
			mmap_shared_rw(fd);
			mmap_fault_overflow(fd);
		} else {
			mmap_fault_private(fd);
		}
	}
	close(fd);
	close(vm);
}

/* The 6.8 sequence on one file: allocation is bounded by EOF, punching is not. */
static void test_fallocate(void *arg)
{
	int vm, fd = case_setup(arg, &vm);
	const off_t P = PG_SIZE, T = TOTAL;

	ASSERT_OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, T));
	ASSERT_ERRNO(fallocate(fd, PUNCH, P - 1, P), EINVAL);
	ASSERT_ERRNO(fallocate(fd, FALLOC_FL_KEEP_SIZE, T, P), EINVAL);
	ASSERT_ERRNO(fallocate(fd, FALLOC_FL_KEEP_SIZE, T + P, P), EINVAL);
	ASSERT_OK(fallocate(fd, PUNCH, T, P));
	ASSERT_OK(fallocate(fd, PUNCH, T + P, P));
	ASSERT_ERRNO(fallocate(fd, PUNCH, P, P - 1), EINVAL);
	ASSERT_OK(fallocate(fd, PUNCH, P, P));
	ASSERT_OK(fallocate(fd, FALLOC_FL_KEEP_SIZE, P, P));
	close(fd);
	close(vm);
}

static void test_invalid_punch_hole(void *arg)
{
	static const struct {
		off_t offset, len;
	} bad[] = {
		{ 0, 1 },
		{ 0, PG_SIZE - 1 },
		{ 0, PG_SIZE + 1 },
		{ 1, 1 },
		{ 1, PG_SIZE - 1 },
		{ 1, PG_SIZE },
		{ 1, PG_SIZE + 1 },
		{ PG_SIZE, 1 },
		{ PG_SIZE, PG_SIZE - 1 },
		{ PG_SIZE, PG_SIZE + 1 },
	};
	int vm, fd = case_setup(arg, &vm);

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		int r = fallocate(fd, PUNCH, bad[i].offset, bad[i].len);

		ASSERT_MSG(r == -1 && errno == EINVAL,
			    "punch offset %lld len %lld: ret %d errno %s, expected EINVAL",
			    (long long)bad[i].offset, (long long)bad[i].len, r, errno_name(errno));
	}
	close(fd);
	close(vm);
}

struct gmem_test {
	const char *name;
	void (*fn)(void *arg);
	unsigned timeout_s;
};

static const struct gmem_test per_type_tests[] = {
	{ "create_guest_memfd_invalid", test_create_guest_memfd_invalid, 30 },
	{ "create_guest_memfd_multiple", test_create_guest_memfd_multiple, 10 },
};

static const struct gmem_test per_file_tests[] = {
	{ "file_read_write", test_file_read_write, 10 },
	{ "mmap", test_mmap, 20 },
	{ "file_size", test_file_size, 10 },
	{ "fallocate", test_fallocate, 10 },
	{ "invalid_punch_hole", test_invalid_punch_hole, 10 },
};

static void add_table(const struct gmem_test *t, size_t n, unsigned long type, uint64_t flags)
{
	struct gmem_case *c = malloc(sizeof(*c));
	char name[160];

	ASSERT_NOT_NULL(c);
	*c = (struct gmem_case){ .vm_type = type, .flags = flags };
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "vm type %lu flags %#llx: %s", type,
			 (unsigned long long)flags, t[i].name);
		test_add(name, t[i].fn, c, t[i].timeout_s);
	}
}

/* A VM type KVM_CAP_VM_TYPES reports can be created. */
static void test_vm_create(void *arg)
{
	unsigned long type = (unsigned long)(uintptr_t)arg;
	long r;
	int vm = vm_create(type);

	r = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	/* add_vm_type() runs the flag cases this reports: an error here
	 * would drop them silently. */
	ASSERT_MSG(r >= 0, "KVM_CHECK_EXTENSION(GUEST_MEMFD_FLAGS): %s", errno_name(errno));
	DIAG("VM type %lu: KVM_CAP_GUEST_MEMFD_FLAGS = %#lx", type, r > 0 ? (unsigned long)r : 0UL);
	close(vm);
}

static void add_vm_type(unsigned long type)
{
	char name[64];
	uint64_t valid;
	long r;
	int vm = __vm_create(type);

	snprintf(name, sizeof(name), "vm type %lu: KVM_CREATE_VM", type);
	test_add(name, test_vm_create, (void *)(uintptr_t)type, 10);
	if (vm < 0)
		return; /* that case fails; nothing else can run on this type */
	r = ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_GUEST_MEMFD_FLAGS);
	close(vm);
	valid = r > 0 ? (uint64_t)r : 0;

	add_table(per_type_tests, sizeof(per_type_tests) / sizeof(per_type_tests[0]), type, 0);
	/* Every subset of the valid flags (INIT_SHARED alone included). */
	for (uint64_t f = 0; f <= valid; f++) {
		if (f & ~valid)
			continue;
		add_table(per_file_tests, sizeof(per_file_tests) / sizeof(per_file_tests[0]), type,
			  f);
	}
}

int main(int argc, char **argv)
{
	long types;

	if (kvm_check_cap(KVM_CAP_GUEST_MEMFD) <= 0) {
		/* The default type's cases, each reported as a skip. */
		test_skip_all("KVM_CAP_GUEST_MEMFD is not available");
		add_table(per_type_tests, sizeof(per_type_tests) / sizeof(per_type_tests[0]),
			  KVM_X86_DEFAULT_VM, 0);
		add_table(per_file_tests, sizeof(per_file_tests) / sizeof(per_file_tests[0]),
			  KVM_X86_DEFAULT_VM, 0);
		return test_main(argc, argv);
	}
	types = kvm_check_cap(KVM_CAP_VM_TYPES);
	if (types <= 0)
		types = 1UL << KVM_X86_DEFAULT_VM; /* before 6.8: default VMs only */
	for (unsigned long t = 0; t < 32; t++)
		if (types & (1L << t))
			add_vm_type(t);
	return test_main(argc, argv);
}
