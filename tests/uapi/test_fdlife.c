// SPDX-License-Identifier: MIT
/*
 * test_fdlife: guestmem objects behave as kernel files (design of
 * src/uapi/file.c; spec kvm-gmem-spec.md §3.2-§3.4, §4.1).
 *
 *  - dup / F_DUPFD / dup2 / SCM_RIGHTS / fork keep an object alive; it is
 *    released when the last reference is closed, however it is closed;
 *  - a guest_memfd keeps its VM alive;
 *  - fork: VM ioctls in the child fail with EIO, guest_memfd file
 *    operations work;
 *  - /proc/self/fd names, fd flags, status flags, reopen;
 *  - non-guestmem fds are untouched; bad pointers give EFAULT;
 *  - concurrent closes and operations do not crash or leak.
 *
 * Built twice from this source (see sysmap.h): "direct" calls
 * guestmem_sys_* and can also read the library's live-object counters;
 * "exec" is a plain-libc program run under `guestmem exec --`.  Both see
 * releases through the library's end of each object's socketpair: an
 * object that is alive holds one fd in /proc/self/fd.
 *
 * TAP output; every case runs in its own process with an alarm.
 */
#include <dirent.h>
#include <errno.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#ifdef GM_DIRECT
#include "uapi/uapi.h"
#endif
#include "sysmap.h"

#define PG 4096
#define GMEM_SIZE (4 * PG)
#define CASE_TIMEOUT 20 /* seconds */

/* ---- assertions: print both values, fail the case's process ------------ */

#define FAIL(...)                                                   \
	do {                                                        \
		printf("# %s:%d: ", __func__, __LINE__);            \
		printf(__VA_ARGS__);                                \
		printf("\n");                                       \
		fflush(stdout);                                     \
		exit(1);                                            \
	} while (0)

#define EXPECT_EQ(a, b)                                                              \
	do {                                                                         \
		long long a_ = (long long)(a), b_ = (long long)(b);                  \
		if (a_ != b_)                                                        \
			FAIL("%s == %lld, expected %s == %lld (errno %d %s)", #a, a_, \
			     #b, b_, errno, strerror(errno));                        \
	} while (0)

#define EXPECT_ERR(expr, e)                                                           \
	do {                                                                          \
		errno = 0;                                                            \
		long long r_ = (long long)(expr);                                     \
		int e_ = errno;                                                       \
		if (r_ != -1 || e_ != (e))                                            \
			FAIL("%s = %lld errno %d (%s), expected -1 errno %d (%s)", #expr, \
			     r_, e_, strerror(e_), (e), strerror(e));                 \
	} while (0)

#define EXPECT_TRUE(c)                                  \
	do {                                            \
		if (!(c))                               \
			FAIL("expected %s", #c);        \
	} while (0)

#define EXPECT_STR(a, b)                                                   \
	do {                                                               \
		if (strcmp((a), (b)))                                      \
			FAIL("%s == \"%s\", expected \"%s\"", #a, (a), (b)); \
	} while (0)

/* ---- helpers ----------------------------------------------------------- */

static int nfds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		FAIL("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own fd */
}

/* Live objects of a type, or -1 where the test cannot see the library. */
static long live(int type)
{
#ifdef GM_DIRECT
	return gm_uapi_live_objects(type);
#else
	(void)type;
	return -1;
#endif
}

enum { T_SYS = 0, T_VM = 1, T_GMEM = 2 };

#define EXPECT_LIVE(type, n)                          \
	do {                                          \
		if (live(type) >= 0)                  \
			EXPECT_EQ(live(type), (n));   \
	} while (0)

static void msleep(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait up to 3 s for the fd count to come back to @want (watcher release). */
static void wait_nfds(int want)
{
	for (int i = 0; i < 300 && nfds() != want; i++)
		msleep(10);
	EXPECT_EQ(nfds(), want);
}

static int open_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	EXPECT_TRUE(fd >= 0);
	EXPECT_EQ(ioctl(fd, KVM_GET_API_VERSION, 0), 12);
	return fd;
}

static int create_vm(int kvm)
{
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);

	EXPECT_TRUE(vm >= 0);
	return vm;
}

static int create_gmem(int vm)
{
	struct kvm_create_guest_memfd a = { .size = GMEM_SIZE };
	int g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);

	EXPECT_TRUE(g >= 0);
	return g;
}

static void link_of(int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, size - 1);
	EXPECT_TRUE(n > 0);
	buf[n] = '\0';
}

