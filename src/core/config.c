/* SPDX-License-Identifier: MIT */
/*
 * Profile and Kconfig switches.  The configuration is a small value copied
 * into each VM at creation; the global one is replaced as a whole under a
 * mutex and read with an acquire load of a pointer to an immutable copy, so
 * readers never see half an update.  Old copies stay allocated (chained,
 * so they remain reachable): a reader may still hold one, and a
 * configuration changes only a handful of times per process.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lib/compiler.h"
#include "lib/lockdep.h"

static pthread_mutex_t gm_config_mutex = PTHREAD_MUTEX_INITIALIZER; /* writers */
static const struct gm_config *gm_config_current;		     /* acquire/release */

struct gm_config_node {
	struct gm_config c;
	struct gm_config_node *prev;
};
static struct gm_config_node *gm_config_history; /* under gm_config_mutex */

/*
 * The accepted values, as tables: parsing, gm_*_name() and the "accepted:"
 * lists in error messages all come from these, so a new profile or backing
 * is one line here.
 */
static const struct {
	enum gm_profile id;
	const char *name, *alias;
} gm_profiles[] = {
	{ GM_PROFILE_LINUX_6_8, "linux-6.8", "6.8" },
	{ GM_PROFILE_LINUX_6_12, "linux-6.12", "6.12" },
	{ GM_PROFILE_LINUX_6_18, "linux-6.18", "6.18" },
};

static const struct {
	enum gm_backing_kind id;
	const char *name;
} gm_backings[] = {
	{ GM_BACKING_MEMFD, "memfd" },
	{ GM_BACKING_SECRETMEM, "secretmem" },
};

static const struct {
	const char *name;
	size_t offset; /* of the bool in struct gm_config */
} gm_switches[] = {
	{ "KVM_SW_PROTECTED_VM", offsetof(struct gm_config, sw_protected_vm) },
	{ "KVM_SMM", offsetof(struct gm_config, smm) },
};

#define GM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

const char *gm_profile_name(enum gm_profile p)
{
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_profiles); i++)
		if (gm_profiles[i].id == p)
			return gm_profiles[i].name;
	return "unknown";
}

const char *gm_backing_name(enum gm_backing_kind b)
{
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_backings); i++)
		if (gm_backings[i].id == b)
			return gm_backings[i].name;
	return "unknown";
}

static int parse_profile(const char *s, enum gm_profile *p)
{
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_profiles); i++)
		if (!strcmp(s, gm_profiles[i].name) || !strcmp(s, gm_profiles[i].alias)) {
			*p = gm_profiles[i].id;
			return 0;
		}
	return -EINVAL;
}

static int parse_backing(const char *s, enum gm_backing_kind *b)
{
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_backings); i++)
		if (!strcmp(s, gm_backings[i].name)) {
			*b = gm_backings[i].id;
			return 0;
		}
	return -EINVAL;
}

/* Appends to @buf (NUL-terminated, @len bytes), truncating. */
static void gm_strcatf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void gm_strcatf(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strnlen(buf, len);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/*
 * One "NAME=y|n" word; CONFIG_ prefix optional.  On error, @why (if not
 * NULL) says what is wrong with the word.
 */
static int parse_switch(const char *w, size_t len, struct gm_config *c, char *why,
			size_t why_len)
{
	const char *eq = memchr(w, '=', len), *name = w;
	size_t nlen;

	if (!eq || eq + 2 != w + len || (eq[1] != 'y' && eq[1] != 'n')) {
		if (why)
			snprintf(why, why_len, "'%.*s' is not NAME=y or NAME=n", (int)len, w);
		return -EINVAL;
	}
	nlen = (size_t)(eq - w);
	if (nlen > 7 && !strncmp(w, "CONFIG_", 7)) {
		name += 7;
		nlen -= 7;
	}
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_switches); i++)
		if (strlen(gm_switches[i].name) == nlen && !strncmp(name, gm_switches[i].name, nlen)) {
			*(bool *)((char *)c + gm_switches[i].offset) = eq[1] == 'y';
			return 0;
		}
	if (why)
		snprintf(why, why_len, "unknown switch '%.*s'", (int)nlen, name);
	return -EINVAL;
}

static int parse_kconfig(const char *s, struct gm_config *c, char *why, size_t why_len)
{
	while (*s) {
		size_t len;
		int r;

		while (*s == ' ' || *s == ',' || *s == '\t')
			s++;
		len = strcspn(s, " ,\t");
		if (!len)
			break;
		r = parse_switch(s, len, c, why, why_len);
		if (r)
			return r;
		s += len;
	}
	return 0;
}

