// SPDX-License-Identifier: MIT
/*
 * Port of the 6.8 selftest x86_64/private_mem_conversions_test (spec
 * kvm-gmem-spec.md §5.2): a SW-protected VM whose vCPUs convert their
 * memory between shared and private with KVM_HC_MAP_GPA_RANGE, with and
 * without fallocate, and punch holes in private memory; the VMM converts
 * with KVM_SET_MEMORY_ATTRIBUTES and fallocate and checks that it always
 * sees the shared data.  After the VM is gone the guest_memfd must still
 * punch and allocate.
 *
 * Usage: private_mem_conversions_test [-s anonymous|anonymous_thp|shmem]
 *                                      [-n vcpus (1..8)] [-m memslots]
 * Without options it runs a matrix of those.  The guest is
 * tests/guests/private_mem_conversions_guest.c, named by GUESTMEM_GUEST.
 */
#include <getopt.h>

#include "../guests/conversions.h"
#include "../guests/vcpu_util.h"

#define MAX_VCPUS 8
#define MAX_SLOTS 64

struct params {
	enum backing backing;
	uint32_t nr_vcpus;
	uint32_t nr_memslots;
};

struct data_slot {
	uint64_t gpa, size, gmem_off;
	uint8_t *hva;
};

struct conv_vm {
	int vm, gmem;
	uint8_t *slot0;
	struct data_slot slots[MAX_SLOTS];
	uint32_t nr_slots;
	int go; /* vCPU threads start together */
};

struct vcpu_thread {
	struct conv_vm *c;
	struct vcpu *v;
	pthread_t thread;
};

static struct data_slot *find_slot(struct conv_vm *c, uint64_t gpa)
{
	for (uint32_t i = 0; i < c->nr_slots; i++)
		if (gpa >= c->slots[i].gpa && gpa < c->slots[i].gpa + c->slots[i].size)
			return &c->slots[i];
	ASSERT_MSG(0, "gpa %#llx is in no data memslot", (unsigned long long)gpa);
	return NULL;
}

/* vm_guest_mem_fallocate: per memslot piece, on the slot's gmem range. */
static void guest_mem_fallocate(struct conv_vm *c, uint64_t gpa, uint64_t size, bool punch)
{
	int mode = FALLOC_FL_KEEP_SIZE | (punch ? FALLOC_FL_PUNCH_HOLE : 0);

	while (size) {
		struct data_slot *s = find_slot(c, gpa);
		uint64_t len = s->gpa + s->size - gpa;

		if (len > size)
			len = size;
		ASSERT_MSG(fallocate(c->gmem, mode, (off_t)(s->gmem_off + gpa - s->gpa),
				      (off_t)len) == 0,
			    "fallocate(mode %#x, gpa %#llx, len %#llx): %s", mode,
			    (unsigned long long)gpa, (unsigned long long)len, errno_name(errno));
		gpa += len;
		size -= len;
	}
}

static void handle_exit_hypercall(struct conv_vm *c, struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t gpa = run->hypercall.args[0], size = run->hypercall.args[1] * PG_SIZE;
	uint64_t flags = run->hypercall.args[2];
	bool shared = flags & MAP_GPA_SHARED;

	ASSERT_EQ(run->hypercall.nr, KVM_HC_MAP_GPA_RANGE);
	if (flags & MAP_GPA_DO_FALLOCATE)
		guest_mem_fallocate(c, gpa, size, shared);
	if (flags & MAP_GPA_SET_ATTRIBUTES)
		vm_set_memory_attributes(c->vm, gpa, size,
					 shared ? 0 : KVM_MEMORY_ATTRIBUTE_PRIVATE);
	run->hypercall.ret = 0;
}

/* SYNC(kind, gpa, size, expected[, new]): the host sees only shared data. */
static void handle_sync(struct conv_vm *c, const struct ucall *uc)
{
	uint64_t gpa = uc->args[1], size = uc->args[2];
	uint8_t expect = (uint8_t)uc->args[3];

	ASSERT_MSG(uc->args[0] == SYNC_SHARED || uc->args[0] == SYNC_PRIVATE,
		    "unknown sync kind %llu", (unsigned long long)uc->args[0]);
	for (uint64_t i = 0; i < size; i += PG_SIZE) {
		struct data_slot *s = find_slot(c, gpa + i);
		uint8_t *hva = s->hva + (gpa + i - s->gpa);
		uint64_t n = size - i < PG_SIZE ? size - i : PG_SIZE;

		for (uint64_t j = 0; j < n; j++)
			ASSERT_MSG(hva[j] == expect, "host reads %#x at gpa %#llx, expected %#x",
				    hva[j], (unsigned long long)(gpa + i + j), expect);
		if (uc->args[0] == SYNC_SHARED)
			memset(hva, (int)uc->args[4], n);
	}
}

static void *vcpu_thread_fn(void *arg)
{
	struct vcpu_thread *t = arg;
	struct ucall uc;

	while (!__atomic_load_n(&t->c->go, __ATOMIC_ACQUIRE))
		sched_yield();
	for (;;) {
		vcpu_run(t->v);
		if (t->v->run->exit_reason == KVM_EXIT_HYPERCALL) {
			handle_exit_hypercall(t->c, t->v);
			continue;
		}
		switch (vcpu_get_ucall(t->v, t->c->slot0, &uc)) {
		case UCALL_SYNC:
			handle_sync(t->c, &uc);
			break;
		case UCALL_DONE:
			return NULL;
		default:
			ASSERT_MSG(0, "unknown ucall %llu", (unsigned long long)uc.cmd);
		}
	}
}