/* ---- cases ------------------------------------------------------------- */

static void t_create_release(void)
{
	int warm = open_kvm(); /* the first object also starts the watcher */
	int base = nfds();
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);

	EXPECT_LIVE(T_SYS, 2);
	EXPECT_LIVE(T_VM, 1);
	EXPECT_LIVE(T_GMEM, 1);
	/* each object: the application's fd, the library's peer (and storage) */
	EXPECT_TRUE(nfds() >= base + 6);
	EXPECT_EQ(close(g), 0);
	EXPECT_EQ(close(vm), 0);
	EXPECT_EQ(close(kvm), 0);
	/* close() releases synchronously, as the kernel's final fput does */
	EXPECT_EQ(nfds(), base);
	EXPECT_LIVE(T_SYS, 1);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_LIVE(T_GMEM, 0);
	EXPECT_ERR(close(vm), EBADF);
	EXPECT_EQ(close(warm), 0);
	EXPECT_LIVE(T_SYS, 0);
}

static void t_dup_keeps_alive(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	int base, d = dup(vm);
	struct stat st;

	EXPECT_TRUE(d >= 0);
	EXPECT_EQ(close(vm), 0);
	EXPECT_LIVE(T_VM, 1);
	EXPECT_EQ(fstat(d, &st), 0);
	EXPECT_EQ(st.st_mode, 0600); /* the anonymous inode: no file type */
	EXPECT_EQ(ioctl(d, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	base = nfds();
	EXPECT_EQ(close(d), 0);
	EXPECT_EQ(nfds(), base - 2);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_EQ(close(kvm), 0);
}

static void t_dupfd_dup2(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), p[2];
	int base = nfds();
	int d = fcntl(vm, F_DUPFD_CLOEXEC, 100);

	EXPECT_TRUE(d >= 100);
	EXPECT_EQ(fcntl(d, F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(dup2(vm, 60), 60);
	EXPECT_EQ(close(vm), 0);
	EXPECT_EQ(close(d), 0);
	EXPECT_EQ(ioctl(60, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	EXPECT_LIVE(T_VM, 1);
	/* dup2 over the last reference closes it behind the library's back */
	EXPECT_EQ(pipe(p), 0);
	EXPECT_EQ(dup2(p[0], 60), 60);
	/* vm moved to 60; +pipe pair; the released VM's peer goes */
	wait_nfds(base + 2 - 1);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_ERR(ioctl(60, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), ENOTTY);
}

static void t_gmem_keeps_vm(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	int base = nfds(), g = create_gmem(vm);

	EXPECT_EQ(close(vm), 0);
	EXPECT_LIVE(T_VM, 0); /* the VM fd is gone; the VM object is not */
	EXPECT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG), 0);
	EXPECT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, PG), 0);
	EXPECT_ERR(fallocate(g, FALLOC_FL_KEEP_SIZE, GMEM_SIZE, PG), EINVAL);
	EXPECT_EQ(close(g), 0);
	/* the guest_memfd, its storage and the VM's two fds are all gone */
	EXPECT_EQ(nfds(), base - 2);
	EXPECT_LIVE(T_GMEM, 0);
	EXPECT_EQ(close(kvm), 0);
}

static void t_raw_close(void)
{
	int kvm = open_kvm(), base = nfds();
	int vm = create_vm(kvm), g = create_gmem(vm);

	/* No wrapper sees these closes: the watcher thread must. */
	EXPECT_EQ(syscall(SYS_close, g), 0);
	EXPECT_EQ(syscall(SYS_close, vm), 0);
	wait_nfds(base);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_LIVE(T_GMEM, 0);
	EXPECT_EQ(syscall(SYS_close, kvm), 0);
	wait_nfds(base - 2);
	EXPECT_LIVE(T_SYS, 0);
}

static void t_fork_eio(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);
	struct kvm_create_guest_memfd a = { .size = PG };
	int status;
	pid_t pid = fork();

	EXPECT_TRUE(pid >= 0);
	if (pid == 0) {
		struct stat st;

		/* spec §3.2: another process gets EIO, checked first */
		EXPECT_ERR(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), EIO);
		EXPECT_ERR(ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a), EIO);
		EXPECT_ERR(ioctl(vm, KVM_CREATE_GUEST_MEMFD, NULL), EIO);
		/* guest_memfd file operations are not tied to the creator */
		EXPECT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, 2 * PG), 0);
		EXPECT_EQ(fstat(g, &st), 0);
		EXPECT_EQ(st.st_size, GMEM_SIZE);
		/* /dev/kvm is not tied to a process either */
		EXPECT_EQ(ioctl(kvm, KVM_GET_API_VERSION, 0), 12);
		/* the child runs its own watcher: a raw close is still noticed */
		int base = nfds(), k = open_kvm(), cvm = create_vm(k);

		EXPECT_EQ(ioctl(cvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
		EXPECT_EQ(syscall(SYS_close, cvm), 0);
		EXPECT_EQ(syscall(SYS_close, k), 0);
		wait_nfds(base);
		EXPECT_EQ(close(g), 0);
		EXPECT_EQ(close(vm), 0);
		_exit(0); /* the parent's exit-time checks are not ours to run */
	}
	EXPECT_EQ(waitpid(pid, &status, 0), pid);
	EXPECT_EQ(status, 0);
	/* the child's closes dropped only its references */
	EXPECT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	EXPECT_EQ(fallocate(g, FALLOC_FL_KEEP_SIZE, 0, PG), 0);
	EXPECT_LIVE(T_VM, 1);
	EXPECT_LIVE(T_GMEM, 1);
}

