// SPDX-License-Identifier: MIT
/*
 * The guest-process spawner (spawner.h): the daemon, its door, and the
 * VMM's request.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gproc/gproc_abi.h"
#include "gproc/spawner.h"
#include "lib/daemon.h"
#include "lib/ownfd.h"
#include "lib/procfile.h"
#include "lib/scm.h"
#include "lib/sys_raw.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define GP_SPAWN_MAGIC 0x67707364u /* "gpsd" */
/* More children than this at once: EAGAIN (a VM is one child). */
#define GP_SPAWNER_MAX_CHILDREN 4096

struct gp_spawn_req {
	uint32_t magic;
	uint32_t flags; /* GP_VM_* */
};

struct gp_spawn_resp {
	uint32_t magic;
	int32_t err; /* 0 or -errno */
	int32_t pid;
	uint32_t uid; /* the user the process runs as */
};

/* ---- the daemon ---------------------------------------------------------- */

struct gp_child {
	int link;  /* closed by the VMM's side: kill and reap */
	int pidfd; /* readable once the process exited (it stays a zombie) */
	bool exited;
};

static void child_end(struct gp_child *c)
{
	siginfo_t si;

	/* SIGKILL to a zombie does nothing; to a live one, ends it. */
	syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0);
	while (syscall(SYS_waitid, P_PIDFD, c->pidfd, &si, WEXITED | __WALL, NULL) < 0 &&
	       errno == EINTR)
		;
	gm_raw_close(c->pidfd);
	gm_raw_close(c->link);
}

/*
 * One request on the door.  Returns false when the door reached EOF: no
 * process holds its other end any more.
 */
static bool serve_request(int door, const struct gp_creds *cr, struct gp_child *ch, size_t *n)
{
	struct gp_spawn_req q;
	struct gp_spawn_resp a = { .magic = GP_SPAWN_MAGIC };
	struct iovec iov = { &q, sizeof(q) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(GM_SCM_MAX_FDS * sizeof(int)) +
			 CMSG_SPACE(sizeof(struct ucred))];
	} cbuf;
	struct ucred who = { 0, 0, 0 };
	bool have_who = false;
	int fds[GM_SCM_MAX_FDS], pidfd = -1;
	struct gp_creds as;
	unsigned nfds = 0;
	ssize_t r;
	long pid;

	memset(&cbuf, 0, sizeof(cbuf));
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	r = GM_RAW_SYSCALL(SYS_recvmsg, door, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (r < 0)
		return errno == EINTR || errno == EAGAIN;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(0)) {
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (k > GM_SCM_MAX_FDS - nfds)
				k = GM_SCM_MAX_FDS - nfds;
			memcpy(fds + nfds, CMSG_DATA(c), k * sizeof(int));
			nfds += (unsigned)k;
		} else if (c->cmsg_type == SCM_CREDENTIALS &&
			   c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			memcpy(&who, CMSG_DATA(c), sizeof(who));
			have_who = true;
		}
	}
	if (r == 0 && nfds == 0)
		return false;
	if (nfds != 2 || !have_who || r != (ssize_t)sizeof(q) || q.magic != GP_SPAWN_MAGIC) {
		/* Not a request of ours: nobody to answer. */
		for (unsigned i = 0; i < nfds; i++)
			gm_raw_close(fds[i]);
		return true;
	}
	/*
	 * Who the child runs as: --user's user, else the asking process's
	 * (the kernel's word, SO_PASSCRED), as it would be its own child: a
	 * VMM that dropped root after `guestmem exec` gets no root guest
	 * process.
	 */
	as = cr->set ? *cr : (struct gp_creds){ who.uid != getuid() || who.gid != getgid(),
						who.uid, who.gid };
	a.uid = as.set ? as.uid : getuid();
	/* A dumpable guest process is for the library's own tests only. */
	q.flags &= GP_VM_NO_CPUID_FAULT | GP_VM_NO_TSC_FAULT;
	if (*n >= GP_SPAWNER_MAX_CHILDREN)
		pid = -EAGAIN;
	else
		pid = gp_spawn_stub(fds[1], q.flags, &as, (int)who.pid, &pidfd);
	gm_raw_close(fds[1]);
	a.err = pid < 0 ? (int32_t)pid : 0;
	a.pid = pid < 0 ? 0 : (int32_t)pid;
	/* An answer that cannot be sent is a VMM already gone: the link's
	 * hang-up ends the child on the next poll. */
	(void)!GM_RAW_SYSCALL(SYS_sendto, fds[0], &a, sizeof(a), MSG_NOSIGNAL, NULL, 0);
	if (pid < 0) {
		gm_raw_close(fds[0]);
		return true;
	}
	ch[(*n)++] = (struct gp_child){ .link = fds[0], .pidfd = pidfd };
	return true;
}

