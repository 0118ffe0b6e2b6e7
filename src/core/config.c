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
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "lib/compiler.h"

static pthread_mutex_t gm_config_mutex = PTHREAD_MUTEX_INITIALIZER; /* writers */
static const struct gm_config *gm_config_current;		     /* acquire/release */

struct gm_config_node {
	struct gm_config c;
	struct gm_config_node *prev;
};
static struct gm_config_node *gm_config_history; /* under gm_config_mutex */

const char *gm_profile_name(enum gm_profile p)
{
	switch (p) {
	case GM_PROFILE_LINUX_6_12:
		return "linux-6.12";
	case GM_PROFILE_LINUX_6_18:
		return "linux-6.18";
	default:
		return "linux-6.8";
	}
}

const char *gm_backing_name(enum gm_backing_kind b)
{
	return b == GM_BACKING_SECRETMEM ? "secretmem" : "memfd";
}

static int parse_profile(const char *s, enum gm_profile *p)
{
	if (!strcmp(s, "linux-6.8") || !strcmp(s, "6.8"))
		*p = GM_PROFILE_LINUX_6_8;
	else if (!strcmp(s, "linux-6.12") || !strcmp(s, "6.12"))
		*p = GM_PROFILE_LINUX_6_12;
	else if (!strcmp(s, "linux-6.18") || !strcmp(s, "6.18"))
		*p = GM_PROFILE_LINUX_6_18;
	else
		return -EINVAL;
	return 0;
}

static int parse_backing(const char *s, enum gm_backing_kind *b)
{
	if (!strcmp(s, "memfd"))
		*b = GM_BACKING_MEMFD;
	else if (!strcmp(s, "secretmem"))
		*b = GM_BACKING_SECRETMEM;
	else
		return -EINVAL;
	return 0;
}

/* One "NAME=y|n" word; CONFIG_ prefix optional. */
static int parse_switch(const char *w, size_t len, struct gm_config *c)
{
	const char *eq = memchr(w, '=', len);
	size_t nlen;
	bool val;

	if (!eq || eq + 2 != w + len || (eq[1] != 'y' && eq[1] != 'n'))
		return -EINVAL;
	val = eq[1] == 'y';
	if (len > 7 && !strncmp(w, "CONFIG_", 7)) {
		w += 7;
		len -= 7;
	}
	nlen = (size_t)((const char *)memchr(w, '=', len) - w);
	if (nlen == 19 && !strncmp(w, "KVM_SW_PROTECTED_VM", nlen))
		c->sw_protected_vm = val;
	else if (nlen == 7 && !strncmp(w, "KVM_SMM", nlen))
		c->smm = val;
	else
		return -EINVAL;
	return 0;
}

static int parse_kconfig(const char *s, struct gm_config *c)
{
	while (*s) {
		size_t len;
		int r;

		while (*s == ' ' || *s == ',' || *s == '\t')
			s++;
		len = strcspn(s, " ,\t");
		if (!len)
			break;
		r = parse_switch(s, len, c);
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
	if (kconfig && parse_kconfig(kconfig, c))
		return -EINVAL;
	if (backing && *backing && parse_backing(backing, &c->backing))
		return -EINVAL;
	return 0;
}

static const struct gm_config gm_config_default = {
	.profile = GM_PROFILE_LINUX_6_8,
	.backing = GM_BACKING_MEMFD,
	.sw_protected_vm = true,
	.smm = true,
};

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

const struct gm_config *gm_config_get(void)
{
	const struct gm_config *c = smp_load_acquire(&gm_config_current);

	if (likely(c))
		return c;
	gm_check_pthread(pthread_mutex_lock(&gm_config_mutex));
	if (!gm_config_current &&
	    config_install(&gm_config_default, getenv("GUESTMEM_PROFILE"),
			   getenv("GUESTMEM_CONFIG"), getenv("GUESTMEM_BACKING"))) {
		/* A bad environment must not take the VMM down: use defaults. */
		static const struct gm_config fallback = {
			GM_PROFILE_LINUX_6_8, GM_BACKING_MEMFD, true, true
		};
		smp_store_release(&gm_config_current, &fallback);
	}
	gm_check_pthread(pthread_mutex_unlock(&gm_config_mutex));
	return smp_load_acquire(&gm_config_current);
}

int gm_config_set(const char *profile, const char *kconfig, const char *backing)
{
	const struct gm_config *base = gm_config_get();
	int r;

	gm_check_pthread(pthread_mutex_lock(&gm_config_mutex));
	r = config_install(base, profile, kconfig, backing);
	gm_check_pthread(pthread_mutex_unlock(&gm_config_mutex));
	return r;
}
