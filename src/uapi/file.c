// SPDX-License-Identifier: MIT
/*
 * guestmem file objects: the registry from socket inode to struct gm_file,
 * their reference counts, and release on the application's last close.
 *
 * Life of a file:
 *   gm_file_create()   a socket connected to the keeper (keeper.c), which
 *                      holds the peer in its own descriptor table and
 *                      watches it; refs = 1 (the registry's, once installed)
 *   gm_file_install()  in the registry
 *   lookups            refs + 1 for the duration of one operation
 *   last app close     peer hangs up; gm_file_check_hangup() (closing thread
 *                      or the keeper's event, whichever sees it first;
 *                      `hung` elects one) unlinks the file and drops the
 *                      registry's reference
 *   last put           ops->release (drops the object's reference), drop
 *                      the peer, free
 * So an operation in flight keeps the object alive past a concurrent close,
 * as the kernel's fdget does.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/compiler.h"
#include "lib/lockdep.h"
#include "lib/ownfd.h"
#include "lib/sys_raw.h"
#include "lib/thread.h"
#include "uapi.h"

#define GM_FILE_BUCKETS 1024

/* gm_files_lock: the chains below and gm_nr_files (written under it). */
static pthread_rwlock_t gm_files_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct gm_file *gm_file_hash[GM_FILE_BUCKETS];
/* Read locklessly by the lookup fast path; see gm_file_lookup(). */
static long gm_nr_files;
static dev_t gm_sock_dev; /* sockfs st_dev, set before the first install */
static long gm_live[GM_FILE_NR_TYPES]; /* created, not yet released */

/*
 * gm_hangup_lock: serialises hang-up handling between the keeper's events
 * and a closing thread (outermost of the uapi locks).  An event holds its
 * transient reference on a file only inside it, so once a closing thread
 * has run its own check under the lock, its own put is the last one (bar
 * other threads' operations in flight, as with the kernel's fdget) and
 * close() releases synchronously, like the kernel's final fput.
 */
static pthread_mutex_t gm_hangup_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * Set once this process holds, or may hold, another process's objects
 * (a forked child, or one found by a lookup): every fd lookup then also
 * asks getsockname() of sockets that are not ours.  Relaxed: a stale
 * zero only means one call answered as for a plain socket.
 */
static int gm_foreign_seen;
/*
 * A forked child's copies of its parent's files, out of the registry:
 * the parent answers for them (remote.c).  Kept so that they stay
 * reachable; the child never releases them.  Written in the child's
 * atfork handler only.
 */
static struct gm_file *gm_inherited;
static pthread_once_t gm_atfork_once = PTHREAD_ONCE_INIT;

void (*gm_uapi_objects_hook)(void);
__thread int gm_uapi_in_library __attribute__((tls_model("initial-exec")));
int gm_uapi_drop_in;

/*
 * The threads inside an entry point of the library, by thread id, for the
 * seccomp listener (src/preload/seccomp.c).  A libc call that library code
 * makes on a thread (malloc growing its heap with mprotect) is routed to
 * the listener like any other; that thread may hold a library lock the mmu
 * notifier needs, so the listener must answer it as the preload's wrapper
 * would on that thread: as the library's own, without a notifier.  A fixed
 * table of atomic tids (0: free); a thread claims a slot on its outermost
 * entry and frees it on leaving.  More threads than slots inside the
 * library at once go unrecorded (the listener then runs the notifier).
 */
#define GM_BUSY_SLOTS 256
static int gm_busy_tid[GM_BUSY_SLOTS];
static __thread int gm_busy_slot = -1;
static __thread int gm_self_tid;