static int config_build(struct gm_config *c, const char *profile, const char *kconfig,
			const char *backing)
{
	if (profile && *profile && parse_profile(profile, &c->profile))
		return -EINVAL;
	if (kconfig && parse_kconfig(kconfig, c, NULL, 0))
		return -EINVAL;
	if (backing && *backing && parse_backing(backing, &c->backing))
		return -EINVAL;
	return 0;
}

/* ---- checking a value, for messages ------------------------------------ */

void gm_config_accepted(enum gm_setting which, char *buf, size_t len)
{
	buf[0] = '\0';
	switch (which) {
	case GM_SETTING_PROFILE:
		for (size_t i = 0; i < GM_ARRAY_SIZE(gm_profiles); i++)
			gm_strcatf(buf, len, "%s%s", i ? ", " : "", gm_profiles[i].name);
		break;
	case GM_SETTING_CONFIG:
		gm_strcatf(buf, len, "NAME=y|n ..., NAME one of");
		for (size_t i = 0; i < GM_ARRAY_SIZE(gm_switches); i++)
			gm_strcatf(buf, len, "%s %s", i ? "," : "", gm_switches[i].name);
		break;
	case GM_SETTING_BACKING:
		for (size_t i = 0; i < GM_ARRAY_SIZE(gm_backings); i++)
			gm_strcatf(buf, len, "%s%s", i ? ", " : "", gm_backings[i].name);
		break;
	case GM_SETTING_NO_PRECHECK:
		gm_strcatf(buf, len, "1 (pre-check off), 0 or empty (on)");
		break;
	case GM_SETTING_VCPU_SPIN_US:
		gm_strcatf(buf, len, "microseconds, 0 to 1000000");
		break;
	case GM_SETTING_CPU_VENDOR:
		gm_strcatf(buf, len, "auto, host, intel, amd");
		break;
	case GM_SETTING_SECCOMP:
		gm_strcatf(buf, len, "1, on or empty (the filter), files (also file and socket "
				     "calls), 0 or off (none)");
		break;
	}
}

/* "@what; accepted: ..." in @why. */
static int check_failed(enum gm_setting which, const char *what, char *why, size_t len)
{
	char acc[192];

	gm_config_accepted(which, acc, sizeof(acc));
	gm_strcatf(why, len, "%s; accepted: %s", what, acc);
	return -EINVAL;
}

int gm_config_seccomp_mode(const char *value)
{
	if (!value || !*value || !strcmp(value, "1") || !strcmp(value, "on"))
		return GM_SECCOMP_DEFAULT;
	if (!strcmp(value, "files"))
		return GM_SECCOMP_FILES;
	if (!strcmp(value, "0") || !strcmp(value, "off"))
		return GM_SECCOMP_OFF;
	return -EINVAL;
}

