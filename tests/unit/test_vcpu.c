/* SPDX-License-Identifier: MIT */
/*
 * vCPUs through the C API (spec kvm-vcpu-eventfd-spec.md §3, §5, §6;
 * kvm-gmem-spec.md §3.8, §3.9, §4.5): creation limits, registers, the
 * guest thread, every exit (IO, MMIO, HYPERCALL, MEMORY_FAULT, SHUTDOWN,
 * INTR), completions on re-entry, immediate_exit and signals.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include "harness.h"

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>

#define MB (1ULL << 20)
#define MEM_SIZE (2 * MB)
#define MMIO_GPA 0xd0000000ULL
#define PORT_REPORT 0x20

struct env {
	struct guestmem_vm *vm;
	struct guestmem_vcpu *vcpu;
	struct kvm_run *run;
	uint8_t *mem; /* slot 0: gpa [0, 2 MiB) */
	volatile int stop; /* guest loops until set */
	int spinning;      /* guest_spin runs: its vCPU is inside KVM_RUN */
};

/* ---- helpers ------------------------------------------------------------------ */

static int set_region(struct guestmem_vm *vm, uint32_t slot, uint32_t flags, uint64_t gpa,
		      uint64_t size, void *hva, struct guestmem_gmem *gmem)
{
	struct kvm_userspace_memory_region2 m = {
		.slot = slot, .flags = flags, .guest_phys_addr = gpa,
		.memory_size = size, .userspace_addr = (uint64_t)(uintptr_t)hva,
	};

	return guestmem_set_memory_region(vm, &m, gmem);
}

static int set_attr(struct guestmem_vm *vm, uint64_t gpa, uint64_t size, uint64_t attr)
{
	struct kvm_memory_attributes a = { .address = gpa, .size = size, .attributes = attr };

	return guestmem_set_memory_attributes(vm, &a);
}

static void enable_hc_exit(struct guestmem_vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL,
				      .args = { 1ULL << KVM_HC_MAP_GPA_RANGE } };

	ASSERT_EQ(guestmem_vm_enable_cap(vm, &cap), 0);
}

static struct env *env_new(unsigned long type, guestmem_vcpu_guest_fn fn)
{
	struct env *e = calloc(1, sizeof(*e));

	ASSERT_EQ(guestmem_vm_create(type, &e->vm), 0);
	e->mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_TRUE(e->mem != MAP_FAILED);
	ASSERT_EQ(set_region(e->vm, 0, 0, 0, MEM_SIZE, e->mem, NULL), 0);
	ASSERT_EQ(guestmem_vcpu_create(e->vm, 0, &e->vcpu), 0);
	ASSERT_EQ(guestmem_vcpu_set_guest(e->vcpu, fn, e), 0);
	e->run = guestmem_vcpu_run_struct(e->vcpu);
	return e;
}

static void env_free(struct env *e)
{
	guestmem_vcpu_put(e->vcpu);
	guestmem_vm_put(e->vm);
	munmap(e->mem, MEM_SIZE);
	free(e);
}

static struct env *genv(struct guestmem_guest *g)
{
	return guestmem_guest_opaque(g);
}

static void run_expect(struct env *e, uint32_t reason)
{
	ASSERT_EQ(guestmem_vcpu_run(e->vcpu), 0);
	ASSERT_EQ(e->run->exit_reason, reason);
}

/* Run and expect an OUT of @size bytes at @port; returns the value. */
static uint32_t run_expect_out(struct env *e, uint16_t port, unsigned size)
{
	uint32_t v = 0;

	run_expect(e, KVM_EXIT_IO);
	ASSERT_EQ(e->run->io.direction, KVM_EXIT_IO_OUT);
	ASSERT_EQ(e->run->io.port, port);
	ASSERT_EQ(e->run->io.size, size);
	ASSERT_EQ(e->run->io.count, 1);
	ASSERT_EQ(e->run->io.data_offset, 4096);
	memcpy(&v, (uint8_t *)e->run + e->run->io.data_offset, size);
	return v;
}

/* ---- creation and registers ------------------------------------------------------ */

