/* SPDX-License-Identifier: MIT */
/*
 * x86 tables that come with vCPUs: the supported CPUID (from the host's,
 * as KVM derives it), the MSR index list, and the MSR store behind
 * KVM_GET_MSRS / KVM_SET_MSRS.
 */
#ifndef GM_VCPU_CPUID_H
#define GM_VCPU_CPUID_H

#include <stdbool.h>
#include <stdint.h>

#include <guestmem/kvm.h>

struct kvm;
struct kvm_vcpu;

/*
 * Fill up to @max entries of KVM_GET_SUPPORTED_CPUID into @e.  Returns the
 * number of entries, or -E2BIG when the table does not fit in @max.
 */
int kvm_supported_cpuid(struct kvm_cpuid_entry2 *e, uint32_t max);

/* The MSR indices KVM_GET_MSR_INDEX_LIST reports, and their number. */
const uint32_t *kvm_msr_index_list(uint32_t *n);

/*
 * KVM_GET_MSRS / KVM_SET_MSRS on @n entries: returns how many were
 * processed (all of them: every MSR is stored as given, reads of one never
 * written give its reset value).  Context: vcpu->mutex held.
 */
int kvm_vcpu_msrs(struct kvm_vcpu *v, struct kvm_msr_entry *e, uint32_t n, bool set);

#endif
