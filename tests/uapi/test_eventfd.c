// SPDX-License-Identifier: MIT
/*
 * test_eventfd: KVM_IOEVENTFD, KVM_CREATE_IRQCHIP, KVM_IRQ_LINE(_STATUS),
 * KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_SIGNAL_MSI and the split irqchip
 * through the VM fd alone (spec kvm-vcpu-eventfd-spec.md §2, §6.3, §7, §8):
 * every ordered check with its errno, the collision rule, the status values
 * of the chips' reset state, and irqfd injections observed through the
 * chips' state (a PIC pin pulsed by an irqfd reports the next assertion as
 * coalesced).  The guest side is in test_eventfd_guest.c.
 *
 * Built twice (tests/uapi/sysmap.h): "direct" through guestmem_sys_*,
 * "exec" as a plain program under `guestmem exec --`.  TAP; each case runs
 * in its own process with an alarm.
 */
#include <stdbool.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "sysmap.h"
#include "test_eventfd.h"

#define DOORBELL 0xd0000000ULL

/* ---- helpers ---------------------------------------------------------------- */

static int kvm_fd(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	ASSERT_TRUE(fd >= 0);
	return fd;
}

static int vm_new(void)
{
	int kvm = kvm_fd(), vm = ioctl(kvm, KVM_CREATE_VM, 0);

	ASSERT_TRUE(vm >= 0);
	close(kvm);
	return vm;
}

static int vm_with_irqchip(void)
{
	int vm = vm_new();

	ASSERT_TRUE(ioctl(vm, KVM_CREATE_IRQCHIP, 0) == 0);
	return vm;
}

static int vm_split(int pins)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { (uint64_t)pins } };
	int vm = vm_new();

	ASSERT_TRUE(ioctl(vm, KVM_ENABLE_CAP, &cap) == 0);
	return vm;
}

static int set_routing(int vm, const struct kvm_irq_routing_entry *e, uint32_t nr)
{
	struct kvm_irq_routing *r = calloc(1, sizeof(*r) + (nr + 1) * sizeof(*e));
	int ret;

	ASSERT_TRUE(r);
	r->nr = nr;
	memcpy(r->entries, e, nr * sizeof(*e));
	ret = ioctl(vm, KVM_SET_GSI_ROUTING, r);
	free(r);
	return ret;
}

static struct kvm_irq_routing_entry route_chip(uint32_t gsi, uint32_t chip, uint32_t pin)
{
	struct kvm_irq_routing_entry e = { .gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP };

	e.u.irqchip.irqchip = chip;
	e.u.irqchip.pin = pin;
	return e;
}

static struct kvm_irq_routing_entry route_msi(uint32_t gsi, uint32_t dest, uint32_t vector)
{
	struct kvm_irq_routing_entry e = { .gsi = gsi, .type = KVM_IRQ_ROUTING_MSI };

	e.u.msi.address_lo = 0xfee00000u | (dest << 12);
	e.u.msi.data = vector;
	return e;
}

/*
 * Wait until the irqfd watcher has processed @fd's last signal: once its
 * counter reads zero, a KVM_IRQFD deassign that matches nothing (another
 * gsi) takes the irqfd lock, which the injection holds.
 */
static void irqfd_settle(int vm, int fd)
{
	char path[64], buf[512];
	unsigned step = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	for (long long end = test_now_ms() + 5000; test_now_ms() < end; test_nap(&step)) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
		unsigned long long cnt = 1;
		char *p;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strstr(buf, "eventfd-count:");
		if (p && sscanf(p + 14, "%llx", &cnt) == 1 && cnt == 0)
			break;
	}
	ASSERT_TRUE(irqfd(vm, fd, 0xfffffff0u, KVM_IRQFD_FLAG_DEASSIGN, 0) == 0);
}

/* ---- capabilities ----------------------------------------------------------- */

static void test_caps(void)
{
	static const struct { long cap, val; } want[] = {
		{ KVM_CAP_IRQCHIP, 1 }, { KVM_CAP_IRQ_ROUTING, 4096 },
		{ KVM_CAP_IRQ_INJECT_STATUS, 1 }, { KVM_CAP_IRQFD, 1 },
		{ KVM_CAP_IOEVENTFD, 1 }, { KVM_CAP_SIGNAL_MSI, 1 },
		{ KVM_CAP_IRQFD_RESAMPLE, 1 }, { KVM_CAP_IOEVENTFD_NO_LENGTH, 1 },
		{ KVM_CAP_SPLIT_IRQCHIP, 1 }, { KVM_CAP_IOEVENTFD_ANY_LENGTH, 1 },
	};
	int kvm = kvm_fd(), vm = vm_new();

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		EXPECT_RET(ioctl(kvm, KVM_CHECK_EXTENSION, want[i].cap), want[i].val);
		EXPECT_RET(ioctl(vm, KVM_CHECK_EXTENSION, want[i].cap), want[i].val);
	}
}

/* ---- ioeventfd: assign checks (§7.2 step 2) ------------------------------------ */

enum fd_kind { FD_EFD, FD_NEG, FD_CLOSED, FD_PIPE, FD_VM, FD_OPATH };

/* An fd of @kind (the eventfd @efd for FD_EFD). */
static int fd_of_kind(enum fd_kind kind, int efd, int vm)
{
	int p[2], fd;

	switch (kind) {
	case FD_EFD:
		return efd;
	case FD_NEG:
		return -1;
	case FD_CLOSED:
		fd = dup(efd);
		close(fd);
		return fd;
	case FD_PIPE:
		ASSERT_TRUE(pipe(p) == 0);
		return p[0];
	case FD_VM:
		return vm;
	case FD_OPATH:
		fd = open("/proc/self/exe", O_PATH | O_CLOEXEC);
		ASSERT_TRUE(fd >= 0);
		return fd;
	}
	return -1;
}

