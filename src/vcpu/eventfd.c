/* SPDX-License-Identifier: MIT */
/*
 * ioeventfd and irqfd (spec kvm-vcpu-eventfd-spec.md §7, §8.6, §8.7), and
 * the per-VM struct kvm_eventfds.  Locking and the eventfd reference model
 * are described in eventfd.h.
 *
 * Every system call on an eventfd is a raw syscall: under `guestmem exec`
 * the libc names are the preload's, which would fstat() each fd to see
 * whether it is a guestmem object - a cost on every doorbell for nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/kvm_arch.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/procfile.h"
#include "lib/thread.h"
#include "lib/worker.h"
#include "lib/rcu.h"
#include "lib/sys_raw.h"
#include "vcpu/eventfd.h"
#include "vcpu/irqchip.h"

#ifndef KCMP_FILE
#define KCMP_FILE 0
#endif

/* ---- eventfd references ---------------------------------------------------- */

/* "eventfd-id:" of /proc/self/fdinfo/@fd, or -1 (kernels before 5.11). */
static long eventfd_fdinfo_id(int fd)
{
	char path[64], buf[512];
	const char *p;
	long id = -1, n;
	int f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = gm_raw_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (f < 0)
		return -1;
	n = gm_raw_read(f, buf, sizeof(buf) - 1);
	gm_raw_close(f);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "eventfd-id:");
	if (p && sscanf(p + strlen("eventfd-id:"), "%ld", &id) != 1)
		id = -1;
	return id;
}


int gm_eventfd_get(int ufd, struct gm_eventfd *out)
{
	long fl;
	int fd;

	out->fd = -1;
	out->id = -1;
	out->tid = 0;
	if (ufd < 0 || gm_fd_is_own(ufd)) /* ours are not open to the VMM */
		return -EBADF;
	/* Dup first, then inspect the dup: the VMM may reuse ufd meanwhile. */
	fd = gm_fd_own_dup(ufd);
	if (fd < 0)
		return errno == EBADF ? -EBADF : -errno;
	fl = gm_raw_fcntl(fd, F_GETFL, 0);
	if (fl < 0 || (fl & O_PATH)) {
		gm_fd_close(fd);
		return -EBADF; /* fdget() ignores O_PATH files */
	}
	if (!gm_fd_link_is(fd, "anon_inode:[eventfd]")) {
		gm_fd_close(fd);
		return -EINVAL;
	}
	out->fd = fd;
	out->id = eventfd_fdinfo_id(fd);
	return 0;
}

static long close_here(void *arg)
{
	return gm_raw_close(*(int *)arg);
}

void gm_eventfd_put(struct gm_eventfd *e)
{
	if (!e->tid)
		gm_fd_close(e->fd);
	else if (e->fd >= 0 && e->tid == gm_worker_tid(&gm_own_table))
		gm_worker_call(&gm_own_table, close_here, &e->fd);
	/* else a fork child's copy of our record: that table is not its own */
	e->fd = -1;
	e->id = -1;
	e->tid = 0;
}

bool gm_eventfd_same(const struct gm_eventfd *a, const struct gm_eventfd *b)
{
	pid_t pid = getpid();

	if (a->id >= 0 && b->id >= 0)
		return a->id == b->id;
	/* kcmp looks the numbers up in the named tasks' tables. */
	return syscall(SYS_kcmp, a->tid ? a->tid : pid, b->tid ? b->tid : pid, KCMP_FILE, a->fd,
		       b->fd) == 0;
}

void gm_eventfd_signal(const struct gm_eventfd *e)
{
	uint64_t one = 1;

	/*
	 * Blocks only if the counter is at its maximum (a VMM that wrote
	 * 2^64 - 2 itself); the kernel would saturate instead.
	 */
	if (gm_raw_write(e->fd, &one, sizeof(one)) != sizeof(one))
		return; /* EAGAIN on a full non-blocking eventfd: saturated */
}

