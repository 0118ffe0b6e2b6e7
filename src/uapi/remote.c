// SPDX-License-Identifier: MIT
/*
 * Objects owned by another process: a guestmem fd that reached this
 * process by fork, exec, SCM_RIGHTS or pidfd_getfd.
 *
 * The kernel lets any holder of a guest_memfd fallocate it (spec §3.2),
 * and answers a VM or vCPU ioctl from a process that is not the VM's
 * creator with EIO.  Here the object lives in its creator's memory, so a
 * holder elsewhere must reach the creator.  Each object's application end
 * is bound to an abstract name, "guestmem-file:<type>:<inode>:<size>" (a
 * guest_memfd's size, else 0), which any holder can read with
 * getsockname() without writing to the socket (the process's own sockets
 * are never probed by writing).  A holder sends a
 * request as one SOCK_SEQPACKET record on its end, with one end of a
 * fresh socketpair attached for the answer; the creator's keeper (keeper.c)
 * receives it on the library end and its servant thread answers.  A record that is
 * not a request (a raw write() of the VMM) is read and dropped.
 *
 * When the creator is gone (it exec'd or exited, so the library end is
 * closed) the object lives on in the kernel, but no process can reach its
 * VM any more (every VM and vCPU ioctl from another mm is EIO).  What is
 * left to answer needs only the name: the type's answers (EIO, ENOTTY,
 * the VFS's), and a guest_memfd's fstat and fallocate, whose checks need
 * its size; its pages are then never allocated, since nothing could map
 * them.
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/gmem.h"
#include "lib/compiler.h"
#include "lib/keepfd.h"
#include "lib/ownfd.h"
#include "lib/scm.h"
#include "lib/sys_raw.h"
#include "uapi.h"

#define GM_REMOTE_PREFIX "guestmem-file:"
#define GM_REMOTE_MAGIC 0x676d7266U /* "gmrf" */

enum gm_remote_op {
	GM_REMOTE_DESCRIBE = 1, /* type, flags, name, stat, position */
	GM_REMOTE_FALLOCATE,	/* arg: mode, offset, len */
	GM_REMOTE_READ,		/* arg: len, offset (-1: at the file position) */
	GM_REMOTE_MAP,		/* a 6.18 MMAP guest_memfd's file, attached (none: private) */
};

/* A read's bytes travel in its answer's record, after the answer. */
#define GM_REMOTE_READ_MAX (64 * 1024)

struct gm_remote_req {
	uint32_t magic;
	uint32_t op;
	int64_t arg[3];
};

struct gm_remote_resp {
	int64_t ret; /* >= 0, or -errno */
	int32_t type;
	int32_t f_flags;
	uint32_t fops;
	uint32_t has_mmap; /* DESCRIBE: the file has an mmap method (a 6.18 MMAP guest_memfd) */
	char name[40];
	struct stat st;
	int64_t pos; /* the file position (a stats file's) */
};

/* A file of another process, for the duration of one call. */
struct gm_remote_file {
	struct gm_file f;
	struct gm_file_ops ops;
	int fd; /* the caller's descriptor: the way to the owner */
	uint64_t size; /* a guest_memfd's, from its name */
	struct stat st;
	bool has_mmap; /* the owner's file has an mmap method */
};

/* ---- naming ----------------------------------------------------------- */

