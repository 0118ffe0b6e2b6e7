/* SPDX-License-Identifier: MIT */
/*
 * Guest memory by (fd, offset) for another process (src/core/gmemfd.c):
 * a forked child that mmaps what kvm_gfn_to_backing() returns sees the
 * bytes the VMM (shared gfns) or the guest_memfd (private gfns, through
 * the library's own accessor) holds, and its writes are seen back; the
 * conversion of anonymous memslot memory keeps contents and protections;
 * a memslot on a MAP_SHARED file mapping reuses that file; aliases share
 * one file; after memslot deletion, munmap or guest_memfd release the
 * answer is an error and the file is closed, never a stale fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "harness.h"

#include <dirent.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "core/gmem.h"
#include "core/gmemfd.h"
#include "core/kvm_host.h"
#include "lib/keepfd.h"
#include "lib/ownfd.h"
#include "lib/rcu.h"

#define PS 4096ULL

static const char *g_backing = "memfd";

static void use_backing(const char *arg)
{
	g_backing = arg;
	if (!strcmp(arg, "secretmem") && !gm_backing_available(GM_BACKING_SECRETMEM))
		SKIP("secretmem: the host refuses memfd_secret(2)");
}

static struct kvm *vm_new(unsigned long type)
{
	struct kvm *kvm = NULL;

	ASSERT_EQ(gm_config_set("linux-6.12", "KVM_SW_PROTECTED_VM=y KVM_SMM=n", g_backing), 0);
	ASSERT_EQ(kvm_create_vm(type, &kvm), 0);
	return kvm;
}

static int set_region(struct kvm *kvm, uint32_t slot, uint32_t flags, uint64_t gpa,
		      uint64_t size, void *hva, struct kvm_gmem *gmem, uint64_t gmem_off)
{
	struct kvm_userspace_memory_region2 r = { 0 };
	struct kvm_gmem_ref ref = { gmem ? 0 : -EBADF, gmem };

	r.slot = slot;
	r.flags = flags;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.userspace_addr = (uint64_t)(uintptr_t)hva;
	r.guest_memfd_offset = gmem_off;
	return kvm_set_memory_region(kvm, &r, true, &ref);
}

static int lookup(struct kvm *kvm, gfn_t gfn, bool priv, struct kvm_gfn_backing *b)
{
	int r;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	gm_rcu_read_lock();
	r = kvm_gfn_to_backing_info(kvm, 0, gfn, priv, 0, b);
	/* Keep the file past the section, as the backend would. */
	if (!r && b->fd < 0 && b->kfd >= 0) { /* kept out of this table: open it */
		int kept = gm_fd_fetch(b->kfd);

		ASSERT_GE(kept, 0);
		b->fd = fcntl(kept, F_DUPFD_CLOEXEC, 0);
		gm_fd_close(kept);
		ASSERT_GE(b->fd, 0);
	} else if (!r) {
		b->fd = fcntl(b->fd, F_DUPFD_CLOEXEC, 0);
		ASSERT_GE(b->fd, 0);
	}
	gm_rcu_read_unlock();
	return r;
}

static bool in_use(struct kvm *kvm, uint64_t id)
{
	bool r;

	gm_rcu_read_lock();
	r = kvm_backing_file_in_use(kvm, id);
	gm_rcu_read_unlock();
	return r;
}

static void *anon(size_t pages)
{
	void *p = mmap(NULL, pages * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	ASSERT_TRUE(p != MAP_FAILED);
	return p;
}

/* The maps line of @addr: perms and path (empty if none). */
static bool maps_of(void *addr, char perms[8], char path[256])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	bool found = false;

	ASSERT_NOT_NULL(f);
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		int n = 0;

		if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &s, &e, perms, &n) < 3)
			continue;
		if ((uintptr_t)addr >= s && (uintptr_t)addr < e) {
			snprintf(path, 256, "%s", line + n);
			path[strcspn(path, "\n")] = '\0';
			found = true;
		}
	}
	fclose(f);
	return found;
}

/*
 * In a forked child: map @len bytes of (@fd, @off) at a fresh address,
 * check they equal @expect, write @mark at byte @mark_at.  Exit status 0
 * on success, else a code saying what failed.
 */
static void child_check(int fd, uint64_t off, size_t len, const void *expect, size_t mark_at,
			char mark)
{
	pid_t pid = fork();
	int st = -1;

	ASSERT_GE(pid, 0);
	if (pid == 0) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);

		if (p == MAP_FAILED)
			_exit(2);
		if (memcmp(p, expect, len))
			_exit(3);
		p[mark_at] = mark;
		_exit(0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
}

static void same_file(int a, int b)
{
	struct stat sa, sb;

	ASSERT_EQ(fstat(a, &sa), 0);
	ASSERT_EQ(fstat(b, &sb), 0);
	ASSERT_EQ(sa.st_dev, sb.st_dev);
	ASSERT_EQ(sa.st_ino, sb.st_ino);
}

