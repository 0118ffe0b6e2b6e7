/* SPDX-License-Identifier: MIT */
/*
 * The x86 backend's KVM_RUN (x86_run.h; docs/design-guest-execution-and-
 * isolation.md, step 3).
 *
 * One pass of the loop: deliver what must be delivered (events), make the
 * shadow mirror this vCPU's paging state, hand the registers and the maps
 * the last trap produced to gp_vcpu_run(), and dispatch the trap it
 * returns with:
 *  - #PF: walk the guest's page tables as the CPU does (A/D bits set,
 *    a guest #PF when its entries say so), then stage-2
 *    (kvm_mmu_fault_in: private/shared routing, memory-fault exits,
 *    no memslot -> the instruction is emulated as MMIO), then map the
 *    backing page in the guest process (x86_shadow.c), read-only until a
 *    write fault has set the guest PTE's D bit and stage-2 allows writes;
 *  - #GP/#UD on an instruction deprivileging makes trap (IN/OUT, HLT, MOV
 *    CR, RDMSR, CPUID with CPUID faulting, RDTSC...): decode and emulate
 *    (src/vcpu/x86/emulate.h) over guest memory reached the same way; any
 *    other host exception is the guest's own and is reflected to it;
 *  - INT3, a TF step, a hardware breakpoint (armed in the guest thread
 *    with perf events, gproc.h's gp_vcpu_set_hwbp): KVM_EXIT_DEBUG for
 *    what KVM_SET_GUEST_DEBUG asks, else the guest's #BP/#DB; emulated
 *    instructions step and check DR7.GD here too;
 *  - a kick: a signal (KVM_EXIT_INTR, -EINTR) or a zap waiting for this
 *    vCPU's maps (re-enter).
 * An emulated instruction that exits (I/O, MMIO, hypercall, MSR) stays
 * pending in the emulator and is finished by the next KVM_RUN
 * (kvm_x86_complete_userspace_io), as KVM finishes it.
 *
 * Events (exceptions the emulator or a walk raise, host exceptions that are
 * the guest's own, interrupts, NMIs) are queued in vcpu->arch.ev, where
 * KVM_GET/SET_VCPU_EVENTS see them, and delivered through the guest's IDT
 * at entry (src/vcpu/x86/event.h); a triple fault is KVM_EXIT_SHUTDOWN.
 *
 * SMM (an SMI from KVM_SMI or an IPI): the state is saved in SMRAM and the
 * handler's code runs in the emulator, one instruction per pass, against
 * address space 1 (x86_walk.c), until RSM (src/vcpu/x86/smm.h).
 *
 * 32-bit code (protected mode with or without paging, compatibility mode)
 * runs in the host's compatibility-mode code segment when its segments are
 * flat (x86_pm32.h).  States the backend does not run (real mode,
 * virtual-8086, 16-bit code, 32-bit code with other segments, RIP or
 * faults in the upper half or in the guest process's reserved window,
 * gp_guest_va_ok()) end in KVM_EXIT_INTERNAL_ERROR with the emulation
 * suberror, never a crash.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/gmemfd.h"
#include "gproc/gproc.h"
#include "lib/host_cpuid.h"
#include "lib/lockdep.h"
#include "lib/procfile.h"
#include "lib/rcu.h"
#include "lib/usercopy.h"
#include "mmu/mmu.h"
#include "vcpu/vcpu.h"
#include "vcpu/x86.h"
#include "vcpu/x86/decode.h"
#include "vcpu/x86/emulate.h"
#include "vcpu/x86/event.h"
#include "vcpu/x86/smm.h"
#include "vcpu/x86_pm32.h"
#include "vcpu/x86_run.h"
#include "vcpu/x86_shadow.h"
#include "vcpu/x86_walk.h"

#define MSR_KERNEL_GS_BASE 0xc0000102u
#define MSR_SMI_COUNT 0x34u
/* The RFLAGS bits the guest process runs with; the rest are VMM-side.  TF
 * steps natively (the guest's own, or KVM_GUESTDBG_SINGLESTEP's). */
#define RFLAGS_NATIVE (X86_RFLAGS_CF | X86_RFLAGS_PF | X86_RFLAGS_AF | X86_RFLAGS_ZF | \
		       X86_RFLAGS_SF | X86_RFLAGS_DF | X86_RFLAGS_OF | X86_RFLAGS_AC | \
		       X86_RFLAGS_TF)
#define MAX_FAULT_RETRIES 100000
#define HUGE_2M (2ULL << 20)

/* The VM's guest process and shadow. */
struct kvm_x86_vm {
	struct gp_vm *gp;
	struct kvm_x86_shadow *sh;
	/* kvm_shared_ram_enable() done: set once, under x86_vm_init_lock. */
	bool ram;
};

/* What the exit in progress was, for its completion. */
enum x86_exit_kind { XK_NONE, XK_IO, XK_MMIO, XK_HCALL, XK_MSR };

struct kvm_x86_vcpu {
	struct kvm_vcpu *v;
	struct kvm_x86_vm *vm;
	struct gp_vcpu *gp;
	struct x86_shadow_vcpu sv;
	struct x86_emu emu;
	struct x86_cpu_model model;
	struct x86_emu_ops ops;
	struct x86_regs xr;	  /* the emulator's view, rebuilt per emulation */
	struct x86_emu_result res; /* the exit in progress */
	enum x86_exit_kind exit_kind;
	uint64_t exit_rip;	  /* RIP of the instruction that exited */
	/* A memory-fault exit met inside an emulator callback. */
	bool mem_exit;
	struct kvm_page_fault mf;
	uint32_t msr_reason;	  /* KVM_MSR_EXIT_REASON_* of an MSR exit */
	bool emu_tf;		  /* the guest's own TF before the emulated instruction */
	/* The instruction being emulated is one KVM's emulator would run
	 * (port I/O, or an access that met MMIO): its memory operands are the
	 * shared view's.  Else it is one the CPU runs under KVM and only the
	 * guest process's CPL 3 made us emulate (IRET, LIDT, ...): they are
	 * the CPU's accesses, private memory included. */
	bool emu_soft;
	/* The last exit was USE_SW_BP's on an INT3 of this length at this RIP. */
	uint8_t sw_bp_len;
	uint64_t sw_bp_rip;
	uint8_t xsave_state;	  /* XS_*: where the FPU state is current */
};

enum { XS_VMM, XS_GUEST }; /* vcpu->arch.xsave is current / the guest thread's is */

/* ---- results ----------------------------------------------------------------- */

/* A pass of the loop either goes on or ends KVM_RUN with ret. */
#define X86R_CONTINUE 0
#define X86R_EXIT 1

/* KVM_EXIT_INTERNAL_ERROR with @suberror and no data words. */
static int exit_internal(struct kvm_vcpu *v, uint32_t suberror)
{
	struct kvm_run *run = v->run;

	run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
	run->internal.suberror = suberror;
	run->internal.ndata = 0;
	return X86R_EXIT;
}

/* ---- registers --------------------------------------------------------------- */

static void seg_in(struct x86_segment *d, const struct kvm_segment *s)
{
	*d = (struct x86_segment){ .base = s->base, .limit = s->limit, .selector = s->selector,
				   .type = s->type, .dpl = s->dpl, .present = s->present,
				   .s = s->s, .db = s->db, .l = s->l, .g = s->g,
				   .unusable = s->unusable };
}

static void seg_out(struct kvm_segment *d, const struct x86_segment *s)
{
	d->base = s->base;
	d->limit = s->limit;
	d->selector = s->selector;
	d->type = s->type;
	d->dpl = s->dpl;
	d->present = s->present;
	d->s = s->s;
	d->db = s->db;
	d->l = s->l;
	d->g = s->g;
	d->unusable = s->unusable;
}

static uint64_t vcpu_xcr0(struct kvm_vcpu *v)
{
	for (uint32_t i = 0; i < v->xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++)
		if (v->xcrs.xcrs[i].xcr == 0)
			return v->xcrs.xcrs[i].value;
	return 1; /* x87 only, the reset value */
}

static void vcpu_set_xcr0(struct kvm_vcpu *v, uint64_t val)
{
	for (uint32_t i = 0; i < v->xcrs.nr_xcrs && i < KVM_MAX_XCRS; i++) {
		if (v->xcrs.xcrs[i].xcr == 0) {
			v->xcrs.xcrs[i].value = val;
			return;
		}
	}
	if (v->xcrs.nr_xcrs < KVM_MAX_XCRS) {
		v->xcrs.xcrs[v->xcrs.nr_xcrs].xcr = 0;
		v->xcrs.xcrs[v->xcrs.nr_xcrs++].value = val;
	}
}

/* kvm_regs order: rax rbx rcx rdx rsi rdi rsp rbp r8..r15. */
static void gprs_in(uint64_t gpr[16], const struct kvm_regs *r)
{
	gpr[X86_RAX] = r->rax;
	gpr[X86_RCX] = r->rcx;
	gpr[X86_RDX] = r->rdx;
	gpr[X86_RBX] = r->rbx;
	gpr[X86_RSP] = r->rsp;
	gpr[X86_RBP] = r->rbp;
	gpr[X86_RSI] = r->rsi;
	gpr[X86_RDI] = r->rdi;
	gpr[X86_R8] = r->r8;
	gpr[X86_R9] = r->r9;
	gpr[X86_R10] = r->r10;
	gpr[X86_R11] = r->r11;
	gpr[X86_R12] = r->r12;
	gpr[X86_R13] = r->r13;
	gpr[X86_R14] = r->r14;
	gpr[X86_R15] = r->r15;
}

static void gprs_out(struct kvm_regs *r, const uint64_t gpr[16])
{
	r->rax = gpr[X86_RAX];
	r->rcx = gpr[X86_RCX];
	r->rdx = gpr[X86_RDX];
	r->rbx = gpr[X86_RBX];
	r->rsp = gpr[X86_RSP];
	r->rbp = gpr[X86_RBP];
	r->rsi = gpr[X86_RSI];
	r->rdi = gpr[X86_RDI];
	r->r8 = gpr[X86_R8];
	r->r9 = gpr[X86_R9];
	r->r10 = gpr[X86_R10];
	r->r11 = gpr[X86_R11];
	r->r12 = gpr[X86_R12];
	r->r13 = gpr[X86_R13];
	r->r14 = gpr[X86_R14];
	r->r15 = gpr[X86_R15];
}

/* The vCPU's state as the emulator sees it. */
static void regs_in(struct kvm_vcpu *v, struct x86_regs *x)
{
	const struct kvm_sregs *s = &v->sregs;
	uint64_t kgs = 0;

	memset(x, 0, sizeof(*x));
	gprs_in(x->gpr, &v->regs);
	x->rip = v->regs.rip;
	x->rflags = v->regs.rflags;
	x->cr0 = s->cr0;
	x->cr2 = s->cr2;
	x->cr3 = s->cr3;
	x->cr4 = s->cr4;
	x->cr8 = s->cr8;
	x->efer = s->efer;
	x->xcr0 = vcpu_xcr0(v);
	for (int i = 0; i < KVM_NR_DB_REGS; i++)
		x->dr[i] = v->arch.db[i];
	x->dr[6] = v->arch.dr6;
	x->dr[7] = v->arch.dr7;
	(void)kvm_vcpu_get_msr(v, MSR_KERNEL_GS_BASE, &kgs);
	x->kernel_gs_base = kgs;
	seg_in(&x->seg[X86_SEG_ES], &s->es);
	seg_in(&x->seg[X86_SEG_CS], &s->cs);
	seg_in(&x->seg[X86_SEG_SS], &s->ss);
	seg_in(&x->seg[X86_SEG_DS], &s->ds);
	seg_in(&x->seg[X86_SEG_FS], &s->fs);
	seg_in(&x->seg[X86_SEG_GS], &s->gs);
	seg_in(&x->tr, &s->tr);
	seg_in(&x->ldt, &s->ldt);
	x->gdt = (struct x86_dtable){ s->gdt.base, s->gdt.limit };
	x->idt = (struct x86_dtable){ s->idt.base, s->idt.limit };
	x->cpl = (s->cr0 & X86_CR0_PE) ? s->ss.dpl : 0; /* SVM's rule: the CPL is SS.DPL */
	x->smm = v->arch.ev.smi.smm;
	x->smbase = v->arch.smbase;
}

