/* SPDX-License-Identifier: MIT */
/*
 * guestmem's core object model: VM, memslots, memory attributes and the MMU
 * invalidation state.  Names follow the kernel's so that a reader who knows
 * KVM finds things where they expect them (spec: kvm-gmem-spec.md §1, §4).
 *
 * Every function returns 0 or a negative errno unless it says otherwise.
 * The uAPI layer (src/uapi) turns those into -1/errno.
 *
 * Locks: docs/locking.md lists every lock, what it protects and the order.
 *
 * RCU (urcu-memb) protects: the memslot sets, the attribute map, guest_memfd
 * binding maps, stage-2 page-table pages.  vCPU memory accesses are read-side
 * sections; a grace period is the remote TLB flush.
 */
#ifndef GM_CORE_KVM_HOST_H
#define GM_CORE_KVM_HOST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <guestmem/kvm.h>

#include "../lib/compiler.h"
#include "../lib/rangemap.h"
#include "config.h"

typedef uint64_t gfn_t;
typedef uint64_t gpa_t;

#define KVM_MEM_SLOTS_NUM 32767		/* SHRT_MAX */
#define KVM_INTERNAL_MEM_SLOTS 3	/* x86 */
#define KVM_USER_MEM_SLOTS (KVM_MEM_SLOTS_NUM - KVM_INTERNAL_MEM_SLOTS)
#define KVM_MEM_MAX_NR_PAGES ((1ULL << 31) - 1)
#define KVM_MAX_NR_ADDRESS_SPACES 2
#define KVM_MEMSLOT_INVALID (1U << 16)	/* kernel-internal flag bit */
#define KVM_MEMSLOT_GMEM_ONLY (1U << 17) /* 6.18: MMAP-capable guest_memfd */
#define INVALID_GFN (~0ULL)

#define KVM_API_VERSION_VALUE 12
#define KVM_MAX_VCPUS 1024
#define KVM_MAX_VCPU_IDS (4 * KVM_MAX_VCPUS)
/* Machine-check banks a vCPU offers (KVM_CAP_MCE, KVM_X86_SETUP_MCE). */
#define KVM_MAX_MCE_BANKS 32

/* Huge-page levels tracked per memslot (x86): 2 MiB and 1 GiB. */
#define KVM_NR_LPAGE_LEVELS 2
#define KVM_LPAGE_MIXED_FLAG (1U << 31)
static inline unsigned kvm_lpage_shift(int lvl) /* lvl 0: 2M, 1: 1G */
{
	return 9 * (unsigned)(lvl + 1);
}

struct kvm_gmem;
struct kvm_mmu;
struct kvm_vcpu;
struct kvm_eventfds;
struct kvm_x86_msr_filter;
struct kvm_x86_vm;
struct kvm_coalesced;
struct kvm_shram;

struct kvm_lpage_info {
	uint32_t disallow_lpage; /* count */
	/*
	 * The kernel's KVM_LPAGE_MIXED_FLAG, set and cleared only for the
	 * blocks at the edges of an attribute change (under mmu_lock for
	 * write).  A change covering a whole block leaves it set, so that a
	 * terabyte costs what a page does: a set flag is confirmed against
	 * the attributes (see kvm_lpage_mixed()); a clear one is exact.
	 */
	uint32_t mixed;
};

/*
 * A memslot.  Immutable once visible to readers, except gmem.file (cleared
 * by guest_memfd release) and the lpage mixed flags (changed under
 * mmu_lock for write, read under mmu_lock).  An update installs a new
 * struct; the old one is freed after a grace period.
 */
struct kvm_memory_slot {
	gfn_t base_gfn;
	uint64_t npages;
	uint64_t userspace_addr;
	uint32_t flags;
	uint16_t id;
	uint16_t as_id;
	struct {
		/* Weak: no file reference; RCU-published, see kvm_gmem_bind(). */
		struct kvm_gmem *file;
		uint64_t pgoff;
	} gmem;
	struct kvm_lpage_info *lpage_info[KVM_NR_LPAGE_LEVELS];
	/*
	 * KVM_MEM_LOG_DIRTY_PAGES: one bit per page, set atomically by write
	 * faults (under mmu_lock for read), harvested under mmu_lock for
	 * write.  Shared by the copies a FLAGS_ONLY or MOVE change makes;
	 * freed with the last slot that has it (src/core/dirty_log.c).
	 */
	unsigned long *dirty_bitmap;
	/*
	 * What backs the slot's host range for another process (src/core/
	 * gmemfd.c): a holder set before the slot is visible and never
	 * changed (NULL if it could not be allocated); the record in it is
	 * replaced under gm_shram_lock and read under RCU.
	 */
	struct kvm_shram *shram;
};

