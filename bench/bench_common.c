/* SPDX-License-Identifier: MIT */
/*
 * The `guestmem bench` runner: the section table, argument parsing,
 * progress on stderr, the text table on stdout and the JSON record
 * (--json) with the machine, kernel and date the figures come from.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <guestmem/guestmem.h>

#include "bench.h"
#include "core/config.h"
#include "src/cli/cli.h"

/*
 * The sections, in the order they run.  @cost is what each took in the
 * runs recorded in bench/results/ (2-core VM), for --help.
 */
struct bench_section {
	const char *name;
	const char *what;
	const char *cost;
	const struct bench_item *items;
	bool on_request; /* forks, installs seccomp filters: only when named */
};

static const struct bench_section bench_sections[] = {
	{ "core", "attributes (empty map, up to 1,000,000 runs), memslot lookup, notifier, fallocate, object life",
	  "10 s, 1.1 GiB", bench_core_items },
	{ "vcpu", "first touch, hits, conversions, invalidation storm", "32 s, 0.1 GiB",
	  bench_vcpu_items },
	{ "eventfd", "ioeventfd doorbells, irqfd latency", "2 s, <0.1 GiB", bench_eventfd_items },
	{ "x86", "machine-code guests: compute vs native, exits, first touch, MAP_GPA_RANGE",
	  "30 s, 0.1 GiB", bench_x86_items },
	{ "seccomp", "what the preload's seccomp filter costs the VMM (on request)",
	  "30 s, <0.1 GiB", bench_seccomp_items, true },
	{ "design", "host primitives of the guest-execution/isolation design (on request)",
	  "3 min, <0.1 GiB", bench_design_items, true },
	{ "scale", "1,000,000 scattered private pages of a 2 TiB guest_memfd, teardown "
		   "(on request)", "8-90 s, 7.7 GiB", bench_scale_items, true },
};
#define BENCH_NR_SECTIONS (sizeof(bench_sections) / sizeof(bench_sections[0]))

/* ---- what a run records (for --json) ------------------------------------- */

struct bench_rec {
	const char *section, *item;
	char *name, *unit, *goal, *note; /* a row, or a note when @note is set */
	double value, baseline;
};

static struct {
	const char *section, *item; /* being run */
	struct bench_rec *recs;
	size_t nr, cap;
	uint64_t t0;
} bench_run;

static void bench_record(const struct bench_rec *r)
{
	if (bench_run.nr == bench_run.cap) {
		size_t cap = bench_run.cap ? 2 * bench_run.cap : 64;
		struct bench_rec *n = realloc(bench_run.recs, cap * sizeof(*n));

		if (!n)
			return; /* the table on stdout still has it */
		bench_run.recs = n;
		bench_run.cap = cap;
	}
	bench_run.recs[bench_run.nr++] = *r;
}

static char *bench_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

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
	struct bench_rec r = { bench_run.section, bench_run.item, bench_strdup(name),
			       bench_strdup(unit), bench_strdup(goal), NULL, value, baseline };

	printf("  %-46s %12.3f %-5s %12.3f %-5s %8.2fx  %s\n", name, value, unit, baseline, unit,
	       baseline > 0 ? value / baseline : 0.0, goal);
	bench_record(&r);
}

void bench_note(const char *fmt, ...)
{
	struct bench_rec r = { bench_run.section, bench_run.item, NULL, NULL, NULL, NULL, 0, 0 };
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&r.note, fmt, ap) < 0)
		r.note = NULL;
	va_end(ap);
	if (!r.note)
		return;
	printf("  note: %s\n", r.note);
	bench_record(&r);
}

void bench_progress(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "[%6.1fs] %s/%s: ", (double)(bench_now_ns() - bench_run.t0) / 1e9,
		bench_run.section ? bench_run.section : "-", bench_run.item ? bench_run.item : "-");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
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

/* ---- the machine the figures come from ------------------------------------- */

struct bench_machine {
	char cpu[128];
	long cores;
	unsigned long long mem_mib;
	char kernel[128];
	char date[32]; /* ISO 8601, UTC */
	double load[3]; /* load averages at the start: how quiet the machine was */
};

/* The value of the first "@key<spaces>: value" line of a /proc file. */
static bool proc_field(const char *file, const char *key, char *out, size_t len)
{
	size_t klen = strlen(key);
	char line[512];
	bool found = false;
	FILE *f = fopen(file, "r");

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		char *v;

		if (strncmp(line, key, klen) || !(v = strchr(line + klen, ':')))
			continue;
		v += strspn(v + 1, " \t") + 1;
		v[strcspn(v, "\n")] = '\0';
		snprintf(out, len, "%s", v);
		found = true;
	}
	fclose(f);
	return found;
}