static void regs_out(struct kvm_vcpu *v, const struct x86_regs *x)
{
	struct kvm_sregs *s = &v->sregs;
	uint64_t kgs = 0;

	gprs_out(&v->regs, x->gpr);
	v->regs.rip = x->rip;
	v->regs.rflags = x->rflags;
	s->cr0 = x->cr0;
	s->cr2 = x->cr2;
	s->cr3 = x->cr3;
	s->cr4 = x->cr4;
	s->cr8 = x->cr8;
	s->efer = x->efer;
	if (x->xcr0 != vcpu_xcr0(v))
		vcpu_set_xcr0(v, x->xcr0);
	for (int i = 0; i < KVM_NR_DB_REGS; i++)
		v->arch.db[i] = x->dr[i];
	v->arch.dr6 = x->dr[6];
	v->arch.dr7 = x->dr[7];
	(void)kvm_vcpu_get_msr(v, MSR_KERNEL_GS_BASE, &kgs);
	if (kgs != x->kernel_gs_base)
		(void)kvm_vcpu_set_msr(v, MSR_KERNEL_GS_BASE, x->kernel_gs_base);
	seg_out(&s->es, &x->seg[X86_SEG_ES]);
	seg_out(&s->cs, &x->seg[X86_SEG_CS]);
	seg_out(&s->ss, &x->seg[X86_SEG_SS]);
	seg_out(&s->ds, &x->seg[X86_SEG_DS]);
	seg_out(&s->fs, &x->seg[X86_SEG_FS]);
	seg_out(&s->gs, &x->seg[X86_SEG_GS]);
	seg_out(&s->tr, &x->tr);
	seg_out(&s->ldt, &x->ldt);
	s->gdt.base = x->gdt.base;
	s->gdt.limit = x->gdt.limit;
	s->idt.base = x->idt.base;
	s->idt.limit = x->idt.limit;
	v->arch.ev.smi.smm = x->smm;
	v->arch.smbase = x->smbase;
}

static void cpu_in(struct kvm_vcpu *v, struct gp_cpu *c)
{
	gprs_in(c->gpr, &v->regs);
	c->rip = v->regs.rip;
	/* RF too: only the VMM's (an IRET's) RF may skip an instruction
	 * breakpoint, never the one the host kernel left in the frame. */
	c->rflags = (v->regs.rflags & (RFLAGS_NATIVE | X86_RFLAGS_RF)) | X86_RFLAGS_FIXED;
	c->fs_base = v->sregs.fs.base;
	c->gs_base = v->sregs.gs.base;
}

static void cpu_out(struct kvm_vcpu *v, const struct gp_cpu *c)
{
	bool moved = c->rip != v->regs.rip;

	gprs_out(&v->regs, c->gpr);
	v->regs.rip = c->rip;
	v->regs.rflags = (v->regs.rflags & ~RFLAGS_NATIVE) | (c->rflags & RFLAGS_NATIVE);
	/* The CPU clears RF once an instruction completed (RIP moved). */
	if (moved)
		v->regs.rflags &= ~X86_RFLAGS_RF;
	v->sregs.fs.base = c->fs_base;
	v->sregs.gs.base = c->gs_base;
}

/* ---- guest memory: the walk and stage-2, VMM side --------------------------------- */

/*
 * The host address of @gpa for a @write access (kvm_vcpu_gpa_host()):
 * X86_MEM_OK with *@host, X86_MEM_MMIO, or X86_MEM_FAULT with x->mem_exit
 * set and x->mf filled (a memory-fault exit, or a fault error); *@held
 * set if that is because the page is private memory the guest process
 * holds (kvm_x86_held_rw() reaches it).
 * Context: called and returns inside gm_rcu_read_lock(); drops it around
 * a fault.
 */
static int gpa_host(struct kvm_x86_vcpu *x, uint64_t gpa, bool write, uint8_t **host, bool *held)
{
	switch (kvm_vcpu_gpa_host(x->v, gpa, write, host, &x->mf)) {
	case KVM_PF_FIXED:
		return X86_MEM_OK;
	case KVM_PF_EMULATE:
		return X86_MEM_MMIO;
	case X86_GPA_HELD:
		*held = true; /* -EFAULT unless the caller reaches it */
		/* fallthrough */
	default:
		x->mem_exit = true;
		return X86_MEM_FAULT;
	}
}

/*
 * Copy between @buf and the host page of a guest access.  In SMM the page
 * is the VMM's memory reached without stage-2 (x86_walk.c), so the copy
 * goes through the kernel: a VMM that unmaps it meanwhile gets -EFAULT
 * here (an MMIO exit, as in KVM's emulator), not a crash.
 */
static int host_copy(struct kvm_x86_vcpu *x, uint8_t *host, uint8_t *buf, unsigned n, bool write)
{
	if (x->v->arch.ev.smi.smm)
		return write ? gm_copy_to_user(host, buf, n) : gm_copy_from_user(buf, host, n);
	memcpy(write ? host : buf, write ? buf : host, n);
	return 0;
}

/*
 * guest_access()'s @access bit for the CPU's own accesses (event delivery,
 * the bytes of the instruction it executes, the operands of instructions
 * the CPU runs under KVM: x->emu_soft clear), which reach private memory
 * (the guest process holds it under exec); the operands of what KVM's
 * emulator runs reach its shared view instead (shared_view_copy()).
 */
#define ACC_CPU (1U << 30)

/* The CPU's own access to held private memory (kvm_x86_held_rw()). */
static int held_copy(struct kvm_x86_vcpu *x, uint64_t gpa, uint8_t *buf, unsigned len,
		     bool write)
{
	switch (kvm_x86_held_rw(x->v, gpa, buf, len, write, &x->mf)) {
	case KVM_PF_FIXED:
		return X86_MEM_OK;
	case KVM_PF_RETRY:
		return -EAGAIN; /* shared now */
	case KVM_PF_EMULATE:
		return X86_MEM_MMIO;
	default:
		x->mem_exit = true;
		return X86_MEM_FAULT;
	}
}

/*
 * KVM's emulator reaches guest memory through the memslot's host mapping
 * (kvm_vcpu_read_guest() and its writer), whatever the page's attribute:
 * an operand in private memory is the shared view's bytes there, never
 * the private page's.  A host address that is not mapped: MMIO, as there
 * (a private gfn's slot is a guest_memfd one: no dirty log to mark).
 */
static int shared_view_copy(struct kvm_x86_vcpu *x, uint64_t gpa, uint8_t *buf, unsigned len,
			    bool write)
{
	gfn_t gfn = gpa >> GM_PAGE_SHIFT;
	struct kvm_memory_slot *slot;
	int r = X86_MEM_MMIO;

	gm_rcu_read_lock();
	slot = gfn_to_memslot(x->v->kvm, 0, gfn);
	if (slot && !(write && (slot->flags & KVM_MEM_READONLY))) {
		void *hva = (void *)(uintptr_t)(kvm_gfn_to_hva_memslot(slot, gfn) +
						(gpa & (GM_PAGE_SIZE - 1)));

		if (!(write ? gm_copy_to_user(hva, buf, len) : gm_copy_from_user(buf, hva, len)))
			r = X86_MEM_OK;
	}
	gm_rcu_read_unlock();
	return r;
}

/* One guest-virtual access within a page. */
static int access_page(struct kvm_x86_vcpu *x, uint64_t gva, uint8_t *buf, unsigned len,
		       bool write, uint32_t access, uint64_t *gpa, struct x86_exception *ex)
{
	struct x86_walk_result wr;
	uint8_t *host;
	int r = kvm_vcpu_walk(x->v, gva, access & ~ACC_CPU, &wr);

	if (r < 0)
		return X86_MEM_FAULT; /* not reached: the walk's ops fail as faults */
	if (r) {
		*ex = (struct x86_exception){ .vector = X86_PF, .has_error_code = true,
					      .error_code = wr.error_code, .cr2 = gva };
		return X86_MEM_FAULT;
	}
	*gpa = wr.gpa;
	if (!(access & ACC_CPU) && !x->v->arch.ev.smi.smm) {
		bool priv;

		gm_rcu_read_lock();
		priv = kvm_mem_is_private(x->v->kvm, wr.gpa >> GM_PAGE_SHIFT);
		gm_rcu_read_unlock();
		if (priv)
			return shared_view_copy(x, wr.gpa, buf, len, write);
	}
	do {
		bool held = false;

		gm_rcu_read_lock();
		r = gpa_host(x, wr.gpa, write, &host, &held);
		if (r == X86_MEM_OK && host_copy(x, host, buf, len, write))
			r = X86_MEM_MMIO;
		gm_rcu_read_unlock();
		if (held && (access & ACC_CPU)) {
			x->mem_exit = false;
			r = held_copy(x, wr.gpa, buf, len, write);
		}
	} while (r == -EAGAIN);
	return r;
}

static int guest_access(struct kvm_x86_vcpu *x, uint64_t gva, uint8_t *buf, unsigned len,
			bool write, uint32_t access, uint64_t *gpa, struct x86_exception *ex)
{
	while (len) {
		unsigned n = (unsigned)GM_MIN((uint64_t)len, GM_PAGE_SIZE - (gva & (GM_PAGE_SIZE - 1)));
		int r = access_page(x, gva, buf, n, write, access, gpa, ex);

		if (r != X86_MEM_OK)
			return r;
		gva += n;
		buf += n;
		len -= n;
	}
	return X86_MEM_OK;
}

static int emu_read(void *ctx, uint64_t gva, void *buf, unsigned len, uint64_t *gpa,
		    struct x86_exception *ex)
{
	struct kvm_x86_vcpu *x = ctx;

	return guest_access(x, gva, buf, len, false, x->emu_soft ? 0 : ACC_CPU, gpa, ex);
}

static int emu_write(void *ctx, uint64_t gva, const void *buf, unsigned len, uint64_t *gpa,
		     struct x86_exception *ex)
{
	struct kvm_x86_vcpu *x = ctx;

	return guest_access(x, gva, (uint8_t *)buf, len, true,
			    X86_PF_WRITE | (x->emu_soft ? 0 : ACC_CPU), gpa, ex);
}

/* Guest-physical RAM in the vCPU's address space (SMM's save area): 0, or
 * -1 if any byte is not RAM. */
static int phys_access(struct kvm_x86_vcpu *x, uint64_t gpa, uint8_t *buf, unsigned len,
		       bool write)
{
	int r = 0;

	gm_rcu_read_lock();
	while (len && !r) {
		unsigned n = (unsigned)GM_MIN((uint64_t)len, GM_PAGE_SIZE - (gpa & (GM_PAGE_SIZE - 1)));
		uint8_t *host;

		bool held = false;

		if (gpa_host(x, gpa, write, &host, &held) != X86_MEM_OK ||
		    host_copy(x, host, buf, n, write)) {
			r = -1;
			break;
		}
		buf += n;
		gpa += n;
		len -= n;
	}
	gm_rcu_read_unlock();
	x->mem_exit = false;
	return r;
}

