/* SPDX-License-Identifier: MIT */
/*
 * Software vCPUs (spec kvm-vcpu-eventfd-spec.md §3-§6): creation, the
 * kvm_run area, KVM_RUN, registers, and the guest thread that runs a
 * guest's C code.
 *
 * Execution model.  Each vCPU has a guest thread, started by the first
 * KVM_RUN, that runs guestmem_guest_main() (or the C API's function).
 * KVM_RUN hands control to it and waits; when the guest needs the VMM (an
 * exit) it writes the exit into kvm_run and parks, and KVM_RUN returns.  So
 * exactly one of the two runs at a time: the guest thread between a resume
 * and its next park, the VMM otherwise.  Whoever runs owns `regs`, the
 * kvm_run area and the pending-completion state; the handoff (hand_lock)
 * orders every access of one side before the other side's.
 *
 * Locks: docs/locking.md lists every lock, what it protects and the order.
 * The guest thread holds none of them while it runs guest code; it takes
 * RCU and mmu_lock (read) inside the fault path only, and never parks
 * inside an RCU read-side section.
 */
#ifndef GM_VCPU_VCPU_H
#define GM_VCPU_VCPU_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <guestmem/guest.h>
#include <guestmem/kvm.h>

#include "core/kvm_host.h"
#include "mmu/fault.h"
#include "vcpu/irqchip.h" /* the interrupt window of the stop point */
#include "vcpu/x86.h"

#define KVM_VCPU_MMAP_PAGES 3
#define KVM_VCPU_MMAP_SIZE (KVM_VCPU_MMAP_PAGES * 4096)
#define KVM_PIO_DATA_OFFSET 4096 /* KVM_PIO_PAGE_OFFSET * PAGE_SIZE */
#define KVM_VCPU_COALESCED_PGOFF 2
/* Our mapping of the run memfd: its pages and one past its end. */
#define VCPU_RUN_MAP_LEN ((KVM_VCPU_MMAP_PAGES + 1) * 4096)
#define KVM_VCPU_NR_EXIT_STATS 40 /* exit reasons 0..39 */
#define KVM_MAX_CPUID_ENTRIES 256

/* What the next KVM_RUN must complete before resuming the guest (§5.2 10). */
enum kvm_vcpu_pending {
	VCPU_PENDING_NONE,
	VCPU_PENDING_PIO_IN,	/* copy the data page into RAX, advance RIP */
	VCPU_PENDING_PIO_OUT,	/* advance RIP */
	VCPU_PENDING_MMIO_READ, /* copy mmio.data to the guest's load */
	VCPU_PENDING_MMIO_WRITE,
	VCPU_PENDING_HYPERCALL, /* hypercall.ret into RAX, advance RIP */
};

enum kvm_guest_state {
	GUEST_NOT_STARTED,
	GUEST_IN,   /* the guest thread runs */
	GUEST_OUT,  /* parked at an exit or a stop point; the VMM runs */
	GUEST_DONE, /* guestmem_guest_main returned (or no guest): shutdown */
};

struct kvm_vcpu_stat {
	struct kvm_fault_stat fault; /* written by the guest thread */
	uint64_t accesses;	     /* accessor pieces that hit, guest thread */
	uint64_t runs;		     /* KVM_RUN calls reaching the run loop */
	uint64_t exits[KVM_VCPU_NR_EXIT_STATS]; /* by exit_reason, VMM side */
	uint64_t signal_exits;
};

/* The handle guest code sees (<guestmem/guest.h>), embedded in the vCPU. */
struct guestmem_guest {
	struct kvm_vcpu *vcpu;
};

/* The VM-wide coalesced-MMIO page, shared by the vCPUs of one VM. */
struct kvm_x86_vcpu;

struct kvm_vcpu_shared {
	long refs; /* one per vCPU; vCPUs are destroyed together, under no lock */
	struct kvm_coalesced_mmio_ring *ring; /* a one-page memfd (lib/shmap.h) */
};

struct kvm_sigfd;

struct kvm_vcpu {
	struct kvm *kvm; /* no reference: the vCPU lives as long as the VM */
	uint32_t vcpu_id;
	uint32_t vcpu_idx; /* creation order: index in kvm->vcpus */
	pthread_mutex_t mutex;

	/* The mmap()able area is @run: a memfd of 3 pages (lib/shmap.h). */
	struct kvm_run *run; /* our mapping of pages 0 and 1 */
	struct kvm_vcpu_shared *shared;

	/* Architectural state (owned as described at the top). */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint32_t mp_state;
	struct kvm_cpuid_entry2 *cpuid;
	uint32_t cpuid_nent;
	bool has_run; /* KVM_RUN reached the guest once: CPUID is frozen */
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_arch arch; /* events, FPU/XSAVE, MSRs, LAPIC... (x86.h) */
	bool sigmask_active;
	sigset_t sigmask; /* KVM_SET_SIGNAL_MASK: the mask during KVM_RUN */

