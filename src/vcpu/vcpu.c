/* SPDX-License-Identifier: MIT */
/*
 * vCPU objects: KVM_CREATE_VCPU (spec kvm-vcpu-eventfd-spec.md §3), the
 * mmap()able kvm_run area (§4), and destruction with the VM.
 *
 * References: the vCPU fd (or C API handle) holds one VM reference, as the
 * kernel's vCPU file does; the vCPU itself is owned by the VM and freed by
 * kvm_arch_destroy_vcpus() when the VM goes, never on its own (closing a vCPU fd
 * does not free its id).
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/kvm_arch.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/shmap.h"
#include "lib/sys_raw.h"
#include "vcpu/irqchip_internal.h"
#include "vcpu/x86/smm.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86_run.h"

/* ---- the VM-wide coalesced-MMIO page ---------------------------------- */

static struct kvm_vcpu_shared *vcpu_shared_create(void)
{
	struct kvm_vcpu_shared *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->refs = 1;
	/* Coalesced writes land here (coalesced_mmio.c); the VMM maps it too. */
	s->ring = gm_shmap_create("kvm-coalesced-mmio", 4096, 4096);
	if (!s->ring) {
		free(s);
		return NULL;
	}
	return s;
}

/* Context: kvm->lock held, or VM destruction (no other user). */
static void vcpu_shared_put(struct kvm_vcpu_shared *s)
{
	if (s && --s->refs == 0) {
		gm_raw_munmap(s->ring, 4096);
		free(s);
	}
}

/* ---- allocation -------------------------------------------------------- */

/* The x86 reset state (kvm_vcpu_reset) of a vCPU created without CPUID. */
static void vcpu_reset_state(struct kvm_vcpu *v)
{
	struct kvm_segment data = { .limit = 0xffff, .type = 3, .present = 1, .s = 1 };

	memset(&v->regs, 0, sizeof(v->regs));
	v->regs.rip = 0xfff0;
	v->regs.rflags = 0x2;
	v->regs.rdx = 0x600; /* CPUID.1:EAX of the reset processor */

	memset(&v->sregs, 0, sizeof(v->sregs));
	v->sregs.cs = data;
	v->sregs.cs.selector = 0xf000;
	v->sregs.cs.base = 0xffff0000;
	v->sregs.cs.type = 0xb;
	v->sregs.ds = v->sregs.es = v->sregs.fs = v->sregs.gs = v->sregs.ss = data;
	v->sregs.tr = (struct kvm_segment){ .limit = 0xffff, .type = 0xb, .present = 1 };
	v->sregs.ldt = (struct kvm_segment){ .limit = 0xffff, .type = 2, .present = 1 };
	v->sregs.gdt.limit = 0xffff;
	v->sregs.idt.limit = 0xffff;
	v->sregs.cr0 = 0x60000010; /* ET | NW | CD */
	/* xAPIC enabled at the default base; BSP flag for the boot vCPU. */
	v->sregs.apic_base = 0xfee00000ULL | 0x800 |
			     (v->vcpu_id == READ_ONCE(v->kvm->bsp_vcpu_id) ? 0x100 : 0);
	v->mp_state = KVM_MP_STATE_RUNNABLE;
	v->arch.smbase = X86_SMBASE_RESET;
}

static int vcpu_init_run_area(struct kvm_vcpu *v)
{
	/*
	 * One page past the file: the source of the VMM's pages that the
	 * kernel has nothing for (they SIGBUS on touch, as its fault handler).
	 */
	v->run = gm_shmap_create("kvm-vcpu", KVM_VCPU_MMAP_SIZE, VCPU_RUN_MAP_LEN);
	return v->run ? 0 : -ENOMEM; /* wake_fd comes with the guest thread: fds are scarce */
}

static void vcpu_free(struct kvm_vcpu *v)
{
	kvm_guest_thread_stop(v);
	kvm_x86_vcpu_destroy(v);
	if (v->run)
		gm_raw_munmap(v->run, VCPU_RUN_MAP_LEN);
	gm_fd_close(v->wake_fd);
	kvm_vcpu_sigfd_put(v->sigfd);
	vcpu_shared_put(v->shared);
	kvm_dirty_ring_free(&v->dirty_ring);
	free(v->cpuid);
	kvm_vcpu_arch_free(v);
	pthread_cond_destroy(&v->hand_cv);
	pthread_mutex_destroy(&v->hand_lock);
	pthread_mutex_destroy(&v->mutex);
	free(v);
}

