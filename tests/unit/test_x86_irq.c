/* SPDX-License-Identifier: MIT */
/*
 * Interrupts from the in-kernel irqchip to machine-code guests: every
 * source (KVM_SIGNAL_MSI, KVM_IRQ_LINE through the IOAPIC, IPIs) arrives
 * at the IDT vector it names -- the MSI's data, the IOAPIC redirection
 * entry the guest programmed, the ICR -- through the LAPIC's IRR, ISR and
 * priority, and the guest's EOI ends it (and, for a level-triggered pin,
 * reaches the IOAPIC).  Each handler stub loads its vector, EOIs through
 * the xAPIC page and reports the vector with an OUT to port 0x11.
 * The VM: tests/unit/x86_vm.h.
 */
#include <sys/eventfd.h>

#include "x86_vm.h"

#define IOAPIC_GPA 0xfec00000ULL
#define COMMON 0x13000ULL  /* the handlers' common tail */
#define STUBS 0x14000ULL   /* 16 bytes of stub per vector */
#define REPORT_PORT 0x11

/* A tiny emitter for the guest code. */
struct code {
	uint8_t b[512];
	unsigned n;
};

static void emit(struct code *c, const void *p, unsigned len)
{
	ASSERT_TRUE(c->n + len <= sizeof(c->b));
	memcpy(c->b + c->n, p, len);
	c->n += len;
}

static void emit8(struct code *c, uint8_t v)
{
	emit(c, &v, 1);
}

static void emit32(struct code *c, uint32_t v)
{
	emit(c, &v, 4);
}

/* movl $val, addr (through %rcx; addr below 4 GiB). */
static void emit_store32(struct code *c, uint32_t addr, uint32_t val)
{
	emit8(c, 0xb9); /* mov $addr, %ecx */
	emit32(c, addr);
	emit(c, (uint8_t[]){ 0xc7, 0x01 }, 2); /* movl $val, (%rcx) */
	emit32(c, val);
}

/* mov addr, %eax; out %eax, PORT */
static void emit_report_load(struct code *c, uint32_t addr)
{
	emit8(c, 0xb9);
	emit32(c, addr);
	emit(c, (uint8_t[]){ 0x8b, 0x01 }, 2);		   /* mov (%rcx), %eax */
	emit(c, (uint8_t[]){ 0x66, 0xba, PORT, 0x00, 0xef }, 5); /* mov $PORT, %dx; out */
}

/* out $val (32 bits) to PORT */
static void emit_out(struct code *c, uint32_t val)
{
	emit8(c, 0xb8);
	emit32(c, val);
	emit(c, (uint8_t[]){ 0x66, 0xba, PORT, 0x00, 0xef }, 5);
}

/* hlt; jmp back to it */
static void emit_hlt_loop(struct code *c)
{
	emit(c, (uint8_t[]){ 0xf4, 0xeb, 0xfd }, 3);
}

/* IOAPIC redirection entry of @pin through IOREGSEL/IOWIN. */
static void emit_ioapic_redir(struct code *c, unsigned pin, uint64_t e)
{
	emit_store32(c, IOAPIC_GPA, 0x10 + 2 * pin);
	emit_store32(c, IOAPIC_GPA + 0x10, (uint32_t)e);
	emit_store32(c, IOAPIC_GPA, 0x10 + 2 * pin + 1);
	emit_store32(c, IOAPIC_GPA + 0x10, (uint32_t)(e >> 32));
}

/* The IDT gate of @vector to its stub, and the stub: mov $vector, %eax; jmp COMMON. */
static void set_handler(struct vm *m, unsigned vector)
{
	uint64_t stub = STUBS + 16 * vector;
	uint8_t gate[16] = { (uint8_t)stub, (uint8_t)(stub >> 8), 0x08, 0x00, 0x00, 0x8e,
			     (uint8_t)(stub >> 16), (uint8_t)(stub >> 24) };
	int32_t rel = (int32_t)(COMMON - (stub + 10));

	memcpy(m->mem + 0x5000 + 16 * vector, gate, sizeof(gate));
	m->mem[stub] = 0xb8;
	memcpy(m->mem + stub + 1, &(uint32_t){ vector }, 4);
	m->mem[stub + 5] = 0xe9;
	memcpy(m->mem + stub + 6, &rel, 4);
}