static void test_ioeventfd_assign_checks(void)
{
	static const struct {
		const char *what;
		uint64_t addr;
		uint32_t len, flags;
		enum fd_kind fd;
		int err;
	} t[] = {
		{ "len 3", DOORBELL, 3, 0, FD_EFD, EINVAL },
		{ "len 16", DOORBELL, 16, 0, FD_EFD, EINVAL },
		{ "len 3 before a bad fd", DOORBELL, 3, 0, FD_NEG, EINVAL },
		{ "addr+len overflows", ~0ULL - 1, 4, 0, FD_EFD, EINVAL },
		{ "unknown flag 1<<5", DOORBELL, 4, 1u << 5, FD_EFD, EINVAL },
		{ "bad flag before a bad fd", DOORBELL, 4, 1u << 31, FD_NEG, EINVAL },
		{ "len 0 with DATAMATCH", DOORBELL, 0, KVM_IOEVENTFD_FLAG_DATAMATCH, FD_NEG, EINVAL },
		{ "fd -1", DOORBELL, 4, 0, FD_NEG, EBADF },
		{ "closed fd", DOORBELL, 4, 0, FD_CLOSED, EBADF },
		{ "O_PATH fd", DOORBELL, 4, 0, FD_OPATH, EBADF },
		{ "pipe", DOORBELL, 4, 0, FD_PIPE, EINVAL },
		{ "VM fd", DOORBELL, 4, 0, FD_VM, EINVAL },
	};
	int vm = vm_new(), efd = new_efd();

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		int fd = fd_of_kind(t[i].fd, efd, vm);

		DIAG("case: %s", t[i].what);
		EXPECT_ERRNO(ioev(vm, t[i].addr, t[i].len, fd, t[i].flags, 0), t[i].err);
	}
	/* Accepted: every length, len 0 on PIO, the internal bit 4, no pad check. */
	EXPECT_RET(ioev(vm, DOORBELL, 0, efd, 0, 0), 0);
	EXPECT_RET(ioev(vm, 0x10, 0, efd, KVM_IOEVENTFD_FLAG_PIO, 0), 0);
	EXPECT_RET(ioev(vm, DOORBELL + 0x100, 8, efd, 1u << 4, 0), 0);
	EXPECT_RET(ioev(vm, ~0ULL, 0, efd, 0, 0), 0); /* addr + 0 does not overflow */
	EXPECT_RET(ioev(vm, ~0ULL - 1, 1, efd, 0, 0), 0);
	EXPECT_RET(ioev(vm, DOORBELL, 4, efd, KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, 0), 0);
}

static void test_ioeventfd_collisions(void)
{
	const uint32_t DM = KVM_IOEVENTFD_FLAG_DATAMATCH, PIO = KVM_IOEVENTFD_FLAG_PIO;
	int vm = vm_new(), a = new_efd(), b = new_efd();

	EXPECT_RET(ioev(vm, DOORBELL, 4, a, DM, 1), 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, b, DM, 1), EEXIST);  /* same value */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, 0, 0), EEXIST);   /* wildcard */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 0, b, 0, 0), EEXIST);   /* len 0 */
	EXPECT_RET(ioev(vm, DOORBELL, 4, a, DM, 2), 0);	     /* other value */
	EXPECT_RET(ioev(vm, DOORBELL, 2, a, DM, 1), 0);	     /* other length */
	EXPECT_RET(ioev(vm, DOORBELL, 8, b, 0, 0), 0);	     /* other length */
	EXPECT_RET(ioev(vm, DOORBELL + 2, 4, a, DM, 1), 0);   /* overlapping, other addr */
	EXPECT_RET(ioev(vm, DOORBELL, 4, a, DM | PIO, 1), 0); /* other bus */
	EXPECT_RET(ioev(vm, DOORBELL, 4, a, DM | KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, 1), 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DM | KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY, 1), EEXIST);
	/* A 64-bit datamatch is compared whole: these two differ. */
	EXPECT_RET(ioev(vm, DOORBELL + 8, 4, a, DM, 0x100000001ULL), 0);
	EXPECT_RET(ioev(vm, DOORBELL + 8, 4, a, DM, 0x1ULL), 0);
	/* len 0 collides with everything at its address, in both directions. */
	EXPECT_RET(ioev(vm, 0x1000, 0, a, 0, 0), 0);
	EXPECT_ERRNO(ioev(vm, 0x1000, 1, b, DM, 7), EEXIST);
	EXPECT_RET(ioev(vm, 0x1000, 0, a, PIO, 0), 0);
	EXPECT_ERRNO(ioev(vm, 0x1000, 2, b, PIO, 0), EEXIST);
}

