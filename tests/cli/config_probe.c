// SPDX-License-Identifier: MIT
/*
 * config_probe: prints the configuration the library built from the
 * environment, then checks that guestmem_config_set() refuses bad values
 * with -EINVAL and leaves the configuration as it was.  Driven by
 * test_env.sh; "open" mode instead opens /dev/kvm through plain libc (for
 * a run under the preload) and prints the errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <guestmem/guestmem.h>

#include "core/config.h"

static void print_config(const char *when)
{
	const struct gm_config *c = gm_config_get();

	printf("%s: profile=%s sw_protected_vm=%c smm=%c backing=%s\n", when,
	       gm_profile_name(c->profile), c->sw_protected_vm ? 'y' : 'n', c->smm ? 'y' : 'n',
	       gm_backing_name(c->backing));
}

int main(void)
{
	static const char *const bad[][3] = {
		{ "linux-9.9", NULL, NULL },
		{ NULL, "KVM_SMM=x", NULL },
		{ NULL, "KVM_NOPE=y", NULL },
		{ NULL, NULL, "shm" },
		{ "linux-6.18", "KVM_SMM=n", "nope" }, /* good values with a bad one */
	};
	int failures = 0;

	print_config("env");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct gm_config before = *gm_config_get();
		int r = guestmem_config_set(bad[i][0], bad[i][1], bad[i][2]);

		if (r != -EINVAL || memcmp(&before, gm_config_get(), sizeof(before))) {
			printf("config_set case %zu: %d, changed=%d\n", i, r,
			       !!memcmp(&before, gm_config_get(), sizeof(before)));
			failures++;
		}
	}
	print_config("after bad sets");
	printf("config_set failures: %d\n", failures);
	return failures ? 1 : 0;
}