static inline bool kvm_slot_dirty_track_enabled(const struct kvm_memory_slot *s)
{
	return s->flags & 1 /* KVM_MEM_LOG_DIRTY_PAGES */;
}

static inline bool kvm_slot_can_be_private(const struct kvm_memory_slot *s)
{
	return s && (s->flags & KVM_MEM_GUEST_MEMFD);
}

/* Size classes of the hva index: npages in [2^c, 2^(c+1)), c <= 30. */
#define KVM_HVA_CLASSES 31

/*
 * One memslot set: a tree by gfn, [base_gfn, base_gfn + npages) -> slot
 * (a rangemap: slots are disjoint, so each is one run), for O(log n)
 * lookup and O(log n) insertion and removal in any order.  Each address
 * space has two (active, inactive), as in the kernel; slot_by_id is the
 * kernel's hash by id (of the active set).
 */
struct kvm_memslots {
	uint64_t generation;
	struct rangemap by_gfn; /* values: struct kvm_memory_slot * */
	/*
	 * The same slots by host address (src/core/memslot_hva.c), for the
	 * mmu notifier: keyed by size class, then start; hva_nr[c] counts
	 * the slots of class c.  Changed with by_gfn, on the inactive set
	 * only.  hva_lost: an update ran out of memory and the index is
	 * empty; readers walk every slot until a later update rebuilds it.
	 */
	struct rangemap by_hva;
	uint32_t hva_nr[KVM_HVA_CLASSES];
	int hva_lost;
};

/*
 * The kernel's vcpu->last_used_slot: the slot a vCPU found last, valid
 * while the active set's generation is @gen.  Used by one thread.
 */
struct kvm_memslot_cache {
	struct kvm_memory_slot *slot;
	uint64_t gen;
};

struct kvm_stat {
	/* Relaxed counters, for the demo and tests. */
	uint64_t invalidations;	  /* begin..end pairs */
	uint64_t attr_updates;	  /* non-no-op KVM_SET_MEMORY_ATTRIBUTES */
	uint64_t zapped_ranges;
	uint64_t remote_flushes;
};

/*
 * A vCPU's dirty ring (src/core/dirty_ring.c), embedded in the vCPU.
 * size is 0 when the VM has no ring.
 */
struct kvm_dirty_gfn;
struct kvm_dirty_ring {
	struct kvm *kvm;
	struct kvm_dirty_gfn *gfns; /* a memfd the VMM maps an alias of */
	uint32_t size;		    /* entries, a power of two */
	uint32_t soft_limit;	    /* size less the reserved entries */
	uint32_t dirty_index;	    /* entries pushed, by the vCPU (atomic) */
	uint32_t reset_index;	    /* entries reset, under slots_lock (atomic) */
};

struct kvm {
	/* Counted references: the VM fd, each guest_memfd file, each vCPU. */
	long users_count;
	unsigned long vm_type;
	pid_t creator_pid; /* stands for kvm->mm: other processes get EIO */
	bool dead;
	/*
	 * Private memory lives only in the VM's guest process (its vCPUs all
	 * run machine code there): guest_memfd storage is created and held
	 * there (gm_backing_init_held()), and this process never maps it.
	 * Set by the uapi layer before the VM is published; fixed after.
	 */
	bool private_held;
	struct gm_config cfg; /* profile and Kconfig, fixed at creation */
	int nr_as;	      /* address spaces this VM may use */

	pthread_mutex_t slots_lock; /* what each protects: docs/locking.md */
	pthread_mutex_t lock;
	pthread_rwlock_t mmu_lock;
	/* Faults blocked on mmu_lock (relaxed): see kvm_mmu_lock_needbreak(). */
	long mmu_lock_waiters;

	/* RCU-published active set per address space (points into __memslots). */
	struct kvm_memslots *memslots[KVM_MAX_NR_ADDRESS_SPACES];
	struct kvm_memslots __memslots[KVM_MAX_NR_ADDRESS_SPACES][2];
	/* Slot by (as, id) in the active set; protected by slots_lock. */
	struct kvm_memory_slot **slot_by_id[KVM_MAX_NR_ADDRESS_SPACES];
	uint64_t nr_memslot_pages; /* over all slots, under slots_lock */