/* ---- shared memory ------------------------------------------------------------ */

/*
 * Anonymous memory with contents, a read-only page and a PROT_NONE page
 * holding data: after enabling, it is a memfd mapping with the same bytes
 * and protections, and a child sees and writes the same memory.
 */
TEST(test_convert_anon)
{
	struct kvm *kvm = vm_new(0);
	const size_t n = 16;
	char *mem = anon(n), *copy = malloc(n * PS);
	struct kvm_gfn_backing b;
	char perms[8], path[256];

	ASSERT_NOT_NULL(copy);
	for (size_t i = 0; i < n; i += 3)
		memset(mem + i * PS, 'a' + (int)i, PS);
	mem[5 * PS + 17] = 'x';
	ASSERT_EQ(mprotect(mem + 6 * PS, PS, PROT_READ), 0);
	ASSERT_EQ(mprotect(mem + 9 * PS, PS, PROT_NONE), 0);
	memcpy(copy, mem, 9 * PS);
	memcpy(copy + 10 * PS, mem + 10 * PS, 6 * PS);
	memset(copy + 9 * PS, 'a' + 9, PS);

	ASSERT_EQ(set_region(kvm, 0, 0, 0x100000, n * PS, mem, NULL, 0), 0);
	ASSERT_TRUE(maps_of(mem, perms, path));
	ASSERT_EQ(perms[3], 'p'); /* not enabled yet: nothing changed */
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);

	ASSERT_TRUE(maps_of(mem, perms, path));
	ASSERT_STR_EQ(perms, "rw-s");
	ASSERT_TRUE(strstr(path, "/memfd:guestmem-ram") != NULL);
	ASSERT_TRUE(maps_of(mem + 6 * PS, perms, path));
	ASSERT_STR_EQ(perms, "r--s");
	ASSERT_TRUE(maps_of(mem + 9 * PS, perms, path));
	ASSERT_STR_EQ(perms, "---s");
	ASSERT_EQ(mprotect(mem + 9 * PS, PS, PROT_READ | PROT_WRITE), 0);
	ASSERT_MEM_EQ(mem, copy, n * PS);

	/* One file, contiguous: the run covers the whole slot. */
	ASSERT_EQ(lookup(kvm, 0x100, false, &b), 0);
	ASSERT_EQ(b.offset, 0);
	ASSERT_EQ(b.run_pages, n);
	ASSERT_TRUE(b.writable);
	child_check(b.fd, 0, n * PS, copy, 3 * PS + 5, 'Z');
	ASSERT_EQ(mem[3 * PS + 5], 'Z');
	close(b.fd);

	ASSERT_EQ(lookup(kvm, 0x105, false, &b), 0);
	ASSERT_EQ(b.offset, 5 * PS);
	ASSERT_EQ(b.run_pages, n - 5);
	mem[5 * PS + 100] = 'q';
	copy[3 * PS + 5] = 'Z';
	copy[5 * PS + 100] = 'q';
	child_check(b.fd, b.offset, PS, copy + 5 * PS, 0, 'W');
	ASSERT_EQ(mem[5 * PS], 'W');
	close(b.fd);

	ASSERT_EQ(lookup(kvm, 0x100 + n, false, &b), -ENOENT);
	ASSERT_EQ(set_region(kvm, 0, 0, 0x100000, 0, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 0x100, false, &b), -ENOENT);
	kvm_put_kvm(kvm);
	munmap(mem, n * PS);
	free(copy);
}

/*
 * A libc fork gives the child its own copy-on-write view of converted
 * memory: what the child writes stays in the child.
 */
TEST(test_fork_child_private)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(4);
	int st = -1;
	pid_t pid;

	strcpy(mem + PS, "parent");
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		if (strcmp(mem + PS, "parent"))
			_exit(2);
		strcpy(mem + PS, "child");
		mem[3 * PS] = 'c';
		_exit(strcmp(mem + PS, "child") ? 3 : 0);
	}
	ASSERT_EQ(waitpid(pid, &st, 0), pid);
	ASSERT_TRUE(WIFEXITED(st));
	ASSERT_EQ(WEXITSTATUS(st), 0);
	ASSERT_STR_EQ(mem + PS, "parent");
	ASSERT_EQ(mem[3 * PS], 0);
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
}

/* The VmFlags of the VMA at @addr (from /proc/self/smaps). */
static void vmflags_of(void *addr, char *out, size_t len)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false;

	ASSERT_NOT_NULL(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e;
		char c;

		if (sscanf(line, "%llx-%llx %c", &s, &e, &c) == 3)
			in = (uintptr_t)addr >= s && (uintptr_t)addr < e;
		else if (in && !strncmp(line, "VmFlags:", 8))
			snprintf(out, len, "%.200s", line + 8);
	}
	fclose(f);
}

