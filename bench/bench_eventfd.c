/* SPDX-License-Identifier: MIT */
/*
 * ioeventfd and irqfd benchmarks (issue #5), each a ratio against a
 * baseline measured in the same run:
 *  - doorbells per second: a guest MMIO write that an ioeventfd completes
 *    inside KVM (a device thread drains the eventfd) vs the same write as a
 *    KVM_EXIT_MMIO that the VMM handles and re-enters;
 *  - irqfd delivery latency, p50 and p99: a device thread signals the irqfd
 *    of a halted guest, the guest's handler reads the clock; vs the wake-up
 *    latency of a plain thread blocked in read() on an eventfd.
 * The guests are C functions in this process; the ioeventfd, irqchip and
 * irqfd set-up goes through the same core entry points as the VM ioctls.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#include "bench.h"
#include "core/kvm_host.h"
#include "vcpu/eventfd.h"
#include "vcpu/irqchip.h"

#define DOORBELL_GPA 0xd0000000ULL
#define DOORBELLS 20000
#define IRQ_SAMPLES 2000
#define IRQ_GSI 5

struct bench_guest {
	uint64_t rounds;
	bool ready;	     /* atomic: the handler is set (IOAPIC unmasked) */
	uint64_t count;	     /* interrupts seen; atomic */
	uint64_t t_handler; /* clock at the last handler entry; atomic */
};

/* ---- VM set-up --------------------------------------------------------- */

struct evm {
	struct guestmem_vm *vm;
	struct guestmem_vcpu *vcpu;
	struct kvm *kvm;
};

static int evm_create(struct evm *e, bool irqchip, guestmem_vcpu_guest_fn fn, void *opaque)
{
	int r;

	memset(e, 0, sizeof(*e));
	r = guestmem_vm_create(0, &e->vm);
	if (r)
		return r;
	e->kvm = (struct kvm *)e->vm; /* struct guestmem_vm is struct kvm */
	if (irqchip && (r = kvm_vm_ioctl_create_irqchip(e->kvm)))
		return r;
	r = guestmem_vcpu_create(e->vm, 0, &e->vcpu);
	if (!r)
		r = guestmem_vcpu_set_guest(e->vcpu, fn, opaque);
	return r;
}

static void evm_destroy(struct evm *e)
{
	guestmem_vcpu_put(e->vcpu);
	guestmem_vm_put(e->vm);
}

/* bench_run_vcpu()'s exit handler here: count MMIO exits (a device model would run). */
static int count_mmio_exit(struct kvm_run *run, void *mmio_exits)
{
	if (run->exit_reason != KVM_EXIT_MMIO)
		return -EPROTO;
	(*(uint64_t *)mmio_exits)++;
	return 0;
}

/* ---- doorbells ------------------------------------------------------------- */

static void guest_doorbells(struct guestmem_guest *g)
{
	struct bench_guest *b = guestmem_guest_opaque(g);

	for (uint32_t i = 0; i < b->rounds; i++)
		guestmem_guest_write32(g, DOORBELL_GPA, i);
}

struct drain {
	int fd;
	uint64_t want, got; /* got: atomic */
};

static void *drain_main(void *arg)
{
	struct drain *d = arg;
	uint64_t v, got = 0;

	while (got < d->want && read(d->fd, &v, sizeof(v)) == sizeof(v))
		__atomic_store_n(&d->got, got += v, __ATOMIC_RELEASE);
	return NULL;
}

/* Let the device thread see every doorbell (2 s at most), then end it. */
static int drain_finish(struct drain *d, pthread_t t)
{
	uint64_t t0 = bench_now_ns(), unblock = DOORBELLS;
	int r = 0;

	while (__atomic_load_n(&d->got, __ATOMIC_ACQUIRE) < d->want &&
	       bench_now_ns() - t0 < 2000000000ULL)
		usleep(100);
	if (__atomic_load_n(&d->got, __ATOMIC_ACQUIRE) < d->want) {
		r = -EPROTO; /* doorbells went missing */
		if (write(d->fd, &unblock, sizeof(unblock)) < 0)
			r = -errno;
	}
	pthread_join(t, NULL);
	return r;
}

