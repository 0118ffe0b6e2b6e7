/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <guestmem/guestmem.h>

#include "bench.h"
#include "src/cli/cli.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_percentile(double *v, int n, double p)
{
	int i;

	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	i = (int)(p / 100.0 * (n - 1) + 0.5);
	return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

double bench_median(double *v, int n)
{
	return bench_percentile(v, n, 50.0);
}

void bench_row(const char *name, double value, double baseline, const char *unit,
	       const char *goal)
{
	printf("  %-46s %12.3f %-5s %12.3f %-5s %8.2fx  %s\n", name, value, unit, baseline, unit,
	       baseline > 0 ? value / baseline : 0.0, goal);
}

int bench_run_vcpu(struct guestmem_vcpu *vcpu, const bool *stop, bench_exit_fn on_exit,
		   void *opaque)
{
	struct kvm_run *run = guestmem_vcpu_run_struct(vcpu);

	for (;;) {
		int r = guestmem_vcpu_run(vcpu);

		if (r == -EINTR && stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE))
			return -ETIMEDOUT; /* pairs with the release of whoever set *stop */
		if (r == -EINTR)
			continue;
		if (r)
			return r;
		if (run->exit_reason == KVM_EXIT_SHUTDOWN)
			return 0;
		r = on_exit(run, opaque);
		if (r)
			return r;
	}
}

int gm_cli_bench(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	int r = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("guestmem bench: ratios against a baseline measured in the same run\n");
	printf("  %-46s %18s %18s %9s  %s\n", "measurement", "value", "baseline", "ratio", "goal");
	if (!only || !strcmp(only, "core"))
		r |= bench_core();
	if (!only || !strcmp(only, "vcpu"))
		r |= bench_vcpu();
	if (!only || !strcmp(only, "eventfd"))
		r |= bench_eventfd();
	if (only && !strcmp(only, "design")) /* forks, seccomp: only when asked */
		r |= bench_design();
	return r ? 1 : 0;
}