TEST(test_create_limits)
{
	struct guestmem_vm *vm;
	struct guestmem_vcpu *a, *b, *c;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 8 } };

	ASSERT_EQ(guestmem_vm_create(0, &vm), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 4096, &a), -EINVAL);
	ASSERT_EQ(guestmem_vcpu_create(vm, 4095, &a), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 4095, &b), -EEXIST);
	ASSERT_EQ(guestmem_vcpu_create(vm, 0, &b), 0);
	/* The id limit is latched by the first vCPU. */
	ASSERT_EQ(guestmem_vm_enable_cap(vm, &cap), -EINVAL);
	guestmem_vcpu_put(a);
	guestmem_vcpu_put(b);
	/* A put handle does not free the id. */
	ASSERT_EQ(guestmem_vcpu_create(vm, 0, &c), -EEXIST);
	guestmem_vm_put(vm);

	ASSERT_EQ(guestmem_vm_create(0, &vm), 0);
	ASSERT_EQ(guestmem_vm_enable_cap(vm, &cap), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 8, &a), -EINVAL);
	ASSERT_EQ(guestmem_vcpu_create(vm, 7, &a), 0);
	guestmem_vcpu_put(a);
	guestmem_vm_put(vm);
}

/* KVM_CAP_MAX_VCPUS (1024) vCPUs, and not one more. */
TEST(test_create_max_vcpus)
{
	struct guestmem_vcpu **v = calloc(1025, sizeof(*v));
	struct guestmem_vm *vm;
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max < 1200) {
		free(v);
		SKIP("RLIMIT_NOFILE hard limit %llu < 1200", (unsigned long long)rl.rlim_max);
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	ASSERT_EQ(guestmem_check_extension(NULL, KVM_CAP_MAX_VCPUS), 1024);
	ASSERT_EQ(guestmem_vm_create(0, &vm), 0);
	for (uint32_t i = 0; i < 1024; i++)
		ASSERT_EQ(guestmem_vcpu_create(vm, i * 4, &v[i]), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 1, &v[1024]), -EINVAL);
	for (uint32_t i = 0; i < 1024; i++)
		guestmem_vcpu_put(v[i]);
	guestmem_vm_put(vm);
	free(v);
}

static void guest_report_regs(struct guestmem_guest *g)
{
	const struct kvm_regs *r = guestmem_guest_regs(g);

	guestmem_guest_outl(g, PORT_REPORT, (uint32_t)r->rbx);
	guestmem_guest_outl(g, PORT_REPORT, guestmem_guest_vcpu_id(g));
}

TEST(test_regs)
{
	struct env *e = env_new(0, guest_report_regs);
	struct kvm_regs r;

	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rip, 0xfff0);
	ASSERT_EQ(r.rflags, 2);
	ASSERT_EQ(r.rdx, 0x600);
	r.rflags = 0;
	r.rbx = 0x1234;
	ASSERT_EQ(guestmem_vcpu_set_regs(e->vcpu, &r), 0);
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rflags, 2); /* bit 1 is forced */
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 4), 0x1234);
	/* At the exit: RAX holds the value, RDX the port, RIP not yet moved. */
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rax & 0xffffffff, 0x1234);
	ASSERT_EQ(r.rdx & 0xffff, PORT_REPORT);
	ASSERT_EQ(r.rip, 0xfff0);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 4), 0);
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rip, 0xfff1); /* the first OUT completed */
	run_expect(e, KVM_EXIT_SHUTDOWN);
	run_expect(e, KVM_EXIT_SHUTDOWN); /* and it stays down */
	env_free(e);
}

/* ---- port I/O ---------------------------------------------------------------------- */

static void guest_pio(struct guestmem_guest *g)
{
	uint8_t b;
	uint16_t w;
	uint32_t l;

	guestmem_guest_outb(g, 0x10, 0x5a);
	b = guestmem_guest_inb(g, 0x11);
	w = guestmem_guest_inw(g, 0x12);
	l = guestmem_guest_inl(g, 0x13);
	guestmem_guest_outb(g, 0x14, b);
	guestmem_guest_outw(g, 0x14, w);
	guestmem_guest_outl(g, 0x14, l);
}

static void run_expect_in(struct env *e, uint16_t port, unsigned size, uint32_t value)
{
	uint8_t *data;

	run_expect(e, KVM_EXIT_IO);
	ASSERT_EQ(e->run->io.direction, KVM_EXIT_IO_IN);
	ASSERT_EQ(e->run->io.port, port);
	ASSERT_EQ(e->run->io.size, size);
	data = (uint8_t *)e->run + e->run->io.data_offset;
	for (unsigned i = 0; i < size; i++)
		ASSERT_EQ(data[i], 0); /* zeroed before the exit */
	memcpy(data, &value, size);
}

