/* SPDX-License-Identifier: MIT */
/*
 * gproc.h - the guest process: one per VM, one host thread per vCPU, running
 * the guest's machine code natively at CPL3 (step 3 of
 * docs/design-guest-execution-and-isolation.md).  This is the VMM-side
 * client; the process runs the stub in src/gproc/stub, which is embedded in
 * libguestmem and started with clone3 + execveat(memfd, AT_EMPTY_PATH).
 *
 * The guest process is dumb: every trap (fault, #GP of a privileged
 * instruction, CPUID and RDTSC where they fault, a SYSCALL refused by its
 * seccomp filter, a kick) stops the vCPU thread in its signal handler and is
 * posted to the vCPU's mailbox; the caller of gp_vcpu_run() decides what
 * happens next.  The process dies when its control socket reaches EOF
 * (gp_vm_destroy(), or the VMM died); it is not a SIGCHLD child (exit
 * signal 0), so the VMM's own waitpid(-1) never sees it.
 *
 * Waiting with a signal mask (KVM_RUN).  gp_vcpu_run() blocks until the
 * trap and ignores signals.  A caller that must stop on a signal with its
 * own mask uses the split form instead:
 *
 *	r = gp_vcpu_enter(v, &cpu, maps, n);          // the guest now runs
 *	if (r) ...;                                   // a map or a register failed
 *	gp_vcpu_pollfds(v, pfd);
 *	for (kicked = false;;) {
 *		r = gp_vcpu_finish(v, &cpu, &trap);   // 0: stopped, -EIO: died
 *		if (r != -EAGAIN)
 *			break;
 *		if (ppoll(pfd, GP_NR_POLLFDS, NULL, mask) < 0 && errno == EINTR && !kicked) {
 *			gp_vcpu_kick(v);              // a handler ran: stop the guest
 *			kicked = true;
 *		}
 *	}
 *	// trap.kind == GP_TRAP_KICK && kicked: KVM_EXIT_INTR / -EINTR;
 *	// any other trap came first and is returned, so none is lost.
 *
 * gp_vcpu_finish() arms the wake-up before it returns -EAGAIN (the stub
 * writes the eventfd in pfd[0] when it posts a trap and the VMM sleeps; a
 * Dekker pair on the mailbox), and pfd[1], a pidfd, becomes readable when
 * the process dies, so ppoll() never sleeps through either.
 *
 * Threads: gp_vm_* are safe from any thread, concurrently with running
 * vCPUs (requests are serialised on the VM's control lock).  A vCPU's
 * enter/finish/run/get/set/destroy are for one thread at a time (the
 * caller's vcpu->mutex); gp_vcpu_kick() is for any thread, any time.
 */
#ifndef GM_GPROC_GPROC_H
#define GM_GPROC_GPROC_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gproc/gproc_abi.h" /* gp_guest_range_ok, gp_cpu, gp_map, gp_trap */

struct gp_vm;   /* one guest process */
struct gp_vcpu; /* one thread in it */

/**
 * gp_vm_create() - spawn a guest process.
 * Returns 0 and *@out, or -errno (-EIO if the stub did not start).
 */
int gp_vm_create(struct gp_vm **out);
/* The same with GP_VM_* flags (gproc_abi.h); gp_vm_create() passes 0. */
int gp_vm_create_flags(struct gp_vm **out, unsigned flags);
/*
 * The same through the spawner behind @door (spawner.h), or started here
 * if @door is -1; gp_vm_create_flags() takes the door from the
 * environment (GUESTMEM_GPROCD).
 */
int gp_vm_create_door(struct gp_vm **out, unsigned flags, int door);

/**
 * gp_vm_destroy() - end the guest process and reap it.
 * Context: every vCPU of @vm destroyed.  Closes the control socket (the stub
 * exits at EOF) and waits for the exit; SIGKILL after 5 s.
 */
void gp_vm_destroy(struct gp_vm *vm);

/*
 * The stub's executable segment, at a fixed address in every guest process
 * (the VMM's seccomp filter lets the calls made from it through).
 */
extern const unsigned long gp_stub_text_lo, gp_stub_text_hi;

/** gp_vm_pid() - the guest process's pid (diagnostics, tests). */
int gp_vm_pid(const struct gp_vm *vm);

