// SPDX-License-Identifier: MIT
/*
 * guestmem - command-line front end.
 *
 *   guestmem exec [options] -- PROG ARGS...   run PROG on guestmem's /dev/kvm
 *   guestmem info [options]                   profile, Kconfig, backings, caps
 *   guestmem demo                             the confidential-VM walk-through
 *   guestmem bench                            benchmarks
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct gm_cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

static const struct gm_cli_cmd gm_cli_cmds[] = {
	{ "exec", gm_cli_exec,
	  "exec [--profile P] [--config \"K=V ...\"] [--backing B] -- PROG ARGS...\n"
	  "      run PROG with guestmem's drop-in /dev/kvm (LD_PRELOAD)" },
	{ "info", gm_cli_info,
	  "info [--profile P] [--config \"K=V ...\"] [--backing B]\n"
	  "      show the profile, Kconfig switches, backings and capabilities" },
	{ "demo", gm_cli_demo, "demo\n      the confidential-VM memory walk-through" },
	{ "bench", gm_cli_bench, "bench\n      run the benchmarks" },
};

static void gm_cli_usage(FILE *out)
{
	fprintf(out, "usage: guestmem COMMAND [ARGS...]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(gm_cli_cmds) / sizeof(gm_cli_cmds[0]); i++)
		fprintf(out, "  %s\n", gm_cli_cmds[i].usage);
	fprintf(out, "\nprofiles: linux-6.8 (default), linux-6.12, linux-6.18\n"
		     "config switches: KVM_SW_PROTECTED_VM=y|n KVM_SMM=y|n\n"
		     "backings: memfd (default), secretmem\n"
		     "environment: GUESTMEM_PROFILE, GUESTMEM_CONFIG, GUESTMEM_BACKING\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		gm_cli_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		gm_cli_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("guestmem %s\n", GM_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(gm_cli_cmds) / sizeof(gm_cli_cmds[0]); i++)
		if (!strcmp(argv[1], gm_cli_cmds[i].name))
			return gm_cli_cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "guestmem: unknown command '%s'\n\n", argv[1]);
	gm_cli_usage(stderr);
	return 2;
}

/* ---- shared option parsing -------------------------------------------- */

/* "--name value" or "--name=value"; returns 1 if matched, -1 on error. */
static int gm_cli_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n))
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n])
		return 0;
	if (*i + 1 >= argc) {
		fprintf(stderr, "guestmem: %s needs a value\n", name);
		return -1;
	}
	*val = argv[++*i];
	return 1;
}

int gm_cli_parse_config(int argc, char **argv, int *i, struct gm_cli_config *c)
{
	for (; *i < argc; ++*i) {
		int r;

		if (!strcmp(argv[*i], "--")) {
			++*i;
			return 0;
		}
		r = gm_cli_opt(argc, argv, i, "--profile", &c->profile);
		if (!r)
			r = gm_cli_opt(argc, argv, i, "--config", &c->kconfig);
		if (!r)
			r = gm_cli_opt(argc, argv, i, "--backing", &c->backing);
		if (r < 0)
			return 2;
		if (!r) {
			if (argv[*i][0] == '-') {
				fprintf(stderr, "guestmem: unknown option '%s'\n", argv[*i]);
				return 2;
			}
			return 0;
		}
	}
	return 0;
}