	/* gfn -> attributes; written under slots_lock, read under RCU. */
	struct rangemap mem_attr_array;

	/*
	 * MMU invalidation state (spec §4.4, §4.6).  Written only with
	 * mmu_lock held for write.  Invariant kept by begin/end: whenever a
	 * translation might be changed, either in_progress > 0 with the range
	 * covering it, or seq has moved past any snapshot taken before.  end
	 * bumps seq with release semantics *before* decrementing in_progress;
	 * faults snapshot seq with acquire before resolving the page.
	 */
	unsigned long mmu_invalidate_seq;
	long mmu_invalidate_in_progress;
	gfn_t mmu_invalidate_range_start;
	gfn_t mmu_invalidate_range_end;

	/* KVM_CAP_EXIT_HYPERCALL: written under lock, read by vCPUs with READ_ONCE. */
	uint64_t exit_hypercall_mask;
	/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 options; READ_ONCE/WRITE_ONCE. */
	uint64_t manual_dirty_log_protect;
	uint64_t max_gfn;	      /* from host MAXPHYADDR */
	/* KVM_CAP_DIRTY_LOG_RING: bytes per vCPU ring; set once, before any
	 * vCPU, under lock (READ_ONCE elsewhere). */
	uint32_t dirty_ring_size;

	struct kvm_mmu *mmu; /* src/mmu */

	/* vCPUs (src/vcpu), under kvm->lock. */
	struct kvm_vcpu **vcpus;
	uint32_t created_vcpus;
	uint32_t max_vcpu_ids; /* 0 until latched */
	uint32_t bsp_vcpu_id;  /* KVM_SET_BOOT_CPU_ID, before any vCPU */

	struct kvm_eventfds *eventfds; /* src/vcpu/eventfd: ioeventfd/irqfd */

	/* x86 VM settings of issue 9 (src/vcpu/x86.h). */
	struct {
		uint32_t default_tsc_khz;	 /* KVM_SET_TSC_KHZ, READ/WRITE_ONCE; 0: host */
		uint64_t n_requested_mmu_pages;	 /* KVM_SET_NR_MMU_PAGES, slots_lock */
		uint32_t user_space_msr_mask;	 /* KVM_CAP_X86_USER_SPACE_MSR, lock */
		bool exception_payload_enabled;	 /* KVM_CAP_EXCEPTION_PAYLOAD, lock */
		bool triple_fault_event;	 /* KVM_CAP_X86_TRIPLE_FAULT_EVENT, lock */
		/* Issue 9's 6.12 capabilities (src/core/caps.c): written under
		 * lock, read with READ_ONCE by vCPUs. */
		uint64_t disabled_quirks;	 /* KVM_CAP_DISABLE_QUIRKS(2) */
		bool guest_can_read_msr_platform_info; /* KVM_CAP_MSR_PLATFORM_INFO */
		bool exit_on_emulation_error;	 /* KVM_CAP_EXIT_ON_EMULATION_FAILURE */
		/* KVM_CAP_X86_DISABLE_EXITS: KVM_X86_DISABLE_EXITS_* that took. */
		uint32_t disabled_exits;
		bool x2apic_format;		 /* KVM_CAP_X2APIC_API: 32-bit IDs */
		bool x2apic_broadcast_quirk_disabled; /* KVM_CAP_X2APIC_API */
		/* KVM_CAP_X86_APIC_BUS_CYCLES_NS: fixed before the first vCPU. */
		uint64_t apic_bus_cycle_ns;
		/* KVM_SET_CLOCK: kvm-clock minus the base clock (tsc.c), lock;
		 * stored atomically for the vCPUs' lockless reads. */
		int64_t kvmclock_offset;
		/* KVM_X86_SET_MSR_FILTER: replaced under lock, old one freed after
		 * an RCU grace period; readers in an RCU read-side section. */
		struct kvm_x86_msr_filter *msr_filter;
		/* TSC synchronisation (src/vcpu/tsc.c), under its tsc_write_lock. */
		int64_t cur_tsc_offset;
		uint64_t last_tsc_write, last_tsc_nsec;
		uint32_t last_tsc_khz;
		bool user_set_tsc;
		/* Coalesced MMIO/PIO zones (src/vcpu/coalesced_mmio.c): created
		 * under slots_lock, read with an acquire load. */
		struct kvm_coalesced *coalesced;
		/* The x86 backend's guest process and shadow (src/vcpu/x86_run.c):
		 * created under vcpu->mutex of the first x86 KVM_RUN with a
		 * compare-and-swap, freed at VM destruction. */
		struct kvm_x86_vm *x86vm;
	} arch;