static int vcpu_alloc(struct kvm *kvm, uint32_t id, struct kvm_vcpu **out)
{
	struct kvm_vcpu *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->kvm = kvm;
	v->vcpu_id = id;
	v->wake_fd = -1;
	v->guest.vcpu = v;
	v->state = GUEST_NOT_STARTED;
	gm_check_pthread(pthread_mutex_init(&v->mutex, NULL));
	gm_check_pthread(pthread_mutex_init(&v->hand_lock, NULL));
	gm_check_pthread(pthread_cond_init(&v->hand_cv, NULL));
	vcpu_reset_state(v);
	r = kvm_vcpu_arch_init(v);
	if (!r)
		r = vcpu_init_run_area(v);
	/* The ring size is fixed: this vCPU is already counted in created_vcpus. */
	if (!r)
		r = kvm_dirty_ring_alloc(kvm, &v->dirty_ring);
	if (r) {
		vcpu_free(v);
		return r;
	}
	*out = v;
	return 0;
}

/* ---- lookup ------------------------------------------------------------ */

/* Number of published vCPUs (they fill kvm->vcpus from 0).  kvm->lock held. */
static uint32_t kvm_online_vcpus(struct kvm *kvm)
{
	uint32_t n = 0;

	lockdep_assert_held(&kvm->lock);
	while (kvm->vcpus && n < KVM_MAX_VCPUS && kvm->vcpus[n])
		n++;
	return n;
}

static struct kvm_vcpu *kvm_find_vcpu_locked(struct kvm *kvm, uint32_t id)
{
	uint32_t n = kvm_online_vcpus(kvm);

	for (uint32_t i = 0; i < n; i++)
		if (kvm->vcpus[i]->vcpu_id == id)
			return kvm->vcpus[i];
	return NULL;
}

struct kvm_vcpu *kvm_get_vcpu_by_id(struct kvm *kvm, uint32_t id)
{
	struct kvm_vcpu *v;

	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	v = kvm_find_vcpu_locked(kvm, id);
	gm_mutex_unlock(&kvm->lock);
	return v;
}

/* ---- KVM_CREATE_VCPU ---------------------------------------------------- */

/* Checks 2 and 3 of §3.1 and the reservation.  Context: kvm->lock held. */
static int kvm_vcpu_precreate(struct kvm *kvm, uint32_t id)
{
	lockdep_assert_held(&kvm->lock);
	if (kvm->created_vcpus >= KVM_MAX_VCPUS)
		return -EINVAL;
	/* x86: the id limit is latched by the first creation. */
	if (!kvm->max_vcpu_ids)
		kvm->max_vcpu_ids = KVM_MAX_VCPU_IDS;
	if (id >= kvm->max_vcpu_ids)
		return -EINVAL;
	kvm->created_vcpus++;
	return 0;
}

/*
 * Checks 5 and 6, then the fd and publication.  On failure after the VM
 * reference for the fd was taken, *put_ref tells the caller to drop it
 * (outside kvm->lock).  Context: kvm->lock held.
 */
static int kvm_vcpu_publish(struct kvm *kvm, struct kvm_vcpu *v, kvm_vcpu_install_fn install,
			    void *ctx, bool *put_ref)
{
	int r;

	lockdep_assert_held(&kvm->lock);
	if (kvm_find_vcpu_locked(kvm, v->vcpu_id))
		return -EEXIST;
	if (!kvm->vcpus) {
		kvm->vcpus = calloc(KVM_MAX_VCPUS, sizeof(*kvm->vcpus));
		if (!kvm->vcpus)
			return -ENOMEM;
	}
	v->vcpu_idx = kvm_online_vcpus(kvm);
	if (v->vcpu_idx)
		(v->shared = kvm->vcpus[0]->shared)->refs++;
	else if (!(v->shared = vcpu_shared_create()))
		return -ENOMEM;
	kvm_get_kvm(kvm); /* for the fd or handle that install makes */
	r = install(v, ctx);
	if (r < 0) {
		*put_ref = true;
		return r;
	}
	/* Release: a reader that finds the pointer sees a built vCPU. */
	smp_store_release(&kvm->vcpus[v->vcpu_idx], v);
	return r;
}

int kvm_vm_ioctl_create_vcpu(struct kvm *kvm, unsigned long arg, kvm_vcpu_install_fn install,
			     void *ctx)
{
	uint32_t id = (uint32_t)arg; /* 6.8 takes a u32: the upper half is dropped */
	struct kvm_vcpu *v = NULL;
	bool put_ref = false;
	int r;

	/* 6.12 takes the whole unsigned long and refuses what does not fit. */
	if (kvm->cfg.profile >= GM_PROFILE_LINUX_6_12 && arg >= KVM_MAX_VCPU_IDS)
		return -EINVAL;
	if (id >= KVM_MAX_VCPU_IDS)
		return -EINVAL;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	r = kvm_vcpu_precreate(kvm, id);
	gm_mutex_unlock(&kvm->lock);
	if (r)
		return r;

	/* Built outside the lock; the id is checked only afterwards (§3.1). */
	r = vcpu_alloc(kvm, id, &v);
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	if (!r)
		r = kvm_vcpu_publish(kvm, v, install, ctx, &put_ref);
	if (r < 0) {
		kvm->created_vcpus--;
		if (v) {
			/* shared->refs is protected by kvm->lock. */
			vcpu_shared_put(v->shared);
			v->shared = NULL;
		}
	}
	gm_mutex_unlock(&kvm->lock);
	/*
	 * Its LAPIC model now, so that an IPI from a running vCPU (which
	 * cannot take kvm->lock under its vcpu->mutex) reaches it.
	 */
	if (r >= 0 && irqchip_in_kernel(kvm))
		kvm_irq_sync_vcpus(smp_load_acquire(&kvm->eventfds));
	if (r < 0 && v) {
		/* Never published: nobody else can see it. */
		vcpu_free(v);
	}
	if (put_ref)
		kvm_put_kvm(kvm); /* the caller's own reference keeps the VM */
	return r;
}