static int emu_read_phys(void *ctx, uint64_t gpa, void *buf, unsigned len)
{
	return phys_access(ctx, gpa, buf, len, false);
}

/* ---- MSRs, CPUID, TSC ---------------------------------------------------------------- */

static uint32_t user_space_msr_mask(struct kvm *kvm)
{
	/* Written under kvm->lock, which ranks above vcpu->mutex: relaxed. */
	return __atomic_load_n(&kvm->arch.user_space_msr_mask, __ATOMIC_RELAXED);
}

/* A refused access: a user-space exit if the VMM asked for this reason. */
static int msr_refused(struct kvm_x86_vcpu *x, uint32_t reason)
{
	if (!(user_space_msr_mask(x->v->kvm) & reason))
		return X86_MSR_GP;
	x->msr_reason = reason;
	return X86_MSR_EXIT;
}

static int emu_msr(struct kvm_x86_vcpu *x, uint32_t index, bool write, uint64_t *val)
{
	struct kvm_vcpu *v = x->v;
	int r;

	gm_rcu_read_lock(); /* the filter's readers */
	r = kvm_msr_allowed(v->kvm, index, write);
	gm_rcu_read_unlock();
	if (!r)
		return msr_refused(x, KVM_MSR_EXIT_REASON_FILTER);
	r = kvm_vcpu_guest_msr(v, index, write, val);
	if (r < 0)
		return msr_refused(x, KVM_MSR_EXIT_REASON_UNKNOWN);
	if (r > 0)
		return msr_refused(x, KVM_MSR_EXIT_REASON_INVAL);
	return X86_MSR_OK;
}

/* The filter alone, for the MSRs the emulator keeps itself (FS/GS base...). */
static int emu_msr_filter(void *ctx, uint32_t index, bool write)
{
	struct kvm_x86_vcpu *x = ctx;
	bool ok;

	gm_rcu_read_lock();
	ok = kvm_msr_allowed(x->v->kvm, index, write);
	gm_rcu_read_unlock();
	return ok ? X86_MSR_OK : msr_refused(x, KVM_MSR_EXIT_REASON_FILTER);
}

static int emu_rdmsr(void *ctx, uint32_t index, uint64_t *val)
{
	return emu_msr(ctx, index, false, val);
}

static int emu_wrmsr(void *ctx, uint32_t index, uint64_t val)
{
	return emu_msr(ctx, index, true, &val);
}

/* KVM_SET_CPUID2's answer, with the bits KVM keeps up to date at run time. */
static void emu_cpuid(void *ctx, uint32_t leaf, uint32_t subleaf, uint32_t out[4])
{
	struct kvm_x86_vcpu *x = ctx;
	struct kvm_vcpu *v = x->v;

	memset(out, 0, 4 * sizeof(uint32_t));
	for (uint32_t i = 0; i < v->cpuid_nent; i++) {
		const struct kvm_cpuid_entry2 *e = &v->cpuid[i];

		if (e->function != leaf ||
		    ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != subleaf))
			continue;
		out[0] = e->eax;
		out[1] = e->ebx;
		out[2] = e->ecx;
		out[3] = e->edx;
		break;
	}
	if (leaf == 1) {
		out[2] &= ~(1u << 27); /* OSXSAVE mirrors CR4.OSXSAVE */
		if (v->sregs.cr4 & X86_CR4_OSXSAVE)
			out[2] |= 1u << 27;
		if (!(v->sregs.apic_base & (1ULL << 11)))
			out[3] &= ~(1u << 9); /* APIC: the APIC is globally disabled */
	}
}

static uint64_t emu_rdtsc(void *ctx)
{
	struct kvm_x86_vcpu *x = ctx;

	return kvm_vcpu_read_tsc(x->v);
}

static void model_refresh(struct kvm_x86_vcpu *x)
{
	struct kvm_vcpu *v = x->v;

	x->model.cr4_reserved = kvm_vcpu_cr4_reserved(v);
	/* As KVM_SET_XCRS checks it: no leaf 0xD allows x87 only. */
	x->model.xcr0_supported = kvm_guest_supported_xcr0(v);
	x->model.maxphyaddr = (uint8_t)kvm_guest_maxphyaddr(v);
	x->model.dr6_fixed = 0xffff0ff0ULL;
	/* The vendor module is the presented vendor's (src/preload/cpuid_fault.c). */
	x->model.hypercall_op = gm_cpu_vendor() == GM_VENDOR_INTEL ? X86_OP_VMCALL
				: gm_cpu_vendor() == GM_VENDOR_AMD ? X86_OP_VMMCALL
								     : 0;
	x->model.fix_hypercall = kvm_check_has_quirk(v->kvm, KVM_X86_QUIRK_FIX_HYPERCALL_INSN);
	x->model.lm = kvm_guest_cpuid_has(v, 0x80000001, 0, 3, 29);
}

/* ---- the backend's per-VM and per-vCPU state --------------------------------------- */

/*
 * x86_vm_init_lock serialises the creation of any VM's backend state, so
 * that exactly one shadow registers its MMU notifier per VM.  Taken under
 * vcpu->mutex; rare (once per VM).  kvm->arch.x86vm is written under it
 * with a release store and read with an acquire load.
 */
static pthread_mutex_t x86_vm_init_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * The VM's backend state (guest process, shadow), made once.  @ram: also
 * for running vCPUs, whose memslot RAM must be reachable by fd from the
 * guest process (kvm_shared_ram_enable(), which converts it in place).
 * Holding private storage alone does not convert anything: a VMM that
 * never runs a vCPU keeps its memory as it made it.
 */
static int x86_vm_get(struct kvm *kvm, bool ram, struct kvm_x86_vm **out)
{
	struct kvm_x86_vm *vm = __atomic_load_n(&kvm->arch.x86vm, __ATOMIC_ACQUIRE);
	bool fresh = false;
	int r = 0;

	if (vm && (!ram || __atomic_load_n(&vm->ram, __ATOMIC_ACQUIRE))) {
		*out = vm;
		return 0;
	}
	gm_mutex_lock(&x86_vm_init_lock, GM_LOCK_X86_INIT);
	vm = kvm->arch.x86vm;
	if (!vm) {
		vm = calloc(1, sizeof(*vm));
		if (!vm) {
			r = -ENOMEM;
			goto out;
		}
		fresh = true;
		r = gp_vm_create(&vm->gp);
		if (r)
			goto fail;
	}
	if (ram && !vm->ram) {
		r = kvm_shared_ram_enable(kvm);
		if (r && fresh)
			goto fail_gp;
		if (!r)
			__atomic_store_n(&vm->ram, true, __ATOMIC_RELEASE);
	}
	if (fresh) {
		r = x86_shadow_create(kvm, vm->gp, &vm->sh);
		if (r)
			goto fail_gp;
		__atomic_store_n(&kvm->arch.x86vm, vm, __ATOMIC_RELEASE);
	}
	goto out;
fail_gp:
	gp_vm_destroy(vm->gp);
fail:
	free(vm);
	vm = NULL;
out:
	gm_mutex_unlock(&x86_vm_init_lock);
	*out = vm;
	return r;
}

int kvm_arch_private_holder(struct kvm *kvm, struct gm_backing_holder *out)
{
	struct kvm_x86_vm *vm;
	int r = x86_vm_get(kvm, false, &vm);

	if (!r)
		x86_shadow_holder(vm->sh, out);
	return r;
}

/* ---- the CPU's own accesses to private memory the guest process holds ------------- */

/* One request to the guest process for a page of its file @id at @off. */
struct held_req {
	int (*fn)(struct gp_vm *gp, uint32_t id, uint64_t off, struct held_req *q);
	void *buf;
	unsigned len;
	bool write;
	uint64_t old, new_val; /* cmpxchg */
	bool swapped;
};

/* Which held files are the VM's is the shadow's; the page stays while mmu_lock is held. */
static int held_request(struct kvm_vcpu *v, uint64_t gpa, bool write, struct held_req *q,
			struct kvm_page_fault *f)
{
	struct kvm *kvm = v->kvm;
	struct kvm_x86_vm *vm = __atomic_load_n(&kvm->arch.x86vm, __ATOMIC_ACQUIRE);
	struct kvm_x86_vcpu *x = __atomic_load_n(&v->x86, __ATOMIC_ACQUIRE);
	gfn_t gfn = gpa >> GM_PAGE_SHIFT;

	lockdep_assert_held(&v->mutex);
	if (!vm) /* nothing is held without it */
		return kvm_pf_error(f, -EFAULT);
	/* Never wait for mmu_lock with maps in flight: a zap holding it may
	 * wait for them (x86_shadow.h).  The guest faults them back. */
	if (x && x->sv.nr_maps)
		x86_shadow_forget(vm->sh, &x->sv);
	for (unsigned n = 0; n < MAX_FAULT_RETRIES; n++) {
		struct kvm_gfn_backing b;
		uint64_t e;
		uint32_t id;
		int level, r;

		gm_rwlock_rdlock(&kvm->mmu_lock, GM_LOCK_MMU);
		gm_rcu_read_lock();
		if (kvm_mmu_leaf_usable(kvm, gpa, write, &e, &level)) {
			if (!(e & S2_PRIVATE)) {
				gm_rcu_read_unlock();
				gm_rwlock_unlock(&kvm->mmu_lock);
				return KVM_PF_RETRY;
			}
			r = kvm_gfn_to_backing_info(kvm, 0, gfn, true, 1, &b);
			gm_rcu_read_unlock();
			if (!r)
				r = x86_shadow_held_id(vm->sh, b.file_id, &id);
			if (!r)
				r = q->fn(vm->gp, id, b.offset + (gpa & (GM_PAGE_SIZE - 1)), q);
			gm_rwlock_unlock(&kvm->mmu_lock);
			if (r == -ENOENT) /* the slot or the file is going away: its zap is coming */
				continue;
			if (r < 0)
				return kvm_pf_error(f, r == -EIO ? -EIO : -EFAULT);
			return KVM_PF_FIXED;
		}
		gm_rwlock_unlock(&kvm->mmu_lock);
		r = kvm_mmu_fault_in(kvm, gpa, write, &v->stat.fault, &v->last_used_slot, &e, &level,
				     f);
		gm_rcu_read_unlock();
		if (r != KVM_PF_FIXED)
			return r;
	}
	return kvm_pf_error(f, -EFAULT);
}

static int held_rw_fn(struct gp_vm *gp, uint32_t id, uint64_t off, struct held_req *q)
{
	return gp_vm_access(gp, id, off, q->buf, q->len, q->write);
}

int kvm_x86_held_rw(struct kvm_vcpu *v, uint64_t gpa, void *buf, unsigned len, bool write,
		    struct kvm_page_fault *f)
{
	int r = KVM_PF_FIXED;

	/* In pieces the guest process takes at once; the CPU's pushes are
	 * not atomic either. */
	while (len && r == KVM_PF_FIXED) {
		unsigned n = GM_MIN(len, GP_ACCESS_MAX - (unsigned)(gpa % GP_ACCESS_MAX));
		struct held_req q = { .fn = held_rw_fn, .buf = buf, .len = n, .write = write };

		r = held_request(v, gpa, write, &q, f);
		gpa += n;
		buf = (uint8_t *)buf + n;
		len -= n;
	}
	return r;
}

static int held_cmpxchg_fn(struct gp_vm *gp, uint32_t id, uint64_t off, struct held_req *q)
{
	int r = gp_vm_cmpxchg(gp, id, off, q->len, &q->old, q->new_val);

	q->swapped = r == 0;
	return r < 0 ? r : 0;
}

