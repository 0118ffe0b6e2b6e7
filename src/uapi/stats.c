// SPDX-License-Identifier: MIT
/*
 * Binary statistics: KVM_GET_STATS_FD on a VM or a vCPU (KVM_CAP_BINARY_
 * STATS_FD).  The file is the kernel's layout, read with read(2) at the
 * file position or pread(2) anywhere:
 *
 *   struct kvm_stats_header       id_offset = 24
 *   id string, KVM_STATS_NAME_SIZE "kvm-<pid>" or "kvm-<pid>/vcpu-<id>"
 *   descriptors                   16 bytes + a KVM_STATS_NAME_SIZE name each
 *   data                          one u64 per stat, read when the file is read
 *
 * Only counters guestmem really keeps are listed, under the kernel's name
 * where the kernel has that counter; the others (not in any kernel) are
 * marked "guestmem" below.  The fd holds a reference on the VM, so it
 * keeps working after the VM and vCPU fds are closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <guestmem/kvm.h>

#include "mmu/mmu.h"
#include "uapi.h"
#include "vcpu/vcpu.h"

#define GM_STAT_CUMULATIVE (KVM_STATS_TYPE_CUMULATIVE | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10)
#define GM_STAT_INSTANT (KVM_STATS_TYPE_INSTANT | KVM_STATS_UNIT_NONE | KVM_STATS_BASE_POW10)

struct gm_stats {
	struct kvm *kvm;	/* a counted reference */
	struct kvm_vcpu *vcpu;	/* NULL for the VM's file; lives as long as kvm */
	char id[KVM_STATS_NAME_SIZE];
};

struct gm_stat_def {
	const char *name;
	uint32_t flags;
	uint64_t (*get)(const struct gm_stats *s);
};

/* ---- VM stats ----------------------------------------------------------------- */

/* Every remote flush request is one grace period: requests == flushes. */
static uint64_t vm_remote_tlb_flush(const struct gm_stats *s)
{
	return __atomic_load_n(&s->kvm->stat.remote_flushes, __ATOMIC_RELAXED);
}

static uint64_t vm_pages_4k(const struct gm_stats *s)
{
	return kvm_mmu_nr_leaves_level(s->kvm, S2_PG_LEVEL_4K);
}

static uint64_t vm_pages_2m(const struct gm_stats *s)
{
	return kvm_mmu_nr_leaves_level(s->kvm, S2_PG_LEVEL_2M);
}

static uint64_t vm_pages_1g(const struct gm_stats *s)
{
	return kvm_mmu_nr_leaves_level(s->kvm, S2_PG_LEVEL_1G);
}

/* The VM's counters, bumped atomically from any thread. */
#define VM_STAT(fn, field)                                                      \
	static uint64_t fn(const struct gm_stats *s)                            \
	{                                                                       \
		return __atomic_load_n(&s->kvm->stat.field, __ATOMIC_RELAXED);  \
	}

VM_STAT(vm_zapped_ranges, zapped_ranges)
VM_STAT(vm_invalidations, invalidations)
VM_STAT(vm_attr_updates, attr_updates)

static const struct gm_stat_def gm_vm_stats[] = {
	{ "remote_tlb_flush_requests", GM_STAT_CUMULATIVE, vm_remote_tlb_flush },
	{ "remote_tlb_flush", GM_STAT_CUMULATIVE, vm_remote_tlb_flush },
	{ "pages_4k", GM_STAT_INSTANT, vm_pages_4k },
	{ "pages_2m", GM_STAT_INSTANT, vm_pages_2m },
	{ "pages_1g", GM_STAT_INSTANT, vm_pages_1g },
	/* guestmem: stage-2 ranges zapped, mmu invalidations, attribute updates */
	{ "mmu_zapped_ranges", GM_STAT_CUMULATIVE, vm_zapped_ranges },
	{ "mmu_invalidations", GM_STAT_CUMULATIVE, vm_invalidations },
	{ "mem_attr_updates", GM_STAT_CUMULATIVE, vm_attr_updates },
};

/* ---- vCPU stats ----------------------------------------------------------------- */