/* EOI through the xAPIC page, report the vector (in %eax), iretq. */
static void set_common(struct vm *m)
{
	struct code c = { .n = 0 };

	emit_store32(&c, (uint32_t)APIC_GPA + 0xb0, 0);
	emit(&c, (uint8_t[]){ 0x66, 0xba, REPORT_PORT, 0x00, 0xef, 0x48, 0xcf }, 7);
	memcpy(m->mem + COMMON, c.b, c.n);
}

static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off)
{
	uint32_t v;

	memcpy(&v, l->regs + off, 4);
	return v;
}

/* The LAPIC software-enabled (SPIV 0x1ff), as a guest kernel leaves it. */
static void lapic_enable(int vcpu)
{
	struct kvm_lapic_state l;

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(l.regs + 0xf0, &(uint32_t){ 0x1ff }, 4);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_SET_LAPIC, &l), 0);
}

/* A VM whose guest runs @c at CODE with handlers for @vectors. */
static void vm_setup(struct vm *m, const struct code *c, const unsigned *vectors, unsigned n)
{
	vm_open(m);
	/* The IOAPIC page too (the 2 MiB below the APIC's). */
	put64(m->mem, 0x4000 + 8 * ((IOAPIC_GPA >> 21) & 0x1ff), IOAPIC_GPA | 0x83);
	memcpy(m->mem + CODE, c->b, c->n);
	set_common(m);
	for (unsigned i = 0; i < n; i++)
		set_handler(m, vectors[i]);
	lapic_enable(m->vcpu);
	vm_start(m, CODE);
}

/* Run @vcpu to the next handler report and return the vector. */
static uint32_t next_vector(struct vm *m, int vcpu, struct kvm_run *run)
{
	uint32_t v;

	ASSERT_EQ(guestmem_sys_ioctl(vcpu, KVM_RUN, 0), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(run->io.port, REPORT_PORT);
	memcpy(&v, (uint8_t *)run + run->io.data_offset, 4);
	(void)m;
	return v;
}

static int signal_msi(struct vm *m, uint32_t dest, uint32_t data)
{
	struct kvm_msi msi = { .address_lo = 0xfee00000u | dest << 12, .data = data };

	return guestmem_sys_ioctl(m->fd, KVM_SIGNAL_MSI, &msi);
}

static int line_status(struct vm *m, uint32_t gsi, uint32_t level)
{
	struct kvm_irq_level l = { .irq = gsi, .level = level };

	ASSERT_EQ(guestmem_sys_ioctl(m->fd, KVM_IRQ_LINE_STATUS, &l), 0);
	return l.status;
}

/* sti; report 1 ("ready"); hlt loop. */
static void ready_then_halt(struct code *c)
{
	emit8(c, 0xfb);
	emit_out(c, 1);
	emit_hlt_loop(c);
}

/* An MSI arrives at its data's vector; the EOI ends it (ISR empty, nothing stuck). */
TEST_TIMEOUT(msi_arrives_at_its_vector_and_eoi_ends_it, 30)
{
	static const unsigned vectors[] = { 0x51, 0x52 };
	struct kvm_lapic_state l;
	struct code c = { .n = 0 };
	struct vm m;

	ready_then_halt(&c);
	vm_setup(&m, &c, vectors, 2);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x51), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x51);
	/* The handler's EOI came before its report. */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	for (unsigned i = 0; i < 8; i++) {
		ASSERT_EQ(lapic_reg(&l, 0x100 + 0x10 * i), 0);
		ASSERT_EQ(lapic_reg(&l, 0x200 + 0x10 * i), 0);
	}
	ASSERT_EQ(signal_msi(&m, 0, 0x52), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x52);
	vm_close(&m);
}