static void t_fork_child_holds(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), p[2], status;
	int base = nfds();
	char c = 0;
	pid_t pid;

	EXPECT_EQ(pipe(p), 0);
	pid = fork();
	EXPECT_TRUE(pid >= 0);
	if (pid == 0) {
		/* hold the inherited VM fd until the parent says go */
		EXPECT_EQ(read(p[0], &c, 1), 1);
		_exit(0);
	}
	EXPECT_EQ(close(vm), 0);
	msleep(100);
	/* the child's reference keeps the file open: no release yet */
	EXPECT_EQ(nfds(), base - 1 + 2);
	EXPECT_LIVE(T_VM, 1);
	EXPECT_EQ(write(p[1], &c, 1), 1);
	EXPECT_EQ(waitpid(pid, &status, 0), pid);
	EXPECT_EQ(status, 0);
	wait_nfds(base - 2 + 2);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_EQ(close(kvm), 0);
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte = 'x';
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return (int)sendmsg(sock, &m, 0);
}

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	char byte;
	struct iovec iov = { &byte, 1 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int fd;

	if (recvmsg(sock, &m, 0) != 1)
		return -1;
	c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

static void t_scm_rights(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), s[2], r, base;

	EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	EXPECT_EQ(send_fd(s[0], vm), 1);
	base = nfds();
	/* in flight inside the socket, the file stays referenced */
	EXPECT_EQ(close(vm), 0);
	EXPECT_EQ(nfds(), base - 1);
	EXPECT_LIVE(T_VM, 1);
	r = recv_fd(s[1]);
	EXPECT_TRUE(r >= 0);
	EXPECT_EQ(ioctl(r, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
	EXPECT_EQ(close(r), 0);
	EXPECT_EQ(nfds(), base - 2);
	EXPECT_LIVE(T_VM, 0);
}

static void t_readlink(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm);
	char buf[128], path[64];

	link_of(kvm, buf, sizeof(buf));
	EXPECT_STR(buf, "/dev/kvm");
	link_of(vm, buf, sizeof(buf));
	EXPECT_STR(buf, "anon_inode:kvm-vm");
	link_of(g, buf, sizeof(buf));
	EXPECT_STR(buf, "anon_inode:[kvm-gmem]");
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)getpid(), g);
	memset(buf, 0, sizeof(buf));
	EXPECT_EQ(readlink(path, buf, sizeof(buf)), 21);
	EXPECT_STR(buf, "anon_inode:[kvm-gmem]");
	/* truncated without a terminator, like the kernel */
	memset(buf, 'z', sizeof(buf));
	EXPECT_EQ(readlink(path, buf, 4), 4);
	EXPECT_EQ(memcmp(buf, "anonz", 5), 0);
	EXPECT_ERR(readlink(path, buf, 0), EINVAL);
	char *volatile bad = (char *)8; /* hide it from the compiler's checks */

	EXPECT_ERR(readlink(path, bad, sizeof(buf)), EFAULT);
}