int kvm_x86_held_cmpxchg(struct kvm_vcpu *v, uint64_t gpa, unsigned size, uint64_t old,
			 uint64_t new_val, bool *swapped, struct kvm_page_fault *f)
{
	struct held_req q = { .fn = held_cmpxchg_fn, .len = size, .write = true, .old = old,
			       .new_val = new_val };
	int r = held_request(v, gpa, true, &q, f);

	*swapped = q.swapped;
	return r;
}

static int x86_vcpu_init(struct kvm_vcpu *v)
{
	struct kvm_x86_vcpu *x;
	int r;

	if (v->x86)
		return 0;
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->v = v;
	r = x86_vm_get(v->kvm, true, &x->vm);
	if (!r)
		r = gp_vcpu_create(x->vm->gp, &x->gp);
	if (r) {
		free(x);
		return r;
	}
	x->sv.gp = x->gp;
	x->ops = (struct x86_emu_ops){ emu_read, emu_write, emu_rdmsr, emu_wrmsr, emu_cpuid,
				       emu_rdtsc, emu_msr_filter, emu_read_phys };
	x86_emu_init(&x->emu, &x->ops, x, &x->model, (uint8_t *)v->run + KVM_PIO_DATA_OFFSET);
	x86_shadow_add_vcpu(x->vm->sh, &x->sv);
	x->xsave_state = XS_VMM;
	/* Release: kvm_x86_kick() from other threads sees a complete x. */
	__atomic_store_n(&v->x86, x, __ATOMIC_RELEASE);
	/* The guest thread starts from the state the VMM set. */
	kvm_x86_xsave_sync_in(v);
	return 0;
}

void kvm_x86_kick(struct kvm_vcpu *v)
{
	struct kvm_x86_vcpu *x = __atomic_load_n(&v->x86, __ATOMIC_ACQUIRE);

	if (x)
		gp_vcpu_kick(x->gp);
}

void kvm_x86_vcpu_destroy(struct kvm_vcpu *v)
{
	struct kvm_x86_vcpu *x = v->x86;

	if (!x)
		return;
	x86_shadow_remove_vcpu(x->vm->sh, &x->sv);
	gp_vcpu_destroy(x->gp);
	free(x);
	v->x86 = NULL;
}

void kvm_x86_vm_destroy(struct kvm *kvm)
{
	struct kvm_x86_vm *vm = kvm->arch.x86vm;

	if (!vm)
		return;
	x86_shadow_destroy(vm->sh);
	gp_vm_destroy(vm->gp);
	free(vm);
	kvm->arch.x86vm = NULL;
}

void kvm_x86_xsave_sync_out(struct kvm_vcpu *v)
{
	struct kvm_x86_vcpu *x = v->x86;

	if (x && x->xsave_state == XS_GUEST &&
	    !gp_vcpu_get_xsave(x->gp, v->arch.xsave, KVM_XSAVE_UABI_SIZE))
		x->xsave_state = XS_VMM;
}

void kvm_x86_xsave_sync_in(struct kvm_vcpu *v)
{
	struct kvm_x86_vcpu *x = v->x86;

	if (x && !gp_vcpu_set_xsave(x->gp, v->arch.xsave, KVM_XSAVE_UABI_SIZE))
		x->xsave_state = XS_GUEST;
}

/* ---- exits ------------------------------------------------------------------------- */

static int exit_memory_fault(struct kvm_x86_vcpu *x, int *ret)
{
	struct kvm_run *run = x->v->run;
	const struct kvm_page_fault *f = &x->mf;

	x->mem_exit = false;
	if (f->memory_fault) {
		struct kvm_run_memory_fault *mf = kvm_run_memory_fault(run);

		run->exit_reason = KVM_EXIT_MEMORY_FAULT;
		mf->flags = f->is_private ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0;
		mf->gpa = f->gfn << GM_PAGE_SHIFT;
		mf->size = GM_PAGE_SIZE;
	}
	*ret = f->error;
	return X86R_EXIT;
}

/* The kernel's answer (kvm_hypercall()): true with an exit in kvm_run. */
static bool hypercall(struct kvm_x86_vcpu *x)
{
	struct x86_emu_result *res = &x->res;

	return kvm_hypercall(x->v, res->hypercall.nr, res->hypercall.args,
			     res->hypercall.longmode, &res->hypercall.ret);
}

/* Apply what an emulated instruction changed beyond the registers. */
static void apply_effects(struct kvm_x86_vcpu *x, uint32_t fx)
{
	struct kvm_x86_shadow *sh = x->vm->sh;

	if (fx & X86_FX_SMM_LEFT) {
		/* RSM (regs_out() cleared smi.smm): NMIs unblock unless SMM
		 * was entered with them blocked. */
		struct kvm_x86_events *ev = &x->v->arch.ev;

		if (!ev->smi.smm_inside_nmi)
			ev->nmi.masked = false;
		ev->smi.smm_inside_nmi = false;
	}

	if (fx & (X86_FX_TLB_FLUSH | X86_FX_TLB_FLUSH_ALL | X86_FX_MMU_MODE))
		x86_shadow_flush_all(sh, &x->sv);
	else if (fx & X86_FX_INVLPG) {
		const struct kvm_sregs *s = &x->v->sregs;

		x86_shadow_flush_gva(sh, &x->sv, x->res.invlpg_gva);
		/* A 4 MiB page is shadowed as two 2 MiB halves. */
		if (x86_pm32_has_4m_pages(s->cr0, s->cr4, s->efer))
			x86_shadow_flush_gva(sh, &x->sv, x->res.invlpg_gva ^ X86_PM32_HALF_4M);
	}
}

static void queue_exception(struct kvm_x86_vcpu *x, const struct x86_exception *ex)
{
	x86_event_queue_emu_exception(&x->v->arch.ev, ex);
}

/* Guest memory for vectoring: system-table accesses are implicit supervisor. */
static int ev_access(void *ctx, uint64_t gva, void *buf, unsigned len, unsigned flags,
		     bool write, struct x86_exception *ex)
{
	struct kvm_x86_vcpu *x = ctx;
	uint32_t access = ACC_CPU | (write ? X86_PF_WRITE : 0);
	uint64_t gpa;
	int r;

	if (flags & X86_EVENT_ACC_SYSTEM)
		access |= X86_PF_IMPLICIT;
	if (flags & X86_EVENT_ACC_USER)
		access |= X86_PF_USER;
	/*
	 * Delivery right after a shadow fill: the fault path below may wait
	 * for mmu_lock, which a zap holds while it waits for this vCPU's maps
	 * in flight (x86_shadow.h).  Forget them first; the guest faults the
	 * page back.
	 */
	if (x->sv.nr_maps)
		x86_shadow_forget(x->vm->sh, &x->sv);
	r = guest_access(x, gva, buf, len, write, access, &gpa, ex);
	if (r == X86_MEM_FAULT && x->mem_exit) {
		x->mem_exit = false;
		return X86_MEM_MMIO; /* not memory the CPU could push to */
	}
	return r;
}

static int ev_read(void *ctx, uint64_t gva, void *buf, unsigned len, unsigned flags,
		   struct x86_exception *ex)
{
	return ev_access(ctx, gva, buf, len, flags, false, ex);
}

static int ev_write(void *ctx, uint64_t gva, const void *buf, unsigned len, unsigned flags,
		    struct x86_exception *ex)
{
	return ev_access(ctx, gva, (void *)buf, len, flags, true, ex);
}

static const struct x86_event_ops ev_ops = { ev_read, ev_write };

/* A software interrupt or exception (INT n, INT3, INTO, INT1), RIP past it. */
static int soft_int(struct kvm_x86_vcpu *x, uint8_t type, uint8_t vector, uint8_t len)
{
	struct x86_event ev = { .type = type, .vector = vector, .insn_len = len };
	int r;

	regs_in(x->v, &x->xr);
	r = x86_event_deliver(&x->xr, &ev, &ev_ops, x, NULL);
	if (r == X86_EVENT_TRIPLE_FAULT) {
		x->v->run->exit_reason = KVM_EXIT_SHUTDOWN;
		return X86R_EXIT;
	}
	if (r != X86_EVENT_OK)
		return exit_internal(x->v, KVM_INTERNAL_ERROR_DELIVERY_EV);
	regs_out(x->v, &x->xr);
	apply_effects(x, X86_FX_SEGMENTS);
	return X86R_CONTINUE;
}

/* ---- guest debugging (KVM_SET_GUEST_DEBUG) --------------------------------------------- */

#define DR6_B(i) (1ull << (i))
#define DR6_BD (1ull << 13)
#define DR6_BS (1ull << 14)
#define DR6_ACTIVE_LOW 0xffff0ff0ull
#define DR7_GD (1ull << 13)
#define TRAP_TRACE_CODE 2 /* SIGTRAP si_code of a TF step */

/* The DR7 and DR0-3 the CPU runs with (kvm_update_dr7, eff_db): the
 * debugger's with KVM_GUESTDBG_USE_HW_BP, else the guest's. */
static uint64_t eff_dr7(struct kvm_vcpu *v)
{
	if (v->arch.guest_debug & KVM_GUESTDBG_USE_HW_BP)
		return v->arch.guest_debug_db[7];
	return v->arch.dr7;
}

static uint64_t eff_db(struct kvm_vcpu *v, unsigned i)
{
	if (v->arch.guest_debug & KVM_GUESTDBG_USE_HW_BP)
		return v->arch.guest_debug_db[i];
	return v->arch.db[i];
}

/* KVM_EXIT_DEBUG; @dr6 < 0 leaves debug.arch.dr6/dr7 as they were (the
 * paths of KVM that do not write them: #BP, an emulated step). */
static int exit_debug(struct kvm_x86_vcpu *x, uint8_t vector, int64_t dr6)
{
	struct kvm_vcpu *v = x->v;
	struct kvm_run *run = v->run;

	run->exit_reason = KVM_EXIT_DEBUG;
	run->debug.arch.exception = vector;
	run->debug.arch.pc = kvm_get_linear_rip(v);
	if (dr6 >= 0) {
		run->debug.arch.dr6 = (uint64_t)dr6 | DR6_ACTIVE_LOW;
		run->debug.arch.dr7 = eff_dr7(v);
	}
	return X86R_EXIT;
}

static void queue_db(struct kvm_x86_vcpu *x, uint64_t dr6_payload)
{
	x86_event_queue_exception(&x->v->arch.ev, X86_DB, false, 0, true, dr6_payload);
}

/*
 * After an emulated instruction completed (kvm_vcpu_do_singlestep): the
 * debugger's step exits, dr6 = BS (dr7 untouched, as KVM leaves it); the
 * guest's own TF (as it was before the instruction) gets its #DB.
 */
static int emu_singlestep(struct kvm_x86_vcpu *x)
{
	if (x->v->arch.guest_debug & KVM_GUESTDBG_SINGLESTEP) {
		struct kvm_run *run = x->v->run;

		exit_debug(x, X86_DB, -1);
		run->debug.arch.dr6 = DR6_BS | DR6_ACTIVE_LOW;
		return X86R_EXIT;
	}
	if (x->emu_tf)
		queue_db(x, DR6_BS);
	return X86R_CONTINUE;
}

/* The emulator's view: RFLAGS without the debugger's TF (KVM's emulator
 * starts from kvm_get_rflags()), the guest's own TF remembered. */
static void emu_regs_in(struct kvm_x86_vcpu *x)
{
	regs_in(x->v, &x->xr);
	x->xr.rflags = kvm_get_rflags(x->v);
	x->emu_tf = x->xr.rflags & X86_RFLAGS_TF;
}