TEST(test_pio)
{
	struct env *e = env_new(0, guest_pio);
	struct kvm_regs r;

	memset((uint8_t *)e->run + 4096, 0xff, 16);
	ASSERT_EQ(run_expect_out(e, 0x10, 1), 0x5a);
	run_expect_in(e, 0x11, 1, 0xa5);
	run_expect_in(e, 0x12, 2, 0xbeef);
	/* RAX's upper bytes survive an 8- or 16-bit IN. */
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	r.rax = 0x1111111111111111ULL;
	ASSERT_EQ(guestmem_vcpu_set_regs(e->vcpu, &r), 0);
	run_expect_in(e, 0x13, 4, 0xcafef00d);
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rax, 0x111111111111beefULL);
	ASSERT_EQ(run_expect_out(e, 0x14, 1), 0xa5);
	ASSERT_EQ(run_expect_out(e, 0x14, 2), 0xbeef);
	/* The IN of 4 zero-extended RAX; each OUT set only its own width. */
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rax, 0xcafebeefULL);
	ASSERT_EQ(run_expect_out(e, 0x14, 4), 0xcafef00d);
	run_expect(e, KVM_EXIT_SHUTDOWN);
	env_free(e);
}

/* ---- MMIO --------------------------------------------------------------------------- */

static void guest_mmio(struct guestmem_guest *g)
{
	uint8_t buf[12];
	uint32_t x = guestmem_guest_read32(g, MMIO_GPA + 4);

	guestmem_guest_write64(g, MMIO_GPA + 8, (uint64_t)x * 2);
	guestmem_guest_read(g, MMIO_GPA + 0x100, buf, sizeof(buf));
	guestmem_guest_write(g, 0x1000, buf, sizeof(buf)); /* RAM: no exit */
	guestmem_guest_outb(g, PORT_REPORT, 0);
}

static void run_expect_mmio(struct env *e, uint64_t gpa, uint32_t len, bool write)
{
	run_expect(e, KVM_EXIT_MMIO);
	ASSERT_EQ(e->run->mmio.phys_addr, gpa);
	ASSERT_EQ(e->run->mmio.len, len);
	ASSERT_EQ(e->run->mmio.is_write, write);
}

TEST(test_mmio)
{
	struct env *e = env_new(0, guest_mmio);
	uint64_t v;

	run_expect_mmio(e, MMIO_GPA + 4, 4, false);
	v = 0x12345678;
	memcpy(e->run->mmio.data, &v, 8);
	run_expect_mmio(e, MMIO_GPA + 8, 8, true);
	memcpy(&v, e->run->mmio.data, 8);
	ASSERT_EQ(v, 0x2468acf0ULL);
	/* Wider than 8 bytes: 8-byte fragments, ascending. */
	run_expect_mmio(e, MMIO_GPA + 0x100, 8, false);
	memcpy(e->run->mmio.data, "abcdefgh", 8);
	run_expect_mmio(e, MMIO_GPA + 0x108, 4, false);
	memcpy(e->run->mmio.data, "ijkl", 4);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 0);
	ASSERT_MEM_EQ(e->mem + 0x1000, "abcdefghijkl", 12);
	run_expect(e, KVM_EXIT_SHUTDOWN);
	env_free(e);
}

/* ---- hypercalls ----------------------------------------------------------------------- */

static void guest_hypercalls(struct guestmem_guest *g)
{
	/* Each result goes out as a 32-bit OUT. */
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 12, 0x1000, 1, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 12, 0x1001, 1, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 12, 0x1000, 0, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 12, 0x1000, ~0ULL, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 5, 0, 0, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 1, 0, 0, 0, 0));
	guestmem_guest_outl(g, 1, (uint32_t)guestmem_guest_hypercall(g, 12, 0x2000, 3, 0x19, 7));
}

TEST(test_hypercall)
{
	struct env *e = env_new(1, guest_hypercalls);
	struct kvm_regs r;

	/* Not enabled yet: -KVM_ENOSYS, no exit. */
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), -1000);
	enable_hc_exit(e->vm);
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), -22); /* unaligned */
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), -22); /* npages 0 */
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), -22); /* wraps */
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), -1000); /* other nr */
	ASSERT_EQ((int32_t)run_expect_out(e, 1, 4), 0); /* KVM_HC_VAPIC_POLL_IRQ */
	run_expect(e, KVM_EXIT_HYPERCALL);
	ASSERT_EQ(e->run->hypercall.nr, 12);
	ASSERT_EQ(e->run->hypercall.args[0], 0x2000);
	ASSERT_EQ(e->run->hypercall.args[1], 3);
	ASSERT_EQ(e->run->hypercall.args[2], 0x19);
	ASSERT_EQ(*kvm_run_hypercall_flags(e->run), KVM_EXIT_HYPERCALL_LONG_MODE);
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rax, 12);
	ASSERT_EQ(r.rsi, 7);
	e->run->hypercall.ret = 0x77;
	ASSERT_EQ(run_expect_out(e, 1, 4), 0x77);
	run_expect(e, KVM_EXIT_SHUTDOWN);
	env_free(e);
}

