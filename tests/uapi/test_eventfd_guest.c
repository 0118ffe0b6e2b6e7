// SPDX-License-Identifier: MIT
/*
 * test_eventfd_guest: ioeventfd, irqfd and the irqchip with a running guest
 * (tests/guests/eventfd_guest.c, loaded through GUESTMEM_GUEST):
 *
 *  - a virtio-style doorbell: the guest writes a queue index to an MMIO
 *    address, a device thread reads the ioeventfd, answers in guest RAM and
 *    signals an irqfd, the guest's handler sees it - and no MMIO exit;
 *  - datamatch, length, PIO and CCW cases: what completes inside KVM and
 *    what exits, one by one, with the eventfd counters;
 *  - resample round trips on an edge and a level IOAPIC pin;
 *  - HLT: an exit without irqchip; with one, a sleep that interrupts end
 *    and that a signal turns into EINTR with mp_state HALTED;
 *  - MSI through a routed irqfd and KVM_SIGNAL_MSI;
 *  - KVM_IRQ_LINE_STATUS once the guest is set up, level re-delivery.
 *
 * Built twice like test_eventfd.c.  TAP; each case in its own process.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include "sysmap.h"
#include "test_eventfd.h"
#include <guestmem/guest.h> /* GUESTMEM_IRQ_PIN_VECTOR */

#define ROUNDS 200

static const char *exit_name(uint32_t r)
{
	static char buf[16];

	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_INTR: return "INTR";
	}
	snprintf(buf, sizeof(buf), "%u", r);
	return buf;
}

/* KVM_RUN (retrying EINTR) that must end with exit @reason. */
static void run_expect(struct vm *m, uint32_t reason)
{
	int r;

	do
		r = ioctl(m->vcpu, KVM_RUN, 0);
	while (r < 0 && errno == EINTR);
	if (r != 0 || m->run->exit_reason != reason) {
		char where[64] = "";

		if (m->run->exit_reason == KVM_EXIT_IO)
			snprintf(where, sizeof(where), " (port 0x%x)", m->run->io.port);
		if (m->run->exit_reason == KVM_EXIT_MMIO)
			snprintf(where, sizeof(where), " (gpa 0x%llx)",
				 (unsigned long long)m->run->mmio.phys_addr);
		FAIL("KVM_RUN: %d (%s), exit %s%s; expected exit %s", r, strerror(errno),
		     exit_name(m->run->exit_reason), where, exit_name(reason));
	}
}

/* Expect an IO exit at @port in direction @out; returns its data. */
static uint32_t run_io(struct vm *m, uint16_t port, bool out, uint8_t size)
{
	uint32_t v = 0;

	run_expect(m, KVM_EXIT_IO);
	EXPECT_EQ(m->run->io.port, port);
	EXPECT_EQ(m->run->io.direction, out ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN);
	EXPECT_EQ(m->run->io.size, size);
	memcpy(&v, (uint8_t *)m->run + m->run->io.data_offset, m->run->io.size);
	if (m->run->io.port != port)
		_exit(1); /* out of step with the guest: nothing more makes sense */
	return v;
}

static uint32_t run_result(struct vm *m)
{
	return run_io(m, EG_PORT_RESULT, true, 4);
}

static uint64_t run_mmio(struct vm *m, uint64_t gpa, uint32_t len, bool write)
{
	uint64_t v = 0;

	run_expect(m, KVM_EXIT_MMIO);
	EXPECT_EQ(m->run->mmio.phys_addr, gpa);
	EXPECT_EQ(m->run->mmio.len, len);
	EXPECT_EQ(m->run->mmio.is_write, write);
	memcpy(&v, m->run->mmio.data, len);
	return v;
}

/* A blocking read of an eventfd, with a timeout so that a failure ends. */
static uint64_t efd_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	if (poll(&p, 1, ms) != 1)
		return 0;
	return efd_take(fd);
}