uint64_t gm_eventfd_consume(const struct gm_eventfd *e)
{
	struct iovec iov;
	struct pollfd pfd = { .fd = e->fd, .events = POLLIN };
	uint64_t v = 0;
	ssize_t n;

	/* The file may be blocking and shared with the VMM: never block. */
	iov.iov_base = &v;
	iov.iov_len = sizeof(v);
	n = preadv2(e->fd, &iov, 1, -1, RWF_NOWAIT);
	if (n == sizeof(v))
		return v;
	if (n >= 0 || errno != EOPNOTSUPP)
		return 0; /* EAGAIN: the counter is zero */
	/* Kernels without RWF_NOWAIT reads of eventfds: racy but rare. */
	if (poll(&pfd, 1, 0) == 1 && gm_raw_read(e->fd, &v, sizeof(v)) == sizeof(v))
		return v;
	return 0;
}

/* ---- the per-VM object ----------------------------------------------------------- */

struct kvm_eventfds *__kvm_eventfds_get_locked(struct kvm *kvm)
{
	struct kvm_eventfds *ev = kvm->eventfds;

	lockdep_assert_held(&kvm->lock);
	if (ev)
		return ev;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return NULL;
	ev->kvm = kvm;
	ev->epfd = ev->stop_fd = -1;
	gm_check_pthread(pthread_mutex_init(&ev->io_lock, NULL));
	gm_check_pthread(pthread_mutex_init(&ev->irq_lock, NULL));
	gm_check_pthread(pthread_mutex_init(&ev->irqfds_lock, NULL));
	/* Pairs with the acquire loads of every reader (kvm_irqchip_mode, ...). */
	smp_store_release(&kvm->eventfds, ev);
	return ev;
}

struct kvm_eventfds *kvm_eventfds_get(struct kvm *kvm)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);

	if (likely(ev))
		return ev;
	gm_mutex_lock(&kvm->lock, GM_LOCK_KVM);
	ev = __kvm_eventfds_get_locked(kvm);
	gm_mutex_unlock(&kvm->lock);
	return ev;
}

static void irqfd_watcher_stop(struct kvm_eventfds *ev);
static void irqfd_free_all(struct kvm_eventfds *ev);
static void io_bus_free_all(struct kvm_eventfds *ev);

/*
 * Context: the VM's last reference is gone; no vCPU runs (KVM_RUN holds a
 * reference), so no guest is inside kvm_ioeventfd_write() and no interrupt
 * is taken.  The watcher, the only other user, is stopped first.
 */
void kvm_arch_eventfds_destroy(struct kvm *kvm)
{
	struct kvm_eventfds *ev = kvm->eventfds;

	if (!ev)
		return;
	irqfd_watcher_stop(ev);
	irqfd_free_all(ev);
	io_bus_free_all(ev);
	kvm_irqchip_destroy(ev);
	pthread_mutex_destroy(&ev->irqfds_lock);
	pthread_mutex_destroy(&ev->irq_lock);
	pthread_mutex_destroy(&ev->io_lock);
	kvm->eventfds = NULL;
	free(ev);
}

/* ---- ioeventfd ----------------------------------------------------------------- */

struct kvm_ioeventfd_dev {
	uint64_t addr;
	uint64_t datamatch;
	uint32_t len;
	bool wildcard;
	struct gm_eventfd efd;
};

/* A bus: registrations sorted by (addr, len); immutable once published. */
struct kvm_io_bus {
	uint32_t nr;
	struct kvm_ioeventfd_dev *dev[];
};

static int bus_from_flags(uint32_t flags)
{
	if (flags & KVM_IOEVENTFD_FLAG_PIO)
		return KVM_PIO_BUS;
	if (flags & KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY)
		return KVM_VIRTIO_CCW_NOTIFY_BUS;
	return KVM_MMIO_BUS;
}

