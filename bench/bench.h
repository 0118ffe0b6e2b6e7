/* SPDX-License-Identifier: MIT */
/*
 * `guestmem bench`: every figure is a ratio against a baseline measured in
 * the same run, so that noisy machines still give comparable numbers.
 */
#ifndef GM_BENCH_BENCH_H
#define GM_BENCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct guestmem_vcpu;
struct kvm_run;

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Median of @n samples (sorts in place). */
double bench_median(double *v, int n);
/* Percentile @p (0..100) of @n samples (sorts in place). */
double bench_percentile(double *v, int n, double p);

/* Print one result row: name, measured, baseline, ratio, goal text. */
void bench_row(const char *name, double value, double baseline, const char *unit,
	       const char *goal);

/* What bench_run_vcpu() does with an exit: 0 to re-enter, else a negative errno. */
typedef int (*bench_exit_fn)(struct kvm_run *run, void *opaque);

/*
 * KVM_RUN until the guest shuts down (0), handing every other exit to
 * @on_exit; EINTR re-enters unless *@stop (may be NULL) is set: -ETIMEDOUT.
 */
int bench_run_vcpu(struct guestmem_vcpu *vcpu, const bool *stop, bench_exit_fn on_exit,
		   void *opaque);

/*
 * Progress on stderr ("[12.3s] core/attributes: ..."), so that stdout stays
 * the table and a long step is never silent.
 */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Issue 10's baseline: one round trip between two processes over a pair of
 * eventfds (write, the peer reads and writes back, read), in ns, the mean
 * of @n after a warm-up; -1 on failure.
 */
double bench_eventfd_rt_ns(int n);

/* A remark under the table's rows (also kept in the JSON output). */
void bench_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * One benchmark: prints its rows with bench_row(); returns 0 or a negative
 * errno.  A section is a NULL-terminated table of these, registered in
 * bench_sections[] (bench_common.c): adding a benchmark is one line in a
 * table, and `guestmem bench SECTION[/ITEM]` selects by these names.
 */
struct bench_item {
	const char *name;
	int (*run)(void);
};

/* --fill-seconds: the time allowed for building a large attribute map. */
extern unsigned bench_fill_seconds;
/* --scale-pages: pages the scale/scatter guest touches. */
extern unsigned long bench_scale_pages;

extern const struct bench_item bench_core_items[];    /* bench_core.c */
extern const struct bench_item bench_vcpu_items[];    /* bench_vcpu.c */
extern const struct bench_item bench_eventfd_items[]; /* bench_eventfd.c */
extern const struct bench_item bench_design_items[];  /* bench_design.c */
extern const struct bench_item bench_seccomp_items[]; /* bench_seccomp.c */
extern const struct bench_item bench_scale_items[];   /* bench_scale.c */
extern const struct bench_item bench_x86_items[];     /* bench_x86.c */

#endif
