/* SPDX-License-Identifier: MIT */
/*
 * guest_memfd: files of guest-private memory (spec §3.3, §3.4, §4.1-§4.3).
 *
 * In 6.8 every KVM_CREATE_GUEST_MEMFD makes a new inode with one instance,
 * so the file, its kvm_gmem instance and the inode are one object here;
 * comments say which role a field plays.
 *
 * References: `refs` counts references to the *file* (open fds, as counted
 * by the uAPI layer's watcher, and C-API handles).  The file holds one
 * reference on its VM.  A memslot points at the file without a reference
 * (slot->gmem.file, weak); release clears those pointers.
 */
#ifndef GM_CORE_GMEM_H
#define GM_CORE_GMEM_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "backing.h"
#include "kvm_host.h"

struct kvm_gmem {
	long refs;	 /* file references; last put releases */
	struct kvm *kvm; /* instance: strong VM reference */

	/*
	 * instance: page index -> struct kvm_memory_slot * (as uint64_t).
	 * Written with kvm->slots_lock and invalidate_lock (write) held, so
	 * either lock keeps it stable; read under RCU.
	 */
	struct rangemap bindings;

	/* inode */
	uint64_t size;	 /* bytes, immutable */
	uint64_t flags;	 /* creation flags (6.18: MMAP, INIT_SHARED) */
	uint64_t ino;	 /* distinct per guest_memfd, for fstat */
	uid_t uid;
	gid_t gid;
	struct timespec mtime, ctime;
	/*
	 * The inode's invalidate lock: nests inside kvm->slots_lock and outside
	 * kvm->mmu_lock.  Write: punch hole, bind, unbind, release.  Read:
	 * allocate.  The fault path must NOT take it: faults run inside an RCU
	 * read-side section, and punch/release wait for grace periods while
	 * holding this lock; faults rely on the invalidation protocol instead.
	 */
	pthread_rwlock_t invalidate_lock;
	struct gm_backing backing; /* the storage: pages by index */
	/*
	 * inode: page index -> 1 for pages hit by a memory failure (§4.3).
	 * Written with invalidate_lock held for write; read under RCU.
	 */
	struct rangemap poisoned;
};

/*
 * KVM_CREATE_GUEST_MEMFD checks (§3.3) for @kvm's profile, then creation.
 * On success *out holds one file reference.
 */
struct kvm_create_guest_memfd;
int kvm_gmem_create(struct kvm *kvm, const struct kvm_create_guest_memfd *args,
		    struct kvm_gmem **out);

void kvm_gmem_get(struct kvm_gmem *gmem);
/*
 * Drop a file reference; the last one releases the file (§4.1), which
 * takes kvm->slots_lock and may destroy the VM.
 * Context: none of the VM's locks nor the invalidate lock held.
 */
void kvm_gmem_put(struct kvm_gmem *gmem);
/* Take a reference unless the count already reached zero (get_file_active). */
bool kvm_gmem_tryget(struct kvm_gmem *gmem);

/*
 * fallocate(2) on the file, with the VFS checks then guest_memfd's (§3.4.1)
 * for the VM's profile.  Returns 0 or -errno.
 */
int kvm_gmem_fallocate(struct kvm_gmem *gmem, int mode, int64_t offset, int64_t len);

/*
 * Every check of a guest_memfd fallocate, in the kernel's order: the VFS
 * layer (steps 1-7), guest_memfd's own (8-10), then an allocation's bound
 * against @size.  0 or -errno.  All a guest_memfd whose VM is gone from
 * reach (its creator exec'd or exited; src/uapi/remote.c) does: no VM can
 * ever map its pages again, so nothing is allocated.
 */
int kvm_gmem_fallocate_checks(enum gm_profile profile, uint64_t size, int mode, int64_t offset,
			      int64_t len);

/*
 * Undoing a binding, prepared before a point of no return so that the
 * undo itself cannot fail.  @gmem NULL: nothing to undo (no guest_memfd,
 * or the file was released meanwhile).
 */
struct kvm_gmem_unbind {
	struct kvm_gmem *gmem;
	struct rangemap_update *next; /* the bindings without the slot */
};

/*
 * Bind [offset, offset + npages pages) to @slot (rules 20-23 of §3.5).
 * On success *@undo is ready to take the binding back (unbind_commit) or
 * to be dropped (unbind_abort).
 * Context: slots_lock held; the slot is not yet visible to readers.
 */
int kvm_gmem_bind(struct kvm *kvm, struct kvm_memory_slot *slot, struct kvm_gmem *gmem,
		  uint64_t offset, struct kvm_gmem_unbind *undo);
/*
 * Undo @slot's binding in two steps: prepare allocates (0 or -ENOMEM,
 * nothing changed), commit cannot fail, abort drops what prepare made.
 * Context: slots_lock held from prepare to commit/abort (bindings change
 * only under it, so the prepared map stays current); the slot is no longer
 * visible at commit.
 */
int kvm_gmem_unbind_prepare(struct kvm_memory_slot *slot, struct kvm_gmem_unbind *u);
void kvm_gmem_unbind_commit(struct kvm_memory_slot *slot, struct kvm_gmem_unbind *u);
void kvm_gmem_unbind_abort(struct kvm_gmem_unbind *u);

/*
 * Fault path: the backing page for @gfn of @slot.
 * Returns 0 and the page's host address in *hva (zeroed on first use),
 * or -EFAULT (file gone), -EIO (binding is not this slot), -ENOMEM,
 * -EHWPOISON.  *max_order is always 0 in 6.8.
 * Context: RCU read lock held.
 */
int kvm_gmem_get_pfn(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn, void **hva,
		     int *max_order);

/*
 * Mark page @index poisoned (memory-failure injection, §4.3): the page is
 * allocated if absent and kept, guest mappings of it are invalidated, and
 * later faults on it get -EHWPOISON until it is punched.  Returns 0,
 * -EINVAL (index beyond EOF) or -ENOMEM.
 */
int kvm_gmem_error_page(struct kvm_gmem *gmem, uint64_t index);

/* Pages currently allocated (for tests, demo and `guestmem info`). */
uint64_t kvm_gmem_nr_allocated(struct kvm_gmem *gmem);

#endif
