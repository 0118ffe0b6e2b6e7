/* SPDX-License-Identifier: MIT */
/*
 * The `guestmem` command: one function per subcommand, each taking the
 * arguments after the subcommand's name (argv[0] is the subcommand) and
 * returning the process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef GM_CLI_CLI_H
#define GM_CLI_CLI_H

#include <stdbool.h>
#include <stdio.h>

int gm_cli_exec(int argc, char **argv);	 /* exec.c */
int gm_cli_info(int argc, char **argv);	 /* info.c */
int gm_cli_demo(int argc, char **argv);	 /* demo.c (fallback.c until built) */
int gm_cli_bench(int argc, char **argv); /* bench/ (fallback.c until built) */

/*
 * Parse the configuration options shared by subcommands:
 * --profile P, --config "K=V ...", --backing B (also --opt=value).
 * Consumes them from argv starting at *i; stops at the first other
 * argument or after "--" (consumed).  Returns 0, or 2 after printing a
 * usage error.  Unset options are left NULL.
 */
struct gm_cli_config {
	const char *profile;
	const char *kconfig;
	const char *backing;
	bool help; /* --help or -h seen */
};
int gm_cli_parse_config(int argc, char **argv, int *i, struct gm_cli_config *c);
/*
 * Just argv[*i] (and its value): 1 if it was one of those options or
 * --help/-h (*i is left on its last word), 0 if not, 2 after a usage error.
 */
int gm_cli_parse_config_one(int argc, char **argv, int *i, struct gm_cli_config *c);

/*
 * Check the options (an error names the option) and put them in the
 * environment, then check every GUESTMEM_* setting of the environment (an
 * error names the variable), each time with the accepted values.  Call
 * before anything reads the configuration.  Returns 0, or the exit status
 * (2) after a one-line message "guestmem: @cmd: ...".
 */
int gm_cli_apply_config(const char *cmd, const struct gm_cli_config *c);

/*
 * Check GUESTMEM_GUEST's value @path (NULL or empty: none): a path with a
 * '/' to a 64-bit ELF shared object for this machine that defines
 * guestmem_guest_main.  Returns 0, or a negative errno with the reason in
 * @why (guest_check.c).
 */
int gm_cli_check_guest(const char *path, char *why, size_t len);

/* `guestmem @cmd --help`: the command's usage and the settings. */
void gm_cli_help(const char *cmd, FILE *out);

#endif