/* Flags a VMM sets on guest RAM (QEMU: DONTFORK, DONTDUMP, mlock) survive. */
TEST(test_vma_flags_kept)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(4), before[256], after[256];
	static const char *const kept[] = { " dc", " dd", " lo" };

	ASSERT_EQ(madvise(mem, 4 * PS, MADV_DONTFORK), 0);
	ASSERT_EQ(madvise(mem, 4 * PS, MADV_DONTDUMP), 0);
	(void)mlock(mem, 4 * PS); /* may be refused (limit), or ignored (ASan) */
	mem[0] = 'f';
	vmflags_of(mem, before, sizeof(before));
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	vmflags_of(mem, after, sizeof(after));
	ASSERT_TRUE(strstr(after, " sh") != NULL); /* converted */
	ASSERT_TRUE(strstr(before, " dc") && strstr(before, " dd"));
	for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		ASSERT_MSG(!strstr(before, kept[i]) || strstr(after, kept[i]),
			   "%s lost: before %s after %s", kept[i], before, after);
	ASSERT_EQ(mem[0], 'f');
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
}

/* Memory the VMM mapped MAP_SHARED from its own memfd is not replaced. */
TEST(test_shared_file_reused)
{
	struct kvm *kvm = vm_new(0);
	int vfd = memfd_create("vmm-ram", MFD_CLOEXEC);
	struct kvm_gfn_backing b;
	char perms[8], path[256];
	char *mem;

	ASSERT_GE(vfd, 0);
	ASSERT_EQ(ftruncate(vfd, 32 * PS), 0);
	/* Mapped from file offset 8 pages. */
	mem = mmap(NULL, 16 * PS, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 8 * PS);
	ASSERT_TRUE(mem != MAP_FAILED);
	strcpy(mem + 2 * PS, "hello from the VMM");
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 1, 0, 0x200000, 16 * PS, mem, NULL, 0), 0);
	ASSERT_TRUE(maps_of(mem, perms, path));
	ASSERT_TRUE(strstr(path, "/memfd:vmm-ram") != NULL);

	ASSERT_EQ(lookup(kvm, 0x202, false, &b), 0);
	same_file(b.fd, vfd);
	ASSERT_EQ(b.map_align, PS);
	ASSERT_EQ(b.offset, 10 * PS);
	ASSERT_EQ(b.run_pages, 14);
	child_check(b.fd, b.offset, 32, "hello from the VMM\0\0\0\0\0\0\0\0\0\0\0\0\0", 0, 'J');
	ASSERT_EQ(mem[2 * PS], 'J');
	close(b.fd);

	/* The VMM closing its fd changes nothing: guestmem holds its own. */
	close(vfd);
	ASSERT_EQ(lookup(kvm, 0x20f, false, &b), 0);
	ASSERT_EQ(b.offset, 23 * PS);
	ASSERT_EQ(b.run_pages, 1);
	close(b.fd);
	kvm_put_kvm(kvm);
	munmap(mem, 16 * PS);
}

/* hugetlbfs memory: the file is reused and the answer says how to align. */
TEST(test_hugetlb_file)
{
	struct kvm *kvm;
	int vfd = memfd_create("vmm-huge", MFD_CLOEXEC | MFD_HUGETLB);
	const size_t huge = 2ULL << 20;
	struct kvm_gfn_backing b;
	char *mem;

	if (vfd < 0)
		SKIP_NO_HUGEPAGE("no hugetlbfs memfd: %s", strerror(errno));
	if (ftruncate(vfd, (off_t)huge))
		SKIP_NO_HUGEPAGE("hugetlbfs: ftruncate: %s", strerror(errno));
	mem = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
	if (mem == MAP_FAILED) /* reserved at mmap: fails without huge pages */
		SKIP_NO_HUGEPAGE("no huge page available");
	kvm = vm_new(0);
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, huge, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 3, false, &b), 0);
	same_file(b.fd, vfd);
	ASSERT_EQ(b.map_align, huge);
	ASSERT_EQ(b.offset, 3 * PS);
	close(b.fd);
	kvm_put_kvm(kvm);
	munmap(mem, huge);
	close(vfd);
}

/* A private file mapping has no fd; the memslot is created all the same. */
TEST(test_private_file_unsupported)
{
	struct kvm *kvm = vm_new(0);
	char tmpl[] = "/tmp/gmemfd-XXXXXX";
	int fd = mkstemp(tmpl);
	struct kvm_gfn_backing b;
	char *mem;

	ASSERT_GE(fd, 0);
	unlink(tmpl);
	ASSERT_EQ(ftruncate(fd, 4 * PS), 0);
	mem = mmap(NULL, 4 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ASSERT_TRUE(mem != MAP_FAILED);
	mem[0] = 1;
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 1, false, &b), -EOPNOTSUPP);
	ASSERT_EQ(mem[0], 1);
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
	close(fd);
}

/*
 * A slot over a range of which a part is not mapped: the mapped part has
 * its file, the hole -EFAULT (the kernel's fault would fail there too).
 */
