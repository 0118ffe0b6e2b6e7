/* SPDX-License-Identifier: MIT */
/*
 * The x86 backend (issue 9): real machine code run by KVM_RUN in the guest
 * process, each figure a ratio against a baseline measured in the same run:
 *  - a compute loop (ALU work, a LOCK increment every 64 iterations) run
 *    as a guest vs the very same bytes called natively in this process, on
 *    one vCPU and on two vCPUs sharing the counter (which must come out
 *    exact: LOCK is atomic between vCPU threads);
 *  - a port-I/O exit round trip (KVM_RUN returns KVM_EXIT_IO, re-enter)
 *    for machine code vs for a C guest, and vs a round trip between two
 *    processes over eventfds (issue 10's baseline);
 *  - first touch of a private page by machine code vs by a C guest;
 *  - a KVM_HC_MAP_GPA_RANGE round trip (hypercall exit,
 *    KVM_SET_MEMORY_ATTRIBUTES, re-entry) vs a port-I/O round trip;
 *  - first touch (pages allocated ahead in runs, backing_memfd.c) and a
 *    4 KiB punch of private memory held by the guest
 *    process (as under `guestmem exec`) vs kept in this process;
 *  - a guest process's start and end through the spawner (as under
 *    `guestmem exec`) vs by this process's library.
 * The VMM side uses the uAPI (<guestmem/sys.h>) as a VMM would.
 *
 * Guest physical layout: memslot 0 (shared, anonymous) 0-4 MiB: PML4 at
 * 0x1000, PDPT 0x2000, PDs 0x3000 (0-1 GiB) and 0x4000 (1-2 GiB) of 2 MiB
 * pages, GDT 0x6000, code 0x10000, stack top 0x30000, counter 0x100000;
 * memslot 1 (guest_memfd, private) at 1 GiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <guestmem/guest.h>
#include <guestmem/guestmem.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#include "bench.h"
#include "gproc/gproc.h"
#include "gproc/spawner.h"
#include "lib/host_cpuid.h"
#include "uapi/uapi.h"

#define PG 4096ULL
#define MIB (1ULL << 20)
#define LOW_SIZE (4 * MIB)
#define CODE 0x10000ULL
#define STACK_TOP 0x30000ULL
#define COUNTER 0x100000ULL
#define PRIV_GPA (1ULL << 30)
#define PORT_DONE 0x10
#define PORT_MARK 0x11

struct xvm {
	int kvm, fd, gmem, nr_vcpus;
	int vcpu[2];
	struct kvm_run *run[2];
	uint8_t *low;
	void *priv_shared;
	uint64_t priv_size;
};

static void put64(uint8_t *mem, uint64_t gpa, uint64_t v)
{
	memcpy(mem + gpa, &v, 8);
}

static int xvm_vcpu_start(struct xvm *m, int i, uint64_t rip, uint64_t rdi)
{
	struct kvm_segment cs = { .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1,
				  .s = 1, .l = 1, .g = 1 };
	struct kvm_segment ds = { .limit = 0xffffffff, .selector = 0x10, .type = 3, .present = 1,
				  .s = 1, .db = 1, .g = 1 };
	struct kvm_regs r = { .rip = rip, .rsp = STACK_TOP - (uint64_t)i * 0x8000, .rflags = 2,
			      .rdi = rdi };
	struct kvm_sregs s;

	if (guestmem_sys_ioctl(m->vcpu[i], KVM_GET_SREGS, &s))
		return -errno;
	s.cs = cs;
	s.ds = s.es = s.fs = s.gs = s.ss = ds;
	s.tr = (struct kvm_segment){ .limit = 0x67, .type = 11, .present = 1 };
	s.gdt.base = 0x6000;
	s.gdt.limit = 23;
	s.idt.base = 0x5000;
	s.idt.limit = 0xfff;
	s.cr0 = 0x80050033; /* PG AM WP NE ET MP PE */
	s.cr3 = 0x1000;
	s.cr4 = 0x620;	    /* PAE OSFXSR OSXMMEXCPT */
	s.efer = 0x500;	    /* LME LMA */
	if (guestmem_sys_ioctl(m->vcpu[i], KVM_SET_SREGS, &s) ||
	    guestmem_sys_ioctl(m->vcpu[i], KVM_SET_REGS, &r))
		return -errno;
	return 0;
}