static __attribute__((noreturn)) void serve(int door, const struct gp_creds *cr)
{
	/* Raw mappings, not malloc: a fork of a process whose other threads
	 * may have held the allocator's locks. */
	struct gp_child *ch = gm_raw_mmap(NULL, GP_SPAWNER_MAX_CHILDREN * sizeof(*ch),
					  PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct pollfd *p = gm_raw_mmap(NULL, (1 + 2 * GP_SPAWNER_MAX_CHILDREN) * sizeof(*p),
				       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool door_open = true;
	size_t n = 0;

	if (ch == MAP_FAILED || p == MAP_FAILED)
		_exit(1);
	for (;;) {
		if (!door_open && n == 0)
			_exit(0);
		p[0] = (struct pollfd){ .fd = door_open ? door : -1, .events = POLLIN };
		for (size_t i = 0; i < n; i++) {
			p[1 + 2 * i] = (struct pollfd){ .fd = ch[i].link, .events = POLLIN };
			p[2 + 2 * i] = (struct pollfd){ .fd = ch[i].exited ? -1 : ch[i].pidfd,
							.events = POLLIN };
		}
		if (poll(p, 1 + 2 * n, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* The children polled (all of them: requests are served after). */
		for (size_t i = 0; i < n;) {
			short lr = p[1 + 2 * i].revents, pr = p[2 + 2 * i].revents;
			char junk[16];

			if (pr & POLLIN)
				ch[i].exited = true;
			if (lr & POLLIN) {
				ssize_t r = GM_RAW_SYSCALL(SYS_recvfrom, ch[i].link, junk, sizeof(junk),
							   MSG_DONTWAIT, NULL, NULL);

				if (r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR)))
					lr = 0; /* nothing is said on a link: dropped */
			}
			if (!lr) {
				i++;
				continue;
			}
			child_end(&ch[i]);
			/* The last one moves here, with what its poll returned. */
			ch[i] = ch[--n];
			p[1 + 2 * i] = p[1 + 2 * n];
			p[2 + 2 * i] = p[2 + 2 * n];
		}
		if (p[0].revents & POLLIN)
			door_open = serve_request(door, cr, ch, &n);
		else if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
			door_open = false;
	}
}

int gp_spawner_start(const struct gp_creds *cr, bool strict, char *env, size_t env_len)
{
	struct gp_creds c = cr ? *cr : (struct gp_creds){ 0 };
	struct stat st;
	int sv[2], door, r;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return -errno;
	/* Each request comes with its sender's pid, uid and gid; set before
	 * any can be sent (the kernel attaches them at send time). */
	if (GM_RAW_SYSCALL(SYS_setsockopt, sv[1], SOL_SOCKET, SO_PASSCRED, &(int){ 1 },
			   sizeof(int))) {
		int e = -errno;

		gm_raw_close(sv[0]);
		gm_raw_close(sv[1]);
		return e;
	}
	r = gm_daemon_fork(sv[1]);
	if (r == 0) {
		prctl(PR_SET_NAME, "guestmemd", 0, 0, 0);
		/* Neither the VMM nor a guest process may trace it or take
		 * its descriptors (pidfd_getfd, /proc/PID/fd). */
		prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
		if (chdir("/"))
			_exit(1);
		/* No SIGPIPE to fear: every send says MSG_NOSIGNAL. */
		serve(3, &c);
	}
	gm_raw_close(sv[1]);
	if (r < 0) {
		gm_raw_close(sv[0]);
		return r;
	}
	/* Out of the VMM's low numbers, and kept across its exec. */
	door = gm_raw_fcntl(sv[0], F_DUPFD, (unsigned long)gm_fd_floor());
	gm_raw_close(sv[0]);
	if (door < 0 || gm_raw_fstat(door, &st)) {
		int e = -errno;

		if (door >= 0)
			gm_raw_close(door);
		return e;
	}
	snprintf(env, env_len, "%d:%" PRIu64 ":%d", door, (uint64_t)st.st_ino, strict ? 1 : 0);
	return door;
}

/* ---- the VMM's side -------------------------------------------------------- */

static pthread_once_t gp_door_once = PTHREAD_ONCE_INIT;
static int gp_door = -1;
static bool gp_door_strict;
static ino_t gp_door_ino;

static void door_find(void)
{
	const char *env = getenv(GP_SPAWNER_ENV);
	unsigned long long ino;
	int fd, strict, end = 0;

	if (!env || !*env)
		return;
	gp_door = -EIO;
	if (sscanf(env, "%d:%llu:%d%n", &fd, &ino, &strict, &end) != 3 || env[end] || fd < 0)
		return;
	gp_door_strict = strict != 0;
	/* Exactly that socket: a number reused for another file is not it. */
	if (!gm_fd_is_socket(fd, (unsigned long)ino))
		return;
	/* Inherited at a number chosen before this image ran: marked where it is. */
	gm_fd_mark_own(fd);
	gp_door_ino = (ino_t)ino;
	gp_door = fd;
}

/*
 * Claimed before main: until it is marked, the program's close_range or
 * closefrom (through the preload) would close it like any of its own, and
 * its first VM would find no spawner.
 */
__attribute__((constructor)) static void gp_door_claim(void)
{
	if (getenv(GP_SPAWNER_ENV))
		pthread_once(&gp_door_once, door_find);
}

int gp_spawner_door(bool *strict)
{
	pthread_once(&gp_door_once, door_find);
	*strict = gp_door_strict;
	return gp_door;
}

void gp_spawner_door_recheck(void)
{
	pthread_once(&gp_door_once, door_find);
	if (gp_door < 0 || gm_fd_is_socket(gp_door, gp_door_ino))
		return;
	gm_fd_forget(gp_door);
	gp_door = -EIO;
}

void gp_spawner_door_offer(int fd)
{
	struct stat st;

	pthread_once(&gp_door_once, door_find);
	if (gp_door != -EIO || gm_raw_fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
		gm_raw_close(fd);
		return;
	}
	gp_door = gm_fd_own(fd);
	gp_door_ino = st.st_ino;
}

long gp_spawner_request(int door, int ctl, unsigned flags, int *link)
{
	struct gp_spawn_req q = { .magic = GP_SPAWN_MAGIC, .flags = flags };
	struct gp_spawn_resp a;
	struct iovec iov = { &q, sizeof(q) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;
	int lk[2];
	ssize_t r;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, lk))
		return -errno;
	gm_scm_attach(&mh, &cbuf, (int[]){ lk[1], ctl }, 2);
	do
		r = GM_RAW_SYSCALL(SYS_sendmsg, door, &mh, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	gm_raw_close(lk[1]);
	if (r != (ssize_t)sizeof(q)) {
		gm_raw_close(lk[0]);
		return -EIO; /* the spawner is gone */
	}
	do
		r = gm_raw_read(lk[0], &a, sizeof(a));
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(a) || a.magic != GP_SPAWN_MAGIC || a.err > 0 ||
	    (!a.err && a.pid <= 0)) {
		gm_raw_close(lk[0]);
		return -EIO;
	}
	if (a.err) {
		gm_raw_close(lk[0]);
		return a.err;
	}
	*link = lk[0];
	return a.pid;
}