void kvm_vcpu_release(struct kvm_vcpu *vcpu)
{
	kvm_put_kvm(vcpu->kvm);
}

/* VM destruction (hook called by kvm_destroy_vm): no fd, no handle left. */
void kvm_arch_destroy_vcpus(struct kvm *kvm)
{
	uint32_t n;

	/* Uncontended (no other user), but kvm->vcpus is kvm->lock's. */
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	n = kvm_online_vcpus(kvm);
	gm_mutex_unlock(&kvm->lock);

	for (uint32_t i = 0; i < n; i++) {
		vcpu_free(kvm->vcpus[i]);
		kvm->vcpus[i] = NULL;
	}
	/* kvm->vcpus itself is freed by kvm_destroy_vm(). */
}

/* ---- KVM_RESET_DIRTY_RINGS ---------------------------------------------- */

static struct kvm_dirty_ring *vcpu_dirty_ring(struct kvm *kvm, uint32_t idx)
{
	/* Published with release by kvm_vcpu_publish(); vCPUs live as long as the VM. */
	return &smp_load_acquire(&kvm->vcpus[idx])->dirty_ring;
}

int kvm_vm_ioctl_reset_dirty_rings(struct kvm *kvm)
{
	uint32_t n;

	/* The vCPUs online now (kvm->lock is outside slots_lock). */
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	n = kvm_online_vcpus(kvm);
	gm_mutex_unlock(&kvm->lock);
	return kvm_vm_reset_dirty_rings(kvm, vcpu_dirty_ring, n);
}

/* ---- mmap of the vCPU fd (§4.2) ----------------------------------------- */

/* A page of the vCPU's dirty ring (kvm_page_in_dirty_ring()). */
static bool page_in_dirty_ring(struct kvm_vcpu *vcpu, uint64_t pgoff)
{
	uint64_t n = READ_ONCE(vcpu->kvm->dirty_ring_size) / 4096;

	return pgoff >= KVM_DIRTY_LOG_PAGE_OFFSET && pgoff < KVM_DIRTY_LOG_PAGE_OFFSET + n;
}

/* Alias the ring's pages of [pgoff, pgoff + npages) at @p's matching pages. */
static int map_dirty_ring(struct kvm_vcpu *vcpu, char *p, uint64_t pgoff, uint64_t npages)
{
	uint64_t first = GM_MAX(pgoff, (uint64_t)KVM_DIRTY_LOG_PAGE_OFFSET);
	uint64_t end = GM_MIN(pgoff + npages, KVM_DIRTY_LOG_PAGE_OFFSET +
						     vcpu->dirty_ring.size * 16ULL / 4096);

	if (!vcpu->dirty_ring.size || first >= end)
		return 0;
	return gm_shmap_alias(p + (first - pgoff) * 4096,
			      (char *)vcpu->dirty_ring.gfns + (first - KVM_DIRTY_LOG_PAGE_OFFSET) * 4096,
			      (end - first) * 4096);
}

/*
 * The VMM's mapping is an alias of ours (lib/shmap.h), so no descriptor of
 * the pages sits in its table: a placeholder takes the address the VMM
 * asked for (MAP_FIXED, MAP_FIXED_NOREPLACE and ENOMEM as mmap gives
 * them), the run pages (and, past the file's end, pages that SIGBUS) go
 * over it, then the VM's coalesced-MMIO page and the dirty ring.  Unlike
 * the kernel's, a MAP_PRIVATE mapping is shared (no copy on write).
 * MAP_LOCKED and MAP_POPULATE are applied to the result.
 */