/*
 * The next VM keeps its private memory in its guest process only, as a VM
 * under `guestmem exec` does (kvm->private_held; the C API's default is
 * to keep it in this process).
 */
static bool xvm_held;

/* A VM with @nr_vcpus vCPUs, and @priv_size bytes of private memory at 1 GiB. */
static int xvm_create(struct xvm *m, int nr_vcpus, uint64_t priv_size)
{
	struct kvm_userspace_memory_region2 r = { .memory_size = LOW_SIZE };

	memset(m, 0, sizeof(*m));
	m->gmem = -1;
	m->nr_vcpus = nr_vcpus;
	m->priv_size = priv_size;
	m->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (m->kvm < 0)
		return -errno;
	m->fd = guestmem_sys_ioctl(m->kvm, KVM_CREATE_VM, KVM_X86_SW_PROTECTED_VM);
	if (m->fd < 0)
		return -errno;
	if (xvm_held) {
		struct gm_file *f = gm_file_lookup(m->fd);

		if (!f)
			return -EBADF;
		f->kvm->private_held = true;
		gm_file_put(f);
	}
	m->low = mmap(NULL, LOW_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m->low == MAP_FAILED)
		return -errno;
	put64(m->low, 0x1000, 0x2000 | 3);
	put64(m->low, 0x2000, 0x3000 | 3);
	put64(m->low, 0x2008, 0x4000 | 3);
	for (uint64_t i = 0; i < 1024; i++) /* 0-2 GiB identity, 2 MiB pages */
		put64(m->low, 0x3000 + i * 8, (i << 21) | 0x83);
	put64(m->low, 0x6008, 0x00af9b000000ffffULL); /* 64-bit code */
	put64(m->low, 0x6010, 0x00cf93000000ffffULL); /* data */
	r.userspace_addr = (uintptr_t)m->low;
	if (guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION2, &r))
		return -errno;
	if (priv_size) {
		struct kvm_create_guest_memfd cg = { .size = priv_size };
		struct kvm_memory_attributes ma = { PRIV_GPA, priv_size,
						    KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
		struct kvm_enable_cap cap = { .cap = KVM_CAP_EXIT_HYPERCALL,
					      .args = { 1ULL << KVM_HC_MAP_GPA_RANGE } };

		m->gmem = guestmem_sys_ioctl(m->fd, KVM_CREATE_GUEST_MEMFD, &cg);
		if (m->gmem < 0)
			return -errno;
		m->priv_shared = mmap(NULL, priv_size, PROT_READ | PROT_WRITE,
				      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m->priv_shared == MAP_FAILED)
			return -errno;
		r = (struct kvm_userspace_memory_region2){
			.slot = 1, .flags = KVM_MEM_GUEST_MEMFD, .guest_phys_addr = PRIV_GPA,
			.memory_size = priv_size, .userspace_addr = (uintptr_t)m->priv_shared,
			.guest_memfd = (uint32_t)m->gmem,
		};
		if (guestmem_sys_ioctl(m->fd, KVM_SET_USER_MEMORY_REGION2, &r) ||
		    guestmem_sys_ioctl(m->fd, KVM_SET_MEMORY_ATTRIBUTES, &ma) ||
		    guestmem_sys_ioctl(m->fd, KVM_ENABLE_CAP, &cap))
			return -errno;
	}
	for (int i = 0; i < nr_vcpus; i++) {
		m->vcpu[i] = guestmem_sys_ioctl(m->fd, KVM_CREATE_VCPU, i);
		if (m->vcpu[i] < 0)
			return -errno;
		m->run[i] = guestmem_sys_mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED,
					      m->vcpu[i], 0);
		if (m->run[i] == MAP_FAILED)
			return -errno;
	}
	return 0;
}

static void xvm_destroy(struct xvm *m)
{
	for (int i = 0; i < m->nr_vcpus; i++) {
		if (m->run[i] && m->run[i] != MAP_FAILED)
			guestmem_sys_munmap(m->run[i], 3 * PG);
		if (m->vcpu[i] > 0)
			guestmem_sys_close(m->vcpu[i]);
	}
	if (m->gmem >= 0)
		guestmem_sys_close(m->gmem);
	if (m->fd > 0)
		guestmem_sys_close(m->fd);
	if (m->kvm > 0)
		guestmem_sys_close(m->kvm);
	if (m->low && m->low != MAP_FAILED)
		munmap(m->low, LOW_SIZE);
	if (m->priv_shared && m->priv_shared != MAP_FAILED)
		munmap(m->priv_shared, m->priv_size);
}