static void bench_machine_get(struct bench_machine *m)
{
	struct utsname u;
	char mem[64] = "";
	time_t now = time(NULL);

	if (!proc_field("/proc/cpuinfo", "model name", m->cpu, sizeof(m->cpu)))
		snprintf(m->cpu, sizeof(m->cpu), "unknown");
	m->cores = sysconf(_SC_NPROCESSORS_ONLN);
	m->mem_mib = proc_field("/proc/meminfo", "MemTotal", mem, sizeof(mem))
			     ? strtoull(mem, NULL, 10) / 1024 : 0;
	snprintf(m->kernel, sizeof(m->kernel), "%s", uname(&u) ? "unknown" : u.release);
	strftime(m->date, sizeof(m->date), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	if (getloadavg(m->load, 3) != 3)
		m->load[0] = m->load[1] = m->load[2] = -1;
}

/* ---- JSON ------------------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (v != v || v > 1e300 || v < -1e300)
		fprintf(f, "null"); /* JSON has no NaN or infinity */
	else
		fprintf(f, "%.6g", v);
}

static void json_rec(FILE *f, const struct bench_rec *r)
{
	fprintf(f, "    {\"section\": ");
	json_str(f, r->section);
	fprintf(f, ", \"item\": ");
	json_str(f, r->item);
	if (r->note) {
		fprintf(f, ", \"note\": ");
		json_str(f, r->note);
		fprintf(f, "}");
		return;
	}
	fprintf(f, ", \"name\": ");
	json_str(f, r->name);
	fprintf(f, ", \"value\": ");
	json_num(f, r->value);
	fprintf(f, ", \"baseline\": ");
	json_num(f, r->baseline);
	fprintf(f, ", \"unit\": ");
	json_str(f, r->unit);
	fprintf(f, ", \"ratio\": ");
	json_num(f, r->baseline > 0 ? r->value / r->baseline : 0.0);
	fprintf(f, ", \"goal\": ");
	json_str(f, r->goal);
	fprintf(f, "}");
}