void *kvm_vcpu_mmap(struct kvm_vcpu *vcpu, void *addr, size_t len, int prot, int flags,
		    off_t offset)
{
	uint64_t pgoff = (uint64_t)offset >> 12, npages = (len + 4095) >> 12;
	int keep = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_32BIT);
	char *p, *src;
	int e;

	/* The ring only shared and not executable, judged by its ends as KVM. */
	if (offset >= 0 && npages &&
	    (page_in_dirty_ring(vcpu, pgoff) || page_in_dirty_ring(vcpu, pgoff + npages - 1)) &&
	    ((prot & PROT_EXEC) ||
	     ((flags & MAP_TYPE) != MAP_SHARED && (flags & MAP_TYPE) != MAP_SHARED_VALIDATE))) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	if (offset < 0 || pgoff + npages < pgoff) { /* do_mmap()'s pgoff overflow */
		errno = EOVERFLOW;
		return MAP_FAILED;
	}
	p = gm_raw_mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | keep,
			-1, 0);
	if (p == MAP_FAILED)
		return p;
	/* Pages from the file's end on all SIGBUS: start past it if @pgoff is. */
	src = (char *)vcpu->run + GM_MIN(pgoff, (uint64_t)KVM_VCPU_MMAP_PAGES) * 4096;
	if (gm_shmap_alias(p, src, npages * 4096) || map_dirty_ring(vcpu, p, pgoff, npages))
		goto fail;
	/* Page 2 is the VM's coalesced-MMIO ring: one page for all vCPUs. */
	if (pgoff <= KVM_VCPU_COALESCED_PGOFF && KVM_VCPU_COALESCED_PGOFF < pgoff + npages &&
	    gm_shmap_alias(p + (KVM_VCPU_COALESCED_PGOFF - pgoff) * 4096, vcpu->shared->ring, 4096))
		goto fail;
	if (prot != (PROT_READ | PROT_WRITE) && gm_raw_mprotect(p, len, prot))
		goto fail;
	/*
	 * MAP_LOCKED as do_mmap() answers it: EPERM without the right to
	 * lock, EAGAIN past RLIMIT_MEMLOCK (mlock's ENOMEM).  MAP_POPULATE
	 * and the locked pages' population are best effort, as the kernel's.
	 */
	if ((flags & MAP_LOCKED) && syscall(SYS_mlock2, p, len, 0)) {
		if (errno == ENOMEM)
			errno = EAGAIN;
		goto fail;
	}
	if ((flags & MAP_POPULATE) && (prot & PROT_READ))
		(void)gm_raw_madvise(p, len, (prot & PROT_WRITE) ? MADV_POPULATE_WRITE
								 : MADV_POPULATE_READ);
	return p;
fail:
	e = errno;
	gm_raw_munmap(p, len);
	errno = e;
	return MAP_FAILED;
}

/* ---- handoff spinning ----------------------------------------------------------- */

uint64_t kvm_vcpu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* -1: not computed yet.  Benign race: every thread computes the same. */
static int64_t gm_vcpu_spin_ns = -1;

uint64_t kvm_vcpu_spin_ns(void)
{
	int64_t ns = READ_ONCE(gm_vcpu_spin_ns);

	if (unlikely(ns < 0)) {
		const char *e = getenv("GUESTMEM_VCPU_SPIN_US");

		cpu_set_t cpus;

		/*
		 * Off by default: when CPUs are oversubscribed (CI, several
		 * vCPUs per core) a spinning thread only delays the one it
		 * waits for.  On an idle multi-core host it saves the two
		 * cross-CPU wake-ups of an exit round trip.
		 */
		ns = e && *e ? atoll(e) * 1000 : 0;
		if (ns < 0 || sched_getaffinity(0, sizeof(cpus), &cpus) || CPU_COUNT(&cpus) < 2)
			ns = 0;
		WRITE_ONCE(gm_vcpu_spin_ns, ns);
	}
	return (uint64_t)ns;
}

/* ---- stats --------------------------------------------------------------- */

static void stat_add(uint64_t *sum, const uint64_t *c)
{
	*sum += READ_ONCE(*c);
}

void kvm_vcpu_stats_sum(struct kvm *kvm, struct kvm_vcpu_stat *sum)
{
	uint32_t n;

	memset(sum, 0, sizeof(*sum));
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	n = kvm_online_vcpus(kvm);
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_vcpu_stat *s = &kvm->vcpus[i]->stat;

		stat_add(&sum->fault.faults, &s->fault.faults);
		stat_add(&sum->fault.retries, &s->fault.retries);
		stat_add(&sum->fault.lock_acq, &s->fault.lock_acq);
		stat_add(&sum->fault.memory_fault_exits, &s->fault.memory_fault_exits);
		stat_add(&sum->fault.huge_maps, &s->fault.huge_maps);
		stat_add(&sum->accesses, &s->accesses);
		stat_add(&sum->runs, &s->runs);
		stat_add(&sum->signal_exits, &s->signal_exits);
		for (int x = 0; x < KVM_VCPU_NR_EXIT_STATS; x++)
			stat_add(&sum->exits[x], &s->exits[x]);
	}
	gm_mutex_unlock(&kvm->lock);
}
