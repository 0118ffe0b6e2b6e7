/* SPDX-License-Identifier: MIT */
/*
 * KVM_RUN for a vCPU without a C guest: the VMM's x86-64 machine code runs
 * natively in the VM's guest process (src/gproc), and every trap comes
 * back here, to the thread that called KVM_RUN, which emulates, faults
 * through stage-2, or exits to the VMM (x86_run.c).
 *
 * The backend is chosen per vCPU at its first KVM_RUN: a vCPU with a C
 * guest (guestmem_vcpu_set_guest, GUESTMEM_GUEST) keeps the guest-thread
 * path of run.c; any other vCPU runs here.
 *
 * Register state stays where the ioctls read it (vcpu->regs, ->sregs,
 * ->arch): the guest process gets it at each entry and gives it back at
 * each trap, so KVM_GET/SET_REGS, SREGS and friends between runs see and
 * change the guest's state as in KVM.
 *
 * Context of every function: vcpu->mutex held (KVM_RUN), all signals
 * blocked (run.c).
 */
#ifndef GM_VCPU_X86_RUN_H
#define GM_VCPU_X86_RUN_H

#include <signal.h>
#include <stdbool.h>

struct kvm;
struct kvm_vcpu;

/* The run loop (after the completion and immediate_exit of run.c).
 * Returns KVM_RUN's result: 0 with an exit in kvm_run, or -errno. */
int kvm_x86_vcpu_run(struct kvm_vcpu *v, const sigset_t *mask);

/*
 * Finish the instruction whose exit the VMM just handled (IN data, MMIO
 * read data, hypercall result, MSR answer), as KVM's complete_userspace_io.
 * Returns true if that produced a new exit (e.g. the write half of an MMIO
 * read-modify-write): KVM_RUN then returns *@ret without running.
 */
bool kvm_x86_complete_userspace_io(struct kvm_vcpu *v, int *ret);

/* Make a running machine-code guest stop at once and look at its events
 * (an interrupt was raised for it).  Context: any thread. */
void kvm_x86_kick(struct kvm_vcpu *v);

/* kvm_run->ready_for_interrupt_injection at the end of KVM_RUN. */
bool kvm_x86_ready_for_interrupt_injection(struct kvm_vcpu *v);

/* FPU/XSAVE state lives in the guest thread between runs: copy it out to
 * vcpu->arch.xsave before a read, in after a write (x86_state.c). */
void kvm_x86_xsave_sync_out(struct kvm_vcpu *v);
void kvm_x86_xsave_sync_in(struct kvm_vcpu *v);

/* vCPU destruction: the guest thread ends.  VM destruction: the process. */
void kvm_x86_vcpu_destroy(struct kvm_vcpu *v);
void kvm_x86_vm_destroy(struct kvm *kvm);

#endif
