/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd objects (src/core/gmem.c) on real VMs: the creation and
 * fallocate check order of both profiles (spec §3.3, §3.4.1, probes/), the
 * storage semantics, binding rules 20-23 (§3.5), the fault-path lookup,
 * memory failure, release (§4.1) and the balance of the invalidations
 * guest_memfd drives (§4.4).  The storage-dependent cases run once per
 * backing; secretmem cases report a TAP skip when the host refuses memfd_secret.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "harness.h"

#include <guestmem/kvm.h>

#include "core/gmem.h"
#include "core/kvm_host.h"
#include "lib/rcu.h"
#include "mmu/mmu.h"
#include "lib/lockdep.h"

#define PS 4096LL
#define MB (1ULL << 20)
#define KEEP FALLOC_FL_KEEP_SIZE
#define PUNCH FALLOC_FL_PUNCH_HOLE

static const char *g_backing = "memfd"; /* the group being run */

/* Run the case over backing @arg; a secretmem case skips (in the plan) if
 * the host refuses memfd_secret(2). */
static void use_backing(const char *arg)
{
	g_backing = arg;
	if (!strcmp(arg, "secretmem") && !gm_backing_available(GM_BACKING_SECRETMEM))
		SKIP("secretmem: the host refuses memfd_secret(2)");
}

/* ---- helpers ---------------------------------------------------------------- */

static struct kvm *vm_new(const char *profile, unsigned long type)
{
	struct kvm *kvm = NULL;


	ASSERT_EQ(gm_config_set(profile, "KVM_SW_PROTECTED_VM=y KVM_SMM=y", g_backing), 0);
	ASSERT_EQ(kvm_create_vm(type, &kvm), 0);
	return kvm;
}

static int __gmem_create(struct kvm *kvm, uint64_t size, uint64_t flags, struct kvm_gmem **g)
{
	struct kvm_create_guest_memfd args = { 0 };

	args.size = size;
	args.flags = flags;
	return kvm_gmem_create(kvm, &args, g);
}

static struct kvm_gmem *gmem_new(struct kvm *kvm, uint64_t size, uint64_t flags)
{
	struct kvm_gmem *g = NULL;

	ASSERT_EQ(__gmem_create(kvm, size, flags, &g), 0);
	return g;
}

static long vm_users(struct kvm *kvm)
{
	return __atomic_load_n(&kvm->users_count, __ATOMIC_RELAXED);
}

static struct kvm_memory_slot *slot_new(gfn_t base, uint64_t npages)
{
	struct kvm_memory_slot *s = calloc(1, sizeof(*s));

	ASSERT_NOT_NULL(s);
	s->base_gfn = base;
	s->npages = npages;
	s->flags = KVM_MEM_GUEST_MEMFD;
	return s;
}

static int bind(struct kvm *kvm, struct kvm_memory_slot *s, struct kvm_gmem *g, uint64_t off)
{
	struct kvm_gmem_unbind undo;
	int r;

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	r = kvm_gmem_bind(kvm, s, g, off, &undo);
	kvm_gmem_unbind_abort(&undo); /* the binding stays */
	gm_mutex_unlock(&kvm->slots_lock);
	return r;
}

static void unbind(struct kvm *kvm, struct kvm_memory_slot *s)
{
	struct kvm_gmem_unbind u;

	gm_mutex_lock(&kvm->slots_lock, GM_LOCK_SLOTS);
	ASSERT_EQ(kvm_gmem_unbind_prepare(s, &u), 0);
	kvm_gmem_unbind_commit(s, &u);
	gm_mutex_unlock(&kvm->slots_lock);
}

static int get_pfn(struct kvm *kvm, struct kvm_memory_slot *s, gfn_t gfn, char **hva)
{
	void *p = NULL;
	int order = -1, r;

	gm_rcu_read_lock();
	r = kvm_gmem_get_pfn(kvm, s, gfn, &p, &order);
	gm_rcu_read_unlock();
	ASSERT_EQ(order, 0);
	*hva = p;
	return r;
}

/* Map @gfn of @s in stage 2 as a fault would (Context: none). */
static void map_gfn(struct kvm *kvm, struct kvm_memory_slot *s, gfn_t gfn)
{
	int level = S2_PG_LEVEL_4K;
	char *hva;

	ASSERT_EQ(get_pfn(kvm, s, gfn, &hva), 0);
	gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
	gm_rcu_read_lock();
	ASSERT_EQ(kvm_mmu_install(kvm, gfn, &level, (uint64_t)(uintptr_t)hva,
					 S2_WRITABLE | S2_PRIVATE),
			 0);
	gm_rcu_read_unlock();
	gm_rwlock_unlock(&kvm->mmu_lock);
}

