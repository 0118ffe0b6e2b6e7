/* SPDX-License-Identifier: MIT */
/*
 * Kernel profile and Kconfig-like switches.  A VM copies the configuration
 * in force when it is created; the system scope (/dev/kvm) reads the current
 * one.  Sources: GUESTMEM_PROFILE, GUESTMEM_CONFIG, GUESTMEM_BACKING in the
 * environment, or guestmem_config_set() from the C API.
 */
#ifndef GM_CORE_CONFIG_H
#define GM_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum gm_profile {
	/* In release order: "at least 6.12" is profile >= GM_PROFILE_LINUX_6_12. */
	GM_PROFILE_LINUX_6_8 = 0,
	GM_PROFILE_LINUX_6_12,
	GM_PROFILE_LINUX_6_18,
};

enum gm_backing_kind {
	GM_BACKING_MEMFD = 0, /* shmem via memfd_create: sparse, punch frees */
	GM_BACKING_SECRETMEM, /* memfd_secret: out of the kernel direct map */
};

struct gm_config {
	enum gm_profile profile;
	enum gm_backing_kind backing;
	/*
	 * CONFIG_KVM_SW_PROTECTED_VM: selects KVM_GENERIC_PRIVATE_MEM, i.e.
	 * memory attributes.  In the 6.8 and 6.12 profiles it also gates
	 * guest_memfd (CONFIG_KVM_PRIVATE_MEM; 6.12's KVM_AMD_SEV would select
	 * it too, but the profiles model a host without SEV); in 6.18
	 * guest_memfd is always built.
	 */
	bool sw_protected_vm;
	bool smm; /* CONFIG_KVM_SMM: two address spaces for default VMs */
};

/* The configuration in force now (environment on first use). */
const struct gm_config *gm_config_get(void);

/*
 * Parse and install a configuration.  NULL arguments keep the current
 * value.  Returns 0 or -EINVAL (nothing changed) for an unknown profile,
 * switch or backing.
 */
int gm_config_set(const char *profile, const char *kconfig, const char *backing);

/* The settings a user can give, for gm_config_check(). */
enum gm_setting {
	GM_SETTING_PROFILE,	 /* GUESTMEM_PROFILE, --profile */
	GM_SETTING_CONFIG,	 /* GUESTMEM_CONFIG, --config */
	GM_SETTING_BACKING,	 /* GUESTMEM_BACKING, --backing */
	GM_SETTING_NO_PRECHECK,	 /* GUESTMEM_NO_PRECHECK */
	GM_SETTING_VCPU_SPIN_US, /* GUESTMEM_VCPU_SPIN_US */
	GM_SETTING_CPU_VENDOR,	 /* GUESTMEM_CPU_VENDOR (preload/cpuid_fault.c) */
	GM_SETTING_SECCOMP,	 /* GUESTMEM_SECCOMP (the preload's filter) */
};

/* GUESTMEM_SECCOMP's modes (src/preload/seccomp.c). */
enum { GM_SECCOMP_OFF, GM_SECCOMP_DEFAULT, GM_SECCOMP_FILES };
/* The mode @value names (NULL or empty: the default), or -EINVAL. */
int gm_config_seccomp_mode(const char *value);

/*
 * Check one value of @which.  Returns 0, or -EINVAL with a one-line reason
 * in @why that lists the accepted values (from the same tables the parser
 * uses).  An empty value means "the default" and is accepted.
 */
int gm_config_check(enum gm_setting which, const char *value, char *why, size_t why_len);

/* The accepted values of @which, as text ("linux-6.8, linux-6.18"). */
void gm_config_accepted(enum gm_setting which, char *buf, size_t len);

/*
 * Check every GUESTMEM_* setting in the environment (not GUESTMEM_GUEST,
 * which `guestmem exec` checks as a file).  Returns 0, or -EINVAL with
 * 'VAR="value": reason; accepted: ...' in @msg.
 */
int gm_config_env_check(char *msg, size_t len);

/*
 * Whether the environment held a bad value when the configuration was
 * first read (it was reported on stderr then; the other values are in
 * force).  The drop-in refuses /dev/kvm when it did.
 */
bool gm_config_env_error(void);

const char *gm_profile_name(enum gm_profile p);
const char *gm_backing_name(enum gm_backing_kind b);

/* Derived Kconfig symbols. */
static inline bool gm_cfg_private_mem(const struct gm_config *c)
{
	/* 6.8/6.12: KVM_PRIVATE_MEM only via SW_PROTECTED_VM; 6.18: KVM_GUEST_MEMFD=y */
	return c->profile == GM_PROFILE_LINUX_6_18 || c->sw_protected_vm;
}

static inline bool gm_cfg_mem_attributes(const struct gm_config *c)
{
	return c->sw_protected_vm;
}

static inline int gm_cfg_max_address_spaces(const struct gm_config *c)
{
	return c->smm ? 2 : 1;
}

#endif