/* First index whose address is >= @addr. */
static uint32_t io_bus_lower_bound(const struct kvm_io_bus *bus, uint64_t addr)
{
	uint32_t lo = 0, hi = bus->nr;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (bus->dev[mid]->addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* ioeventfd_in_range(): exact address, then width, then the value. */
static bool ioeventfd_in_range(const struct kvm_ioeventfd_dev *p, uint32_t len,
			       const void *data)
{
	uint64_t v = 0;

	if (!p->len)
		return true;
	if (len != p->len)
		return false;
	if (p->wildcard)
		return true;
	memcpy(&v, data, len); /* little endian, zero-extended; len is 1/2/4/8 */
	return v == p->datamatch;
}

bool kvm_ioeventfd_write(struct kvm *kvm, bool pio, uint64_t addr, uint32_t len,
			 const void *data)
{
	/* Pairs with the release in __kvm_eventfds_get_locked(). */
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	const struct kvm_io_bus *bus;
	bool hit = false;

	if (likely(!ev) || len > 8)
		return false;
	gm_rcu_read_lock();
	bus = gm_rcu_dereference(ev->buses[pio ? KVM_PIO_BUS : KVM_MMIO_BUS]);
	for (uint32_t i = bus ? io_bus_lower_bound(bus, addr) : 0;
	     bus && i < bus->nr && bus->dev[i]->addr == addr; i++) {
		if (ioeventfd_in_range(bus->dev[i], len, data)) {
			/* The dup stays open until a grace period after removal. */
			gm_eventfd_signal(&bus->dev[i]->efd);
			hit = true;
			break;
		}
	}
	gm_rcu_read_unlock();
	return hit;
}

/* ioeventfd_check_collision(). */
static bool ioeventfd_collides(const struct kvm_ioeventfd_dev *a,
			       const struct kvm_ioeventfd_dev *b)
{
	return a->addr == b->addr &&
	       (!a->len || !b->len ||
		(a->len == b->len && (a->wildcard || b->wildcard || a->datamatch == b->datamatch)));
}

/*
 * A copy of @old with @add inserted (sorted; after equal keys) and/or
 * @del removed.  Context: io_lock held.
 */
static struct kvm_io_bus *io_bus_copy(const struct kvm_io_bus *old,
				      struct kvm_ioeventfd_dev *add,
				      const struct kvm_ioeventfd_dev *del)
{
	uint32_t n = old ? old->nr : 0, j = 0;
	struct kvm_io_bus *bus = malloc(sizeof(*bus) + (n + 1) * sizeof(bus->dev[0]));

	if (!bus)
		return NULL;
	for (uint32_t i = 0; i < n; i++) {
		struct kvm_ioeventfd_dev *d = old->dev[i];

		if (add && (d->addr > add->addr || (d->addr == add->addr && d->len > add->len))) {
			bus->dev[j++] = add;
			add = NULL;
		}
		if (d != del)
			bus->dev[j++] = d;
	}
	if (add)
		bus->dev[j++] = add;
	bus->nr = j;
	return bus;
}

static int ioeventfd_assign(struct kvm *kvm, const struct kvm_ioeventfd *args)
{
	int idx = bus_from_flags(args->flags);
	struct kvm_ioeventfd_dev *p;
	struct kvm_io_bus *old, *bus;
	struct kvm_eventfds *ev;
	int r;

	struct gm_eventfd efd;

	/* eventfd_ctx_fdget() comes before the allocation, as in the kernel. */
	r = gm_eventfd_get(args->fd, &efd);
	if (r)
		return r;
	p = calloc(1, sizeof(*p));
	if (!p) {
		gm_eventfd_put(&efd);
		return -ENOMEM;
	}
	p->efd = efd;
	p->addr = args->addr;
	p->len = args->len;
	p->wildcard = !(args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH);
	p->datamatch = p->wildcard ? 0 : args->datamatch;
	ev = kvm_eventfds_get(kvm);
	r = -ENOMEM;
	if (!ev)
		goto fail;
	gm_mutex_lock(&ev->io_lock, GM_LOCK_IOEVENTFD);
	old = ev->buses[idx];
	for (uint32_t i = 0; old && i < old->nr; i++) {
		if (ioeventfd_collides(old->dev[i], p)) {
			r = -EEXIST;
			goto unlock;
		}
	}
	bus = io_bus_copy(old, p, NULL);
	if (!bus)
		goto unlock;
	/* Pairs with gm_rcu_dereference() in kvm_ioeventfd_write(). */
	gm_rcu_assign_pointer(ev->buses[idx], bus);
	gm_mutex_unlock(&ev->io_lock);
	gm_free_rcu(old);
	return 0;
unlock:
	gm_mutex_unlock(&ev->io_lock);
fail:
	gm_eventfd_put(&p->efd);
	free(p);
	return r;
}

/* kvm_deassign_ioeventfd_idx(): -EBADF/-EINVAL for the fd, -ENOENT, -ENOMEM. */
static int ioeventfd_deassign(struct kvm *kvm, const struct kvm_ioeventfd *args)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	bool wildcard = !(args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH);
	int idx = bus_from_flags(args->flags), r;
	struct kvm_ioeventfd_dev *victim = NULL;
	struct kvm_io_bus *old = NULL, *bus;
	struct gm_eventfd efd;

	r = gm_eventfd_get(args->fd, &efd);
	if (r)
		return r;
	r = -ENOENT;
	if (!ev)
		goto out;
	gm_mutex_lock(&ev->io_lock, GM_LOCK_IOEVENTFD);
	old = ev->buses[idx];
	for (uint32_t i = 0; old && i < old->nr && !victim; i++) {
		struct kvm_ioeventfd_dev *p = old->dev[i];

		if (gm_eventfd_same(&p->efd, &efd) && p->addr == args->addr &&
		    p->len == args->len && p->wildcard == wildcard &&
		    (wildcard || p->datamatch == args->datamatch))
			victim = p;
	}
	if (victim) {
		bus = io_bus_copy(old, NULL, victim);
		r = bus ? 0 : -ENOMEM;
		if (bus)
			gm_rcu_assign_pointer(ev->buses[idx], bus);
	}
	gm_mutex_unlock(&ev->io_lock);
	if (!r) {
		/* After this no vCPU can still be signalling the victim's dup. */
		gm_synchronize_rcu();
		free(old);
		gm_eventfd_put(&victim->efd);
		free(victim);
	}
out:
	gm_eventfd_put(&efd);
	return r;
}

int kvm_ioeventfd(struct kvm *kvm, const struct kvm_ioeventfd *args)
{
	if (args->flags & KVM_IOEVENTFD_FLAG_DEASSIGN)
		return ioeventfd_deassign(kvm, args);
	switch (args->len) {
	case 0: case 1: case 2: case 4: case 8:
		break;
	default:
		return -EINVAL;
	}
	if (args->addr + args->len < args->addr)
		return -EINVAL;
	if (args->flags & ~0x1fU) /* KVM_IOEVENTFD_VALID_FLAG_MASK */
		return -EINVAL;
	if (!args->len && (args->flags & KVM_IOEVENTFD_FLAG_DATAMATCH))
		return -EINVAL;
	return ioeventfd_assign(kvm, args);
}

static void io_bus_free_all(struct kvm_eventfds *ev)
{
	for (int b = 0; b < KVM_NR_BUSES; b++) {
		struct kvm_io_bus *bus = ev->buses[b];

		for (uint32_t i = 0; bus && i < bus->nr; i++) {
			gm_eventfd_put(&bus->dev[i]->efd);
			free(bus->dev[i]);
		}
		free(bus);
		ev->buses[b] = NULL;
	}
}

/* ---- irqfd ----------------------------------------------------------------------- */

struct kvm_kernel_irqfd {
	struct kvm_kernel_irqfd *next;
	struct kvm_kernel_irqfd *resample_next; /* ev->resamplers */
	struct kvm_kernel_irqfd *all_next, **all_pprev; /* gm_irqfd_all */
	uint64_t id; /* epoll cookie, never reused */
	uint32_t gsi;
	bool resample;
	struct gm_eventfd efd;
	struct gm_eventfd resamplefd;
};

#define IRQFD_STOP_COOKIE 0 /* ids start at 1 */

/*
 * Every irqfd of every VM.  Since 6.17 (spec §11) an eventfd may drive one
 * irqfd in the whole system, not one per VM: the 6.18 profile checks here.
 * A leaf lock, taken under a VM's irqfds_lock.
 */
static pthread_mutex_t gm_irqfd_all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm_kernel_irqfd *gm_irqfd_all;

/* Add @irqfd unless (@global) another VM's irqfd uses its eventfd: -EBUSY. */
static int irqfd_all_add(struct kvm_kernel_irqfd *irqfd, bool global)
{
	int r = 0;

	gm_mutex_lock(&gm_irqfd_all_lock, GM_LOCK_IRQFD_ALL);
	for (struct kvm_kernel_irqfd *i = gm_irqfd_all; global && i && !r; i = i->all_next)
		if (gm_eventfd_same(&i->efd, &irqfd->efd))
			r = -EBUSY;
	if (!r) {
		irqfd->all_next = gm_irqfd_all;
		irqfd->all_pprev = &gm_irqfd_all;
		if (gm_irqfd_all)
			gm_irqfd_all->all_pprev = &irqfd->all_next;
		gm_irqfd_all = irqfd;
	}
	gm_mutex_unlock(&gm_irqfd_all_lock);
	return r;
}

static void irqfd_all_del(struct kvm_kernel_irqfd *irqfd)
{
	if (!irqfd->all_pprev)
		return; /* never added */
	gm_mutex_lock(&gm_irqfd_all_lock, GM_LOCK_IRQFD_ALL);
	*irqfd->all_pprev = irqfd->all_next;
	if (irqfd->all_next)
		irqfd->all_next->all_pprev = irqfd->all_pprev;
	gm_mutex_unlock(&gm_irqfd_all_lock);
	irqfd->all_pprev = NULL;
}

/* irqfd_inject(): a pulse as source 0, or assert as the resampler. */
static void irqfd_inject(struct kvm *kvm, const struct kvm_kernel_irqfd *irqfd)
{
	if (irqfd->resample)
		kvm_set_irq(kvm, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, irqfd->gsi, 1);
	else
		kvm_set_irq_pulse(kvm, KVM_USERSPACE_IRQ_SOURCE_ID, irqfd->gsi);
}

/* The wakeup callback: consume the counter, inject once.  irqfds_lock held. */
static void irqfd_wakeup(struct kvm_eventfds *ev, uint64_t id)
{
	lockdep_assert_held(&ev->irqfds_lock);
	for (struct kvm_kernel_irqfd *i = ev->irqfds; i; i = i->next) {
		if (i->id == id) {
			if (gm_eventfd_consume(&i->efd))
				irqfd_inject(ev->kvm, i);
			return;
		}
	}
	/* Deassigned after epoll_wait() returned: nothing to do. */
}

/* Run @fn(@arg) where the watcher's descriptors are (see eventfd.h). */
static long irqfd_call(struct kvm_eventfds *ev, long (*fn)(void *), void *arg)
{
	return ev->own_table ? gm_worker_call(&gm_own_table, fn, arg) : fn(arg);
}

static void *irqfd_watcher(void *arg)
{
	struct kvm_eventfds *ev = arg;
	struct epoll_event events[32];

	pthread_setname_np(pthread_self(), "kvm-irqfd");
	for (;;) {
		int n = epoll_wait(ev->epfd, events, ARRAY_SIZE(events), -1);

		if (n < 0 && errno == EINTR)
			continue;
		gm_assert(n >= 0);
		gm_mutex_lock(&ev->irqfds_lock, GM_LOCK_IRQFDS);
		for (int i = 0; i < n; i++) {
			if (events[i].data.u64 == IRQFD_STOP_COOKIE) {
				gm_mutex_unlock(&ev->irqfds_lock);
				/* The last touch of ev: the stopper frees it next. */
				sem_post(&ev->watcher_done);
				return NULL;
			}
			irqfd_wakeup(ev, events[i].data.u64);
		}
		gm_mutex_unlock(&ev->irqfds_lock);
	}
}

/* The epoll set and the stop eventfd, in the calling thread's table. */
static long watcher_fds_here(void *arg)
{
	struct kvm_eventfds *ev = arg;
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = IRQFD_STOP_COOKIE };
	int epfd = epoll_create1(EPOLL_CLOEXEC), stop;

	if (epfd < 0)
		return -errno;
	stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (stop < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, stop, &e)) {
		int err = -errno;

		if (stop >= 0)
			gm_raw_close(stop);
		gm_raw_close(epfd);
		return err;
	}
	/* Marked as guestmem's only where they are in the VMM's table. */
	ev->epfd = ev->own_table ? epfd : gm_fd_own(epfd);
	ev->stop_fd = ev->own_table ? stop : gm_fd_own(stop);
	return 0;
}