/* KVM_RUN until a port-I/O exit on @port; other exits are errors. */
static int run_to_port(struct xvm *m, int i, uint16_t port)
{
	if (guestmem_sys_ioctl(m->vcpu[i], KVM_RUN, 0))
		return -errno;
	if (m->run[i]->exit_reason != KVM_EXIT_IO || m->run[i]->io.port != port) {
		bench_note("x86: vCPU %d: exit %u where port 0x%x was expected", i,
			   m->run[i]->exit_reason, port);
		return -EPROTO;
	}
	return 0;
}

/* ---- the compute loop ------------------------------------------------------ */

/*
 * for (rcx = n; rcx; rcx--) { rax = (rax + rcx) * 3; if (!(rcx & 63))
 * lock incq (%rdi); }  then the tail: OUT to PORT_DONE for the guest,
 * RET for the native call.
 */
static size_t compute_code(uint8_t *p, uint64_t n, bool guest)
{
	static const uint8_t body[] = {
		0x48, 0x01, 0xc8,	/* add %rcx, %rax */
		0x48, 0x6b, 0xc0, 0x03, /* imul $3, %rax, %rax */
		0xf6, 0xc1, 0x3f,	/* test $63, %cl */
		0x75, 0x04,		/* jnz 1f */
		0xf0, 0x48, 0xff, 0x07, /* lock incq (%rdi) */
		0x48, 0xff, 0xc9,	/* 1: dec %rcx */
	};
	size_t k = 0;

	p[k++] = 0x48;
	p[k++] = 0xb9; /* movabs $n, %rcx */
	memcpy(p + k, &n, 8);
	k += 8;
	memcpy(p + k, body, sizeof(body));
	k += sizeof(body);
	p[k++] = 0x75; /* jnz body */
	p[k] = (uint8_t)-(int)(sizeof(body) + 2);
	k++;
	if (guest) {
		p[k++] = 0xe6; /* out %al, $PORT_DONE */
		p[k++] = PORT_DONE;
		p[k++] = 0xf4; /* hlt */
	} else {
		p[k++] = 0xc3; /* ret */
	}
	return k;
}

struct native_arg {
	void (*fn)(volatile uint64_t *counter);
	volatile uint64_t *counter;
};

static void *native_thread(void *a)
{
	struct native_arg *na = a;

	na->fn(na->counter);
	return NULL;
}

/* The same bytes on @threads host threads; ns of wall time. */
static double native_compute_ns(uint64_t n, int threads, uint64_t *counter_out)
{
	uint8_t *text = mmap(NULL, PG, PROT_READ | PROT_WRITE | PROT_EXEC,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static volatile uint64_t counter;
	struct native_arg na;
	pthread_t t[2];
	uint64_t t0;
	double ns;

	if (text == MAP_FAILED)
		return -1;
	compute_code(text, n, false);
	na.fn = (void (*)(volatile uint64_t *))(uintptr_t)text;
	na.counter = &counter;
	counter = 0;
	t0 = bench_now_ns();
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, native_thread, &na);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	ns = (double)(bench_now_ns() - t0);
	*counter_out = counter;
	munmap(text, PG);
	return ns;
}

struct vcpu_arg {
	struct xvm *m;
	int i, r;
};

static void *vcpu_thread(void *a)
{
	struct vcpu_arg *va = a;

	va->r = run_to_port(va->m, va->i, PORT_DONE);
	return NULL;
}