static bool mapped(struct kvm *kvm, gfn_t gfn)
{
	int level;
	uint64_t pte;

	gm_rcu_read_lock();
	pte = kvm_mmu_lookup(kvm, gfn, &level);
	gm_rcu_read_unlock();
	return pte != 0;
}

static struct kvm_invalidate_state inval(struct kvm *kvm)
{
	struct kvm_invalidate_state st;

	kvm_mmu_invalidate_state(kvm, &st);
	return st;
}

/* Exactly one invalidation, begun and ended, since @before, over
 * [@start, @end); returns the state after it. */
static struct kvm_invalidate_state one_inval(struct kvm *kvm, struct kvm_invalidate_state before,
					     gfn_t start, gfn_t end)
{
	struct kvm_invalidate_state st = inval(kvm);

	ASSERT_EQ(st.seq, before.seq + 1);
	ASSERT_EQ(st.in_progress, 0);
	ASSERT_EQ(st.range_start, start);
	ASSERT_EQ(st.range_end, end);
	return st;
}

static char *page_at(struct kvm_gmem *g, uint64_t index)
{
	int err;

	return gm_backing_page(&g->backing, index, false, &err);
}

static bool page_is_zero(const char *p)
{
	for (int i = 0; i < PS; i++)
		if (p[i])
			return false;
	return true;
}

/* ---- KVM_CREATE_GUEST_MEMFD (§3.3, §7) -------------------------------------- */

struct create_case {
	const char *name;
	uint64_t size, flags, reserved0;
	int e68, e618, e618_protected; /* expected: 0 or errno */
};

static const struct create_case create_cases[] = {
	{ "size 4096", 4096, 0, 0, 0, 0, 0 },
	{ "size 2 MiB, reserved[0] != 0", 2 * MB, 0, 0xdead, 0, 0, 0 },
	{ "size 2^62", 1ULL << 62, 0, 0, 0, 0, 0 },
	{ "size 2^63 - 4096", (1ULL << 63) - 4096, 0, 0, 0, 0, 0 },
	{ "size 0", 0, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "size 1", 1, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "size 4095", 4095, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "size 4097", 4097, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "size -4096", (uint64_t)-4096, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "size 2^63", 1ULL << 63, 0, 0, EINVAL, EINVAL, EINVAL },
	{ "flags MMAP", 4096, GUEST_MEMFD_FLAG_MMAP, 0, EINVAL, 0, 0 },
	{ "flags INIT_SHARED", 4096, GUEST_MEMFD_FLAG_INIT_SHARED, 0, EINVAL, 0, EINVAL },
	{ "flags MMAP|INIT_SHARED", 4096, 3, 0, EINVAL, 0, EINVAL },
	{ "flags bit 2", 4096, 4, 0, EINVAL, EINVAL, EINVAL },
	{ "flags bit 63", 4096, 1ULL << 63, 0, EINVAL, EINVAL, EINVAL },
	{ "flags MMAP, size 1", 1, GUEST_MEMFD_FLAG_MMAP, 0, EINVAL, EINVAL, EINVAL },
};

static void check_created(struct kvm *kvm, struct kvm_gmem *g, const struct create_case *c)
{
	ASSERT_EQ(g->size, c->size);
	ASSERT_EQ(g->flags, c->flags);
	ASSERT_EQ(g->refs, 1);
	ASSERT_PTR_EQ(g->kvm, kvm);
	ASSERT_EQ(g->uid, geteuid());
	ASSERT_EQ(g->gid, getegid());
	ASSERT_TRUE(g->mtime.tv_sec > 0 && g->ctime.tv_sec == g->mtime.tv_sec);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 0);
}

static void run_create_cases(const char *profile, unsigned long type, int which)
{
	struct kvm *kvm = vm_new(profile, type);

	for (size_t i = 0; i < ARRAY_SIZE(create_cases); i++) {
		const struct create_case *c = &create_cases[i];
		int want = which == 0 ? c->e68 : which == 1 ? c->e618 : c->e618_protected;
		struct kvm_create_guest_memfd args = { 0 };
		struct kvm_gmem *g = NULL;
		int r;

		args.size = c->size;
		args.flags = c->flags;
		args.reserved[0] = c->reserved0;
		r = kvm_gmem_create(kvm, &args, &g);
		if (r != -want)
			FAIL("%s, %s VM type %lu: got %d, want %d", c->name, profile, type, r,
				 -want);
		if (r)
			continue;
		ASSERT_EQ(vm_users(kvm), 2); /* the file pins the VM */
		check_created(kvm, g, c);
		kvm_gmem_put(g);
		ASSERT_EQ(vm_users(kvm), 1);
	}
	kvm_put_kvm(kvm);
}