static void add_data_slots(struct conv_vm *c, const struct params *p, uint64_t memfd_size)
{
	uint64_t slot_size = memfd_size / p->nr_memslots;

	ASSERT_MSG(slot_size * p->nr_memslots == memfd_size && !(slot_size % PG_SIZE),
		    "%u memslots do not divide %#llx bytes", p->nr_memslots,
		    (unsigned long long)memfd_size);
	for (uint32_t i = 0; i < p->nr_memslots; i++) {
		struct data_slot *s = &c->slots[c->nr_slots++];

		s->gpa = BASE_DATA_GPA + slot_size * i;
		s->size = slot_size;
		s->gmem_off = slot_size * i;
		s->hva = backing_alloc(p->backing, slot_size);
		vm_set_region2(c->vm, BASE_DATA_SLOT + i, KVM_MEM_GUEST_MEMFD, s->gpa, s->size,
			       s->hva, c->gmem, s->gmem_off);
	}
}

static void test_mem_conversions(void *arg)
{
	const struct params *p = arg;
	/* Each vCPU's chunk, aligned for huge pages: 4 MiB. */
	const uint64_t per_cpu_size = (PER_CPU_DATA_SIZE + SZ_2M - 1) & ~(uint64_t)(SZ_2M - 1);
	const uint64_t memfd_size = per_cpu_size * p->nr_vcpus;
	struct vcpu_thread t[MAX_VCPUS];
	struct conv_vm c = { 0 };

	require_guest();
	if (!vm_type_supported(KVM_X86_SW_PROTECTED_VM))
		SKIP("KVM_X86_SW_PROTECTED_VM is not supported");
	c.vm = vm_create(KVM_X86_SW_PROTECTED_VM);
	c.slot0 = backing_alloc(BACKING_ANON, UCALL_SLOT0_SIZE);
	vm_set_region(c.vm, 0, 0, 0, UCALL_SLOT0_SIZE, c.slot0);
	vm_enable_cap(c.vm, KVM_CAP_EXIT_HYPERCALL, 1ULL << KVM_HC_MAP_GPA_RANGE);
	c.gmem = vm_create_guest_memfd(c.vm, memfd_size, 0);
	add_data_slots(&c, p, memfd_size);

	for (uint32_t i = 0; i < p->nr_vcpus; i++) {
		t[i].c = &c;
		t[i].v = vm_vcpu_add(c.vm, i);
		vcpu_set_arg(t[i].v, BASE_DATA_GPA + i * per_cpu_size);
		ASSERT_EQ(pthread_create(&t[i].thread, NULL, vcpu_thread_fn, &t[i]), 0);
	}
	__atomic_store_n(&c.go, 1, __ATOMIC_RELEASE);
	for (uint32_t i = 0; i < p->nr_vcpus; i++) {
		pthread_join(t[i].thread, NULL);
		vcpu_free(t[i].v);
	}
	close(c.vm);

	/* The guest_memfd keeps its VM alive: it still punches and allocates. */
	ASSERT_OK(fallocate(c.gmem, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0,
				 (off_t)memfd_size));
	ASSERT_OK(fallocate(c.gmem, FALLOC_FL_KEEP_SIZE, 0, (off_t)memfd_size));
	close(c.gmem);
}

static void add_case(const struct params *p)
{
	static const char *names[] = { "anonymous", "anonymous_thp", "shmem" };
	char name[96];

	snprintf(name, sizeof(name), "conversions %s, %u vCPU(s), %u memslot(s)",
		 names[p->backing], p->nr_vcpus, p->nr_memslots);
	test_add(name, test_mem_conversions, (void *)p, 240);
}

int main(int argc, char **argv)
{
	static const struct params matrix[] = {
		{ BACKING_ANON, 1, 1 },	    { BACKING_ANON_THP, 2, 1 }, { BACKING_SHMEM, 2, 2 },
		{ BACKING_ANON, 4, 4 },	    { BACKING_ANON, 8, 8 },	{ BACKING_ANON_THP, 8, 2 },
	};
	struct params p = { BACKING_ANON, 1, 1 };
	bool custom = false;
	int opt;

	while ((opt = getopt(argc, argv, "s:n:m:")) != -1) {
		custom = true;
		if (opt == 's' && backing_parse(optarg, &p.backing) == 0)
			continue;
		if (opt == 'n' && (p.nr_vcpus = (uint32_t)atoi(optarg)) >= 1 && p.nr_vcpus <= MAX_VCPUS)
			continue;
		if (opt == 'm' && (p.nr_memslots = (uint32_t)atoi(optarg)) >= 1 &&
		    p.nr_memslots <= MAX_SLOTS)
			continue;
		fprintf(stderr, "usage: %s [-s anonymous|anonymous_thp|shmem] [-n 1..%d] [-m 1..%d]\n",
			argv[0], MAX_VCPUS, MAX_SLOTS);
		return 2;
	}
	if (custom)
		add_case(&p);
	else
		for (size_t i = 0; i < sizeof(matrix) / sizeof(matrix[0]); i++)
			add_case(&matrix[i]);
	/* The operands left after the options select cases (harness.h). */
	argv[optind - 1] = argv[0];
	return test_main(argc - optind + 1, argv + optind - 1);
}