/* Several pending: the highest priority class first, as the LAPIC orders them. */
TEST_TIMEOUT(pending_vectors_go_highest_first, 30)
{
	static const unsigned vectors[] = { 0x31, 0x45, 0x62 };
	struct code c = { .n = 0 };
	struct vm m;

	ready_then_halt(&c);
	vm_setup(&m, &c, vectors, 3);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x31), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x62), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x45), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x62);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x45);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x31);
	vm_close(&m);
}

/* TPR holds back the vectors of its class and below; they stay in IRR until it drops. */
TEST_TIMEOUT(tpr_holds_back_lower_classes, 30)
{
	static const unsigned vectors[] = { 0x45, 0x62 };
	struct kvm_lapic_state l;
	struct code c = { .n = 0 };
	struct vm m;

	ready_then_halt(&c);
	vm_setup(&m, &c, vectors, 2);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	memcpy(l.regs + 0x80, &(uint32_t){ 0x50 }, 4); /* TPR */
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_LAPIC, &l), 0);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x45), 1);
	ASSERT_EQ(signal_msi(&m, 0, 0x62), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x62);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_LAPIC, &l), 0);
	ASSERT_EQ(lapic_reg(&l, 0x220), 1U << 5); /* IRR: 0x45 still pending */
	ASSERT_EQ(lapic_reg(&l, 0x230), 0);
	ASSERT_EQ(lapic_reg(&l, 0xa0), 0x50);	   /* PPR = TPR, nothing in service */
	/* Lowering TPR lets it through, to the halted guest too. */
	memcpy(l.regs + 0x80, &(uint32_t){ 0x30 }, 4);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_SET_LAPIC, &l), 0);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x45);
	vm_close(&m);
}

/*
 * IOAPIC pins arrive at the vector of the redirection entry the guest
 * programmed; an edge pin coalesces while its line stays high; a level pin
 * sets remote IRR until the EOI, which re-delivers while the line is high.
 */
TEST_TIMEOUT(ioapic_pins_arrive_at_their_redirection_vectors, 30)
{
	static const unsigned vectors[] = { 0x40, 0x62, 0x71 };
	struct code c = { .n = 0 };
	struct vm m;

	emit_store32(&c, IOAPIC_GPA, 1); /* the version register */
	emit_report_load(&c, IOAPIC_GPA + 0x10);
	emit_ioapic_redir(&c, 20, 0x62);		 /* edge, fixed, physical dest 0 */
	emit_ioapic_redir(&c, 18, 0x71 | 1u << 15);	 /* level */
	emit_store32(&c, IOAPIC_GPA, 0x10 + 2 * 18);	 /* read pin 18 back */
	emit_report_load(&c, IOAPIC_GPA + 0x10);
	ready_then_halt(&c);
	vm_setup(&m, &c, vectors, 3);
	ASSERT_EQ(next_out(&m), 0x00170011); /* 24 pins, version 0x11 */
	ASSERT_EQ(next_out(&m), 0x71 | 1u << 15);
	ASSERT_EQ(next_out(&m), 1);

	ASSERT_EQ(line_status(&m, 20, 1), 1);
	ASSERT_EQ(line_status(&m, 20, 1), 0); /* no new edge: coalesced */
	ASSERT_EQ(line_status(&m, 20, 0), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x62);

	ASSERT_EQ(line_status(&m, 18, 1), 1);
	ASSERT_EQ(line_status(&m, 18, 1), -1); /* remote IRR: awaiting the EOI */
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x71);
	/* That EOI found the line high: delivered again. */
	ASSERT_EQ(line_status(&m, 18, 0), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x71);
	/* This EOI found it low: no third one. */
	ASSERT_EQ(signal_msi(&m, 0, 0x40), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x40);
	vm_close(&m);
}