static int bench_write_json(FILE *f, const struct bench_machine *m, double secs, long rss_mib,
			    int failures)
{
	const struct gm_config *cfg = gm_config_get();

	fprintf(f, "{\n  \"tool\": \"guestmem bench\",\n  \"version\": ");
	json_str(f, GM_VERSION);
	fprintf(f, ",\n  \"date\": ");
	json_str(f, m->date);
	fprintf(f, ",\n  \"machine\": {\"cpu\": ");
	json_str(f, m->cpu);
	fprintf(f, ", \"cores\": %ld, \"memory_mib\": %llu, \"loadavg\": [%.2f, %.2f, %.2f]},\n"
		"  \"kernel\": ", m->cores, m->mem_mib, m->load[0], m->load[1], m->load[2]);
	json_str(f, m->kernel);
	fprintf(f, ",\n  \"profile\": ");
	json_str(f, gm_profile_name(cfg->profile));
	fprintf(f, ",\n  \"backing\": ");
	json_str(f, gm_backing_name(cfg->backing));
	fprintf(f, ",\n  \"duration_s\": %.1f,\n  \"peak_rss_mib\": %ld,\n  \"failures\": %d,\n",
		secs, rss_mib, failures);
	fprintf(f, "  \"results\": [\n");
	for (size_t i = 0; i < bench_run.nr; i++) {
		json_rec(f, &bench_run.recs[i]);
		fprintf(f, "%s\n", i + 1 < bench_run.nr ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	return fflush(f) || ferror(f) ? -EIO : 0;
}

/* ---- arguments ------------------------------------------------------------- */

unsigned bench_fill_seconds = 120;

static void bench_usage(FILE *out)
{
	fprintf(out,
		"usage: guestmem bench [--json FILE] [--fill-seconds N] [--scale-pages N] [--list]\n"
		"                      [SECTION[/ITEM]...]\n"
		"\n"
		"Runs the benchmarks (all sections, or those named) and prints each figure\n"
		"next to a baseline measured in the same run, with their ratio.  Progress\n"
		"goes to stderr, the table to stdout.\n"
		"\n"
		"  --json FILE        also write the figures, the machine (CPU model, cores),\n"
		"                     the kernel (uname -r) and the date to FILE\n"
		"  --fill-seconds N   time allowed for building the 1,000,000-run attribute\n"
		"                     map (default %u); rows for sizes not reached say so\n"
		"  --scale-pages N    pages the scale section's guest touches, one per 2 MiB\n"
		"                     region (default %lu: about 8.2 KB of memory and\n"
		"                     6-30 us each on the 2-core VM, 27-85 with secretmem)\n"
		"  --list             list the sections and their benchmarks\n"
		"  -h, --help         this text\n"
		"\n"
		"sections (duration, peak memory):\n",
		bench_fill_seconds, bench_scale_pages);
	for (size_t s = 0; s < BENCH_NR_SECTIONS; s++)
		fprintf(out, "  %-8s %-18s %s\n", bench_sections[s].name, bench_sections[s].cost,
			bench_sections[s].what);
	fprintf(out, "\nThe recorded full runs (bench/results/2026-12-06-run*.txt: 2-core VM, load\n"
		     "average 0.6-1.5) took 41-43 s each, with a peak of 1.1 GiB resident (the\n"
		     "fallocate row).  The attribute rows take --fill-seconds at most.\n"
		     "Sections marked \"on request\" run only when named (guestmem bench scale).\n"
		     "The environment (GUESTMEM_PROFILE, GUESTMEM_CONFIG, GUESTMEM_BACKING)\n"
		     "applies as everywhere.\n");
}

static void bench_list(void)
{
	for (size_t s = 0; s < BENCH_NR_SECTIONS; s++) {
		printf("%s\n", bench_sections[s].name);
		for (const struct bench_item *it = bench_sections[s].items; it->name; it++)
			printf("  %s/%s\n", bench_sections[s].name, it->name);
	}
}

/* Whether @sel ("SECTION" or "SECTION/ITEM") names @s (and @it, if given). */
static bool bench_sel_matches(const char *sel, const struct bench_section *s,
			      const struct bench_item *it)
{
	size_t n = strlen(s->name);

	if (strncmp(sel, s->name, n) || (sel[n] && sel[n] != '/'))
		return false;
	return !sel[n] || !it || !strcmp(sel + n + 1, it->name);
}

static bool bench_sel_valid(const char *sel)
{
	for (size_t s = 0; s < BENCH_NR_SECTIONS; s++) {
		const struct bench_section *sec = &bench_sections[s];

		if (!bench_sel_matches(sel, sec, NULL))
			continue;
		if (!strchr(sel, '/'))
			return true;
		for (const struct bench_item *it = sec->items; it->name; it++)
			if (bench_sel_matches(sel, sec, it))
				return true;
	}
	return false;
}

/* Whether item @it of @s runs, given the @nsel selectors (none: all). */
static bool bench_selected(char **sel, int nsel, const struct bench_section *s,
			   const struct bench_item *it)
{
	for (int i = 0; i < nsel; i++)
		if (bench_sel_matches(sel[i], s, it))
			return true;
	return nsel == 0 && !s->on_request;
}

struct bench_args {
	const char *json;
	char **sel;
	int nsel;
};

/* Returns -1 to go on, else the exit status (after --help, --list or an error). */
static int bench_parse(int argc, char **argv, struct bench_args *a)
{
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];

		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			bench_usage(stdout);
			return 0;
		} else if (!strcmp(arg, "--list")) {
			bench_list();
			return 0;
		} else if (!strcmp(arg, "--json") || !strcmp(arg, "--fill-seconds") ||
			   !strcmp(arg, "--scale-pages")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "guestmem: bench: %s needs a value\n", arg);
				return 2;
			}
			if (!strcmp(arg, "--json")) {
				a->json = argv[++i];
			} else if (!strcmp(arg, "--scale-pages")) {
				char *end;
				unsigned long v = strtoul(argv[++i], &end, 10);

				if (!*argv[i] || *end || v == 0 || v > (1UL << 24)) {
					fprintf(stderr, "guestmem: bench: --scale-pages: '%s' is not "
							"a number of pages (1-16777216)\n", argv[i]);
					return 2;
				}
				bench_scale_pages = v;
			} else {
				char *end;
				unsigned long v = strtoul(argv[++i], &end, 10);

				if (!*argv[i] || *end || v == 0 || v > 86400) {
					fprintf(stderr, "guestmem: bench: --fill-seconds: '%s' is not "
							"a number of seconds (1-86400)\n", argv[i]);
					return 2;
				}
				bench_fill_seconds = (unsigned)v;
			}
		} else if (!strncmp(arg, "--json=", 7)) {
			a->json = arg + 7;
		} else if (arg[0] == '-') {
			fprintf(stderr, "guestmem: bench: unknown option '%s' (see guestmem bench --help)\n",
				arg);
			return 2;
		} else if (!bench_sel_valid(arg)) {
			fprintf(stderr, "guestmem: bench: unknown section '%s' (sections:", arg);
			for (size_t s = 0; s < BENCH_NR_SECTIONS; s++)
				fprintf(stderr, " %s", bench_sections[s].name);
			fprintf(stderr, "; guestmem bench --list shows the items)\n");
			return 2;
		} else {
			a->sel[a->nsel++] = argv[i];
		}
	}
	if (a->json && !*a->json) {
		fprintf(stderr, "guestmem: bench: --json needs a file name\n");
		return 2;
	}
	return -1;
}

