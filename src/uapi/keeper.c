// SPDX-License-Identifier: MIT
/*
 * The keeper: where the library ends of object sockets live, out of the
 * VMM's descriptor table.
 *
 * An object's fd is one end of a SOCK_SEQPACKET connection; the other end
 * (the "peer") tells the library when the application's last reference
 * goes and receives other processes' requests (remote.c).  The peers, the
 * epoll set that watches them and the listening socket the application
 * ends connect to belong to the keeper, a worker thread with a descriptor
 * table of its own (lib/worker.h), so the VMM's table holds the object fds
 * and none of these: a VMM that lists, closes, dup2()s over or execs its
 * descriptors cannot see or disturb them, and a fork child inherits none.
 *
 *   keeper      runs the calls below for other threads (its own table)
 *   keeper-watch  a thread of the keeper's table: epoll_wait on the peers;
 *               hands each event to the servant and waits for it
 *   servant     a plain worker (the VMM's table): runs gm_file_event(),
 *               whose releases and answers may use the VMM's descriptors
 *               (a VM's guest-process channel, backing files)
 *
 * The listening socket has an abstract name with this process's pid and a
 * random part; a connection from any other process is closed unread.  Its
 * name shows in /proc/net/unix, so another local process can fill its
 * backlog: application ends connect without blocking, and a full backlog
 * is drained (every pending connection is foreign, since ours go one at a
 * time) and the connect retried; if others keep it full, the caller hands
 * a socketpair's end over instead (gm_keeper_adopt()).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/scm.h"
#include "lib/sys_raw.h"
#include "lib/worker.h"
#include "uapi.h"

/* The keeper is the library's own-table worker, gm_own_table (lib/worker.h). */
static struct gm_worker gm_servant = GM_WORKER_INIT(gm_servant, "gm-servant", false);

/*
 * Keeper state, written by the keeper only.  The numbers are the keeper's
 * table's, meaningless in the VMM's; gm_keeper_addr is read by creating
 * threads after a keeper call returned (the call's hand-off orders it).
 */
static int gm_keeper_listen = -1, gm_keeper_epfd = -1;
static struct sockaddr_un gm_keeper_addr;
static socklen_t gm_keeper_addrlen;

/* gm_keeper_connect_lock: one connection in flight, so the keeper's next
 * accepted one from this process is the caller's (a leaf: taken by file
 * creation under no other uapi lock). */
static pthread_mutex_t gm_keeper_connect_lock = PTHREAD_MUTEX_INITIALIZER;
static bool gm_keeper_ready; /* servant and keeper set up; under the lock above */
/* Connects tried against a backlog others keep full before handing over. */
#define GM_KEEPER_CONNECT_TRIES 4

struct gm_keeper_event {
	ino_t ino;
	uint32_t events;
};

static long gm_keeper_deliver(void *arg)
{
	const struct gm_keeper_event *e = arg;

	gm_file_event(e->ino, e->events);
	return 0;
}

static void *gm_keeper_watch(void *arg)
{
	struct epoll_event ev[32];

	(void)arg;
	gm_uapi_in_library = 1;
	pthread_setname_np(pthread_self(), "gm-keeper-watch");
	for (;;) {
		int n = gm_raw_epoll_wait(gm_keeper_epfd, ev, (int)ARRAY_SIZE(ev), -1);

		for (int i = 0; i < n; i++) {
			struct gm_keeper_event e = { (ino_t)ev[i].data.u64, ev[i].events };

			/*
			 * A close through the library has released it already
			 * (usually by now): no need to wake the servant.
			 */
			if (!gm_file_registered(e.ino))
				continue;

			/*
			 * Started by a creating thread, so that it shares the
			 * VMM's table; if it could not start, the closing
			 * thread still releases (requests wait for it).
			 */
			gm_worker_call_running(&gm_servant, gm_keeper_deliver, &e);
		}
	}
	return NULL;
}