	/*
	 * Host-mapping invalidations in flight (mmu notifier start..end).  A
	 * memslot swap waits for zero so that a new slot cannot miss one.
	 * Protected by mn_lock; mn_cond signals the drop to zero.
	 */
	pthread_mutex_t mn_lock;
	pthread_cond_t mn_cond;
	long mn_active_invalidate_count;

	struct kvm *vm_list_next; /* global VM list, under gm_vm_list_lock */

	/* kvm_shared_ram_enable() was called (set once, under slots_lock). */
	int shram_enabled;

	struct kvm_stat stat;
};

/* ---- VM lifetime (src/core/vm.c) ------------------------------------- */

/*
 * KVM_CREATE_VM.  Returns 0 and a VM holding one reference, or -EINVAL for
 * an unsupported type, -ENOMEM.
 */
int kvm_create_vm(unsigned long type, struct kvm **out);
void kvm_get_kvm(struct kvm *kvm);
/* Drop a reference; the last one destroys the VM.  Context: no VM locks. */
void kvm_put_kvm(struct kvm *kvm);

/* Walk every live VM (holding a reference during @fn). */
void kvm_for_each_vm(void (*fn)(struct kvm *kvm, void *ctx), void *ctx);
long kvm_nr_live_vms(void);

/* Check common to every VM-fd ioctl: another process or a dead VM -> -EIO. */
int kvm_vm_ioctl_precheck(struct kvm *kvm);
/*
 * The VM can no longer run (KVM's kvm_vm_dead(): its guest process is
 * gone): every VM and vCPU ioctl fails with EIO from now on.
 */
void kvm_vm_dead(struct kvm *kvm);

static inline bool kvm_arch_has_private_mem(const struct kvm *kvm)
{
	return kvm->vm_type != 0;
}

/* Host XSAVE facts for KVM_CAP_XCRS / KVM_CAP_XSAVE2 (src/vcpu/cpuid.c). */
bool kvm_arch_has_xsave(void);
long kvm_arch_xsave2_size(void);

/* KVM_CHECK_EXTENSION; @kvm NULL for the system scope.  Never fails. */
long kvm_check_extension(const struct gm_config *cfg, struct kvm *kvm, long cap);

/* KVM_ENABLE_CAP on a VM (the caps this subsystem supports). */
int kvm_vm_enable_cap(struct kvm *kvm, uint32_t cap, uint32_t flags, const uint64_t args[4]);

/* The VM defaults of the capabilities above.  Context: VM creation. */
void kvm_caps_init_vm(struct kvm *kvm);
/* A quirk (KVM_X86_QUIRK_*) still in force in @kvm.  Context: any. */
static inline bool kvm_check_has_quirk(struct kvm *kvm, uint64_t quirk)
{
	return !(__atomic_load_n(&kvm->arch.disabled_quirks, __ATOMIC_RELAXED) & quirk);
}

/* ---- memslots (src/core/memslots.c) ---------------------------------- */

/* The result of resolving a region2's guest_memfd fd, done by the caller. */
struct kvm_gmem_ref {
	int err;		/* -EBADF / -EINVAL if the fd was no guest_memfd */
	struct kvm_gmem *gmem;	/* a file reference, owned by the caller */
};

/*
 * KVM_SET_USER_MEMORY_REGION(2), all checks of spec §3.5 in order.  @v2
 * selects the v2 flag rules; @gref is consulted only if the request has
 * KVM_MEM_GUEST_MEMFD.  Context: takes slots_lock.
 */
struct kvm_userspace_memory_region2;
int kvm_set_memory_region(struct kvm *kvm, const struct kvm_userspace_memory_region2 *mem,
			  bool v2, const struct kvm_gmem_ref *gref);

/* Slot lookup.  Context: gm_rcu_read_lock() held (or slots_lock). */
struct kvm_memory_slot *kvm_memslots_find(struct kvm_memslots *slots, gfn_t gfn);
struct kvm_memory_slot *gfn_to_memslot(struct kvm *kvm, int as_id, gfn_t gfn);
struct kvm_memslots *kvm_memslots(struct kvm *kvm, int as_id);
/* The same through a vCPU's last-used-slot cache (may be NULL). */
struct kvm_memory_slot *kvm_cached_gfn_to_memslot(struct kvm *kvm, int as_id,
						  struct kvm_memslot_cache *cache, gfn_t gfn);