/* Back to the vCPU: the debugger's TF stays only at singlestep_rip. */
static void emu_regs_out(struct kvm_x86_vcpu *x)
{
	regs_out(x->v, &x->xr);
	kvm_set_rflags(x->v, x->xr.rflags);
}

/*
 * MOV to/from DRn with DR7.GD (handle_dr()): after the #UD and #GP checks
 * the emulator makes, the access raises #DB(BD) instead: the debugger's
 * exit with KVM_GUESTDBG_USE_HW_BP, else the guest's #DB.  True if so.
 */
static bool dr_general_detect(struct kvm_x86_vcpu *x, const struct x86_insn *in, int *res)
{
	if (in->op != X86_OP_MOV_FROM_DR && in->op != X86_OP_MOV_TO_DR)
		return false;
	if (in->modrm_reg > 7 || ((in->modrm_reg & 6) == 4 && (x->xr.cr4 & X86_CR4_DE)) ||
	    x->xr.cpl || !(eff_dr7(x->v) & DR7_GD))
		return false;
	if (x->v->arch.guest_debug & KVM_GUESTDBG_USE_HW_BP) {
		*res = exit_debug(x, X86_DB, DR6_BD);
		return true;
	}
	queue_db(x, DR6_BD);
	*res = X86R_CONTINUE;
	return true;
}

/*
 * The breakpoints the guest thread runs with: DR0-3 in force (eff_db) as
 * the DR7 in force enables them (L or G; I/O breakpoints, RW = 10, are
 * not armed).  Addresses the guest cannot run or touch in the guest
 * process (gp_guest_va_ok) are left out: such breakpoints never fire.
 */
static void arm_hwbp(struct kvm_x86_vcpu *x)
{
	static const uint32_t lens[4] = { 1, 2, 8, 4 };
	struct kvm_vcpu *v = x->v;
	struct gp_hwbp bp[GP_NR_HWBP];
	uint64_t dr7 = eff_dr7(v);

	memset(bp, 0, sizeof(bp));
	for (unsigned i = 0; i < GP_NR_HWBP; i++) {
		unsigned rw = (dr7 >> (16 + 4 * i)) & 3;
		uint32_t len = lens[(dr7 >> (18 + 4 * i)) & 3];
		uint64_t addr = eff_db(v, i);

		if (!((dr7 >> (2 * i)) & 3) || rw == 2)
			continue;
		if (rw)
			addr &= ~(uint64_t)(len - 1); /* the CPU ignores the low bits */
		if (!gp_guest_va_ok(addr))
			continue;
		bp[i] = (struct gp_hwbp){ .addr = addr, .type = rw == 0 ? GP_HWBP_X
							    : rw == 1 ? GP_HWBP_W : GP_HWBP_RW,
					  .len = rw ? len : 1 };
	}
	/* Only -EBUSY (never: the vCPU is stopped) or -EINVAL (not built here). */
	(void)gp_vcpu_set_hwbp(x->gp, bp);
}

/*
 * A breakpoint armed by arm_hwbp() hit (GP_TRAP_HWBP, err = its index): an
 * instruction breakpoint before the instruction, a data one after it.
 * DR6 gets the bit of every enabled instruction breakpoint on this RIP as
 * well (one #DB reports them all).  The debugger's exit with
 * KVM_GUESTDBG_USE_HW_BP, else the guest's #DB (its handler sets RF in
 * the frame to go past an instruction breakpoint, as on hardware).
 */
static int handle_hwbp(struct kvm_x86_vcpu *x, const struct gp_trap *t)
{
	struct kvm_vcpu *v = x->v;
	unsigned hit = t->err & 3;
	uint64_t dr7 = eff_dr7(v), dr6 = DR6_B(hit), rip = kvm_get_linear_rip(v);

	for (unsigned i = 0; i < GP_NR_HWBP && !((dr7 >> (16 + 4 * hit)) & 3); i++)
		if (((dr7 >> (2 * i)) & 3) && !((dr7 >> (16 + 4 * i)) & 3) && eff_db(v, i) == rip)
			dr6 |= DR6_B(i);
	if (v->arch.guest_debug & KVM_GUESTDBG_USE_HW_BP)
		return exit_debug(x, X86_DB, (int64_t)dr6);
	queue_db(x, dr6);
	return X86R_CONTINUE;
}

/* A #DB from the guest thread: a TF step, or INT1/ICEBP. */
static int handle_db(struct kvm_x86_vcpu *x, const struct gp_trap *t)
{
	struct kvm_vcpu *v = x->v;

	if (t->code != TRAP_TRACE_CODE) {
		queue_exception(x, &(struct x86_exception){ .vector = X86_DB });
		return X86R_CONTINUE;
	}
	if (v->arch.guest_debug & (KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_USE_HW_BP))
		return exit_debug(x, X86_DB, DR6_BS);
	queue_db(x, DR6_BS);
	return X86R_CONTINUE;
}

/* INT3 (or INT $3) executed, RIP past it: the debugger's with
 * KVM_GUESTDBG_USE_SW_BP, RIP back on it; else the guest's #BP. */
static int handle_int3(struct kvm_x86_vcpu *x)
{
	struct kvm_vcpu *v = x->v;
	struct x86_exception ex;
	uint8_t len = 1, b = 0xcc;
	uint64_t gpa;

	/* What the CPU executed (it knows; we look): ACC_CPU. */
	if (guest_access(x, v->regs.rip - 1, &b, 1, false, ACC_CPU | X86_PF_FETCH, &gpa, &ex) ==
		    X86_MEM_OK &&
	    b != 0xcc)
		len = 2; /* CD 03 */
	x->mem_exit = false;
	if (!(v->arch.guest_debug & KVM_GUESTDBG_USE_SW_BP))
		return soft_int(x, X86_EVENT_SOFT_EXCEPTION, X86_BP, len);
	v->regs.rip -= len;
	x->sw_bp_len = len;
	x->sw_bp_rip = v->regs.rip;
	return exit_debug(x, X86_BP, -1);
}

/*
 * What an emulation (or its completion) came to.  Returns X86R_CONTINUE
 * to run the guest on, or X86R_EXIT with *ret and kvm_run filled.
 */
static int emu_outcome(struct kvm_x86_vcpu *x, int st, int *ret)
{
	struct kvm_vcpu *v = x->v;
	struct kvm_run *run = v->run;
	struct x86_emu_result *res = &x->res;

	for (;;) {
		x->exit_kind = XK_NONE;
		switch (st) {
		case X86_EMU_DONE:
			emu_regs_out(x);
			apply_effects(x, res->effects);
			/* STI's shadow starts, IRET unblocks NMIs. */
			x86_event_insn_retired(&v->arch.ev, res->effects);
			return emu_singlestep(x);
		case X86_EMU_EXCEPTION:
			if (x->mem_exit)
				return x86_emu_cancel(&x->emu), exit_memory_fault(x, ret);
			queue_exception(x, &res->ex);
			return X86R_CONTINUE;
		case X86_EMU_SOFT_INT: {
			/* INT3 and INTO are soft exceptions, F1 (INT1) privileged. */
			uint8_t op = x->emu.insn.opcode, type = X86_EVENT_SOFT_INT;

			if (op == 0xcc || op == 0xce)
				type = X86_EVENT_SOFT_EXCEPTION;
			else if (op == 0xf1)
				type = X86_EVENT_PRIV_SOFT_EXCEPTION;
			emu_regs_out(x);
			return soft_int(x, type, res->ex.vector, x->emu.insn.len);
		}
		case X86_EMU_EXIT_HLT:
			emu_regs_out(x);
			/* HLT retired: an STI shadow it sat in is over. */
			x86_event_insn_retired(&v->arch.ev, res->effects);
			/* The step's exit or #DB first; KVM_EXIT_HLT overwrites the exit. */
			if (irqchip_in_kernel(v->kvm)) {
				v->mp_state = KVM_MP_STATE_HALTED;
				return emu_singlestep(x);
			}
			if (!(v->arch.guest_debug & KVM_GUESTDBG_SINGLESTEP))
				(void)emu_singlestep(x);
			run->exit_reason = KVM_EXIT_HLT;
			return X86R_EXIT;
		case X86_EMU_EXIT_IO: {
			uint8_t *data = (uint8_t *)run + KVM_PIO_DATA_OFFSET;

			/* An ioeventfd or coalesced zone takes an OUT inside KVM. */
			if (res->io.direction == KVM_EXIT_IO_OUT && res->io.count == 1 &&
			    (kvm_ioeventfd_write(v->kvm, true, res->io.port, res->io.size, data) ||
			     kvm_coalesced_write(v, true, res->io.port, res->io.size, data))) {
				st = x86_emu_complete(&x->emu, &x->xr, res);
				continue;
			}
			run->exit_reason = KVM_EXIT_IO;
			run->io.direction = res->io.direction;
			run->io.size = res->io.size;
			run->io.port = res->io.port;
			run->io.count = res->io.count;
			run->io.data_offset = KVM_PIO_DATA_OFFSET;
			x->exit_kind = XK_IO;
			x->exit_rip = v->regs.rip;
			return X86R_EXIT;
		}
		case X86_EMU_EXIT_MMIO:
			/* The in-kernel LAPIC's xAPIC page (lapic_state.c), the IOAPIC. */
			if (kvm_lapic_mmio(v, res->mmio.gpa, res->mmio.len, res->mmio.is_write,
					   res->mmio.data) ||
			    kvm_ioapic_mmio(v, res->mmio.gpa, res->mmio.len, res->mmio.is_write,
					    res->mmio.data)) {
				st = x86_emu_complete(&x->emu, &x->xr, res);
				continue;
			}
			if (res->mmio.is_write &&
			    (kvm_ioeventfd_write(v->kvm, false, res->mmio.gpa, res->mmio.len,
						 res->mmio.data) ||
			     kvm_coalesced_write(v, false, res->mmio.gpa, res->mmio.len,
						 res->mmio.data))) {
				st = x86_emu_complete(&x->emu, &x->xr, res);
				continue;
			}
			run->exit_reason = KVM_EXIT_MMIO;
			run->mmio.phys_addr = res->mmio.gpa;
			run->mmio.len = res->mmio.len;
			run->mmio.is_write = res->mmio.is_write;
			memset(run->mmio.data, 0, sizeof(run->mmio.data));
			if (res->mmio.is_write)
				memcpy(run->mmio.data, res->mmio.data, res->mmio.len);
			x->exit_kind = XK_MMIO;
			x->exit_rip = v->regs.rip;
			return X86R_EXIT;
		case X86_EMU_EXIT_HYPERCALL:
			if (!hypercall(x)) {
				st = x86_emu_complete(&x->emu, &x->xr, res);
				continue;
			}
			x->exit_kind = XK_HCALL;
			x->exit_rip = v->regs.rip;
			return X86R_EXIT;
		case X86_EMU_EXIT_MSR:
			run->exit_reason = res->msr.is_write ? KVM_EXIT_X86_WRMSR : KVM_EXIT_X86_RDMSR;
			run->msr.error = 0;
			run->msr.reason = x->msr_reason;
			run->msr.index = res->msr.index;
			run->msr.data = res->msr.is_write ? res->msr.data : 0;
			x->exit_kind = XK_MSR;
			x->exit_rip = v->regs.rip;
			return X86R_EXIT;
		case X86_EMU_SHUTDOWN: /* KVM_REQ_TRIPLE_FAULT */
			emu_regs_out(x);
			apply_effects(x, res->effects);
			run->exit_reason = KVM_EXIT_SHUTDOWN;
			return X86R_EXIT;
		default: /* X86_EMU_UNHANDLED */
			x86_emu_cancel(&x->emu);
			return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
		}
	}
}

