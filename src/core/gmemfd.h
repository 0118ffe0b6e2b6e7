/* SPDX-License-Identifier: MIT */
/*
 * Guest memory reachable from another process by (fd, offset): what the
 * x86 backend hands to the guest process so that it can mmap a gfn's page
 * MAP_SHARED (docs/design-guest-execution-and-isolation.md, "Processes,
 * descriptors, memory").
 *
 * Private gfns live in the guest_memfd's storage (a memfd, or a
 * memfd_secret file: src/core/backing*.c).  Shared gfns live in the
 * memslot's userspace memory.  That memory must be a shared file mapping
 * for another process to see the same bytes, so guestmem makes it one
 * ("shared RAM", shram below):
 *
 *   - anonymous private memory of this process is replaced in place by a
 *     MAP_SHARED mapping of a new memfd at the same address, with the
 *     same protection, after copying the pages that exist (resident or
 *     swapped); the VMM keeps seeing the same bytes;
 *   - a MAP_SHARED mapping of a file (a memfd the VMM made, shmem,
 *     hugetlbfs) is kept, and guestmem opens the same file for itself:
 *     the open fd whose dev:inode /proc/self/maps names, reopened through
 *     /proc/self/fd/N, else the path the mapping shows;
 *   - anything else (a private file mapping, /dev/zero shared memory,
 *     anonymous huge pages, the stack) is left alone and has no fd:
 *     -EOPNOTSUPP for the backend; the memslot itself is unaffected.
 *
 * The conversion never changes an ioctl's answer: it runs after a memslot
 * was created, its failures only mark the range.  It is lazy per VM: a VM
 * pays for it only once kvm_shared_ram_enable() was called (the machine-
 * code vCPU backend calls it when it creates its first vCPU), from which
 * point every new memslot is probed (and converted) at creation; a memslot
 * of a VM that never enabled it is probed on the first kvm_gfn_to_backing()
 * of one of its shared gfns.
 *
 * Each memslot holds an immutable record of what backs its range (a list
 * of segments: host range, file, file offset, or an error), replaced as a
 * whole in a holder the slot's copies share.  The mmu notifier marks the
 * records of the slots it hits as stale, both before and after the host
 * change; a stale record is probed again on the next lookup (the VMM may
 * have mapped something new there).  So after the VMM munmaps the memory,
 * the recorded fd is never handed out again: the new probe finds no
 * mapping (-EFAULT).  guestmem keeps a file open while a record names it
 * or the VMM still maps it (checked at the notifier's end), so a memslot
 * deleted and created again finds a converted memfd, which has no path.
 *
 * Around the conversion: a libc fork maps converted memory MAP_PRIVATE in
 * the child (an atfork handler), and madvise(MADV_DONTNEED / MADV_FREE)
 * through the preload punches it (kvm_shram_discard()), so that both keep
 * the semantics of anonymous memory as far as they can.
 *
 * Deviations this causes are listed in README.md ("Memslot RAM becomes a
 * MAP_SHARED memfd mapping").
 */
#ifndef GM_CORE_GMEMFD_H
#define GM_CORE_GMEMFD_H

#include <stdbool.h>
#include <stdint.h>

#include "kvm_host.h"

/* What kvm_gfn_to_backing_info() finds for one gfn. */
struct kvm_gfn_backing {
	/*
	 * guestmem's own descriptor for the file, or -1 when it is kept out
	 * of the VMM's table (then @kfd).  Borrowed: valid until the caller
	 * leaves the RCU read-side section the call ran in, never closed by
	 * the caller.  To keep the file longer (to send it to the guest
	 * process by SCM_RIGHTS), dup it inside the section.
	 */
	int fd;
	/*
	 * When @fd is -1: the file's number in the library's own table
	 * (lib/keepfd.h; gm_fd_fetch() inside the section gives a
	 * descriptor), else -1: no file here at all (private memory the
	 * guest process holds).
	 */
	int kfd;
	uint64_t offset;    /* bytes into the file, page aligned */
	uint64_t run_pages; /* >= 1: gfn .. gfn + run_pages - 1 continue it */
	/*
	 * Names the file for the life of the process (never reused, unlike
	 * fd numbers): a cache key for "already handed to the guest process".
	 * Private files have bit 63 set.
	 */
	uint64_t file_id;
	bool writable; /* the fd may be mapped PROT_WRITE and the slot is not READONLY */
	/*
	 * The fd may be mapped PROT_EXEC: false for a memfd_secret backing,
	 * whose files live on a noexec mount (mmap with PROT_EXEC: EPERM).
	 */
	bool executable;
	/*
	 * What mmap of this file needs offsets and lengths aligned to: the
	 * huge page size for hugetlbfs, else 4096.  A run is not rounded to
	 * it; the caller maps the aligned block around it.
	 */
	uint64_t map_align;
};