/* ---- memory-fault exits and conversions ----------------------------------------------- */

static void guest_private_on_plain_slot(struct guestmem_guest *g)
{
	guestmem_guest_write32(g, 0x3004, 0xabcd);
	guestmem_guest_outb(g, PORT_REPORT, 1);
}

TEST(test_memory_fault_exit)
{
	struct env *e = env_new(1, guest_private_on_plain_slot);
	struct kvm_run_memory_fault *mf;

	ASSERT_EQ(set_attr(e->vm, 0x3000, 4096, KVM_MEMORY_ATTRIBUTE_PRIVATE), 0);
	/* Private access, but slot 0 has no guest_memfd: EFAULT + exit 39. */
	ASSERT_EQ(guestmem_vcpu_run(e->vcpu), -EFAULT);
	ASSERT_EQ(e->run->exit_reason, KVM_EXIT_MEMORY_FAULT);
	mf = kvm_run_memory_fault(e->run);
	ASSERT_EQ(mf->gpa, 0x3000);
	ASSERT_EQ(mf->size, 4096);
	ASSERT_EQ(mf->flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	/* Again without a change: the same exit. */
	ASSERT_EQ(guestmem_vcpu_run(e->vcpu), -EFAULT);
	/* Convert to shared: the access is retried and lands in the slot. */
	ASSERT_EQ(set_attr(e->vm, 0x3000, 4096, 0), 0);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 1);
	ASSERT_EQ(*(uint32_t *)(e->mem + 0x3004), 0xabcd);
	run_expect(e, KVM_EXIT_SHUTDOWN);
	env_free(e);
}

#define CONV_GPA 0x100000000ULL

static void guest_convert(struct guestmem_guest *g)
{
	guestmem_guest_memset(g, CONV_GPA, 0x11, 8192);
	/* To private (the VMM converts on the hypercall). */
	guestmem_guest_hypercall(g, 12, CONV_GPA, 2, KVM_MAP_GPA_RANGE_ENCRYPTED, 0);
	guestmem_guest_outb(g, PORT_REPORT, guestmem_guest_read8(g, CONV_GPA)); /* fresh: 0 */
	guestmem_guest_memset(g, CONV_GPA, 0x22, 8192);
	guestmem_guest_outb(g, PORT_REPORT, guestmem_guest_read8(g, CONV_GPA + 4097));
	/* The VMM punches the private pages: zeros. */
	guestmem_guest_outb(g, PORT_REPORT, guestmem_guest_read8(g, CONV_GPA + 100));
	/* Back to shared: the old shared data is still there. */
	guestmem_guest_hypercall(g, 12, CONV_GPA, 2, KVM_MAP_GPA_RANGE_DECRYPTED, 0);
	guestmem_guest_outb(g, PORT_REPORT, guestmem_guest_read8(g, CONV_GPA + 8191));
}

static void handle_map_gpa(struct env *e)
{
	uint64_t gpa = e->run->hypercall.args[0], size = e->run->hypercall.args[1] * 4096;
	bool priv = e->run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED;

	ASSERT_EQ(set_attr(e->vm, gpa, size, priv ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0), 0);
	e->run->hypercall.ret = 0;
}

TEST(test_private_conversion)
{
	struct env *e = env_new(1, guest_convert);
	struct kvm_create_guest_memfd args = { .size = MEM_SIZE };
	struct guestmem_gmem *gmem;
	uint8_t *shared = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ASSERT_EQ(guestmem_gmem_create(e->vm, &args, &gmem), 0);
	ASSERT_EQ(set_region(e->vm, 1, KVM_MEM_GUEST_MEMFD, CONV_GPA, MEM_SIZE, shared,
				    gmem), 0);
	enable_hc_exit(e->vm);
	run_expect(e, KVM_EXIT_HYPERCALL);
	ASSERT_EQ(shared[0], 0x11);
	handle_map_gpa(e);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 0);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 0x22);
	/* Private writes never reach the shared view. */
	ASSERT_EQ(shared[4097], 0x11);
	ASSERT_EQ(guestmem_gmem_fallocate(gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
						 0, 8192), 0);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 0);
	run_expect(e, KVM_EXIT_HYPERCALL);
	handle_map_gpa(e);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 0x11);
	run_expect(e, KVM_EXIT_SHUTDOWN);
	guestmem_gmem_put(gmem);
	env_free(e);
	munmap(shared, MEM_SIZE);
}