static void test_ioeventfd_deassign(void)
{
	const uint32_t DM = KVM_IOEVENTFD_FLAG_DATAMATCH, DE = KVM_IOEVENTFD_FLAG_DEASSIGN;
	int vm = vm_new(), a = new_efd(), b = new_efd(), p[2];

	ASSERT_TRUE(pipe(p) == 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DE, 0), ENOENT); /* nothing there */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, -1, DE, 0), EBADF);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, p[0], DE, 0), EINVAL);
	EXPECT_RET(ioev(vm, DOORBELL, 4, a, DM, 5), 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DE | DM, 6), ENOENT); /* other value */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DE, 5), ENOENT);	  /* wildcard != DM */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, b, DE | DM, 5), ENOENT); /* other eventfd */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 2, a, DE | DM, 5), ENOENT); /* other length */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DE | DM | KVM_IOEVENTFD_FLAG_PIO, 5), ENOENT);
	/* Deassign validates nothing else: len 3 is just "not found". */
	EXPECT_ERRNO(ioev(vm, DOORBELL, 3, a, DE | DM, 5), ENOENT);
	/* The same eventfd through another fd number, unknown flags ignored. */
	int a2 = dup(a);

	EXPECT_RET(ioev(vm, DOORBELL, 4, a2, DE | DM | (1u << 9), 5), 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 4, a, DE | DM, 5), ENOENT);
	/* Registration survives close of the VMM's fd; a dup still names it. */
	EXPECT_RET(ioev(vm, DOORBELL, 0, a, 0, 0), 0);
	close(a);
	EXPECT_RET(ioev(vm, DOORBELL, 0, a2, DE, 0), 0);
	/* Reassign after deassign. */
	EXPECT_RET(ioev(vm, DOORBELL, 0, a2, 0, 0), 0);
	EXPECT_ERRNO(ioev(vm, DOORBELL, 0, b, 0, 0), EEXIST);
}

static void test_ioeventfd_efault(void)
{
	int vm = vm_new();

	EXPECT_ERRNO(ioctl(vm, KVM_IOEVENTFD, NULL), EFAULT);
	EXPECT_ERRNO(ioctl(vm, KVM_IRQFD, NULL), EFAULT);
	EXPECT_ERRNO(ioctl(vm, KVM_IRQ_LINE, NULL), EFAULT); /* before ENXIO */
	EXPECT_ERRNO(ioctl(vm, KVM_IRQ_LINE_STATUS, NULL), EFAULT);
	EXPECT_ERRNO(ioctl(vm, KVM_SET_GSI_ROUTING, NULL), EFAULT);
	EXPECT_ERRNO(ioctl(vm, KVM_SIGNAL_MSI, NULL), EFAULT);
}

/* ---- irqchip creation ------------------------------------------------------------ */

static void test_create_irqchip(void)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_SPLIT_IRQCHIP, .args = { 24 } };
	int vm = vm_new(), vm2 = vm_new(), vm3 = vm_new(), vcpu;

	EXPECT_RET(ioctl(vm, KVM_CREATE_IRQCHIP, 0), 0);
	EXPECT_ERRNO(ioctl(vm, KVM_CREATE_IRQCHIP, 0), EEXIST);
	EXPECT_ERRNO(ioctl(vm, KVM_ENABLE_CAP, &cap), EEXIST);
	/* Once a vCPU exists: EINVAL (the EEXIST check comes first). */
	vcpu = ioctl(vm2, KVM_CREATE_VCPU, 0);
	ASSERT_TRUE(vcpu >= 0);
	EXPECT_ERRNO(ioctl(vm2, KVM_CREATE_IRQCHIP, 0), EINVAL);
	EXPECT_ERRNO(ioctl(vm2, KVM_ENABLE_CAP, &cap), EEXIST);
	cap.args[0] = 25;
	EXPECT_ERRNO(ioctl(vm2, KVM_ENABLE_CAP, &cap), EINVAL); /* pins before vCPUs */
	/* Split: the pin count, flags, then EEXIST both ways. */
	EXPECT_ERRNO(ioctl(vm3, KVM_ENABLE_CAP, &cap), EINVAL);
	cap.args[0] = 24;
	cap.flags = 1;
	EXPECT_ERRNO(ioctl(vm3, KVM_ENABLE_CAP, &cap), EINVAL);
	cap.flags = 0;
	EXPECT_RET(ioctl(vm3, KVM_ENABLE_CAP, &cap), 0);
	EXPECT_ERRNO(ioctl(vm3, KVM_ENABLE_CAP, &cap), EEXIST);
	EXPECT_ERRNO(ioctl(vm3, KVM_CREATE_IRQCHIP, 0), EEXIST);
}

/* KVM_CREATE_PIT2: EFAULT, then EEXIST for a second PIT; no irqchip needed. */
static void test_create_pit(void)
{
	struct kvm_pit_config cfg = { .flags = 0 };
	int vm = vm_new(), vm2 = vm_with_irqchip();

	EXPECT_ERRNO(ioctl(vm, KVM_CREATE_PIT2, NULL), EFAULT);
	EXPECT_RET(ioctl(vm, KVM_CREATE_PIT2, &cfg), 0);
	EXPECT_ERRNO(ioctl(vm, KVM_CREATE_PIT2, &cfg), EEXIST);
	EXPECT_ERRNO(ioctl(vm, KVM_CREATE_PIT, 0), EEXIST);
	EXPECT_ERRNO(ioctl(vm, KVM_CREATE_PIT2, NULL), EFAULT); /* the copy is first */
	EXPECT_RET(ioctl(vm2, KVM_CREATE_PIT, 0), 0);
	EXPECT_ERRNO(ioctl(vm2, KVM_CREATE_PIT2, &cfg), EEXIST);
}

/* ---- KVM_IRQ_LINE(_STATUS) --------------------------------------------------------- */

static void test_irq_line_no_irqchip(void)
{
	struct kvm_irq_level l = { .irq = 4, .level = 1 };
	int vm = vm_new();

	EXPECT_ERRNO(ioctl(vm, KVM_IRQ_LINE, &l), ENXIO);
	EXPECT_ERRNO(ioctl(vm, KVM_IRQ_LINE_STATUS, &l), ENXIO);
	EXPECT_EQ(l.irq, 4); /* nothing written back */
}