bool kvm_x86_complete_userspace_io(struct kvm_vcpu *v, int *ret)
{
	struct kvm_x86_vcpu *x = v->x86;
	struct kvm_run *run = v->run;
	enum x86_exit_kind kind;
	int st;

	*ret = 0;
	if (!x || x->exit_kind == XK_NONE)
		return false;
	kind = x->exit_kind;
	x->exit_kind = XK_NONE;
	/* A VMM that moved RIP meanwhile gets the instruction dropped. */
	if (v->regs.rip != x->exit_rip) {
		x86_emu_cancel(&x->emu);
		return false;
	}
	switch (kind) {
	case XK_MMIO:
		memcpy(x->res.mmio.data, run->mmio.data, sizeof(x->res.mmio.data));
		break;
	case XK_HCALL:
		x->res.hypercall.ret = run->hypercall.ret;
		break;
	case XK_MSR:
		x->res.msr.error = run->msr.error;
		x->res.msr.data = run->msr.data;
		break;
	default: /* IN data is in the data page already */
		break;
	}
	emu_regs_in(x);
	model_refresh(x);
	st = x86_emu_complete(&x->emu, &x->xr, &x->res);
	return emu_outcome(x, st, ret) == X86R_EXIT;
}

/* ---- traps ---------------------------------------------------------------------------- */

/* The linear address of byte @n of the instruction at RIP (CS's base outside 64-bit mode). */
static uint64_t fetch_linear(const struct x86_regs *r, unsigned n)
{
	if (x86_cpu_mode(r) == X86_MODE_64)
		return r->rip + n;
	return (r->seg[X86_SEG_CS].base + r->rip + n) & 0xffffffffull;
}

/* The instruction at RIP: the bytes the trap saw, or fetched through the walk. */
static int fetch_decode(struct kvm_x86_vcpu *x, const struct gp_trap *t, struct x86_insn *in)
{
	uint8_t buf[X86_MAX_INSN_LEN];
	unsigned n = 0;
	int mode = x86_cpu_mode(&x->xr), r;

	if (mode < 0)
		return X86_DECODE_ENOENT;
	if (t && t->insn_len) {
		r = x86_decode(t->insn, t->insn_len, (enum x86_mode)mode, in);
		if (r != X86_DECODE_SHORT)
			return r;
	}
	/*
	 * Byte by byte up to the first unreachable one: the bytes the CPU
	 * executes (ACC_CPU), as the trap's are, also in private code (where
	 * KVM's emulator without decode assists would read the shared view).
	 */
	for (; n < X86_MAX_INSN_LEN; n++) {
		struct x86_exception ex;
		uint64_t gpa;

		if (guest_access(x, fetch_linear(&x->xr, n), &buf[n], 1, false,
				 ACC_CPU | X86_PF_FETCH, &gpa, &ex) != X86_MEM_OK)
			break;
	}
	x->mem_exit = false;
	return x86_decode(buf, n, (enum x86_mode)mode, in);
}

/*
 * An instruction the emulator does not know (handle_emulation_failure()):
 * with KVM_CAP_EXIT_ON_EMULATION_FAILURE an internal-error exit carrying
 * the bytes at RIP (as many as are readable, at most 15: our decoder does
 * not say how far it got); otherwise #UD, and at CPL 0 also the exit,
 * without bytes.  The five vendor exit-info words read 0: no hardware exit
 * led here.
 */
static int emulation_failure(struct kvm_x86_vcpu *x, const struct gp_trap *t)
{
	struct kvm_vcpu *v = x->v;
	struct kvm_run *run = v->run;
	uint8_t buf[X86_MAX_INSN_LEN];
	unsigned n = 0, info_start = 1;

	if (!READ_ONCE(v->kvm->arch.exit_on_emulation_error)) {
		queue_exception(x, &(struct x86_exception){ .vector = X86_UD });
		if (x->xr.cpl)
			return X86R_CONTINUE;
	} else if (t && t->insn_len) {
		n = t->insn_len < sizeof(buf) ? t->insn_len : sizeof(buf);
		memcpy(buf, t->insn, n);
	} else {
		for (; n < sizeof(buf); n++) {
			struct x86_exception ex;
			uint64_t gpa;

			if (guest_access(x, fetch_linear(&x->xr, n), &buf[n], 1, false,
					 ACC_CPU | X86_PF_FETCH, &gpa, &ex) != X86_MEM_OK)
				break;
		}
		x->mem_exit = false;
	}
	exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
	memset(run->internal.data, 0, sizeof(run->internal.data));
	run->emulation_failure.flags = 0;
	if (n) {
		info_start += 2;
		run->emulation_failure.flags = KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES;
		run->emulation_failure.insn_size = (uint8_t)n;
		memset(run->emulation_failure.insn_bytes, 0x90,
		       sizeof(run->emulation_failure.insn_bytes));
		memcpy(run->emulation_failure.insn_bytes, buf, n);
	}
	run->emulation_failure.ndata = info_start + 5;
	return X86R_EXIT;
}

/* Emulate the instruction at RIP.  @reflect: the host exception to give
 * the guest if it is not an instruction the emulator knows. */
/* @mmio: the instruction met MMIO (its operands are then KVM's emulator's). */
static int emulate(struct kvm_x86_vcpu *x, const struct gp_trap *t,
		   const struct x86_exception *reflect, bool mmio, int *ret)
{
	struct x86_insn in;
	int r, st;

	emu_regs_in(x);
	model_refresh(x);
	r = fetch_decode(x, t, &in);
	if (r == X86_DECODE_UD) {
		queue_exception(x, &(struct x86_exception){ .vector = X86_UD });
		return X86R_CONTINUE;
	}
	if (r == X86_DECODE_GP) {
		queue_exception(x, &(struct x86_exception){ .vector = X86_GP,
							    .has_error_code = true });
		return X86R_CONTINUE;
	}
	if (r) {
		if (!reflect)
			return emulation_failure(x, t);
		queue_exception(x, reflect);
		return X86R_CONTINUE;
	}
	x->mem_exit = false;
	if (dr_general_detect(x, &in, &r))
		return r;
	/* Kept until the next instruction: its completions (the rest of a
	 * REP, an INS's store after the VMM's data) are the same kind. */
	x->emu_soft = mmio || in.op == X86_OP_IN || in.op == X86_OP_OUT || in.op == X86_OP_INS ||
		      in.op == X86_OP_OUTS;
	st = x86_emulate(&x->emu, &x->xr, &in, &x->res);
	return emu_outcome(x, st, ret);
}

static int emulate_insn(struct kvm_x86_vcpu *x, const struct gp_trap *t,
			const struct x86_exception *reflect, int *ret)
{
	return emulate(x, t, reflect, false, ret);
}

/* For an access that met MMIO: KVM's emulator's own work. */
static int emulate_mmio_insn(struct kvm_x86_vcpu *x, const struct gp_trap *t, int *ret)
{
	return emulate(x, t, NULL, true, ret);
}

/*
 * Pages to map from @gva on: to the end of the guest's large page (its
 * pages are contiguous in guest-physical memory, with one PTE's rights),
 * at most 2 MiB; a 4 KiB guest page alone.  Pages stage-2 does not map
 * yet are not faulted in for this (x86_shadow_map cuts the run there).
 */
static unsigned run_pages(uint64_t gva, int level)
{
	uint64_t size, left;

	if (level < 2)
		return 1;
	size = 1ULL << (12 + 9 * (level - 1));
	left = (size - (gva & (size - 1))) >> GM_PAGE_SHIFT;
	/* The last large page below GP_USER_TOP reaches past it: stop there. */
	if (gva < GP_USER_TOP)
		left = GM_MIN(left, (GP_USER_TOP - (gva & ~(GM_PAGE_SIZE - 1))) >> GM_PAGE_SHIFT);
	return (unsigned)GM_MIN(left, 512ULL);
}

/*
 * The lowest address the guest process can map (vm.mmap_min_addr, page
 * aligned): guest pages below it fault as before, one by one, and the
 * run of a large guest page starts no lower.
 */
static uint64_t guest_low_va(void)
{
	static uint64_t low; /* 0: not read yet; relaxed, every thread reads the same */
	uint64_t v = __atomic_load_n(&low, __ATOMIC_RELAXED);

	if (!v) {
		char *s = gm_read_proc_file("/proc/sys/vm/mmap_min_addr", 64);

		v = s ? strtoull(s, NULL, 10) : 65536;
		free(s);
		v = (v + GM_PAGE_SIZE - 1) & ~(GM_PAGE_SIZE - 1);
		v = GM_MAX(v, GM_PAGE_SIZE);
		__atomic_store_n(&low, v, __ATOMIC_RELAXED);
	}
	return v;
}

/*
 * A large guest page's run through stage-2, as a host huge page would map
 * it at once: shared memory only (faulting private pages in would allocate
 * guest_memfd pages the guest never touched), faulted in for reading (on a
 * dirty-logged slot a write fault would log pages nobody wrote).  Returns
 * how many pages from @gpa on are mapped.
 */
static unsigned prefault_run(struct kvm_x86_vcpu *x, uint64_t gpa, unsigned npages)
{
	struct kvm_vcpu *v = x->v;
	unsigned n;

	for (n = 0; n < npages; n++) {
		uint64_t g = gpa + n * GM_PAGE_SIZE, e;
		struct kvm_page_fault f;
		int level = S2_PG_LEVEL_4K;

		gm_rcu_read_lock();
		e = kvm_mmu_lookup(v->kvm, g >> GM_PAGE_SHIFT, &level);
		gm_rcu_read_unlock();
		if (e && !(e & S2_PRIVATE))
			continue;
		if (e || kvm_vcpu_mmu_page_fault(v->kvm, g, false, &v->stat.fault,
						 &v->last_used_slot, &f) != KVM_PF_FIXED ||
		    f.is_private)
			break;
	}
	return n;
}

/*
 * 4 KiB guest pages over memory the guest process can map only in whole
 * 2 MiB host pages (hugetlbfs, x86_shadow_map()'s -EXDEV): map the whole
 * block around @gva if the guest's 512 page-table entries there map it
 * page for page (walked, which sets their A bits, as the CPU may for a
 * speculative translation); writable only if every entry allows a write
 * and is dirty already.  A write that this cannot map is emulated (the
 * emulator sets the D bit it needs).  Returns what handle_pf() returns,
 * or -EXDEV if the block is not the guest's contiguous mapping.
 */
static int map_huge_block(struct kvm_x86_vcpu *x, const struct gp_trap *t, uint64_t gva,
			  uint64_t gpa, uint32_t access, unsigned long seq, int *ret)
{
	struct kvm_vcpu *v = x->v;
	uint64_t gva_al = gva & ~(HUGE_2M - 1), gpa_al = gpa - (gva - gva_al);
	const unsigned pages = HUGE_2M >> GM_PAGE_SHIFT;
	bool write = access & X86_PF_WRITE, can_write = true, exec = true;
	int prot, r;

	if ((gva ^ gpa) & (HUGE_2M - 1) || gva_al + HUGE_2M > GP_USER_TOP)
		return -EXDEV;
	for (unsigned i = 0; i < pages; i++) {
		struct x86_walk_result w;

		if (kvm_vcpu_walk(v, gva_al + i * GM_PAGE_SIZE, 0, &w) ||
		    (w.gpa & ~(GM_PAGE_SIZE - 1)) != gpa_al + i * GM_PAGE_SIZE)
			return -EXDEV;
		can_write &= w.writable && w.dirty;
		exec &= w.executable;
	}
	if (write && !can_write)
		return emulate_insn(x, t, NULL, ret);
	/* Not for writing: on a dirty-logged slot that would log the block. */
	if (prefault_run(x, gpa_al, pages) != pages)
		return -EXDEV;
	prot = PROT_READ | (exec ? PROT_EXEC : 0) | (can_write ? PROT_WRITE : 0);
	r = x86_shadow_map(x->vm->sh, &x->sv, v->kvm, gva_al, gpa_al >> GM_PAGE_SHIFT, pages,
			   1, prot, access & X86_PF_FETCH, seq);
	if (r == -EXDEV && write)
		return emulate_insn(x, t, NULL, ret); /* some page of it is read-only (dirty logging) */
	return r == -EAGAIN ? -EAGAIN : (r == -ENOSPC || !r) ? X86R_CONTINUE : -EXDEV;
}

