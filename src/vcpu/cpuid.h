/* SPDX-License-Identifier: MIT */
/*
 * x86 tables that come with vCPUs: the supported CPUID (cpuid.c), the MSR
 * index list and KVM_GET_MSRS / KVM_SET_MSRS (msr.c).
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
 * KVM_GET_MSRS / KVM_SET_MSRS on @n entries (msr.c): returns how many were
 * processed; the first MSR KVM would refuse (unknown, or a bad value) stops
 * the array.  Context: vcpu->mutex held.
 */
int kvm_vcpu_msrs(struct kvm_vcpu *v, struct kvm_msr_entry *e, uint32_t n, bool set);

#endif