void gm_remote_bind(int app_fd, enum gm_file_type type, ino_t ino, uint64_t size)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int n = snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, GM_REMOTE_PREFIX "%d:%lu:%llu",
			 (int)type, (unsigned long)ino, (unsigned long long)size);

	/*
	 * Best effort: an unbound object (the name taken in this network
	 * namespace) still works in its creator, it is just not found by
	 * other processes.
	 */
	GM_RAW_SYSCALL(SYS_bind, app_fd, &a, offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/*
 * The type in @fd's name if it is an object's application end, else -1;
 * *@size (if not NULL) the size named with it.
 */
static int gm_remote_type_of(int fd, uint64_t *size)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);
	const size_t plen = sizeof(GM_REMOTE_PREFIX) - 1;
	const char *p;
	char *end;
	long type;

	memset(&a, 0, sizeof(a));
	if (GM_RAW_SYSCALL(SYS_getsockname, fd, &a, &len) || a.sun_family != AF_UNIX ||
	    len < offsetof(struct sockaddr_un, sun_path) + 1 + plen + 1 || a.sun_path[0])
		return -1;
	p = a.sun_path + 1;
	if (memcmp(p, GM_REMOTE_PREFIX, plen))
		return -1;
	type = strtol(p + plen, &end, 10);
	if (end == p + plen || *end != ':' || type < 0 || type >= GM_FILE_NR_TYPES)
		return -1;
	if (size) { /* ":<inode>:<size>" follows; the name is not NUL-terminated */
		size_t at = (size_t)(end - (const char *)&a), total = len;
		char tail[48] = "", *colon;

		if (total > at && total - at < sizeof(tail))
			memcpy(tail, end, total - at);
		colon = strchr(tail + 1, ':');
		*size = colon ? strtoull(colon + 1, NULL, 10) : 0;
	}
	return (int)type;
}

bool gm_remote_is_object(int fd)
{
	struct stat st;

	return !gm_raw_fstat(fd, &st) && S_ISSOCK(st.st_mode) && gm_remote_type_of(fd, NULL) >= 0;
}

/* ---- the holder's side ------------------------------------------------- */

/*
 * One request on @fd and its answer: 0, or -EIO if the owner cannot
 * answer.  @data (if not NULL) receives up to @len bytes that follow the
 * answer in its record (*@got: how many).
 */
