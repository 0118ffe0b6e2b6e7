/* SPDX-License-Identifier: MIT */
/*
 * VM objects: creation, references, destruction and the global VM list.
 */
#include <guestmem/kvm.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm_host.h"
#include "gmem.h"
#include "lib/host_cpuid.h"
#include "lib/rcu.h"
#include "kvm_arch.h"
#include "lib/lockdep.h"
#include "gmemfd.h"

/* The global VM list; a leaf lock (nothing is taken inside it). */
static pthread_mutex_t gm_vm_list_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kvm *gm_vm_list;
static long gm_nr_vms;

/* Highest gfn the guest may use, from the host's MAXPHYADDR like x86 KVM. */
static uint64_t host_max_gfn(void)
{
	unsigned int bits = 36;
	uint32_t r[4];

	if (gm_host_cpuid_max(0x80000000) >= 0x80000008) {
		gm_host_cpuid(0x80000008, 0, r);
		bits = r[0] & 0xff;
	}
	if (bits < 36 || bits > 52)
		bits = 36;
	return (1ULL << (bits - GM_PAGE_SHIFT)) - 1;
}

static bool kvm_is_vm_type_supported(const struct gm_config *cfg, unsigned long type)
{
	return type == 0 || (type == 1 && cfg->sw_protected_vm);
}

static int kvm_init_memslots(struct kvm *kvm)
{
	for (int as = 0; as < kvm->nr_as; as++) {
		kvm->slot_by_id[as] = calloc(KVM_MEM_SLOTS_NUM, sizeof(*kvm->slot_by_id[as]));
		if (!kvm->slot_by_id[as])
			return -ENOMEM;
		/* Address space i uses generations i, i + nr_as, ... (spec §4.10). */
		kvm->__memslots[as][0].generation = (uint64_t)as;
		kvm->__memslots[as][1].generation = (uint64_t)as;
		rangemap_init(&kvm->__memslots[as][0].by_gfn);
		rangemap_init(&kvm->__memslots[as][1].by_gfn);
		rangemap_init(&kvm->__memslots[as][0].by_hva);
		rangemap_init(&kvm->__memslots[as][1].by_hva);
		kvm->memslots[as] = &kvm->__memslots[as][0];
	}
	return 0;
}

static int kvm_free_one_memslot(struct kvm_memory_slot *slot, void *ctx)
{
	(void)ctx;
	/*
	 * Every guest_memfd pins its VM and forgets its slots at release:
	 * none can still point at this slot.
	 */
	gm_assert(!READ_ONCE(slot->gmem.file));
	kvm_shram_slot_free(slot);
	kvm_arch_free_memslot_metadata(slot);
	free(slot->dirty_bitmap);
	free(slot);
	return 0;
}

static void kvm_free_memslots(struct kvm *kvm)
{
	for (int as = 0; as < kvm->nr_as; as++) {
		struct kvm_memslots *slots = kvm->memslots[as];

		/* Both sets hold the same slots: free them once. */
		if (slots)
			kvm_memslots_for_each(slots, kvm_free_one_memslot, NULL);
		for (int i = 0; i < 2; i++) {
			kvm_memslots_hva_fini(&kvm->__memslots[as][i]);
			rangemap_fini(&kvm->__memslots[as][i].by_gfn);
		}
		free(kvm->slot_by_id[as]);
	}
}

static void kvm_vm_list_add(struct kvm *kvm)
{
	gm_mutex_lock(&gm_vm_list_lock, GM_LOCK_VM_LIST);
	kvm->vm_list_next = gm_vm_list;
	gm_vm_list = kvm;
	gm_nr_vms++;
	gm_mutex_unlock(&gm_vm_list_lock);
}

static void kvm_vm_list_del(struct kvm *kvm)
{
	gm_mutex_lock(&gm_vm_list_lock, GM_LOCK_VM_LIST);
	for (struct kvm **p = &gm_vm_list; *p; p = &(*p)->vm_list_next) {
		if (*p == kvm) {
			*p = kvm->vm_list_next;
			gm_nr_vms--;
			break;
		}
	}
	gm_mutex_unlock(&gm_vm_list_lock);
}

static void kvm_destroy_vm(struct kvm *kvm)
{
	kvm_vm_list_del(kvm);
	kvm_arch_eventfds_destroy(kvm);
	kvm_arch_destroy_vcpus(kvm);
	kvm_arch_destroy_vm(kvm); /* src/vcpu: the MSR filter, coalesced zones */
	kvm_free_memslots(kvm);
	kvm_arch_mmu_destroy(kvm);
	/* Readers of the attribute map are gone with the vCPUs. */
	gm_synchronize_rcu();
	rangemap_fini(&kvm->mem_attr_array);
	pthread_cond_destroy(&kvm->mn_cond);
	pthread_mutex_destroy(&kvm->mn_lock);
	pthread_rwlock_destroy(&kvm->mmu_lock);
	pthread_mutex_destroy(&kvm->lock);
	pthread_mutex_destroy(&kvm->slots_lock);
	free(kvm->vcpus);
	free(kvm);
}