/* The reset state: PIC unmasked edge, IOAPIC masked (spec §8.3). */
static void test_irq_line_status_reset(void)
{
	struct kvm_irq_level l = { .irq = 4, .level = 1 };
	int vm = vm_with_irqchip();
	void *ro;

	EXPECT_EQ(line_status(vm, 4, 1), 1);  /* PIC: new edge; IOAPIC masked */
	EXPECT_EQ(line_status(vm, 4, 1), 1);  /* PIC: level unchanged */
	EXPECT_EQ(line_status(vm, 4, 0), 2);  /* both chips answer 1 */
	EXPECT_EQ(line_status(vm, 4, 1), 0);  /* PIC IRR still set: coalesced */
	EXPECT_EQ(line_status(vm, 16, 1), -1); /* IOAPIC only, masked */
	EXPECT_EQ(line_status(vm, 16, 7), 0);  /* edge pending behind the mask */
	EXPECT_EQ(line_status(vm, 16, 0), 1);
	EXPECT_EQ(line_status(vm, 24, 1), -1); /* no route */
	EXPECT_EQ(line_status(vm, 100000, 1), -1);
	/* Slave pins cascade through master pin 2. */
	EXPECT_EQ(line_status(vm, 9, 1), 1);
	EXPECT_EQ(line_status(vm, 2, 1), 0);
	/* KVM_IRQ_LINE returns 0 and writes nothing back. */
	l.irq = 5;
	EXPECT_RET(ioctl(vm, KVM_IRQ_LINE, &l), 0);
	EXPECT_EQ(l.irq, 5);
	/* _STATUS copies out after acting: EFAULT on a read-only struct. */
	ro = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(ro != MAP_FAILED);
	memcpy(ro, &(struct kvm_irq_level){ .irq = 6, .level = 1 }, sizeof(l));
	ASSERT_TRUE(mprotect(ro, 4096, PROT_READ) == 0);
	EXPECT_ERRNO(ioctl(vm, KVM_IRQ_LINE_STATUS, ro), EFAULT);
	/* The assert did happen: after a de-assert the PIC reports coalesced. */
	EXPECT_EQ(line_status(vm, 6, 0), 2);
	EXPECT_EQ(line_status(vm, 6, 1), 0);
}

static void test_irq_line_split(void)
{
	struct kvm_irq_routing_entry e[] = { route_msi(40, 0, 0x30) };
	int vm = vm_split(0);

	EXPECT_EQ(line_status(vm, 4, 1), -1); /* an empty routing table */
	EXPECT_RET(set_routing(vm, e, 1), 0);
	EXPECT_EQ(line_status(vm, 40, 1), -1); /* MSI, but no vCPU */
}

/* ---- KVM_SET_GSI_ROUTING ------------------------------------------------------------- */

static void test_routing_header(void)
{
	struct kvm_irq_routing hdr = { .nr = 1 };
	int vm = vm_new(), chip = vm_with_irqchip();

	EXPECT_ERRNO(ioctl(vm, KVM_SET_GSI_ROUTING, &hdr), EINVAL); /* no irqchip first */
	hdr.nr = 4097;
	EXPECT_ERRNO(ioctl(chip, KVM_SET_GSI_ROUTING, &hdr), EINVAL);
	hdr.nr = 0;
	hdr.flags = 1;
	EXPECT_ERRNO(ioctl(chip, KVM_SET_GSI_ROUTING, &hdr), EINVAL);
	/* nr = 1 with the entries off the end of a mapping: EFAULT. */
	char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_TRUE(m != MAP_FAILED);
	ASSERT_TRUE(munmap(m + 4096, 4096) == 0);
	memcpy(m + 4096 - 8, &(struct kvm_irq_routing){ .nr = 1 }, 8);
	EXPECT_ERRNO(ioctl(chip, KVM_SET_GSI_ROUTING, m + 4096 - 8), EFAULT);
	/* nr = 0: an empty table; GSI 4 then goes nowhere. */
	hdr.flags = 0;
	EXPECT_RET(ioctl(chip, KVM_SET_GSI_ROUTING, &hdr), 0);
	EXPECT_EQ(line_status(chip, 4, 1), -1);
}

static void test_routing_entries(void)
{
	struct kvm_irq_routing_entry msi_devid = route_msi(7, 0, 0x31);
	struct kvm_irq_routing_entry hv = { .gsi = 8, .type = KVM_IRQ_ROUTING_HV_SINT };
	struct kvm_irq_routing_entry t[][2] = {
		{ { .gsi = 4096, .type = KVM_IRQ_ROUTING_IRQCHIP } },
		{ route_chip(1, KVM_IRQCHIP_PIC_MASTER, 8) },
		{ route_chip(1, KVM_IRQCHIP_PIC_SLAVE, 8) },
		{ route_chip(1, KVM_IRQCHIP_IOAPIC, 24) },
		{ route_chip(1, 3, 0) },
		{ route_chip(1, KVM_IRQCHIP_IOAPIC, 1), route_chip(1, KVM_IRQCHIP_IOAPIC, 2) },
		{ route_msi(1, 0, 0x30), route_chip(1, KVM_IRQCHIP_IOAPIC, 2) },
		{ route_chip(1, KVM_IRQCHIP_IOAPIC, 2), route_msi(1, 0, 0x30) },
		{ route_msi(1, 0, 0x30), route_msi(1, 1, 0x31) },
		{ { .gsi = 1, .type = 0 } },
		{ { .gsi = 1, .type = KVM_IRQ_ROUTING_S390_ADAPTER } },
		{ { .gsi = 1, .type = 5 /* XEN_EVTCHN */ } },
		{ { .gsi = 1, .type = 6 } },
	};
	int n[] = { 1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1 };
	int vm = vm_with_irqchip();

	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++) {
		DIAG("case %zu", i);
		EXPECT_ERRNO(set_routing(vm, t[i], (uint32_t)n[i]), EINVAL);
	}
	/* Entry flags: none for irqchip routes, KVM_MSI_VALID_DEVID for MSI. */
	struct kvm_irq_routing_entry f = route_chip(1, KVM_IRQCHIP_IOAPIC, 1);

	f.flags = 1;
	EXPECT_ERRNO(set_routing(vm, &f, 1), EINVAL);
	msi_devid.flags = KVM_MSI_VALID_DEVID;
	EXPECT_RET(set_routing(vm, &msi_devid, 1), 0);
	msi_devid.flags = 2;
	EXPECT_ERRNO(set_routing(vm, &msi_devid, 1), EINVAL);
	EXPECT_RET(set_routing(vm, &hv, 1), 0);
	/* One GSI to three chips is fine. */
	struct kvm_irq_routing_entry three[] = { route_chip(3, KVM_IRQCHIP_PIC_MASTER, 3),
						 route_chip(3, KVM_IRQCHIP_PIC_SLAVE, 3),
						 route_chip(3, KVM_IRQCHIP_IOAPIC, 3) };
	EXPECT_RET(set_routing(vm, three, 3), 0);
}

