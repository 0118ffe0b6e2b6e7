/* SPDX-License-Identifier: MIT */
/*
 * The `guestmem` command: one function per subcommand, each taking the
 * arguments after the subcommand's name (argv[0] is the subcommand) and
 * returning the process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef GM_CLI_CLI_H
#define GM_CLI_CLI_H

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
};
int gm_cli_parse_config(int argc, char **argv, int *i, struct gm_cli_config *c);

#endif