/* The guest on @nr vCPUs from their first KVM_RUN to their exits; ns. */
static double guest_compute_ns(uint64_t n, int nr, uint64_t *counter_out, int *err)
{
	/* Each vCPU first stops at a mark, so the guest process and the
	 * shadow of the code page are set up outside the timed part. */
	static const uint8_t mark[] = { 0xe6, PORT_MARK }; /* out %al, $PORT_MARK */
	struct vcpu_arg va[2];
	pthread_t t[2];
	struct xvm m;
	uint64_t t0;
	double ns = -1;
	int r = xvm_create(&m, nr, 0);

	if (!r) {
		memcpy(m.low + CODE, mark, sizeof(mark));
		compute_code(m.low + CODE + sizeof(mark), n, true);
		for (int i = 0; i < nr && !r; i++)
			r = xvm_vcpu_start(&m, i, CODE, COUNTER);
		for (int i = 0; i < nr && !r; i++)
			r = run_to_port(&m, i, PORT_MARK);
	}
	if (!r) {
		t0 = bench_now_ns();
		for (int i = 0; i < nr; i++) {
			va[i] = (struct vcpu_arg){ &m, i, 0 };
			pthread_create(&t[i], NULL, vcpu_thread, &va[i]);
		}
		for (int i = 0; i < nr; i++) {
			pthread_join(t[i], NULL);
			r = r ? r : va[i].r;
		}
		ns = (double)(bench_now_ns() - t0);
		memcpy(counter_out, m.low + COUNTER, 8);
	}
	xvm_destroy(&m);
	*err = r;
	return ns;
}

static int bench_compute(void)
{
	const uint64_t n = 100000000;
	double g1[3], n1[3], g2[3], n2[3];
	uint64_t c, cn;
	bool exact = true;
	int r = 0;

	for (int k = 0; k < 3 && !r; k++) {
		bench_progress("run %d of 3", k + 1);
		g1[k] = guest_compute_ns(n, 1, &c, &r);
		exact &= c == n / 64;
		n1[k] = native_compute_ns(n, 1, &cn);
		if (!r)
			g2[k] = guest_compute_ns(n, 2, &c, &r);
		exact &= c == 2 * (n / 64);
		n2[k] = native_compute_ns(n, 2, &cn);
	}
	if (r)
		return r;
	/* Speed relative to native: native time / guest time. */
	bench_row("compute loop, 1 vCPU: speed vs native (x)", bench_median(n1, 3) / bench_median(g1, 3),
		  1.0, "x", "at least 0.5x native");
	bench_row("compute loop, 2 vCPUs: speed vs 2 native threads (x)",
		  bench_median(n2, 3) / bench_median(g2, 3), 1.0, "x", "at least 0.5x native");
	bench_note("x86/compute: LOCK increments shared by 2 vCPUs %s (%llu expected per run)",
		   exact ? "all counted" : "LOST", (unsigned long long)(2 * (n / 64)));
	return exact ? 0 : -EPROTO;
}

/* ---- port-I/O exit round trips ----------------------------------------------- */

static void c_guest_pio(struct guestmem_guest *g)
{
	const uint64_t *iters = guestmem_guest_opaque(g);

	for (uint64_t i = 0; i <= *iters; i++)
		guestmem_guest_outb(g, PORT_DONE, 0);
}

static double c_guest_pio_ns(uint64_t iters, int *err)
{
	struct guestmem_vcpu *vcpu = NULL;
	struct guestmem_vm *vm = NULL;
	struct kvm_run *run;
	uint64_t t0 = 0;
	double ns = -1;
	int r = guestmem_vm_create(0, &vm);

	if (!r)
		r = guestmem_vcpu_create(vm, 0, &vcpu);
	if (!r)
		r = guestmem_vcpu_set_guest(vcpu, c_guest_pio, &iters);
	/* The first exit starts the guest thread: not timed. */
	for (uint64_t i = 0; !r && i <= iters; i++) {
		if (i == 1)
			t0 = bench_now_ns();
		r = guestmem_vcpu_run(vcpu);
		run = guestmem_vcpu_run_struct(vcpu);
		if (!r && run->exit_reason != KVM_EXIT_IO)
			r = -EPROTO;
	}
	if (!r)
		ns = (double)(bench_now_ns() - t0) / (double)iters;
	guestmem_vcpu_put(vcpu);
	guestmem_vm_put(vm);
	*err = r;
	return ns;
}

