// SPDX-License-Identifier: MIT
/*
 * test_modparams: under `guestmem exec`, KVM's module parameters
 * (/sys/module/{kvm,kvm_intel,kvm_amd}/parameters/NAME) are guestmem's,
 * whatever the host has (src/uapi/modparams.c): open/read, fopen, stat,
 * access; unknown names and the other vendor's module are ENOENT; writes
 * are refused.  A plain-libc program; the profile in force is
 * GUESTMEM_PROFILE, which `guestmem exec --profile` sets.
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

/* One check of the table below; a failure names it and goes on. */
#define ok(cond, what) EXPECT_MSG(cond, "%s", what)

/* The value as read(2) returns it, or "-errno". */
static const char *param(const char *mod, const char *name)
{
	static char buf[64];
	char path[128];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/sys/module/%s/parameters/%s", mod, name);
	fd = open(path, O_RDONLY);
	if (fd < 0) {
		snprintf(buf, sizeof(buf), "-%d", errno);
		return buf;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	buf[n < 0 ? 0 : n] = '\0';
	close(fd);
	return buf;
}

static int host_is_intel(void)
{
	unsigned int a = 0, b = 0, c = 0, d = 0;

	__get_cpuid(0, &a, &b, &c, &d);
	return b == 0x756e6547; /* "Genu" */
}

TEST(modparams)
{
	const char *profile = getenv("GUESTMEM_PROFILE") ? getenv("GUESTMEM_PROFILE") : "linux-6.8";
	const char *vendor = host_is_intel() ? "kvm_intel" : "kvm_amd";
	const char *other = host_is_intel() ? "kvm_amd" : "kvm_intel";
	char line[64], enoent[16];
	struct stat st;
	FILE *f;
	int fd;

	snprintf(enoent, sizeof(enoent), "-%d", ENOENT);
	ok(!strcmp(param("kvm", "force_emulation_prefix"), "0\n"), "force_emulation_prefix 0");
	ok(!strcmp(param("kvm", "tdp_mmu"), "Y\n"), "tdp_mmu Y");
	ok(!strcmp(param("kvm", "eager_page_split"), "Y\n"), "eager_page_split Y");
	ok(!strcmp(param("kvm", "enable_pmu"), "N\n"), "enable_pmu N (no PMU modelled)");
	ok(!strcmp(param("kvm", "nx_huge_pages"), "N\n"), "nx_huge_pages N");
	ok(!strcmp(param(vendor, host_is_intel() ? "ept" : "npt"), "Y\n"), "ept/npt Y");
	ok(!strcmp(param(vendor, "nested"), host_is_intel() ? "N\n" : "0\n"), "nested off");
	ok(!strcmp(param(other, "nested"), enoent), "other vendor's module absent");
	ok(!strcmp(param("kvm", "no_such_param"), enoent), "unknown name ENOENT");
	ok(!strcmp(param("kvm", "enable_virt_at_load"),
		   strcmp(profile, "linux-6.8") ? "Y\n" : enoent),
	   "enable_virt_at_load only from 6.12");
	/* The same through fopen() (libc's internal open) and odd spellings. */
	f = fopen("/sys/module//kvm/./parameters/tdp_mmu", "re");
	ok(f && fgets(line, sizeof(line), f) && !strcmp(line, "Y\n"), "fopen");
	if (f)
		fclose(f);
	ok(stat("/sys/module/kvm/parameters/tdp_mmu", &st) == 0 && S_ISREG(st.st_mode) &&
		   (st.st_mode & 0777) == 0444 && st.st_size == 4096,
	   "stat: a 0444 sysfs file");
	ok(stat("/sys/module/kvm/parameters/halt_poll_ns", &st) == 0 &&
		   (st.st_mode & 0777) == 0644,
	   "stat: writable params are 0644");
	ok(access("/sys/module/kvm/parameters/tdp_mmu", R_OK) == 0, "access R_OK");
	ok(access("/sys/module/kvm/parameters/tdp_mmu", W_OK) == -1 && errno == EACCES,
	   "access W_OK refused");
	fd = open("/sys/module/kvm/parameters/halt_poll_ns", O_WRONLY);
	ok(fd == -1 && errno == EACCES, "open for writing refused");
	fd = open("/sys/module/kvm/parameters/tdp_mmu", O_RDONLY);
	ok(fd >= 0 && write(fd, "N", 1) == -1 && errno == EBADF, "read-only fd");
	if (fd >= 0)
		close(fd);
}

int main(int argc, char **argv)
{
	return test_main(argc, argv);
}