/* A whole decimal number in [0, max]. */
static bool parse_ulong(const char *s, unsigned long max)
{
	char *end;
	unsigned long v;

	if (!*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	return !errno && !*end && v <= max;
}

int gm_config_check(enum gm_setting which, const char *value, char *why, size_t why_len)
{
	struct gm_config tmp = { 0 };
	enum gm_backing_kind b;
	enum gm_profile p;
	char what[128] = "";

	why[0] = '\0';
	switch (which) {
	case GM_SETTING_PROFILE:
		if (!*value || !parse_profile(value, &p))
			return 0;
		return check_failed(which, "unknown profile", why, why_len);
	case GM_SETTING_CONFIG:
		if (!parse_kconfig(value, &tmp, what, sizeof(what)))
			return 0;
		return check_failed(which, what, why, why_len);
	case GM_SETTING_BACKING:
		if (!*value || !parse_backing(value, &b))
			return 0;
		return check_failed(which, "unknown backing", why, why_len);
	case GM_SETTING_NO_PRECHECK:
		if (!*value || !strcmp(value, "0") || !strcmp(value, "1"))
			return 0;
		return check_failed(which, "not 0 or 1", why, why_len);
	case GM_SETTING_VCPU_SPIN_US:
		if (!*value || parse_ulong(value, 1000000))
			return 0;
		return check_failed(which, "not a number of microseconds", why, why_len);
	case GM_SETTING_CPU_VENDOR:
		if (!*value || !strcmp(value, "auto") || !strcmp(value, "host") ||
		    !strcmp(value, "intel") || !strcmp(value, "amd"))
			return 0;
		return check_failed(which, "unknown vendor", why, why_len);
	case GM_SETTING_SECCOMP:
		if (gm_config_seccomp_mode(value) >= 0)
			return 0;
		return check_failed(which, "unknown mode", why, why_len);
	}
	return check_failed(which, "unknown setting", why, why_len);
}

/* The environment variables guestmem reads, and what each one holds. */
static const struct {
	const char *var;
	enum gm_setting which;
} gm_env_vars[] = {
	{ "GUESTMEM_PROFILE", GM_SETTING_PROFILE },
	{ "GUESTMEM_CONFIG", GM_SETTING_CONFIG },
	{ "GUESTMEM_BACKING", GM_SETTING_BACKING },
	{ "GUESTMEM_NO_PRECHECK", GM_SETTING_NO_PRECHECK },
	{ "GUESTMEM_VCPU_SPIN_US", GM_SETTING_VCPU_SPIN_US },
	{ "GUESTMEM_CPU_VENDOR", GM_SETTING_CPU_VENDOR },
	{ "GUESTMEM_SECCOMP", GM_SETTING_SECCOMP },
};

int gm_config_env_check(char *msg, size_t len)
{
	for (size_t i = 0; i < GM_ARRAY_SIZE(gm_env_vars); i++) {
		const char *v = getenv(gm_env_vars[i].var);
		char why[256];

		if (v && gm_config_check(gm_env_vars[i].which, v, why, sizeof(why))) {
			snprintf(msg, len, "%s=\"%s\": %s", gm_env_vars[i].var, v, why);
			return -EINVAL;
		}
	}
	msg[0] = '\0';
	return 0;
}

static const struct gm_config gm_config_default = {
	.profile = GM_PROFILE_LINUX_6_8,
	.backing = GM_BACKING_MEMFD,
	.sw_protected_vm = true,
	.smm = true,
};

/* Set once, if the environment held a bad value; read by gm_config_env_error(). */
static bool gm_config_env_bad;

static int config_install(const struct gm_config *base, const char *profile,
			  const char *kconfig, const char *backing)
{
	struct gm_config tmp = *base;
	struct gm_config_node *node;

	if (config_build(&tmp, profile, kconfig, backing))
		return -EINVAL;
	node = malloc(sizeof(*node));
	if (!node)
		return -ENOMEM;
	node->c = tmp;
	node->prev = gm_config_history;
	gm_config_history = node;
	smp_store_release(&gm_config_current, &node->c); /* pairs with gm_config_get() */
	return 0;
}

/*
 * The first configuration: the defaults, then each environment variable on
 * its own, so that a bad one leaves the others in force (and is reported
 * once on stderr: the command line and `guestmem exec` refuse it before the
 * program starts; the drop-in then fails every open of /dev/kvm).
 */
static void config_install_env(void)
{
	static const char *const vars[] = { "GUESTMEM_PROFILE", "GUESTMEM_CONFIG",
					    "GUESTMEM_BACKING" };
	struct gm_config c = gm_config_default;
	char msg[512];

	for (size_t i = 0; i < GM_ARRAY_SIZE(vars); i++) {
		const char *v = getenv(vars[i]);
		struct gm_config tmp = c;

		if (!config_build(&tmp, i == 0 ? v : NULL, i == 1 ? v : NULL, i == 2 ? v : NULL))
			c = tmp;
	}
	if (gm_config_env_check(msg, sizeof(msg))) {
		gm_config_env_bad = true;
		fprintf(stderr, "guestmem: %s (the other settings apply; opening /dev/kvm "
				"fails with EINVAL)\n", msg);
	}
	if (config_install(&c, NULL, NULL, NULL)) {
		/* Out of memory this early: a static copy, never freed. */
		static struct gm_config fallback;

		fallback = c;
		smp_store_release(&gm_config_current, &fallback);
	}
}

/* Context: gm_config_mutex held. */
static const struct gm_config *config_current_locked(void)
{
	lockdep_assert_held(&gm_config_mutex);
	if (!gm_config_current)
		config_install_env();
	return gm_config_current;
}

const struct gm_config *gm_config_get(void)
{
	const struct gm_config *c = smp_load_acquire(&gm_config_current);

	if (likely(c))
		return c;
	gm_mutex_lock(&gm_config_mutex, GM_LOCK_CONFIG);
	c = config_current_locked();
	gm_mutex_unlock(&gm_config_mutex);
	return c;
}

bool gm_config_env_error(void)
{
	gm_config_get();
	return READ_ONCE(gm_config_env_bad); /* written before the release in gm_config_get() */
}

int gm_config_set(const char *profile, const char *kconfig, const char *backing)
{
	int r;

	gm_mutex_lock(&gm_config_mutex, GM_LOCK_CONFIG);
	/* The base is read under the mutex: two setters never lose an update. */
	r = config_install(config_current_locked(), profile, kconfig, backing);
	gm_mutex_unlock(&gm_config_mutex);
	return r;
}