/* One MSR through KVM_SET_MSRS: 0, or -EINVAL if KVM would refuse it. */
static int xvm_set_msr(struct xvm *m, uint32_t index, uint64_t data)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} b = { .h.nmsrs = 1, .e = { .index = index, .data = data } };

	return guestmem_sys_ioctl(m->vcpu[0], KVM_SET_MSRS, &b) == 1 ? 0 : -EINVAL;
}

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define MSR_KVM_STEAL_TIME 0x4b564d03
#define PV_RECORDS 0x7000ULL /* a free page: kvm-clock at 0, steal time at 0x40 */

/*
 * ns per PIO exit round trip of machine code; with @records the guest has
 * the kvm-clock record (and the steal-time one, where the host keeps
 * schedstats), which KVM_RUN updates at each entry.
 */
static double x86_pio_ns(uint64_t iters, bool records, int *err)
{
	static const uint8_t loop[] = { 0xe6, PORT_DONE, 0xeb, 0xfc }; /* out; jmp back */
	struct xvm m;
	uint64_t t0 = 0;
	double ns = -1;
	int r = xvm_create(&m, 1, 0);

	if (!r) {
		memcpy(m.low + CODE, loop, sizeof(loop));
		r = xvm_vcpu_start(&m, 0, CODE, 0);
	}
	if (!r && records) {
		r = xvm_set_msr(&m, MSR_KVM_SYSTEM_TIME_NEW, PV_RECORDS | 1);
		(void)xvm_set_msr(&m, MSR_KVM_STEAL_TIME, (PV_RECORDS + 0x40) | 1);
	}
	for (uint64_t i = 0; !r && i <= iters; i++) {
		if (i == 1)
			t0 = bench_now_ns();
		r = run_to_port(&m, 0, PORT_DONE);
	}
	if (!r)
		ns = (double)(bench_now_ns() - t0) / (double)iters;
	xvm_destroy(&m);
	*err = r;
	return ns;
}

/* ---- first touch of private memory ------------------------------------------- */

static void c_guest_touch(struct guestmem_guest *g)
{
	uint64_t *arg = guestmem_guest_opaque(g); /* in: size; out: ns */
	uint64_t t0 = bench_now_ns();

	for (uint64_t off = 0; off < arg[0]; off += PG)
		guestmem_guest_write8(g, PRIV_GPA + off, 1);
	arg[1] = bench_now_ns() - t0;
}

static double c_guest_touch_ns(uint64_t size, int *err)
{
	struct kvm_userspace_memory_region2 mr = { .flags = KVM_MEM_GUEST_MEMFD,
						   .guest_phys_addr = PRIV_GPA, .memory_size = size };
	struct kvm_create_guest_memfd cg = { .size = size };
	struct kvm_memory_attributes ma = { PRIV_GPA, size, KVM_MEMORY_ATTRIBUTE_PRIVATE, 0 };
	struct guestmem_vcpu *vcpu = NULL;
	struct guestmem_gmem *gmem = NULL;
	struct guestmem_vm *vm = NULL;
	uint64_t arg[2] = { size, 0 };
	void *shared = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int r = shared == MAP_FAILED ? -errno : guestmem_vm_create(KVM_X86_SW_PROTECTED_VM, &vm);

	if (!r)
		r = guestmem_gmem_create(vm, &cg, &gmem);
	mr.userspace_addr = (uintptr_t)shared;
	if (!r)
		r = guestmem_set_memory_region(vm, &mr, gmem);
	if (!r)
		r = guestmem_set_memory_attributes(vm, &ma);
	if (!r)
		r = guestmem_vcpu_create(vm, 0, &vcpu);
	if (!r)
		r = guestmem_vcpu_set_guest(vcpu, c_guest_touch, arg);
	if (!r)
		r = guestmem_vcpu_run(vcpu); /* the guest returns: shutdown */
	guestmem_vcpu_put(vcpu);
	guestmem_gmem_put(gmem);
	guestmem_vm_put(vm);
	if (shared != MAP_FAILED)
		munmap(shared, size);
	*err = r;
	return (double)arg[1] / (double)(size / PG);
}