TEST(test_hole_and_several_vmas)
{
	struct kvm *kvm = vm_new(0);
	struct kvm_gfn_backing b;
	char perms[8], path[256], *mem = NULL;

	/*
	 * Another thread's (or the sanitizer's) mmap may land in the hole
	 * before the probe reads the maps: then try again elsewhere.
	 */
	for (int attempt = 0; attempt < 10; attempt++) {
		mem = anon(12);
		ASSERT_EQ(munmap(mem + 4 * PS, 2 * PS), 0);
		ASSERT_EQ(madvise(mem + 8 * PS, 4 * PS, MADV_DONTFORK), 0); /* splits the VMA */
		memset(mem + 8 * PS, 7, PS);
		ASSERT_EQ(set_region(kvm, 0, 0, 0, 12 * PS, mem, NULL, 0), 0);
		/* Lazy: the first lookup converts. */
		ASSERT_EQ(lookup(kvm, 0, false, &b), 0);
		close(b.fd);
		if (!maps_of(mem + 4 * PS, perms, path) && !maps_of(mem + 5 * PS, perms, path))
			break;
		DIAG("something was mapped in the hole; again");
		ASSERT_EQ(set_region(kvm, 0, 0, 0, 0, mem, NULL, 0), 0);
		munmap(mem, 4 * PS);
		munmap(mem + 6 * PS, 6 * PS);
		mem = NULL;
	}
	ASSERT_NOT_NULL(mem);
	ASSERT_EQ(lookup(kvm, 0, false, &b), 0);
	ASSERT_EQ(b.run_pages, 4);
	close(b.fd);
	ASSERT_EQ(lookup(kvm, 4, false, &b), -EFAULT);
	ASSERT_EQ(lookup(kvm, 5, false, &b), -EFAULT);
	ASSERT_EQ(lookup(kvm, 6, false, &b), 0);
	ASSERT_EQ(b.offset, 0); /* a second memfd after the hole */
	ASSERT_EQ(b.run_pages, 6);
	close(b.fd);
	ASSERT_EQ(mem[8 * PS + 3], 7);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 0, mem, NULL, 0), 0);
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
	munmap(mem + 6 * PS, 6 * PS);
}

/* Two slots and two VMs on the same memory: one file for all of them. */
TEST(test_aliases)
{
	struct kvm *kvm = vm_new(0), *kvm2 = vm_new(0);
	char *mem = anon(8);
	struct kvm_gfn_backing a, b, c;

	mem[3 * PS] = 'A';
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(kvm_shared_ram_enable(kvm2), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 8 * PS, mem, NULL, 0), 0);
	/* Overlapping the first slot's memory from its page 4 on. */
	ASSERT_EQ(set_region(kvm, 1, 0, 0x100000, 4 * PS, mem + 4 * PS, NULL, 0), 0);
	ASSERT_EQ(set_region(kvm2, 0, 0, 0x1000, 8 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 5, false, &a), 0);
	ASSERT_EQ(lookup(kvm, 0x101, false, &b), 0);
	ASSERT_EQ(lookup(kvm2, 0x4, false, &c), 0); /* slot base gfn 1: page 3 */
	ASSERT_EQ(a.file_id, b.file_id);
	ASSERT_EQ(a.file_id, c.file_id);
	ASSERT_EQ(a.offset, 5 * PS);
	ASSERT_EQ(b.offset, 5 * PS);
	ASSERT_EQ(c.offset, 3 * PS);
	same_file(a.fd, b.fd);
	same_file(a.fd, c.fd);
	child_check(c.fd, c.offset, 1, "A", 0, 'B');
	ASSERT_EQ(mem[3 * PS], 'B');
	close(a.fd);
	close(b.fd);
	close(c.fd);
	kvm_put_kvm(kvm2);
	kvm_put_kvm(kvm);
	munmap(mem, 8 * PS);
}

/*
 * Enabling with many slots already made (the batch path): slots touching
 * one another in one anonymous mapping become one file, each slot its
 * part of it; an alias slot and a slot with a hole in between are
 * answered as one at a time would be; contents are kept.
 */