/* On the keeper: listening socket, epoll set, watch thread. */
static long gm_keeper_setup(void *arg)
{
	uint64_t nonce = 0;
	int n, err;

	(void)arg;
	if (gm_keeper_epfd >= 0)
		return 0;
	if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
		nonce ^= (uint64_t)(uintptr_t)&nonce ^ (uint64_t)time(NULL);
	memset(&gm_keeper_addr, 0, sizeof(gm_keeper_addr));
	gm_keeper_addr.sun_family = AF_UNIX;
	n = snprintf(gm_keeper_addr.sun_path + 1, sizeof(gm_keeper_addr.sun_path) - 1,
		     "guestmem-keeper:%d:%016llx", (int)getpid(), (unsigned long long)nonce);
	gm_keeper_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	gm_keeper_listen = (int)GM_RAW_SYSCALL(SYS_socket, AF_UNIX,
					       SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (gm_keeper_listen < 0)
		return -errno;
	if (GM_RAW_SYSCALL(SYS_bind, gm_keeper_listen, &gm_keeper_addr, gm_keeper_addrlen) ||
	    GM_RAW_SYSCALL(SYS_listen, gm_keeper_listen, 64))
		goto fail;
	gm_keeper_epfd = gm_raw_epoll_create1(EPOLL_CLOEXEC);
	if (gm_keeper_epfd < 0)
		goto fail;
	err = gm_worker_spawn(&gm_own_table, gm_keeper_watch, NULL);
	if (err) {
		errno = -err;
		goto fail;
	}
	return 0;
fail:
	err = -errno;
	gm_raw_close(gm_keeper_listen);
	if (gm_keeper_epfd >= 0)
		gm_raw_close(gm_keeper_epfd);
	gm_keeper_listen = gm_keeper_epfd = -1;
	return err;
}

struct gm_keeper_accept {
	ino_t ino;
	/* gm_keeper_adopt(): the caller's thread, its copy of the peer and the peer's inode */
	pid_t tid;
	int fd;
	ino_t peer_ino;
};

/* On the keeper: shut @peer for writing and watch it; @peer or -errno. */
static long gm_keeper_watch_peer(int peer, ino_t ino)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.u64 = ino };

	/*
	 * Nothing is ever sent to the application's end: with ours shut for
	 * writing, a read or recv that reaches the socket (a raw system call
	 * nobody routed) returns 0 at once instead of blocking.  Ours still
	 * sees POLLHUP only when the application's last reference closes.
	 */
	gm_raw_shutdown(peer, SHUT_WR);
	/* EPOLLIN: requests from other holders (remote.c). */
	if (gm_raw_epoll_ctl(gm_keeper_epfd, EPOLL_CTL_ADD, peer, &ev)) {
		int err = -errno;

		gm_raw_close(peer);
		return err;
	}
	return peer;
}

/* On the keeper: the peer of this process's connection in flight. */
static long gm_keeper_accept(void *arg)
{
	const struct gm_keeper_accept *a = arg;

	for (;;) {
		struct ucred cred;
		socklen_t len = sizeof(cred);
		int peer = (int)GM_RAW_SYSCALL(SYS_accept4, gm_keeper_listen, NULL, NULL, SOCK_CLOEXEC);

		if (peer < 0) {
			struct pollfd p = { .fd = gm_keeper_listen, .events = POLLIN };

			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			/* Ours connected before this call: it is queued (or gone). */
			if (errno == EAGAIN && gm_raw_poll(&p, 1, 1000) == 1)
				continue;
			return errno == EAGAIN ? -ECONNABORTED : -errno;
		}
		if (GM_RAW_SYSCALL(SYS_getsockopt, peer, SOL_SOCKET, SO_PEERCRED, &cred, &len) ||
		    cred.pid != getpid()) {
			gm_raw_close(peer);
			continue;
		}
		return gm_keeper_watch_peer(peer, a->ino);
	}
}

/* On the keeper: close every pending connection (none is ours: see the top). */
static long gm_keeper_drain(void *arg)
{
	(void)arg;
	for (;;) {
		int c = (int)GM_RAW_SYSCALL(SYS_accept4, gm_keeper_listen, NULL, NULL, SOCK_CLOEXEC);

		if (c >= 0)
			gm_raw_close(c);
		else if (errno != EINTR && errno != ECONNABORTED)
			return errno == EAGAIN ? 0 : -errno;
	}
}

/* On the keeper: take a copy of the caller's a->fd into this table, watched. */
static long gm_keeper_adopt_here(void *arg)
{
	const struct gm_keeper_accept *a = arg;
	int peer = gm_fd_adopt(a->tid, a->fd, (unsigned long)a->peer_ino);

	return peer < 0 ? peer : gm_keeper_watch_peer(peer, a->ino);
}

/* Set the servant and the keeper up, once.  Context: the connect lock. */
static long gm_keeper_ready_locked(void)
{
	long r = 0;

	/* The servant first, from this thread: it must share the VMM's table. */
	if (!gm_keeper_ready) {
		r = gm_worker_start(&gm_servant);
		if (!r)
			r = gm_worker_call(&gm_own_table, gm_keeper_setup, NULL);
		gm_keeper_ready = !r;
	}
	return r;
}

/* Connect @app_fd to the listener without blocking, draining a full backlog. */
static long gm_keeper_connect_nonblock(int app_fd)
{
	int fl = gm_raw_fcntl(app_fd, F_GETFL, 0);
	long r = -EAGAIN;

	if (fl < 0 || gm_raw_fcntl(app_fd, F_SETFL, (unsigned long)fl | O_NONBLOCK))
		return -errno;
	for (int i = 0; r == -EAGAIN && i < GM_KEEPER_CONNECT_TRIES; i++) {
		r = GM_RAW_SYSCALL(SYS_connect, app_fd, &gm_keeper_addr, gm_keeper_addrlen) ? -errno : 0;
		if (r == -EAGAIN)
			gm_worker_call(&gm_own_table, gm_keeper_drain, NULL);
	}
	/* The object's flags are the application's; the socket's stay as made. */
	if (gm_raw_fcntl(app_fd, F_SETFL, (unsigned long)fl) && !r)
		r = -errno;
	return r;
}