static double x86_touch_ns(uint64_t size, int *err, double *punch_ns)
{
	uint8_t c[64];
	uint64_t pages = size / PG, base = PRIV_GPA, t0;
	size_t k = 0;
	struct xvm m;
	double ns = -1;
	int r = xvm_create(&m, 1, size);

	c[k++] = 0xe6; /* out %al, $PORT_MARK */
	c[k++] = PORT_MARK;
	c[k++] = 0x48;
	c[k++] = 0xbf; /* movabs $base, %rdi */
	memcpy(c + k, &base, 8);
	k += 8;
	c[k++] = 0x48;
	c[k++] = 0xb9; /* movabs $pages, %rcx */
	memcpy(c + k, &pages, 8);
	k += 8;
	{
		static const uint8_t loop[] = {
			0xc6, 0x07, 0x01,			  /* movb $1, (%rdi) */
			0x48, 0x81, 0xc7, 0x00, 0x10, 0x00, 0x00, /* add $4096, %rdi */
			0x48, 0xff, 0xc9,			  /* dec %rcx */
			0x75, 0xf1,				  /* jnz loop */
			0xe6, PORT_DONE,			  /* out %al, $PORT_DONE */
			0xf4,
		};
		memcpy(c + k, loop, sizeof(loop));
		k += sizeof(loop);
	}
	if (!r) {
		memcpy(m.low + CODE, c, k);
		r = xvm_vcpu_start(&m, 0, CODE, 0);
	}
	if (!r)
		r = run_to_port(&m, 0, PORT_MARK);
	if (!r) {
		t0 = bench_now_ns();
		r = run_to_port(&m, 0, PORT_DONE);
		ns = (double)(bench_now_ns() - t0) / (double)pages;
	}
	/* Then every other page punched, one fallocate each (scattered). */
	if (!r && punch_ns) {
		t0 = bench_now_ns();
		for (uint64_t i = 0; i < pages && !r; i += 2)
			if (guestmem_sys_fallocate(m.gmem, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
						   (off_t)(i * PG), PG))
				r = -errno;
		*punch_ns = (double)(bench_now_ns() - t0) / (double)((pages + 1) / 2);
	}
	xvm_destroy(&m);
	*err = r;
	return ns;
}

/* ---- shadow faults through page tables in private memory ------------------------ */

/*
 * The guest (rdi = where its tables go) builds 4-level tables there
 * mapping 0-2 MiB with a 2 MiB page and 2-4 MiB with 4 KiB pages (PT at
 * rdi + 0x4000, no A or D bits), loads CR3, then writes a byte to each
 * of the 512 pages of 2-4 MiB (shared memory): one shadow fault each,
 * whose walk reads four entries and sets A and D in the guest's tables.
 */
extern const uint8_t tables_code[], tables_code_end[];
__asm__(".pushsection .rodata\n"
	"tables_code:\n"
	"	lea 0x4000(%rdi), %r8\n"
	"	mov $0x200000, %eax\n"
	"	mov $512, %ecx\n"
	"	mov %r8, %rdx\n"
	"1:	lea 3(%rax), %r9\n"
	"	mov %r9, (%rdx)\n"
	"	add $8, %rdx\n"
	"	add $0x1000, %rax\n"
	"	dec %ecx\n"
	"	jnz 1b\n"
	"	lea 0x3000(%rdi), %rdx\n"
	"	movq $0x83, (%rdx)\n"
	"	lea 3(%r8), %rax\n"
	"	mov %rax, 8(%rdx)\n"
	"	lea 0x2000(%rdi), %rax\n"
	"	lea 3(%rdx), %r9\n"
	"	mov %r9, (%rax)\n"
	"	lea 0x1000(%rdi), %rdx\n"
	"	lea 3(%rax), %r9\n"
	"	mov %r9, (%rdx)\n"
	"	mov %rdx, %cr3\n"
	"	out %al, $0x11\n" /* PORT_MARK */
	"	mov $0x200000, %edx\n"
	"	mov $512, %ecx\n"
	"2:	movb $1, (%rdx)\n"
	"	add $0x1000, %rdx\n"
	"	dec %ecx\n"
	"	jnz 2b\n"
	"	out %al, $0x10\n" /* PORT_DONE */
	"	hlt\n"
	"tables_code_end:\n"
	".popsection");

/* Per shadow fault, in ns, with the guest's tables in private memory held
 * by the guest process (@private) or in shared memory at 1.5 MiB. */