static uint32_t ram_load32(struct vm *m, uint64_t gpa)
{
	return __atomic_load_n((uint32_t *)(m->ram + (gpa - EG_RAM_GPA)), __ATOMIC_RELAXED);
}

static void ram_store32(struct vm *m, uint64_t gpa, uint32_t v)
{
	__atomic_store_n((uint32_t *)(m->ram + (gpa - EG_RAM_GPA)), v, __ATOMIC_RELAXED);
}

/* ---- the doorbell ------------------------------------------------------------ */

struct device {
	struct vm *m;
	int door, irq, rounds;
	int served;
};

/* The VMM's device thread: one request per doorbell, one interrupt each. */
static void *device_main(void *arg)
{
	struct device *d = arg;

	for (int i = 0; i < d->rounds; i++) {
		uint32_t req;

		if (efd_wait(d->door, 10000) != 1)
			break; /* each ring waits for its interrupt: never coalesced */
		req = ram_load32(d->m, EG_REQ_GPA + 4 * (uint64_t)(i % 1024));
		ram_store32(d->m, EG_ANS_GPA + 4 * (uint64_t)(i % 1024), EG_ANSWER(req));
		efd_signal(d->irq, 1);
		d->served++;
	}
	return NULL;
}

static void doorbell(uint32_t gsi)
{
	struct vm m;
	struct device d = { .m = &m, .rounds = ROUNDS };
	pthread_t t;

	vm_setup(&m, true, EG_DOORBELL, ROUNDS, gsi);
	d.door = new_efd();
	d.irq = new_efd();
	EXPECT_RET(ioev(m.fd, EG_DOORBELL_GPA, 4, d.door, 0, 0), 0);
	EXPECT_RET(irqfd(m.fd, d.irq, gsi, 0, 0), 0);
	ASSERT_TRUE(pthread_create(&t, NULL, device_main, &d) == 0);
	EXPECT_EQ(run_result(&m), 0);	   /* answers that did not match */
	EXPECT_EQ(run_result(&m), ROUNDS); /* interrupts the handler saw */
	run_expect(&m, KVM_EXIT_SHUTDOWN);
	pthread_join(t, NULL);
	EXPECT_EQ(d.served, ROUNDS);
	vm_teardown(&m);
}

static void test_doorbell_edge(void)
{
	doorbell(5);
}

static void test_doorbell_level(void)
{
	doorbell(20);
}

/* ---- matching rules ---------------------------------------------------------------- */

