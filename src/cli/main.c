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
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/config.h"

struct gm_cli_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *usage;
};

#define GM_CLI_CONFIG_OPTS "[--profile P] [--config \"K=V ...\"] [--backing B]"

static const struct gm_cli_cmd gm_cli_cmds[] = {
	{ "exec", gm_cli_exec,
	  "exec " GM_CLI_CONFIG_OPTS " [--user U] -- PROG ARGS...\n"
	  "      run PROG with guestmem's drop-in /dev/kvm (LD_PRELOAD); the settings\n"
	  "      and GUESTMEM_GUEST are checked before PROG starts; guest processes are\n"
	  "      started by a spawner of their own, as user U with --user (needs root)" },
	{ "info", gm_cli_info,
	  "info " GM_CLI_CONFIG_OPTS "\n"
	  "      show the profile, Kconfig switches, backings and capabilities" },
	{ "demo", gm_cli_demo,
	  "demo " GM_CLI_CONFIG_OPTS " [-n VCPUS] [-m MIB] [-r ROUNDS]\n"
	  "      the confidential-VM memory walk-through (default 4 vCPUs x 8 MiB, 4 rounds)" },
	{ "bench", gm_cli_bench,
	  "bench [--json FILE] [--list] [SECTION[/ITEM]...]\n"
	  "      the benchmarks (a few minutes; see guestmem bench --help)" },
};

/* The settings, with the parser's own lists of accepted values. */
static void gm_cli_settings(FILE *out)
{
	static const struct {
		const char *opt, *var;
		enum gm_setting which;
	} settings[] = {
		{ "--profile", "GUESTMEM_PROFILE", GM_SETTING_PROFILE },
		{ "--config", "GUESTMEM_CONFIG", GM_SETTING_CONFIG },
		{ "--backing", "GUESTMEM_BACKING", GM_SETTING_BACKING },
		{ NULL, "GUESTMEM_NO_PRECHECK", GM_SETTING_NO_PRECHECK },
		{ NULL, "GUESTMEM_VCPU_SPIN_US", GM_SETTING_VCPU_SPIN_US },
		{ NULL, "GUESTMEM_CPU_VENDOR", GM_SETTING_CPU_VENDOR },
		{ NULL, "GUESTMEM_SECCOMP", GM_SETTING_SECCOMP },
	};
	char acc[192];

	fprintf(out, "\nsettings (an option overrides its environment variable):\n");
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		gm_config_accepted(settings[i].which, acc, sizeof(acc));
		fprintf(out, "  %-10s %-22s %s\n", settings[i].opt ? settings[i].opt : "",
			settings[i].var, acc);
	}
	fprintf(out, "  %-10s %-22s %s\n", "", "GUESTMEM_GUEST",
		"the guest program (a .so path with a '/') of a VMM under exec");
	fprintf(out, "A bad value stops the command, naming it; defaults: linux-6.8, both\n"
		     "switches =y, memfd.\n");
}

static void gm_cli_usage(FILE *out)
{
	fprintf(out, "usage: guestmem COMMAND [ARGS...]    (guestmem COMMAND --help)\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(gm_cli_cmds) / sizeof(gm_cli_cmds[0]); i++)
		fprintf(out, "  %s\n", gm_cli_cmds[i].usage);
	gm_cli_settings(out);
}

void gm_cli_help(const char *cmd, FILE *out)
{
	for (size_t i = 0; i < sizeof(gm_cli_cmds) / sizeof(gm_cli_cmds[0]); i++)
		if (!strcmp(cmd, gm_cli_cmds[i].name))
			fprintf(out, "usage: guestmem %s\n", gm_cli_cmds[i].usage);
	gm_cli_settings(out);
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

int gm_cli_parse_config_one(int argc, char **argv, int *i, struct gm_cli_config *c)
{
	int r;

	if (!strcmp(argv[*i], "--help") || !strcmp(argv[*i], "-h")) {
		c->help = true;
		return 1;
	}
	r = gm_cli_opt(argc, argv, i, "--profile", &c->profile);
	if (!r)
		r = gm_cli_opt(argc, argv, i, "--config", &c->kconfig);
	if (!r)
		r = gm_cli_opt(argc, argv, i, "--backing", &c->backing);
	return r < 0 ? 2 : r;
}

int gm_cli_parse_config(int argc, char **argv, int *i, struct gm_cli_config *c)
{
	for (; *i < argc; ++*i) {
		int r;

		if (!strcmp(argv[*i], "--")) {
			++*i;
			return 0;
		}
		r = gm_cli_parse_config_one(argc, argv, i, c);
		if (r == 2)
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

/* One option's value, checked; the option then becomes its variable. */
static int gm_cli_apply_opt(const char *cmd, const char *opt, const char *var,
			    enum gm_setting which, const char *val)
{
	char why[256];

	if (!val)
		return 0;
	if (gm_config_check(which, val, why, sizeof(why))) {
		fprintf(stderr, "guestmem: %s: %s \"%s\": %s\n", cmd, opt, val, why);
		return 2;
	}
	if (setenv(var, val, 1)) {
		perror("guestmem: setenv");
		return 1;
	}
	return 0;
}

int gm_cli_apply_config(const char *cmd, const struct gm_cli_config *c)
{
	char msg[512];
	int r;

	r = gm_cli_apply_opt(cmd, "--profile", "GUESTMEM_PROFILE", GM_SETTING_PROFILE, c->profile);
	if (!r)
		r = gm_cli_apply_opt(cmd, "--config", "GUESTMEM_CONFIG", GM_SETTING_CONFIG,
				     c->kconfig);
	if (!r)
		r = gm_cli_apply_opt(cmd, "--backing", "GUESTMEM_BACKING", GM_SETTING_BACKING,
				     c->backing);
	if (!r && gm_config_env_check(msg, sizeof(msg))) {
		fprintf(stderr, "guestmem: %s: %s\n", cmd, msg);
		r = 2;
	}
	return r;
}