static long watcher_stop_here(void *arg)
{
	struct kvm_eventfds *ev = arg;
	uint64_t one = 1;

	if (gm_raw_write(ev->stop_fd, &one, sizeof(one)) != sizeof(one))
		gm_assert(!"write of the irqfd stop eventfd failed");
	return 0;
}

static long watcher_close_here(void *arg)
{
	struct kvm_eventfds *ev = arg;

	if (ev->own_table) {
		gm_raw_close(ev->epfd);
		gm_raw_close(ev->stop_fd);
	} else {
		gm_fd_close(ev->epfd);
		gm_fd_close(ev->stop_fd);
	}
	return 0;
}

/*
 * Start the VM's watcher thread, once, with its descriptors in the
 * library's own table if its keeper runs (else in the VMM's).
 * Context: irqfds_lock held.
 */
static int irqfd_watcher_start(struct kvm_eventfds *ev)
{
	int r;

	lockdep_assert_held(&ev->irqfds_lock);
	if (ev->watcher_started)
		return 0;
	if (ev->epfd < 0) {
		ev->own_table = true;
		r = (int)gm_worker_call(&gm_own_table, watcher_fds_here, ev);
		if (r) {
			ev->own_table = false;
			r = (int)watcher_fds_here(ev);
		}
		if (r)
			return r;
		sem_init(&ev->watcher_done, 0, 0);
	}
	/* Signals stay the VMM's; running before the VMM can fork (thread.h). */
	r = ev->own_table ? gm_worker_spawn(&gm_own_table, irqfd_watcher, ev)
			  : -gm_thread_start(irqfd_watcher, ev, 0);
	if (r)
		return r;
	ev->watcher_started = true;
	return 0;
}

