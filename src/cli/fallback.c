// SPDX-License-Identifier: MIT
/*
 * Stand-ins for subcommands whose sources are not part of this build
 * (src/cli/demo.c, bench/).  Weak: the real definitions win when linked.
 */
#include <stdio.h>

#include "cli.h"

__attribute__((weak)) int gm_cli_demo(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "guestmem: demo: not built\n");
	return 2;
}

__attribute__((weak)) int gm_cli_bench(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr, "guestmem: bench: not built\n");
	return 2;
}