static void t_fd_flags(void)
{
	int k1 = open("/dev/kvm", O_RDWR), k2 = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int vm = create_vm(k1), g = create_gmem(vm);

	EXPECT_TRUE(k1 >= 0 && k2 >= 0);
	EXPECT_EQ(fcntl(k1, F_GETFD), 0);
	EXPECT_EQ(fcntl(k2, F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(fcntl(k1, F_GETFL), 0x8002); /* O_RDWR|O_LARGEFILE */
	EXPECT_EQ(fcntl(vm, F_GETFD), FD_CLOEXEC);
	EXPECT_EQ(fcntl(vm, F_GETFL), O_RDWR);
	EXPECT_EQ(fcntl(g, F_GETFD), 0);
	EXPECT_EQ(fcntl(g, F_GETFL), 0x8002);
	EXPECT_EQ(fcntl(g, F_SETFL, O_NONBLOCK), 0);
	EXPECT_EQ(fcntl(g, F_GETFL), 0x8002 | O_NONBLOCK);
	EXPECT_EQ(fcntl(vm, F_SETFD, 0), 0);
	EXPECT_EQ(fcntl(vm, F_GETFD), 0);
	EXPECT_ERR(fcntl(g, F_ADD_SEALS, F_SEAL_WRITE), EINVAL);
	EXPECT_ERR(fcntl(g, F_GET_SEALS), EINVAL);
	/* FIOCLEX is the generic ioctl, not a KVM one */
	EXPECT_EQ(ioctl(g, FIOCLEX), 0);
	EXPECT_EQ(fcntl(g, F_GETFD), FD_CLOEXEC);
}

static void t_reopen(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm), k2;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", vm);
	EXPECT_ERR(open(path, O_RDWR), ENXIO);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", g);
	EXPECT_ERR(open(path, O_RDWR), ENXIO);
	EXPECT_ERR(open(path, O_RDONLY), ENXIO);
	/* /dev/kvm is a character device: it opens again */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", kvm);
	k2 = open(path, O_RDWR);
	EXPECT_TRUE(k2 >= 0 && k2 != kvm);
	EXPECT_EQ(ioctl(k2, KVM_GET_API_VERSION, 0), 12);
	EXPECT_EQ(fcntl(k2, F_GETFD), 0);
}

static void t_fstat(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), g = create_gmem(vm), g2 = create_gmem(vm);
	struct stat a, b, v, k;

	EXPECT_EQ(fstat(g, &a), 0);
	EXPECT_EQ(fstat(g2, &b), 0);
	EXPECT_EQ(a.st_mode, S_IFREG | 0600);
	EXPECT_EQ(a.st_size, GMEM_SIZE);
	EXPECT_EQ(a.st_blksize, 4096);
	EXPECT_EQ(a.st_blocks, 0);
	EXPECT_EQ(a.st_nlink, 1);
	EXPECT_EQ(a.st_uid, geteuid());
	EXPECT_TRUE(a.st_ino != b.st_ino);
	EXPECT_EQ(a.st_dev, b.st_dev);
	EXPECT_EQ(fstat(vm, &v), 0);
	EXPECT_EQ(v.st_mode, 0600);
	EXPECT_EQ(v.st_dev, a.st_dev); /* one anonymous-inode file system */
	EXPECT_EQ(fstat(kvm, &k), 0);
	EXPECT_TRUE(S_ISCHR(k.st_mode));
	EXPECT_ERR(fstat(g, (struct stat *)8), EFAULT);
}

#ifdef GM_DIRECT
/*
 * The guestmem_sys_* calls sys.h gained from src/uapi/syscalls.h, which the
 * exec build reaches through libc: the raw call on fds and paths that are
 * not ours (same answers as libc), the object's answer on ours.
 */