TEST(test_create_checks)
{
	run_create_cases("linux-6.8", KVM_X86_DEFAULT_VM, 0);
	run_create_cases("linux-6.8", KVM_X86_SW_PROTECTED_VM, 0);
	run_create_cases("linux-6.18", KVM_X86_DEFAULT_VM, 1);
	run_create_cases("linux-6.18", KVM_X86_SW_PROTECTED_VM, 2);
}

TEST(test_create_distinct_inodes)
{
	struct kvm *kvm = vm_new("linux-6.8", 0);
	struct kvm_gmem *a = gmem_new(kvm, 2 * MB, 0), *b = gmem_new(kvm, 2 * MB, 0);

	ASSERT_NE(a->ino, b->ino);
	ASSERT_EQ(vm_users(kvm), 3);
	kvm_gmem_put(a);
	kvm_gmem_put(b);
	kvm_put_kvm(kvm);
}

/* ---- fallocate check order (§3.4.1, probes/probe*.out) ---------------------- */

#define WZ 0x80 /* FALLOC_FL_WRITE_ZEROES (6.17+) */
#define NHS 0x04 /* FALLOC_FL_NO_HIDE_STALE */
#define TOTAL (64 * PS)
#define BIG 0x7ffffffffffff000LL

struct falloc_case {
	const char *name;
	int mode;
	int64_t off, len;
	int e68, e618;
};

