/* SPDX-License-Identifier: MIT */
/*
 * ioeventfd and irqfd (spec kvm-vcpu-eventfd-spec.md §7, §8.6, §8.7, §9.4-5),
 * and the per-VM object that holds them together with the irqchip.
 *
 * struct kvm_eventfds is created on first use (kvm->eventfds, published
 * with smp_store_release under kvm->lock; readers use smp_load_acquire and
 * treat NULL as "nothing registered, no irqchip") and freed by
 * kvm_arch_eventfds_destroy() when the VM goes.
 *
 * Eventfds.  Every eventfd we are given is dup()ed (close-on-exec) and the
 * dup is what we signal, read and poll: the VMM may close its own fd and the
 * registration keeps working, as the kernel's eventfd_ctx reference does.
 * Identity ("the same eventfd", for EBUSY and deassign) is the eventfd's
 * id from /proc/self/fdinfo (unique among live eventfds; we hold a dup of
 * every registered one, so ids cannot be recycled under us), or kcmp(2)
 * on kernels that do not print it.  Limitation (spec §9.5): with a dup held
 * we never see the eventfd's final close, so an irqfd is not detached when
 * the VMM closes its last fd; it lives until KVM_IRQFD deassign or VM
 * destruction, and a new eventfd that reuses the fd number is a different
 * eventfd (no EBUSY).
 *
 * Locks: docs/locking.md lists every lock, what it protects and the order.
 */
#ifndef GM_VCPU_EVENTFD_H
#define GM_VCPU_EVENTFD_H

#include <pthread.h>
#include <stdbool.h>
#include <semaphore.h>
#include <stdint.h>

#include <guestmem/kvm.h>

#include "core/kvm_host.h"

/* ---- eventfd references --------------------------------------------------- */

/* Our reference on a VMM eventfd: a close-on-exec dup and its identity. */
struct gm_eventfd {
	int fd;	 /* our dup; -1 when unset */
	long id; /* "eventfd-id" of fdinfo, -1 if the kernel has none */
	int tid; /* 0: fd is in the VMM's table; else in this thread's (the
		  * library's own table, lib/worker.h: the irqfd watcher's) */
};

/*
 * The eventfd_ctx_fdget() of the kernel: @ufd not open (or O_PATH) ->
 * -EBADF; open but no eventfd -> -EINVAL; -EMFILE/-ENOMEM if no dup can be
 * made.  On success *@out holds a new reference; release it with
 * gm_eventfd_put().  Context: any, no lock needed.
 */
int gm_eventfd_get(int ufd, struct gm_eventfd *out);
void gm_eventfd_put(struct gm_eventfd *e);
/* Whether @a and @b are the same eventfd (not just the same fd number). */
bool gm_eventfd_same(const struct gm_eventfd *a, const struct gm_eventfd *b);
/* Add 1 to the counter (eventfd_signal).  Context: any. */
void gm_eventfd_signal(const struct gm_eventfd *e);
/*
 * Consume the counter without blocking (eventfd_ctx_do_read): returns the
 * value read, 0 if it was zero.  Context: any.
 */
uint64_t gm_eventfd_consume(const struct gm_eventfd *e);

/* ---- the per-VM object ------------------------------------------------------- */

enum kvm_bus {
	KVM_MMIO_BUS,
	KVM_PIO_BUS,
	KVM_VIRTIO_CCW_NOTIFY_BUS, /* exists on x86 too; nothing ever writes it */
	KVM_NR_BUSES,
};

struct kvm_io_bus;	   /* eventfd.c: an RCU-published sorted array */
struct kvm_kernel_irqfd;   /* eventfd.c */
struct kvm_irqchip_state; /* irqchip.c */
struct kvm_irq_routing_table;
struct kvm_lapic;	   /* irqchip.h */

struct kvm_eventfds {
	struct kvm *kvm; /* no reference: we live exactly as long as the VM */

	/* ioeventfds: registrations under io_lock, lookup under RCU. */
	pthread_mutex_t io_lock;
	struct kvm_io_bus *buses[KVM_NR_BUSES];

	/*
	 * The irqchip (irqchip.c).  irqchip_mode goes NONE -> KERNEL or SPLIT
	 * once, under kvm->lock, with a release store after chip and routing
	 * are set up; whoever reads it with acquire may then use them under
	 * irq_lock.
	 */
	pthread_mutex_t irq_lock;
	int irqchip_mode; /* enum kvm_irqchip_mode */
	struct kvm_irqchip_state *chip;
	struct kvm_irq_routing_table *routing; /* replaced under irq_lock */
	/* The vCPUs' interrupt state by vcpu_idx (created under irq_lock,
	 * published with release, never freed before the VM). */
	struct kvm_lapic *lapic[KVM_MAX_VCPUS];
	uint32_t nr_lapics; /* lapic[0..nr) exist; written under irq_lock */
	/* KVM_CREATE_PIT2: recorded only (no timer is modelled); kvm->lock. */
	bool pit;
	uint32_t pit_flags;