static void irqfd_watcher_stop(struct kvm_eventfds *ev)
{
	bool creator = ev->kvm->creator_pid == getpid();

	/* A forked child shares the object but has no such thread, and
	 * the library's own table it used is not the child's. */
	if (ev->watcher_started && creator) {
		irqfd_call(ev, watcher_stop_here, ev);
		while (sem_wait(&ev->watcher_done) && errno == EINTR)
			;
	}
	ev->watcher_started = false;
	if (ev->epfd >= 0) {
		if (creator || !ev->own_table)
			irqfd_call(ev, watcher_close_here, ev);
		sem_destroy(&ev->watcher_done);
	}
	ev->epfd = ev->stop_fd = -1;
}

static void irqfd_free(struct kvm_kernel_irqfd *irqfd)
{
	irqfd_all_del(irqfd);
	gm_eventfd_put(&irqfd->efd);
	gm_eventfd_put(&irqfd->resamplefd);
	free(irqfd);
}

static void irqfd_free_all(struct kvm_eventfds *ev)
{
	ev->resamplers = NULL;
	while (ev->irqfds) {
		struct kvm_kernel_irqfd *i = ev->irqfds;

		ev->irqfds = i->next;
		irqfd_free(i);
	}
}

/* Whether a resample irqfd other than @except serves @gsi.  irqfds_lock held. */
static bool irqfd_gsi_has_resampler(struct kvm_eventfds *ev, uint32_t gsi,
				    const struct kvm_kernel_irqfd *except)
{
	lockdep_assert_held(&ev->irqfds_lock);
	for (struct kvm_kernel_irqfd *i = ev->irqfds; i; i = i->next)
		if (i != except && i->resample && i->gsi == gsi)
			return true;
	return false;
}