TEST(test_enable_batch)
{
	enum { N = 64 };
	struct kvm *kvm = vm_new(0);
	char *mem = anon(N + 2);
	struct kvm_gfn_backing a, b;
	long files = kvm_shram_nr_files();
	struct kvm_mn_token *t;
	uint64_t id;

	/* Pages 0..N-1: N one-page slots, made in descending order. */
	for (int i = N - 1; i >= 0; i--) {
		mem[i * PS + 7] = (char)('a' + i % 26);
		ASSERT_EQ(set_region(kvm, (uint32_t)i, 0, 0x100000 + i * PS, PS, mem + i * PS,
				     NULL, 0), 0);
	}
	/* An alias of pages 10..19 and a slot over page N + 1, past a hole. */
	ASSERT_EQ(set_region(kvm, N, 0, 0x900000, 10 * PS, mem + 10 * PS, NULL, 0), 0);
	ASSERT_EQ(munmap(mem + N * PS, PS), 0);
	mem[(N + 1) * PS] = 'z';
	ASSERT_EQ(set_region(kvm, N + 1, 0, 0xa00000, PS, mem + (N + 1) * PS, NULL, 0), 0);
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	/* One file for the run of N + the alias, one for the lone page. */
	ASSERT_EQ(kvm_shram_nr_files(), files + 2);

	ASSERT_EQ(lookup(kvm, 0x100, false, &a), 0);
	id = a.file_id;
	ASSERT_EQ(a.run_pages, 1); /* the slot ends there */
	close(a.fd);
	for (int i = 0; i < N; i++) {
		ASSERT_EQ(lookup(kvm, 0x100 + (gfn_t)i, false, &a), 0);
		ASSERT_EQ(a.file_id, id);
		ASSERT_EQ(a.offset, (uint64_t)i * PS);
		ASSERT_EQ(mem[i * PS + 7], (char)('a' + i % 26));
		if (i == 13) {
			child_check(a.fd, a.offset, 8, "\0\0\0\0\0\0\0n", 7, 'N');
			ASSERT_EQ(mem[13 * PS + 7], 'N');
		}
		close(a.fd);
	}
	ASSERT_EQ(lookup(kvm, 0x903, false, &b), 0);
	ASSERT_EQ(b.file_id, id);
	ASSERT_EQ(b.offset, 13 * PS);
	ASSERT_EQ(b.run_pages, 7);
	close(b.fd);
	ASSERT_EQ(lookup(kvm, 0xa00, false, &b), 0);
	ASSERT_TRUE(b.file_id != id);
	child_check(b.fd, b.offset, 1, "z", 0, 'Z');
	ASSERT_EQ(mem[(N + 1) * PS], 'Z');
	close(b.fd);
	kvm_put_kvm(kvm);
	t = kvm_mmu_notifier_start_all((uintptr_t)mem, (uintptr_t)mem + (N + 2) * PS);
	ASSERT_EQ(munmap(mem, N * PS), 0);
	ASSERT_EQ(munmap(mem + (N + 1) * PS, PS), 0);
	kvm_mmu_notifier_end_all(t);
	gm_synchronize_rcu();
	ASSERT_WAIT(kvm_shram_nr_files() == files, 5000);
}

/*
 * The VMM unmaps the slot's memory (the notifier reports it): the record
 * is not used any more, and guestmem closes its file once nothing maps it.
 * New memory mapped there later is found.
 */
TEST(test_munmap_then_remap)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(4), *again;
	struct kvm_gfn_backing b;
	long files = kvm_shram_nr_files();

	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(kvm_shram_nr_files(), files + 1);
	ASSERT_EQ(lookup(kvm, 0, false, &b), 0);
	close(b.fd);
	ASSERT_TRUE(in_use(kvm, b.file_id));

	{
		struct kvm_mn_token *t = kvm_mmu_notifier_start_all((uintptr_t)mem,
								    (uintptr_t)mem + 4 * PS);

		ASSERT_EQ(munmap(mem, 4 * PS), 0);
		kvm_mmu_notifier_end_all(t);
	}
	ASSERT_TRUE(in_use(kvm, b.file_id)); /* stale, not probed yet */
	ASSERT_EQ(lookup(kvm, 0, false, &b), -EFAULT);
	ASSERT_FALSE(in_use(kvm, b.file_id));
	/* Only the slot's (stale-probed) record still names nothing: file closed. */
	gm_synchronize_rcu();
	ASSERT_WAIT(kvm_shram_nr_files() == files, 5000);

	again = mmap(mem, 4 * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
		     -1, 0);
	ASSERT_PTR_EQ(again, mem);
	mem[PS] = 'n';
	kvm_mmu_notifier_invalidate_range(kvm, (uintptr_t)mem, (uintptr_t)mem + 4 * PS);
	ASSERT_EQ(lookup(kvm, 1, false, &b), 0);
	child_check(b.fd, b.offset, 1, "n", 0, 'm');
	ASSERT_EQ(mem[PS], 'm');
	close(b.fd);
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
}

/*
 * The file of converted memory stays while any part of it is mapped and
 * goes with the last part, however the VMM takes it apart; moved by
 * mremap, it is found where it went (and goes when that is unmapped).
 */