static int gm_remote_call_fd(int fd, const struct gm_remote_req *req,
			     struct gm_remote_resp *resp, void *data, size_t len, size_t *got,
			     int *passed)
{
	struct iovec iov = { (void *)req, sizeof(*req) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	union gm_scm_buf cbuf;
	int sv[2];
	long n;

	if (gm_raw_socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		return errno == EMFILE || errno == ENFILE ? -errno : -EIO;
	gm_scm_attach(&m, &cbuf, &sv[1], 1);
	for (;;) {
		n = GM_RAW_SYSCALL(SYS_sendmsg, fd, &m, MSG_NOSIGNAL);
		if (n >= 0 || (errno != EINTR && errno != EAGAIN))
			break;
		if (errno == EAGAIN) { /* the VMM made its end non-blocking */
			struct pollfd p = { .fd = fd, .events = POLLOUT };

			gm_raw_poll(&p, 1, -1);
		}
	}
	gm_raw_close(sv[1]);
	if (n != (long)sizeof(*req)) {
		gm_raw_close(sv[0]);
		return -EIO; /* the owner is gone */
	}
	/* The owner closes its end, answered or not, so this cannot hang on it. */
	{
		struct iovec in[2] = { { resp, sizeof(*resp) }, { data, data ? len : 0 } };
		struct msghdr r = { .msg_iov = in, .msg_iovlen = data ? 2 : 1 };

		if (passed)
			gm_scm_expect(&r, &cbuf);
		do
			n = GM_RAW_SYSCALL(SYS_recvmsg, sv[0], &r, passed ? MSG_CMSG_CLOEXEC : 0);
		while (n < 0 && errno == EINTR);
		if (passed)
			*passed = n > 0 ? gm_scm_fd(&r) : -1;
	}
	gm_raw_close(sv[0]);
	if (n < (long)sizeof(*resp)) {
		if (passed && *passed >= 0)
			gm_raw_close(*passed);
		return -EIO;
	}
	if (got)
		*got = (size_t)n - sizeof(*resp);
	return 0;
}

static int gm_remote_call_data(int fd, const struct gm_remote_req *req,
			       struct gm_remote_resp *resp, void *data, size_t len, size_t *got)
{
	return gm_remote_call_fd(fd, req, resp, data, len, got, NULL);
}

static int gm_remote_call(int fd, const struct gm_remote_req *req, struct gm_remote_resp *resp)
{
	return gm_remote_call_data(fd, req, resp, NULL, 0, NULL);
}

static struct gm_remote_file *gm_remote_of(struct gm_file *f)
{
	return container_of(f, struct gm_remote_file, f);
}

static long gm_remote_eio(struct gm_file *f, unsigned int cmd, unsigned long arg)
{
	(void)f, (void)cmd, (void)arg;
	return -EIO; /* not the VM's creator (spec §3.2) */
}

static int gm_remote_fallocate(struct gm_file *f, int mode, off_t off, off_t len)
{
	struct gm_remote_req req = { .magic = GM_REMOTE_MAGIC, .op = GM_REMOTE_FALLOCATE,
				     .arg = { mode, off, len } };
	struct gm_remote_file *rf = gm_remote_of(f);
	struct gm_remote_resp resp;
	int r = gm_remote_call(rf->fd, &req, &resp);

	/* The creator is gone: the file's checks, and nothing to allocate. */
	if (r == -EIO)
		return kvm_gmem_fallocate_checks(gm_config_get()->profile, rf->size, mode, off, len);
	return r ? r : (int)resp.ret;
}

/*
 * read(2) and pread(2) of another process's stats file: the owner reads
 * its file (at the shared file position for read, as the kernel's one
 * open file description has it) and sends the bytes.  The buffer is
 * checked writable first, so an EFAULT moves no position.
 */
static ssize_t gm_remote_read(struct gm_file *f, void *buf, size_t n, off_t *posp)
{
	struct gm_remote_file *rf = gm_remote_of(f);
	bool at_pos = posp == &f->pos;
	size_t done = 0;
	char *tmp;
	int r = 0;

	n = GM_MIN(n, (size_t)INT32_MAX);
	tmp = malloc(GM_MIN(n, (size_t)GM_REMOTE_READ_MAX) + 1);
	if (!tmp)
		return -ENOMEM;
	/* Writable?  Its own bytes read and written back: nothing changes. */
	for (size_t off = 0; off < n && !r; off += GM_REMOTE_READ_MAX) {
		size_t k = GM_MIN(n - off, (size_t)GM_REMOTE_READ_MAX);

		r = gm_copy_from_user(tmp, (char *)buf + off, k);
		if (!r)
			r = gm_copy_to_user((char *)buf + off, tmp, k);
	}
	while (!r && done < n) {
		size_t k = GM_MIN(n - done, (size_t)GM_REMOTE_READ_MAX), got = 0;
		struct gm_remote_req req = { .magic = GM_REMOTE_MAGIC, .op = GM_REMOTE_READ,
					     .arg = { (int64_t)k, at_pos ? -1 : *posp + (off_t)done } };
		struct gm_remote_resp resp;

		r = gm_remote_call_data(rf->fd, &req, &resp, tmp, k, &got);
		if (r || resp.ret < 0) {
			r = r ? r : (int)resp.ret;
			break;
		}
		got = GM_MIN(got, (size_t)resp.ret);
		r = gm_copy_to_user((char *)buf + done, tmp, got);
		done += got;
		if (got < k)
			break; /* the end of the file */
	}
	free(tmp);
	if (!at_pos)
		*posp += (off_t)done;
	/* Bytes read are read: a later failure only ends the read short. */
	return done ? (ssize_t)done : r;
}

/*
 * mmap(2) of another process's 6.18 MMAP guest_memfd (a vhost-user
 * backend mapping the VMM's guest memory): the owner sends the file its
 * pages live in, which is mapped here as the owner maps it (the same
 * pages), or nothing for private memory, every touch of which SIGBUS.
 * A guest_memfd without the flag has no mmap method (ENODEV, as the
 * creator described it); neither, here, has one whose creator is gone
 * (the kernel's would still map).
 */
static int gm_remote_mmap(struct gm_file *f, void *addr, size_t len, int prot, int flags,
			  off_t off, void **out)
{
	struct gm_remote_req req = { .magic = GM_REMOTE_MAGIC, .op = GM_REMOTE_MAP };
	struct gm_remote_file *rf = gm_remote_of(f);
	struct gm_remote_resp resp;
	int fd = -1, r;

	r = gm_remote_call_fd(rf->fd, &req, &resp, NULL, 0, NULL, &fd);
	if (r)
		return r == -EIO ? -ENODEV : r;
	r = resp.ret < 0 ? (int)resp.ret : gm_gmem_map(fd, addr, len, prot, flags, off, out);
	if (fd >= 0)
		gm_raw_close(fd);
	return r;
}

static void gm_remote_fill_stat(struct gm_file *f, struct stat *st)
{
	*st = gm_remote_of(f)->st;
}

/*
 * What a file of @type answers with no owner to ask.  A guest_memfd keeps
 * what its creator reported: the inode, size and owner, which are the
 * socket's inode, the name's size and the socket's owner; its times are
 * the socket's (its creation).
 */
static void gm_remote_defaults(struct gm_remote_file *rf, enum gm_file_type type)
{
	static const char *const names[GM_FILE_NR_TYPES] = {
		[GM_FILE_SYSTEM] = "/dev/kvm",
		[GM_FILE_VM] = "anon_inode:kvm-vm",
		[GM_FILE_GMEM] = "anon_inode:[kvm-gmem]",
		[GM_FILE_VCPU] = "anon_inode:kvm-vcpu",
		[GM_FILE_STATS] = "anon_inode:kvm-stats",
	};

	snprintf(rf->f.name, sizeof(rf->f.name), "%s", names[type]);
	rf->f.f_flags = type == GM_FILE_STATS ? O_RDONLY : O_RDWR;
	gm_anon_inode_stat(&rf->st);
	if (type == GM_FILE_GMEM) {
		struct stat sock;

		rf->st.st_mode = S_IFREG | 0600;
		rf->st.st_size = (off_t)rf->size;
		rf->st.st_blocks = 0;
		rf->st.st_blksize = 4096;
		rf->st.st_nlink = 1;
		if (!gm_raw_fstat(rf->fd, &sock)) {
			rf->st.st_ino = sock.st_ino;
			rf->st.st_uid = sock.st_uid;
			rf->st.st_gid = sock.st_gid;
			rf->st.st_atim = sock.st_atim;
			rf->st.st_mtim = sock.st_mtim;
			rf->st.st_ctim = sock.st_ctim;
		}
	}
}

struct gm_file *gm_remote_lookup(int fd)
{
	struct gm_remote_req req = { .magic = GM_REMOTE_MAGIC, .op = GM_REMOTE_DESCRIBE };
	struct gm_remote_resp resp;
	struct gm_remote_file *rf;
	uint64_t size = 0;
	int type = gm_remote_type_of(fd, &size);

	if (type < 0)
		return NULL;
	rf = calloc(1, sizeof(*rf));
	if (!rf)
		return NULL;
	gm_check_pthread(pthread_mutex_init(&rf->f.pos_lock, NULL));
	rf->f.type = (enum gm_file_type)type;
	rf->f.remote = true;
	rf->f.refs = 1;
	rf->f.peer = -1;
	rf->f.app_fd = -1;
	rf->fd = fd;
	rf->size = size;
	if (gm_remote_call(fd, &req, &resp) == 0 && resp.ret == 0 && resp.type == type) {
		resp.name[sizeof(resp.name) - 1] = '\0';
		snprintf(rf->f.name, sizeof(rf->f.name), "%s", resp.name);
		rf->f.f_flags = resp.f_flags;
		rf->f.pos = (off_t)resp.pos;
		rf->st = resp.st;
		rf->ops.fops = resp.fops;
		rf->has_mmap = resp.has_mmap;
	} else {
		gm_remote_defaults(rf, (enum gm_file_type)type);
	}
	rf->f.ino = rf->st.st_ino;
	if (type == GM_FILE_SYSTEM) {
		/* /dev/kvm belongs to no process: this one answers for itself. */
		rf->ops = gm_dev_fops;
	} else {
		if (type == GM_FILE_VM || type == GM_FILE_VCPU)
			rf->ops.ioctl = gm_remote_eio;
		if (type == GM_FILE_GMEM) {
			rf->ops.fallocate = gm_remote_fallocate;
			/* The creator's file's method, so do_mmap()'s order holds. */
			if (rf->has_mmap)
				rf->ops.mmap = gm_remote_mmap;
		}
		if (type == GM_FILE_STATS)
			rf->ops.read = gm_remote_read;
		rf->ops.fill_stat = gm_remote_fill_stat;
	}
	rf->f.ops = &rf->ops;
	return &rf->f;
}

void gm_remote_free(struct gm_file *f)
{
	gm_check_pthread(pthread_mutex_destroy(&f->pos_lock));
	free(gm_remote_of(f));
}

/* ---- the owner's side --------------------------------------------------- */

/*
 * The answer to @req, in @out (malloc'd: the answer, then a read's bytes);
 * its length, or 0 if there is no memory for it.
 */
static size_t gm_remote_answer(struct gm_file *f, const struct gm_remote_req *req, char **out,
			       int *passed)
{
	size_t n = req->op == GM_REMOTE_READ && req->arg[0] > 0
			   ? (size_t)GM_MIN(req->arg[0], (int64_t)GM_REMOTE_READ_MAX)
			   : 0;
	struct gm_remote_resp *resp = calloc(1, sizeof(*resp) + n);
	size_t len = sizeof(*resp);

	*out = (char *)resp;
	if (!resp)
		return 0;
	resp->type = (int32_t)f->type;
	switch (req->op) {
	case GM_REMOTE_DESCRIBE:
		resp->f_flags = f->f_flags;
		resp->fops = f->ops->fops;
		resp->pos = READ_ONCE(f->pos);
		snprintf(resp->name, sizeof(resp->name), "%s", f->name);
		gm_fop_stat(f, &resp->st);
		resp->has_mmap = f->type == GM_FILE_GMEM && gm_gmem_has_mmap(f);
		break;
	case GM_REMOTE_READ:
		/* Into the answer's tail: the owner's own memory, never a bad address. */
		resp->ret = req->arg[1] < 0 ? gm_fop_read(f, resp + 1, n)
					    : gm_fop_pread(f, resp + 1, n, (off_t)req->arg[1], false);
		if (resp->ret > 0)
			len += (size_t)resp->ret;
		break;
	case GM_REMOTE_FALLOCATE:
		resp->ret = gm_fop_fallocate(f, (int)req->arg[0], (off_t)req->arg[1],
					     (off_t)req->arg[2]);
		break;
	case GM_REMOTE_MAP:
		resp->ret = f->type == GM_FILE_GMEM ? gm_gmem_map_source(f, passed) : -ENODEV;
		break;
	default:
		resp->ret = -EINVAL;
	}
	return len;
}

void gm_remote_serve(struct gm_file *f)
{
	for (;;) {
		struct gm_remote_req req;
		int reply;
		long n = gm_keeper_recv_request(f->peer, &req, sizeof(req), &reply);

		/* 0: drained to a zero-length record or the end; the next one re-arms. */
		if (n <= 0)
			return;
		if (reply < 0)
			continue; /* not a request: dropped */
		if (n == (long)sizeof(req) && req.magic == GM_REMOTE_MAGIC) {
			int kept = -1; /* a file to send, kept for the keeper (lib/keepfd.h) */
			char *out;
			size_t len = gm_remote_answer(f, &req, &out, &kept);

			gm_keeper_reply_fd(reply, len ? out : NULL, len,
					   kept >= 0 ? gm_fd_kept_number(kept) : -1);
			if (kept >= 0)
				gm_fd_drop(kept);
			free(out);
		} else {
			gm_keeper_reply(reply, NULL, 0);
		}
	}
}