/**
 * gp_vm_add_backing() - hand @fd to the guest process for later gp_map's.
 * The process keeps its own copy; the caller keeps @fd.
 * Returns 0 and *@id, or -errno (-EMFILE past GP_MAX_BACKINGS, -EIO).
 */
int gp_vm_add_backing(struct gp_vm *vm, int fd, uint32_t *id);

/** gp_vm_remove_backing() - close the process's copy; unmaps nothing. */
int gp_vm_remove_backing(struct gp_vm *vm, uint32_t id);

/**
 * gp_vm_create_backing() - a new file of @size bytes, a memfd or (@kind
 * GP_BACKING_SECRETMEM) a memfd_secret, created in the guest process and
 * held there only (this process never has a descriptor to it).
 * Returns 0 and *@id, or -errno (the kernel's: -EFBIG, -ENOMEM, -ENOSYS;
 * -EMFILE, -EIO).
 */
int gp_vm_create_backing(struct gp_vm *vm, uint32_t kind, uint64_t size, uint32_t *id);

/** gp_vm_zero() - write zeroes over a page-aligned range of backing @id. */
int gp_vm_zero(struct gp_vm *vm, uint32_t id, uint64_t off, uint64_t len);

/**
 * gp_vm_access() - read or write @len bytes (at most GP_ACCESS_MAX, within
 * one page) at offset @off of backing @id, in the guest process: the
 * accesses the CPU itself makes to memory only that process holds (page
 * walks, event delivery; the caller keeps the page from being freed
 * meanwhile).  An aligned 4- or 8-byte access is a single access.
 * Returns 0 or -errno (-EBADF for an unknown id, -EINVAL, -EIO).
 */
int gp_vm_access(struct gp_vm *vm, uint32_t id, uint64_t off, void *buf, unsigned len,
		 bool write);
/**
 * gp_vm_cmpxchg() - replace *@old by @new_val in the @size-byte (4 or 8,
 * aligned) word at @off of backing @id, atomically with the guest's own
 * accesses.  Returns 0 if swapped, 1 if not (*@old is then what was
 * there), or -errno as gp_vm_access().
 */
int gp_vm_cmpxchg(struct gp_vm *vm, uint32_t id, uint64_t off, unsigned size, uint64_t *old,
		  uint64_t new_val);

/**
 * gp_vm_fallocate() - fallocate(2) on backing @id in the guest process,
 * for a file only the guest process holds (private memory the VMM must
 * not reach).  Returns 0 or -errno (-EBADF for an unknown id, -EIO).
 */
int gp_vm_fallocate(struct gp_vm *vm, uint32_t id, int mode, uint64_t off, uint64_t len);

/**
 * gp_vm_unmap() - munmap [@gva, @gva + @len) in the guest process.
 * Synchronous, from any thread, vCPUs running or not: when it returns, no
 * vCPU thread can use the old mapping any more (the kernel's munmap has
 * shot down every thread's TLB); a later access faults (GP_TRAP_PF).  A
 * gp_map that a vCPU applies concurrently for the same range may land
 * after it: the caller orders the two (KVM's mmu_invalidate_seq retry).
 * Returns 0, -EINVAL (unaligned, empty, not a guest range: gp_guest_range_ok()), -EIO.
 */
int gp_vm_unmap(struct gp_vm *vm, uint64_t gva, uint64_t len);

/** gp_vm_protect() - mprotect a guest range, synchronous as gp_vm_unmap(). */
int gp_vm_protect(struct gp_vm *vm, uint64_t gva, uint64_t len, int prot);

/** gp_cpuid_faulting() - whether ARCH_SET_CPUID took (CPUID raises #GP). */
bool gp_cpuid_faulting(struct gp_vm *vm);
/** gp_tsc_faulting() - whether PR_SET_TSC took (RDTSC/RDTSCP raise #GP). */
bool gp_tsc_faulting(struct gp_vm *vm);

/**
 * gp_vcpu_create() - start a vCPU thread; it parks in its handler.
 * Returns 0 and *@out, or -errno (-ENOSPC past GP_MAX_VCPUS, -EIO).
 */
int gp_vcpu_create(struct gp_vm *vm, struct gp_vcpu **out);

/**
 * gp_vcpu_destroy() - end the vCPU thread and free its slot.
 * Context: the caller owns @vcpu; a running guest is kicked and waited for.
 */