/* ---- immediate_exit and signals ---------------------------------------------------------- */

static void guest_in_then_out(struct guestmem_guest *g)
{
	uint8_t v = guestmem_guest_inb(g, 0x30);

	guestmem_guest_outb(g, 0x31, v);
}

TEST(test_immediate_exit)
{
	struct env *e = env_new(0, guest_in_then_out);
	struct kvm_regs r;

	run_expect_in(e, 0x30, 1, 0x42);
	e->run->immediate_exit = 1;
	ASSERT_EQ(guestmem_vcpu_run(e->vcpu), -EINTR);
	/* exit_reason keeps its value; the IN was completed anyway. */
	ASSERT_EQ(e->run->exit_reason, KVM_EXIT_IO);
	ASSERT_EQ(guestmem_vcpu_get_regs(e->vcpu, &r), 0);
	ASSERT_EQ(r.rax & 0xff, 0x42);
	ASSERT_EQ(r.rip, 0xfff1);
	e->run->immediate_exit = 0;
	ASSERT_EQ(run_expect_out(e, 0x31, 1), 0x42);
	env_free(e);
}

static void guest_spin(struct guestmem_guest *g)
{
	struct env *e = genv(g);

	__atomic_store_n(&e->spinning, 1, __ATOMIC_RELEASE);
	/* Every read is a stop point where a kick takes effect. */
	while (!__atomic_load_n(&e->stop, __ATOMIC_RELAXED))
		guestmem_guest_read8(g, 0x2000);
	guestmem_guest_outb(g, PORT_REPORT, 9);
}

static void on_sigusr1(int sig)
{
	(void)sig;
}

struct killer {
	pthread_t target;
	struct env *e;
};

/* Signal the target once its guest runs, i.e. it is inside KVM_RUN (a
 * signal that arrives earlier would be handled before the wait and missed). */
static void *killer_fn(void *arg)
{
	struct killer *k = arg;

	ASSERT_WAIT(__atomic_load_n(&k->e->spinning, __ATOMIC_ACQUIRE), 10000);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

static void signal_case(int sa_flags)
{
	struct env *e = env_new(0, guest_spin);
	struct sigaction sa = { .sa_handler = on_sigusr1, .sa_flags = sa_flags };
	struct killer k = { pthread_self(), e };
	pthread_t t;

	sigaction(SIGUSR1, &sa, NULL);
	ASSERT_EQ(pthread_create(&t, NULL, killer_fn, &k), 0);
	ASSERT_EQ(guestmem_vcpu_run(e->vcpu), -EINTR);
	ASSERT_EQ(e->run->exit_reason, KVM_EXIT_INTR);
	pthread_join(t, NULL);
	/* Re-entry resumes the interrupted guest where it stopped. */
	__atomic_store_n(&e->stop, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 9);
	signal(SIGUSR1, SIG_DFL);
	env_free(e);
}

TEST(test_signal_interrupts_run)
{
	signal_case(0);
	signal_case(SA_RESTART); /* ppoll is never restarted */
}

/* KVM_RUN waits with the caller's signal mask: a blocked signal stays pending. */
TEST(test_blocked_signal_not_seen)
{
	struct env *e = env_new(0, guest_spin);
	struct sigaction sa = { .sa_handler = on_sigusr1 };
	sigset_t set, old;

	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pthread_kill(pthread_self(), SIGUSR1); /* pending while blocked */
	/* Still blocked while KVM_RUN waits, so no EINTR... */
	__atomic_store_n(&e->stop, 1, __ATOMIC_RELAXED);
	ASSERT_EQ(run_expect_out(e, PORT_REPORT, 1), 9);
	pthread_sigmask(SIG_SETMASK, &old, NULL); /* ...and delivered here */
	signal(SIGUSR1, SIG_DFL);
	env_free(e);
}

TEST(test_no_guest_program)
{
	struct guestmem_vm *vm;
	struct guestmem_vcpu *v;
	struct kvm_run *run;

	unsetenv("GUESTMEM_GUEST");
	ASSERT_EQ(guestmem_vm_create(0, &vm), 0);
	ASSERT_EQ(guestmem_vcpu_create(vm, 0, &v), 0);
	run = guestmem_vcpu_run_struct(v);
	ASSERT_EQ(guestmem_vcpu_run(v), 0);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_INTERNAL_ERROR);
	ASSERT_EQ(run->internal.suberror, KVM_INTERNAL_ERROR_EMULATION);
	guestmem_vcpu_put(v);
	guestmem_vm_put(vm);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