static const struct falloc_case falloc_cases[] = {
	{ "mode 0", 0, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "KEEP 0,total", KEEP, 0, TOTAL, 0, 0 },
	{ "KEEP len 0", KEEP, 0, 0, EINVAL, EINVAL },
	{ "KEEP negative offset", KEEP, -PS, PS, EINVAL, EINVAL },
	{ "KEEP negative len", KEEP, 0, -PS, EINVAL, EINVAL },
	{ "unknown bit, negative offset", 0x100, -1, PS, EINVAL, EINVAL },
	{ "unknown bit, len 0", 0x100 | KEEP, 0, 0, EINVAL, EINVAL },
	{ "KEEP at EOF", KEEP, TOTAL, PS, EINVAL, EINVAL },
	{ "KEEP past EOF", KEEP, TOTAL + PS, PS, EINVAL, EINVAL },
	{ "KEEP straddling EOF", KEEP, TOTAL - PS, 2 * PS, EINVAL, EINVAL },
	{ "KEEP unaligned offset", KEEP, 1, PS, EINVAL, EINVAL },
	{ "KEEP unaligned len", KEEP, 0, 1, EINVAL, EINVAL },
	{ "KEEP len ps+1", KEEP, 0, PS + 1, EINVAL, EINVAL },
	{ "KEEP 0,2^63-4096 (s_maxbytes)", KEEP, 0, BIG, EINVAL, EINVAL },
	{ "PUNCH without KEEP", PUNCH, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "KEEP|PUNCH ps-1,ps", KEEP | PUNCH, PS - 1, PS, EINVAL, EINVAL },
	{ "KEEP|PUNCH ps,ps-1", KEEP | PUNCH, PS, PS - 1, EINVAL, EINVAL },
	{ "KEEP|PUNCH at EOF", KEEP | PUNCH, TOTAL, PS, 0, 0 },
	{ "KEEP|PUNCH past EOF", KEEP | PUNCH, TOTAL + PS, PS, 0, 0 },
	{ "KEEP|PUNCH ps,ps", KEEP | PUNCH, PS, PS, 0, 0 },
	{ "KEEP|PUNCH len 2^62", KEEP | PUNCH, 0, 1LL << 62, 0, 0 },
	{ "ZERO_RANGE", FALLOC_FL_ZERO_RANGE, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "ZERO_RANGE|KEEP", FALLOC_FL_ZERO_RANGE | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "PUNCH|ZERO|KEEP", PUNCH | FALLOC_FL_ZERO_RANGE | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "PUNCH|ZERO", PUNCH | FALLOC_FL_ZERO_RANGE, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "COLLAPSE", FALLOC_FL_COLLAPSE_RANGE, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "INSERT", FALLOC_FL_INSERT_RANGE, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "UNSHARE|KEEP", FALLOC_FL_UNSHARE_RANGE | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "0x80", WZ, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "0x80|KEEP", WZ | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "0x100", 0x100, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "INT_MIN|KEEP", (int)0x80000000u | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "NO_HIDE_STALE|KEEP", NHS | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	{ "NO_HIDE_STALE|PUNCH|KEEP", NHS | PUNCH | KEEP, 0, PS, EOPNOTSUPP, EOPNOTSUPP },
	/* The VFS reorganisation between the profiles (probes/probe3.out). */
	{ "COLLAPSE|KEEP", FALLOC_FL_COLLAPSE_RANGE | KEEP, 0, PS, EINVAL, EOPNOTSUPP },
	{ "INSERT|KEEP", FALLOC_FL_INSERT_RANGE | KEEP, 0, PS, EINVAL, EOPNOTSUPP },
	{ "UNSHARE|PUNCH|KEEP", FALLOC_FL_UNSHARE_RANGE | PUNCH | KEEP, 0, PS, EINVAL,
	  EOPNOTSUPP },
	{ "COLLAPSE|ZERO", FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE, 0, PS, EINVAL,
	  EOPNOTSUPP },
	/* EFBIG: after the mode checks, before guest_memfd's. */
	{ "KEEP 2^63-4096 + 8192", KEEP, BIG, 2 * PS, EFBIG, EFBIG },
	{ "KEEP|PUNCH 2^63-4096 + 8192", KEEP | PUNCH, BIG, 2 * PS, EFBIG, EFBIG },
	{ "KEEP sum exactly 2^63", KEEP, BIG, PS, EFBIG, EFBIG },
	{ "KEEP|PUNCH sum 2^63-1, unaligned", KEEP | PUNCH, BIG, PS - 1, EINVAL, EINVAL },
	{ "KEEP sum wraps", KEEP, INT64_MAX, INT64_MAX, EFBIG, EFBIG },
	{ "mode 0 overflow", 0, BIG, 2 * PS, EFBIG, EFBIG },
	{ "unaligned overflow", KEEP, BIG + 1, 2 * PS, EFBIG, EFBIG },
	{ "ZERO|KEEP overflow", FALLOC_FL_ZERO_RANGE | KEEP, BIG, 2 * PS, EFBIG, EFBIG },
	{ "0x80 overflow", WZ, BIG, 2 * PS, EOPNOTSUPP, EFBIG },
	{ "COLLAPSE|KEEP overflow", FALLOC_FL_COLLAPSE_RANGE | KEEP, BIG, 2 * PS, EINVAL,
	  EOPNOTSUPP },
	{ "PUNCH|ZERO|KEEP overflow", PUNCH | FALLOC_FL_ZERO_RANGE | KEEP, BIG, 2 * PS,
	  EOPNOTSUPP, EOPNOTSUPP },
};

static void run_falloc_cases(const char *profile, bool profile_618)
{
	struct kvm *kvm = vm_new(profile, 0);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);

	for (size_t i = 0; i < ARRAY_SIZE(falloc_cases); i++) {
		const struct falloc_case *c = &falloc_cases[i];
		int want = profile_618 ? c->e618 : c->e68;
		int r = kvm_gmem_fallocate(g, c->mode, c->off, c->len);

		if (r != -want)
			FAIL("%s (%s): got %d, want %d", c->name, profile, r, -want);
	}
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

TEST(test_fallocate_checks)
{
	run_falloc_cases("linux-6.8", false);
	run_falloc_cases("linux-6.18", true);
}

/* ---- storage semantics ------------------------------------------------------ */

static void test_allocate_punch(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 0);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);

	use_backing(arg);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, 16 * PS), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 16);
	for (uint64_t i = 0; i < 16; i++) {
		ASSERT_TRUE(page_is_zero(page_at(g, i)));
		memcpy(page_at(g, i), &i, sizeof(i));
	}
	ASSERT_NULL(page_at(g, 16));
	/* Re-allocating is a no-op: data stays. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, 32 * PS), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 32);
	ASSERT_EQ(*(uint64_t *)page_at(g, 7), 7);

	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 4 * PS, 4 * PS), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 28);
	ASSERT_NULL(page_at(g, 4));
	ASSERT_NULL(page_at(g, 7));
	ASSERT_EQ(*(uint64_t *)page_at(g, 3), 3);
	ASSERT_EQ(*(uint64_t *)page_at(g, 8), 8);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 4 * PS, 4 * PS), 0);
	ASSERT_TRUE(page_is_zero(page_at(g, 5)));

	/* Punch beyond EOF touches nothing; a failed allocate allocates nothing. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, TOTAL, 1LL << 40), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 32);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 60 * PS, 8 * PS), -EINVAL);
	ASSERT_NULL(page_at(g, 60));
	/* Punch straddling EOF frees up to EOF. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 16 * PS, 1LL << 40), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 16);
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

static void test_times(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 0);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);
	struct timespec before;

	use_backing(arg);
	g->mtime = g->ctime = (struct timespec){ 0, 0 };
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, TOTAL + PS), -EINVAL);
	ASSERT_EQ(kvm_gmem_fallocate(g, 0, 0, PS), -EOPNOTSUPP);
	ASSERT_EQ(g->mtime.tv_sec, 0);
	ASSERT_EQ(g->ctime.tv_sec, 0);
	clock_gettime(CLOCK_REALTIME, &before);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, PS), 0);
	ASSERT_TRUE(g->mtime.tv_sec >= before.tv_sec);
	ASSERT_TRUE(g->ctime.tv_sec >= before.tv_sec);
	g->mtime = g->ctime = (struct timespec){ 0, 0 };
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, TOTAL, PS), 0);
	ASSERT_TRUE(g->mtime.tv_sec >= before.tv_sec);
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

/* ---- binding rules 20-23 ------------------------------------------------------ */