/* Number of slots in @slots, and each of them in gfn order (stops on nonzero). */
uint64_t kvm_memslots_nr(struct kvm_memslots *slots);
int kvm_memslots_for_each(struct kvm_memslots *slots,
			  int (*fn)(struct kvm_memory_slot *slot, void *ctx), void *ctx);

/* End (exclusive) of @slot's host range. */
static inline uint64_t kvm_memslot_hva_end(const struct kvm_memory_slot *slot)
{
	return slot->userspace_addr + (slot->npages << GM_PAGE_SHIFT);
}

/* The host address of @gfn's page in @slot (the kernel's __gfn_to_hva_memslot). */
static inline uint64_t kvm_gfn_to_hva_memslot(const struct kvm_memory_slot *slot, gfn_t gfn)
{
	return slot->userspace_addr + ((gfn - slot->base_gfn) << GM_PAGE_SHIFT);
}

/*
 * Each slot of @slots whose host range meets [start, end), once, with that
 * intersection, without a walk over every slot (src/core/memslot_hva.c);
 * stops on a nonzero return.  Context: gm_rcu_read_lock() held (or
 * slots_lock).
 */
typedef int (*kvm_hva_slot_fn)(struct kvm_memory_slot *slot, uint64_t hva_start,
			       uint64_t hva_end, void *ctx);
int kvm_memslots_for_each_in_hva(struct kvm_memslots *slots, uint64_t start, uint64_t end,
				 kvm_hva_slot_fn fn, void *ctx);
/*
 * Keep the hva index of @slots, an inactive set that by_gfn already shows
 * with @old (may be NULL) replaced by @new (may be NULL), in step.  Cannot
 * fail: out of memory, the index is dropped (see hva_lost).  Context:
 * slots_lock held, no reader can reach @slots.
 */
void kvm_memslots_hva_replace(struct kvm_memslots *slots, struct kvm_memory_slot *old,
			      struct kvm_memory_slot *new);
/* Frees the index, not the slots.  Context: no reader left. */
void kvm_memslots_hva_fini(struct kvm_memslots *slots);
/* Tests only: 0 if the index matches the slots of by_gfn, else < 0. */
int kvm_memslots_hva_check(struct kvm_memslots *slots);

/*
 * Iterate slots of every address space intersecting [start, end).
 * Context: slots_lock held.
 */
typedef int (*kvm_slot_fn)(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			   gfn_t end, void *ctx);
int kvm_for_each_slot_in_range(struct kvm *kvm, gfn_t start, gfn_t end, kvm_slot_fn fn,
			       void *ctx);

/* ---- dirty logging (src/core/dirty_log.c) ----------------------------- */

/* Write-protect the pages of @mask (bit i = @first + i).  mmu_lock for write. */
bool kvm_mmu_wrprot_masked(struct kvm *kvm, gfn_t first, uint64_t mask);

/* ---- the dirty ring (src/core/dirty_ring.c) -------------------------- */

/* KVM_CAP_DIRTY_LOG_RING(_ACQ_REL)'s value: the largest ring in bytes. */
long kvm_dirty_ring_max_bytes(void);
/* KVM_ENABLE_CAP of either: -EINVAL, -E2BIG in the kernel's order. */
int kvm_vm_enable_dirty_log_ring(struct kvm *kvm, uint64_t size);
/* A new vCPU's ring (none without the cap): -ENOMEM.  And its end. */
int kvm_dirty_ring_alloc(struct kvm *kvm, struct kvm_dirty_ring *ring);
void kvm_dirty_ring_free(struct kvm_dirty_ring *ring);
/* The ring holds its soft limit: the vCPU must exit DIRTY_RING_FULL. */
bool kvm_dirty_ring_soft_full(struct kvm_dirty_ring *ring);
/*
 * This thread acts for the vCPU owning @ring (NULL: none), as KVM's
 * vcpu_load(); returns the previous one to restore.
 */