/* A masked pin is not delivered; unmasking a level pin whose line is high is. */
TEST_TIMEOUT(ioapic_masked_level_pin_fires_when_unmasked, 30)
{
	static const unsigned vectors[] = { 0x72 };
	struct code c = { .n = 0 };
	struct vm m;

	emit_ioapic_redir(&c, 17, 0x72 | 1u << 15 | 1u << 16); /* level, masked */
	emit8(&c, 0xfb);
	emit_out(&c, 1);
	emit_ioapic_redir(&c, 17, 0x72 | 1u << 15);	      /* unmask */
	emit_hlt_loop(&c);
	vm_setup(&m, &c, vectors, 1);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(line_status(&m, 17, 1), -1); /* masked */
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x72);
	ASSERT_EQ(line_status(&m, 17, 0), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x72); /* the EOI re-delivered it */
	vm_close(&m);
}

/*
 * A resample irqfd on a level pin: the guest's EOI (a KVM_RUN-side LAPIC
 * write) lowers the line and signals the resamplefd, and the pin is not
 * delivered again until the next signal.
 */
TEST_TIMEOUT(resample_irqfd_acked_by_machine_code_eoi, 30)
{
	static const unsigned vectors[] = { 0x40, 0x73 };
	struct kvm_irqfd irqfd = { .gsi = 19, .flags = KVM_IRQFD_FLAG_RESAMPLE };
	struct code c = { .n = 0 };
	uint64_t one = 1, n = 0;
	int efd, rfd;
	struct vm m;

	emit_ioapic_redir(&c, 19, 0x73 | 1u << 15); /* level */
	ready_then_halt(&c);
	vm_setup(&m, &c, vectors, 2);
	efd = eventfd(0, EFD_CLOEXEC);
	rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_TRUE(efd >= 0 && rfd >= 0);
	irqfd.fd = (uint32_t)efd;
	irqfd.resamplefd = (uint32_t)rfd;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_IRQFD, &irqfd), 0);
	ASSERT_EQ(next_out(&m), 1);
	for (int round = 0; round < 3; round++) {
		ASSERT_EQ(write(efd, &one, 8), 8);
		ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x73);
		/* The handler's EOI came first: acked, line low. */
		ASSERT_EQ(read(rfd, &n, 8), 8);
		ASSERT_EQ(n, 1);
	}
	/* Remote IRR is clear: a user assert is delivered (-1 otherwise). */
	ASSERT_EQ(line_status(&m, 19, 1), 1);
	ASSERT_EQ(line_status(&m, 19, 0), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x73);
	/* Nothing left for pin 19: the next interrupt is the MSI. */
	ASSERT_EQ(signal_msi(&m, 0, 0x40), 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x40);
	close(efd);
	close(rfd);
	vm_close(&m);
}

/*
 * Unmasking a level pin whose line went high behind the mask, with a
 * resample irqfd on it: the resampler is asked (resamplefd signalled), the
 * pin's IRR cleared, nothing delivered; the device's next signal is.
 */
TEST_TIMEOUT(unmask_with_resampler_asks_the_device, 30)
{
	static const unsigned vectors[] = { 0x74 };
	struct kvm_irqfd irqfd = { .gsi = 21, .flags = KVM_IRQFD_FLAG_RESAMPLE };
	struct code c = { .n = 0 };
	uint64_t one = 1, n = 0;
	int efd, rfd;
	struct vm m;

	emit_ioapic_redir(&c, 21, 0x74 | 1u << 15 | 1u << 16); /* level, masked */
	emit8(&c, 0xfb);
	emit_out(&c, 1);
	emit_ioapic_redir(&c, 21, 0x74 | 1u << 15);	      /* unmask */
	emit_out(&c, 2);
	emit_hlt_loop(&c);
	vm_setup(&m, &c, vectors, 1);
	efd = eventfd(0, EFD_CLOEXEC);
	rfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_TRUE(efd >= 0 && rfd >= 0);
	irqfd.fd = (uint32_t)efd;
	irqfd.resamplefd = (uint32_t)rfd;
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_IRQFD, &irqfd), 0);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(write(efd, &one, 8), 8);
	/*
	 * Wait for the irqfd's assert: while the resampler's source holds the
	 * line, a user de-assert leaves it high and meets the mask (-1); a
	 * low line answers 1.
	 */
	for (int i = 0; i < 5000 && line_status(&m, 21, 0) != -1; i++)
		usleep(1000);
	ASSERT_EQ(line_status(&m, 21, 0), -1);
	ASSERT_EQ(read(rfd, &n, 8), -1); /* not asked yet */
	ASSERT_EQ(next_out(&m), 2);	 /* unmasked: no interrupt came first */
	ASSERT_EQ(read(rfd, &n, 8), 8);
	ASSERT_EQ(n, 1);
	close(efd);
	close(rfd);
	vm_close(&m);
}