#define VCPU_STAT(fn, expr)                                         \
	static uint64_t fn(const struct gm_stats *s)                \
	{                                                           \
		const struct kvm_vcpu_stat *st = &s->vcpu->stat;    \
		return READ_ONCE(expr);                             \
	}

VCPU_STAT(vcpu_pf_taken, st->fault.faults)
VCPU_STAT(vcpu_pf_fixed, st->fault.fixed)
VCPU_STAT(vcpu_pf_emulate, st->fault.emulate)
VCPU_STAT(vcpu_pf_retry, st->fault.retries)
VCPU_STAT(vcpu_pf_huge, st->fault.huge_maps)
VCPU_STAT(vcpu_memory_fault_exits, st->fault.memory_fault_exits)
VCPU_STAT(vcpu_io_exits, st->exits[KVM_EXIT_IO])
VCPU_STAT(vcpu_mmio_exits, st->exits[KVM_EXIT_MMIO])
VCPU_STAT(vcpu_signal_exits, st->signal_exits)
VCPU_STAT(vcpu_hypercall_exits, st->exits[KVM_EXIT_HYPERCALL])
VCPU_STAT(vcpu_halt_exits, st->exits[KVM_EXIT_HLT])

/* Every exit is to user space here: there is no in-kernel exit to count. */
static uint64_t vcpu_exits(const struct gm_stats *s)
{
	uint64_t n = 0;

	for (int i = 0; i < KVM_VCPU_NR_EXIT_STATS; i++)
		n += READ_ONCE(s->vcpu->stat.exits[i]);
	return n;
}

static const struct gm_stat_def gm_vcpu_stats[] = {
	{ "pf_taken", GM_STAT_CUMULATIVE, vcpu_pf_taken },
	{ "pf_fixed", GM_STAT_CUMULATIVE, vcpu_pf_fixed },
	{ "pf_emulate", GM_STAT_CUMULATIVE, vcpu_pf_emulate },
	{ "exits", GM_STAT_CUMULATIVE, vcpu_exits },
	{ "io_exits", GM_STAT_CUMULATIVE, vcpu_io_exits },
	{ "mmio_exits", GM_STAT_CUMULATIVE, vcpu_mmio_exits },
	{ "signal_exits", GM_STAT_CUMULATIVE, vcpu_signal_exits },
	{ "halt_exits", GM_STAT_CUMULATIVE, vcpu_halt_exits },
	/* guestmem: faults that retried, huge mappings, exits by reason */
	{ "pf_retry", GM_STAT_CUMULATIVE, vcpu_pf_retry },
	{ "pf_huge", GM_STAT_CUMULATIVE, vcpu_pf_huge },
	{ "memory_fault_exits", GM_STAT_CUMULATIVE, vcpu_memory_fault_exits },
	{ "hypercall_exits", GM_STAT_CUMULATIVE, vcpu_hypercall_exits },
};

/* ---- the file ----------------------------------------------------------------- */

struct gm_stats_desc {
	struct kvm_stats_desc d;
	char name[KVM_STATS_NAME_SIZE];
};
_Static_assert(sizeof(struct kvm_stats_desc) == 16, "kvm_stats_desc layout");
_Static_assert(sizeof(struct gm_stats_desc) == 64, "descriptor with its name");

static void gm_stats_table(const struct gm_stats *s, const struct gm_stat_def **t, uint32_t *n)
{
	*t = s->vcpu ? gm_vcpu_stats : gm_vm_stats;
	*n = s->vcpu ? ARRAY_SIZE(gm_vcpu_stats) : ARRAY_SIZE(gm_vm_stats);
}

/* One piece [@start, @start + @len) of the file image at @pos; advances. */
static int gm_stats_piece(const void *src, off_t start, size_t len, char **dst, off_t *pos,
			  size_t *remain)
{
	off_t skip = *pos - start;
	size_t n;

	if (*remain == 0 || skip < 0 || (size_t)skip >= len)
		return 0;
	n = GM_MIN(len - (size_t)skip, *remain);
	if (gm_copy_to_user(*dst, (const char *)src + skip, n))
		return -EFAULT;
	*dst += n;
	*pos += (off_t)n;
	*remain -= n;
	return 0;
}

/*
 * kvm_stats_read(): up to @n bytes of header | id | descriptors | data
 * from *@pos; 0 at or past the end; -EFAULT leaves *@pos alone.
 */