TEST(test_partial_unmaps)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(8), *dest = anon(4);
	long files = kvm_shram_nr_files();
	struct kvm_mn_token *t;

	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 8 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(kvm_shram_nr_files(), files + 1);
	kvm_put_kvm(kvm); /* only the mapping keeps the file now */
	gm_synchronize_rcu();

	t = kvm_mmu_notifier_start_all((uintptr_t)mem + 2 * PS, (uintptr_t)mem + 4 * PS);
	ASSERT_EQ(munmap(mem + 2 * PS, 2 * PS), 0);
	kvm_mmu_notifier_end_all(t);
	ASSERT_EQ(kvm_shram_nr_files(), files + 1);
	t = kvm_mmu_notifier_start_all((uintptr_t)mem, (uintptr_t)mem + 2 * PS);
	ASSERT_EQ(munmap(mem, 2 * PS), 0);
	kvm_mmu_notifier_end_all(t);
	ASSERT_EQ(kvm_shram_nr_files(), files + 1);
	/* What guestmem knew of is gone: it must look, and finds the move. */
	t = kvm_mmu_notifier_start_all((uintptr_t)mem + 4 * PS, (uintptr_t)mem + 8 * PS);
	ASSERT_PTR_EQ(mremap(mem + 4 * PS, 4 * PS, 4 * PS, MREMAP_MAYMOVE | MREMAP_FIXED, dest),
		      dest);
	kvm_mmu_notifier_end_all(t);
	ASSERT_EQ(kvm_shram_nr_files(), files + 1);
	t = kvm_mmu_notifier_start_all((uintptr_t)dest, (uintptr_t)dest + 4 * PS);
	ASSERT_EQ(munmap(dest, 4 * PS), 0);
	kvm_mmu_notifier_end_all(t);
	ASSERT_WAIT(kvm_shram_nr_files() == files, 5000);
}

/* madvise(DONTNEED/FREE) on converted memory reads back zeros, as anonymous memory. */
TEST(test_madvise_discard)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(4), *sh;
	int vfd = memfd_create("vmm-ram", MFD_CLOEXEC);
	struct kvm_gfn_backing b;
	static const char zero[16];

	memset(mem, 'm', 4 * PS);
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(guestmem_sys_madvise(mem, PS, MADV_DONTNEED), 0);
	ASSERT_EQ(mem[0], 0);
	ASSERT_EQ(mem[PS - 1], 0);
	ASSERT_EQ(mem[PS], 'm');
	ASSERT_EQ(guestmem_sys_madvise(mem + 2 * PS, PS, MADV_FREE), 0);
	ASSERT_EQ(mem[2 * PS], 0);
	ASSERT_EQ(mem[3 * PS], 'm');
	ASSERT_EQ(lookup(kvm, 2, false, &b), 0);
	child_check(b.fd, b.offset, sizeof(zero), zero, 0, 0);
	close(b.fd);
	/* Not page aligned: the host's EINVAL, nothing punched. */
	ASSERT_EQ(guestmem_sys_madvise(mem + 3 * PS + 1, PS, MADV_DONTNEED), -1);
	ASSERT_EQ(errno, EINVAL);
	ASSERT_EQ(mem[3 * PS], 'm');

	/* The VMM's own shared memory keeps shared semantics. */
	ASSERT_GE(vfd, 0);
	ASSERT_EQ(ftruncate(vfd, PS), 0);
	sh = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_SHARED, vfd, 0);
	ASSERT_TRUE(sh != MAP_FAILED);
	sh[0] = 's';
	ASSERT_EQ(set_region(kvm, 1, 0, 0x100000, PS, sh, NULL, 0), 0);
	ASSERT_EQ(guestmem_sys_madvise(sh, PS, MADV_DONTNEED), 0);
	ASSERT_EQ(sh[0], 's');
	ASSERT_EQ(guestmem_sys_madvise(sh, PS, MADV_FREE), -1);
	ASSERT_EQ(errno, EINVAL);
	kvm_put_kvm(kvm);
	munmap(sh, PS);
	close(vfd);
	munmap(mem, 4 * PS);
}

/*
 * A memslot deleted and created again over converted memory finds the same
 * file (nothing else could: the memfd has no path and the VMM no fd); moving
 * a slot keeps it.
 */