static void sys_calls_from_the_table(const int p[2], const int s[2], int vm)
{
	char c = 'v', link[64], path[64];
	struct iovec iov = { &c, 1 };
	struct stat a, b;
	struct statx sx;

	EXPECT_EQ(guestmem_sys_writev(p[1], &iov, 1), 1);
	c = 0;
	EXPECT_EQ(guestmem_sys_readv(p[0], &iov, 1), 1);
	EXPECT_EQ(c, 'v');
	EXPECT_EQ(guestmem_sys_stat("/", &a), 0);
	EXPECT_EQ(stat("/", &b), 0);
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_fstatat(AT_FDCWD, "/", &a, 0), 0);
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_statx(AT_FDCWD, "/", 0, STATX_BASIC_STATS, &sx), 0);
	EXPECT_EQ(sx.stx_ino, b.st_ino);
	EXPECT_EQ(guestmem_sys_access("/", R_OK), 0);
	EXPECT_ERR(guestmem_sys_access("/nonexistent-guestmem", F_OK), ENOENT);
	EXPECT_EQ(guestmem_sys_faccessat(AT_FDCWD, "/", R_OK, AT_EACCESS), 0);
	EXPECT_EQ(guestmem_sys_euidaccess("/", R_OK), 0);
	EXPECT_EQ(guestmem_sys_shutdown(s[1], SHUT_WR), 0);
	EXPECT_ERR(guestmem_sys_shutdown(p[0], SHUT_WR), ENOTSOCK);
	/* Ours: /dev/kvm, the VM's fd and its /proc link. */
	EXPECT_EQ(guestmem_sys_stat("/dev/kvm", &a), 0);
	EXPECT_TRUE(S_ISCHR(a.st_mode));
	EXPECT_ERR(guestmem_sys_access("/dev/kvm", X_OK), EACCES);
	EXPECT_ERR(guestmem_sys_shutdown(vm, SHUT_WR), ENOTSOCK);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", vm);
	EXPECT_EQ(guestmem_sys_readlinkat(AT_FDCWD, path, link, sizeof(link)),
		  strlen("anon_inode:kvm-vm"));
	EXPECT_EQ(memcmp(link, "anon_inode:kvm-vm", strlen("anon_inode:kvm-vm")), 0);
}
#endif

static void t_passthrough(void)
{
	int p[2], s[2];
	char c = 0;
	struct stat st;

	/* with guestmem objects alive, other fds must stay untouched */
	int kvm = open_kvm(), vm = create_vm(kvm);

	EXPECT_EQ(pipe(p), 0);
	EXPECT_EQ(write(p[1], "q", 1), 1);
	EXPECT_EQ(read(p[0], &c, 1), 1);
	EXPECT_EQ(c, 'q');
	EXPECT_EQ(fstat(p[0], &st), 0);
	EXPECT_TRUE(S_ISFIFO(st.st_mode));
	EXPECT_ERR(lseek(p[0], 0, SEEK_SET), ESPIPE);
	EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
	EXPECT_EQ(fstat(s[0], &st), 0);
	EXPECT_TRUE(S_ISSOCK(st.st_mode));
	EXPECT_EQ(write(s[0], "w", 1), 1);
	EXPECT_EQ(read(s[1], &c, 1), 1);
	EXPECT_EQ(c, 'w');
	EXPECT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
#ifdef GM_DIRECT
	EXPECT_TRUE(!guestmem_sys_is_guestmem_fd(s[0]));
	EXPECT_TRUE(!guestmem_sys_is_guestmem_fd(p[0]));
	EXPECT_TRUE(guestmem_sys_is_guestmem_fd(vm));
	sys_calls_from_the_table(p, s, vm);
#endif
	EXPECT_EQ(close(s[0]), 0);
	EXPECT_EQ(close(p[0]), 0);
	EXPECT_ERR(close(p[0]), EBADF);
	EXPECT_ERR(read(-1, &c, 1), EBADF);
}