struct kvm_dirty_ring *kvm_set_running_dirty_ring(struct kvm_dirty_ring *ring);
/* mark_page_dirty_in_slot()'s ring path: false if this thread has no ring. */
bool kvm_dirty_ring_log(struct kvm_memory_slot *slot, uint64_t rel_gfn);
/*
 * KVM_RESET_DIRTY_RINGS over vCPUs 0..@nr_vcpus-1 (@ring_of gives each
 * ring): the number of entries reset, or -EINVAL without the cap.
 */
int kvm_vm_reset_dirty_rings(struct kvm *kvm,
			     struct kvm_dirty_ring *(*ring_of)(struct kvm *, uint32_t),
			     uint32_t nr_vcpus);

/* Log a write to @gfn of @slot.  Context: RCU or slots_lock; any thread. */
void mark_page_dirty_in_slot(struct kvm_memory_slot *slot, gfn_t gfn);
/* Bytes of a slot's bitmap as user space sees it (64-bit words). */
uint64_t kvm_dirty_bitmap_bytes(const struct kvm_memory_slot *slot);
/*
 * Memslot update hooks.  Prepare gives @new its bitmap: none without
 * logging, @old's if it had one, else a new one (all set with
 * KVM_DIRTY_LOG_INITIALLY_SET).  Commit write-protects @new when logging
 * was just switched on, and frees a bitmap no slot uses any more; abort
 * frees what prepare allocated.  Context: slots_lock held.
 */
int kvm_dirty_log_prepare(struct kvm *kvm, const struct kvm_memory_slot *old,
			  struct kvm_memory_slot *new);
void kvm_dirty_log_commit(struct kvm *kvm, const struct kvm_memory_slot *old,
			  const struct kvm_memory_slot *new);
void kvm_dirty_log_abort(const struct kvm_memory_slot *old, struct kvm_memory_slot *new);
/*
 * Copies between a caller's buffer and ours, supplied by the uAPI layer
 * (0 or -EFAULT): the checks before and after them are the kernel's order.
 */
typedef int (*kvm_copy_fn)(void *dst, const void *src, size_t n);
/*
 * KVM_GET_DIRTY_LOG of memslot @slot (as_id << 16 | id) into the caller's
 * @bitmap through @copy_out, and KVM_CLEAR_DIRTY_LOG with the caller's
 * @bitmap read through @copy_in.  Context: take slots_lock and mmu_lock.
 */
int kvm_vm_ioctl_get_dirty_log(struct kvm *kvm, uint32_t slot, void *bitmap,
			       kvm_copy_fn copy_out);
int kvm_vm_ioctl_clear_dirty_log(struct kvm *kvm, uint32_t slot, uint64_t first_page,
				 uint32_t num_pages, const void *bitmap, kvm_copy_fn copy_in);

/* ---- memory attributes (src/core/attributes.c) ----------------------- */

/* KVM_SET_MEMORY_ATTRIBUTES checks (§3.6) and update (§4.7). */
struct kvm_memory_attributes;
int kvm_vm_ioctl_set_mem_attributes(struct kvm *kvm, const struct kvm_memory_attributes *attrs);
int kvm_vm_set_mem_attributes(struct kvm *kvm, gfn_t start, gfn_t end, uint64_t attributes);
uint64_t kvm_supported_mem_attributes(const struct kvm *kvm);

/* Attributes of @gfn.  Context: RCU read lock or slots_lock. */
uint64_t kvm_get_memory_attributes(struct kvm *kvm, gfn_t gfn);

static inline bool kvm_mem_is_private(struct kvm *kvm, gfn_t gfn)
{
	return kvm->cfg.sw_protected_vm &&
	       (kvm_get_memory_attributes(kvm, gfn) & KVM_MEMORY_ATTRIBUTE_PRIVATE);
}

/* ---- invalidation protocol (src/core/invalidate.c) ------------------- */

/*
 * The kernel's rwlock_needbreak(&kvm->mmu_lock): a fault waits for the
 * lock, so a long writer should yield it (cond_resched_rwlock_write).
 */
static inline bool kvm_mmu_lock_needbreak(struct kvm *kvm)
{
	return __atomic_load_n(&kvm->mmu_lock_waiters, __ATOMIC_RELAXED) != 0;
}

/* All three: Context: mmu_lock held for write. */
void kvm_mmu_invalidate_begin(struct kvm *kvm);
void kvm_mmu_invalidate_range_add(struct kvm *kvm, gfn_t start, gfn_t end);
void kvm_mmu_invalidate_end(struct kvm *kvm);

