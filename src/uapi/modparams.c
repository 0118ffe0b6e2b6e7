// SPDX-License-Identifier: MIT
/*
 * /sys/module/{kvm,kvm_intel,kvm_amd}/parameters/NAME under the drop-in.
 *
 * VMMs and the kernel's selftests read KVM's module parameters before they
 * open /dev/kvm (force_emulation_prefix, tdp_mmu, enable_pmu, ept/npt...).
 * The files must describe the KVM guestmem stands in for, not the host's
 * kvm.ko (which may be missing or a different KVM altogether), so open,
 * stat and access of these paths are answered here, for whatever profile
 * is in force.  Reads return the value as sysfs prints it ("Y\n", "0\n").
 *
 * The values are those of the profile's kernel with default module
 * options, on a host of the same CPU vendor, where the value is a fact
 * about what guestmem models (tdp_mmu=Y: stage-2 is a TDP MMU; enable_pmu
 * =N: no PMU is virtualised, as KVM clears it on a host without a usable
 * PMU; nested=0: no VMX/SVM for guests).  Writes are refused (EACCES):
 * nothing here can be changed at run time.  Only the vendor module of the
 * host CPU exists, as only it would load.  Every other name in these
 * directories is ENOENT, whatever the host's kvm.ko has.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "lib/host_cpuid.h"
#include "core/config.h"
#include "uapi.h"

enum gm_modparam_module { GM_MOD_KVM, GM_MOD_INTEL, GM_MOD_AMD };

struct gm_modparam {
	enum gm_modparam_module mod;
	const char *name;
	const char *value;
	mode_t mode;	 /* the sysfs file's permission bits */
	bool since_6_12; /* absent from the 6.8 profile */
};

static const struct gm_modparam gm_modparams[] = {
	/* kvm.ko: virt/kvm and arch/x86/kvm */
	{ GM_MOD_KVM, "eager_page_split", "Y", 0644, false },
	{ GM_MOD_KVM, "enable_pmu", "N", 0444, false },
	{ GM_MOD_KVM, "enable_virt_at_load", "Y", 0444, true },
	{ GM_MOD_KVM, "enable_vmware_backdoor", "N", 0444, false },
	{ GM_MOD_KVM, "flush_on_reuse", "N", 0644, false },
	{ GM_MOD_KVM, "force_emulation_prefix", "0", 0644, false },
	{ GM_MOD_KVM, "halt_poll_ns", "200000", 0644, false },
	{ GM_MOD_KVM, "halt_poll_ns_grow", "2", 0644, false },
	{ GM_MOD_KVM, "halt_poll_ns_grow_start", "10000", 0644, false },
	{ GM_MOD_KVM, "halt_poll_ns_shrink", "2", 0644, false },
	{ GM_MOD_KVM, "ignore_msrs", "N", 0644, false },
	{ GM_MOD_KVM, "kvmclock_periodic_sync", "Y", 0444, false },
	{ GM_MOD_KVM, "lapic_timer_advance", "Y", 0444, false },
	{ GM_MOD_KVM, "min_timer_period_us", "200", 0644, false },
	{ GM_MOD_KVM, "mitigate_smt_rsb", "N", 0444, false },
	{ GM_MOD_KVM, "nx_huge_pages", "N", 0644, false },
	{ GM_MOD_KVM, "nx_huge_pages_recovery_period_ms", "0", 0644, false },
	{ GM_MOD_KVM, "nx_huge_pages_recovery_ratio", "60", 0644, false },
	{ GM_MOD_KVM, "report_ignored_msrs", "Y", 0644, false },
	{ GM_MOD_KVM, "tdp_mmu", "Y", 0444, false },
	{ GM_MOD_KVM, "tsc_tolerance_ppm", "250", 0644, false },
	{ GM_MOD_KVM, "vector_hashing", "Y", 0444, false },
	/* kvm_intel.ko */
	{ GM_MOD_INTEL, "enable_apicv", "N", 0444, false },
	{ GM_MOD_INTEL, "ept", "Y", 0444, false },
	{ GM_MOD_INTEL, "eptad", "Y", 0444, false },
	{ GM_MOD_INTEL, "nested", "N", 0444, false },
	{ GM_MOD_INTEL, "pml", "N", 0444, false },
	{ GM_MOD_INTEL, "sgx", "N", 0444, false },
	{ GM_MOD_INTEL, "unrestricted_guest", "Y", 0444, false },
	{ GM_MOD_INTEL, "vpid", "Y", 0444, false },
	/* kvm_amd.ko */
	{ GM_MOD_AMD, "avic", "N", 0444, false },
	{ GM_MOD_AMD, "nested", "0", 0444, false },
	{ GM_MOD_AMD, "npt", "Y", 0444, false },
	{ GM_MOD_AMD, "sev", "N", 0444, false },
	{ GM_MOD_AMD, "sev_es", "N", 0444, false },
	{ GM_MOD_AMD, "sev_snp", "N", 0444, false },
	{ GM_MOD_AMD, "vnmi", "N", 0444, false },
};

static const char *const gm_modparam_modules[] = { "kvm", "kvm_intel", "kvm_amd" };