/* ---- the run ----------------------------------------------------------------- */

static int bench_run_section(const struct bench_section *s, char **sel, int nsel)
{
	int failures = 0;

	printf("%s\n", s->name);
	bench_run.section = s->name;
	for (const struct bench_item *it = s->items; it->name; it++) {
		int r;

		if (!bench_selected(sel, nsel, s, it))
			continue;
		bench_run.item = it->name;
		bench_progress("start");
		r = it->run();
		if (r) {
			printf("  %s/%s failed: %s\n", s->name, it->name, strerror(-r));
			bench_note("%s/%s failed: %s", s->name, it->name, strerror(-r));
			failures++;
		}
	}
	bench_run.item = NULL;
	return failures;
}

static void bench_free_recs(void)
{
	for (size_t i = 0; i < bench_run.nr; i++) {
		free(bench_run.recs[i].name);
		free(bench_run.recs[i].unit);
		free(bench_run.recs[i].goal);
		free(bench_run.recs[i].note);
	}
	free(bench_run.recs);
	memset(&bench_run, 0, sizeof(bench_run));
}

int gm_cli_bench(int argc, char **argv)
{
	struct bench_args a = { .sel = calloc((size_t)argc, sizeof(char *)) };
	struct gm_cli_config none = { 0 };
	const struct gm_config *cfg;
	struct bench_machine m;
	struct rusage ru;
	FILE *json = NULL;
	int failures = 0, r;
	double secs;

	if (!a.sel)
		return 1;
	r = bench_parse(argc, argv, &a);
	if (r < 0 && gm_cli_apply_config("bench", &none))
		r = 2;
	if (r < 0 && a.json && !(json = fopen(a.json, "w"))) {
		fprintf(stderr, "guestmem: bench: --json %s: %s\n", a.json, strerror(errno));
		r = 2; /* before minutes of running, not after */
	}
	if (r >= 0) {
		free(a.sel);
		return r;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	cfg = gm_config_get();
	bench_machine_get(&m);
	bench_run.t0 = bench_now_ns();
	printf("guestmem bench: ratios against a baseline measured in the same run\n");
	printf("machine: %s, %ld cores, %llu MiB, load %.2f %.2f %.2f; kernel %s; %s\n", m.cpu,
	       m.cores, m.mem_mib, m.load[0], m.load[1], m.load[2], m.kernel, m.date);
	printf("profile: %s, backing: %s\n", gm_profile_name(cfg->profile),
	       gm_backing_name(cfg->backing));
	printf("  %-46s %18s %18s %9s  %s\n", "measurement", "value", "baseline", "ratio", "goal");
	for (size_t s = 0; s < BENCH_NR_SECTIONS; s++) {
		bool any = false;

		for (const struct bench_item *it = bench_sections[s].items; it->name; it++)
			any |= bench_selected(a.sel, a.nsel, &bench_sections[s], it);
		if (any)
			failures += bench_run_section(&bench_sections[s], a.sel, a.nsel);
	}
	secs = (double)(bench_now_ns() - bench_run.t0) / 1e9;
	getrusage(RUSAGE_SELF, &ru);
	printf("done in %.1f s, peak resident memory %ld MiB%s\n", secs, ru.ru_maxrss / 1024,
	       failures ? ", with failures" : "");
	bench_progress("done");
	if (json) {
		r = bench_write_json(json, &m, secs, ru.ru_maxrss / 1024, failures);
		if (fclose(json) || r) {
			fprintf(stderr, "guestmem: bench: writing %s failed\n", a.json);
			failures++;
		}
	}
	bench_free_recs();
	free(a.sel);
	return failures ? 1 : 0;
}

double bench_eventfd_rt_ns(int n)
{
	int a = eventfd(0, EFD_CLOEXEC), b = eventfd(0, EFD_CLOEXEC), st;
	uint64_t v = 1, t0, t1;
	double r = -1;
	pid_t pid;

	if (a < 0 || b < 0)
		goto out;
	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0) {
		for (int i = 0; i < n + 1000; i++)
			if (read(a, &v, 8) != 8 || write(b, &v, 8) != 8)
				_exit(1);
		_exit(0);
	}
	for (int i = 0; i < 1000; i++) /* warm-up */
		if (write(a, &v, 8) != 8 || read(b, &v, 8) != 8)
			goto out_wait;
	t0 = bench_now_ns();
	for (int i = 0; i < n; i++)
		if (write(a, &v, 8) != 8 || read(b, &v, 8) != 8)
			goto out_wait;
	t1 = bench_now_ns();
	r = (double)(t1 - t0) / n;
out_wait:
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		r = -1;
out:
	if (a >= 0)
		close(a);
	if (b >= 0)
		close(b);
	return r;
}