/* A #PF in the guest process: the guest's own, or a shadow miss. */
static int handle_pf(struct kvm_x86_vcpu *x, const struct gp_trap *t, int *ret)
{
	struct kvm_vcpu *v = x->v;
	uint64_t gva = t->addr;
	/* The guest runs as a supervisor: drop the U bit of the host's code. */
	uint32_t access = (uint32_t)t->err & (X86_PF_WRITE | X86_PF_FETCH);
	bool write = access & X86_PF_WRITE;

	if (!gp_guest_va_ok(gva))
		return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
	for (unsigned n = 0; n < MAX_FAULT_RETRIES; n++) {
		unsigned long seq = kvm_mmu_invalidate_seq_snapshot(v->kvm);
		struct x86_walk_result wr;
		int level, prot, r;
		unsigned npages;
		bool s2_writable;
		uint64_t e, map_gva, map_gpa, back;

		r = kvm_vcpu_walk(v, gva, access, &wr);
		if (r < 0)
			return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
		if (r) {
			queue_exception(x, &(struct x86_exception){ .vector = X86_PF,
								    .has_error_code = true,
								    .error_code = wr.error_code,
								    .cr2 = gva });
			return X86R_CONTINUE;
		}
		/* Only the leaf's flags are used past the read-side section. */
		gm_rcu_read_lock();
		r = kvm_mmu_fault_in(v->kvm, wr.gpa, write, &v->stat.fault, &v->last_used_slot, &e,
				     &level, &x->mf);
		gm_rcu_read_unlock();
		if (r == KVM_PF_EMULATE) {
			if (access & X86_PF_FETCH)
				return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION); /* code in MMIO */
			return emulate_mmio_insn(x, t, ret);
		}
		if (r == KVM_PF_EXIT)
			return exit_memory_fault(x, ret);
		s2_writable = e & S2_WRITABLE;
		/*
		 * Without paging (level 0) guest-virtual is guest-physical:
		 * any run is contiguous; map up to 2 MiB as for a large page.
		 * Shared memory under a large guest page is mapped from the
		 * start of its 2 MiB, as a host huge page maps it at once;
		 * memory in host huge pages (hugetlbfs) can only be mapped in
		 * whole, aligned huge pages.  If that cannot be had, the run
		 * starts at the faulting page.
		 */
		npages = run_pages(gva, wr.level ? wr.level : 2);
		map_gva = gva & ~(GM_PAGE_SIZE - 1);
		map_gpa = wr.gpa & ~(GM_PAGE_SIZE - 1);
		back = 0;
		/*
		 * The other pages are faulted in for reading: on a dirty-logged
		 * slot that maps them read-only, so the run maps writable only
		 * up to the next page not written yet, and nothing unwritten
		 * is logged.
		 */
		if (npages > 1 && !(e & S2_PRIVATE)) {
			unsigned whole;

			back = gva & (HUGE_2M - 1) & ~(GM_PAGE_SIZE - 1);
			/* Not below what the guest process may map (mmap_min_addr). */
			if (map_gva - back < guest_low_va())
				back = map_gva > guest_low_va() ? map_gva - guest_low_va() : 0;
			whole = run_pages(map_gva - back, 2);
			if (back && whole > (back >> GM_PAGE_SHIFT) &&
			    prefault_run(x, map_gpa - back, whole) == whole) {
				map_gva -= back;
				map_gpa -= back;
				npages = whole;
			} else {
				back = 0;
				npages = prefault_run(x, map_gpa, npages);
			}
			npages = GM_MAX(npages, 1u);
		}
		prot = PROT_READ;
		if (wr.executable)
			prot |= PROT_EXEC;
		/* Writable only once the guest PTE is dirty: the CPU sets D. */
		if (wr.writable && wr.dirty && s2_writable)
			prot |= PROT_WRITE;
		r = x86_shadow_map(x->vm->sh, &x->sv, v->kvm, map_gva, map_gpa >> GM_PAGE_SHIFT,
				   npages, wr.level, prot, access & X86_PF_FETCH, seq);
		if (r == -EAGAIN && back) {
			/* The block's start is not mapped so (read-only while
			 * dirty logging): from the faulting page on. */
			r = x86_shadow_map(x->vm->sh, &x->sv, v->kvm, map_gva + back,
					   (map_gpa + back) >> GM_PAGE_SHIFT,
					   npages - (unsigned)(back >> GM_PAGE_SHIFT), wr.level, prot,
					   access & X86_PF_FETCH, seq);
		}
		if (r == -EXDEV) {
			r = map_huge_block(x, t, gva, wr.gpa, access, seq, ret);
			if (r != -EXDEV && r != -EAGAIN)
				return r;
		}
		if (r == -EAGAIN)
			continue;
		if (r == -ENOSPC || !r)
			return X86R_CONTINUE;
		/* No fd reaches that memory, or code in memory that cannot be executable. */
		return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
	}
	return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
}

static int reflect(struct kvm_x86_vcpu *x, uint8_t vector, bool has_ec, uint32_t ec)
{
	queue_exception(x, &(struct x86_exception){ .vector = vector, .has_error_code = has_ec,
						    .error_code = ec });
	return X86R_CONTINUE;
}

/*
 * Whether RIP is at SYSCALL, SYSENTER or INT $0x80.  Not so after a
 * SYSENTER on an Intel host: the kernel's compatibility entry reports
 * the landing pad of a 32-bit vDSO the guest process does not have, and
 * the guest's registers are not the ones it had.
 */
static bool at_syscall_insn(struct kvm_x86_vcpu *x)
{
	struct x86_exception ex;
	uint8_t b[2];
	uint64_t gpa;
	int r;

	regs_in(x->v, &x->xr);
	r = guest_access(x, x->xr.rip, b, 2, false, ACC_CPU | X86_PF_FETCH, &gpa, &ex);
	x->mem_exit = false;
	return r == X86_MEM_OK && ((b[0] == 0x0f && (b[1] == 0x05 || b[1] == 0x34)) ||
				   (b[0] == 0xcd && b[1] == 0x80));
}

static int handle_trap(struct kvm_x86_vcpu *x, const struct gp_trap *t, int *ret)
{
	struct x86_exception gp = { .vector = X86_GP, .has_error_code = true,
				    .error_code = (uint32_t)t->err };
	struct x86_exception ud = { .vector = X86_UD };

	switch (t->kind) {
	case GP_TRAP_PF:
		return handle_pf(x, t, ret);
	case GP_TRAP_GP:
		return emulate_insn(x, t, &gp, ret);
	case GP_TRAP_UD:
		return emulate_insn(x, t, &ud, ret);
	case GP_TRAP_SYSCALL:
		/*
		 * The host reports a system call with RIP after its
		 * instruction, which is 2 bytes (SYSCALL, SYSENTER, INT 0x80;
		 * the kernel's own restart assumes as much) and has not run
		 * for the guest: back to it, and fetch it from there.
		 */
		x->v->regs.rip -= 2;
		regs_in(x->v, &x->xr);
		if (x86_cpu_mode(&x->xr) != X86_MODE_64)
			x->v->regs.rip &= 0xffffffffull;
		if (!at_syscall_insn(x))
			return exit_internal(x->v, KVM_INTERNAL_ERROR_EMULATION);
		return emulate_insn(x, NULL, &ud, ret);
	case GP_TRAP_DE:
		return reflect(x, X86_DE, false, 0);
	case GP_TRAP_MF:
		return reflect(x, 16, false, 0);
	case GP_TRAP_XM:
		return reflect(x, 19, false, 0);
	case GP_TRAP_BP:
		return handle_int3(x);
	case GP_TRAP_DB:
		return handle_db(x, t);
	case GP_TRAP_HWBP:
		return handle_hwbp(x, t);
	case GP_TRAP_AC:
		return reflect(x, 17, true, 0);
	default:
		return exit_internal(x->v, KVM_INTERNAL_ERROR_EMULATION);
	}
}

/* ---- events ------------------------------------------------------------------------ */

/* The split irqchip's ExtINT (KVM_INTERRUPT) goes ahead of the LAPIC's own
 * interrupts, when LINT0 takes it (kvm_cpu_has_extint()). */
static bool extint_ready(struct kvm_vcpu *v)
{
	return v->arch.has_extint && irqchip_split(v->kvm) && kvm_apic_accept_pic_intr(v);
}

/* The in-kernel LAPIC (and ExtINT) as the event module asks it; the
 * callbacks' ctx is the vCPU. */
static int irq_peek(void *ctx)
{
	struct kvm_vcpu *v = ctx;

	if (extint_ready(v))
		return v->arch.extint_vector;
	return kvm_apic_has_interrupt(v);
}

static int irq_ack(void *ctx)
{
	struct kvm_vcpu *v = ctx;

	if (extint_ready(v)) {
		v->arch.has_extint = false;
		return v->arch.extint_vector;
	}
	return kvm_cpu_get_interrupt(v);
}

/* KVM_INTERRUPT could store an ExtINT now (kvm_cpu_accept_dm_intr()). */
static bool irq_accept_dm_intr(void *ctx)
{
	struct kvm_vcpu *v = ctx;

	return !v->arch.has_extint && kvm_apic_accept_pic_intr(v);
}

/*
 * At entry: deliver what KVM would (x86_event_inject), or exit for a
 * triple fault, the interrupt window, or a state delivery cannot handle.
 */
static int deliver_events(struct kvm_x86_vcpu *x)
{
	struct kvm_vcpu *v = x->v;
	const struct x86_irq_source src = { irq_peek, irq_ack, irq_accept_dm_intr, v };
	struct x86_event_env env = {
		.irq = irqchip_in_kernel(v->kvm) ? &src : NULL,
		.pic_in_kernel = irqchip_kernel(v->kvm),
		.request_interrupt_window = v->run->request_interrupt_window,
		.block_irq = v->arch.guest_debug & KVM_GUESTDBG_BLOCKIRQ,
	};
	struct x86_inject_result out;
	int r;

	kvm_lapic_timer_check(v); /* lapic_state.c */
	/*
	 * A #BP the VMM queued right after a software-breakpoint exit
	 * (KVM_GUESTDBG_INJECT_BP, or KVM_SET_VCPU_EVENTS) stands for the
	 * INT3: KVM injects it with the exit's instruction length (VMX), or
	 * skips the instruction at RIP (SVM), so the guest's handler returns
	 * past the INT3.  Delivered as a soft exception from there.
	 */
	if (x->sw_bp_len && v->arch.ev.exception.pending && v->arch.ev.exception.nr == X86_BP &&
	    v->regs.rip == x->sw_bp_rip)
		v->regs.rip += x->sw_bp_len;
	x->sw_bp_len = 0;
	regs_in(v, &x->xr);
	r = x86_event_inject(&v->arch.ev, &x->xr, &env, &ev_ops, x, &out);
	if (r == X86_EVENT_TRIPLE_FAULT) {
		v->run->exit_reason = KVM_EXIT_SHUTDOWN;
		return X86R_EXIT;
	}
	if (r != X86_EVENT_OK)
		return exit_internal(v, KVM_INTERNAL_ERROR_DELIVERY_EV);
	if (out.delivered) {
		regs_out(v, &x->xr);
		apply_effects(x, X86_FX_SEGMENTS);
		v->mp_state = KVM_MP_STATE_RUNNABLE;
	}
	if (out.irq_window_open) {
		v->run->exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
		return X86R_EXIT;
	}
	return X86R_CONTINUE;
}