	/* The exit the guest produced last, to complete on re-entry. */
	enum kvm_vcpu_pending pending;
	uint8_t pending_size;
	uint64_t pending_rip;
	uint64_t mmio_data;

	/* The guest program. */
	guestmem_guest_fn guest_fn;
	void *guest_opaque;
	struct guestmem_guest guest;
	pthread_t thread;

	/* Handoff between KVM_RUN and the guest thread, under hand_lock. */
	pthread_mutex_t hand_lock;
	pthread_cond_t hand_cv; /* guest waits for GUEST_IN or dying */
	enum kvm_guest_state state;
	int run_ret;	/* KVM_RUN's result for the exit just produced */
	bool exited;	/* parked at an exit (false: at a stop point) */
	bool dying;	/* VM destruction: the parked guest thread ends */
	int wake_fd;	/* eventfd: the guest parked; KVM_RUN polls it */
	/* The signalfd of the signals KVM_RUN's mask lets through, shared with
	 * the vCPUs whose masks agree (sigwait.c); under vcpu->mutex. */
	struct kvm_sigfd *sigfd;
	bool waiter_sleeping; /* KVM_RUN is (about to be) in ppoll: write wake_fd */
	bool kick;	/* READ_ONCE in every accessor: stop at the next one */

	/* The x86 backend (x86_run.h), set at the first KVM_RUN of a vCPU
	 * without a C guest; NULL for C guests.  Owned by KVM_RUN (mutex). */
	struct kvm_x86_vcpu *x86;

	struct kvm_vcpu_stat stat;
	/* vcpu->last_used_slot: used by the guest thread's faults only. */
	struct kvm_memslot_cache last_used_slot;
	/* KVM_CAP_DIRTY_LOG_RING (src/core/dirty_ring.c); size 0 without. */
	struct kvm_dirty_ring dirty_ring;
};

/* KVM_RESET_DIRTY_RINGS: entries reset, -EINVAL without rings (vcpu.c). */
int kvm_vm_ioctl_reset_dirty_rings(struct kvm *kvm);

static inline struct kvm_vcpu *guest_to_vcpu(struct guestmem_guest *g)
{
	return g->vcpu;
}

/* ---- creation and state (vcpu.c) -------------------------------------- */

/*
 * Called under kvm->lock once the vCPU is fully built and its id is known
 * to be free, to make its fd; returns the value for KVM_CREATE_VCPU (the
 * fd, or 0) or a negative errno, which undoes the creation.
 */
typedef int (*kvm_vcpu_install_fn)(struct kvm_vcpu *vcpu, void *ctx);

/*
 * KVM_CREATE_VCPU, the ordered checks of spec §3.1.  On success the VM has
 * gained one reference, which belongs to whatever @install made (the fd or
 * C handle); kvm_vcpu_release() drops it.
 * Context: no VM lock held.  The caller already checked -EIO.
 */
int kvm_vm_ioctl_create_vcpu(struct kvm *kvm, unsigned long arg, kvm_vcpu_install_fn install,
			     void *ctx);
/* The fd or handle made by @install went away: drop its VM reference. */
void kvm_vcpu_release(struct kvm_vcpu *vcpu);
/* The vCPU with @id, or NULL.  Context: any (takes kvm->lock). */
struct kvm_vcpu *kvm_get_vcpu_by_id(struct kvm *kvm, uint32_t id);

/* mmap() of the vCPU fd (§4.2).  Returns the mapping or MAP_FAILED/errno. */
void *kvm_vcpu_mmap(struct kvm_vcpu *vcpu, void *addr, size_t len, int prot, int flags,
		    off_t offset);

/* Register state.  Context: vcpu->mutex held. */
void kvm_vcpu_get_regs(struct kvm_vcpu *vcpu, struct kvm_regs *regs);
void kvm_vcpu_set_regs(struct kvm_vcpu *vcpu, const struct kvm_regs *regs);
void kvm_vcpu_get_sregs(struct kvm_vcpu *vcpu, struct kvm_sregs *sregs);
int kvm_vcpu_set_sregs(struct kvm_vcpu *vcpu, const struct kvm_sregs *sregs);
int kvm_vcpu_set_mp_state(struct kvm_vcpu *vcpu, uint32_t mp_state);
/* KVM_SET_CPUID2 entries (nent already checked <= 256). */
int kvm_vcpu_set_cpuid(struct kvm_vcpu *vcpu, const struct kvm_cpuid_entry2 *e, uint32_t nent);
/* KVM_SET_SIGNAL_MASK: @set NULL clears; @len is the user's len field. */
int kvm_vcpu_set_sigmask(struct kvm_vcpu *vcpu, const void *set, uint32_t len);

/* ---- KVM_RUN (run.c) -------------------------------------------------- */