static void test_routing_effect(void)
{
	struct kvm_irq_routing_entry e[] = { route_chip(30, KVM_IRQCHIP_PIC_SLAVE, 1),
					     route_chip(31, KVM_IRQCHIP_IOAPIC, 20) };
	struct kvm_irq_routing_entry chip_route = route_chip(1, KVM_IRQCHIP_IOAPIC, 1);
	int vm = vm_with_irqchip(), split = vm_split(24);

	EXPECT_RET(set_routing(vm, e, 2), 0);
	EXPECT_EQ(line_status(vm, 4, 1), -1);  /* the default routes are gone */
	EXPECT_EQ(line_status(vm, 30, 1), 1);  /* PIC pin 9 */
	EXPECT_EQ(line_status(vm, 31, 1), -1); /* IOAPIC pin 20, masked */
	EXPECT_EQ(line_status(vm, 31, 1), 0);
	/* A split irqchip takes MSI routes only. */
	EXPECT_ERRNO(set_routing(split, &chip_route, 1), EINVAL);
}

/* ---- KVM_IRQFD checks (§8.6) -------------------------------------------------------------- */

static void test_irqfd_checks_no_irqchip(void)
{
	int vm = vm_new(), efd = new_efd(), p[2];

	ASSERT_TRUE(pipe(p) == 0);
	EXPECT_ERRNO(irqfd(vm, efd, 4, 0, 0), EINVAL);
	EXPECT_ERRNO(irqfd(vm, -1, 4, 0, 0), EINVAL); /* the irqchip check is first */
	EXPECT_ERRNO(irqfd(vm, efd, 4, 1u << 2, 0), EINVAL);
	/* Deassign needs no irqchip and returns 0 when nothing matched. */
	EXPECT_RET(irqfd(vm, efd, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	EXPECT_ERRNO(irqfd(vm, -1, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), EBADF);
	EXPECT_ERRNO(irqfd(vm, p[0], 4, KVM_IRQFD_FLAG_DEASSIGN, 0), EINVAL);
	EXPECT_ERRNO(irqfd(vm, -1, 4, KVM_IRQFD_FLAG_DEASSIGN | 4, 0), EINVAL); /* flags first */
}

static void test_irqfd_checks(void)
{
	const uint32_t RS = KVM_IRQFD_FLAG_RESAMPLE, DE = KVM_IRQFD_FLAG_DEASSIGN;
	int vm = vm_with_irqchip(), split = vm_split(0), a = new_efd(), b = new_efd(), p[2];

	ASSERT_TRUE(pipe(p) == 0);
	EXPECT_ERRNO(irqfd(vm, -1, 4, 0, 0), EBADF);
	EXPECT_ERRNO(irqfd(vm, p[0], 4, 0, 0), EINVAL);
	EXPECT_ERRNO(irqfd(vm, a, 4, RS, -1), EBADF);
	EXPECT_ERRNO(irqfd(vm, a, 4, RS, p[0]), EINVAL);
	EXPECT_ERRNO(irqfd(split, a, 4, RS, b), EINVAL); /* resample needs the full chip */
	EXPECT_ERRNO(irqfd(split, -1, 4, RS, b), EINVAL);
	EXPECT_RET(irqfd(split, b, 4, 0, 0), 0); /* b: 6.18 allows one VM per eventfd */
	EXPECT_RET(irqfd(split, b, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	/* resamplefd is ignored without RESAMPLE; the gsi is not validated. */
	EXPECT_RET(irqfd(vm, a, 100000, 0, -1), 0);
	EXPECT_ERRNO(irqfd(vm, a, 5, 0, 0), EBUSY);
	EXPECT_ERRNO(irqfd(vm, dup(a), 5, RS, b), EBUSY); /* same eventfd, other fd */
	/* Deassign with the wrong gsi removes nothing; the right one does. */
	EXPECT_RET(irqfd(vm, a, 5, DE, 0), 0);
	EXPECT_ERRNO(irqfd(vm, a, 6, 0, 0), EBUSY);
	EXPECT_RET(irqfd(vm, a, 100000, DE, 0), 0);
	EXPECT_RET(irqfd(vm, a, 6, RS, b), 0);
	EXPECT_RET(irqfd(vm, b, 6, RS, b), 0); /* an irqfd's resamplefd may be another's fd */
	/* A new eventfd that reuses a closed fd number is another eventfd. */
	int c = new_efd(), num = c;

	EXPECT_RET(irqfd(vm, c, 7, 0, 0), 0);
	close(c);
	c = new_efd();
	ASSERT_TRUE(c == num);
	EXPECT_RET(irqfd(vm, c, 7, 0, 0), 0);
}

/*
 * Since 6.17 an eventfd drives at most one irqfd in the whole system
 * (spec §11): the 6.18 profile refuses it in a second VM with EBUSY.
 */
static void test_irqfd_other_vm(void)
{
	const char *p = getenv("GUESTMEM_PROFILE");
	bool v618 = p && !strcmp(p, "linux-6.18");
	int a = vm_with_irqchip(), b = vm_with_irqchip(), efd = new_efd();

	DIAG("profile %s", v618 ? "linux-6.18" : "linux-6.8");
	EXPECT_RET(irqfd(a, efd, 4, 0, 0), 0);
	if (v618)
		EXPECT_ERRNO(irqfd(b, efd, 4, 0, 0), EBUSY);
	else
		EXPECT_RET(irqfd(b, efd, 4, 0, 0), 0);
	/* Once the first binding is gone, the eventfd is free again. */
	EXPECT_RET(irqfd(a, efd, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	EXPECT_RET(irqfd(v618 ? b : a, efd, 4, 0, 0), 0);
	close(a); /* destruction lets go of the eventfd too */
	if (v618)
		EXPECT_ERRNO(irqfd(vm_with_irqchip(), efd, 5, 0, 0), EBUSY);
	EXPECT_RET(irqfd(b, efd, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	EXPECT_RET(irqfd(vm_with_irqchip(), efd, 5, 0, 0), 0);
}

/* ---- irqfd injections, seen through the PIC's state ------------------------------------- */

/* An edge irqfd on GSI 4 pulses the line: the PIC's IRR bit stays set. */
static void test_irqfd_inject_edge(void)
{
	int vm = vm_with_irqchip(), efd = new_efd();

	EXPECT_RET(irqfd(vm, efd, 4, 0, 0), 0);
	efd_signal(efd, 3);
	irqfd_settle(vm, efd);
	EXPECT_EQ(efd_take(efd), 0);	     /* KVM consumed the counter */
	EXPECT_EQ(line_status(vm, 4, 1), 0); /* already requested: coalesced */
	EXPECT_EQ(line_status(vm, 5, 1), 1); /* an untouched pin for contrast */
}

/* A counter already non-zero at assign injects once at once (§8.6 3.10). */
static void test_irqfd_pending_at_assign(void)
{
	int vm = vm_with_irqchip(), efd = new_efd();

	efd_signal(efd, 1);
	EXPECT_RET(irqfd(vm, efd, 4, 0, 0), 0);
	irqfd_settle(vm, efd);
	EXPECT_EQ(line_status(vm, 4, 1), 0);
}

/* A signal made before deassign returns is never lost. */
static void test_irqfd_deassign_flushes(void)
{
	int vm = vm_with_irqchip(), efd = new_efd(), probe = new_efd();

	for (int i = 0; i < 50; i++) {
		uint32_t gsi = (uint32_t)(i % 2 ? 3 : 4);
		int fresh = vm_with_irqchip();

		EXPECT_RET(irqfd(fresh, efd, gsi, 0, 0), 0);
		efd_signal(efd, 1);
		EXPECT_RET(irqfd(fresh, efd, gsi, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
		EXPECT_EQ(line_status(fresh, gsi, 1), 0);
		EXPECT_EQ(efd_take(efd), 0);
		close(fresh);
	}
	/* After deassign nothing is injected any more. */
	EXPECT_RET(irqfd(vm, efd, 4, 0, 0), 0);
	EXPECT_RET(irqfd(vm, efd, 4, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	/*
	 * A probe irqfd signalled after efd: the VM's one watcher sees ready fds
	 * together, so once it consumed the probe it has passed efd's signal by.
	 */
	EXPECT_RET(irqfd(vm, probe, 3, 0, 0), 0);
	efd_signal(efd, 1);
	efd_signal(probe, 1);
	irqfd_settle(vm, probe);
	EXPECT_EQ(efd_take(probe), 0); /* consumed: the handshake happened */
	EXPECT_EQ(line_status(vm, 4, 1), 1);
	EXPECT_EQ(efd_take(efd), 1);
}

/* Resample: the line stays asserted by source 1 until EOI or the last deassign. */
static void test_irqfd_resample_line(void)
{
	int vm = vm_with_irqchip(), efd = new_efd(), rfd = new_efd();

	EXPECT_RET(irqfd(vm, efd, 16, KVM_IRQFD_FLAG_RESAMPLE, rfd), 0);
	efd_signal(efd, 1);
	irqfd_settle(vm, efd);
	/* Masked IOAPIC pin 16 held high by the resampler: coalesced. */
	EXPECT_EQ(line_status(vm, 16, 1), 0);
	/* Source 0 low, source 1 still high: the line stays up, coalesced. */
	EXPECT_EQ(line_status(vm, 16, 0), 0);
	EXPECT_EQ(line_status(vm, 16, 1), 0);
	EXPECT_EQ(line_status(vm, 16, 0), 0);
	/* Removing the last resampler lowers the line. */
	EXPECT_RET(irqfd(vm, efd, 16, KVM_IRQFD_FLAG_DEASSIGN, 0), 0);
	EXPECT_EQ(line_status(vm, 16, 1), -1);
	EXPECT_EQ(efd_take(rfd), 0); /* no EOI happened */
}

/* An irqfd follows routing updates (it resolves its GSI at injection). */
static void test_irqfd_follows_routing(void)
{
	struct kvm_irq_routing_entry e[] = { route_chip(50, KVM_IRQCHIP_PIC_MASTER, 6),
					     route_chip(51, KVM_IRQCHIP_PIC_MASTER, 7) };
	int vm = vm_with_irqchip(), efd = new_efd();

	EXPECT_RET(irqfd(vm, efd, 50, 0, 0), 0); /* no route yet: dropped */
	efd_signal(efd, 1);
	irqfd_settle(vm, efd);
	EXPECT_EQ(efd_take(efd), 0);
	EXPECT_RET(set_routing(vm, e, 2), 0);
	efd_signal(efd, 1);
	irqfd_settle(vm, efd);
	EXPECT_EQ(line_status(vm, 50, 1), 0); /* pin 6 was pulsed: coalesced */
	EXPECT_EQ(line_status(vm, 51, 1), 1); /* pin 7 for contrast */
}

/* ---- KVM_SIGNAL_MSI ---------------------------------------------------------------------- */

/* What a guest's APIC setup does: SPIV bit 8 (here through KVM_SET_LAPIC). */
static void apic_sw_enable(int vcpu)
{
	struct kvm_lapic_state st;
	uint32_t spiv;

	ASSERT_EQ(ioctl(vcpu, KVM_GET_LAPIC, &st), 0);
	memcpy(&spiv, st.regs + 0xf0, 4);
	spiv |= 0x100;
	memcpy(st.regs + 0xf0, &spiv, 4);
	ASSERT_EQ(ioctl(vcpu, KVM_SET_LAPIC, &st), 0);
}

static void test_signal_msi(void)
{
	struct kvm_msi msi = { .address_lo = 0xfee00000u, .data = 0x40 };
	int vm = vm_new(), chip = vm_with_irqchip(), v0, v1;

	EXPECT_ERRNO(ioctl(vm, KVM_SIGNAL_MSI, &msi), EINVAL);
	msi.flags = 1;
	EXPECT_ERRNO(ioctl(chip, KVM_SIGNAL_MSI, &msi), EINVAL);
	msi.flags = 0;
	/* No target: the status -1 comes back as the ioctl's -1, errno EPERM. */
	EXPECT_ERRNO(ioctl(chip, KVM_SIGNAL_MSI, &msi), EPERM);
	v0 = ioctl(chip, KVM_CREATE_VCPU, 0);
	v1 = ioctl(chip, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(v0 >= 0 && v1 >= 0);
	/* A matching APIC that is software-disabled (SPIV 0xff after reset)
	 * takes nothing: 0, not the no-target -1. */
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 0);
	msi.address_lo = 0xfee00000u | (0xffu << 12);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 0);
	apic_sw_enable(v1);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 1); /* broadcast: v1 only */
	msi.address_lo = 0xfee00000u;
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 0);
	apic_sw_enable(v0);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 1);
	msi.address_lo = 0xfee00000u | (1u << 12);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 1);
	msi.address_lo = 0xfee00000u | (9u << 12);
	EXPECT_ERRNO(ioctl(chip, KVM_SIGNAL_MSI, &msi), EPERM);
	msi.address_lo = 0xfee00000u | (0xffu << 12);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 2); /* broadcast */
}

/* @vcpu into x2APIC mode, as a guest does: CPUID 1:ECX[21], then APIC_BASE. */
static void apic_x2apic_mode(int vcpu)
{
	struct {
		struct kvm_cpuid2 c;
		struct kvm_cpuid_entry2 e[1];
	} cpuid = { .c.nent = 1, .e[0] = { .function = 1, .ecx = 1u << 21 } };
	struct {
		struct kvm_msrs m;
		struct kvm_msr_entry e[1];
	} msrs = { .m.nmsrs = 1, .e[0] = { .index = 0x1b } };

	ASSERT_EQ(ioctl(vcpu, KVM_SET_CPUID2, &cpuid), 0);
	ASSERT_EQ(ioctl(vcpu, KVM_GET_MSRS, &msrs), 1);
	msrs.e[0].data |= 0x400; /* EXTD, with EN already set */
	ASSERT_EQ(ioctl(vcpu, KVM_SET_MSRS, &msrs), 1);
}

/*
 * An MSI to 0xff reaches an x2APIC-mode vCPU only under the x2APIC
 * broadcast quirk (on by default); the destination is read in each
 * target's mode, so the xAPIC one takes it either way.
 */
static void test_x2apic_broadcast_quirk(void)
{
	struct kvm_msi msi = { .address_lo = 0xfee00000u | (0xffu << 12), .data = 0x40 };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X2APIC_API,
				      .args[0] = KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK };
	int chip = vm_with_irqchip(), v0, v1;

	v0 = ioctl(chip, KVM_CREATE_VCPU, 0);
	v1 = ioctl(chip, KVM_CREATE_VCPU, 1);
	ASSERT_TRUE(v0 >= 0 && v1 >= 0);
	apic_sw_enable(v0);
	apic_sw_enable(v1);
	apic_x2apic_mode(v1);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 2);
	ASSERT_EQ(ioctl(chip, KVM_ENABLE_CAP, &cap), 0);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 1);
	/* In x2APIC mode the physical id is the whole vCPU id. */
	msi.address_lo = 0xfee00000u | (1u << 12);
	EXPECT_RET(ioctl(chip, KVM_SIGNAL_MSI, &msi), 1);
}

/*
 * What an in-kernel LAPIC changes on the vCPU (spec §5.2 steps 9 and 14,
 * §6.3 KVM_SET_MP_STATE): the other mp_states, cr8 ignored, and
 * ready_for_interrupt_injection always 1 with the PIC in the kernel.
 */
static void vcpu_lapic_case(bool irqchip)
{
	int vm = irqchip ? vm_with_irqchip() : vm_new(), kvm = kvm_fd();
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	struct kvm_mp_state mp = { KVM_MP_STATE_HALTED };
	struct kvm_run *run;

	ASSERT_TRUE(vcpu >= 0);
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, vcpu, 0);
	ASSERT_TRUE(run != MAP_FAILED);
	if (irqchip) {
		EXPECT_RET(ioctl(vcpu, KVM_SET_MP_STATE, &mp), 0);
		ASSERT_TRUE(ioctl(vcpu, KVM_GET_MP_STATE, &mp) == 0);
		EXPECT_EQ(mp.mp_state, KVM_MP_STATE_HALTED);
	} else {
		EXPECT_ERRNO(ioctl(vcpu, KVM_SET_MP_STATE, &mp), EINVAL);
	}
	mp.mp_state = KVM_MP_STATE_STOPPED; /* an s390 state: never on x86 */
	EXPECT_ERRNO(ioctl(vcpu, KVM_SET_MP_STATE, &mp), EINVAL);
	mp.mp_state = KVM_MP_STATE_RUNNABLE;
	EXPECT_RET(ioctl(vcpu, KVM_SET_MP_STATE, &mp), 0);
	run->cr8 = 0x20; /* reserved TPR bits: checked only without a LAPIC */
	run->immediate_exit = 1;
	EXPECT_ERRNO(ioctl(vcpu, KVM_RUN, 0), irqchip ? EINTR : EINVAL);
	EXPECT_EQ(run->ready_for_interrupt_injection, irqchip);
}

static void test_vcpu_with_irqchip(void)
{
	vcpu_lapic_case(true);
}

static void test_vcpu_without_irqchip(void)
{
	vcpu_lapic_case(false);
}

/* Registrations take no fd number the VMM could see (the kernel takes none). */
static void test_fd_numbers(void)
{
	int vm = vm_with_irqchip(), a = new_efd(), b = new_efd(), probe, next;

	probe = dup(a);
	close(probe);
	EXPECT_RET(ioev(vm, DOORBELL, 4, a, 0, 0), 0);
	EXPECT_RET(irqfd(vm, b, 4, 0, 0), 0); /* starts the irqfd watcher too */
	EXPECT_RET(irqfd(vm, a, 5, KVM_IRQFD_FLAG_RESAMPLE, b), 0);
	next = dup(a);
	EXPECT_EQ(next, probe);
}

/* VM destruction with irqfds and ioeventfds registered frees them all. */
static void test_destroy_with_registrations(void)
{
	for (int i = 0; i < 20; i++) {
		int vm = vm_with_irqchip(), a = new_efd(), b = new_efd(), r = new_efd();

		EXPECT_RET(irqfd(vm, a, 4, 0, 0), 0);
		EXPECT_RET(irqfd(vm, b, 5, KVM_IRQFD_FLAG_RESAMPLE, r), 0);
		EXPECT_RET(ioev(vm, DOORBELL, 4, a, 0, 0), 0);
		efd_signal(a, 1);
		close(vm); /* the VM goes while the watcher may be injecting */
		efd_signal(b, 1);
		close(a);
		close(b);
		close(r);
	}
}

int main(int argc, char **argv)
{
	test_add_fn("caps", test_caps, 30);
	test_add_fn("ioeventfd assign checks", test_ioeventfd_assign_checks, 30);
	test_add_fn("ioeventfd collisions", test_ioeventfd_collisions, 30);
	test_add_fn("ioeventfd deassign", test_ioeventfd_deassign, 30);
	test_add_fn("EFAULT first", test_ioeventfd_efault, 30);
	test_add_fn("create irqchip / split", test_create_irqchip, 30);
	test_add_fn("create pit", test_create_pit, 30);
	test_add_fn("irq line without irqchip", test_irq_line_no_irqchip, 30);
	test_add_fn("irq line status, reset state", test_irq_line_status_reset, 30);
	test_add_fn("irq line, split irqchip", test_irq_line_split, 30);
	test_add_fn("gsi routing header", test_routing_header, 30);
	test_add_fn("gsi routing entries", test_routing_entries, 30);
	test_add_fn("gsi routing effect", test_routing_effect, 30);
	test_add_fn("irqfd checks without irqchip", test_irqfd_checks_no_irqchip, 30);
	test_add_fn("irqfd checks", test_irqfd_checks, 30);
	test_add_fn("irqfd in two VMs", test_irqfd_other_vm, 30);
	test_add_fn("irqfd edge injection", test_irqfd_inject_edge, 30);
	test_add_fn("irqfd pending at assign", test_irqfd_pending_at_assign, 30);
	test_add_fn("irqfd deassign flushes", test_irqfd_deassign_flushes, 30);
	test_add_fn("irqfd resample line", test_irqfd_resample_line, 30);
	test_add_fn("irqfd follows routing", test_irqfd_follows_routing, 30);
	test_add_fn("signal msi", test_signal_msi, 30);
	test_add_fn("x2apic broadcast quirk", test_x2apic_broadcast_quirk, 30);
	test_add_fn("vCPU with an irqchip", test_vcpu_with_irqchip, 30);
	test_add_fn("vCPU without an irqchip", test_vcpu_without_irqchip, 30);
	test_add_fn("fd numbers", test_fd_numbers, 30);
	test_add_fn("destroy with registrations", test_destroy_with_registrations, 30);
	return test_main(argc, argv);
}
