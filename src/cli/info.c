// SPDX-License-Identifier: MIT
/*
 * guestmem info [--profile P] [--config "K=V ..."] [--backing B]
 *
 * What a VMM would find on this "host": the kernel profile and Kconfig
 * switches in force, the guest_memfd backing and which backings this
 * machine can provide, and KVM_CHECK_EXTENSION at system scope for the
 * capabilities guestmem knows about.  Options show another configuration
 * instead of the environment's.
 */
#include <stdio.h>

#include <guestmem/guestmem.h>

#include "cli.h"
#include "core/backing.h"
#include "core/config.h"
#include "core/kvm_host.h"

struct gm_cap_name {
	long nr;
	const char *name;
};

/* Numbers are the uAPI's (spec §2.2, vCPU spec §2). */
static const struct gm_cap_name gm_caps[] = {
	{ 0, "IRQCHIP" },	     { 1, "HLT" },
	{ 3, "USER_MEMORY" },	     { 4, "SET_TSS_ADDR" },
	{ 9, "NR_VCPUS" },	     { 10, "NR_MEMSLOTS" },
	{ 11, "PIT" },		     { 14, "MP_STATE" },
	{ 15, "COALESCED_MMIO" },    { 16, "SYNC_MMU" },
	{ 22, "USER_NMI" },	     { 25, "IRQ_ROUTING" },
	{ 26, "IRQ_INJECT_STATUS" }, { 32, "IRQFD" },
	{ 33, "PIT2" },		     { 34, "SET_BOOT_CPU_ID" },
	{ 35, "PIT_STATE2" },	     { 36, "IOEVENTFD" },
	{ 37, "SET_IDENTITY_MAP_ADDR" }, { 40, "INTERNAL_ERROR_DATA" },
	{ 41, "VCPU_EVENTS" },	     { 66, "MAX_VCPUS" },
	{ 74, "SYNC_REGS" },	     { 77, "SIGNAL_MSI" },
	{ 81, "READONLY_MEM" },	     { 82, "IRQFD_RESAMPLE" },
	{ 89, "DEVICE_CTRL" },	     { 98, "ENABLE_CAP_VM" },
	{ 100, "IOEVENTFD_NO_LENGTH" }, { 105, "CHECK_EXTENSION_VM" },
	{ 117, "X86_SMM" },	     { 118, "MULTI_ADDRESS_SPACE" },
	{ 121, "SPLIT_IRQCHIP" },    { 122, "IOEVENTFD_ANY_LENGTH" },
	{ 128, "MAX_VCPU_ID" },	     { 136, "IMMEDIATE_EXIT" },
	{ 182, "HALT_POLL" },	     { 201, "EXIT_HYPERCALL" },
	{ 203, "BINARY_STATS_FD" },  { 231, "USER_MEMORY2" },
	{ 232, "MEMORY_FAULT_INFO" }, { 233, "MEMORY_ATTRIBUTES" },
	{ 234, "GUEST_MEMFD" },	     { 235, "VM_TYPES" },
	{ 236, "PRE_FAULT_MEMORY" }, { 244, "GUEST_MEMFD_FLAGS" },
	/* x86 state ioctls */
	{ 23, "SET_GUEST_DEBUG" },   { 31, "MCE" },
	{ 50, "DEBUGREGS" },	     { 55, "XSAVE" },
	{ 56, "XCRS" },		     { 60, "TSC_CONTROL" },
	{ 61, "GET_TSC_KHZ" },	     { 127, "VCPU_ATTRIBUTES" },
	{ 153, "GET_MSR_FEATURES" }, { 164, "EXCEPTION_PAYLOAD" },
	{ 188, "X86_USER_SPACE_MSR" }, { 189, "X86_MSR_FILTER" },
	{ 195, "SET_GUEST_DEBUG2" }, { 208, "XSAVE2" },
	{ 209, "SYS_ATTRIBUTES" },   { 214, "VM_TSC_CONTROL" },
	{ 218, "X86_TRIPLE_FAULT_EVENT" }, { 162, "COALESCED_PIO" },
};

static void gm_info_config(const struct gm_config *cfg)
{
	printf("profile:  %s (profiles:", gm_profile_name(cfg->profile));
	for (int p = GM_PROFILE_LINUX_6_8; p <= GM_PROFILE_LINUX_6_18; p++)
		printf(" %s", gm_profile_name(p));
	printf(")\n");
	printf("kconfig:  KVM_SW_PROTECTED_VM=%c KVM_SMM=%c\n", cfg->sw_protected_vm ? 'y' : 'n',
	       cfg->smm ? 'y' : 'n');
	printf("derived:  KVM_PRIVATE_MEM=%c KVM_GENERIC_MEMORY_ATTRIBUTES=%c "
	       "address spaces=%d\n",
	       gm_cfg_private_mem(cfg) ? 'y' : 'n', gm_cfg_mem_attributes(cfg) ? 'y' : 'n',
	       gm_cfg_max_address_spaces(cfg));
	printf("backing:  %s\n", gm_backing_name(cfg->backing));
	printf("backings on this host:");
	for (int b = GM_BACKING_MEMFD; b <= GM_BACKING_SECRETMEM; b++)
		printf(" %s=%s", gm_backing_name(b),
		       gm_backing_available(b) ? "available" : "unavailable");
	printf("\n");
}

int gm_cli_info(int argc, char **argv)
{
	struct gm_cli_config c = { 0 };
	const struct gm_config *cfg;
	int i = 1, r;

	r = gm_cli_parse_config(argc, argv, &i, &c);
	if (r)
		return r;
	if (c.help) {
		gm_cli_help("info", stdout);
		return 0;
	}
	if (i < argc) {
		fprintf(stderr, "guestmem: info: unexpected argument '%s'\n", argv[i]);
		return 2;
	}
	r = gm_cli_apply_config("info", &c); /* the options are now the environment */
	if (r)
		return r;
	cfg = gm_config_get();
	gm_info_config(cfg);
	printf("KVM_GET_API_VERSION = %d\n", KVM_API_VERSION_VALUE);
	printf("KVM_CHECK_EXTENSION (system scope):\n");
	for (size_t k = 0; k < sizeof(gm_caps) / sizeof(gm_caps[0]); k++)
		printf("  KVM_CAP_%-22s %4ld = %ld\n", gm_caps[k].name, gm_caps[k].nr,
		       kvm_check_extension(cfg, NULL, gm_caps[k].nr));
	return 0;
}