/* An epoll_ctl() of the watcher's set, where its descriptors are. */
struct irqfd_epoll_op {
	struct kvm_eventfds *ev;
	int op, fd;
	struct epoll_event *e;
	bool consume; /* EPOLL_CTL_DEL: read the counter first */
	uint64_t consumed;
};

static long irqfd_epoll_here(void *arg)
{
	struct irqfd_epoll_op *o = arg;
	struct gm_eventfd efd = { .fd = o->fd, .id = -1 };

	if (o->consume)
		o->consumed = gm_eventfd_consume(&efd);
	return epoll_ctl(o->ev->epfd, o->op, o->fd, o->e) ? -errno : 0;
}

/* Move @efd (a dup in the VMM's table) into the library's own table. */
struct irqfd_adopt {
	int tid, fd;
	unsigned long ino;
};

static long irqfd_adopt_here(void *arg)
{
	const struct irqfd_adopt *a = arg;

	return gm_fd_adopt(a->tid, a->fd, a->ino);
}

static int irqfd_efd_adopt(struct gm_eventfd *efd)
{
	struct irqfd_adopt a = { .tid = (int)syscall(SYS_gettid), .fd = efd->fd };
	struct stat st;
	long fd;

	if (gm_raw_fstat(efd->fd, &st))
		return -errno;
	a.ino = (unsigned long)st.st_ino;
	fd = gm_worker_call(&gm_own_table, irqfd_adopt_here, &a);
	if (fd < 0)
		return (int)fd;
	gm_fd_close(efd->fd);
	efd->fd = (int)fd;
	efd->tid = gm_worker_tid(&gm_own_table);
	return 0;
}

