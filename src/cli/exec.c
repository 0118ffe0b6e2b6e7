// SPDX-License-Identifier: MIT
/*
 * guestmem exec [--profile P] [--config "K=V ..."] [--backing B] -- PROG ARGS...
 *
 * Runs PROG with libguestmem-preload.so in front of libc, so that its
 * open("/dev/kvm") and everything after it reach guestmem.  The options
 * become GUESTMEM_PROFILE / GUESTMEM_CONFIG / GUESTMEM_BACKING.  These, the
 * other GUESTMEM_* settings and GUESTMEM_GUEST are checked here first, so
 * a typo fails before PROG starts (exit status 2, one line naming it).
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define GM_PRELOAD_NAME "libguestmem-preload.so"

/* Whether @path names a readable file; copies its absolute form to @out. */
static bool gm_try_preload(const char *path, char out[PATH_MAX])
{
	return access(path, R_OK) == 0 && realpath(path, out) != NULL;
}

/*
 * The preload library: $GUESTMEM_PRELOAD, else beside this binary in the
 * build tree (src/cli/guestmem -> src/preload/...), else the libdir relative
 * to this binary (an install moved or under DESTDIR), else the install libdir.
 */
static int gm_find_preload(char out[PATH_MAX])
{
	const char *env = getenv("GUESTMEM_PRELOAD");
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	ssize_t n;

	if (env && *env)
		return gm_try_preload(env, out) ? 0 : -ENOENT;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		char *dir;

		exe[n] = '\0';
		dir = dirname(exe);
		snprintf(cand, sizeof(cand), "%s/../preload/%s", dir, GM_PRELOAD_NAME);
		if (gm_try_preload(cand, out))
			return 0;
		/* Installed: PREFIX/bin/guestmem and PREFIX/LIBDIR (also under a DESTDIR). */
		snprintf(cand, sizeof(cand), "%s/../%s/%s", dir, GM_INSTALL_LIBDIR_REL,
			 GM_PRELOAD_NAME);
		if (GM_INSTALL_LIBDIR_REL[0] != '/' && gm_try_preload(cand, out))
			return 0;
	}
	snprintf(cand, sizeof(cand), "%s/%s", GM_INSTALL_LIBDIR, GM_PRELOAD_NAME);
	return gm_try_preload(cand, out) ? 0 : -ENOENT;
}

/* VAR = @first + SEP + old value (or just @first). */
static int gm_env_prepend(const char *var, const char *first, char sep)
{
	const char *old = getenv(var);
	char *v;
	int r;

	if (!old || !*old)
		return setenv(var, first, 1);
	if (asprintf(&v, "%s%c%s", first, sep, old) < 0)
		return -1;
	r = setenv(var, v, 1);
	free(v);
	return r;
}

/* VAR = old value + SEP + @last (or just @last). */
static int gm_env_append(const char *var, const char *last, char sep)
{
	const char *old = getenv(var);
	char *v;
	int r;

	if (!old || !*old)
		return setenv(var, last, 1);
	if (asprintf(&v, "%s%c%s", old, sep, last) < 0)
		return -1;
	r = setenv(var, v, 1);
	free(v);
	return r;
}

static int gm_exec_env(const struct gm_cli_config *c, const char *preload)
{
	int r = 0;

	if (c->profile)
		r |= setenv("GUESTMEM_PROFILE", c->profile, 1);
	if (c->kconfig)
		r |= setenv("GUESTMEM_CONFIG", c->kconfig, 1);
	if (c->backing)
		r |= setenv("GUESTMEM_BACKING", c->backing, 1);
	/* LD_PRELOAD takes ':' or ' '; ours goes first. */
	r |= gm_env_prepend("LD_PRELOAD", preload, ':');
	/*
	 * ASan insists on being the first library; ours is, and either order
	 * works because every wrapper calls the next definition.
	 */
	r |= gm_env_append("ASAN_OPTIONS", "verify_asan_link_order=0", ':');
	return r ? -1 : 0;
}

int gm_cli_exec(int argc, char **argv)
{
	struct gm_cli_config c = { 0 };
	char preload[PATH_MAX], why[256];
	int i = 1, r;

	r = gm_cli_parse_config(argc, argv, &i, &c);
	if (r)
		return r;
	if (c.help) {
		gm_cli_help("exec", stdout);
		return 0;
	}
	if (i >= argc) {
		fprintf(stderr, "usage: guestmem exec [--profile P] [--config \"K=V ...\"] "
				"[--backing B] -- PROG ARGS...\n");
		return 2;
	}
	/* Everything the drop-in would only meet at run time, checked now. */
	r = gm_cli_apply_config("exec", &c);
	if (r)
		return r;
	if (gm_cli_check_guest(getenv("GUESTMEM_GUEST"), why, sizeof(why))) {
		fprintf(stderr, "guestmem: exec: GUESTMEM_GUEST=\"%s\": %s\n",
			getenv("GUESTMEM_GUEST"), why);
		return 2;
	}
	if (gm_find_preload(preload)) {
		fprintf(stderr, "guestmem: exec: cannot find %s (set GUESTMEM_PRELOAD)\n",
			GM_PRELOAD_NAME);
		return 1;
	}
	if (gm_exec_env(&c, preload)) {
		perror("guestmem: exec: setenv");
		return 1;
	}
	execvp(argv[i], argv + i);
	fprintf(stderr, "guestmem: exec: %s: %s\n", argv[i], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