TEST(test_recreate_and_move)
{
	struct kvm *kvm = vm_new(0);
	char *mem = anon(4);
	struct kvm_gfn_backing a, b;
	long files;

	mem[PS] = 'r';
	ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 4 * PS, mem, NULL, 0), 0);
	files = kvm_shram_nr_files();
	ASSERT_EQ(lookup(kvm, 1, false, &a), 0);
	ASSERT_TRUE(in_use(kvm, a.file_id));
	ASSERT_EQ(set_region(kvm, 0, 0, 0, 0, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 1, false, &b), -ENOENT);
	ASSERT_FALSE(in_use(kvm, a.file_id));
	ASSERT_EQ(set_region(kvm, 0, 0, 0x10000, 4 * PS, mem, NULL, 0), 0);
	ASSERT_TRUE(in_use(kvm, a.file_id));
	ASSERT_EQ(lookup(kvm, 0x11, false, &b), 0);
	ASSERT_EQ(a.file_id, b.file_id);
	same_file(a.fd, b.fd);
	close(b.fd);
	/* MOVE, then FLAGS_ONLY: the same record. */
	ASSERT_EQ(set_region(kvm, 0, 0, 0x20000, 4 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(set_region(kvm, 0, KVM_MEM_LOG_DIRTY_PAGES, 0x20000, 4 * PS, mem, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 0x10, false, &b), -ENOENT);
	ASSERT_EQ(lookup(kvm, 0x21, false, &b), 0);
	ASSERT_EQ(a.file_id, b.file_id);
	child_check(b.fd, b.offset, 1, "r", 0, 'R');
	ASSERT_EQ(mem[PS], 'R');
	close(b.fd);
	close(a.fd);
	ASSERT_EQ(kvm_shram_nr_files(), files);
	kvm_put_kvm(kvm);
	munmap(mem, 4 * PS);
}

static int nr_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ASSERT_NOT_NULL(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Nothing stays open once the VMs are gone and the memory is unmapped. */
TEST(test_no_fd_left)
{
	int fds = nr_open_fds();
	long files = kvm_shram_nr_files();

	for (int round = 0; round < 3; round++) {
		struct kvm *kvm = vm_new(0);
		char *mem = anon(8);
		struct kvm_gfn_backing b;
		struct kvm_mn_token *t;

		ASSERT_EQ(kvm_shared_ram_enable(kvm), 0);
		ASSERT_EQ(set_region(kvm, 0, 0, 0, 8 * PS, mem, NULL, 0), 0);
		ASSERT_EQ(set_region(kvm, 1, 0, 0x100000, 4 * PS, mem + 2 * PS, NULL, 0), 0);
		ASSERT_EQ(lookup(kvm, 3, false, &b), 0);
		close(b.fd);
		kvm_put_kvm(kvm);
		t = kvm_mmu_notifier_start_all((uintptr_t)mem, (uintptr_t)mem + 8 * PS);
		ASSERT_EQ(munmap(mem, 8 * PS), 0);
		/* No VM is left, and the file is still closed at the end. */
		kvm_mmu_notifier_end_all(t);
	}
	gm_synchronize_rcu();
	ASSERT_WAIT(kvm_shram_nr_files() == files, 5000);
	ASSERT_EQ(nr_open_fds(), fds);
}

/*
 * Lookups racing memslot deletion and re-creation, notifier events and
 * re-probes: every fd handed out is open and is a memfd of the slot's size
 * for as long as the read-side section lasts (ThreadSanitizer checks the
 * publication of records).
 */
struct race {
	struct kvm *kvm;
	char *mem;
	int stop;
	long ok, gone;
};

static void *race_lookups(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		struct kvm_gfn_backing b;
		struct stat st;
		int ret;

		gm_rcu_read_lock();
		ret = kvm_gfn_to_backing_info(r->kvm, 0, 2, false, 0, &b);
		if (!ret) {
			/* The file (here, or kept) must be the one it was when answered. */
			int fd = b.fd >= 0 ? b.fd : gm_fd_fetch(b.kfd);

			ASSERT_EQ(fstat(fd, &st), 0);
			ASSERT_EQ(st.st_size, 8 * PS);
			ASSERT_EQ(b.offset, 2 * PS);
			if (b.fd < 0)
				gm_fd_close(fd);
		}
		gm_rcu_read_unlock();
		if (!ret)
			__atomic_fetch_add(&r->ok, 1, __ATOMIC_RELAXED);
		else if (ret == -ENOENT || ret == -EFAULT)
			__atomic_fetch_add(&r->gone, 1, __ATOMIC_RELAXED);
		else
			FAIL("lookup: %d", ret);
	}
	return NULL;
}

TEST_TIMEOUT(test_race_delete_and_notifier, 120)
{
	struct race r = { .kvm = vm_new(0), .mem = anon(8) };
	pthread_t th[2];

	ASSERT_EQ(kvm_shared_ram_enable(r.kvm), 0);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_create(&th[i], NULL, race_lookups, &r), 0);
	for (int round = 0; round < 300; round++) {
		ASSERT_EQ(set_region(r.kvm, 0, 0, 0, 8 * PS, r.mem, NULL, 0), 0);
		if (round % 3 == 0)
			kvm_mmu_notifier_invalidate_range(r.kvm, (uintptr_t)r.mem + PS,
							  (uintptr_t)r.mem + 3 * PS);
		if (round % 5 == 0) /* move it: the same record goes along */
			ASSERT_EQ(set_region(r.kvm, 0, 0, 0x100000, 8 * PS, r.mem, NULL, 0), 0);
		ASSERT_EQ(set_region(r.kvm, 0, 0, 0, 0, r.mem, NULL, 0), 0);
	}
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 2; i++)
		ASSERT_EQ(pthread_join(th[i], NULL), 0);
	DIAG("%ld answers, %ld gone", r.ok, r.gone);
	ASSERT_GT(r.ok + r.gone, 0);
	kvm_put_kvm(r.kvm);
	munmap(r.mem, 8 * PS);
}