/* Bind an irqfd that passed every check.  -EBUSY, or a watcher error. */
static int irqfd_install(struct kvm_eventfds *ev, struct kvm_kernel_irqfd *irqfd)
{
	struct epoll_event e = { .events = EPOLLIN | EPOLLET };
	struct kvm_kernel_irqfd **tail;
	int r;

	gm_mutex_lock(&ev->irqfds_lock, GM_LOCK_IRQFDS);
	for (tail = &ev->irqfds; *tail; tail = &(*tail)->next) {
		if (gm_eventfd_same(&(*tail)->efd, &irqfd->efd)) {
			r = -EBUSY; /* this eventfd already drives an irqfd here */
			goto out;
		}
	}
	/* On a later failure the caller's irqfd_free() takes it out again. */
	r = irqfd_all_add(irqfd, ev->kvm->cfg.profile >= GM_PROFILE_LINUX_6_18);
	if (r)
		goto out;
	r = irqfd_watcher_start(ev);
	if (r)
		goto out;
	irqfd->id = ++ev->irqfd_next_id;
	/* Our copy of the eventfd goes where the watcher's epoll set is. */
	if (ev->own_table) {
		r = irqfd_efd_adopt(&irqfd->efd);
		if (r)
			goto out;
	}
	e.data.u64 = irqfd->id;
	/*
	 * Edge-triggered: one event per signal, like the wait-queue callback.
	 * A counter already non-zero gives an event at once: the "pending
	 * before assign" injection.
	 */
	struct irqfd_epoll_op op = { ev, EPOLL_CTL_ADD, irqfd->efd.fd, &e };

	r = (int)irqfd_call(ev, irqfd_epoll_here, &op);
	if (r)
		goto out;
	*tail = irqfd;
	if (irqfd->resample) {
		gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
		irqfd->resample_next = ev->resamplers;
		ev->resamplers = irqfd;
		gm_mutex_unlock(&ev->irq_lock);
	}
out:
	gm_mutex_unlock(&ev->irqfds_lock);
	return r;
}

/* Take @irqfd off ev->resamplers.  irqfds_lock held. */
static void irqfd_resampler_del(struct kvm_eventfds *ev, struct kvm_kernel_irqfd *irqfd)
{
	lockdep_assert_held(&ev->irqfds_lock);
	gm_mutex_lock(&ev->irq_lock, GM_LOCK_IRQ);
	for (struct kvm_kernel_irqfd **pp = &ev->resamplers; *pp; pp = &(*pp)->resample_next) {
		if (*pp == irqfd) {
			*pp = irqfd->resample_next;
			break;
		}
	}
	gm_mutex_unlock(&ev->irq_lock);
}