/* The vendor module that would load on the CPU guestmem presents (-1: neither). */
static int gm_host_vendor_module(void)
{
	switch (gm_cpu_vendor()) {
	case GM_VENDOR_INTEL:
		return GM_MOD_INTEL;
	case GM_VENDOR_AMD:
		return GM_MOD_AMD;
	default:
		return -1;
	}
}

/*
 * Split absolute @path into at most @max components ("." and repeated '/'
 * skipped, as the kernel's walk does); returns the count, or -1 if there
 * are more, ".." or a relative path.  @len receives each length.
 */
static int gm_path_components(const char *path, const char **comp, size_t *len, int max)
{
	int n = 0;

	if (!path || path[0] != '/')
		return -1;
	while (*path) {
		size_t l;

		while (*path == '/')
			path++;
		l = strcspn(path, "/");
		if (l == 0)
			break;
		if (l == 1 && path[0] == '.') {
			path++;
			continue;
		}
		if (n == max || (l == 2 && !strncmp(path, "..", 2)))
			return -1;
		comp[n] = path;
		len[n++] = l;
		path += l;
	}
	return n;
}

static bool gm_comp_is(const char *c, size_t len, const char *want)
{
	return len == strlen(want) && !strncmp(c, want, len);
}

/*
 * Whether absolute @path is in one of KVM's parameter directories (all of
 * them are ours: a host kvm.ko must not show through); *out is the
 * parameter in the active profile, or NULL for a name it does not have.
 */
static bool gm_modparam_find(const char *path, const struct gm_modparam **out)
{
	const char *c[5];
	size_t len[5];
	int mod = -1;

	*out = NULL;
	/* Cheap filter first: open() of anything else pays one strncmp. */
	if (!path || strncmp(path, "/sys/", 5) || !strstr(path, "kvm"))
		return false;
	if (gm_path_components(path, c, len, 5) != 5 || !gm_comp_is(c[0], len[0], "sys") ||
	    !gm_comp_is(c[1], len[1], "module") || !gm_comp_is(c[3], len[3], "parameters"))
		return false;
	for (int m = 0; m < 3; m++)
		if (gm_comp_is(c[2], len[2], gm_modparam_modules[m]))
			mod = m;
	if (mod < 0)
		return false;
	if (mod != GM_MOD_KVM && mod != gm_host_vendor_module())
		return true; /* the other vendor's module is not loaded */
	for (size_t i = 0; i < ARRAY_SIZE(gm_modparams); i++) {
		const struct gm_modparam *p = &gm_modparams[i];

		if ((int)p->mod != mod || !gm_comp_is(c[4], len[4], p->name))
			continue;
		if (!(p->since_6_12 && gm_config_get()->profile == GM_PROFILE_LINUX_6_8))
			*out = p;
		break;
	}
	return true;
}

bool gm_path_is_modparam(const char *path)
{
	const struct gm_modparam *p;

	return gm_modparam_find(path, &p);
}

/*
 * A read-only fd whose contents are the parameter as sysfs prints it: a
 * memfd filled through a raw write, reopened O_RDONLY through /proc so
 * that write() on it fails with EBADF as on a read-only sysfs fd.
 */
static int gm_modparam_fd(const struct gm_modparam *p, int flags)
{
	char buf[64], proc[40];
	int n = snprintf(buf, sizeof(buf), "%s\n", p->value);
	int rw, ro;

	rw = (int)syscall(SYS_memfd_create, p->name, MFD_CLOEXEC);
	if (rw < 0)
		return -errno;
	if (syscall(SYS_write, rw, buf, (size_t)n) != n) {
		syscall(SYS_close, rw);
		return -EIO;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", rw);
	ro = (int)syscall(SYS_openat, AT_FDCWD, proc, O_RDONLY | (flags & (O_CLOEXEC | O_NONBLOCK)));
	ro = ro < 0 ? -errno : ro;
	syscall(SYS_close, rw);
	return ro;
}

int gm_modparam_open(const char *path, int flags)
{
	const struct gm_modparam *p;

	if (!gm_modparam_find(path, &p) || !p)
		return -ENOENT;
	if (flags & O_DIRECTORY)
		return -ENOTDIR;
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_CREAT)))
		return (flags & O_CREAT) && (flags & O_EXCL) ? -EEXIST : -EACCES;
	return gm_modparam_fd(p, flags);
}

int gm_modparam_stat(const char *path, struct stat *st)
{
	const struct gm_modparam *p;
	if (!gm_modparam_find(path, &p) || !p)
		return -ENOENT;
	/* A sysfs attribute: regular, one page, on the sysfs super block. */
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | p->mode;
	st->st_size = 4096;
	st->st_dev = makedev(0, 22);
	st->st_ino = (ino_t)(100000 + (p - gm_modparams));
	st->st_nlink = 1;
	st->st_blksize = 4096;
	st->st_atim.tv_sec = st->st_mtim.tv_sec = st->st_ctim.tv_sec = gm_synthetic_file_time();
	return 0;
}

int gm_modparam_access(const char *path, int mode)
{
	const struct gm_modparam *p;

	if (!gm_modparam_find(path, &p) || !p)
		return -ENOENT;
	/* Not executable; not writable through guestmem (see the top). */
	return (mode & (X_OK | W_OK)) ? -EACCES : 0;
}