/* MSI and IPI destination 0xff in xAPIC mode: every vCPU, the sender too. */
TEST_TIMEOUT(xapic_broadcast_reaches_every_vcpu, 30)
{
	static const unsigned vectors[] = { 0x53, 0x54 };
	struct code c0 = { .n = 0 }, c1 = { .n = 0 };
	struct kvm_regs regs;
	struct kvm_run *run1;
	int vcpu0, vcpu1;
	struct vm m;

	/* vCPU 0: ready, then (after the MSI's handler) IPI 0x54 to 0xff. */
	emit8(&c0, 0xfb);
	emit_out(&c0, 1);
	emit_store32(&c0, (uint32_t)APIC_GPA + 0x310, 0xffu << 24);
	emit_store32(&c0, (uint32_t)APIC_GPA + 0x300, 0x54);
	emit_hlt_loop(&c0);
	ready_then_halt(&c1);
	vm_setup(&m, &c0, vectors, 2);
	memcpy(m.mem + CODE + 0x200, c1.b, c1.n);
	vcpu0 = m.vcpu;
	vcpu1 = guestmem_sys_ioctl(m.fd, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(vcpu1 >= 0);
	run1 = guestmem_sys_mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu1, 0);
	ASSERT_TRUE(run1 != MAP_FAILED);
	lapic_enable(vcpu1);
	m.vcpu = vcpu1;
	vm_start(&m, CODE + 0x200);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu1, KVM_GET_REGS, &regs), 0);
	regs.rsp = STACK_TOP - 0x8000; /* its own stack */
	ASSERT_EQ(guestmem_sys_ioctl(vcpu1, KVM_SET_REGS, &regs), 0);
	m.vcpu = vcpu0;

	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(guestmem_sys_ioctl(vcpu1, KVM_RUN, 0), 0);
	ASSERT_EQ(run1->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(run1->io.port, PORT);

	ASSERT_EQ(signal_msi(&m, 0xff, 0x53), 2);
	ASSERT_EQ(next_vector(&m, vcpu0, m.run), 0x53);
	ASSERT_EQ(next_vector(&m, vcpu0, m.run), 0x54); /* its own broadcast IPI */
	/* vCPU 1 has both pending by now: the higher vector first. */
	ASSERT_EQ(next_vector(&m, vcpu1, run1), 0x54);
	ASSERT_EQ(next_vector(&m, vcpu1, run1), 0x53);
	guestmem_sys_munmap(run1, 3 * 4096);
	guestmem_sys_close(vcpu1);
	vm_close(&m);
}

/* KVM_NMI (KVM_CAP_USER_NMI): vector 2 through the IDT; queued NMIs count
 * at most 2 while NMIs are not blocked (process_nmi). */