int gm_uapi_enter(void)
{
	int saved = gm_uapi_in_library;

	gm_uapi_in_library = 1;
	if (saved)
		return saved;
	if (!gm_self_tid)
		gm_self_tid = (int)syscall(SYS_gettid);
	for (int i = 0; i < GM_BUSY_SLOTS; i++) {
		int free_tid = 0;

		/* seq_cst: visible before any system call this thread makes next. */
		if (__atomic_compare_exchange_n(&gm_busy_tid[i], &free_tid, gm_self_tid, false,
						__ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {
			gm_busy_slot = i;
			break;
		}
	}
	return saved;
}

void gm_uapi_leave(int saved)
{
	gm_uapi_in_library = saved;
	if (saved)
		return;
	if (gm_busy_slot >= 0)
		__atomic_store_n(&gm_busy_tid[gm_busy_slot], 0, __ATOMIC_RELEASE);
	gm_busy_slot = -1;
}

bool gm_uapi_tid_in_library(int tid)
{
	for (int i = 0; i < GM_BUSY_SLOTS; i++)
		if (__atomic_load_n(&gm_busy_tid[i], __ATOMIC_ACQUIRE) == tid)
			return true;
	return false;
}

static struct gm_file **gm_bucket(ino_t ino)
{
	return &gm_file_hash[ino % GM_FILE_BUCKETS];
}

void gm_file_get(struct gm_file *f)
{
	__atomic_add_fetch(&f->refs, 1, __ATOMIC_RELAXED);
}

void gm_file_put(struct gm_file *f)
{
	/* acq_rel: the releasing thread sees every write of the other users. */
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL))
		return;
	if (f->remote) {
		gm_remote_free(f);
		return;
	}
	int saved = gm_uapi_enter();
	if (f->ops->release)
		f->ops->release(f);
	gm_uapi_leave(saved);
	/*
	 * Released: counted as gone before the peer fd closes, so that a
	 * thread which sees the fd count drop also sees the object gone.
	 */
	__atomic_sub_fetch(&gm_live[f->type], 1, __ATOMIC_RELEASE);
	gm_keeper_drop_peer(f->peer);
	gm_check_pthread(pthread_mutex_destroy(&f->pos_lock));
	free(f);
}

long gm_uapi_live_objects(int type)
{
	if (type < 0 || type >= GM_FILE_NR_TYPES)
		return -EINVAL;
	/* acquire: pairs with the release in gm_file_put(). */
	return __atomic_load_n(&gm_live[type], __ATOMIC_ACQUIRE);
}

/* The registered file of @ino, or NULL.  Context: gm_files_lock held. */
static struct gm_file *gm_file_find_locked(ino_t ino)
{
	struct gm_file *f;

	for (f = *gm_bucket(ino); f; f = f->next)
		if (f->ino == ino)
			break;
	return f;
}

/* Look @ino up and take a reference.  Context: no uapi locks. */
static struct gm_file *gm_file_find_ino(ino_t ino)
{
	struct gm_file *f;

	gm_rwlock_rdlock(&gm_files_lock, GM_LOCK_FILES);
	f = gm_file_find_locked(ino);
	if (f)
		gm_file_get(f);
	gm_rwlock_unlock(&gm_files_lock);
	return f;
}

enum gm_lookup_scope { GM_LOOKUP_OWN, GM_LOOKUP_ANY, GM_LOOKUP_FOREIGN };

/*
 * What every lookup does first: widen @scope if foreign objects were seen,
 * then fstat @fd unless it cannot be an object's end.  False: it is not.
 */
static bool gm_file_candidate(int fd, enum gm_lookup_scope *scope, struct stat *st)
{
	if (*scope == GM_LOOKUP_ANY && READ_ONCE(gm_foreign_seen))
		*scope = GM_LOOKUP_FOREIGN;
	/*
	 * Fast path for processes with no guestmem object: no system call.
	 * Relaxed is enough: an fd only becomes a guestmem fd by an install
	 * that happened-before the caller learned the fd number.
	 */
	if (fd < 0 || (likely(READ_ONCE(gm_nr_files) == 0) && *scope != GM_LOOKUP_FOREIGN))
		return false;
	return !gm_raw_fstat(fd, st) && S_ISSOCK(st->st_mode);
}

/* Another process's object was found here: from now on lookups look for them. */
static void gm_file_foreign_found(void)
{
	if (!READ_ONCE(gm_foreign_seen))
		WRITE_ONCE(gm_foreign_seen, 1);
}

