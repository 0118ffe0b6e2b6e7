// SPDX-License-Identifier: MIT
/*
 * guestmem exec [--profile P] [--config "K=V ..."] [--backing B] [--user U]
 *               -- PROG ARGS...
 *
 * Runs PROG with libguestmem-preload.so in front of libc, so that its
 * open("/dev/kvm") and everything after it reach guestmem.  The options
 * become GUESTMEM_PROFILE / GUESTMEM_CONFIG / GUESTMEM_BACKING.  These, the
 * other GUESTMEM_* settings and GUESTMEM_GUEST are checked here first, so
 * a typo fails before PROG starts (exit status 2, one line naming it).
 *
 * Before PROG, it starts the guest-process spawner (src/gproc/spawner.h):
 * guest processes are its children, not PROG's, and with --user (a user
 * name or UID[:GID]; needs CAP_SETUID and CAP_SETGID) they run as that
 * user, so PROG cannot signal, trace or limit them.
 */
#include <errno.h>
#include <libgen.h>
#include <pwd.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "gproc/spawn.h"
#include "gproc/spawner.h"

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

/* --user's value: a user name, or UID[:GID] (GID: the user's, else UID). */
static int gm_exec_parse_user(const char *v, struct gp_creds *cr)
{
	const struct passwd *pw;
	unsigned long uid, gid;
	char *end;

	if (!*v)
		return -1;
	uid = strtoul(v, &end, 10);
	if (end != v && (!*end || *end == ':') && uid < (1UL << 31)) {
		gid = uid;
		if (*end == ':') {
			const char *g = end + 1;

			gid = strtoul(g, &end, 10);
			if (end == g || *end || gid >= (1UL << 31))
				return -1;
		} else if ((pw = getpwuid((uid_t)uid))) {
			gid = pw->pw_gid;
		}
		*cr = (struct gp_creds){ true, (uid_t)uid, (gid_t)gid };
		return 0;
	}
	pw = getpwnam(v);
	if (!pw)
		return -1;
	*cr = (struct gp_creds){ true, pw->pw_uid, pw->pw_gid };
	return 0;
}

/*
 * Whether a process can become @cr's user here (a user namespace may map
 * only some ids): tried in a child, so that a bad --user fails now, with
 * its reason, rather than every guest process later.  0 or an errno.
 */
static int gm_exec_try_user(const struct gp_creds *cr)
{
	int st;
	pid_t pid = fork();

	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(-gp_become(cr) & 0xff);
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : EIO;
}

#define GM_EXEC_USAGE                                                                      \
	"usage: guestmem exec [--profile P] [--config \"K=V ...\"] [--backing B] "          \
	"[--user U] -- PROG ARGS...\n"

int gm_cli_exec(int argc, char **argv)
{
	struct gm_cli_config c = { 0 };
	struct gp_creds cr = { 0 };
	char preload[PATH_MAX], why[256], door_env[64];
	const char *user = NULL;
	int i = 1, r, door;

	/* The shared options, and --user (exec's own). */
	while (i < argc) {
		int j = i;

		if (!strcmp(argv[i], "--user") || !strncmp(argv[i], "--user=", 7)) {
			if (argv[i][6] == '=') {
				user = argv[i] + 7;
			} else if (i + 1 < argc) {
				user = argv[++i];
			} else {
				fprintf(stderr, "guestmem: --user needs a value\n");
				return 2;
			}
			i++;
			continue;
		}
		r = gm_cli_parse_config_one(argc, argv, &j, &c);
		if (r == 2)
			return 2;
		if (r == 1) {
			i = j + 1;
			continue;
		}
		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		if (argv[i][0] == '-') {
			fprintf(stderr, "guestmem: unknown option '%s'\n", argv[i]);
			return 2;
		}
		break;
	}
	if (c.help) {
		gm_cli_help("exec", stdout);
		return 0;
	}
	if (i >= argc) {
		fprintf(stderr, GM_EXEC_USAGE);
		return 2;
	}
	if (user && gm_exec_parse_user(user, &cr)) {
		fprintf(stderr, "guestmem: exec: --user \"%s\": no such user (a name or UID[:GID])\n",
			user);
		return 2;
	}
	/* Without CAP_SETUID and CAP_SETGID the try is refused: say what is missing. */
	if (user && (r = gm_exec_try_user(&cr)) == EPERM) {
		fprintf(stderr, "guestmem: exec: --user needs CAP_SETUID and CAP_SETGID "
				"(run as root)\n");
		return 2;
	}
	if (user && r) {
		fprintf(stderr, "guestmem: exec: --user \"%s\": cannot become uid %u gid %u: %s\n",
			user, (unsigned)cr.uid, (unsigned)cr.gid, strerror(r));
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
	/*
	 * The spawner, last: nothing may fail between its start and the exec
	 * (it would outlive us until its door's last holder, PROG, is gone).
	 * Without --user a spawner that cannot start leaves guest processes
	 * to the library, as the C API has them; with --user it is an error.
	 */
	door = gp_spawner_start(user ? &cr : NULL, user != NULL, door_env, sizeof(door_env));
	if (door < 0 && user) {
		fprintf(stderr, "guestmem: exec: cannot start the guest-process spawner: %s\n",
			strerror(-door));
		return 1;
	}
	if (door >= 0 && setenv(GP_SPAWNER_ENV, door_env, 1)) {
		perror("guestmem: exec: setenv");
		return 1;
	}
	if (door < 0)
		unsetenv(GP_SPAWNER_ENV);
	execvp(argv[i], argv + i);
	fprintf(stderr, "guestmem: exec: %s: %s\n", argv[i], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