static void test_bind_rules(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1), *other = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, 2 * MB, 0), *og = gmem_new(other, 2 * MB, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 128), *b = slot_new(0x2000, 128);
	struct kvm_memory_slot *c = slot_new(0x3000, 128);
	static const struct {
		const char *name;
		uint64_t off;
	} bad[] = {
		{ "offset 1", 1 },
		{ "offset 2048", 2048 },
		{ "offset -4096", (uint64_t)-4096 },
		{ "offset 2^63", 1ULL << 63 },
		{ "offset at EOF", 2 * MB },
		{ "slot past EOF", 2 * MB - 256 * 1024 },
		{ "signed wrap 2^63 - slot size", (1ULL << 63) - 512 * 1024 },
		{ "offset 2^64 - 4096", ~0ULL - 4095 },
	};

	use_backing(arg);
	/* Rule 20: another VM's guest_memfd, even with a valid offset. */
	ASSERT_EQ(bind(kvm, a, og, 0), -EINVAL);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		int r = bind(kvm, a, g, bad[i].off);

		if (r != -EINVAL)
			FAIL("%s: got %d, want %d", bad[i].name, r, -EINVAL);
		ASSERT_NULL(a->gmem.file);
	}
	ASSERT_EQ(bind(kvm, a, g, 0), 0);
	ASSERT_PTR_EQ(a->gmem.file, g);
	ASSERT_EQ(a->gmem.pgoff, 0);
	ASSERT_EQ(g->refs, 1); /* the slot holds no file reference */
	/* Rule 22: overlapping (partly or fully) another slot's range. */
	ASSERT_EQ(bind(kvm, b, g, 256 * 1024), -EINVAL);
	ASSERT_EQ(bind(kvm, b, g, 0), -EINVAL);
	ASSERT_NULL(b->gmem.file);
	ASSERT_EQ(bind(kvm, b, g, 512 * 1024), 0);
	ASSERT_EQ(b->gmem.pgoff, 128);
	ASSERT_EQ(bind(kvm, c, g, 2 * MB - 512 * 1024), 0); /* ends at EOF */
	ASSERT_EQ(rangemap_nr_runs(&g->bindings), 3);
	/* Unbind frees the range for a new slot. */
	unbind(kvm, a);
	ASSERT_NULL(a->gmem.file);
	ASSERT_EQ(bind(kvm, a, g, 128 * 1024), -EINVAL); /* still overlaps b */
	a->npages = 64;
	ASSERT_EQ(bind(kvm, a, g, 256 * 1024), 0);
	ASSERT_EQ(a->gmem.pgoff, 64);
	ASSERT_FALSE(a->flags & KVM_MEMSLOT_GMEM_ONLY); /* 6.8 */
	unbind(kvm, a);
	unbind(kvm, b);
	unbind(kvm, c);
	ASSERT_EQ(rangemap_nr_runs(&g->bindings), 0);
	free(a), free(b), free(c);
	kvm_gmem_put(g);
	kvm_gmem_put(og);
	kvm_put_kvm(kvm);
	kvm_put_kvm(other);
}