/*
 * Authoritative retry check.  Context: mmu_lock held (read or write).
 * Returns true if a fault that snapshotted @mmu_seq must retry for @gfn.
 */
bool mmu_invalidate_retry_gfn(struct kvm *kvm, unsigned long mmu_seq, gfn_t gfn);
/* Lockless hint; may be wrong both ways.  Context: any. */
bool mmu_invalidate_retry_gfn_unsafe(struct kvm *kvm, unsigned long mmu_seq, gfn_t gfn);

/* Snapshot for a fault: acquire, pairs with the release in _end(). */
static inline unsigned long kvm_mmu_invalidate_seq_snapshot(struct kvm *kvm)
{
	return smp_load_acquire(&kvm->mmu_invalidate_seq);
}

/* Test-only introspection of the invalidation state. */
struct kvm_invalidate_state {
	unsigned long seq;
	long in_progress;
	gfn_t range_start;
	gfn_t range_end;
};
void kvm_mmu_invalidate_state(struct kvm *kvm, struct kvm_invalidate_state *st);

/*
 * Unmap [start, end) of @slot from the stage-2 tables after adding it to the
 * invalidation range.  Returns true if a remote TLB flush is needed.
 * Context: mmu_lock held for write, inside begin/end.
 */
bool kvm_mmu_unmap_gfn_range(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t start,
			     gfn_t end);

/*
 * The remote TLB flush (spec §4.9): when it returns, no vCPU still uses a
 * translation zapped before it was called.  Context: no RCU read lock, no
 * mmu_lock held.
 */
void kvm_flush_remote_tlbs(struct kvm *kvm);

/*
 * One invalidation (spec §4.4 table), whatever drives it: the range in its
 * source's unit, converted per slot.  begin finds the intersecting slots;
 * on the first hit it takes mmu_lock for write and begins, then zaps every
 * hit; it drops mmu_lock and, if a zap asks for it, flushes.  end, only if
 * begin hit something, ends under mmu_lock and runs @post for every hit in
 * that same critical section.  With no hit neither begin nor end is called.
 */
enum kvm_invalidation_source {
	KVM_INVAL_GFN,	/* gfns, every address space (attributes); slots_lock held */
	KVM_INVAL_GMEM, /* page indices of @gmem's bindings; its invalidate_lock
			   held for write */
	KVM_INVAL_HVA,	/* host addresses (the mmu notifier); no VM lock held */
};

struct kvm_invalidation {
	enum kvm_invalidation_source source;
	uint64_t start, end; /* [start, end) in the source's unit */
	struct kvm_gmem *gmem; /* KVM_INVAL_GMEM */
	kvm_slot_fn post;      /* KVM_INVAL_GFN only; NULL: none */
	void *post_ctx;
	bool begun; /* set by begin: end has work to do */
};

/* Returns inv->begun.  Context: the source's lock (above), no mmu_lock. */
bool kvm_invalidation_begin(struct kvm *kvm, struct kvm_invalidation *inv);
/* Context: the same locks as at begin, which must not have been dropped. */
void kvm_invalidation_end(struct kvm *kvm, struct kvm_invalidation *inv);

/*
 * Host-mapping invalidation (the mmu notifier): [hva_start, hva_end) of the
 * VMM's address space changed (munmap, mremap, MADV_DONTNEED, mprotect).
 * Zaps every translation derived from it.  Context: no VM locks held.
 */
void kvm_mmu_notifier_invalidate_range(struct kvm *kvm, uint64_t hva_start, uint64_t hva_end);

/*
 * The same in two halves around the host change, for every live VM, as the
 * preload does around munmap/mremap/madvise/mprotect: start zaps and holds
 * the invalidation open (faults on those gfns retry), end closes it.
 * start returns a token for end (NULL when no VM was affected).
 */
struct kvm_mn_token;
struct kvm_mn_token *kvm_mmu_notifier_start_all(uint64_t hva_start, uint64_t hva_end);
/*
 * The same for a change that keeps every mapping (madvise, mprotect: the
 * kernel's CLEAR and PROTECTION_VMA events): end need not look for files
 * kept for shared RAM that lost their last mapping, which costs a read of
 * /proc/self/maps (long with thousands of memslots) per call.
 */
struct kvm_mn_token *kvm_mmu_notifier_start_clear_all(uint64_t hva_start, uint64_t hva_end);
void kvm_mmu_notifier_end_all(struct kvm_mn_token *token);

#endif