static double x86_tables_fault_ns(bool private, int *err)
{
	struct xvm m;
	uint64_t t0;
	double ns = -1;
	int r;

	xvm_held = private;
	r = xvm_create(&m, 1, private ? 2 * MIB : 0);
	xvm_held = false;
	if (!r) {
		memcpy(m.low + CODE, tables_code, (size_t)(tables_code_end - tables_code));
		r = xvm_vcpu_start(&m, 0, CODE, private ? PRIV_GPA : 0x180000);
	}
	if (!r)
		r = run_to_port(&m, 0, PORT_MARK);
	if (!r) {
		t0 = bench_now_ns();
		r = run_to_port(&m, 0, PORT_DONE);
		ns = (double)(bench_now_ns() - t0) / 512;
	}
	xvm_destroy(&m);
	*err = r;
	return ns;
}

/* ---- KVM_HC_MAP_GPA_RANGE round trips ----------------------------------------- */

/* The hypercall instruction that traps at CPL3 on this host: the other
 * vendor's (a nested host's hypervisor answers its own; see
 * src/preload/cpuid_fault.c).  KVM accepts either. */
static void hypercall_insn(uint8_t *p)
{
	p[0] = 0x0f;
	p[1] = 0x01;
	p[2] = gm_host_vendor() == GM_VENDOR_INTEL ? 0xd9 : 0xc1; /* vmmcall : vmcall */
}

static size_t map_gpa_call(uint8_t *p, uint64_t gpa, uint32_t attrs)
{
	uint32_t nr = KVM_HC_MAP_GPA_RANGE;
	size_t k = 0;

	p[k++] = 0xb8; /* mov $KVM_HC_MAP_GPA_RANGE, %eax */
	memcpy(p + k, &nr, 4);
	k += 4;
	p[k++] = 0x48;
	p[k++] = 0xbb; /* movabs $gpa, %rbx */
	memcpy(p + k, &gpa, 8);
	k += 8;
	p[k++] = 0xb9; /* mov $1, %ecx: one page */
	p[k++] = 1;
	p[k++] = 0;
	p[k++] = 0;
	p[k++] = 0;
	p[k++] = 0xba; /* mov $attrs, %edx */
	memcpy(p + k, &attrs, 4);
	k += 4;
	hypercall_insn(p + k);
	return k + 3;
}

static double x86_map_gpa_ns(uint64_t iters, int *err)
{
	uint8_t c[128];
	size_t k = 0;
	struct xvm m;
	uint64_t t0 = 0;
	double ns = -1;
	int r = xvm_create(&m, 1, 2 * MIB);

	k += map_gpa_call(c + k, PRIV_GPA, 0);			  /* to shared */
	k += map_gpa_call(c + k, PRIV_GPA, KVM_MAP_GPA_RANGE_ENCRYPTED); /* to private */
	c[k++] = 0xeb; /* jmp to the start */
	c[k] = (uint8_t)-(int)(k + 1);
	k++;
	if (!r) {
		memcpy(m.low + CODE, c, k);
		r = xvm_vcpu_start(&m, 0, CODE, 0);
	}
	for (uint64_t i = 0; !r && i <= iters; i++) {
		struct kvm_run *run = m.run[0];
		struct kvm_memory_attributes ma = { 0 };

		if (i == 1)
			t0 = bench_now_ns();
		if (guestmem_sys_ioctl(m.vcpu[0], KVM_RUN, 0)) {
			r = -errno;
			break;
		}
		if (run->exit_reason != KVM_EXIT_HYPERCALL) {
			bench_note("x86: exit %u where a MAP_GPA_RANGE hypercall was expected",
				   run->exit_reason);
			r = -EPROTO;
			break;
		}
		ma.address = run->hypercall.args[0];
		ma.size = run->hypercall.args[1] * PG;
		if (run->hypercall.args[2] & KVM_MAP_GPA_RANGE_ENCRYPTED)
			ma.attributes = KVM_MEMORY_ATTRIBUTE_PRIVATE;
		run->hypercall.ret = guestmem_sys_ioctl(m.fd, KVM_SET_MEMORY_ATTRIBUTES, &ma) ? errno : 0;
	}
	if (!r)
		ns = (double)(bench_now_ns() - t0) / (double)iters;
	xvm_destroy(&m);
	*err = r;
	return ns;
}