/* 6.18: a slot bound to an MMAP-capable file is guest_memfd-only. */
static void test_bind_gmem_only(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.18", 0);
	struct kvm_gmem *m = gmem_new(kvm, 2 * MB, GUEST_MEMFD_FLAG_MMAP);
	struct kvm_gmem *p = gmem_new(kvm, 2 * MB, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 16), *b = slot_new(0x2000, 16);

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, m, 0), 0);
	ASSERT_TRUE(a->flags & KVM_MEMSLOT_GMEM_ONLY);
	ASSERT_EQ(bind(kvm, b, p, 0), 0);
	ASSERT_FALSE(b->flags & KVM_MEMSLOT_GMEM_ONLY);
	ASSERT_TRUE(gm_backing_memfd(&m->backing) >= 0 ||
		    m->backing.kind == GM_BACKING_SECRETMEM);
	unbind(kvm, a);
	unbind(kvm, b);
	free(a), free(b);
	kvm_gmem_put(m);
	kvm_gmem_put(p);
	kvm_put_kvm(kvm);
}

/* ---- fault path ------------------------------------------------------------------ */

static void test_get_pfn(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 16), *b = slot_new(0x5000, 16);
	struct kvm_memory_slot *unbound = slot_new(0x9000, 16);
	char *p, *q;

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, g, 0), 0);
	ASSERT_EQ(bind(kvm, b, g, 16 * PS), 0);
	ASSERT_EQ(get_pfn(kvm, unbound, 0x9000, &p), -EFAULT);
	/* First use allocates a zeroed page; the next use finds the same page. */
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &p), 0);
	ASSERT_NOT_NULL(p);
	ASSERT_TRUE(page_is_zero(p));
	strcpy(p, "private");
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &q), 0);
	ASSERT_PTR_EQ(q, p);
	ASSERT_PTR_EQ(page_at(g, 3), p);
	/* Index 16 belongs to b: asking through a is -EIO. */
	ASSERT_EQ(get_pfn(kvm, a, 0x1000 + 16, &q), -EIO);
	ASSERT_EQ(get_pfn(kvm, b, 0x5000, &q), 0);
	ASSERT_PTR_EQ(page_at(g, 16), q);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 2);
	/* Index 40 is bound to nobody (as after an unbind). */
	a->gmem.pgoff = 40;
	ASSERT_EQ(get_pfn(kvm, a, 0x1000, &q), -EIO);
	a->gmem.pgoff = 0;
	/* A file whose last reference is being dropped counts as gone. */
	g->refs = 0;
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &q), -EFAULT);
	g->refs = 1;
	/* After punch, the page comes back zeroed. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 3 * PS, PS), 0);
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &p), 0);
	ASSERT_TRUE(page_is_zero(p));
	unbind(kvm, a);
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &q), -EFAULT);
	unbind(kvm, b);
	free(a), free(b), free(unbound);
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

static void test_poison(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 16);
	struct kvm_invalidate_state st0, st;
	char *p;

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, g, 0), 0);
	map_gfn(kvm, a, 0x1003);
	map_gfn(kvm, a, 0x1004);
	st0 = inval(kvm);
	ASSERT_EQ(kvm_gmem_error_page(g, 3), 0);
	st = one_inval(kvm, st0, 0x1003, 0x1004);
	ASSERT_FALSE(mapped(kvm, 0x1003));
	ASSERT_TRUE(mapped(kvm, 0x1004));
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &p), -EHWPOISON);
	ASSERT_NOT_NULL(page_at(g, 3)); /* the page stays in the file */
	ASSERT_EQ(get_pfn(kvm, a, 0x1004, &p), 0);
	/* Unbound index: poisoned, but no invalidation. */
	ASSERT_EQ(kvm_gmem_error_page(g, 40), 0);
	ASSERT_EQ(inval(kvm).seq, st.seq);
	ASSERT_EQ(kvm_gmem_error_page(g, 64), -EINVAL);
	/* Punching drops the poisoned page; the next fault gets a fresh one. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 0, TOTAL), 0);
	ASSERT_EQ(get_pfn(kvm, a, 0x1003, &p), 0);
	ASSERT_TRUE(page_is_zero(p));
	unbind(kvm, a);
	free(a);
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

/* ---- invalidation balance (§4.4) ------------------------------------------------- */