static void t_vm_file_ops(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);
	char c;

	/* the VM and /dev/kvm files have ioctl and a no-op llseek only */
	EXPECT_ERR(read(vm, &c, 1), EINVAL);
	EXPECT_ERR(write(vm, &c, 1), EINVAL);
	EXPECT_ERR(pread(vm, &c, 1, 0), ESPIPE);
	EXPECT_ERR(pread(vm, &c, 1, -1), EINVAL);
	EXPECT_EQ(lseek(vm, 100, SEEK_SET), 0);
	EXPECT_ERR(lseek(vm, 0, 7), EINVAL);
	EXPECT_TRUE(mmap(NULL, PG, PROT_READ, MAP_SHARED, vm, 0) == MAP_FAILED);
	EXPECT_EQ(errno, ENODEV);
	EXPECT_ERR(fallocate(vm, FALLOC_FL_KEEP_SIZE, 0, PG), ENODEV);
	EXPECT_ERR(fallocate(vm, FALLOC_FL_KEEP_SIZE, 0, 0), EINVAL);
	EXPECT_ERR(ftruncate(vm, 0), EINVAL);
	EXPECT_ERR(fsync(vm), EINVAL);
	EXPECT_ERR(ioctl(vm, KVM_GET_VCPU_MMAP_SIZE, 0), ENOTTY);
	EXPECT_ERR(ioctl(vm, 0xAEFF, 0), ENOTTY);
	EXPECT_ERR(read(kvm, &c, 1), EINVAL);
	EXPECT_ERR(pread(kvm, &c, 1, 0), EINVAL); /* opened: positional I/O allowed */
	EXPECT_EQ(lseek(kvm, 0, SEEK_END), 0);
	EXPECT_EQ(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), 12288);
	EXPECT_ERR(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 1), EINVAL);
	EXPECT_ERR(ioctl(kvm, KVM_GET_API_VERSION, 1), EINVAL);
	EXPECT_ERR(ioctl(kvm, 0xAEFF, 0), EINVAL);
}

static void t_efault(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm);

	EXPECT_ERR(ioctl(vm, KVM_SET_USER_MEMORY_REGION, (void *)8), EFAULT);
	EXPECT_ERR(ioctl(vm, KVM_SET_USER_MEMORY_REGION2, (void *)-4096L), EFAULT);
	EXPECT_ERR(ioctl(vm, KVM_CREATE_GUEST_MEMFD, NULL), EFAULT);
	EXPECT_ERR(ioctl(vm, KVM_ENABLE_CAP, (void *)16), EFAULT);
	/* VM still fine afterwards */
	EXPECT_EQ(ioctl(vm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY), 1);
}

/* Threads operating on their own dups while the main thread closes them. */
struct racer {
	int fd;
	long calls;
	int last_errno;
};

static void *race_ioctl(void *arg)
{
	struct racer *r = arg;

	for (;;) {
		int ret = ioctl(r->fd, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);

		r->calls++;
		if (ret != 1) {
			r->last_errno = errno;
			return NULL;
		}
	}
}

static void t_concurrent_close(void)
{
	int kvm = open_kvm(), vm = create_vm(kvm), base;
	struct racer r[4];
	pthread_t t[4];

	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){ .fd = dup(vm) };
		EXPECT_TRUE(r[i].fd >= 0);
	}
	base = nfds();
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(pthread_create(&t[i], NULL, race_ioctl, &r[i]), 0);
	msleep(20);
	EXPECT_EQ(close(vm), 0);
	for (int i = 0; i < 4; i++) {
		/* half through the wrapper, half behind its back */
		if (i & 1)
			EXPECT_EQ(syscall(SYS_close, r[i].fd), 0);
		else
			EXPECT_EQ(close(r[i].fd), 0);
	}
	for (int i = 0; i < 4; i++) {
		EXPECT_EQ(pthread_join(t[i], NULL), 0);
		EXPECT_TRUE(r[i].calls > 0);
		/* a closed fd number: EBADF (or a reused number's answer) */
		EXPECT_TRUE(r[i].last_errno == EBADF || r[i].last_errno == ENOTTY ||
			    r[i].last_errno == EINVAL);
	}
	wait_nfds(base - 4 - 1 - 1);
	EXPECT_LIVE(T_VM, 0);
}

static void *churn(void *arg)
{
	int kvm = *(int *)arg;

	for (int i = 0; i < 100; i++) {
		int vm = ioctl(kvm, KVM_CREATE_VM, 0);
		struct kvm_create_guest_memfd a = { .size = PG };
		int g = ioctl(vm, KVM_CREATE_GUEST_MEMFD, &a);

		if (vm < 0 || g < 0)
			return (void *)1;
		if (i & 1) {
			syscall(SYS_close, vm);
			syscall(SYS_close, g);
		} else {
			close(g);
			close(vm);
		}
	}
	return NULL;
}

static void t_churn(void)
{
	int kvm = open_kvm(), base = nfds();
	pthread_t t[3];
	void *ret;

	for (int i = 0; i < 3; i++)
		EXPECT_EQ(pthread_create(&t[i], NULL, churn, &kvm), 0);
	for (int i = 0; i < 3; i++) {
		EXPECT_EQ(pthread_join(t[i], &ret), 0);
		EXPECT_TRUE(ret == NULL);
	}
	wait_nfds(base);
	EXPECT_LIVE(T_VM, 0);
	EXPECT_LIVE(T_GMEM, 0);
}