/* A row of medians of three runs, each in ns, shown in us. */
static void row_us(const char *name, double *value, double *baseline, const char *goal)
{
	bench_row(name, bench_median(value, 3) / 1e3, bench_median(baseline, 3) / 1e3, "us", goal);
}

static int bench_exits(void)
{
	const uint64_t iters = 20000, size = 16 * MIB;
	double xp[3], cp[3], xt[3], ct[3], xh[3], ht[3], xpu[3], hpu[3], efd[3], xr[3];
	double tp[3], ts[3];
	int r = 0;

	for (int k = 0; k < 3 && !r; k++) {
		bench_progress("run %d of 3", k + 1);
		xp[k] = x86_pio_ns(iters, false, &r);
		if (!r)
			xr[k] = x86_pio_ns(iters, true, &r);
		if (!r && (efd[k] = bench_eventfd_rt_ns((int)iters)) < 0)
			r = -ECHILD;
		if (!r)
			cp[k] = c_guest_pio_ns(iters, &r);
		if (!r)
			xt[k] = x86_touch_ns(size, &r, &xpu[k]);
		xvm_held = true;
		if (!r)
			ht[k] = x86_touch_ns(size, &r, &hpu[k]);
		xvm_held = false;
		if (!r)
			ct[k] = c_guest_touch_ns(size, &r);
		if (!r)
			xh[k] = x86_map_gpa_ns(iters / 4, &r);
		if (!r)
			ts[k] = x86_tables_fault_ns(false, &r);
		if (!r)
			tp[k] = x86_tables_fault_ns(true, &r);
	}
	if (r)
		return r;
	row_us("PIO exit round trip: machine code vs C guest (us)", xp, cp,
	       "trap + mailbox: about 2x");
	row_us("PIO exit round trip vs a two-process eventfd round trip (us)", xp, efd,
	       "within 3x (issue 10)");
	row_us("PIO exit round trip with the kvm-clock and steal-time records vs without (us)", xr,
	       xp, "the records written at each entry (steal time) or on change");
	row_us("first touch of a private page: machine code vs C guest (us)", xt, ct,
	       "shadow fault + stage-2 fault");
	row_us("first touch of a private page: held by the guest process vs here (us)", ht, xt,
	       "allocated ahead, a round trip per 16-512 pages: about 1x");
	row_us("4 KiB punch of private memory: held by the guest process vs here (us)", hpu, xpu,
	       "+ a punch round trip to the guest process");
	row_us("MAP_GPA_RANGE round trip vs PIO exit, machine code (us)", xh, xp,
	       "exit + attributes + re-entry");
	row_us("shadow fault, page tables in held private memory vs shared (us)", tp, ts,
	       "+ a round trip to the guest process per entry read or A/D set");
	return 0;
}

/* Start and end of a guest process, @n times: the mean in ns.  @door -1: here. */
static double gproc_life_ns(int n, int door, int *err)
{
	uint64_t t0 = bench_now_ns();

	for (int i = 0; i < n; i++) {
		struct gp_vm *vm;
		int r = gp_vm_create_door(&vm, 0, door);

		if (r) {
			*err = r;
			return -1;
		}
		gp_vm_destroy(vm);
	}
	return (double)(bench_now_ns() - t0) / n;
}

/*
 * A guest process (one per VM) started by the spawner `guestmem exec`
 * runs (src/gproc/spawner.h) vs by the VMM's own library, as the C API
 * does: the spawner adds a round trip and a process hop to each.
 */
static int bench_spawn(void)
{
	double here[3], via[3];
	char env[64];
	int r = 0, door = gp_spawner_start(NULL, false, env, sizeof(env));

	if (door < 0)
		return door;
	for (int k = 0; k < 3 && !r; k++) {
		bench_progress("run %d of 3", k + 1);
		here[k] = gproc_life_ns(30, -1, &r);
		if (!r)
			via[k] = gproc_life_ns(30, door, &r);
	}
	close(door); /* the spawner exits */
	if (r)
		return r;
	row_us("guest process start + end: through the spawner vs by the VMM (us)", via, here,
	       "about 1x: a round trip more, a smaller process to copy");
	return 0;
}

const struct bench_item bench_x86_items[] = {
	{ "compute", bench_compute },
	{ "exits", bench_exits },
	{ "spawn", bench_spawn },
	{ NULL, NULL },
};