static void test_punch_invalidation(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 16), *b = slot_new(0x9000, 16);
	struct kvm_invalidate_state st0, st;

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, g, 0), 0);	 /* indices 0..15 */
	ASSERT_EQ(bind(kvm, b, g, 32 * PS), 0); /* indices 32..47 */
	map_gfn(kvm, a, 0x1004);
	map_gfn(kvm, a, 0x100a);
	map_gfn(kvm, b, 0x9000);

	st0 = inval(kvm);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 4 * PS, 4 * PS), 0);
	st = one_inval(kvm, st0, 0x1004, 0x1008);
	ASSERT_FALSE(mapped(kvm, 0x1004));
	ASSERT_TRUE(mapped(kvm, 0x100a));
	ASSERT_TRUE(mapped(kvm, 0x9000));

	/* No binding intersects: neither begin nor end. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 16 * PS, 16 * PS), 0);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, TOTAL, TOTAL), 0);
	ASSERT_EQ(inval(kvm).seq, st.seq);
	/* Allocation never invalidates. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, TOTAL), 0);
	ASSERT_EQ(inval(kvm).seq, st.seq);

	/* Two bindings: one begin/end pair, the range is their hull. */
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 0, TOTAL), 0);
	st = one_inval(kvm, st, 0x1000, 0x9010);
	ASSERT_FALSE(mapped(kvm, 0x100a));
	ASSERT_FALSE(mapped(kvm, 0x9000));
	unbind(kvm, a);
	unbind(kvm, b);
	free(a), free(b);
	kvm_gmem_put(g);
	kvm_put_kvm(kvm);
}

/* ---- references and release (§4.1) ----------------------------------------------- */

static void test_release(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 16), *b = slot_new(0x9000, 16);
	struct kvm_invalidate_state st0;
	char *p;

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, g, 0), 0);
	ASSERT_EQ(bind(kvm, b, g, 32 * PS), 0);
	map_gfn(kvm, a, 0x1001);
	map_gfn(kvm, b, 0x900f);
	kvm_gmem_get(g);
	ASSERT_TRUE(kvm_gmem_tryget(g));
	ASSERT_EQ(g->refs, 3);
	kvm_gmem_put(g);
	kvm_gmem_put(g);
	ASSERT_PTR_EQ(a->gmem.file, g);
	ASSERT_EQ(vm_users(kvm), 2);

	st0 = inval(kvm);
	kvm_gmem_put(g); /* the last reference: release */
	one_inval(kvm, st0, 0x1000, 0x9010);
	ASSERT_NULL(a->gmem.file);
	ASSERT_NULL(b->gmem.file);
	ASSERT_EQ(vm_users(kvm), 1);
	ASSERT_FALSE(mapped(kvm, 0x1001));
	ASSERT_FALSE(mapped(kvm, 0x900f));
	ASSERT_EQ(get_pfn(kvm, a, 0x1001, &p), -EFAULT);
	/* The slots outlive the file; unbinding them later is a no-op. */
	unbind(kvm, a);
	unbind(kvm, b);
	free(a), free(b);
	kvm_put_kvm(kvm);
}

/* The file keeps its VM alive: fallocate works after the VM's own put. */
static void test_file_pins_vm(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 0);
	struct kvm_gmem *g = gmem_new(kvm, TOTAL, 0);

	use_backing(arg);
	kvm_put_kvm(kvm);
	ASSERT_EQ(vm_users(kvm), 1);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, TOTAL), 0);
	ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, 0, PS), 0);
	ASSERT_EQ(kvm_gmem_nr_allocated(g), 63);
	kvm_gmem_put(g); /* destroys the VM (ASan reports a leak otherwise) */
}

/* Through the real memslot code: region2 with KVM_MEM_GUEST_MEMFD. */
static int set_region(struct kvm *kvm, uint32_t id, uint64_t gpa, uint64_t size,
		      struct kvm_gmem *g, uint64_t off)
{
	struct kvm_userspace_memory_region2 r = { 0 };
	struct kvm_gmem_ref ref = { 0, g };

	r.slot = id;
	r.flags = size ? KVM_MEM_GUEST_MEMFD : 0;
	r.guest_phys_addr = gpa;
	r.memory_size = size;
	r.guest_memfd_offset = off;
	return kvm_set_memory_region(kvm, &r, true, &ref);
}

static struct kvm_memory_slot *find_slot(struct kvm *kvm, gfn_t gfn)
{
	struct kvm_memory_slot *s;

	gm_rcu_read_lock();
	s = gfn_to_memslot(kvm, 0, gfn);
	gm_rcu_read_unlock();
	return s;
}