#ifdef GM_DIRECT
static uint64_t vm_invalidations(int vm)
{
	struct gm_file *f = gm_file_lookup(vm);
	uint64_t n;

	EXPECT_TRUE(f != NULL && f->kvm != NULL);
	n = __atomic_load_n(&f->kvm->stat.invalidations, __ATOMIC_RELAXED);
	gm_file_put(f);
	return n;
}
#endif

/* munmap of a memslot's memory is the mmu notifier; other unmaps are not. */
static void t_hva_notify(void)
{
#ifdef GM_DIRECT
	int kvm = open_kvm(), vm = create_vm(kvm);
	size_t sz = 2 << 20;
	char *mem = mmap(NULL, 2 * sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct kvm_userspace_memory_region r = { .slot = 0, .guest_phys_addr = 0,
						 .memory_size = sz,
						 .userspace_addr = (uintptr_t)mem };
	uint64_t n0;

	EXPECT_TRUE(mem != MAP_FAILED);
	EXPECT_EQ(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r), 0);
	n0 = vm_invalidations(vm);
	EXPECT_EQ(munmap(mem + sz, sz), 0); /* beside the slot */
	EXPECT_EQ(vm_invalidations(vm), n0);
	EXPECT_EQ(munmap(mem + PG, PG), 0); /* inside it */
	EXPECT_EQ(vm_invalidations(vm), n0 + 1);
	EXPECT_EQ(munmap(mem, sz), 0);
	EXPECT_EQ(vm_invalidations(vm), n0 + 2);
#else
	printf("# exec build: no view of the VM's counters\n");
#endif
}

/* ---- driver ------------------------------------------------------------- */

struct tcase {
	const char *name;
	void (*fn)(void);
};

static const struct tcase cases[] = {
	{ "create and release", t_create_release },
	{ "dup keeps the object alive", t_dup_keeps_alive },
	{ "F_DUPFD and dup2 references", t_dupfd_dup2 },
	{ "a guest_memfd keeps its VM", t_gmem_keeps_vm },
	{ "raw close: the watcher releases", t_raw_close },
	{ "fork: EIO for VM ioctls, gmem file ops work", t_fork_eio },
	{ "fork: the child's reference keeps it open", t_fork_child_holds },
	{ "SCM_RIGHTS", t_scm_rights },
	{ "readlink names", t_readlink },
	{ "fd and status flags", t_fd_flags },
	{ "reopen via /proc/self/fd", t_reopen },
	{ "fstat fields", t_fstat },
	{ "other fds pass through", t_passthrough },
	{ "VM and /dev/kvm file operations", t_vm_file_ops },
	{ "EFAULT, not a crash", t_efault },
	{ "concurrent ioctl and close", t_concurrent_close },
	{ "create/close churn from threads", t_churn },
	{ "munmap notifies the VM of its memslot memory only", t_hva_notify },
};

static bool run_case(int n, const struct tcase *c)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		alarm(CASE_TIMEOUT);
		c->fn();
		fflush(stdout);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		printf("not ok %d - %s (fork/wait: %s)\n", n, c->name, strerror(errno));
		return false;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		printf("ok %d - %s\n", n, c->name);
		return true;
	}
	if (WIFSIGNALED(status))
		printf("not ok %d - %s (signal %d%s)\n", n, c->name, WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? ": timeout" : "");
	else
		printf("not ok %d - %s (exit %d)\n", n, c->name, WEXITSTATUS(status));
	return false;
}

int main(void)
{
	size_t n = sizeof(cases) / sizeof(cases[0]);
	bool ok = true;

	/* The profile where everything exists, unless the caller chose one. */
	setenv("GUESTMEM_PROFILE", "linux-6.8", 0);
	setenv("GUESTMEM_CONFIG", "KVM_SW_PROTECTED_VM=y KVM_SMM=y", 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("# test_fdlife (%s)\n1..%zu\n", GM_MODE_NAME, n);
	for (size_t i = 0; i < n; i++)
		ok &= run_case((int)i + 1, &cases[i]);
	return ok ? 0 : 1;
}