static struct gm_file *gm_file_lookup_in(int fd, enum gm_lookup_scope scope)
{
	struct gm_file *f = NULL;
	struct stat st;

	if (!gm_file_candidate(fd, &scope, &st))
		return NULL;
	if (st.st_dev == READ_ONCE(gm_sock_dev))
		f = gm_file_find_ino(st.st_ino);
	if (!f && scope == GM_LOOKUP_FOREIGN) {
		f = gm_remote_lookup(fd);
		if (f)
			gm_file_foreign_found();
	}
	return f;
}

struct gm_file *gm_file_lookup(int fd)
{
	return gm_file_lookup_in(fd, GM_LOOKUP_OWN);
}

bool gm_uapi_holds_objects(void)
{
	return READ_ONCE(gm_nr_files) || READ_ONCE(gm_inherited) || READ_ONCE(gm_foreign_seen);
}

void gm_uapi_note_received(const struct msghdr *msg)
{
	/* No control data (the common case) or already known: no system call. */
	if (!msg || !msg->msg_control || !msg->msg_controllen || READ_ONCE(gm_foreign_seen))
		return;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
		size_t n = c->cmsg_len > CMSG_LEN(0) ? (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) : 0;

		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (gm_remote_is_object(fd)) {
				if (gm_uapi_objects_hook)
					gm_uapi_objects_hook();
				WRITE_ONCE(gm_foreign_seen, 1);
				return;
			}
		}
	}
}