	/* irqfds, all under irqfds_lock. */
	pthread_mutex_t irqfds_lock;
	struct kvm_kernel_irqfd *irqfds; /* singly linked, in assign order */
	/*
	 * The resample irqfds of ->irqfds again, linked and unlinked under
	 * both irqfds_lock and irq_lock, so that an EOI (which may come from
	 * a vCPU ioctl, below irqfds_lock in the lock order) finds them
	 * holding irq_lock alone.
	 */
	struct kvm_kernel_irqfd *resamplers;
	uint64_t irqfd_next_id;		 /* epoll cookie: stale events miss */
	/*
	 * The watcher's descriptors (epoll set, stop eventfd, the irqfds'
	 * eventfd copies) live in the library's own table when own_table
	 * (decided at its start: its keeper runs), out of the VMM's; every
	 * use of them is then a call run there (irqfd_call()).
	 */
	int epfd;			 /* -1 until the first irqfd */
	int stop_fd;			 /* eventfd: the watcher must end */
	bool own_table;
	bool watcher_started;
	sem_t watcher_done;		 /* posted as the watcher returns */
};

/*
 * The VM's object, created if needed.  Returns NULL only for ENOMEM.
 * Context: no lock held (takes kvm->lock on the slow path); or, for
 * __kvm_eventfds_get_locked(), kvm->lock held.
 */
struct kvm_eventfds *kvm_eventfds_get(struct kvm *kvm);
struct kvm_eventfds *__kvm_eventfds_get_locked(struct kvm *kvm);

/* VM destruction: kvm_arch_eventfds_destroy() of core/kvm_arch.h. */

/* ---- ioeventfd --------------------------------------------------------------- */

/*
 * KVM_IOEVENTFD with the ordered checks of spec §7.2: 0, -EINVAL, -EBADF,
 * -EEXIST, -ENOENT, -ENOMEM.  Context: no lock held.
 */
int kvm_ioeventfd(struct kvm *kvm, const struct kvm_ioeventfd *args);

/**
 * kvm_ioeventfd_write() - offer a guest write to the ioeventfds (§7.3).
 * @pio:  true for an OUT to port @addr, false for an MMIO store to gpa @addr
 * @len:  width of this access (an MMIO fragment of at most 8 bytes)
 * @data: the bytes written, little endian
 *
 * Return: true if a registration matched and its eventfd was signalled: the
 * write is complete, there must be NO exit (for OUT, advance RIP as the
 * completion would).  false: exit to the VMM as usual.
 *
 * For the vCPU code, one call per written piece, before the exit is built:
 *   - guest_io.c guest_pio(): for OUT only (never IN), with the port, size
 *     and value;
 *   - guest_access.c access_mmio(): for ACC_WRITE and ACC_MEMSET fragments
 *     (never reads), with gpa + off, n and the fragment's bytes.
 *
 * Context: guest thread, no lock, not in an RCU read-side section (it takes
 * one).  Cost without any ioeventfd: one acquire load.
 */
bool kvm_ioeventfd_write(struct kvm *kvm, bool pio, uint64_t addr, uint32_t len,
			 const void *data);

/* ---- irqfd ------------------------------------------------------------------- */

/*
 * KVM_IRQFD with the ordered checks of spec §8.6: 0, -EINVAL, -EBADF,
 * -EBUSY, -ENOMEM.  Deassign returns only once no injection from the
 * removed irqfds can happen any more.  Context: no lock held.
 */
int kvm_irqfd(struct kvm *kvm, const struct kvm_irqfd *args);

/*
 * The guest acknowledged IOAPIC pin interrupt @gsi (an ack notifier):
 * de-assert the resampler's line and signal the resamplefd of every
 * resample irqfd on @gsi.  Context: ev->irq_lock held.
 */
void kvm_irqfd_notify_acked_locked(struct kvm_eventfds *ev, uint32_t gsi);

/*
 * kvm_notify_irqfd_resampler(): signal the resamplefds on @gsi without
 * touching its line, so that the device re-asserts it if it is still
 * high.  Returns whether there was one.  Context: ev->irq_lock held.
 */
bool kvm_notify_irqfd_resampler_locked(struct kvm_eventfds *ev, uint32_t gsi);

#endif