void gp_vcpu_destroy(struct gp_vcpu *vcpu);

/**
 * gp_vcpu_run() - run the vCPU until it traps.
 * Applies @maps (in order) in the vCPU thread, loads @cpu, runs guest code
 * until it traps; *@cpu and *@trap receive the state at the trap.  Blocks;
 * interrupted only by gp_vcpu_kick() (GP_TRAP_KICK, or the trap that came
 * first).  Returns 0, or -errno: -EIO if the guest process is gone; a
 * failed map's error (-ENOMEM, -EBADF for an unknown backing, -EINVAL for a
 * bad range) with *@trap.kind = GP_TRAP_OTHER and the guest not run;
 * -EINVAL for a RIP the guest may not own (gp_guest_va_ok()) or a non-canonical base.
 */
int gp_vcpu_run(struct gp_vcpu *vcpu, struct gp_cpu *cpu, const struct gp_map *maps,
		unsigned nr_maps, struct gp_trap *trap);

/*
 * The split form of gp_vcpu_run() (see the top of this file).
 * gp_vcpu_enter(): apply the maps and start the guest; 0 or the error of a
 * map beyond the last GP_MBOX_MAPS ones (the guest did not run), -EINVAL,
 * -EBUSY (already running), -EIO.
 * gp_vcpu_finish(): 0 with *@cpu, *@trap once the guest stopped; -EAGAIN
 * while it runs (the wake-up is armed); -EIO if the process died; the
 * error of a map or register load (the guest did not run).
 */
int gp_vcpu_enter(struct gp_vcpu *vcpu, const struct gp_cpu *cpu, const struct gp_map *maps,
		  unsigned nr_maps);
int gp_vcpu_finish(struct gp_vcpu *vcpu, struct gp_cpu *cpu, struct gp_trap *trap);
#define GP_NR_POLLFDS 2
/* pfd[0]: the vCPU's eventfd, pfd[1]: the process's pidfd, both POLLIN. */
void gp_vcpu_pollfds(struct gp_vcpu *vcpu, struct pollfd pfd[GP_NR_POLLFDS]);

/**
 * gp_vcpu_kick() - make a running gp_vcpu_run() return soon.
 * From any thread; async-signal-safe.  A kick that finds the vCPU stopped
 * is kept: the next run returns GP_TRAP_KICK without running guest code
 * (at most one spurious stop; KVM's requests are checked by the caller).
 */
void gp_vcpu_kick(struct gp_vcpu *vcpu);

/**
 * gp_vcpu_set_hwbp() - the hardware breakpoints the vCPU thread runs with.
 * Armed on the next run with perf_event_open(PERF_TYPE_BREAKPOINT) in the
 * thread itself (Linux >= 5.13 for attr.sigtrap); a hit stops the guest
 * with GP_TRAP_HWBP.  Only a change is sent.  If arming fails, that run
 * fails with the error (-ENOENT without a breakpoint PMU, -ENOSPC with no
 * debug register free, -EACCES/-EPERM where perf events are refused) and
 * the next run tries again.
 * Returns 0, -EINVAL (a type or length out of range, a data address not
 * aligned to its length), -EBUSY (running).  Context: the vCPU's owner.
 */
int gp_vcpu_set_hwbp(struct gp_vcpu *vcpu, const struct gp_hwbp bp[GP_NR_HWBP]);

/** gp_vcpu_tid() - the vCPU thread's tid in the guest process. */
int gp_vcpu_tid(const struct gp_vcpu *vcpu);

/*
 * The guest's FPU/SSE/AVX state as a standard (non-compacted) XSAVE image,
 * KVM_GET/SET_XSAVE's format.  It stays in the vCPU thread; get copies the
 * image of the last stop (bytes past it read as zero), set validates the
 * header and MXCSR (-EINVAL) and loads it on the next run.  Context: the
 * vCPU is stopped (-EBUSY otherwise).
 */
int gp_vcpu_get_xsave(struct gp_vcpu *vcpu, void *buf, size_t len);
int gp_vcpu_set_xsave(struct gp_vcpu *vcpu, const void *buf, size_t len);
/** gp_vcpu_xsave_size() - bytes of the host's user XSAVE image. */
size_t gp_vcpu_xsave_size(struct gp_vcpu *vcpu);

#endif