static void test_memslot_integration(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, 4 * MB, 0);
	struct kvm_memory_slot *s;

	use_backing(arg);
	ASSERT_EQ(set_region(kvm, 1, 1ULL << 32, 2 * MB, g, 0), 0);
	/* Rule 21 quirk rejected; rule 22 overlap is EINVAL. */
	ASSERT_EQ(set_region(kvm, 2, 2ULL << 32, 2 * MB, g, (1ULL << 63) - 2 * MB),
			 -EINVAL);
	ASSERT_EQ(set_region(kvm, 2, 2ULL << 32, 2 * MB, g, MB), -EINVAL);
	ASSERT_EQ(set_region(kvm, 2, 2ULL << 32, 2 * MB, g, 2 * MB), 0);
	s = find_slot(kvm, (1ULL << 32) >> 12);
	ASSERT_NOT_NULL(s);
	ASSERT_PTR_EQ(s->gmem.file, g);
	/* Delete frees the range; re-create on it. */
	ASSERT_EQ(set_region(kvm, 1, 0, 0, NULL, 0), 0);
	ASSERT_EQ(set_region(kvm, 3, 3ULL << 32, 2 * MB, g, 0), 0);
	ASSERT_EQ(g->refs, 1);
	/* Close the file while bound: the slots stay, their pointer is cleared. */
	kvm_gmem_put(g);
	s = find_slot(kvm, (3ULL << 32) >> 12);
	ASSERT_NOT_NULL(s);
	ASSERT_NULL(s->gmem.file);
	ASSERT_EQ(set_region(kvm, 3, 0, 0, NULL, 0), 0);
	kvm_put_kvm(kvm); /* slot 2 is unbound by VM destruction */
}

/* ---- concurrency: faults against punch, allocate and release ---------------------- */

struct fault_arg {
	struct kvm *kvm;
	struct kvm_memory_slot *slot;
	long ok, efault, other;
	int other_err;
};

static void *fault_loop(void *arg)
{
	struct fault_arg *f = arg;
	unsigned seed = 3;

	/* Until release makes the file vanish for good. */
	while (f->efault < 1000) {
		void *p;
		int order, r;

		gm_rcu_read_lock();
		r = kvm_gmem_get_pfn(f->kvm, f->slot, f->slot->base_gfn + rand_r(&seed) % 64, &p,
				     &order);
		/*
		 * Only the pointer is checked: the contents of a page that a
		 * punch may be dropping are the invalidation protocol's
		 * business (a real fault installs it only if no invalidation
		 * intervened), so reading it here would be a genuine race.
		 */
		if (!r && ((uintptr_t)p & (PS - 1)))
			r = -EINVAL;
		gm_rcu_read_unlock();
		if (!r)
			__atomic_fetch_add(&f->ok, 1, __ATOMIC_RELAXED);
		else if (r == -EFAULT)
			f->efault++;
		else
			f->other++, f->other_err = r;
	}
	return NULL;
}

static void test_faults_race_punch_and_release(void *arg)
{
	struct kvm *kvm = vm_new("linux-6.8", 1);
	struct kvm_gmem *g = gmem_new(kvm, 64 * PS, 0);
	struct kvm_memory_slot *a = slot_new(0x1000, 64);
	struct fault_arg f = { kvm, a, 0, 0, 0, 0 };
	struct kvm_invalidate_state st;
	pthread_t th;

	use_backing(arg);
	ASSERT_EQ(bind(kvm, a, g, 0), 0);
	ASSERT_EQ(pthread_create(&th, NULL, fault_loop, &f), 0);
	/* Race for real: start once the faults are running. */
	while (__atomic_load_n(&f.ok, __ATOMIC_RELAXED) < 100)
		sched_yield();
	for (int i = 0; i < 2000; i++) {
		int64_t off = (i * 7 % 64) * PS;

		ASSERT_EQ(kvm_gmem_fallocate(g, KEEP | PUNCH, off, 4 * PS), 0);
		if (i % 3 == 0)
			ASSERT_EQ(kvm_gmem_fallocate(g, KEEP, 0, 64 * PS), 0);
	}
	kvm_gmem_put(g); /* release while faults run */
	ASSERT_EQ(pthread_join(th, NULL), 0);
	if (f.other)
		FAIL("unexpected fault result %d (%ld times)", f.other_err, f.other);
	st = inval(kvm);
	ASSERT_EQ(st.in_progress, 0);
	ASSERT_NULL(a->gmem.file);
	free(a);
	kvm_put_kvm(kvm);
}

#define BOTH(fn)                                            \
	do {                                                \
		test_add(#fn "/memfd", fn, "memfd", 0);         \
		test_add(#fn "/secretmem", fn, "secretmem", 0); \
	} while (0)

int main(int argc, char **argv)
{
	BOTH(test_allocate_punch);
	BOTH(test_times);
	BOTH(test_bind_rules);
	BOTH(test_bind_gmem_only);
	BOTH(test_get_pfn);
	BOTH(test_poison);
	BOTH(test_punch_invalidation);
	BOTH(test_release);
	BOTH(test_file_pins_vm);
	BOTH(test_memslot_integration);
	BOTH(test_faults_race_punch_and_release);
	return test_main(argc, argv);
}