/*
 * KVM_RUN (§5.2).  Returns 0 or a negative errno (-EINTR, -EFAULT with a
 * memory-fault exit, ...).  Context: vcpu->mutex held, same process.
 */
int kvm_arch_vcpu_ioctl_run(struct kvm_vcpu *vcpu, unsigned long arg);
/*
 * The signals @run_mask lets through, as a signalfd that polls readable
 * while one is pending, without delivering it (sigwait.c); -errno if none
 * can be made.  kvm_vcpu_signal_pending() polls it for @timeout_ms.
 * Context: vcpu->mutex held, every signal blocked (KVM_RUN).
 */
int kvm_vcpu_sigfd(struct kvm_vcpu *v, const sigset_t *run_mask);
/* Drop a vCPU's reference to its signalfd (NULL: none). */
void kvm_vcpu_sigfd_put(struct kvm_sigfd *s);
bool kvm_vcpu_signal_pending(struct kvm_vcpu *v, const sigset_t *run_mask, int timeout_ms);
/* A signal ends KVM_RUN: KVM_EXIT_INTR, counted; returns -EINTR for KVM_RUN. */
int kvm_vcpu_exit_intr(struct kvm_vcpu *v);
/* Set the guest program (C API); before the first KVM_RUN only. */
int kvm_vcpu_set_guest(struct kvm_vcpu *vcpu, guestmem_guest_fn fn, void *opaque);

/* ---- hypercalls (guest_io.c) ------------------------------------------ */

/*
 * The kernel's answer to hypercall @nr with @args (RBX, RCX, RDX), after
 * the CPL check, for both backends: KVM_HC_VAPIC_POLL_IRQ is 0;
 * KVM_HC_MAP_GPA_RANGE, when the VMM enabled its exit and the
 * guest-visible checks pass, returns true with KVM_EXIT_HYPERCALL in
 * kvm_run; everything else is answered in *@ret (-KVM_ENOSYS,
 * -KVM_EINVAL) and returns false.  Context: vcpu->mutex or the guest thread.
 */
bool kvm_hypercall(struct kvm_vcpu *v, uint64_t nr, const uint64_t args[3], bool longmode,
		   uint64_t *ret);

/* ---- the guest thread (guest.c) ------------------------------------- */

/* Start the guest thread; state must be GUEST_IN.  Returns 0 or -errno. */
int kvm_guest_thread_start(struct kvm_vcpu *vcpu);
/*
 * Hand the vCPU to the VMM and wait to be resumed.  @exited: an exit was
 * written into kvm_run and KVM_RUN returns @ret; otherwise this is a stop
 * point for a signal.  Context: guest thread, no lock, no RCU section.
 */
void kvm_guest_park(struct kvm_vcpu *v, bool exited, int ret);

/* Every accessor starts here: a signal interrupted KVM_RUN, stop. */
static inline void kvm_guest_stop_point(struct kvm_vcpu *v)
{
	/* Relaxed: pairs with the WRITE_ONCE in run.c's wait_for_guest(). */
	if (unlikely(READ_ONCE(v->kick)))
		kvm_guest_park(v, false, 0);
	/* The interrupt window (guest_irq.c), for VMs with eventfd state. */
	if (READ_ONCE(v->kvm->eventfds))
		kvm_guest_irq_window(v);
}

/* End a parked or finished guest thread and join it (VM destruction). */
void kvm_guest_thread_stop(struct kvm_vcpu *vcpu);
/* The entry point for `guestmem exec`: GUESTMEM_GUEST's guestmem_guest_main. */
guestmem_guest_fn kvm_guest_default_fn(void);

/*
 * The handoff may spin this long before it sleeps: GUESTMEM_VCPU_SPIN_US,
 * default 0 (see vcpu.c); always 0 with a single usable CPU.
 */
uint64_t kvm_vcpu_spin_ns(void);

/* Spin while !@cond for at most kvm_vcpu_spin_ns().  Returns @cond's last value. */
#define kvm_vcpu_spin_until(cond)                                                  \
	({                                                                         \
		uint64_t __budget = kvm_vcpu_spin_ns(), __start = 0;               \
		bool __done = (cond);                                              \
		for (unsigned __i = 1; !__done && __budget; __i++) {               \
			__builtin_ia32_pause();                                    \
			__done = (cond);                                           \
			if (__done || (__i & 63))                                  \
				continue;                                          \
			if (!__start)                                              \
				__start = kvm_vcpu_now_ns();                       \
			else if (kvm_vcpu_now_ns() - __start > __budget)           \
				break;                                             \
		}                                                                  \
		__done;                                                            \
	})
uint64_t kvm_vcpu_now_ns(void);

/* ---- stats --------------------------------------------------------------- */

/* Sum of every vCPU's counters.  Context: any (takes kvm->lock). */
void kvm_vcpu_stats_sum(struct kvm *kvm, struct kvm_vcpu_stat *sum);

#endif