/*
 * For @gfn of address space @as_id, as stage-2 maps it now, @is_private
 * selecting the guest_memfd (private) or the memslot's userspace memory
 * (shared; the guest_memfd too for a 6.18 MMAP-capable one): the file and
 * offset of its page, so that another process can mmap it MAP_SHARED.
 *
 * The run: how many gfns from @gfn on (at most @max_pages, 0 meaning 512)
 * lie in the same memslot, have the same private/shared attribute and
 * continue in the same file at consecutive offsets; for private gfns also
 * only pages the guest_memfd already holds (mapping a run must not
 * allocate private pages the guest never touched).  The private page of
 * @gfn itself is allocated if absent, as the fault path does.
 *
 * Returns 0, or:
 *   -ENOENT      no memslot at @gfn (or it is being deleted or moved);
 *   -EINVAL      @is_private for a slot without guest_memfd;
 *   -EFAULT      private: the guest_memfd was released; shared: nothing
 *                is mapped at the slot's host address (the VMM unmapped it);
 *   -EIO         private: the binding is not this slot's;
 *   -EHWPOISON   private: the page is poisoned;
 *   -EOPNOTSUPP  shared: the memory is not one a file can reach (a private
 *                file mapping, ...), or it could not be converted;
 *   -ENOMEM.
 *
 * Like a fault's hva, the answer is as of the caller's
 * mmu_invalidate_seq snapshot: check mmu_invalidate_retry_gfn() under
 * mmu_lock before making a mapping of it visible; an invalidation after
 * that zaps it through the normal path.
 *
 * Context: inside gm_rcu_read_lock(); @kvm referenced.  May take the shram
 * lock (a leaf below mmu_lock, docs/locking.md) and make system calls
 * (reading /proc/self/maps, converting memory) when the slot's record is
 * missing or stale.  The fd stays open as long as the section lasts:
 * guest_memfd release and memslot deletion close it only after a grace
 * period, when no record or binding reachable by a reader names it.
 */
int kvm_gfn_to_backing_info(struct kvm *kvm, int as_id, gfn_t gfn, bool is_private,
			    uint64_t max_pages, struct kvm_gfn_backing *out);

/* kvm_gfn_backing.file_id of guest_memfd number @gmem_ino's private file. */
uint64_t kvm_gmem_file_id(uint64_t gmem_ino);

/* The plan's short form: address space 0, runs of at most 512 pages. */
int kvm_gfn_to_backing(struct kvm *kvm, gfn_t gfn, bool is_private, int *fd,
		       uint64_t *offset, uint64_t *run_pages);

/*
 * Whether a memslot of @kvm still reaches the file @file_id (from
 * kvm_gfn_to_backing_info()): once it does not, the backend may drop its
 * copy of the file in the guest process (which otherwise keeps the memory
 * of a deleted memslot or a released guest_memfd alive).  Checking again
 * when a memslot set's generation changed, or after an mmu-notifier
 * event, is enough: nothing else makes a file unreachable.  A stale
 * record still counts (it is probed again on the next lookup).
 * Context: inside gm_rcu_read_lock().
 */
bool kvm_backing_file_in_use(struct kvm *kvm, uint64_t file_id);

/*
 * Make @kvm's memslot memory shareable now and at every later memslot
 * creation (see the file comment).  Idempotent.  Returns 0 (failures to
 * convert a range only mark it).  Context: no VM lock held; takes
 * slots_lock.
 */
int kvm_shared_ram_enable(struct kvm *kvm);
/*
 * Convert @kvm's memslot memory as it is now, in one batch, without
 * enabling the per-slot conversion at memslot creation (a VMM may create
 * thousands of slots next, which kvm_shared_ram_enable() then converts in
 * one batch again).  Context: no VM lock held; takes slots_lock.
 */
void kvm_shared_ram_prepare(struct kvm *kvm);

/* ---- hooks for memslots.c, vm.c and invalidate.c ----------------------- */

/* A new slot (not yet visible) gets its own, empty record holder. */
void kvm_shram_slot_init(struct kvm_memory_slot *slot);
/* A slot was just created in an enabled VM: probe it.  Context: slots_lock. */
void kvm_shram_slot_created(struct kvm *kvm, struct kvm_memory_slot *slot);
/*
 * @dst (not yet visible) drops its holder and shares @src's (FLAGS_ONLY,
 * MOVE: the same host range).
 */
void kvm_shram_slot_copy(struct kvm_memory_slot *dst, const struct kvm_memory_slot *src);
/* @slot is being freed (no reader can reach it): drop its holder. */
void kvm_shram_slot_free(struct kvm_memory_slot *slot);
/* The mmu notifier hit @slot's host range.  Context: RCU read lock or slots_lock. */
void kvm_shram_slot_hva_changed(struct kvm_memory_slot *slot);
/*
 * After the host change of [start, end) (notifier end): files guestmem
 * keeps open for memory that is no longer mapped anywhere are closed.
 * Context: no VM lock held.
 */
void kvm_shram_hva_changed(uint64_t start, uint64_t end);

/*
 * madvise(@advice) of [start, end) by the VMM, before the real call: for
 * MADV_DONTNEED, MADV_DONTNEED_LOCKED and MADV_FREE, the parts guestmem
 * converted get their file pages punched, so they read back zeros as
 * private anonymous memory would.  Returns true if the whole range is
 * such memory (MADV_FREE, which the host refuses on shared mappings, is
 * then answered 0 without the real call).  Context: no VM lock held.
 */
bool kvm_shram_discard(uint64_t start, uint64_t end);

/* Tests and `guestmem info`: files guestmem holds open for shared RAM. */
long kvm_shram_nr_files(void);

#endif