static ssize_t gm_stats_read(struct gm_file *f, void *buf, size_t n, off_t *posp)
{
	const struct gm_stats *s = f->priv;
	const struct gm_stat_def *t;
	struct kvm_stats_header h = { 0 };
	struct gm_stats_desc *desc;
	uint64_t *data;
	uint32_t nd;
	size_t total, remain;
	/* Atomic: lseek reads a file's position without its lock (noop_llseek). */
	off_t pos = READ_ONCE(*posp);
	char *dst = buf;
	int r = 0;

	gm_stats_table(s, &t, &nd);
	h.name_size = KVM_STATS_NAME_SIZE;
	h.num_desc = nd;
	h.id_offset = sizeof(h);
	h.desc_offset = h.id_offset + KVM_STATS_NAME_SIZE;
	h.data_offset = h.desc_offset + nd * (uint32_t)sizeof(*desc);
	total = h.data_offset + nd * sizeof(uint64_t);
	if (pos < 0 || (size_t)pos >= total || n == 0)
		return 0;
	remain = GM_MIN(n, total - (size_t)pos);
	desc = calloc(nd, sizeof(*desc));
	data = calloc(nd, sizeof(*data));
	if (!desc || !data) {
		free(desc);
		free(data);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < nd; i++) {
		desc[i].d.flags = t[i].flags;
		desc[i].d.size = 1;
		desc[i].d.offset = i * (uint32_t)sizeof(uint64_t);
		snprintf(desc[i].name, sizeof(desc[i].name), "%s", t[i].name);
		data[i] = t[i].get(s);
	}
	r = gm_stats_piece(&h, 0, sizeof(h), &dst, &pos, &remain);
	if (!r)
		r = gm_stats_piece(s->id, h.id_offset, KVM_STATS_NAME_SIZE, &dst, &pos, &remain);
	if (!r)
		r = gm_stats_piece(desc, h.desc_offset, nd * sizeof(*desc), &dst, &pos, &remain);
	if (!r)
		r = gm_stats_piece(data, h.data_offset, nd * sizeof(*data), &dst, &pos, &remain);
	free(desc);
	free(data);
	if (r)
		return r;
	n = (size_t)(pos - READ_ONCE(*posp));
	WRITE_ONCE(*posp, pos);
	return (ssize_t)n;
}

static void gm_stats_release(struct gm_file *f)
{
	struct gm_stats *s = f->priv;

	kvm_put_kvm(s->kvm);
	free(s);
}

static void gm_stats_fill_stat(struct gm_file *f, struct stat *st)
{
	(void)f;
	gm_anon_inode_stat(st);
}

static const struct gm_file_ops gm_stats_fops = {
	/* noop_llseek; FMODE_PREAD is set on these files explicitly. */
	.fops = GM_FOPS_NOOP_LLSEEK | GM_FOPS_PREAD | GM_FOPS_ANON_SETATTR,
	.read = gm_stats_read,
	.fill_stat = gm_stats_fill_stat,
	.release = gm_stats_release,
};

long gm_get_stats_fd(struct kvm *kvm, struct kvm_vcpu *vcpu)
{
	char name[40];
	struct gm_stats *s;
	struct gm_file *f;
	int r;

	if (vcpu)
		snprintf(name, sizeof(name), "anon_inode:kvm-vcpu-stats:%u", vcpu->vcpu_id);
	else
		snprintf(name, sizeof(name), "anon_inode:kvm-vm-stats");
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = gm_file_create(GM_FILE_STATS, &gm_stats_fops, name, O_RDONLY, true, 0, &f);
	if (r) {
		free(s);
		return r;
	}
	s->kvm = kvm;
	s->vcpu = vcpu;
	/* The id names the process that asks, as the kernel's current pid. */
	if (vcpu)
		snprintf(s->id, sizeof(s->id), "kvm-%d/vcpu-%u", (int)getpid(), vcpu->vcpu_id);
	else
		snprintf(s->id, sizeof(s->id), "kvm-%d", (int)getpid());
	kvm_get_kvm(kvm); /* the file's reference, dropped by release */
	f->obj = s;
	f->priv = s;
	f->kvm = kvm;
	return gm_file_install(f);
}