static void kvm_init_locks(struct kvm *kvm)
{
	gm_check_pthread(pthread_mutex_init(&kvm->slots_lock, NULL));
	gm_check_pthread(pthread_mutex_init(&kvm->lock, NULL));
	gm_check_pthread(pthread_rwlock_init(&kvm->mmu_lock, NULL));
	gm_check_pthread(pthread_mutex_init(&kvm->mn_lock, NULL));
	gm_check_pthread(pthread_cond_init(&kvm->mn_cond, NULL));
}

int kvm_create_vm(unsigned long type, struct kvm **out)
{
	const struct gm_config *cfg = gm_config_get();
	struct kvm *kvm;

	if (!kvm_is_vm_type_supported(cfg, type))
		return -EINVAL;
	kvm = calloc(1, sizeof(*kvm));
	if (!kvm)
		return -ENOMEM;
	kvm->users_count = 1;
	kvm->vm_type = type;
	kvm->creator_pid = getpid();
	kvm->cfg = *cfg;
	kvm_caps_init_vm(kvm);
	/* SMM is not supported for guests with private memory. */
	kvm->nr_as = type ? 1 : gm_cfg_max_address_spaces(cfg);
	kvm->max_gfn = host_max_gfn();
	kvm->mmu_invalidate_range_start = INVALID_GFN;
	kvm->mmu_invalidate_range_end = INVALID_GFN;
	rangemap_init(&kvm->mem_attr_array);
	kvm_init_locks(kvm);
	if (kvm_init_memslots(kvm) || kvm_arch_mmu_create(kvm)) {
		kvm_destroy_vm(kvm);
		return -ENOMEM;
	}
	kvm_vm_list_add(kvm);
	*out = kvm;
	return 0;
}

void kvm_get_kvm(struct kvm *kvm)
{
	__atomic_fetch_add(&kvm->users_count, 1, __ATOMIC_RELAXED);
}

void kvm_put_kvm(struct kvm *kvm)
{
	/* acq_rel: every use before a put happens before the destruction. */
	if (__atomic_sub_fetch(&kvm->users_count, 1, __ATOMIC_ACQ_REL) == 0)
		kvm_destroy_vm(kvm);
}

void kvm_vm_dead(struct kvm *kvm)
{
	WRITE_ONCE(kvm->dead, true);
}

int kvm_vm_ioctl_precheck(struct kvm *kvm)
{
	if (kvm->creator_pid != getpid() || READ_ONCE(kvm->dead))
		return -EIO;
	return 0;
}

/* A reference on @k unless it is already being destroyed (count 0). */
static bool kvm_get_kvm_safe(struct kvm *k)
{
	long c = __atomic_load_n(&k->users_count, __ATOMIC_RELAXED);

	while (c > 0 && !__atomic_compare_exchange_n(&k->users_count, &c, c + 1, false,
						     __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		;
	return c > 0;
}

/*
 * Walk the list without allocating (an mmu-notifier walk must not be lost
 * to ENOMEM): hold a reference on the current VM while @fn runs outside
 * the lock; a referenced VM stays on the list, so its next pointer, read
 * again under the lock, is still the right successor.
 */
void kvm_for_each_vm(void (*fn)(struct kvm *kvm, void *ctx), void *ctx)
{
	struct kvm *k, *prev = NULL;

	gm_mutex_lock(&gm_vm_list_lock, GM_LOCK_VM_LIST);
	for (k = gm_vm_list; k; k = k->vm_list_next) {
		if (!kvm_get_kvm_safe(k))
			continue;
		gm_mutex_unlock(&gm_vm_list_lock);
		if (prev)
			kvm_put_kvm(prev);
		fn(k, ctx);
		prev = k;
		gm_mutex_lock(&gm_vm_list_lock, GM_LOCK_VM_LIST);
	}
	gm_mutex_unlock(&gm_vm_list_lock);
	if (prev)
		kvm_put_kvm(prev);
}

long kvm_nr_live_vms(void)
{
	long n;

	gm_mutex_lock(&gm_vm_list_lock, GM_LOCK_VM_LIST);
	n = gm_nr_vms;
	gm_mutex_unlock(&gm_vm_list_lock);
	return n;
}