/* Once per image, before main (preload and C API alike), not per lookup. */
__attribute__((constructor)) static void gm_file_note_inherited(void)
{
	char buf[4096];
	int dir = (int)GM_RAW_SYSCALL(SYS_open, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	long n;

	if (dir < 0)
		return;
	while (!READ_ONCE(gm_foreign_seen) &&
	       (n = GM_RAW_SYSCALL(SYS_getdents64, dir, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < n;) {
			/* struct linux_dirent64: ino, off, reclen, type, name */
			unsigned short reclen;
			const char *name = buf + off + 19;
			long fd;

			memcpy(&reclen, buf + off + 16, sizeof(reclen));
			off += reclen;
			if (name[0] < '0' || name[0] > '9')
				continue;
			fd = strtol(name, NULL, 10);
			if (fd == dir)
				continue;
			if (gm_remote_is_object((int)fd)) {
				WRITE_ONCE(gm_foreign_seen, 1);
				break;
			}
		}
	}
	gm_raw_close(dir);
}

bool gm_file_is_object_fd(int fd, bool by_name)
{
	enum gm_lookup_scope scope = by_name ? GM_LOOKUP_FOREIGN : GM_LOOKUP_ANY;
	struct stat st;

	if (!gm_file_candidate(fd, &scope, &st))
		return false;
	if (st.st_dev == READ_ONCE(gm_sock_dev) && gm_file_registered(st.st_ino))
		return true;
	if (scope != GM_LOOKUP_FOREIGN || !gm_remote_is_object(fd))
		return false;
	gm_file_foreign_found();
	return true;
}

struct gm_file *gm_file_lookup_any(int fd)
{
	return gm_file_lookup_in(fd, GM_LOOKUP_ANY);
}

struct gm_file *gm_file_lookup_foreign(int fd)
{
	return gm_file_lookup_in(fd, GM_LOOKUP_FOREIGN);
}

/* ---- events from the keeper --------------------------------------------- */

bool gm_file_registered(ino_t ino)
{
	struct gm_file *f;

	/*
	 * No reference taken: a put here could be the last one and release
	 * the object on the caller's thread, whose descriptor table (the
	 * keeper's) is not the VMM's.
	 */
	gm_rwlock_rdlock(&gm_files_lock, GM_LOCK_FILES);
	f = gm_file_find_locked(ino);
	gm_rwlock_unlock(&gm_files_lock);
	return f != NULL;
}

/*
 * An event on @ino's peer, on the servant thread (keeper.c): the VMM's
 * descriptor table, no locks held.
 */
void gm_file_event(ino_t ino, uint32_t events)
{
	struct gm_file *f;

	/*
	 * Requests from other processes too, under the hang-up lock: a close
	 * racing with one waits for it, so the closing thread's put is still
	 * the last one and its close releases synchronously.
	 */
	gm_mutex_lock(&gm_hangup_lock, GM_LOCK_HANGUP);
	f = gm_file_find_ino(ino);
	if (f) { /* else another thread released it already */
		if (events & EPOLLIN)
			gm_remote_serve(f);
		gm_file_check_hangup(f);
		gm_file_put(f);
	}
	gm_mutex_unlock(&gm_hangup_lock);
}

/*
 * fork(): the child has none of the keeper's threads or descriptors (they
 * were never in the table it copied).  Make the locks consistent across
 * the fork; the child starts its own keeper for the first file it creates.
 * The hang-up lock too: the servant may hold it for an event (a release,
 * whose frees must not be cut in half in the child either).
 */
static void gm_atfork_prepare(void)
{
	pthread_mutex_lock(&gm_hangup_lock);
	pthread_rwlock_wrlock(&gm_files_lock);
}

static void gm_atfork_parent(void)
{
	pthread_rwlock_unlock(&gm_files_lock);
	pthread_mutex_unlock(&gm_hangup_lock);
}

/*
 * In the child, the parent's files are the parent's: the kernel ties a
 * VM to its creator's mm, and a guest_memfd's fallocate must reach the
 * VM that binds it.  The parent alone holds the peers (it receives the
 * requests and sees the last close), so the child finds the inherited fds
 * as another process's objects from now on.
 */
static void gm_atfork_child(void)
{
	pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
	pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;

	gm_files_lock = rw;
	gm_hangup_lock = mx;
	gm_keeper_forget();
	for (int b = 0; b < GM_FILE_BUCKETS; b++) {
		while (gm_file_hash[b]) {
			struct gm_file *f = gm_file_hash[b];

			gm_file_hash[b] = f->next;
			f->peer = -1; /* the parent keeper's number */
			f->hung = 1; /* never released here */
			f->next = gm_inherited;
			gm_inherited = f;
			gm_nr_files--;
		}
	}
	if (gm_inherited)
		WRITE_ONCE(gm_foreign_seen, 1);
}

static void gm_atfork_register(void)
{
	pthread_atfork(gm_atfork_prepare, gm_atfork_parent, gm_atfork_child);
}

/* ---- create / install / release --------------------------------------- */

/* A socketpair whose library end the keeper adopts: the peer, or -errno. */
/*
 * A new application end of @type: an AF_UNIX record socket (records:
 * requests from other holders, remote.c), close-on-exec if asked, named
 * by its inode so that other processes find it.  Its fd, or -errno.
 */
static int gm_app_end(int fd, enum gm_file_type type, uint64_t size, struct stat *st)
{
	if (fd < 0 || gm_raw_fstat(fd, st))
		return -errno;
	gm_remote_bind(fd, type, st->st_ino, size);
	return fd;
}

/* A socketpair whose library end the keeper adopts: the peer, or -errno. */
static int gm_file_pair_adopted(bool cloexec, enum gm_file_type type, uint64_t size,
				int *app_fd, struct stat *st)
{
	int sv[2], r;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | (cloexec ? SOCK_CLOEXEC : 0), 0, sv))
		return -errno;
	r = gm_app_end(sv[0], type, size, st);
	if (r >= 0)
		r = gm_keeper_adopt(sv[1], st->st_ino);
	gm_raw_close(sv[1]); /* the keeper's copy is the one that counts */
	if (r < 0)
		gm_raw_close(sv[0]);
	else
		*app_fd = sv[0];
	return r;
}