int gm_keeper_connect(int app_fd, ino_t ino)
{
	struct gm_keeper_accept a = { ino };
	long r = 0;

	gm_mutex_lock(&gm_keeper_connect_lock, GM_LOCK_KEEPER_CONNECT);
	r = gm_keeper_ready_locked();
	if (!r)
		r = gm_keeper_connect_nonblock(app_fd);
	if (!r)
		r = gm_worker_call(&gm_own_table, gm_keeper_accept, &a);
	gm_mutex_unlock(&gm_keeper_connect_lock);
	return (int)r;
}

int gm_keeper_adopt(int peer_fd, ino_t ino)
{
	struct gm_keeper_accept a = { .ino = ino, .tid = (pid_t)syscall(SYS_gettid), .fd = peer_fd };
	struct stat st;
	long r;

	if (gm_raw_fstat(peer_fd, &st))
		return -errno;
	a.peer_ino = st.st_ino;
	gm_mutex_lock(&gm_keeper_connect_lock, GM_LOCK_KEEPER_CONNECT);
	r = gm_keeper_ready_locked();
	if (!r)
		r = gm_worker_call(&gm_own_table, gm_keeper_adopt_here, &a);
	gm_mutex_unlock(&gm_keeper_connect_lock);
	return (int)r;
}

static long gm_keeper_hup(void *arg)
{
	struct pollfd p = { .fd = *(int *)arg, .events = POLLRDHUP };

	/* shutdown(SHUT_WR) only gives RDHUP; HUP means the end is gone. */
	return gm_raw_poll(&p, 1, 0) == 1 && (p.revents & POLLHUP);
}

bool gm_keeper_peer_hung_up(int peer)
{
	return gm_worker_call(&gm_own_table, gm_keeper_hup, &peer) > 0;
}

static long gm_keeper_drop(void *arg)
{
	/* Closing drops the epoll item too: the keeper's is the only copy. */
	return gm_raw_close(*(int *)arg);
}

void gm_keeper_drop_peer(int peer)
{
	if (peer >= 0)
		gm_worker_call(&gm_own_table, gm_keeper_drop, &peer);
}

struct gm_keeper_msg {
	int fd;
	void *buf;
	size_t len;
	int passed; /* recv: the descriptor that came with the record, or -1 */
};

/* On the keeper: one record from a peer, without waiting. */
static long gm_keeper_recv(void *arg)
{
	struct gm_keeper_msg *m = arg;
	struct iovec iov = { m->buf, m->len };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;
	long n;

	m->passed = -1;
	gm_scm_expect(&h, &cbuf); /* one descriptor: the kernel closes any others */
	do
		n = GM_RAW_SYSCALL(SYS_recvmsg, m->fd, &h, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	m->passed = gm_scm_fd(&h);
	return n;
}

long gm_keeper_recv_request(int peer, void *buf, size_t len, int *reply)
{
	struct gm_keeper_msg m = { .fd = peer, .buf = buf, .len = len };
	long n = gm_worker_call(&gm_own_table, gm_keeper_recv, &m);

	*reply = m.passed;
	return n;
}

/* On the keeper: send the answer (if any, with m->passed if >= 0) and
 * close the reply socket. */
static long gm_keeper_send(void *arg)
{
	struct gm_keeper_msg *m = arg;
	struct iovec iov = { m->buf, m->len };
	struct msghdr h = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;

	if (m->buf) {
		gm_scm_attach(&h, &cbuf, &m->passed, m->passed >= 0 ? 1 : 0);
		GM_RAW_SYSCALL(SYS_sendmsg, m->fd, &h, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	return gm_raw_close(m->fd);
}

void gm_keeper_reply_fd(int reply, const void *buf, size_t len, int fd)
{
	struct gm_keeper_msg m = { .fd = reply, .buf = (void *)buf, .len = len, .passed = fd };

	gm_worker_call(&gm_own_table, gm_keeper_send, &m);
}

void gm_keeper_reply(int reply, const void *buf, size_t len)
{
	gm_keeper_reply_fd(reply, buf, len, -1);
}

void gm_keeper_forget(void)
{
	pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;

	gm_keeper_connect_lock = mx;
	gm_worker_forget(&gm_own_table);
	gm_worker_forget(&gm_servant);
	gm_keeper_listen = gm_keeper_epfd = -1;
	gm_keeper_ready = false;
}