/* ---- System Management Mode ---------------------------------------------------------- */

/*
 * An SMI is taken when one is pending, the vCPU is not in SMM already and
 * no event is being delivered (kvm_check_and_inject_events(): after a
 * pending exception, before NMIs and interrupts).
 */
static bool smi_allowed(const struct kvm_x86_events *ev)
{
	return ev->smi.pending && !ev->smi.smm && !ev->exception.pending &&
	       !ev->exception.injected && !ev->nmi.injected && !ev->interrupt.injected;
}

/*
 * enter_smm(): the state goes to the save area at SMBASE + 0xfe00 in
 * SMRAM (address space 1: SMM is entered first), NMIs are blocked, and
 * the vCPU starts at SMBASE:8000 in SMM's entry state (smm.h).  From there
 * its code runs in the emulator until RSM.  A save area that is not RAM
 * kills the VM, as in KVM: -EIO.
 */
static int enter_smm(struct kvm_x86_vcpu *x)
{
	struct kvm_vcpu *v = x->v;
	struct kvm_x86_events *ev = &v->arch.ev;
	uint8_t area[X86_SMRAM_SAVE_SIZE];
	struct x86_regs r;
	uint64_t count = 0;

	model_refresh(x);
	regs_in(v, &r);
	r.rflags = kvm_get_rflags(v);
	x86_smram_save(&r, x->model.lm, r.smbase, ev->interrupt.shadow, area);
	ev->smi.pending = false;
	ev->smi.smm = true;
	/* MSR_SMI_COUNT: KVM's smi_count. */
	if (!kvm_vcpu_get_msr(v, MSR_SMI_COUNT, &count))
		(void)kvm_vcpu_set_msr(v, MSR_SMI_COUNT, count + 1);
	if (phys_access(x, (uint64_t)r.smbase + X86_SMRAM_SAVE_OFFSET, area, sizeof(area), true)) {
		kvm_vm_dead(v->kvm);
		return -EIO;
	}
	if (ev->nmi.masked)
		ev->smi.smm_inside_nmi = true;
	else
		ev->nmi.masked = true;
	ev->interrupt.shadow = 0;
	x86_smm_entry_regs(&r, r.smbase, x->model.lm);
	regs_out(v, &r);
	kvm_set_rflags(v, r.rflags);
	apply_effects(x, X86_FX_MMU_MODE | X86_FX_SEGMENTS);
	return 0;
}

bool kvm_x86_ready_for_interrupt_injection(struct kvm_vcpu *v)
{
	const struct x86_irq_source src = { irq_peek, irq_ack, irq_accept_dm_intr, v };
	struct x86_event_env env = { .irq = irqchip_in_kernel(v->kvm) ? &src : NULL,
				     .pic_in_kernel = irqchip_kernel(v->kvm) };
	struct x86_regs xr;

	regs_in(v, &xr);
	return x86_event_ready_for_injection(&v->arch.ev, &xr, &env);
}

/* ---- waiting ------------------------------------------------------------------------ */

/*
 * HLT with an in-kernel irqchip: sleep until an interrupt can be taken or
 * a signal arrives.  The LAPIC model wakes halted C guests through its
 * condition variable; this thread must also see the caller's signals, so
 * it polls the model at 1 ms intervals while waiting on the signalfd of
 * the signals the run mask lets through (sigwait.c).  Returns
 * X86R_CONTINUE when runnable, or X86R_EXIT with -EINTR.
 */
static int halt_wait(struct kvm_x86_vcpu *x, const sigset_t *mask, int *ret)
{
	struct kvm_vcpu *v = x->v;

	while (v->mp_state == KVM_MP_STATE_HALTED) {
		kvm_lapic_timer_check(v);
		kvm_vcpu_process_nmi(v);
		if (kvm_cpu_has_interrupt(v) || extint_ready(v) || v->arch.ev.nmi.pending ||
		    v->arch.ev.smi.pending || __atomic_load_n(&v->arch.smi_request, __ATOMIC_ACQUIRE)) {
			v->mp_state = KVM_MP_STATE_RUNNABLE;
			break;
		}
		if (kvm_vcpu_signal_pending(v, mask, 1)) {
			*ret = kvm_vcpu_exit_intr(v);
			return X86R_EXIT;
		}
	}
	return X86R_CONTINUE;
}

/*
 * One run of the guest that a signal interrupts: the wait is a poll() on
 * gproc's fds (gproc.h's split form) and on the signalfd of the signals
 * the run mask lets through (sigwait.c); the first such signal kicks
 * the guest thread, and whatever trap it stops with is returned (a real
 * trap that came first is kept: no exit is lost).  *@signalled: a signal
 * arrived; with trap GP_TRAP_KICK nothing else happened.
 */
static int run_guest(struct kvm_x86_vcpu *x, const sigset_t *mask, struct gp_cpu *cpu,
		     struct gp_trap *trap, bool *signalled)
{
	struct pollfd pfd[GP_NR_POLLFDS + 1];
	int sfd = kvm_vcpu_sigfd(x->v, mask);
	int r;

	*signalled = false;
	r = gp_vcpu_enter(x->gp, cpu, x->sv.maps, x->sv.nr_maps);
	if (r)
		return r;
	gp_vcpu_pollfds(x->gp, pfd);
	pfd[GP_NR_POLLFDS] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		bool watch = !*signalled && sfd >= 0;

		r = gp_vcpu_finish(x->gp, cpu, trap);
		if (r != -EAGAIN)
			return r;
		if (poll(pfd, GP_NR_POLLFDS + watch, -1) > 0 && watch &&
		    (pfd[GP_NR_POLLFDS].revents & POLLIN)) {
			gp_vcpu_kick(x->gp);
			*signalled = true;
		}
	}
}

/* ---- the loop ------------------------------------------------------------------------ */

/* The host code segment the vCPU's state runs in (GP_MODE_*), or -1:
 * 64-bit code with paging, or flat 32-bit code (x86_pm32.h). */
static int run_mode(struct kvm_vcpu *v)
{
	struct x86_regs xr;

	regs_in(v, &xr);
	return x86_pm32_run_mode(&xr);
}

int kvm_x86_vcpu_run(struct kvm_vcpu *v, const sigset_t *mask)
{
	struct kvm_x86_vcpu *x;
	bool flushed = false; /* the shadow was dropped after a failed map */
	int r, ret = 0;

	/* Nothing to start a guest process for (e.g. a vCPU at reset); SMM
	 * code runs in the emulator, which needs the backend all the same. */
	kvm_vcpu_process_smi(v);
	if (!v->x86 && run_mode(v) < 0 && !v->arch.ev.smi.smm && !v->arch.ev.smi.pending)
		return exit_internal(v, KVM_INTERNAL_ERROR_EMULATION), 0;
	r = x86_vcpu_init(v);
	if (r)
		return r;
	x = v->x86;
	for (;;) {
		struct x86_shadow_mode mode = { v->sregs.cr0, v->sregs.cr3, v->sregs.cr4,
						v->sregs.efer };
		struct gp_cpu cpu;
		struct gp_trap trap;
		bool signalled;
		int gmode;

		if (v->mp_state == KVM_MP_STATE_HALTED && halt_wait(x, mask, &ret) == X86R_EXIT)
			break;
		/* An SMI first, then the events; one delivered (an exception's
		 * frame) lets the SMI in right after it, as KVM's immediate exit. */
		kvm_vcpu_process_nmi(v);
		kvm_vcpu_process_smi(v);
		if (smi_allowed(&v->arch.ev) && (ret = enter_smm(x)))
			break;
		if (deliver_events(x) == X86R_EXIT)
			break;
		if (smi_allowed(&v->arch.ev) && (ret = enter_smm(x)))
			break;
		if (v->arch.ev.smi.smm) {
			/* SMM code: one instruction at a time in the emulator. */
			if (kvm_vcpu_signal_pending(v, mask, 0)) {
				ret = kvm_vcpu_exit_intr(v);
				break;
			}
			v->mp_state = KVM_MP_STATE_RUNNABLE;
			if (emulate_insn(x, NULL, NULL, &ret) == X86R_EXIT)
				break;
			continue;
		}
		gmode = run_mode(v);
		if (gmode < 0) {
			exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
			break;
		}
		if (kvm_vcpu_signal_pending(v, mask, 0)) {
			ret = kvm_vcpu_exit_intr(v);
			break;
		}
		/* Before each entry, as KVM's request: a ring at its soft limit
		 * stops the vCPU until the VMM has harvested and reset it. */
		if (kvm_dirty_ring_soft_full(&v->dirty_ring)) {
			v->run->exit_reason = KVM_EXIT_DIRTY_RING_FULL;
			break;
		}
		x86_shadow_set_mode(x->vm->sh, &x->sv, &mode);
		arm_hwbp(x);
		cpu_in(v, &cpu);
		cpu.mode = (uint32_t)gmode;
		cpu.pad = 0;
		r = run_guest(x, mask, &cpu, &trap, &signalled);
		x86_shadow_run_end(x->vm->sh, &x->sv);
		if (r == -ENOMEM && !flushed) {
			/*
			 * A map failed for want of host mappings: the shadow's
			 * pages split into more VMAs than vm.max_map_count
			 * allows (dirty logging write-protects page by page).
			 * Drop the shadow, as KVM's shadow MMU recycles pages
			 * at its limit; the guest faults back what it uses.
			 */
			x86_shadow_flush_all(x->vm->sh, &x->sv);
			flushed = true;
			continue;
		}
		if (r == -EIO) {
			/*
			 * The guest process is gone (killed: it runs as the
			 * VMM's user), and with it the guest's memory and
			 * registers: the VM is dead, as KVM's after a bug.
			 */
			kvm_vm_dead(v->kvm);
			ret = -EIO;
			break;
		}
		if (r) { /* a map failed */
			exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
			break;
		}
		flushed = false;
		/* The guest thread's FPU state moved on: KVM_GET_XSAVE asks it. */
		x->xsave_state = XS_GUEST;
		/* Guest code retired natively: an STI/MOV SS shadow is over. */
		if (cpu.rip != v->regs.rip)
			x86_event_insn_retired(&v->arch.ev, 0);
		cpu_out(v, &cpu);
		/* Guest code far-jumped into a host code segment of the other
		 * width (its selectors name the host's GDT): no guest state
		 * describes that. */
		if (cpu.mode != (uint32_t)gmode) {
			exit_internal(v, KVM_INTERNAL_ERROR_EMULATION);
			break;
		}
		if (trap.kind == GP_TRAP_KICK && !signalled)
			continue; /* a zap waited for our maps */
		/* A real trap that came with the signal is handled first. */
		if (trap.kind != GP_TRAP_KICK && handle_trap(x, &trap, &ret) == X86R_EXIT)
			break;
		if (signalled) {
			ret = kvm_vcpu_exit_intr(v);
			break;
		}
	}
	/* Maps registered and never run: forget them (a zap may wait on them). */
	x86_shadow_forget(x->vm->sh, &x->sv);
	return ret;
}