static void test_matching(void)
{
	const uint32_t DM = KVM_IOEVENTFD_FLAG_DATAMATCH, PIO = KVM_IOEVENTFD_FLAG_PIO;
	int a = new_efd(), b = new_efd(), c = new_efd(), w = new_efd(), p = new_efd();
	int d = new_efd();
	struct vm m;

	vm_setup(&m, false, EG_MATCHING, 0, 0);
	EXPECT_RET(ioev(m.fd, EG_MMIO_A, 4, a, DM, 0x42), 0);
	EXPECT_RET(ioev(m.fd, EG_MMIO_B, 8, b, DM, 0x1122334455667788ULL), 0);
	EXPECT_RET(ioev(m.fd, EG_MMIO_C, 0, c, 0, 0), 0);
	EXPECT_RET(ioev(m.fd, EG_PIO_W, 2, w, PIO, 0), 0);
	EXPECT_RET(ioev(m.fd, EG_PIO_ANY, 0, p, PIO, 0), 0);
	EXPECT_RET(ioev(m.fd, EG_MMIO_D, 4, d, KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, 0), 0);
	/* The written value is zero-extended and compared with all 64 bits. */
	EXPECT_RET(ioev(m.fd, EG_MMIO_E, 4, d, DM, 0x100000042ULL), 0);

	EXPECT_EQ(run_mmio(&m, EG_MMIO_A, 4, true), 0x43);
	EXPECT_EQ(run_mmio(&m, EG_MMIO_A, 2, true), 0x42);
	EXPECT_EQ(run_mmio(&m, EG_MMIO_C + 4, 4, true), 5);
	EXPECT_EQ(run_mmio(&m, EG_MMIO_E, 4, true), 0x42);
	EXPECT_EQ(run_io(&m, EG_PORT_MARK, true, 1), 1);
	EXPECT_EQ(efd_take(a), 1);
	EXPECT_EQ(efd_take(b), 1);
	EXPECT_EQ(efd_take(c), 4); /* widths 1, 2, 4 and 8 */
	run_mmio(&m, EG_MMIO_A, 4, false);
	memcpy(m.run->mmio.data, &(uint32_t){ 0x99 }, 4);
	EXPECT_EQ(run_io(&m, EG_PIO_W, true, 1), 1);
	run_io(&m, EG_PIO_W, false, 2);
	memcpy((uint8_t *)m.run + m.run->io.data_offset, &(uint16_t){ 0x1234 }, 2);
	EXPECT_EQ(efd_take(w), 1);
	EXPECT_EQ(efd_take(p), 1);
	EXPECT_RET(ioev(m.fd, EG_MMIO_A, 4, a, DM | KVM_IOEVENTFD_FLAG_DEASSIGN, 0x42), 0);
	EXPECT_EQ(run_mmio(&m, EG_MMIO_D, 4, true), 7);
	EXPECT_EQ(run_mmio(&m, EG_MMIO_A, 4, true), 0x42);
	EXPECT_EQ(run_result(&m), 0); /* the guest's own checks */
	EXPECT_EQ(efd_take(a), 0);
	EXPECT_EQ(efd_take(d), 0); /* the CCW bus never fires on x86 */
	vm_teardown(&m);
}

/* The VMM closes its eventfd: the registration still signals (our dup). */
static void test_doorbell_after_close(void)
{
	struct vm m;
	int door = new_efd(), keep = dup(door);

	vm_setup(&m, false, EG_DOORBELL_MMIO_EXIT, 3, 0);
	EXPECT_RET(ioev(m.fd, EG_DOORBELL_GPA, 4, door, 0, 0), 0);
	close(door);
	EXPECT_EQ(run_result(&m), 0);
	EXPECT_EQ(efd_take(keep), 3);
	vm_teardown(&m);
}

/* ---- resample ------------------------------------------------------------------------ */

struct resampler {
	int efd, rfd, rounds, acked;
};

/* Signal, wait for the guest's EOI through the resamplefd, again. */
static void *resampler_main(void *arg)
{
	struct resampler *r = arg;

	for (int i = 0; i < r->rounds; i++) {
		efd_signal(r->efd, 1);
		if (efd_wait(r->rfd, 10000) != 1)
			break;
		r->acked++;
	}
	return NULL;
}

static void resample(uint32_t gsi)
{
	struct resampler rs = { .efd = new_efd(), .rfd = new_efd(), .rounds = ROUNDS };
	struct vm m;
	pthread_t t;

	vm_setup(&m, true, EG_RESAMPLE, gsi, ROUNDS);
	EXPECT_RET(irqfd(m.fd, rs.efd, gsi, KVM_IRQFD_FLAG_RESAMPLE, rs.rfd), 0);
	run_io(&m, EG_PORT_READY, true, 1);
	ASSERT_TRUE(pthread_create(&t, NULL, resampler_main, &rs) == 0);
	EXPECT_EQ(run_result(&m), ROUNDS);
	EXPECT_EQ(run_result(&m), GUESTMEM_IRQ_PIN_VECTOR(gsi));
	pthread_join(t, NULL);
	EXPECT_EQ(rs.acked, ROUNDS);
	/* The line is low after the last EOI: a user assert is delivered. */
	EXPECT_EQ(line_status(m.fd, gsi, 1), 1);
	vm_teardown(&m);
}