/* Doorbells per second, with an ioeventfd (@ioeventfd) or as exits. */
static int bench_doorbell_rate(bool ioeventfd, double *rate)
{
	struct bench_guest b = { .rounds = DOORBELLS };
	struct drain d = { .fd = -1, .want = DOORBELLS };
	struct kvm_ioeventfd io = { .addr = DOORBELL_GPA, .len = 4 };
	uint64_t exits = 0, t0;
	pthread_t t;
	struct evm e;
	int r = evm_create(&e, false, guest_doorbells, &b);

	if (!r && ioeventfd) {
		d.fd = io.fd = eventfd(0, EFD_CLOEXEC);
		r = d.fd < 0 ? -errno : kvm_ioeventfd(e.kvm, &io);
		if (!r && (r = -pthread_create(&t, NULL, drain_main, &d)))
			d.want = 0;
	}
	t0 = bench_now_ns();
	if (!r)
		r = bench_run_vcpu(e.vcpu, NULL, count_mmio_exit, &exits);
	*rate = DOORBELLS / ((double)(bench_now_ns() - t0) / 1e9) / 1e6;
	if (ioeventfd && d.want) {
		int r2 = drain_finish(&d, t);

		if (!r && (r2 || exits))
			r = r2 ? r2 : -EPROTO; /* a doorbell exited */
	}
	if (!ioeventfd && !r && exits != DOORBELLS)
		r = -EPROTO;
	evm_destroy(&e);
	if (d.fd >= 0)
		close(d.fd);
	return r;
}

/* ---- irqfd latency ----------------------------------------------------------- */

static void latency_handler(struct guestmem_guest *g, uint32_t vector)
{
	struct bench_guest *b = guestmem_guest_opaque(g);

	__atomic_store_n(&b->t_handler, bench_now_ns(), __ATOMIC_RELAXED);
	guestmem_guest_eoi(g, vector);
	__atomic_store_n(&b->count, b->count + 1, __ATOMIC_RELEASE);
}

static void guest_halt_loop(struct guestmem_guest *g)
{
	struct bench_guest *b = guestmem_guest_opaque(g);

	guestmem_guest_set_irq_handler(g, latency_handler);
	/* Edges sent before this are dropped by the masked pin, as on hardware. */
	__atomic_store_n(&b->ready, true, __ATOMIC_RELEASE);
	while (__atomic_load_n(&b->count, __ATOMIC_ACQUIRE) < b->rounds)
		guestmem_guest_halt(g);
}

struct irq_device {
	struct bench_guest *b;
	int fd;
	double *ns;
	int n;
	pthread_t runner; /* the thread in KVM_RUN */
	bool stop;	  /* atomic: an interrupt was lost */
};

/* Wait (2 s at most) until the guest has handled more than @n interrupts. */
static bool irq_wait_count(struct bench_guest *b, uint64_t n)
{
	uint64_t t0 = bench_now_ns();

	while (__atomic_load_n(&b->count, __ATOMIC_ACQUIRE) <= n)
		if (bench_now_ns() - t0 > 2000000000ULL)
			return false;
		else
			sched_yield();
	return true;
}

/* Signal the irqfd of a halted guest, once per handled interrupt. */
static void *irq_device_main(void *arg)
{
	struct irq_device *d = arg;

	for (int i = 0; i < 20000 && !__atomic_load_n(&d->b->ready, __ATOMIC_ACQUIRE); i++)
		usleep(100);
	for (int i = 0; i < d->n; i++) {
		uint64_t t0, one = 1;

		usleep(20); /* let the guest go back to sleep in HLT */
		t0 = bench_now_ns();
		if (write(d->fd, &one, sizeof(one)) != sizeof(one) ||
		    !irq_wait_count(d->b, (uint64_t)i)) {
			/* Lost: the guest stays halted; end KVM_RUN with a signal. */
			__atomic_store_n(&d->stop, true, __ATOMIC_RELEASE);
			pthread_kill(d->runner, SIGUSR2);
			break;
		}
		d->ns[i] = (double)(__atomic_load_n(&d->b->t_handler, __ATOMIC_RELAXED) - t0);
	}
	return NULL;
}