/* ---- private memory --------------------------------------------------------- */

static char *gmem_page(struct kvm *kvm, gfn_t gfn)
{
	struct kvm_memory_slot *s;
	void *hva = NULL;
	int order;

	gm_rcu_read_lock();
	s = gfn_to_memslot(kvm, 0, gfn);
	ASSERT_NOT_NULL(s);
	ASSERT_EQ(kvm_gmem_get_pfn(kvm, s, gfn, &hva, &order), 0);
	gm_rcu_read_unlock();
	return hva;
}

static void test_private(void *arg)
{
	struct kvm *kvm;
	struct kvm_create_guest_memfd args = { .size = 64 * PS };
	struct kvm_memory_attributes attrs = { 0 };
	struct kvm_gmem *g = NULL;
	struct kvm_gfn_backing b, s;
	char *shared = NULL, *p;
	uint64_t priv_id;

	use_backing(arg);
	kvm = vm_new(KVM_X86_SW_PROTECTED_VM);
	shared = anon(16);
	ASSERT_EQ(kvm_gmem_create(kvm, &args, &g), 0);
	ASSERT_EQ(set_region(kvm, 0, KVM_MEM_GUEST_MEMFD, 0x10000, 16 * PS, shared, g, 8 * PS),
		  0);
	attrs.address = 0x10000;
	attrs.size = 8 * PS;
	attrs.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
	ASSERT_EQ(kvm_vm_ioctl_set_mem_attributes(kvm, &attrs), 0);

	ASSERT_EQ(lookup(kvm, 0x10, true, &b), 0); /* allocates that one page */
	p = gmem_page(kvm, 0x10);
	strcpy(p, "private bytes");
	ASSERT_EQ(b.run_pages, 1); /* the next private pages are not allocated */
	ASSERT_TRUE(b.file_id >> 63);
	/* Where in the file depends on the backing's layout (linear or a
	 * pool of slots): the child checks the bytes there. */
	child_check(b.fd, b.offset, 14, "private bytes", 0, 'P');
	ASSERT_EQ(p[0], 'P');
	close(b.fd);

	/* Allocated neighbours extend the run, up to the attribute change. */
	for (gfn_t g2 = 0x11; g2 < 0x18; g2++)
		gmem_page(kvm, g2)[0] = (char)g2;
	ASSERT_EQ(lookup(kvm, 0x12, true, &b), 0);
	if (!strcmp(arg, "memfd")) {
		ASSERT_EQ(b.run_pages, 6); /* allocated in order: contiguous slots */
	} else {
		ASSERT_GE(b.run_pages, 1);
	}
	child_check(b.fd, b.offset, 1, "\x12", 0, 0x22);
	ASSERT_EQ(gmem_page(kvm, 0x12)[0], 0x22);
	close(b.fd);

	/* The shared half: the slot's own memory, converted lazily. */
	shared[9 * PS] = 's';
	ASSERT_EQ(lookup(kvm, 0x19, false, &s), 0);
	ASSERT_EQ(s.offset, 9 * PS);
	ASSERT_EQ(s.run_pages, 7);
	child_check(s.fd, s.offset, 1, "s", 0, 'S');
	ASSERT_EQ(shared[9 * PS], 'S');
	close(s.fd);
	/* A shared run stops where private begins, and the other way round. */
	attrs.size = PS;
	attrs.address = 0x10000 + 3 * PS;
	attrs.attributes = 0;
	ASSERT_EQ(kvm_vm_ioctl_set_mem_attributes(kvm, &attrs), 0);
	ASSERT_EQ(lookup(kvm, 0x13, false, &s), 0);
	ASSERT_EQ(s.offset, 3 * PS);
	ASSERT_EQ(s.run_pages, 1);
	close(s.fd);
	ASSERT_EQ(lookup(kvm, 0x11, true, &b), 0);
	ASSERT_EQ(b.run_pages, !strcmp(arg, "memfd") ? 2 : b.run_pages);
	close(b.fd);
	priv_id = b.file_id;

	/* Slot without guest_memfd: no private answer. */
	ASSERT_EQ(set_region(kvm, 1, 0, 0x100000, PS, shared, NULL, 0), 0);
	ASSERT_EQ(lookup(kvm, 0x100, true, &b), -EINVAL);

	/* guest_memfd released: an error, never the closed fd. */
	ASSERT_TRUE(in_use(kvm, priv_id));
	kvm_gmem_put(g);
	ASSERT_FALSE(in_use(kvm, priv_id));
	ASSERT_EQ(lookup(kvm, 0x10, true, &b), -EFAULT);
	kvm_put_kvm(kvm);
	munmap(shared, 16 * PS);
}

int main(int argc, char **argv)
{
	test_add("test_private/memfd", test_private, "memfd", 0);
	test_add("test_private/secretmem", test_private, "secretmem", 0);
	return test_main(argc, argv);
}