static void test_resample_edge_pin(void)
{
	resample(10);
}

static void test_resample_level_pin(void)
{
	resample(17);
}

/* ---- HLT ------------------------------------------------------------------------------------ */

static void test_hlt_exit(void)
{
	struct kvm_regs regs;
	struct vm m;

	vm_setup(&m, false, EG_HLT, 0, 0);
	run_expect(&m, KVM_EXIT_HLT);
	EXPECT_EQ(m.run->if_flag, 0);
	ASSERT_TRUE(ioctl(m.vcpu, KVM_GET_REGS, &regs) == 0);
	EXPECT_EQ(regs.rip, 0xfff0 + 1); /* past the instruction at the exit */
	EXPECT_EQ(run_result(&m), 1);
	run_expect(&m, KVM_EXIT_SHUTDOWN);
	vm_teardown(&m);
}

struct kicker {
	pthread_t target;
	pid_t tid; /* the target's thread id */
};

/* Signal the target once it sleeps inside KVM_RUN (a signal sent earlier is
 * handled before KVM_RUN and lost). */
static void *kicker_main(void *arg)
{
	struct kicker *k = arg;

	ASSERT_WAIT(test_thread_blocked(k->tid), 10000);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

/*
 * KVM_RUN until a signal ends it with the guest halted (-EINTR, INTR).  The
 * kick comes once the caller waits in KVM_RUN; if the guest had not reached
 * its halt yet, it has moved on, and the next round sees it halted.
 */
static void run_until_halted_eintr(struct vm *m)
{
	struct kvm_mp_state mp = { 0 };

	for (int i = 0; i < 200 && mp.mp_state != KVM_MP_STATE_HALTED; i++) {
		struct kicker k = { .target = pthread_self(), .tid = gettid() };
		pthread_t t;

		ASSERT_TRUE(pthread_create(&t, NULL, kicker_main, &k) == 0);
		EXPECT_ERRNO(ioctl(m->vcpu, KVM_RUN, 0), EINTR);
		EXPECT_EQ(m->run->exit_reason, KVM_EXIT_INTR);
		pthread_join(t, NULL);
		ASSERT_TRUE(ioctl(m->vcpu, KVM_GET_MP_STATE, &mp) == 0);
	}
	EXPECT_EQ(mp.mp_state, KVM_MP_STATE_HALTED);
}

static void test_halt_wake(void)
{
	struct kvm_mp_state runnable = { KVM_MP_STATE_RUNNABLE };
	struct vm m;

	sigusr1_interrupts();
	vm_setup(&m, true, EG_HALT_WAKE, 0, 0);
	run_io(&m, EG_PORT_READY, true, 1);
	run_until_halted_eintr(&m);
	/* The guest set up its IOAPIC: pin 7 is edge, unmasked, delivered. */
	EXPECT_EQ(line_status(m.fd, 7, 1), 1);
	EXPECT_EQ(line_status(m.fd, 7, 0), 1);
	EXPECT_EQ(run_result(&m), GUESTMEM_IRQ_PIN_VECTOR(7));
	/* Halted again, with nothing pending: KVM_SET_MP_STATE ends it. */
	run_until_halted_eintr(&m);
	EXPECT_RET(ioctl(m.vcpu, KVM_SET_MP_STATE, &runnable), 0);
	EXPECT_EQ(run_result(&m), 1);
	run_expect(&m, KVM_EXIT_SHUTDOWN);
	vm_teardown(&m);
}

/* ---- MSI ------------------------------------------------------------------------------- */

static void test_msi(void)
{
	struct {
		struct kvm_irq_routing hdr;
		struct kvm_irq_routing_entry e[1];
	} rt = { .hdr = { .nr = 1 } };
	struct kvm_msi msi = { .address_lo = 0xfee00000u, .data = 0x46 };
	int efd = new_efd();
	struct vm m;

	rt.e[0].gsi = 40;
	rt.e[0].type = KVM_IRQ_ROUTING_MSI;
	rt.e[0].u.msi.address_lo = 0xfee00000u; /* destination APIC id 0 */
	rt.e[0].u.msi.data = 0x45;
	vm_setup(&m, true, EG_MSI, 0, 0);
	EXPECT_RET(ioctl(m.fd, KVM_SET_GSI_ROUTING, &rt), 0);
	EXPECT_RET(irqfd(m.fd, efd, 40, 0, 0), 0);
	run_io(&m, EG_PORT_READY, true, 1);
	efd_signal(efd, 1);
	EXPECT_EQ(run_result(&m), 0x45); /* the MSI data's vector */
	EXPECT_RET(ioctl(m.fd, KVM_SIGNAL_MSI, &msi), 1);
	EXPECT_EQ(run_result(&m), 0x46);
	run_expect(&m, KVM_EXIT_SHUTDOWN);
	vm_teardown(&m);
}

/* ---- KVM_IRQ_LINE after set-up, level re-delivery --------------------------------- */

static void test_line_delivery(void)
{
	struct vm m;

	vm_setup(&m, true, EG_LINE, 0, 0);
	run_io(&m, EG_PORT_READY, true, 1);
	EXPECT_EQ(m.run->if_flag, 1); /* a handler is STI */
	EXPECT_EQ(line_status(m.fd, 5, 1), 1);	/* PIC masked (-1) + IOAPIC 1 */
	EXPECT_EQ(line_status(m.fd, 5, 1), 0);	/* no new edge while high: coalesced */
	EXPECT_EQ(line_status(m.fd, 5, 0), 1);
	EXPECT_EQ(line_status(m.fd, 17, 1), 1);	/* level: delivered, remote IRR */
	EXPECT_EQ(line_status(m.fd, 17, 1), -1); /* awaiting EOI */
	/* The higher priority class first: pin 17's vector 0x31 before pin 5's 0x25. */
	EXPECT_EQ(run_io(&m, EG_PORT_IRQ, true, 4), GUESTMEM_IRQ_PIN_VECTOR(17));
	EXPECT_EQ(m.run->if_flag, 0);			 /* inside the handler */
	/* EOI with the line still high: delivered again. */
	EXPECT_EQ(run_io(&m, EG_PORT_IRQ, true, 4), GUESTMEM_IRQ_PIN_VECTOR(17));
	EXPECT_EQ(line_status(m.fd, 17, 0), 1);
	EXPECT_EQ(run_io(&m, EG_PORT_IRQ, true, 4), GUESTMEM_IRQ_PIN_VECTOR(5));
	EXPECT_EQ(run_result(&m), 3); /* and the registers were restored (no 0x100) */
	EXPECT_EQ(m.run->if_flag, 1);
	run_expect(&m, KVM_EXIT_SHUTDOWN);
	vm_teardown(&m);
}

int main(int argc, char **argv)
{
	test_add_fn("doorbell, edge pin", test_doorbell_edge, 60);
	test_add_fn("doorbell, level pin", test_doorbell_level, 60);
	test_add_fn("datamatch, length, PIO, CCW", test_matching, 60);
	test_add_fn("doorbell after the VMM closed its fd", test_doorbell_after_close, 60);
	test_add_fn("resample round trips, edge pin", test_resample_edge_pin, 60);
	test_add_fn("resample round trips, level pin", test_resample_level_pin, 60);
	test_add_fn("HLT exit without irqchip", test_hlt_exit, 60);
	test_add_fn("halt: interrupt, signal, mp_state", test_halt_wake, 60);
	test_add_fn("MSI: routed irqfd, KVM_SIGNAL_MSI", test_msi, 60);
	test_add_fn("irq line delivery, level re-delivery", test_line_delivery, 60);
	if (!getenv("GUESTMEM_GUEST"))
		test_skip_all("GUESTMEM_GUEST is not set");
	return test_main(argc, argv);
}