static int bench_irqfd_latency(double *ns, int n)
{
	struct bench_guest b = { .rounds = (uint64_t)n };
	struct irq_device d = { .b = &b, .ns = ns, .n = n };
	struct kvm_irqfd irq = { .gsi = IRQ_GSI };
	uint64_t exits = 0;
	pthread_t t;
	struct evm e;
	int r = evm_create(&e, true, guest_halt_loop, &b);

	d.fd = eventfd(0, EFD_CLOEXEC);
	irq.fd = (uint32_t)d.fd;
	if (!r)
		r = d.fd < 0 ? -errno : kvm_irqfd(e.kvm, &irq);
	d.runner = pthread_self();
	if (!r && !(r = -pthread_create(&t, NULL, irq_device_main, &d))) {
		r = bench_run_vcpu(e.vcpu, &d.stop, count_mmio_exit, &exits);
		pthread_join(t, NULL);
	}
	evm_destroy(&e);
	if (d.fd >= 0)
		close(d.fd);
	return r;
}

/* The baseline: a thread blocked in read() on an eventfd, woken by a write. */
struct wake {
	int fd;
	uint64_t t1;
	int n;
};

static void *wake_main(void *arg)
{
	struct wake *w = arg;
	uint64_t v;

	for (int i = 0; i < w->n; i++) {
		if (read(w->fd, &v, sizeof(v)) != sizeof(v))
			return NULL;
		__atomic_store_n(&w->t1, bench_now_ns(), __ATOMIC_RELEASE);
	}
	return NULL;
}

static int bench_eventfd_wakeup(double *ns, int n)
{
	struct wake w = { .fd = eventfd(0, EFD_CLOEXEC), .n = n };
	pthread_t t;

	if (w.fd < 0 || pthread_create(&t, NULL, wake_main, &w))
		return -errno;
	for (int i = 0; i < n; i++) {
		uint64_t one = 1, t0;

		usleep(20); /* the reader is asleep again */
		__atomic_store_n(&w.t1, 0, __ATOMIC_RELAXED);
		t0 = bench_now_ns();
		if (write(w.fd, &one, sizeof(one)) != sizeof(one))
			break;
		while (!__atomic_load_n(&w.t1, __ATOMIC_ACQUIRE))
			sched_yield();
		ns[i] = (double)(w.t1 - t0);
	}
	pthread_join(t, NULL);
	close(w.fd);
	return 0;
}

static void bench_on_signal(int sig)
{
	(void)sig;
}

static int bench_eventfd(void)
{
	double ioev = 0, mmio = 0, *lat = calloc(IRQ_SAMPLES, sizeof(double));
	double *base = calloc(IRQ_SAMPLES, sizeof(double));
	struct sigaction sa = { .sa_handler = bench_on_signal }, old;
	int r = lat && base ? 0 : -ENOMEM;

	sigaction(SIGUSR2, &sa, &old); /* irq_device_main's way out of KVM_RUN */

	if (!r)
		r = bench_doorbell_rate(false, &mmio);
	if (!r)
		r = bench_doorbell_rate(true, &ioev);
	if (!r)
		bench_row("ioeventfd doorbell vs MMIO exit (M/s)", ioev, mmio, "M/s",
			  "> 1: no exit per doorbell");
	if (!r)
		r = bench_irqfd_latency(lat, IRQ_SAMPLES);
	if (!r)
		r = bench_eventfd_wakeup(base, IRQ_SAMPLES);
	if (!r) {
		double p50 = bench_percentile(lat, IRQ_SAMPLES, 50) / 1e3;
		double p99 = bench_percentile(lat, IRQ_SAMPLES, 99) / 1e3;

		bench_row("irqfd signal->handler p50 vs eventfd wake-up", p50,
			  bench_percentile(base, IRQ_SAMPLES, 50) / 1e3, "us", "2 wake-ups: watcher, vCPU");
		bench_row("irqfd signal->handler p99 vs eventfd wake-up", p99,
			  bench_percentile(base, IRQ_SAMPLES, 99) / 1e3, "us", "2 wake-ups: watcher, vCPU");
	}
	sigaction(SIGUSR2, &old, NULL);
	free(lat);
	free(base);
	return r;
}

const struct bench_item bench_eventfd_items[] = {
	{ "doorbell-irqfd", bench_eventfd },
	{ NULL, NULL },
};