static int irqfd_assign(struct kvm *kvm, const struct kvm_irqfd *args)
{
	bool resample = args->flags & KVM_IRQFD_FLAG_RESAMPLE;
	struct kvm_kernel_irqfd *irqfd;
	int mode = kvm_irqchip_mode(kvm), r;

	/* kvm_arch_irqfd_allowed(): resample needs the full irqchip. */
	if (resample ? mode != KVM_IRQCHIP_KERNEL : mode == KVM_IRQCHIP_NONE)
		return -EINVAL;
	irqfd = calloc(1, sizeof(*irqfd));
	if (!irqfd)
		return -ENOMEM;
	irqfd->gsi = args->gsi; /* not validated: no route means no effect */
	irqfd->resample = resample;
	irqfd->resamplefd.fd = -1;
	r = gm_eventfd_get((int)args->fd, &irqfd->efd);
	if (!r && resample)
		r = gm_eventfd_get((int)args->resamplefd, &irqfd->resamplefd);
	if (!r)
		r = irqfd_install(smp_load_acquire(&kvm->eventfds), irqfd);
	if (r)
		irqfd_free(irqfd);
	return r;
}

/*
 * kvm_irqfd_deassign(): every irqfd of this eventfd and gsi goes; 0 even if
 * none did.  A signal already made and not yet seen by the watcher is
 * injected now, as the kernel's synchronous callback would have done, and
 * afterwards no injection from them can happen (they run under the lock).
 */
static int irqfd_deassign(struct kvm *kvm, const struct kvm_irqfd *args)
{
	struct kvm_eventfds *ev = smp_load_acquire(&kvm->eventfds);
	struct kvm_kernel_irqfd *dead = NULL, **pp;
	struct gm_eventfd efd;
	int r = gm_eventfd_get((int)args->fd, &efd);

	if (r || !ev)
		goto out;
	gm_mutex_lock(&ev->irqfds_lock, GM_LOCK_IRQFDS);
	for (pp = &ev->irqfds; *pp;) {
		struct kvm_kernel_irqfd *i = *pp;

		if (i->gsi != args->gsi || !gm_eventfd_same(&i->efd, &efd)) {
			pp = &i->next;
			continue;
		}
		struct irqfd_epoll_op op = { ev, EPOLL_CTL_DEL, i->efd.fd, NULL, true, 0 };

		irqfd_call(ev, irqfd_epoll_here, &op);
		if (op.consumed)
			irqfd_inject(kvm, i);
		*pp = i->next;
		if (i->resample)
			irqfd_resampler_del(ev, i);
		/* The last resampler of a GSI lowers its line. */
		if (i->resample && !irqfd_gsi_has_resampler(ev, i->gsi, i))
			kvm_set_irq(kvm, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, i->gsi, 0);
		i->next = dead;
		dead = i;
	}
	gm_mutex_unlock(&ev->irqfds_lock);
	while (dead) {
		struct kvm_kernel_irqfd *i = dead;

		dead = i->next;
		irqfd_free(i);
	}
out:
	gm_eventfd_put(&efd);
	return r;
}

int kvm_irqfd(struct kvm *kvm, const struct kvm_irqfd *args)
{
	if (args->flags & ~(KVM_IRQFD_FLAG_DEASSIGN | KVM_IRQFD_FLAG_RESAMPLE))
		return -EINVAL;
	if (args->flags & KVM_IRQFD_FLAG_DEASSIGN)
		return irqfd_deassign(kvm, args);
	return irqfd_assign(kvm, args);
}

bool kvm_notify_irqfd_resampler_locked(struct kvm_eventfds *ev, uint32_t gsi)
{
	bool found = false;

	lockdep_assert_held(&ev->irq_lock);
	for (struct kvm_kernel_irqfd *i = ev->resamplers; i; i = i->resample_next) {
		if (i->gsi == gsi) {
			gm_eventfd_signal(&i->resamplefd);
			found = true;
		}
	}
	return found;
}

void kvm_irqfd_notify_acked_locked(struct kvm_eventfds *ev, uint32_t gsi)
{
	bool lowered = false;

	lockdep_assert_held(&ev->irq_lock);
	for (struct kvm_kernel_irqfd *i = ev->resamplers; i; i = i->resample_next) {
		if (i->gsi != gsi)
			continue;
		/* One resampler per GSI: lower the line once, then notify all. */
		if (!lowered)
			__kvm_set_irq(ev, KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID, gsi, 0);
		lowered = true;
		gm_eventfd_signal(&i->resamplefd);
	}
}