TEST_TIMEOUT(kvm_nmi_arrives_at_vector_2, 30)
{
	static const unsigned vectors[] = { 2 };
	struct kvm_vcpu_events e;
	struct code c = { .n = 0 };
	struct vm m;

	emit_out(&c, 1); /* no STI: IF does not hold NMIs back */
	emit_hlt_loop(&c);
	vm_setup(&m, &c, vectors, 1);
	ASSERT_EQ(next_out(&m), 1);
	for (int i = 0; i < 3; i++)
		ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_NMI, 0), 0);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	EXPECT_EQ(e.nmi.pending, 2);
	EXPECT_EQ(e.nmi.masked, 0);
	/* The first; its IRETQ unblocks NMIs and the second follows. */
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 2);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 2);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_GET_VCPU_EVENTS, &e), 0);
	EXPECT_EQ(e.nmi.pending, 0);
	vm_close(&m);
}

/* An IPI with delivery mode NMI (the ICR's 0x400) from the guest itself. */
TEST_TIMEOUT(nmi_ipi_arrives_at_vector_2, 30)
{
	static const unsigned vectors[] = { 2 };
	struct code c = { .n = 0 };
	struct vm m;

	emit_store32(&c, (uint32_t)APIC_GPA + 0x300, 0x44400); /* self, assert, NMI */
	emit_hlt_loop(&c);
	vm_setup(&m, &c, vectors, 1);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 2);
	vm_close(&m);
}

static int vcpu_interrupt(int vcpu, uint32_t irq)
{
	struct kvm_interrupt i = { .irq = irq };

	return guestmem_sys_ioctl(vcpu, KVM_INTERRUPT, &i);
}

/* KVM_INTERRUPT without an in-kernel irqchip: injected at the next entry. */
TEST_TIMEOUT(kvm_interrupt_without_irqchip, 30)
{
	struct code c = { .n = 0 };
	struct vm m;

	ready_then_halt(&c);
	vm_open_irqchip(&m, false);
	memcpy(m.mem + CODE, c.b, c.n);
	set_common(&m);
	set_handler(&m, 0x40);
	vm_start(&m, CODE);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 256), -1);
	EXPECT_EQ(errno, EINVAL);
	ASSERT_EQ(guestmem_sys_ioctl(m.vcpu, KVM_INTERRUPT, (void *)8), -1);
	EXPECT_EQ(errno, EFAULT);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 0x40), 0);
	/* The handler: its EOI store is MMIO here (no LAPIC), then the report. */
	ASSERT_EQ(run(&m), 0);
	ASSERT_EQ(m.run->exit_reason, KVM_EXIT_MMIO);
	ASSERT_EQ(m.run->mmio.phys_addr, APIC_GPA + 0xb0);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x40);
	vm_close(&m);
}

/* With the whole irqchip in the kernel KVM_INTERRUPT has no use: ENXIO. */
TEST(kvm_interrupt_with_kernel_pic)
{
	struct vm m;

	vm_open(&m);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 0x40), -1);
	EXPECT_EQ(errno, ENXIO);
	vm_close(&m);
}

/* Split irqchip: KVM_INTERRUPT is the user-space PIC's ExtINT, one at a
 * time, taken through LINT0 (ExtINT at reset) ahead of the LAPIC. */
TEST_TIMEOUT(kvm_interrupt_split_irqchip_extint, 30)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
	struct code c = { .n = 0 };
	struct vm m;

	ready_then_halt(&c);
	vm_create_novcpu(&m, 0, false);
	ASSERT_EQ(guestmem_sys_ioctl(m.fd, KVM_ENABLE_CAP, &cap), 0);
	vm_create_vcpu(&m);
	memcpy(m.mem + CODE, c.b, c.n);
	set_common(&m);
	set_handler(&m, 0x41);
	set_handler(&m, 0x42);
	lapic_enable(m.vcpu);
	vm_start(&m, CODE);
	ASSERT_EQ(next_out(&m), 1);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 0x41), 0);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 0x42), -1);
	EXPECT_EQ(errno, EEXIST);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x41);
	ASSERT_EQ(vcpu_interrupt(m.vcpu, 0x42), 0);
	ASSERT_EQ(next_vector(&m, m.vcpu, m.run), 0x42);
	vm_close(&m);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