int gm_file_create(enum gm_file_type type, const struct gm_file_ops *ops, const char *name,
		   int f_flags, bool cloexec, uint64_t size, struct gm_file **out)
{
	struct gm_file *f;
	struct stat st;
	int fd, r;

	if (gm_uapi_objects_hook)
		gm_uapi_objects_hook();
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	fd = (int)GM_RAW_SYSCALL(SYS_socket, AF_UNIX,
				 SOCK_SEQPACKET | (cloexec ? SOCK_CLOEXEC : 0), 0);
	r = gm_app_end(fd, type, size, &st);
	if (r < 0)
		goto fail;
	r = gm_keeper_connect(fd, st.st_ino);
	if (r == -ECONNREFUSED || r == -ENOENT || r == -EAGAIN) {
		/* Another network namespace than the keeper's, or a backlog others
		 * keep full: hand a pair's end over. */
		gm_raw_close(fd);
		fd = -1;
		r = gm_file_pair_adopted(cloexec, type, size, &fd, &st);
	}
	if (r < 0)
		goto fail;
	gm_check_pthread(pthread_mutex_init(&f->pos_lock, NULL));
	f->type = type;
	f->ops = ops;
	f->peer = r; /* a number in the keeper's table */
	f->ino = st.st_ino;
	f->f_flags = f_flags;
	f->refs = 1;
	f->app_fd = fd;
	snprintf(f->name, sizeof(f->name), "%s", name);
	clock_gettime(CLOCK_REALTIME, &f->btime);
	WRITE_ONCE(gm_sock_dev, st.st_dev);
	*out = f;
	return 0;
fail:
	if (fd >= 0)
		gm_raw_close(fd);
	free(f);
	return r;
}

void gm_file_abort(struct gm_file *f)
{
	gm_raw_close(f->app_fd);
	gm_keeper_drop_peer(f->peer);
	gm_check_pthread(pthread_mutex_destroy(&f->pos_lock));
	free(f);
}

int gm_file_install(struct gm_file *f)
{
	int fd = f->app_fd;
	struct gm_file **b = gm_bucket(f->ino);

	f->app_fd = -1; /* the application's from here on */

	pthread_once(&gm_atfork_once, gm_atfork_register);
	__atomic_add_fetch(&gm_live[f->type], 1, __ATOMIC_RELAXED);
	gm_rwlock_wrlock(&gm_files_lock, GM_LOCK_FILES);
	f->next = *b;
	*b = f;
	WRITE_ONCE(gm_nr_files, gm_nr_files + 1);
	gm_rwlock_unlock(&gm_files_lock);
	return fd;
}

void gm_file_check_hangup_closing(struct gm_file *f)
{
	gm_mutex_lock(&gm_hangup_lock, GM_LOCK_HANGUP);
	gm_file_check_hangup(f);
	gm_mutex_unlock(&gm_hangup_lock);
}

void gm_file_check_hangup(struct gm_file *f)
{
	struct gm_file **pp;
	int expected = 0;

	if (READ_ONCE(f->hung) || !gm_keeper_peer_hung_up(f->peer))
		return;
	if (!__atomic_compare_exchange_n(&f->hung, &expected, 1, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED))
		return; /* the other path (close or keeper event) owns the release */

	gm_rwlock_wrlock(&gm_files_lock, GM_LOCK_FILES);
	for (pp = gm_bucket(f->ino); *pp && *pp != f; pp = &(*pp)->next)
		;
	if (*pp) {
		*pp = f->next;
		WRITE_ONCE(gm_nr_files, gm_nr_files - 1);
	}
	gm_rwlock_unlock(&gm_files_lock);

	gm_file_put(f); /* the registry's reference */
}

static struct stat gm_anon_st;
static pthread_once_t gm_anon_once = PTHREAD_ONCE_INIT;

/* The kernel's shared anonymous inode, as an eventfd shows it. */
static void gm_anon_probe(void)
{
	int fd = gm_raw_eventfd(0, EFD_CLOEXEC);

	if (fd >= 0 && gm_raw_fstat(fd, &gm_anon_st) == 0) {
		gm_raw_close(fd);
		return;
	}
	if (fd >= 0)
		gm_raw_close(fd);
	memset(&gm_anon_st, 0, sizeof(gm_anon_st));
	gm_anon_st.st_mode = S_IRUSR | S_IWUSR;
	gm_anon_st.st_nlink = 1;
	gm_anon_st.st_blksize = 4096;
}

void gm_anon_inode_stat(struct stat *st)
{
	pthread_once(&gm_anon_once, gm_anon_probe);
	*st = gm_anon_st;
}
